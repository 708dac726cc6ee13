//! Typed frames: what a decoded frame means, and how each is encoded.
//!
//! Decoding takes the whole frame as one `Bytes` (header included) and
//! slices payloads out of it, so a payload is never copied between the
//! receive buffer and the delivery core.

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::error::{ErrorCode, ProtoError};
use super::header::*;
use super::room::{self, RoomPush, SubAck, Subscribe};
use super::types::{DeviceId, Qos, Seq, UserId};

/// Frame type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client opens a session.
    Connect = 0x01,
    /// Gateway accepts a session.
    ConnAck = 0x02,
    /// Client sends a message.
    Send = 0x03,
    /// Gateway confirms a SEND is stored (QoS 1/2) or refused.
    SendAck = 0x04,
    /// Gateway delivers one inbox message.
    Push = 0x05,
    /// Client acknowledges its inbox up to a sequence (cumulative).
    Ack = 0x06,
    /// Client asks for a page of its inbox.
    Sync = 0x07,
    /// Gateway answers a SYNC.
    SyncPage = 0x08,
    /// Client releases a QoS 2 send (like MQTT PUBREL).
    Rel = 0x09,
    /// Gateway confirms the release (like MQTT PUBCOMP).
    Comp = 0x0A,
    /// Keepalive probe (either side).
    Ping = 0x0B,
    /// Keepalive answer.
    Pong = 0x0C,
    /// A typed error; the sender may close afterwards.
    Error = 0x0D,
    /// Orderly close with a reason and an optional redirect.
    Disconnect = 0x0E,
    /// Client follows a room.
    Subscribe = 0x0F,
    /// Gateway confirms a SUBSCRIBE.
    SubAck = 0x10,
    /// Client stops following a room.
    Unsubscribe = 0x11,
    /// Gateway delivers one room message.
    RoomPush = 0x12,
    /// Client acknowledges a room up to a sequence (QoS 1 subscriptions).
    RoomAck = 0x13,
    /// Gateway dropped a slow subscription from live delivery.
    RoomLag = 0x14,
}

impl FrameKind {
    /// Parses a type byte.
    pub fn from_u8(v: u8) -> Option<FrameKind> {
        use FrameKind::*;
        Some(match v {
            0x01 => Connect,
            0x02 => ConnAck,
            0x03 => Send,
            0x04 => SendAck,
            0x05 => Push,
            0x06 => Ack,
            0x07 => Sync,
            0x08 => SyncPage,
            0x09 => Rel,
            0x0A => Comp,
            0x0B => Ping,
            0x0C => Pong,
            0x0D => Error,
            0x0E => Disconnect,
            0x0F => Subscribe,
            0x10 => SubAck,
            0x11 => Unsubscribe,
            0x12 => RoomPush,
            0x13 => RoomAck,
            0x14 => RoomLag,
            _ => return None,
        })
    }

    /// Name used in errors and logs.
    pub fn name(self) -> &'static str {
        use FrameKind::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Send => "SEND",
            SendAck => "SENDACK",
            Push => "PUSH",
            Ack => "ACK",
            Sync => "SYNC",
            SyncPage => "SYNCPAGE",
            Rel => "REL",
            Comp => "COMP",
            Ping => "PING",
            Pong => "PONG",
            Error => "ERROR",
            Disconnect => "DISCONNECT",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            RoomPush => "ROOMPUSH",
            RoomAck => "ROOMACK",
            RoomLag => "ROOMLAG",
        }
    }
}

/// CONNECT flag: `last_seq` is meaningful (the device holds a cursor).
pub const CONNECT_HAS_CURSOR: u8 = 0x01;
/// CONNACK flag: the gateway knows a cursor for this device.
pub const CONNACK_CURSOR_KNOWN: u8 = 0x01;
/// SEND flag: answer this QoS 0 SEND with a SENDACK too (`Stored` with
/// seq 0 once it is handed to delivery, or `Forbidden`); QoS 1/2 SENDs are
/// always answered.
pub const SEND_CONFIRM: u8 = 0x01;
/// PUSH flag: this device sent the message itself; payload omitted.
pub const PUSH_ECHO: u8 = 0x01;
/// PUSH flag: a retransmission of an unacknowledged push.
pub const PUSH_RETRANSMIT: u8 = 0x02;
/// SYNCPAGE flag: nothing further exists in the requested direction.
pub const SYNCPAGE_END: u8 = 0x01;
/// SYNCPAGE flag: sequences are missing (gone: lost to damage or removed
/// by retention) between the anchor and the first item, between items,
/// or, for an empty `After` page, between the anchor and `head`.
pub const SYNCPAGE_GAP: u8 = 0x02;
/// SYNC flag: read ahead. An `After` page is read without acknowledging
/// its anchor; the client acknowledges with ACK as its application takes
/// the items (issue #24: reading ahead is not acknowledging).
pub const SYNC_READ_AHEAD: u8 = 0x01;

/// CONNECT: open a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// This device; must match the token's device claim.
    pub device: DeviceId,
    /// Highest inbox sequence the device holds, `None` for a new device.
    pub last_seq: Option<Seq>,
    /// Keepalive the client intends (ms); the gateway may lower it.
    pub keepalive_ms: u32,
    /// Signed token (JWT HS256 compact form).
    pub token: String,
}

/// CONNACK: the session is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Authenticated user.
    pub user: UserId,
    /// Authenticated device.
    pub device: DeviceId,
    /// Highest durable sequence in the user's inbox.
    pub head: Seq,
    /// The gateway's cursor for this device, if it has one.
    pub cursor: Option<Seq>,
    /// Largest frame the gateway accepts (header included).
    pub max_frame: u32,
    /// Unacknowledged pushes the gateway keeps in flight.
    pub push_window: u32,
    /// SENDs the client may have awaiting SENDACK.
    pub max_pending_sends: u32,
    /// Keepalive in force (ms).
    pub keepalive_ms: u32,
    /// Largest SYNC `limit` accepted.
    pub max_sync_limit: u32,
}

/// SEND: a message to another user (or to oneself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Send {
    /// Sender-chosen id, unique per (user, device); the dedup key.
    pub client_msg_id: u64,
    /// Addressee.
    pub to: UserId,
    /// Delivery guarantee.
    pub qos: Qos,
    /// QoS 0: answer with a SENDACK all the same ([`SEND_CONFIRM`]).
    pub confirm: bool,
    /// Opaque payload.
    pub payload: Bytes,
}

/// Outcome of a SEND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SendResult {
    /// Stored durably now.
    Stored = 0,
    /// Stored earlier (a retry); `seq` is the original.
    Duplicate = 1,
    /// Not stored: storage unavailable; retry later.
    StorageUnavailable = 2,
    /// Not stored: not allowed.
    Forbidden = 3,
    /// Not stored: this client_msg_id was used before for a different
    /// message (another addressee, QoS or payload). Never retry it.
    Conflict = 4,
}

impl SendResult {
    fn from_u8(v: u8) -> Option<SendResult> {
        Some(match v {
            0 => SendResult::Stored,
            1 => SendResult::Duplicate,
            2 => SendResult::StorageUnavailable,
            3 => SendResult::Forbidden,
            4 => SendResult::Conflict,
            _ => return None,
        })
    }

    /// True when the message is stored (now or before).
    pub fn is_stored(self) -> bool {
        matches!(self, SendResult::Stored | SendResult::Duplicate)
    }
}

/// SENDACK: the outcome of one SEND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendAck {
    /// Echo of SEND.client_msg_id.
    pub client_msg_id: u64,
    /// Sequence in the addressee's inbox (0 if not stored).
    pub seq: Seq,
    /// Sequence of the copy in the sender's own inbox (0 if none).
    pub own_seq: Seq,
    /// Outcome.
    pub result: SendResult,
}

/// PUSH: one inbox message (also the item type of SYNCPAGE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Position in the receiving user's inbox (0 for QoS 0).
    pub seq: Seq,
    /// The previous position in the same inbox (`seq - 1` for stored messages).
    pub prev_seq: Seq,
    /// Sending user.
    pub from: UserId,
    /// Sending device.
    pub from_device: DeviceId,
    /// Addressee of the original send.
    pub to: UserId,
    /// Sender's id for the send.
    pub client_msg_id: u64,
    /// Gateway receive time (ms since the Unix epoch).
    pub ts_ms: u64,
    /// QoS of the send.
    pub qos: Qos,
    /// This device sent it; the payload is omitted.
    pub echo: bool,
    /// A retransmission.
    pub retransmit: bool,
    /// Opaque payload (empty when `echo`).
    pub payload: Bytes,
}

/// Which part of the inbox a SYNC asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDirection {
    /// Messages with `seq > anchor`, oldest first. Also acknowledges
    /// `anchor`, unless the SYNC reads ahead ([`Sync::read_ahead`]).
    After(Seq),
    /// The newest messages.
    Latest,
    /// Messages with `seq < anchor`, the newest of those.
    Before(Seq),
}

/// SYNC: ask for a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sync {
    /// Echoed in the SYNCPAGE.
    pub request_id: u32,
    /// Which messages.
    pub direction: SyncDirection,
    /// Page size (1..=gateway maximum).
    pub limit: u32,
    /// Read only: an `After` SYNC does not acknowledge its anchor
    /// ([`SYNC_READ_AHEAD`]); no effect on `Latest` and `Before`.
    pub read_ahead: bool,
}

/// SYNCPAGE: one page of the inbox, ascending by seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncPage {
    /// The SYNC this answers.
    pub request_id: u32,
    /// Highest durable sequence of the inbox when the page was read.
    pub head: Seq,
    /// Nothing further exists in the requested direction.
    pub end: bool,
    /// Sequences are missing before or among the items (see [`SYNCPAGE_GAP`]).
    pub gap: bool,
    /// The messages (flags `echo`/`retransmit` are always false here).
    pub items: Vec<Push>,
}

/// ERROR: a typed error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// Raw wire code (see [`ErrorCode`]); unknown codes are kept.
    pub code: u16,
    /// Human-readable context.
    pub message: String,
}

/// DISCONNECT: orderly close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Raw wire reason (see [`ErrorCode`]).
    pub reason: u16,
    /// Where to reconnect (host:port), empty for "anywhere".
    pub redirect: String,
}

/// A decoded frame (see [`FrameKind`] for who sends which).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Open a session.
    Connect(Connect),
    /// Session open.
    ConnAck(ConnAck),
    /// Send a message.
    Send(Send),
    /// Outcome of a SEND.
    SendAck(SendAck),
    /// One inbox message.
    Push(Push),
    /// Cumulative acknowledgement of the inbox up to this sequence.
    Ack(Seq),
    /// Request a page of the inbox.
    Sync(Sync),
    /// One page of the inbox.
    SyncPage(SyncPage),
    /// QoS 2 release of a stored send.
    Rel {
        /// The released send.
        client_msg_id: u64,
        /// Its addressee.
        to: UserId,
    },
    /// QoS 2 release confirmed.
    Comp {
        /// The released send.
        client_msg_id: u64,
    },
    /// Keepalive probe with a nonce.
    Ping(u64),
    /// Keepalive answer with the probe's nonce.
    Pong(u64),
    /// Typed error.
    Error(ErrorFrame),
    /// Orderly close.
    Disconnect(Disconnect),
    /// Follow a room.
    Subscribe(Subscribe),
    /// Subscription in place.
    SubAck(SubAck),
    /// Stop following a room.
    Unsubscribe {
        /// The room.
        room: u64,
    },
    /// One room message.
    RoomPush(RoomPush),
    /// Cumulative acknowledgement of a room up to `seq`.
    RoomAck {
        /// The room.
        room: u64,
        /// Highest sequence processed.
        seq: Seq,
    },
    /// The subscription was dropped from live delivery: re-SUBSCRIBE after
    /// the last sequence processed (the next expected one was `next`).
    RoomLag {
        /// The room.
        room: u64,
        /// The next sequence the subscriber would have received.
        next: Seq,
    },
}

impl Frame {
    /// An ERROR frame for `code` with context.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Frame {
        Frame::Error(ErrorFrame {
            code: code as u16,
            message: message.into(),
        })
    }

    /// A DISCONNECT frame.
    pub fn disconnect(reason: ErrorCode, redirect: impl Into<String>) -> Frame {
        Frame::Disconnect(Disconnect {
            reason: reason as u16,
            redirect: redirect.into(),
        })
    }

    /// The frame's type.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Connect(_) => FrameKind::Connect,
            Frame::ConnAck(_) => FrameKind::ConnAck,
            Frame::Send(_) => FrameKind::Send,
            Frame::SendAck(_) => FrameKind::SendAck,
            Frame::Push(_) => FrameKind::Push,
            Frame::Ack(_) => FrameKind::Ack,
            Frame::Sync(_) => FrameKind::Sync,
            Frame::SyncPage(_) => FrameKind::SyncPage,
            Frame::Rel { .. } => FrameKind::Rel,
            Frame::Comp { .. } => FrameKind::Comp,
            Frame::Ping(_) => FrameKind::Ping,
            Frame::Pong(_) => FrameKind::Pong,
            Frame::Error(_) => FrameKind::Error,
            Frame::Disconnect(_) => FrameKind::Disconnect,
            Frame::Subscribe(_) => FrameKind::Subscribe,
            Frame::SubAck(_) => FrameKind::SubAck,
            Frame::Unsubscribe { .. } => FrameKind::Unsubscribe,
            Frame::RoomPush(_) => FrameKind::RoomPush,
            Frame::RoomAck { .. } => FrameKind::RoomAck,
            Frame::RoomLag { .. } => FrameKind::RoomLag,
        }
    }

    /// Encoded size in bytes, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        match self {
            Frame::Connect(c) => fixed_len::<ConnectFixed>() + c.token.len(),
            Frame::ConnAck(_) => fixed_len::<ConnAckFixed>(),
            Frame::Send(s) => fixed_len::<SendFixed>() + s.payload.len(),
            Frame::SendAck(_) => fixed_len::<SendAckFixed>(),
            Frame::Push(p) => fixed_len::<PushFixed>() + p.payload.len(),
            Frame::Ack(_) | Frame::Comp { .. } | Frame::Ping(_) | Frame::Pong(_) => {
                fixed_len::<U64Body>()
            }
            Frame::Sync(_) => fixed_len::<SyncFixed>(),
            Frame::SyncPage(p) => {
                fixed_len::<SyncPageFixed>()
                    + p.items
                        .iter()
                        .map(|i| fixed_len::<PushFixed>() + 4 + i.payload.len())
                        .sum::<usize>()
            }
            Frame::Rel { .. } => fixed_len::<RelFixed>(),
            Frame::Error(e) => fixed_len::<CodeFixed>() + e.message.len(),
            Frame::Disconnect(d) => fixed_len::<CodeFixed>() + d.redirect.len(),
            Frame::Subscribe(_) => room::SUBSCRIBE_LEN,
            Frame::SubAck(_) => room::SUBACK_LEN,
            Frame::Unsubscribe { .. } => fixed_len::<U64Body>(),
            Frame::RoomPush(p) => room::ROOMPUSH_FIXED_LEN + p.payload.len(),
            Frame::RoomAck { .. } | Frame::RoomLag { .. } => room::ROOM_SEQ_LEN,
        }
    }

    /// Appends the encoded frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let body_len = self.body_len();
        dst.reserve(HEADER_LEN + body_len);
        let header = FrameHeader {
            magic: MAGIC,
            version: VERSION,
            kind: self.kind() as u8,
            flags: self.flags(),
            len: (body_len as u32).into(),
        };
        dst.put_slice(header.as_bytes());
        match self {
            Frame::Connect(c) => {
                let f = ConnectFixed {
                    device: c.device.0.into(),
                    last_seq: c.last_seq.unwrap_or(Seq::ZERO).0.into(),
                    keepalive_ms: c.keepalive_ms.into(),
                };
                dst.put_slice(f.as_bytes());
                dst.put_slice(c.token.as_bytes());
            }
            Frame::ConnAck(a) => {
                let f = ConnAckFixed {
                    user: a.user.0.into(),
                    device: a.device.0.into(),
                    head: a.head.0.into(),
                    cursor: a.cursor.unwrap_or(Seq::ZERO).0.into(),
                    max_frame: a.max_frame.into(),
                    push_window: a.push_window.into(),
                    max_pending_sends: a.max_pending_sends.into(),
                    keepalive_ms: a.keepalive_ms.into(),
                    max_sync_limit: a.max_sync_limit.into(),
                };
                dst.put_slice(f.as_bytes());
            }
            Frame::Send(s) => {
                let f = SendFixed {
                    client_msg_id: s.client_msg_id.into(),
                    to: s.to.0.into(),
                    qos: s.qos as u8,
                };
                dst.put_slice(f.as_bytes());
                dst.put_slice(&s.payload);
            }
            Frame::SendAck(a) => {
                let f = SendAckFixed {
                    client_msg_id: a.client_msg_id.into(),
                    seq: a.seq.0.into(),
                    own_seq: a.own_seq.0.into(),
                    result: a.result as u8,
                };
                dst.put_slice(f.as_bytes());
            }
            Frame::Push(p) => {
                dst.put_slice(push_fixed(p).as_bytes());
                dst.put_slice(&p.payload);
            }
            Frame::Ack(seq) => put_u64(dst, seq.0),
            Frame::Comp { client_msg_id } => put_u64(dst, *client_msg_id),
            Frame::Ping(n) | Frame::Pong(n) => put_u64(dst, *n),
            Frame::Sync(s) => {
                let (direction, anchor) = match s.direction {
                    SyncDirection::After(a) => (0u8, a),
                    SyncDirection::Latest => (1, Seq::ZERO),
                    SyncDirection::Before(a) => (2, a),
                };
                let f = SyncFixed {
                    request_id: s.request_id.into(),
                    anchor: anchor.0.into(),
                    limit: s.limit.into(),
                    direction,
                };
                dst.put_slice(f.as_bytes());
            }
            Frame::SyncPage(p) => {
                let f = SyncPageFixed {
                    request_id: p.request_id.into(),
                    head: p.head.0.into(),
                    count: (p.items.len() as u32).into(),
                };
                dst.put_slice(f.as_bytes());
                for item in &p.items {
                    dst.put_slice(push_fixed(item).as_bytes());
                    dst.put_u32_le(item.payload.len() as u32);
                    dst.put_slice(&item.payload);
                }
            }
            Frame::Rel { client_msg_id, to } => {
                let f = RelFixed {
                    client_msg_id: (*client_msg_id).into(),
                    to: to.0.into(),
                };
                dst.put_slice(f.as_bytes());
            }
            Frame::Error(e) => {
                dst.put_u16_le(e.code);
                dst.put_slice(e.message.as_bytes());
            }
            Frame::Disconnect(d) => {
                dst.put_u16_le(d.reason);
                dst.put_slice(d.redirect.as_bytes());
            }
            Frame::Subscribe(s) => room::encode_subscribe(s, dst),
            Frame::SubAck(a) => room::encode_suback(a, dst),
            Frame::Unsubscribe { room } => put_u64(dst, *room),
            Frame::RoomPush(p) => room::encode_room_push(p, dst),
            Frame::RoomAck { room, seq } => room::encode_room_seq(*room, *seq, dst),
            Frame::RoomLag { room, next } => room::encode_room_seq(*room, *next, dst),
        }
    }

    /// Encodes into a fresh buffer (tests, one-off frames).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b);
        b.freeze()
    }

    fn flags(&self) -> u8 {
        match self {
            Frame::Connect(c) if c.last_seq.is_some() => CONNECT_HAS_CURSOR,
            Frame::ConnAck(a) if a.cursor.is_some() => CONNACK_CURSOR_KNOWN,
            Frame::Send(s) if s.confirm => SEND_CONFIRM,
            Frame::Push(p) => {
                (if p.echo { PUSH_ECHO } else { 0 })
                    | (if p.retransmit { PUSH_RETRANSMIT } else { 0 })
            }
            Frame::Sync(s) if s.read_ahead => SYNC_READ_AHEAD,
            Frame::SyncPage(p) => {
                (if p.end { SYNCPAGE_END } else { 0 }) | (if p.gap { SYNCPAGE_GAP } else { 0 })
            }
            _ => 0,
        }
    }

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
                Frame::Send(Send {
                    client_msg_id: f.client_msg_id.get(),
                    to: UserId(f.to.get()),
                    qos: qos(f.qos)?,
                    confirm: flags & SEND_CONFIRM != 0,
                    payload: body.slice(body.len() - rest.len()..),
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
        FrameKind::SyncPage => SYNCPAGE_END | SYNCPAGE_GAP,
        _ => 0,
    }
}

fn push_fixed(p: &Push) -> PushFixed {
    PushFixed {
        seq: p.seq.0.into(),
        prev_seq: p.prev_seq.0.into(),
        from: p.from.0.into(),
        from_device: p.from_device.0.into(),
        to: p.to.0.into(),
        client_msg_id: p.client_msg_id.into(),
        ts_ms: p.ts_ms.into(),
        qos: p.qos as u8,
    }
}

fn push_from(f: &PushFixed, flags: u8, payload: Bytes) -> Result<Push, ProtoError> {
    Ok(Push {
        seq: Seq(f.seq.get()),
        prev_seq: Seq(f.prev_seq.get()),
        from: UserId(f.from.get()),
        from_device: DeviceId(f.from_device.get()),
        to: UserId(f.to.get()),
        client_msg_id: f.client_msg_id.get(),
        ts_ms: f.ts_ms.get(),
        qos: qos(f.qos)?,
        echo: flags & PUSH_ECHO != 0,
        retransmit: flags & PUSH_RETRANSMIT != 0,
        payload,
    })
}

fn decode_sync_page(flags: u8, body: Bytes) -> Result<Frame, ProtoError> {
    let name = FrameKind::SyncPage.name();
    let (f, mut rest) = fixed::<SyncPageFixed>(&body, name)?;
    let count = f.count.get() as usize;
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
    Ok(Frame::SyncPage(SyncPage {
        request_id: f.request_id.get(),
        head: Seq(f.head.get()),
        end: flags & SYNCPAGE_END != 0,
        gap: flags & SYNCPAGE_GAP != 0,
        items,
    }))
}

fn put_u64(dst: &mut BytesMut, v: u64) {
    dst.put_u64_le(v);
}

fn qos(v: u8) -> Result<Qos, ProtoError> {
    Qos::from_u8(v).ok_or(ProtoError::InvalidQos(v))
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
