//! The MQTT bridge: one MQTT connection driven as one native session.
//!
//! A [`Bridge`] sits between an MQTT client and the delivery core, sans IO:
//! MQTT packets in ([`Bridge::on_packet`]) become native frames for the core
//! ([`Bridge::poll_core`]); frames the core sends to the session
//! ([`Bridge::on_frame`]) become MQTT packets ([`Bridge::poll_packet`]).
//! Storage, dedup, retransmission, paging and fan-out stay in the core: the
//! bridge only translates and keeps the MQTT-side bookkeeping (packet ids,
//! subscriptions, which pushes the client has acknowledged).
//!
//! Invariants:
//! - the core hears about an inbox message being acknowledged only when the
//!   client has acknowledged it and every earlier one (PUBACK, or PUBREC for
//!   QoS 2), or when this session was never going to get it (no matching
//!   subscription, or its own send); so a message is never acknowledged to
//!   the core before the client has it;
//! - replay streams (issue #24): the next page is read ahead (SYNC with
//!   `read_ahead`, which acknowledges nothing) as soon as fewer than
//!   `BridgeParams::inflight` replayed messages are unacknowledged, and the
//!   acknowledged prefix goes to the core as a cumulative ACK, replay or
//!   live alike; so the bridge holds at most that window plus one page of
//!   a replay, and a page never waits for the previous page's PUBACKs;
//! - QoS 1/2 PUBACK/PUBREC leave only after the core's SENDACK, i.e. after
//!   the message is durable;
//! - the session's own durable state is in the segment log, and a packet
//!   that depends on a change of it leaves only once that change is
//!   durable (`persist.rs` says which).
//!
//! The mapping is specified in docs/MQTT.md.

mod persist;
mod rooms;
mod state;
pub mod topics;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate as mqtt;
use crate::{
    ConnAck, MqttString, Packet, PacketId, Properties, ProtocolLevel, PubReply, Publish, QoS,
    ReasonCode, SubAck, UnsubAck, Will,
};
use foldhash::HashMap as FastHashMap;
pub use persist::StateWrite;
use persist::{Change, Gate};
use rooms::RoomTrack;
use state::{Inbound, Reader};
pub use state::{Retained, SessionState};
use surepush_proto as proto;
use surepush_proto::{
    ConnAck as NativeConnAck, DeviceId, ErrorCode, Frame, Push, Qos, SendAck, SendResult, Seq,
    SubResult, SubscribeFrom, SyncDirection, UserId, ROOM_BIT,
};
use surepush_token::{Acl, AclAction, Claims};
use topics::{room_filter, Target};

/// Limits the bridge works with.
#[derive(Clone, Copy, Debug)]
pub struct BridgeParams {
    /// Items per replay page asked of the core.
    pub page: u32,
    /// Replayed inbox messages a session holds unacknowledged (sent, or
    /// waiting for the client's Receive Maximum) before it stops reading
    /// ahead (`mqtt.inflight`, docs/MQTT.md).
    pub inflight: u32,
    /// Largest MQTT packet accepted (advertised to v5 clients).
    pub max_packet: u32,
    /// Unacknowledged PUBLISHes a client may send (v5 Receive Maximum).
    pub receive_max: u16,
    /// The core's `room_window`: unacknowledged messages of a QoS 1 room
    /// subscription before it counts as slow.
    pub room_window: u32,
}

/// Packets a client may pipeline behind CONNECT before our CONNACK.
const EARLY_PACKETS_MAX: usize = 1024;

/// Topic aliases a v5 client may set (Topic Alias Maximum).
const TOPIC_ALIAS_MAX: u16 = 32;

#[derive(Clone, Debug)]
struct PendingPub {
    packet_id: Option<PacketId>,
    qos: QoS,
    /// Room and retained message to set once stored.
    retain: Option<(u64, Option<Retained>)>,
}

/// What an outbound PUBLISH carries, for when it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Inbox(Seq),
    Room(u64, Seq),
    /// A retained message: nothing to acknowledge to the core.
    Retained,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// QoS 1, awaiting PUBACK.
    Ack,
    /// QoS 2, awaiting PUBREC.
    Rec,
    /// QoS 2, PUBREL sent, awaiting PUBCOMP.
    Comp,
}

#[derive(Clone, Copy, Debug)]
struct Outbound {
    what: Delivery,
    stage: Stage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Waiting for the core's CONNACK.
    Connecting,
    /// Replaying the inbox page by page.
    Replay {
        /// The SYNC whose page is awaited (or came last).
        request: u32,
        /// The read position: the last item read (or the anchor).
        last: Seq,
        /// The page of `request` has not come yet.
        asked: bool,
    },
    /// Live pushes.
    Live,
}

#[derive(Debug)]
struct PendingSubAck {
    packet_id: PacketId,
    reasons: Vec<ReasonCode>,
    /// Rooms whose native SUBACK is outstanding, with the index of their
    /// filter's reason code.
    rooms: Vec<(u64, usize)>,
}

/// How a connection's session ends, for the server.
#[derive(Debug)]
pub struct Finished {
    /// What becomes of the session state.
    pub keep: Keep,
    /// The log write that records `keep` (append it at once; nobody waits
    /// for it), if the log must change.
    pub write: Option<StateWrite>,
    /// The will to publish (the connection ended without DISCONNECT).
    pub will: Option<WillMessage>,
}

/// What becomes of a session when its connection ends.
#[derive(Debug)]
pub enum Keep {
    /// A persistent session: keep this state for the next connection.
    Save(SessionState),
    /// A clean session: forget any stored state.
    Forget,
    /// Another connection took the session over: leave its state alone.
    Nothing,
}

/// A will message to publish on the session's behalf.
#[derive(Clone, Debug)]
pub struct WillMessage {
    /// Addressee.
    pub to: UserId,
    /// QoS.
    pub qos: Qos,
    /// Body.
    pub payload: Bytes,
    /// Native id for the send (unique for the device).
    pub client_msg_id: u64,
    /// The session's token granted publishing to `to` (a room; see
    /// `core::Publisher::User`).
    pub room_grant: bool,
}

/// Checks a CONNECT before the session starts; `Some(code)` refuses it with
/// a CONNACK carrying `code` (already in the right protocol's numbering).
pub fn refuse_connect(c: &mqtt::Connect) -> Option<ReasonCode> {
    let v5 = c.protocol_level.is_v5();
    if v5 && c.properties.authentication_method.is_some() {
        // Enhanced authentication is not supported (MQTT-4.12.0-1).
        return Some(ReasonCode::BAD_AUTHENTICATION_METHOD);
    }
    if !v5 && c.client_id.is_empty() && !c.clean_start {
        return Some(ReasonCode(0x02)); // v3.1.1: identifier rejected
    }
    if let Some(w) = &c.will {
        if Target::parse(w.topic.as_str()).is_none() {
            return Some(if v5 {
                ReasonCode::TOPIC_NAME_INVALID
            } else {
                ReasonCode(0x05) // v3.1.1: not authorized
            });
        }
    }
    None
}

/// The CONNACK code for a refused token.
pub fn bad_credentials(level: ProtocolLevel) -> ReasonCode {
    if level.is_v5() {
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    } else {
        ReasonCode(0x04)
    }
}

/// One MQTT connection's bridge. See the module docs.
#[derive(Debug)]
pub struct Bridge {
    level: ProtocolLevel,
    user: UserId,
    device: DeviceId,
    /// What the session's token grants (for its will; the core checks the
    /// session's own sends and subscriptions).
    acl: Acl,
    params: BridgeParams,
    state: SessionState,
    persistent: bool,
    taken_over: bool,
    session_present: bool,
    client_id_assigned: Option<String>,
    client_keep_alive: u16,
    client_receive_max: usize,
    client_max_packet: usize,
    will: Option<Will>,
    graceful: bool,
    closed: bool,
    mode: Mode,
    next_request: u32,
    /// Inbox messages delivered and not yet acknowledged: (seq, done).
    inbox: VecDeque<(Seq, bool)>,
    /// Highest inbox seq seen.
    seen: Seq,
    rooms: BTreeMap<u64, RoomTrack>,
    inflight: FastHashMap<u16, Outbound>,
    /// PUBLISHes beyond the client's Receive Maximum.
    waiting: VecDeque<(Publish, Delivery)>,
    /// Payload bytes in `waiting` (output held here, not yet in the
    /// connection's buffer: it counts against the same budgets).
    waiting_bytes: usize,
    /// The connection's output drained since the last ROOMLAG.
    output_drained: bool,
    /// A packet came since the last frame for the core (keep alive).
    heard: bool,
    /// Inbound PUBLISHes awaiting the core's SENDACK, by native id.
    sends: FastHashMap<u64, PendingPub>,
    /// Retained-message changes to make durable before the packets queued
    /// after them go out: (room, message or `None` to clear).
    retains: VecDeque<(u64, Option<Retained>)>,
    /// Rooms whose retained message the new subscription should get.
    retained_wanted: BTreeSet<u64>,
    /// Rooms whose retained message the server should hand in
    /// ([`Bridge::deliver_retained`]).
    retained_queries: VecDeque<u64>,
    /// Inbound QoS 2 releases awaiting COMP: client_msg_id → packet id.
    releases: FastHashMap<u64, PacketId>,
    subacks: VecDeque<PendingSubAck>,
    /// Packets that arrived before the CONNACK, handled after it.
    early: VecDeque<Packet>,
    /// Inbound topic aliases (MQTT 5), index = alias - 1.
    aliases: Vec<Option<MqttString>>,
    /// What the durable state's changes hold back (`persist.rs`).
    gate: Gate,
    next_pid: u16,
    to_core: VecDeque<Frame>,
    to_client: VecDeque<Packet>,
}

impl Bridge {
    /// Starts the bridge for an accepted CONNECT (`token` already verified:
    /// `claims` are its claims). `stored` is the session kept from a
    /// previous connection, if any (with a clean start too: it is then
    /// replaced, or deleted). The native CONNECT is queued for the core.
    pub fn new(
        connect: mqtt::Connect,
        token: String,
        claims: Claims,
        stored: Option<SessionState>,
        msg_id_base: u64,
        params: BridgeParams,
    ) -> Bridge {
        let Claims {
            user, device, acl, ..
        } = claims;
        let v5 = connect.protocol_level.is_v5();
        let expiry_s = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let persistent = expiry_s > 0;
        let had_stored = stored.is_some();
        let resumed = stored.filter(|_| !connect.clean_start);
        let session_present = resumed.is_some();
        let mut state = resumed.unwrap_or_else(|| SessionState::new(msg_id_base));
        state.next_msg_id = state.next_msg_id.max(msg_id_base);
        state.expiry_s = expiry_s;
        state.ended_ms = 0;
        let client_id_assigned = connect
            .client_id
            .is_empty()
            .then(|| format!("surepush-{}-{}", user.0, device.0));
        let client_receive_max = connect
            .properties
            .receive_maximum
            .map_or(65_535, |n| usize::from(n.get()));
        let client_max_packet = connect
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |n| n.get() as usize);
        let mut b = Bridge {
            level: connect.protocol_level,
            user,
            device,
            acl,
            params,
            state,
            persistent,
            taken_over: false,
            session_present,
            client_id_assigned,
            client_keep_alive: connect.keep_alive,
            client_receive_max,
            client_max_packet,
            will: connect.will,
            graceful: false,
            closed: false,
            mode: Mode::Connecting,
            next_request: 0,
            inbox: VecDeque::new(),
            seen: Seq::ZERO,
            rooms: BTreeMap::new(),
            inflight: FastHashMap::default(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            output_drained: true,
            heard: false,
            sends: FastHashMap::default(),
            retains: VecDeque::new(),
            retained_wanted: BTreeSet::new(),
            retained_queries: VecDeque::new(),
            releases: FastHashMap::default(),
            subacks: VecDeque::new(),
            early: VecDeque::new(),
            aliases: vec![None; if v5 { usize::from(TOPIC_ALIAS_MAX) } else { 0 }],
            gate: Gate::default(),
            next_pid: 0,
            to_core: VecDeque::new(),
            to_client: VecDeque::new(),
        };
        b.to_core.push_back(Frame::Connect(proto::Connect {
            device,
            last_seq: None,
            keepalive_ms: u32::from(connect.keep_alive) * 1000,
            token,
        }));
        b.gate.logged = had_stored;
        b
    }

    /// The protocol level of the connection.
    pub fn level(&self) -> ProtocolLevel {
        self.level
    }

    /// The next native frame for the core. Poll until `None` after every
    /// batch of packets: a batch without frames of its own yields one PING
    /// (the keep alive), not one per packet, and acknowledgements within a
    /// batch are merged ([`Bridge::ack_to_core`]): a client acknowledging a
    /// fast catch-up packet by packet must not reach the core's frame rate
    /// limit on the server's account (issue #25).
    pub fn poll_core(&mut self) -> Option<Frame> {
        if self.gate.core_held() {
            // Held for a state write (`persist.rs`); so is the keep alive.
            return self.gate.next_frame(&mut self.to_core);
        }
        let frame = self.to_core.pop_front();
        if frame.is_some() || std::mem::take(&mut self.heard) {
            self.heard = false;
            return frame.or(Some(Frame::Ping(0)));
        }
        None
    }

    /// Queues a cumulative acknowledgement (ACK, or ROOMACK of one room)
    /// for the core, replacing an earlier one of the same kind among the
    /// acknowledgements at the end of the queue.
    fn ack_to_core(&mut self, ack: Frame) {
        let same = |f: &Frame| match (f, &ack) {
            (Frame::Ack(_), Frame::Ack(_)) => true,
            (Frame::RoomAck { room: a, .. }, Frame::RoomAck { room: b, .. }) => a == b,
            _ => false,
        };
        let trailing_acks = self
            .to_core
            .iter_mut()
            .rev()
            .take_while(|f| matches!(f, Frame::Ack(_) | Frame::RoomAck { .. }));
        for f in trailing_acks {
            if same(f) {
                *f = ack;
                return;
            }
        }
        self.to_core.push_back(ack);
    }

    /// The next MQTT packet for the client (none while what is queued
    /// waits for a state write: see `persist.rs`).
    pub fn poll_packet(&mut self) -> Option<Packet> {
        self.gate.next_packet(&mut self.to_client)
    }

    /// Output held in the bridge (PUBLISHes beyond the client's Receive
    /// Maximum), in payload bytes: it counts against the connection's
    /// output budgets as if it were queued on the socket.
    pub fn held_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// The server drops the connection because the client does not read
    /// its output (issue #25): whatever is queued for the client is
    /// withdrawn, and a v5 client gets DISCONNECT 0x97 Quota exceeded (a
    /// 3.1.1 connection is just closed). The session itself is kept as for
    /// any connection that ends without DISCONNECT.
    pub fn drop_for_quota(&mut self) {
        self.to_client.retain(|p| matches!(p, Packet::ConnAck(_)));
        self.server_disconnect(
            ReasonCode::QUOTA_EXCEEDED,
            "the client does not read: output buffer full",
        );
    }

    /// The client sent bytes that are not MQTT: DISCONNECT with the
    /// error's reason (v5) and close.
    pub fn on_decode_error(&mut self, e: &mqtt::MqttError) {
        self.close_session(e.reason_code(), &e.to_string());
    }

    /// The session's (user, device).
    pub fn session(&self) -> (UserId, DeviceId) {
        (self.user, self.device)
    }

    /// Whether the session outlives the connection.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// Another connection of the same (user, device) takes over: this one
    /// ends (its will is published: it did not DISCONNECT, MQTT-3.1.2-8)
    /// and keeps nothing; its state moves on if the session was persistent
    /// (a clean session ends with its connection, MQTT-3.1.2-6).
    pub fn take_over(&mut self) -> Option<SessionState> {
        self.taken_over = true;
        self.persistent.then(|| self.state.clone())
    }

    /// CONNACK with a failure code (already in the connection's protocol's
    /// numbering for v5; mapped for 3.1.1), then close.
    fn refuse_session(&mut self, reason: ReasonCode) {
        // The session never opened: no will, and its stored state (if
        // any) is left as it was.
        self.graceful = true;
        self.taken_over = true;
        let code = if self.level.is_v5() {
            reason
        } else if reason == ReasonCode::NOT_AUTHORIZED {
            ReasonCode(0x05)
        } else {
            ReasonCode(0x03) // server unavailable
        };
        self.closed = true;
        self.to_client.push_back(Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: Properties::default(),
        }));
    }

    /// The bridge asked for the connection to be closed (after the packets
    /// queued before).
    pub fn wants_close(&self) -> bool {
        self.closed
    }

    /// The connection is over (at `now_ms`, ms since the epoch): what to
    /// keep and what to publish.
    pub fn finish(mut self, now_ms: u64) -> Finished {
        self.state.ended_ms = now_ms.max(1);
        let will = if self.graceful {
            None
        } else {
            self.will.take().and_then(|w| {
                let to = Target::parse(w.topic.as_str())?.wire_id();
                let id = self.state.next_msg_id;
                self.state.next_msg_id += 1;
                Some(WillMessage {
                    to,
                    qos: native_qos(w.qos),
                    payload: w.payload,
                    client_msg_id: id,
                    room_grant: self.acl.grants_room(AclAction::Publish, to.0),
                })
            })
        };
        let key = surepush_proto::StateKey::MqttSession {
            user: self.user,
            device: self.device,
        };
        let (keep, write) = if self.taken_over {
            (Keep::Nothing, None)
        } else if self.persistent {
            let value = Some(Bytes::from(self.state.encode()));
            let write = StateWrite {
                key,
                value,
                report: None,
            };
            (Keep::Save(self.state), Some(write))
        } else {
            // A session that was persistent earlier on this connection (or
            // was stored before it) may have a record to delete.
            let write = self.gate.logged.then_some(StateWrite {
                key,
                value: None,
                report: None,
            });
            (Keep::Forget, write)
        };
        Finished { keep, write, will }
    }

    /// A packet from the client.
    pub fn on_packet(&mut self, packet: Packet) {
        if self.closed {
            return;
        }
        if self.mode == Mode::Connecting {
            // Sent behind CONNECT before our CONNACK: answered after it
            // (MQTT-3.2.0-1), in order.
            if self.early.len() >= EARLY_PACKETS_MAX {
                return self.protocol_error("too many packets before CONNACK");
            }
            self.early.push_back(packet);
            return;
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => self.on_puback(r.packet_id),
            Packet::PubRec(r) => self.on_pubrec(r),
            Packet::PubRel(r) => self.on_pubrel(r.packet_id),
            Packet::PubComp(r) => self.on_pubcomp(r.packet_id),
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.to_client.push_back(Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    if self.state.expiry_s == 0 && e > 0 {
                        // MQTT 5 section 3.14.2.2.2: a session that was to
                        // end cannot be extended at DISCONNECT.
                        return self.protocol_error("session expiry raised from 0 at DISCONNECT");
                    }
                    self.persistent = e > 0;
                    self.state.expiry_s = e;
                }
                // Only a normal DISCONNECT (0x00) deletes the will
                // (MQTT-3.14.4-3); v5 0x04 and error reasons keep it.
                self.graceful = d.reason == ReasonCode::SUCCESS;
                self.closed = true;
                self.to_core
                    .push_back(Frame::disconnect(ErrorCode::Normal, ""));
            }
            Packet::Connect(_) => self.protocol_error("a second CONNECT"),
            other => self.protocol_error(&format!(
                "{} is not sent by clients",
                other.packet_type().name()
            )),
        }
        // Any packet counts as activity for the keep alive (MQTT-3.1.2-24);
        // the core's idle timer hears of it through the frames of this
        // batch, or a PING if there are none (see `poll_core`).
        self.heard = !self.closed;
        self.pump();
    }

    /// A frame the core sent to this session.
    pub fn on_frame(&mut self, frame: Frame) {
        if self.closed && !matches!(frame, Frame::SendAck(_)) {
            return;
        }
        match frame {
            Frame::ConnAck(a) => self.on_connack(a),
            Frame::SendAck(a) => self.on_sendack(a),
            Frame::Push(p) => {
                self.deliver_inbox(p, false);
            }
            Frame::SyncPage(page) => {
                let Mode::Replay { request, .. } = self.mode else {
                    return;
                };
                if page.request_id != request {
                    return;
                }
                let last = page.items.last().map(|p| p.seq);
                for item in page.items {
                    let dup = self.state.out_pids.contains_key(&item.seq.0);
                    self.deliver_inbox(item, dup);
                }
                self.mode = match last {
                    Some(last) => Mode::Replay {
                        request,
                        last,
                        asked: false,
                    },
                    None => Mode::Live,
                };
            }
            Frame::Comp { client_msg_id } => {
                if let Some(pid) = self.releases.remove(&client_msg_id) {
                    self.state.inbound.remove(&pid.get());
                    self.changed(Change::InboundDropped);
                    self.to_client
                        .push_back(Packet::PubComp(PubReply::success(pid)));
                }
            }
            Frame::SubAck(a) => self.on_room_suback(a),
            Frame::RoomPush(p) => self.deliver_room(p),
            Frame::RoomLag { room, .. } => self.on_room_lag(room & !ROOM_BIT),
            Frame::Error(e) => {
                let reason = match ErrorCode::from_u16(e.code) {
                    Some(ErrorCode::IdleTimeout) => ReasonCode::KEEP_ALIVE_TIMEOUT,
                    Some(ErrorCode::RateLimited) => ReasonCode::MESSAGE_RATE_TOO_HIGH,
                    Some(ErrorCode::InflightExceeded) => ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    Some(ErrorCode::TooManyConnections) => ReasonCode::QUOTA_EXCEEDED,
                    Some(ErrorCode::AuthFailed | ErrorCode::TokenExpired) => {
                        ReasonCode::NOT_AUTHORIZED
                    }
                    _ => ReasonCode::UNSPECIFIED_ERROR,
                };
                if self.mode == Mode::Connecting {
                    // Refused before the session opened: CONNACK carries
                    // it (a DISCONNECT may not precede CONNACK).
                    self.refuse_session(reason);
                } else {
                    self.server_disconnect(reason, &e.message);
                }
            }
            Frame::Disconnect(d) => {
                let reason = match ErrorCode::from_u16(d.reason) {
                    Some(ErrorCode::Replaced) => ReasonCode::SESSION_TAKEN_OVER,
                    Some(ErrorCode::ShuttingDown) => ReasonCode::SERVER_SHUTTING_DOWN,
                    Some(ErrorCode::Normal) => return,
                    _ => ReasonCode::UNSPECIFIED_ERROR,
                };
                self.server_disconnect(reason, "");
            }
            _ => {}
        }
        self.pump();
    }

    /// Encodes `packet` for this connection, or `None` if it exceeds the
    /// client's Maximum Packet Size.
    pub fn encode(&self, packet: &Packet, out: &mut bytes::BytesMut) -> bool {
        self.fits(packet) && mqtt::encode(packet, self.level, out).is_ok()
    }

    // ----- core → client -------------------------------------------------

    fn on_connack(&mut self, a: NativeConnAck) {
        let mut props = Properties::default();
        if self.level.is_v5() {
            props.receive_maximum = std::num::NonZeroU16::new(self.params.receive_max);
            props.maximum_packet_size = std::num::NonZeroU32::new(self.params.max_packet);
            props.retain_available = Some(true);
            props.shared_subscription_available = Some(false);
            props.subscription_identifier_available = Some(false);
            props.wildcard_subscription_available = Some(true);
            props.topic_alias_maximum = Some(TOPIC_ALIAS_MAX);
            let keep_alive = (a.keepalive_ms / 1000).min(u32::from(u16::MAX)) as u16;
            if keep_alive != self.client_keep_alive {
                props.server_keep_alive = Some(keep_alive);
            }
            if let Some(id) = &self.client_id_assigned {
                props.assigned_client_identifier = Some(MqttString::from(id.as_str()));
            }
        }
        self.to_client.push_back(Packet::ConnAck(ConnAck {
            session_present: self.session_present,
            code: ReasonCode::SUCCESS,
            properties: props,
        }));
        // A resumed session continues from what it acknowledged (its own
        // record, or the device's cursor, whichever is further); a new or
        // clean one from the inbox head (older messages were not for it).
        let from = if self.session_present {
            let from = a.cursor.unwrap_or(Seq::ZERO).max(self.state.inbox_start);
            from.max(self.state.inbox_acked).min(a.head)
        } else {
            self.state.inbox_start = a.head;
            self.state.inbox_acked = a.head;
            a.head
        };
        if self.persistent {
            self.changed(Change::Started);
        } else if self.gate.logged {
            // A stored session that ends with this connection (or a clean
            // start): deleted before the CONNACK, so a crash cannot bring
            // it back.
            self.changed(Change::Discarded);
        }
        self.seen = from;
        // Ids of messages acknowledged after the state was last written
        // are free again (the position is past them).
        self.state.out_pids.retain(|&seq, _| seq > from.0);
        self.state.done.retain(|&seq| seq > from.0);
        for &pid in &self.state.rel_pending {
            let pid = PacketId::new(pid).expect("stored ids are non-zero");
            self.inflight.insert(
                pid.get(),
                Outbound {
                    what: Delivery::Retained,
                    stage: Stage::Comp,
                },
            );
            self.to_client
                .push_back(Packet::PubRel(PubReply::success(pid)));
        }
        self.resubscribe_rooms();
        // The first SYNC acknowledges `from`: the session holds it already.
        self.ask_page(from, false);
        // Packets the client sent before this CONNACK, in order.
        while let Some(p) = self.early.pop_front() {
            self.on_packet(p);
        }
    }

    /// Asks for the inbox page after `after`; `read_ahead`: without
    /// acknowledging `after` (the client has not acknowledged it yet).
    fn ask_page(&mut self, after: Seq, read_ahead: bool) {
        self.next_request += 1;
        self.mode = Mode::Replay {
            request: self.next_request,
            last: after,
            asked: true,
        };
        self.to_core.push_back(Frame::Sync(proto::Sync {
            request_id: self.next_request,
            direction: SyncDirection::After(after),
            limit: self.params.page,
            read_ahead,
        }));
    }

    fn on_sendack(&mut self, a: SendAck) {
        let Some(pending) = self.sends.remove(&a.client_msg_id) else {
            return;
        };
        let ok = matches!(a.result, SendResult::Stored | SendResult::Duplicate);
        if ok {
            if let Some(change) = pending.retain {
                self.retains.push_back(change);
            }
        }
        let (Some(pid), qos) = (pending.packet_id, pending.qos) else {
            return;
        };
        let reason = match a.result {
            SendResult::Stored | SendResult::Duplicate => ReasonCode::SUCCESS,
            SendResult::Forbidden => ReasonCode::NOT_AUTHORIZED,
            _ => ReasonCode::UNSPECIFIED_ERROR,
        };
        if qos == QoS::ExactlyOnce && a.result == SendResult::StorageUnavailable {
            // Perhaps stored in part (one copy durable, another failed):
            // the packet id keeps its native id, and the client's resend
            // with it on its next connection completes the message once.
            // A refusal would free the id and make the retry a second
            // message (found by the simulator: a QoS 2 message stored
            // twice in the sender's own inbox).
            self.close_session(ReasonCode::UNSPECIFIED_ERROR, "not stored");
            return;
        }
        if qos == QoS::ExactlyOnce {
            if ok {
                if let Some(i) = self.state.inbound.get_mut(&pid.get()) {
                    i.stored = true;
                    self.changed(Change::InboundStored);
                }
            } else if self.state.inbound.remove(&pid.get()).is_some() {
                self.changed(Change::InboundDropped);
            }
        }
        if !ok && !self.level.is_v5() {
            if a.result == SendResult::Forbidden {
                // v3.1.1 cannot say "refused": acknowledge (MQTT-3.3.5-2).
                // The client's doing, per publish: not the operator's log.
                tracing::debug!(user = self.user.0, "MQTT publish refused (forbidden)");
            } else {
                // Nothing stored and no way to say so: close, the client
                // resends on its next connection.
                self.close_session(ReasonCode::UNSPECIFIED_ERROR, "not stored");
                return;
            }
        }
        let reply = PubReply {
            packet_id: pid,
            reason: if self.level.is_v5() {
                reason
            } else {
                ReasonCode::SUCCESS
            },
            properties: Properties::default(),
        };
        self.to_client.push_back(if qos == QoS::ExactlyOnce {
            Packet::PubRec(reply)
        } else {
            Packet::PubAck(reply)
        });
    }

    /// The highest QoS among the inbox subscriptions matching `topic`.
    fn inbox_qos(&self, topic: &str) -> Option<QoS> {
        self.state
            .subs
            .iter()
            .filter(|s| mqtt::topic_matches(s.filter.as_str(), topic))
            .map(|s| s.options.qos)
            .max()
    }

    fn deliver_inbox(&mut self, p: Push, dup: bool) {
        let topic = Target::from_wire(p.to.0).topic();
        // This device's own sends come back live as ECHO and in replay
        // pages as ordinary items: neither goes to the client.
        let own = p.echo || (p.from == self.user && p.from_device == self.device);
        let granted = if own { None } else { self.inbox_qos(&topic) };
        if p.seq == Seq::ZERO {
            // QoS 0: live devices only, nothing to acknowledge.
            if granted.is_some() {
                self.publish(&topic, QoS::AtMostOnce, p.payload, p.from, None, false);
            }
            return;
        }
        if p.seq <= self.seen {
            return; // a retransmission of something in flight or done
        }
        self.seen = p.seq;
        if self.state.done.contains(&p.seq.0) {
            // Acknowledged (out of order) before a restart: not again.
            self.inbox.push_back((p.seq, true));
            return;
        }
        let qos = granted.map(|g| g.min(mqtt_qos(p.qos)));
        match qos {
            None => self.inbox.push_back((p.seq, true)),
            Some(QoS::AtMostOnce) => {
                self.publish(&topic, QoS::AtMostOnce, p.payload, p.from, None, false);
                self.inbox.push_back((p.seq, true));
            }
            Some(q) => {
                self.inbox.push_back((p.seq, false));
                let what = Delivery::Inbox(p.seq);
                self.publish(&topic, q, p.payload, p.from, Some(what), dup);
            }
        }
    }

    /// Queues a PUBLISH; QoS 1/2 ones wait while the client's Receive
    /// Maximum is reached.
    fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: Bytes,
        from: UserId,
        what: Option<Delivery>,
        dup: bool,
    ) {
        let retain = what == Some(Delivery::Retained);
        let mut p = self.make_publish(topic, qos, payload, from, retain);
        match what {
            None => self.send_publish(p),
            Some(what) => {
                p.dup = dup;
                self.waiting_bytes += p.payload.len();
                self.waiting.push_back((p, what));
            }
        }
    }

    /// A PUBLISH without packet id (v5: with the sender as user property).
    fn make_publish(
        &self,
        topic: &str,
        qos: QoS,
        payload: Bytes,
        from: UserId,
        retain: bool,
    ) -> Publish {
        let mut properties = Properties::default();
        if self.level.is_v5() {
            properties.user_properties.push((
                MqttString::from_static("from"),
                MqttString::from(from.0.to_string()),
            ));
        }
        Publish {
            dup: false,
            qos,
            retain,
            topic: MqttString::from(topic),
            packet_id: None,
            payload,
            properties,
        }
    }

    /// Sends waiting PUBLISHes while the client has room for them.
    fn pump(&mut self) {
        while self.inflight.len() < self.client_receive_max {
            let Some((mut p, what)) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_bytes -= p.payload.len();
            let reused = match what {
                Delivery::Inbox(seq) => self.state.out_pids.get(&seq.0).copied(),
                _ => None,
            };
            let pid = match reused.and_then(PacketId::new) {
                Some(pid) if !self.inflight.contains_key(&pid.get()) => pid,
                _ => self.alloc_pid(),
            };
            if let Delivery::Inbox(seq) = what {
                if self.state.out_pids.insert(seq.0, pid.get()) != Some(pid.get()) {
                    self.changed(if p.qos == QoS::ExactlyOnce {
                        Change::OutboundQos2Sent
                    } else {
                        Change::Bookkeeping
                    });
                }
            }
            p.packet_id = Some(pid);
            let stage = if p.qos == QoS::ExactlyOnce {
                Stage::Rec
            } else {
                Stage::Ack
            };
            if !self.fits(&Packet::Publish(p.clone())) {
                // Too big for the client (MQTT-3.1.2-25): dropped as if
                // acknowledged.
                self.complete(what);
                continue;
            }
            self.inflight.insert(pid.get(), Outbound { what, stage });
            self.to_client.push_back(Packet::Publish(p));
        }
        self.advance();
    }

    fn send_publish(&mut self, p: Publish) {
        let packet = Packet::Publish(p);
        if self.fits(&packet) {
            self.to_client.push_back(packet);
        }
    }

    fn fits(&self, packet: &Packet) -> bool {
        mqtt::encoded_len(packet, self.level).is_ok_and(|n| n <= self.client_max_packet)
    }

    fn alloc_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = PacketId::new(self.next_pid) else {
                continue;
            };
            let id = pid.get();
            let reserved = self.inflight.contains_key(&id)
                || self.state.rel_pending.contains(&id)
                || self.state.out_pids.values().any(|&p| p == id);
            if !reserved {
                return pid;
            }
        }
    }

    /// The client has (or will never get) the message.
    fn complete(&mut self, what: Delivery) {
        match what {
            Delivery::Inbox(seq) => {
                self.state.out_pids.remove(&seq.0);
                if seq > self.state.inbox_acked {
                    // Until the prefix passes it: never sent again.
                    self.state.done.insert(seq.0);
                }
                self.changed(Change::Bookkeeping);
                if let Some(e) = self.inbox.iter_mut().find(|e| e.0 == seq) {
                    e.1 = true;
                }
            }
            Delivery::Room(n, seq) => {
                if let Some(t) = self.rooms.get_mut(&n) {
                    t.complete(seq);
                }
            }
            Delivery::Retained => {}
        }
    }

    /// Tells the core what the client now holds, in order.
    fn advance(&mut self) {
        let mut last = None;
        while let Some(&(seq, true)) = self.inbox.front() {
            self.inbox.pop_front();
            last = Some(seq);
        }
        if let Some(seq) = last.filter(|s| *s > self.state.inbox_acked) {
            self.state.inbox_acked = seq;
            self.state.done.retain(|&s| s > seq.0);
            self.changed(Change::Bookkeeping);
        }
        if let Some(seq) = last.filter(|_| self.mode != Mode::Connecting) {
            self.ack_to_core(Frame::Ack(seq));
        }
        if let Mode::Replay {
            last, asked: false, ..
        } = self.mode
        {
            // Read ahead while the window has room (one page may overshoot
            // it): the client's PUBACKs need not come first.
            if self.inbox.len() < self.params.inflight.max(1) as usize {
                self.ask_page(last, true);
            }
        }
        self.advance_rooms();
    }

    /// Room `n`'s native SUBACK came: its MQTT SUBACK may go.
    fn room_suback_arrived(&mut self, n: u64, result: SubResult) {
        for pending in self.subacks.iter_mut() {
            if let Some(i) = pending.rooms.iter().position(|&(r, _)| r == n) {
                let (_, index) = pending.rooms.swap_remove(i);
                pending.reasons[index] = match (result, self.level.is_v5()) {
                    (SubResult::Ok | SubResult::Gap, _) => pending.reasons[index],
                    (SubResult::Forbidden, true) => ReasonCode::NOT_AUTHORIZED,
                    // 3.1.1 has one failure code for everything (MQTT-3.9.3-2).
                    (SubResult::Forbidden | SubResult::Refused, _) => ReasonCode::UNSPECIFIED_ERROR,
                };
                break;
            }
        }
        self.flush_subacks();
        if result.subscribed() && self.retained_wanted.remove(&n) {
            self.retained_queries.push_back(n);
        } else if !result.subscribed() {
            // Not allowed to read it: not its retained message either.
            self.retained_wanted.remove(&n);
        }
    }

    // ----- client → core -------------------------------------------------

    fn next_msg_id(&mut self) -> u64 {
        let id = self.state.next_msg_id;
        self.state.next_msg_id += 1;
        id
    }

    fn on_publish(&mut self, mut p: Publish) {
        if let Some(alias) = p.properties.topic_alias {
            // MQTT 5 topic alias (MQTT-3.3.2-7 .. -12): a name sets it, an
            // empty name uses it.
            let slot = usize::from(alias.get()) - 1;
            if slot >= self.aliases.len() {
                return self.close_session(
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias above the maximum",
                );
            }
            if p.topic.is_empty() {
                match &self.aliases[slot] {
                    Some(t) => p.topic = t.clone(),
                    None => return self.protocol_error("topic alias not set"),
                }
            } else {
                self.aliases[slot] = Some(p.topic.clone());
            }
        }
        let Some(target) = Target::parse(p.topic.as_str()) else {
            let why = "topic must be user/{id}, group/{n} or room/{n}";
            match (p.packet_id, self.level.is_v5()) {
                (Some(pid), true) => {
                    let reply = PubReply {
                        packet_id: pid,
                        reason: ReasonCode::TOPIC_NAME_INVALID,
                        properties: Properties::default(),
                    };
                    self.to_client.push_back(if p.qos == QoS::ExactlyOnce {
                        Packet::PubRec(reply)
                    } else {
                        Packet::PubAck(reply)
                    });
                }
                (None, true) => self.close_session(ReasonCode::TOPIC_NAME_INVALID, why),
                (_, false) => self.protocol_error(why),
            }
            return;
        };
        let to = target.wire_id();
        let qos = native_qos(p.qos);
        let retain = match target {
            Target::Room(n) if p.retain => {
                let msg = (!p.payload.is_empty()).then(|| Retained {
                    from: self.user,
                    qos: p.qos,
                    payload: p.payload.clone(),
                });
                Some((n, msg))
            }
            _ => None,
        };
        let pending = |packet_id| PendingPub {
            packet_id,
            qos: p.qos,
            retain: retain.clone(),
        };
        // A QoS 0 retained PUBLISH changes the retained message only once
        // the room has accepted it (its permissions): the core confirms it.
        let confirm = p.qos == QoS::AtMostOnce && retain.is_some();
        let id = match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                let id = self.next_msg_id();
                if confirm {
                    self.sends.insert(id, pending(None));
                }
                id
            }
            (QoS::AtLeastOnce, Some(pid)) => {
                let id = self.next_msg_id();
                self.sends.insert(id, pending(Some(pid)));
                id
            }
            (QoS::ExactlyOnce, Some(pid)) => match self.state.inbound.get(&pid.get()).copied() {
                Some(i) if i.stored => {
                    // A resend after PUBREC was lost: stored already. Its
                    // retained-message change is made again (idempotent),
                    // in case writing it failed the first time.
                    if let Some(change) = retain {
                        self.retains.push_back(change);
                    }
                    self.to_client
                        .push_back(Packet::PubRec(PubReply::success(pid)));
                    return;
                }
                Some(i) if self.sends.contains_key(&i.client_msg_id) => return,
                Some(i) => {
                    // Sent on an earlier connection, outcome unknown: the
                    // same id lets the core recognise a stored copy.
                    self.sends.insert(i.client_msg_id, pending(Some(pid)));
                    i.client_msg_id
                }
                None => {
                    let id = self.next_msg_id();
                    self.state.inbound.insert(
                        pid.get(),
                        Inbound {
                            client_msg_id: id,
                            to,
                            stored: false,
                        },
                    );
                    self.changed(Change::InboundAccepted);
                    self.sends.insert(id, pending(Some(pid)));
                    id
                }
            },
        };
        self.to_core.push_back(Frame::Send(proto::Send {
            client_msg_id: id,
            to,
            qos,
            confirm,
            payload: p.payload,
        }));
    }

    fn on_puback(&mut self, pid: PacketId) {
        match self.inflight.get(&pid.get()) {
            Some(o) if o.stage == Stage::Ack => {
                let what = o.what;
                self.inflight.remove(&pid.get());
                self.complete(what);
            }
            _ => tracing::debug!(pid = pid.get(), "PUBACK for no QoS 1 PUBLISH in flight"),
        }
    }

    fn on_pubrec(&mut self, r: PubReply) {
        let pid = r.packet_id;
        match self.inflight.get_mut(&pid.get()) {
            Some(o) if o.stage == Stage::Rec => {
                let what = o.what;
                if r.reason.is_error() {
                    self.inflight.remove(&pid.get());
                } else {
                    o.stage = Stage::Comp;
                    self.state.rel_pending.insert(pid.get());
                    self.changed(Change::OutboundReceived);
                    self.to_client
                        .push_back(Packet::PubRel(PubReply::success(pid)));
                }
                self.complete(what);
            }
            Some(o) if o.stage == Stage::Comp => {
                self.to_client
                    .push_back(Packet::PubRel(PubReply::success(pid)));
            }
            _ => tracing::debug!(pid = pid.get(), "PUBREC for no QoS 2 PUBLISH in flight"),
        }
    }

    fn on_pubcomp(&mut self, pid: PacketId) {
        if matches!(self.inflight.get(&pid.get()), Some(o) if o.stage == Stage::Comp) {
            self.inflight.remove(&pid.get());
        }
        if self.state.rel_pending.remove(&pid.get()) {
            self.changed(Change::Bookkeeping);
        }
    }

    fn on_pubrel(&mut self, pid: PacketId) {
        match self.state.inbound.get(&pid.get()).copied() {
            // The client releases only what it got PUBREC for, which left
            // after the SENDACK: stored, even if the state written before a
            // crash did not say so yet (unless its SEND is still under way
            // on this connection: then PUBREL came before PUBREC).
            Some(i) if !self.sends.contains_key(&i.client_msg_id) => {
                self.releases.insert(i.client_msg_id, pid);
                self.to_core.push_back(Frame::Rel {
                    client_msg_id: i.client_msg_id,
                    to: i.to,
                });
            }
            _ => {
                let reason = if self.level.is_v5() {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                } else {
                    ReasonCode::SUCCESS
                };
                self.to_client.push_back(Packet::PubComp(PubReply {
                    packet_id: pid,
                    reason,
                    properties: Properties::default(),
                }));
            }
        }
    }

    fn on_subscribe(&mut self, s: mqtt::Subscribe) {
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut rooms = Vec::new();
        for sub in s.filters {
            let filter = sub.filter.as_str();
            if filter.starts_with(mqtt::SHARED_PREFIX) {
                reasons.push(if self.level.is_v5() {
                    ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
                } else {
                    ReasonCode(0x80)
                });
                continue;
            }
            if let Some(n) = room_filter(filter) {
                let (qos, existed) = self.subscribe_room(n, &sub.options);
                let wants_retained = match sub.options.retain_handling {
                    mqtt::RetainHandling::SendAtSubscribe => true,
                    mqtt::RetainHandling::SendIfNewSubscription => !existed,
                    mqtt::RetainHandling::DoNotSend => false,
                };
                if wants_retained {
                    self.retained_wanted.insert(n);
                }
                if !rooms.iter().any(|&(r, _)| r == n) {
                    rooms.push((n, reasons.len()));
                }
                reasons.push(ReasonCode(qos as u8));
                continue;
            }
            let qos = sub.options.qos;
            match self
                .state
                .subs
                .iter_mut()
                .find(|e| e.filter.as_str() == filter)
            {
                Some(existing) => existing.options = sub.options,
                None => self.state.subs.push(sub),
            }
            reasons.push(ReasonCode(qos as u8));
        }
        self.changed(Change::Subscriptions);
        self.subacks.push_back(PendingSubAck {
            packet_id: s.packet_id,
            reasons,
            rooms,
        });
        // Answer at once when no room subscription is outstanding.
        self.flush_subacks();
    }

    fn flush_subacks(&mut self) {
        while self.subacks.front().is_some_and(|p| p.rooms.is_empty()) {
            let p = self.subacks.pop_front().expect("checked");
            self.to_client.push_back(Packet::SubAck(SubAck {
                packet_id: p.packet_id,
                reasons: p.reasons,
                properties: Properties::default(),
            }));
        }
    }

    fn on_unsubscribe(&mut self, u: mqtt::Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in u.filters {
            let filter = f.as_str();
            let existed = if let Some(n) = room_filter(filter) {
                self.unsubscribe_room(n)
            } else {
                let before = self.state.subs.len();
                self.state.subs.retain(|s| s.filter.as_str() != filter);
                self.state.subs.len() != before
            };
            reasons.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        self.changed(Change::Subscriptions);
        self.to_client.push_back(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reasons: if self.level.is_v5() {
                reasons
            } else {
                Vec::new()
            },
            properties: Properties::default(),
        }));
    }

    /// The client broke the protocol: DISCONNECT (v5) and close.
    fn protocol_error(&mut self, why: &str) {
        self.close_session(ReasonCode::PROTOCOL_ERROR, why);
    }

    /// Ends the session from this side: DISCONNECT (v5), then the core
    /// closes the connection.
    fn close_session(&mut self, reason: ReasonCode, why: &str) {
        tracing::debug!(
            user = self.user.0,
            device = self.device.0,
            why,
            "closing an MQTT session"
        );
        self.server_disconnect(reason, why);
        self.to_core
            .push_back(Frame::disconnect(ErrorCode::Normal, ""));
    }

    /// Tells a v5 client why the server closes (v3.1.1 has no such packet).
    fn server_disconnect(&mut self, reason: ReasonCode, why: &str) {
        if self.closed {
            return;
        }
        if self.mode == Mode::Connecting {
            // No CONNACK yet: the refusal is one (MQTT-3.2.0-1).
            return self.refuse_session(reason);
        }
        self.closed = true;
        if self.level.is_v5() && reason.valid_in(mqtt::PacketType::Disconnect, self.level) {
            let mut properties = Properties::default();
            if !why.is_empty() {
                properties.reason_string = Some(MqttString::from(why));
            }
            self.to_client
                .push_back(Packet::Disconnect(mqtt::Disconnect { reason, properties }));
        }
    }

    /// Sends room `room`'s retained message (RETAIN set) to the client.
    pub fn deliver_retained(&mut self, room: u64, msg: Retained) {
        let Some(sub) = self.state.rooms.get(&room).copied() else {
            return;
        };
        let qos = sub.qos.min(msg.qos);
        let topic = Target::Room(room).topic();
        if qos == QoS::AtMostOnce {
            let p = self.make_publish(&topic, qos, msg.payload, msg.from, true);
            self.send_publish(p);
        } else {
            let what = Some(Delivery::Retained);
            self.publish(&topic, qos, msg.payload, msg.from, what, false);
        }
        self.pump();
    }
}

fn room_subscribe(n: u64, from: SubscribeFrom, qos: QoS) -> Frame {
    Frame::Subscribe(proto::Subscribe {
        room: n | ROOM_BIT,
        from,
        qos: native_qos(qos),
    })
}

fn native_qos(q: QoS) -> Qos {
    match q {
        QoS::AtMostOnce => Qos::AtMostOnce,
        QoS::AtLeastOnce => Qos::AtLeastOnce,
        QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

fn mqtt_qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
        Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

#[cfg(test)]
mod tests;
