//! Bytes to frames: every malformed body is a typed [`ProtoError`].

use bytes::Bytes;
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::conversation;
use super::*;
use crate::attrs;
use crate::error::ProtoError;
use crate::header::*;
use crate::types::{DeviceId, UserId};
use crate::{presence, room};

impl Frame {
    /// Decodes one complete frame (`frame` holds exactly header + body; the
    /// header was already validated by the decoder).
    pub(crate) fn decode_body(
        kind: FrameKind,
        flags: u8,
        body: Bytes,
    ) -> Result<Frame, ProtoError> {
        let name = kind.name();
        let allowed = allowed_flags(kind);
        if flags & !allowed != 0 {
            return Err(ProtoError::Malformed {
                frame: name,
                what: "unknown flag bits set",
            });
        }
        Ok(match kind {
            FrameKind::Connect => {
                let (f, rest) = fixed::<ConnectFixed>(&body, name)?;
                let token = text(rest, "CONNECT token")?;
                if token.is_empty() {
                    return Err(ProtoError::Malformed {
                        frame: name,
                        what: "empty token",
                    });
                }
                Frame::Connect(Connect {
                    device: DeviceId(f.device.get()),
                    last_seq: (flags & CONNECT_HAS_CURSOR != 0).then(|| Seq(f.last_seq.get())),
                    keepalive_ms: f.keepalive_ms.get(),
                    token,
                })
            }
            FrameKind::ConnAck => {
                let f = exact::<ConnAckFixed>(&body, name)?;
                Frame::ConnAck(ConnAck {
                    user: UserId(f.user.get()),
                    device: DeviceId(f.device.get()),
                    head: Seq(f.head.get()),
                    cursor: (flags & CONNACK_CURSOR_KNOWN != 0).then(|| Seq(f.cursor.get())),
                    max_frame: f.max_frame.get(),
                    push_window: f.push_window.get(),
                    max_pending_sends: f.max_pending_sends.get(),
                    keepalive_ms: f.keepalive_ms.get(),
                    max_sync_limit: f.max_sync_limit.get(),
                })
            }
            FrameKind::Send => {
                let (f, rest) = fixed::<SendFixed>(&body, name)?;
                let field = body.slice(body.len() - rest.len()..);
                let (qos, attrs, payload) = attrs::split(f.qos, field, name)?;
                Frame::Send(Send {
                    client_msg_id: f.client_msg_id.get(),
                    to: UserId(f.to.get()),
                    qos,
                    confirm: flags & SEND_CONFIRM != 0,
                    attrs,
                    payload,
                })
            }
            FrameKind::SendAck => {
                let f = exact::<SendAckFixed>(&body, name)?;
                Frame::SendAck(SendAck {
                    client_msg_id: f.client_msg_id.get(),
                    seq: Seq(f.seq.get()),
                    own_seq: Seq(f.own_seq.get()),
                    result: SendResult::from_u8(f.result).ok_or(ProtoError::Malformed {
                        frame: name,
                        what: "unknown result",
                    })?,
                })
            }
            FrameKind::Push => {
                let (f, rest) = fixed::<PushFixed>(&body, name)?;
                let payload = body.slice(body.len() - rest.len()..);
                Frame::Push(push_from(f, flags, payload)?)
            }
            FrameKind::Ack => Frame::Ack(Seq(exact::<U64Body>(&body, name)?.value.get())),
            FrameKind::Comp => Frame::Comp {
                client_msg_id: exact::<U64Body>(&body, name)?.value.get(),
            },
            FrameKind::Ping => Frame::Ping(exact::<U64Body>(&body, name)?.value.get()),
            FrameKind::Pong => Frame::Pong(exact::<U64Body>(&body, name)?.value.get()),
            FrameKind::Sync => {
                let f = exact::<SyncFixed>(&body, name)?;
                let anchor = Seq(f.anchor.get());
                let direction = match f.direction {
                    0 => SyncDirection::After(anchor),
                    1 => SyncDirection::Latest,
                    2 => SyncDirection::Before(anchor),
                    _ => {
                        return Err(ProtoError::Malformed {
                            frame: name,
                            what: "unknown direction",
                        })
                    }
                };
                Frame::Sync(Sync {
                    request_id: f.request_id.get(),
                    direction,
                    limit: f.limit.get(),
                    read_ahead: flags & SYNC_READ_AHEAD != 0,
                })
            }
            FrameKind::SyncPage => decode_sync_page(flags, body)?,
            FrameKind::Rel => {
                let f = exact::<RelFixed>(&body, name)?;
                Frame::Rel {
                    client_msg_id: f.client_msg_id.get(),
                    to: UserId(f.to.get()),
                }
            }
            FrameKind::Error => {
                let (f, rest) = fixed::<CodeFixed>(&body, name)?;
                Frame::Error(ErrorFrame {
                    code: f.code.get(),
                    message: text(rest, "ERROR message")?,
                })
            }
            FrameKind::Disconnect => {
                let (f, rest) = fixed::<CodeFixed>(&body, name)?;
                Frame::Disconnect(Disconnect {
                    reason: f.code.get(),
                    redirect: text(rest, "DISCONNECT redirect")?,
                })
            }
            FrameKind::Subscribe => Frame::Subscribe(room::decode_subscribe(&body)?),
            FrameKind::SubAck => Frame::SubAck(room::decode_suback(&body)?),
            FrameKind::Unsubscribe => Frame::Unsubscribe {
                room: exact::<U64Body>(&body, name)?.value.get(),
            },
            FrameKind::RoomPush => Frame::RoomPush(room::decode_room_push(&body)?),
            FrameKind::RoomAck => {
                let (room, seq) = room::decode_room_seq(&body, name)?;
                Frame::RoomAck { room, seq }
            }
            FrameKind::RoomLag => {
                let (room, next) = room::decode_room_seq(&body, name)?;
                Frame::RoomLag { room, next }
            }
            FrameKind::ConvList => Frame::ConvList(conversation::decode_convlist(flags, &body)?),
            FrameKind::ConvPage => Frame::ConvPage(conversation::decode_convpage(flags, body)?),
            FrameKind::ConvFetch => Frame::ConvFetch(conversation::decode_convfetch(&body)?),
            FrameKind::ConvMsgs => Frame::ConvMsgs(conversation::decode_convmsgs(flags, body)?),
            FrameKind::Watch => Frame::Watch(presence::decode_watch(&body)?),
            FrameKind::WatchAck => Frame::WatchAck(presence::decode_watch_ack(&body)?),
            FrameKind::Unwatch => Frame::Unwatch(presence::decode_unwatch(&body)?),
            FrameKind::Presence => Frame::Presence(presence::decode_presence(&body)?),
            FrameKind::Filter => Frame::Filter(crate::filter::decode_filter(flags, &body)?),
            FrameKind::Topic => Frame::Topic(crate::filter::decode_topic(&body)?),
            FrameKind::Share => Frame::Share(crate::share::decode_share(flags, &body)?),
            FrameKind::SharePush => Frame::SharePush(crate::share::decode_share_push(&body)?),
            FrameKind::ShareAck => Frame::ShareAck(crate::share::decode_share_ack(&body)?),
        })
    }
}

fn allowed_flags(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Connect => CONNECT_HAS_CURSOR,
        FrameKind::ConnAck => CONNACK_CURSOR_KNOWN,
        FrameKind::Send => SEND_CONFIRM,
        FrameKind::Push => PUSH_ECHO | PUSH_RETRANSMIT,
        FrameKind::Sync => SYNC_READ_AHEAD,
        FrameKind::Filter => crate::FILTER_REMOVE,
        FrameKind::Share => crate::SHARE_LEAVE | crate::SHARE_PERSISTENT | crate::SHARE_EXPIRES,
        FrameKind::SyncPage => SYNCPAGE_END | SYNCPAGE_GAP,
        FrameKind::ConvList => conversation::CONVLIST_UNREAD_ONLY,
        FrameKind::ConvPage => conversation::CONV_END,
        FrameKind::ConvMsgs => conversation::CONV_END | conversation::CONVMSGS_TRUNCATED,
        _ => 0,
    }
}

fn push_from(f: &PushFixed, flags: u8, field: Bytes) -> Result<Push, ProtoError> {
    let (qos, attrs, payload) = attrs::split(f.qos, field, "PUSH")?;
    Ok(Push {
        seq: Seq(f.seq.get()),
        prev_seq: Seq(f.prev_seq.get()),
        from: UserId(f.from.get()),
        from_device: DeviceId(f.from_device.get()),
        to: UserId(f.to.get()),
        client_msg_id: f.client_msg_id.get(),
        ts_ms: f.ts_ms.get(),
        qos,
        echo: flags & PUSH_ECHO != 0,
        retransmit: flags & PUSH_RETRANSMIT != 0,
        attrs,
        payload,
    })
}

fn decode_sync_page(flags: u8, body: Bytes) -> Result<Frame, ProtoError> {
    let name = FrameKind::SyncPage.name();
    let (f, rest) = fixed::<SyncPageFixed>(&body, name)?;
    let items = decode_items(name, f.count.get() as usize, &body, rest)?;
    Ok(Frame::SyncPage(SyncPage {
        request_id: f.request_id.get(),
        head: Seq(f.head.get()),
        end: flags & SYNCPAGE_END != 0,
        gap: flags & SYNCPAGE_GAP != 0,
        items,
    }))
}

/// Decodes `count` message items (PUSH fixed part, u32 length, payload)
/// that fill `rest`, the tail of `body`: payloads are slices of `body`.
pub(super) fn decode_items(
    name: &'static str,
    count: usize,
    body: &Bytes,
    mut rest: &[u8],
) -> Result<Vec<Push>, ProtoError> {
    // Each item takes at least its fixed part and length: bound the
    // allocation by what the body can actually hold.
    let min_item = fixed_len::<PushFixed>() + 4;
    if count > rest.len() / min_item {
        return Err(ProtoError::Malformed {
            frame: name,
            what: "count exceeds body",
        });
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let (item, after) =
            PushFixed::ref_from_prefix(rest).map_err(|_| ProtoError::Malformed {
                frame: name,
                what: "truncated item",
            })?;
        let (len, after) = u32::read_from_prefix(after).map_err(|_| ProtoError::Malformed {
            frame: name,
            what: "truncated item length",
        })?;
        let len = u32::from_le(len) as usize;
        if len > after.len() {
            return Err(ProtoError::Malformed {
                frame: name,
                what: "item payload exceeds body",
            });
        }
        let start = body.len() - after.len();
        let payload = body.slice(start..start + len);
        items.push(push_from(item, 0, payload)?);
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err(ProtoError::Malformed {
            frame: name,
            what: "trailing bytes",
        });
    }
    Ok(items)
}

/// Reads a fixed part at the start of `body`, returning it and the rest.
fn fixed<'a, T: FromBytes + KnownLayout + Immutable>(
    body: &'a [u8],
    frame: &'static str,
) -> Result<(&'a T, &'a [u8]), ProtoError> {
    T::ref_from_prefix(body).map_err(|_| ProtoError::Malformed {
        frame,
        what: "body shorter than its fixed part",
    })
}

/// Reads a body that is exactly one fixed part.
fn exact<'a, T: FromBytes + KnownLayout + Immutable>(
    body: &'a [u8],
    frame: &'static str,
) -> Result<&'a T, ProtoError> {
    T::ref_from_bytes(body).map_err(|_| ProtoError::Malformed {
        frame,
        what: "body length differs from its fixed size",
    })
}

fn text(rest: &[u8], field: &'static str) -> Result<String, ProtoError> {
    std::str::from_utf8(rest)
        .map(str::to_owned)
        .map_err(|_| ProtoError::InvalidUtf8 { field })
}
