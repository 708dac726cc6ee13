//! The will (docs/MQTT.md 2.7): what a connection that ends without a
//! normal DISCONNECT publishes on its session's behalf.
//!
//! Rules:
//! - The will is published as a PUBLISH of the session to the will topic
//!   would be: same mapping (`user/…`, `group/…`, `room/…`, free-form
//!   topics framed with their name, `streams.rs`), same permissions (the
//!   token's grant travels with it; the core checks membership and rooms).
//! - Its v5 message properties (Payload Format Indicator, Message Expiry
//!   Interval, Content Type, Response Topic, Correlation Data, User
//!   Properties in their order; not the Will Delay Interval) are stored
//!   with it as any message's (`Bridge::message_attrs`), so the expiry
//!   counts from when the will is published (the core stamps it then).
//! - Will Retain 1 marks the stored message as published with RETAIN 1
//!   (Retain As Published) and, once the core has stored it (a QoS 0 will
//!   once the room accepted it: the server asks the core to confirm it),
//!   sets the retained message of a room or a free-form topic exactly as a
//!   retained PUBLISH does ([`WillRetain::write`]; an empty payload clears
//!   it). To `user/…` and `group/…` nothing is retained, as for a PUBLISH.
//! - The server publishes it ([`WillMessage`]), waits for its delay, and
//!   makes the retained write: the connection is gone by then.
//! - A will that waits for its delay is kept durably meanwhile
//!   ([`PendingWill`], the value of `StateKey::MqttWill` on the user's
//!   shard), so a restart publishes it when its delay is over; a resumed
//!   session or the published will deletes it.

use bytes::Bytes;

use super::persist::StateWrite;
use super::retained::{room_change, topic_change, TopicRetained};
use super::state::{put_bytes32, Reader, Retained};
use super::streams::stream_room;
use super::topics::Target;
use super::{native_qos, Bridge};
use crate::{QoS, Will};
use surepush_proto::topic_stream::frame_payload;
use surepush_proto::{Qos, UserId, ROOM_BIT};
use surepush_token::AclAction;

/// A will message to publish on the session's behalf.
#[derive(Clone, Debug)]
pub struct WillMessage {
    /// Addressee.
    pub to: UserId,
    /// QoS.
    pub qos: Qos,
    /// Body as stored (a free-form topic's is framed with its name).
    pub payload: Bytes,
    /// Message attributes stored with it: the will's v5 message
    /// properties, and the retain mark for Will Retain 1 (empty for none).
    pub attrs: Bytes,
    /// Native id for the send (unique for the device).
    pub client_msg_id: u64,
    /// The session's token granted publishing to `to` (a room; see
    /// `core::Publisher::User`).
    pub room_grant: bool,
    /// Seconds to wait before publishing it (v5 Will Delay Interval, at
    /// most the Session Expiry Interval: the will goes when the session
    /// ends if that comes first, MQTT 5.0 section 3.1.3.2.2); 0: at once.
    /// A new connection of the session before then cancels it
    /// (MQTT-3.1.3-9): that is the server's to watch.
    pub delay_s: u32,
    /// Will Retain 1 to a room or a free-form topic: the retained message
    /// to set once the will is stored (then publish it with confirmation,
    /// so a QoS 0 will is answered only once its room accepted it).
    pub retain: Option<WillRetain>,
}

/// Where a retained will goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RetainedAt {
    /// A room (wire id).
    Room(UserId),
    /// A free-form topic, by name.
    Topic(String),
}

/// The retained message a will with Will Retain 1 sets (or clears) once it
/// is stored, as a PUBLISH with RETAIN 1 of the session would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WillRetain {
    at: RetainedAt,
    from: UserId,
    qos: QoS,
    /// The v5 message properties (a free-form topic keeps them; a room's
    /// retained message does not, docs/MQTT.md 2.6).
    attrs: Bytes,
    /// Body as published (empty: clears).
    payload: Bytes,
}

impl WillRetain {
    /// The keyed state write that makes it the retained message, for a
    /// will stored at `ts_ms` (ms since the epoch: its Message Expiry
    /// Interval counts from then).
    pub fn write(&self, ts_ms: u64) -> StateWrite {
        let set = !self.payload.is_empty();
        let change = match &self.at {
            RetainedAt::Room(room) => {
                let msg = set.then(|| Retained {
                    from: self.from,
                    qos: self.qos,
                    payload: self.payload.clone(),
                });
                room_change(*room, msg.as_ref())
            }
            RetainedAt::Topic(name) => {
                let msg = set.then(|| TopicRetained {
                    from: self.from,
                    qos: self.qos,
                    ts_ms,
                    attrs: self.attrs.clone(),
                    payload: self.payload.clone(),
                });
                topic_change(name, msg, None)
            }
        };
        StateWrite {
            key: change.key,
            value: change.value,
            report: None,
        }
    }
}

/// A will waiting for its delay: the value of its `StateKey::MqttWill`
/// record.
#[derive(Clone, Debug)]
pub struct PendingWill {
    /// When it is due, ms since the epoch (the connection's end plus its
    /// delay).
    pub due_ms: u64,
    /// The will.
    pub will: WillMessage,
}

/// Layout version of [`PendingWill::encode`].
const PENDING_WILL_V1: u8 = 1;

impl PendingWill {
    /// `[version u8][due_ms u64][to u64][qos u8][client_msg_id u64]
    /// [room_grant u8][attrs][payload][retain]`, each byte string with its
    /// u32 length in front; `retain` is `0`, or `1` and `[where][from
    /// u64][qos u8][attrs][payload]` with `where` `0` and a room's wire id
    /// (u64), or `1` and a topic name; little-endian.
    pub fn encode(&self) -> Bytes {
        let w = &self.will;
        let mut out = Vec::with_capacity(64 + 2 * (w.attrs.len() + w.payload.len()));
        out.push(PENDING_WILL_V1);
        out.extend_from_slice(&self.due_ms.to_le_bytes());
        out.extend_from_slice(&w.to.0.to_le_bytes());
        out.push(w.qos as u8);
        out.extend_from_slice(&w.client_msg_id.to_le_bytes());
        out.push(u8::from(w.room_grant));
        put_bytes32(&mut out, &w.attrs);
        put_bytes32(&mut out, &w.payload);
        match &w.retain {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                match &r.at {
                    RetainedAt::Room(room) => {
                        out.push(0);
                        out.extend_from_slice(&room.0.to_le_bytes());
                    }
                    RetainedAt::Topic(name) => {
                        out.push(1);
                        put_bytes32(&mut out, name.as_bytes());
                    }
                }
                out.extend_from_slice(&r.from.0.to_le_bytes());
                out.push(r.qos as u8);
                put_bytes32(&mut out, &r.attrs);
                put_bytes32(&mut out, &r.payload);
            }
        }
        Bytes::from(out)
    }

    /// Parses [`PendingWill::encode`]'s output; `None` if it is not that.
    /// Its `delay_s` is 0: [`PendingWill::due_ms`] says when it is due.
    pub fn decode(b: &[u8]) -> Option<PendingWill> {
        let mut r = Reader(b);
        if r.u8()? != PENDING_WILL_V1 {
            return None;
        }
        let due_ms = r.u64()?;
        let to = UserId(r.u64()?);
        let qos = Qos::from_u8(r.u8()?)?;
        let client_msg_id = r.u64()?;
        let room_grant = r.u8()? != 0;
        let attrs = r.bytes32()?;
        let payload = r.bytes32()?;
        let retain = match r.u8()? {
            0 => None,
            1 => {
                let at = match r.u8()? {
                    0 => RetainedAt::Room(UserId(r.u64()?)),
                    1 => RetainedAt::Topic(String::from_utf8(r.bytes32()?.to_vec()).ok()?),
                    _ => return None,
                };
                Some(WillRetain {
                    at,
                    from: UserId(r.u64()?),
                    qos: QoS::from_u8(r.u8()?)?,
                    attrs: r.bytes32()?,
                    payload: r.bytes32()?,
                })
            }
            _ => return None,
        };
        r.0.is_empty().then_some(PendingWill {
            due_ms,
            will: WillMessage {
                to,
                qos,
                payload,
                attrs,
                client_msg_id,
                room_grant,
                delay_s: 0,
                retain,
            },
        })
    }
}

impl Bridge {
    /// The will `w` as the server publishes it after `delay_s` seconds;
    /// `None` for a topic that names nothing. Takes a native id.
    pub(super) fn will_message(&mut self, w: &Will, delay_s: u32) -> Option<WillMessage> {
        let name = w.topic.as_str();
        let (to, payload, room_grant, at) = if let Some(room) = stream_room(name) {
            (
                UserId(room | ROOM_BIT),
                frame_payload(name, &w.payload),
                self.topic_allowed(AclAction::Publish, name),
                Some(RetainedAt::Topic(name.to_string())),
            )
        } else {
            let target = Target::parse(name)?;
            let to = target.wire_id();
            let at = matches!(target, Target::Room(_)).then_some(RetainedAt::Room(to));
            (
                to,
                w.payload.clone(),
                self.acl.grants_room(AclAction::Publish, to.0),
                at,
            )
        };
        let retain = at.filter(|_| w.retain).map(|at| WillRetain {
            at,
            from: self.user,
            qos: w.qos,
            attrs: self.message_attrs(&w.properties, false),
            payload: w.payload.clone(),
        });
        let client_msg_id = self.state.next_msg_id;
        self.state.next_msg_id += 1;
        Some(WillMessage {
            to,
            qos: native_qos(w.qos),
            payload,
            attrs: self.message_attrs(&w.properties, w.retain),
            client_msg_id,
            room_grant,
            delay_s,
            retain,
        })
    }
}
