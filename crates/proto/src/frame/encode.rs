//! Frames to bytes.

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::IntoBytes;

use super::conversation as conv;
use super::*;
use crate::attrs;
use crate::header::*;
use crate::{presence, room};

impl Frame {
    /// Encoded size in bytes, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        match self {
            Frame::Connect(c) => fixed_len::<ConnectFixed>() + c.token.len(),
            Frame::ConnAck(_) => fixed_len::<ConnAckFixed>(),
            Frame::Send(s) => {
                fixed_len::<SendFixed>() + attrs::encoded_len(&s.attrs) + s.payload.len()
            }
            Frame::SendAck(_) => fixed_len::<SendAckFixed>(),
            Frame::Push(p) => {
                fixed_len::<PushFixed>() + attrs::encoded_len(&p.attrs) + p.payload.len()
            }
            Frame::Ack(_) | Frame::Comp { .. } | Frame::Ping(_) | Frame::Pong(_) => {
                fixed_len::<U64Body>()
            }
            Frame::Sync(_) => fixed_len::<SyncFixed>(),
            Frame::SyncPage(p) => {
                fixed_len::<SyncPageFixed>() + p.items.iter().map(item_len).sum::<usize>()
            }
            Frame::Rel { .. } => fixed_len::<RelFixed>(),
            Frame::Error(e) => fixed_len::<CodeFixed>() + e.message.len(),
            Frame::Disconnect(d) => fixed_len::<CodeFixed>() + d.redirect.len(),
            Frame::Subscribe(_) => room::SUBSCRIBE_LEN,
            Frame::SubAck(_) => room::SUBACK_LEN,
            Frame::Unsubscribe { .. } => fixed_len::<U64Body>(),
            Frame::RoomPush(p) => {
                room::ROOMPUSH_FIXED_LEN + attrs::encoded_len(&p.attrs) + p.payload.len()
            }
            Frame::RoomAck { .. } | Frame::RoomLag { .. } => room::ROOM_SEQ_LEN,
            Frame::ConvList(_) => conv::CONVLIST_LEN,
            Frame::ConvPage(p) => conv::convpage_len(p),
            Frame::ConvFetch(_) => conv::CONVFETCH_LEN,
            Frame::ConvMsgs(p) => conv::convmsgs_len(p),
            Frame::Watch(w) => presence::watch_len(w),
            Frame::WatchAck(_) => presence::WATCHACK_LEN,
            Frame::Unwatch(users) => presence::unwatch_len(users),
            Frame::Presence(p) => presence::presence_len(p),
            Frame::Filter(f) => f.filter.len(),
            Frame::Topic(t) => crate::filter::TOPIC_FIXED_LEN + t.name.len(),
            Frame::Share(s) => crate::share::share_len(s),
            Frame::SharePush(p) => {
                crate::share::SHAREPUSH_GROUP_LEN
                    + room::ROOMPUSH_FIXED_LEN
                    + attrs::encoded_len(&p.push.attrs)
                    + p.push.payload.len()
            }
            Frame::ShareAck(_) => crate::share::SHAREACK_LEN,
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
                    qos: attrs::qos_byte(s.qos, &s.attrs),
                };
                dst.put_slice(f.as_bytes());
                attrs::put(&s.attrs, dst);
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
                attrs::put(&p.attrs, dst);
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
                    encode_item(item, dst);
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
            Frame::ConvList(l) => conv::encode_convlist(l, dst),
            Frame::ConvPage(p) => conv::encode_convpage(p, dst),
            Frame::ConvFetch(c) => conv::encode_convfetch(c, dst),
            Frame::ConvMsgs(p) => conv::encode_convmsgs(p, dst),
            Frame::Watch(w) => presence::encode_watch(w, dst),
            Frame::WatchAck(a) => presence::encode_watch_ack(a, dst),
            Frame::Unwatch(users) => presence::encode_unwatch(users, dst),
            Frame::Presence(p) => presence::encode_presence(p, dst),
            Frame::Filter(f) => dst.put_slice(f.filter.as_bytes()),
            Frame::Topic(t) => crate::filter::encode_topic(t, dst),
            Frame::Share(s) => crate::share::encode_share(s, dst),
            Frame::SharePush(p) => {
                crate::share::encode_share_push_group(p, dst);
                room::encode_room_push(&p.push, dst);
            }
            Frame::ShareAck(a) => crate::share::encode_share_ack(a, dst),
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
            Frame::ConvList(l) if l.unread_only => conv::CONVLIST_UNREAD_ONLY,
            Frame::ConvPage(p) if p.end => conv::CONV_END,
            Frame::Filter(f) if f.remove => crate::FILTER_REMOVE,
            Frame::Share(s) => crate::share::share_flags(s),
            Frame::ConvMsgs(p) => {
                (if p.end { conv::CONV_END } else { 0 })
                    | (if p.truncated {
                        conv::CONVMSGS_TRUNCATED
                    } else {
                        0
                    })
            }
            _ => 0,
        }
    }
}

pub(super) fn push_fixed(p: &Push) -> PushFixed {
    PushFixed {
        seq: p.seq.0.into(),
        prev_seq: p.prev_seq.0.into(),
        from: p.from.0.into(),
        from_device: p.from_device.0.into(),
        to: p.to.0.into(),
        client_msg_id: p.client_msg_id.into(),
        ts_ms: p.ts_ms.into(),
        qos: attrs::qos_byte(p.qos, &p.attrs),
    }
}

fn put_u64(dst: &mut BytesMut, v: u64) {
    dst.put_u64_le(v);
}

/// Encoded size of one message item of a SYNCPAGE or CONVMSGS.
pub(super) fn item_len(i: &Push) -> usize {
    fixed_len::<PushFixed>() + 4 + attrs::encoded_len(&i.attrs) + i.payload.len()
}

/// Writes one message item of a SYNCPAGE or CONVMSGS: the PUSH fixed part,
/// the payload field's length, the attributes (if any), the payload.
pub(super) fn encode_item(item: &Push, dst: &mut BytesMut) {
    dst.put_slice(push_fixed(item).as_bytes());
    let field = attrs::encoded_len(&item.attrs) + item.payload.len();
    dst.put_u32_le(field as u32);
    attrs::put(&item.attrs, dst);
    dst.put_slice(&item.payload);
}
