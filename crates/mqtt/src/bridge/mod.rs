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
//!   `read_ahead`, which acknowledges nothing) while the replay window has
//!   room (`window.rs`: `BridgeParams::inflight` messages, and
//!   `inflight_bytes` of payload give or take a page), and the
//!   acknowledged prefix goes to the core as a cumulative ACK, replay or
//!   live alike; part of the window waits in the bridge, so a PUBACK is
//!   answered by the next PUBLISH at once; a page never waits for the
//!   previous page's PUBACKs;
//! - QoS 1/2 PUBACK/PUBREC leave only after the core's SENDACK, i.e. after
//!   the message is durable;
//! - the session's own durable state is in the segment log, and a packet
//!   that depends on a change of it leaves only once that change is
//!   durable (`persist.rs` says which).
//!
//! The mapping is specified in docs/MQTT.md.
//!
//! This file holds the bridge's state and routes packets and frames to the
//! file that owns each concern: `session.rs` (CONNACK, takeover, closing,
//! the end of the connection), `will.rs` (what a will publishes),
//! `inbound.rs` (client → core), `outbound.rs` (core → client,
//! acknowledgements, replay paging), `subscriptions.rs`,
//! `rooms.rs` (room subscriptions), `persist.rs` (durable session state),
//! `expiry.rs` (the Message Expiry Interval of stored messages).

mod aliases;
mod busy;
mod expiry;
mod identifiers;
mod inbound;
mod outbound;
mod persist;
mod retained;
mod rooms;
mod session;
mod shared;
mod state;
mod streams;
mod subscriptions;
pub mod topics;
mod wildcards;
mod will;
mod window;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate as mqtt;
use crate::{Packet, PacketId, ProtocolLevel, PubReply, QoS, ReasonCode, Will};
use foldhash::HashMap as FastHashMap;
pub use persist::StateWrite;
use persist::{Change, Gate};
use retained::RetainChange;
pub use retained::TopicRetained;
use rooms::RoomTrack;
pub use session::{bad_credentials, refuse_connect, Finished, Keep};
use state::Reader;
pub use state::{Retained, SessionState};
use surepush_proto as proto;
use surepush_proto::{DeviceId, ErrorCode, Frame, Qos, Seq, UserId, ROOM_BIT};
use surepush_token::{Acl, Claims};
use topics::Target;
pub use will::{PendingWill, WillMessage, WillRetain};
use window::ReplayWindow;

/// Limits the bridge works with.
#[derive(Clone, Copy, Debug)]
pub struct BridgeParams {
    /// Items per replay page asked of the core.
    pub page: u32,
    /// The replay window: inbox messages a session holds unacknowledged
    /// (sent, or read and waiting to be sent), at most (`mqtt.inflight`,
    /// docs/MQTT.md; `window.rs`).
    pub inflight: u32,
    /// The replay window in payload bytes: reading ahead stops once the
    /// held messages carry this much (`mqtt.inflight_bytes`).
    pub inflight_bytes: usize,
    /// Largest MQTT packet accepted (advertised to v5 clients).
    pub max_packet: u32,
    /// Unacknowledged PUBLISHes a client may send (v5 Receive Maximum).
    pub receive_max: u16,
    /// The core's `room_window`: unacknowledged messages of a QoS 1 room
    /// subscription before it counts as slow.
    pub room_window: u32,
    /// Every user may publish and subscribe free-form topics
    /// (`mqtt.topics_open`); else only what the token grants (`streams.rs`).
    pub topics_open: bool,
}

/// Packets a client may pipeline behind CONNECT before our CONNACK.
const EARLY_PACKETS_MAX: usize = 1024;

#[derive(Clone, Debug)]
struct PendingPub {
    packet_id: Option<PacketId>,
    qos: QoS,
    /// The retained-message change to make once stored.
    retain: Option<RetainChange>,
}

/// What an outbound PUBLISH carries, for when it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Inbox(Seq),
    Room(u64, Seq),
    /// A retained message: nothing to acknowledge to the core.
    Retained,
    /// A message of share group `.0` (stream `.1`, seq `.2`): SHAREACK.
    Shared(u64, u64, Seq),
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

/// An inbox message delivered (or skipped) and not yet acknowledged to
/// the core.
#[derive(Clone, Copy, Debug)]
struct Held {
    seq: Seq,
    /// The client has it (or never gets it): only the prefix waits.
    done: bool,
    /// Payload bytes held for it (0 once done).
    bytes: usize,
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
    /// Wildcard topic filters whose registration is outstanding
    /// (`wildcards.rs`), with the index of their reason code.
    filters: Vec<(String, usize)>,
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
    client_id_assigned: bool,
    client_keep_alive: u16,
    /// The client's Receive Maximum (65,535 if it set none).
    client_receive_max: u16,
    /// The client's Maximum Packet Size (`u32::MAX` if it set none: more
    /// than any MQTT packet can be).
    client_max_packet: u32,
    /// Boxed: a will is 456 bytes (its v5 properties) and most sessions
    /// have none (issue #21 item 5).
    will: Option<Box<Will>>,
    graceful: bool,
    closed: bool,
    mode: Mode,
    next_request: u32,
    /// The replay window's bounds.
    window: ReplayWindow,
    /// Highest inbox seq seen.
    seen: Seq,
    rooms: BTreeMap<u64, RoomTrack>,
    /// The connection's output drained since the last ROOMLAG.
    output_drained: bool,
    /// A packet came since the last frame for the core (keep alive).
    heard: bool,
    /// Free-form topics' retained messages to ask for and send
    /// (`retained.rs`; `None` while there are none).
    topic_asks: Option<Box<retained::TopicAsks>>,
    /// Every queue, table and tree of packets and messages in flight
    /// (`busy.rs`): made on first use, dropped when the connection idles
    /// (issue #17 goal 4: the bridge was 1 KiB with them as fields).
    busy: busy::Lazy<busy::Busy>,
    /// Topic aliases of this connection, both ways (MQTT 5, `aliases.rs`);
    /// `None` while there are none to keep.
    aliases: Option<Box<aliases::TopicAliases>>,
    /// What the durable state's changes hold back (`persist.rs`).
    gate: Gate,
    /// The wall clock (ms since the epoch) as of the last
    /// [`Bridge::set_clock`]: message expiry counts against it.
    now_ms: u64,
    /// Messages not sent because their expiry interval had passed, since
    /// the last [`Bridge::take_expired`].
    expired: u64,
    next_pid: u16,
    /// When this connection's session began (ms since the epoch, at
    /// CONNACK): wildcard filters subscribed before are resumed ones
    /// (`wildcards.rs`).
    started_ms: u64,
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
        let client_id_assigned = connect.client_id.is_empty();
        let client_receive_max = connect
            .properties
            .receive_maximum
            .map_or(u16::MAX, |n| n.get());
        let client_max_packet = connect
            .properties
            .maximum_packet_size
            .map_or(u32::MAX, |n| n.get());
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
            will: connect.will.map(Box::new),
            graceful: false,
            closed: false,
            mode: Mode::Connecting,
            next_request: 0,
            window: ReplayWindow::new(params.inflight, params.inflight_bytes, params.page),
            seen: Seq::ZERO,
            rooms: BTreeMap::new(),
            output_drained: true,
            heard: false,
            topic_asks: None,
            busy: busy::Lazy::new(),
            aliases: aliases::TopicAliases::for_client(connect.properties.topic_alias_maximum),
            gate: Gate::default(),
            now_ms: 0,
            started_ms: 0,
            expired: 0,
            next_pid: 0,
            to_core: VecDeque::new(),
            to_client: VecDeque::new(),
        };
        b.to_core.push_back(Frame::Connect(proto::Connect {
            device,
            last_seq: None,
            // Keep alive 0 switches it off (section 3.1.2.10 of both).
            keepalive_ms: match connect.keep_alive {
                0 => proto::KEEPALIVE_OFF,
                k => u32::from(k) * 1000,
            },
            token,
        }));
        b.gate.logged = had_stored;
        b
    }

    /// Gives back the capacity of every queue that is empty now: a queue of
    /// packets holds 456 bytes a slot, and the four slots the first packet
    /// allocates would stay with an idle connection forever (issue #21
    /// item 5: idle MQTT connections cost 18 KiB each). Call it when the
    /// connection goes idle, not after every packet: a busy connection
    /// keeps its queues.
    pub fn release_idle_memory(&mut self) {
        release_if_empty(&mut self.to_client);
        release_if_empty(&mut self.to_core);
        self.busy.release_idle_memory();
        // One filter in a Vec grown for four (40 bytes each).
        self.state.subs.shrink_to_fit();
        release_tree_if_empty(&mut self.rooms);
        self.state.release_idle_memory();
        self.gate.release_idle_memory();
    }

    /// The wall clock, ms since the Unix epoch: set it before handing the
    /// bridge frames ([`Bridge::on_frame`]), whose messages' expiry counts
    /// against it (`expiry.rs`). Until set it is 0: nothing expires.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Messages dropped because their Message Expiry Interval passed
    /// before they could be sent, since the last call (for the metrics).
    pub fn take_expired(&mut self) -> u64 {
        std::mem::take(&mut self.expired)
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

    /// The next MQTT packet for the client (none while what is queued
    /// waits for a state write: see `persist.rs`).
    pub fn poll_packet(&mut self) -> Option<Packet> {
        self.gate.next_packet(&mut self.to_client)
    }

    /// Output held in the bridge (PUBLISHes beyond the client's Receive
    /// Maximum), in payload bytes: it counts against the connection's
    /// output budgets as if it were queued on the socket.
    pub fn held_bytes(&self) -> usize {
        self.busy.waiting_bytes
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

    /// The bridge asked for the connection to be closed (after the packets
    /// queued before).
    pub fn wants_close(&self) -> bool {
        self.closed
    }

    /// A packet from the client.
    pub fn on_packet(&mut self, packet: Packet) {
        if self.closed {
            return;
        }
        if self.mode == Mode::Connecting {
            // Sent behind CONNECT before our CONNACK: answered after it
            // (MQTT-3.2.0-1), in order.
            if self.busy.early.len() >= EARLY_PACKETS_MAX {
                return self.protocol_error("too many packets before CONNACK");
            }
            self.busy.early.push_back(packet);
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
                if let Some(pid) = self.busy.releases.remove(&client_msg_id) {
                    self.busy.unanswered.remove(&pid.get());
                    self.state.inbound.remove(&pid.get());
                    self.changed(Change::InboundDropped);
                    self.to_client
                        .push_back(Packet::PubComp(PubReply::success(pid)));
                }
            }
            Frame::SubAck(a) => self.on_room_suback(a),
            Frame::RoomPush(p) => self.deliver_room(p),
            Frame::RoomLag { room, .. } => self.on_room_lag(room & !ROOM_BIT),
            Frame::Topic(t) => self.on_topic(t),
            Frame::SharePush(p) => self.deliver_shared(p),
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
                    Some(ErrorCode::Kicked) => ReasonCode::ADMINISTRATIVE_ACTION,
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

    /// As [`Bridge::encode`], but a PUBLISH's payload is returned instead
    /// of copied into `out`, to be written right after it
    /// ([`mqtt::encode_head`]); `None` if the packet exceeds the client's
    /// Maximum Packet Size (nothing written).
    pub fn encode_head(&self, packet: &Packet, out: &mut bytes::BytesMut) -> Option<Bytes> {
        if !self.fits(packet) {
            return None;
        }
        mqtt::encode_head(packet, self.level, out).ok()
    }

    fn fits(&self, packet: &Packet) -> bool {
        mqtt::encoded_len(packet, self.level).is_ok_and(|n| n <= self.client_max_packet as usize)
    }
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

/// Frees `queue`'s buffer when it holds nothing.
pub(super) fn release_if_empty<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
}

/// Frees `map`'s table when it holds nothing: a hash map keeps the table
/// its busiest moment grew, empty or not.
fn release_map_if_empty<K, V>(map: &mut FastHashMap<K, V>) {
    if map.is_empty() && map.capacity() > 0 {
        *map = FastHashMap::default();
    }
}

/// An ordered map or set with nothing in it, made anew: a `BTreeMap` keeps
/// its root node (a leaf of 11 slots: ~100 bytes for a `BTreeSet<u64>`)
/// after its last entry is removed, so a session whose state writes all
/// completed kept one per touched tree (issue #17 goal 4). Cheap when the
/// tree never allocated: dropping an empty new tree frees nothing.
pub(super) fn release_tree_if_empty<T: Default + TreeLen>(tree: &mut T) {
    if tree.tree_is_empty() {
        *tree = T::default();
    }
}

/// Whether an ordered map or set is empty ([`release_tree_if_empty`]).
pub(super) trait TreeLen {
    /// No entry.
    fn tree_is_empty(&self) -> bool;
}

impl<K, V> TreeLen for BTreeMap<K, V> {
    fn tree_is_empty(&self) -> bool {
        self.is_empty()
    }
}

impl<K> TreeLen for BTreeSet<K> {
    fn tree_is_empty(&self) -> bool {
        self.is_empty()
    }
}

#[cfg(test)]
mod tests;
