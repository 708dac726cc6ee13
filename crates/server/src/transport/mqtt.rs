//! MQTT 3.1.1 and 5.0 (docs/MQTT.md) as a transport adapter.
//!
//! The handshake reads CONNECT and takes the token from its password. On
//! the owner shard a [`Bridge`] turns the connection into a native session
//! of the same core: storage, dedup, retransmission and fan-out are the
//! core's. Room messages arrive as the native ROOMPUSH bytes the core
//! encoded once for every subscriber: they are read in place (the payload
//! stays a slice of the shared bytes), and a PUBLISH with a large payload
//! is queued as this connection's own header followed by that same shared
//! payload, gathered by the write loop — no copy per subscriber.
//!
//! Three small pieces of state are MQTT's own: a persistent session's
//! state ([`SessionState`]: subscriptions, room positions, QoS 2 and
//! packet-id state), a room's retained message and a will waiting for its
//! delay ([`PendingWill`]). All are keyed state records in the segment log
//! (`StateKey::MqttSession` and `StateKey::MqttWill` on the user's shard,
//! `StateKey::Retained` on the room's home shard), written through the core
//! ([`surepush_core::Shard::handle_state`]) in log order with the messages.
//! The bridge says which packet waits for which write (`bridge/persist.rs`);
//! here they are only carried: nothing blocks the shard, and no state is
//! shared between shards. The files of earlier builds are moved into the
//! log on the first start (`mqtt_legacy.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};

use super::relay::{Preamble, RELAY_PREAMBLE};
use super::{
    ConnIo, Handshake, Hello, Inbound, LastWill, Listener, Session, ShardPort, Step, WillDelay,
};
use surepush_core::hashing::FastHashMap;
use surepush_core::{AuthError, Claims, ConnId, StateDurability, StateKey};
use surepush_mqtt as mqtt;
use surepush_mqtt::bridge::{
    self, Bridge, BridgeParams, PendingWill, SessionState, StateWrite, WillMessage,
};
use surepush_mqtt::{Packet, ProtocolLevel, ReasonCode};
use surepush_proto::{DeviceId, Frame, ProtoError, UserId};

/// Payloads from this size on are gathered after the PUBLISH header
/// instead of copied into the connection's buffer: below it a copy costs
/// less than one more chunk and iovec per packet.
const GATHER_MIN_PAYLOAD: usize = 1024;

/// Per-shard MQTT state.
pub(crate) struct MqttShard {
    params: BridgeParams,
    /// When this generation of the shards started (ms since the epoch): a
    /// session stored while its connection was open (a crash ended it)
    /// counts its expiry from here.
    opened_ms: u64,
    /// Open MQTT connections by session (for takeover).
    live: RefCell<FastHashMap<(UserId, DeviceId), Rc<ConnIo>>>,
    /// Wills waiting for their Will Delay Interval, by session: the ticket
    /// of the pending one. A new connection of the session removes it
    /// (MQTT-3.1.3-9). Each is also a `StateKey::MqttWill` record
    /// ([`PendingWill`]), so a restart waits for it again
    /// ([`MqttShard::stored_wills`]; docs/MQTT.md 2.7).
    delayed_wills: RefCell<FastHashMap<(UserId, DeviceId), u64>>,
    next_will_ticket: Cell<u64>,
}

impl MqttShard {
    pub(crate) fn new(params: BridgeParams, opened_ms: u64) -> MqttShard {
        MqttShard {
            params,
            opened_ms,
            live: RefCell::new(FastHashMap::default()),
            delayed_wills: RefCell::new(FastHashMap::default()),
            next_will_ticket: Cell::new(0),
        }
    }

    /// A will of `key` waits for its delay: its ticket.
    fn delay_will(&self, key: (UserId, DeviceId)) -> u64 {
        let ticket = self.next_will_ticket.get() + 1;
        self.next_will_ticket.set(ticket);
        self.delayed_wills.borrow_mut().insert(key, ticket);
        ticket
    }

    /// The wills waiting for their delay that this shard's log holds
    /// (`records`: its `StateKey::MqttWill` records), as a start after a
    /// restart or a crash finds them: each waits for the rest of its delay
    /// (none if it is over), and a connection that resumes its session
    /// first cancels it, as before the restart.
    pub(crate) fn stored_wills(
        &self,
        records: Vec<(StateKey, Bytes)>,
        now_ms: u64,
    ) -> Vec<LastWill> {
        let mut wills = Vec::with_capacity(records.len());
        for (key, value) in records {
            let StateKey::MqttWill { user, device } = key else {
                continue;
            };
            let Some(pending) = PendingWill::decode(&value) else {
                tracing::warn!(user = user.0, "unreadable MQTT will record ignored");
                continue;
            };
            let delay = WillDelay {
                after: std::time::Duration::from_millis(pending.due_ms.saturating_sub(now_ms)),
                ticket: self.delay_will((user, device)),
            };
            wills.push(last_will((user, device), pending.will, Some(delay)));
        }
        wills
    }

    /// The delay of will `ticket` of `key` is over: whether to publish it
    /// now (no connection of the session came meanwhile). It is no longer
    /// pending either way.
    pub(crate) fn will_due(&self, key: (UserId, DeviceId), ticket: u64) -> bool {
        let mut wills = self.delayed_wills.borrow_mut();
        if wills.get(&key) != Some(&ticket) {
            return false;
        }
        wills.remove(&key);
        if wills.is_empty() {
            *wills = FastHashMap::default();
        }
        true
    }
}

/// An MQTT CONNECT read by the accepting shard, not yet authenticated.
pub(crate) struct MqttConnect {
    connect: mqtt::Connect,
    token: String,
    /// The CONNECT packet's bytes as the client sent them, on a cluster
    /// node (a 3.1.1 client of another node's user is relayed with them).
    raw: Option<Bytes>,
    /// It came relayed by another node (never relayed again).
    relayed_in: bool,
}

/// An authenticated MQTT CONNECT on its way to the owner shard.
#[derive(Debug)]
pub(crate) struct MqttHello {
    connect: mqtt::Connect,
    token: String,
    claims: Claims,
}

/// The accepting side: the first packet must be CONNECT.
pub(crate) struct MqttHandshake {
    decoder: mqtt::Decoder,
    buf: BytesMut,
    /// Every byte fed, on a cluster node (the CONNECT's bytes to relay).
    fed: Option<BytesMut>,
    /// On a cluster node: whether the stream opened with the relay
    /// preamble (`None`: not known yet).
    relayed_in: Option<bool>,
}

impl Handshake for MqttHandshake {
    type Hello = MqttConnect;

    fn new(rt: &dyn ShardPort) -> Option<Self> {
        let mqtt = rt.mqtt()?;
        Some(MqttHandshake {
            decoder: mqtt::Decoder::new(None, mqtt.params.max_packet),
            buf: BytesMut::new(),
            fed: rt.config().cluster.enabled().then(BytesMut::new),
            // Only another cluster node relays: elsewhere the preamble is
            // not MQTT, and refused as such.
            relayed_in: (!rt.config().cluster.enabled()).then_some(false),
        })
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if let Some(fed) = &mut self.fed {
            fed.extend_from_slice(bytes);
        }
    }

    fn poll_hello(&mut self) -> Step<MqttConnect> {
        if self.relayed_in.is_none() {
            match Preamble::of(&self.buf) {
                Preamble::Incomplete => return Step::More,
                Preamble::Absent => self.relayed_in = Some(false),
                Preamble::Found => {
                    self.relayed_in = Some(true);
                    self.buf.advance(RELAY_PREAMBLE.len());
                    if let Some(fed) = &mut self.fed {
                        fed.advance(RELAY_PREAMBLE.len());
                    }
                }
            }
        }
        let connect = match self.decoder.decode(&mut self.buf) {
            Ok(None) => return Step::More,
            Ok(Some(Packet::Connect(c))) => *c,
            Ok(Some(_)) => return Step::Refuse(Vec::new()), // MQTT-3.1.0-1: close
            Err(e) => return Step::Refuse(self.refusal(&e)),
        };
        let level = connect.protocol_level;
        if let Some(code) = bridge::refuse_connect(&connect) {
            return Step::Refuse(connack(level, code));
        }
        let token = connect
            .password
            .as_ref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("")
            .to_string();
        // The decoder took the CONNECT off the front of `buf`: what was fed
        // minus what is left is its bytes.
        let left = self.buf.len();
        let raw = self.fed.take().map(|mut fed| {
            let len = fed.len() - left;
            fed.split_to(len).freeze()
        });
        Step::Hello(MqttConnect {
            connect,
            token,
            raw,
            relayed_in: self.relayed_in == Some(true),
        })
    }

    fn timed_out(&self) -> Vec<u8> {
        Vec::new() // silent, or not MQTT at all: just close
    }

    fn token(hello: &MqttConnect) -> &str {
        &hello.token
    }

    fn refuse_auth(hello: &MqttConnect, _: &AuthError) -> Vec<u8> {
        let level = hello.connect.protocol_level;
        connack(level, bridge::bad_credentials(level))
    }

    fn refuse_unavailable(hello: &MqttConnect) -> Vec<u8> {
        let level = hello.connect.protocol_level;
        let code = if level.is_v5() {
            ReasonCode::SERVER_UNAVAILABLE
        } else {
            ReasonCode(0x03)
        };
        connack(level, code)
    }

    const LISTENER: Listener = Listener::Mqtt;

    /// MQTT 5: CONNACK 0x9C (Use another server) with a Server Reference.
    /// MQTT 3.1.1 is relayed instead ([`Handshake::relayed`]); without
    /// the CONNECT's bytes it gets "server unavailable".
    fn redirect(hello: &MqttConnect, to: &str) -> Vec<u8> {
        let level = hello.connect.protocol_level;
        if !level.is_v5() {
            return connack(level, ReasonCode(0x03));
        }
        let properties = mqtt::Properties {
            server_reference: mqtt::MqttString::from_utf8(Bytes::copy_from_slice(to.as_bytes()))
                .ok(),
            ..Default::default()
        };
        let packet = Packet::ConnAck(mqtt::ConnAck {
            session_present: false,
            code: ReasonCode::USE_ANOTHER_SERVER,
            properties,
        });
        let mut out = BytesMut::new();
        let _ = mqtt::encode(&packet, level, &mut out);
        out.to_vec()
    }

    /// MQTT 3.1.1 cannot follow a redirect: its CONNECT is relayed.
    fn relayed(hello: &MqttConnect) -> Option<Bytes> {
        match hello.connect.protocol_level {
            ProtocolLevel::V311 => hello.raw.clone(),
            ProtocolLevel::V5 => None,
        }
    }

    fn arrived_relayed(hello: &MqttConnect) -> bool {
        hello.relayed_in
    }

    fn rest(self) -> Bytes {
        self.buf.freeze()
    }

    fn into_hello(hello: MqttConnect, claims: Claims) -> Hello {
        let MqttConnect { connect, token, .. } = hello;
        Hello::Mqtt(Box::new(MqttHello {
            connect,
            token,
            claims,
        }))
    }
}

impl MqttHandshake {
    /// What to answer a first packet that does not decode.
    fn refusal(&self, e: &mqtt::MqttError) -> Vec<u8> {
        let code = e.reason_code();
        // An unknown protocol level gets CONNACK 0x01 (MQTT-3.1.2-2). The
        // v5 arm would answer other refusals of a v5 CONNECT, but the
        // decoder learns the level only from a CONNECT it could decode, so
        // today such a CONNECT is just closed (allowed: MQTT-3.1.4-5 makes
        // the CONNACK optional).
        match self.decoder.protocol_level() {
            Some(ProtocolLevel::V5)
                if code.valid_in(mqtt::PacketType::ConnAck, ProtocolLevel::V5) =>
            {
                connack(ProtocolLevel::V5, code)
            }
            _ if code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
                connack(ProtocolLevel::V311, ReasonCode(0x01))
            }
            _ => Vec::new(),
        }
    }
}

fn connack(level: ProtocolLevel, code: ReasonCode) -> Vec<u8> {
    let packet = Packet::ConnAck(mqtt::ConnAck {
        session_present: false,
        code,
        properties: Default::default(),
    });
    let mut out = BytesMut::new();
    let _ = mqtt::encode(&packet, level, &mut out);
    out.to_vec()
}

/// The longest a new connection of a session waits for the connection it
/// takes over to read what its client sent before (see [`settle_takeover`]).
/// A reader pauses at most for the rest of a second (a connection over
/// `core.max_frames_per_sec`); twice that covers a timer firing late on a
/// busy shard. Without a pause the wait is one turn of the shard.
const TAKEOVER_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The session an authenticated CONNECT opens.
pub(super) fn session_of(h: &MqttHello) -> (UserId, DeviceId) {
    (h.claims.user, h.claims.device)
}

/// Whether a connection still open for `key` has input its reader has not
/// read yet (its client's last PUBACKs, its DISCONNECT).
pub(super) fn takeover_unsettled(rt: &dyn ShardPort, key: (UserId, DeviceId)) -> bool {
    rt.mqtt().is_some_and(|mqtt| {
        mqtt.live
            .borrow()
            .get(&key)
            .is_some_and(|io| io.unread_input() > 0)
    })
}

/// Waits until the connection a new one takes over for `key` has read
/// what its client sent before the new connection came (or is gone), at
/// most [`TAKEOVER_SETTLE`]. A takeover copies the session as the old
/// connection holds it: taken while PUBACKs still sat in the old socket,
/// it repeated every message they acknowledged on the next connection
/// (and a client that acknowledged, disconnected and reconnected got them
/// again).
pub(super) async fn settle_takeover(rt: &dyn ShardPort, key: (UserId, DeviceId)) {
    let deadline = std::time::Instant::now() + TAKEOVER_SETTLE;
    while takeover_unsettled(rt, key) && std::time::Instant::now() < deadline {
        // Polling: a reader tells nobody when it has read.
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// An authenticated MQTT connection on the owner shard: its session (the
/// bridge, with the session taken over from a connection still open for it
/// or resumed from the log) and its decoder.
pub(super) fn open(
    rt: &dyn ShardPort,
    h: MqttHello,
    rest: Bytes,
) -> Option<(Box<dyn Session>, MqttInbound)> {
    let Some(mqtt) = rt.mqtt() else {
        tracing::error!("an MQTT hand-off reached a shard without MQTT");
        return None;
    };
    let key = (h.claims.user, h.claims.device);
    let state_key = StateKey::MqttSession {
        user: h.claims.user,
        device: h.claims.device,
    };
    let level = h.connect.protocol_level;
    // Take the session over from a connection still open for it, else from
    // where the last connection left it (the log's record of it). The
    // bridge decides what to do with it (resume, replace or delete).
    let resumes = !h.connect.clean_start;
    if resumes {
        // A new connection of the session: a will waiting for its delay is
        // not published (MQTT-3.1.3-9), nor after a restart. Deleted before
        // this connection's own state writes, so in log order before its
        // CONNACK's.
        mqtt.delayed_wills.borrow_mut().remove(&key);
        let will_key = StateKey::MqttWill {
            user: key.0,
            device: key.1,
        };
        if rt.stored_state(&will_key).is_some() {
            rt.write_state(will_key, None, StateDurability::Now);
        }
    }
    let previous = mqtt.live.borrow().get(&key).cloned();
    let mut stored = previous.and_then(|io| {
        io.with_session(|s| {
            s.as_any()
                .downcast_mut::<MqttSession>()
                .and_then(|m| m.bridge.take_over(resumes))
        })
        .flatten()
    });
    if stored.is_none() {
        stored = rt
            .stored_state(&state_key)
            .and_then(|v| SessionState::from_record(&v, mqtt.opened_ms));
    }
    let now_ms = rt.wall_ms_now();
    if stored.as_ref().is_some_and(|s| s.expired(now_ms)) {
        // Session Expiry Interval passed since the last connection ended.
        stored = None;
        rt.write_state(state_key, None, StateDurability::Now);
    }
    let msg_id_base = now_ms * 1000;
    let bridge = Bridge::new(
        h.connect,
        h.token,
        h.claims,
        stored,
        msg_id_base,
        mqtt.params,
    );
    let inbound = MqttInbound {
        decoder: mqtt::Decoder::new(Some(level), mqtt.params.max_packet),
        // Copied: `rest` is a slice of the accepting side's buffer.
        buf: BytesMut::from(&rest[..]),
    };
    let session = MqttSession {
        bridge: Box::new(bridge),
        key,
    };
    Some((Box::new(session), inbound))
}

/// The connection is open: it is the session's live connection now.
pub(super) fn opened(rt: &dyn ShardPort, io: &Rc<ConnIo>) {
    let (Some(mqtt), Some(key)) = (rt.mqtt(), io.with_session(session_key).flatten()) else {
        return;
    };
    mqtt.live.borrow_mut().insert(key, io.clone());
}

fn session_key(s: &mut dyn Session) -> Option<(UserId, DeviceId)> {
    s.as_any().downcast_mut::<MqttSession>().map(|m| m.key)
}

/// The read side: packets decoded in place, through the bridge.
pub(crate) struct MqttInbound {
    decoder: mqtt::Decoder,
    buf: BytesMut,
}

impl Inbound for MqttInbound {
    fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    fn missing(&self) -> usize {
        0
    }

    fn on_input(
        &mut self,
        rt: &dyn ShardPort,
        conn: ConnId,
        io: &ConnIo,
    ) -> Result<(), ProtoError> {
        let (decoder, buf) = (&mut self.decoder, &mut self.buf);
        io.with_session(|s| {
            let Some(m) = s.as_any().downcast_mut::<MqttSession>() else {
                return;
            };
            loop {
                m.bridge.set_clock(rt.wall_ms_now());
                match decoder.decode(buf) {
                    Ok(Some(p)) => m.bridge.on_packet(p),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(conn = conn.as_u64(), error = %e, "bad MQTT packet");
                        // The bridge answers and asks the core to close.
                        m.bridge.on_decode_error(&e);
                        break;
                    }
                }
            }
            m.pump(rt, conn, io);
        });
        Ok(())
    }
}

/// The write side: the bridge, which turns core frames into packets.
struct MqttSession {
    bridge: Box<Bridge>,
    key: (UserId, DeviceId),
}

impl MqttSession {
    /// Moves what the bridge produced to the core and the socket: its state
    /// writes first (appended before the frames that follow, in log order),
    /// then its queries, the packets the gate lets go (`bridge/persist.rs`),
    /// then the frames.
    fn pump(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo) {
        let b = &mut self.bridge;
        while let Some(w) = b.poll_state() {
            write_bridge_state(rt, conn, w);
        }
        while let Some(key) = b.poll_state_query() {
            rt.query_state(conn, key);
        }
        while let Some(p) = b.poll_packet() {
            queue_packet(b, &p, io);
        }
        let expired = b.take_expired();
        if expired > 0 {
            rt.count_mqtt_expired(expired);
        }
        io.set_held(b.held_bytes());
        rt.check_budget(conn, io);
        // Also when nothing was queued: a writer that finds its queue
        // empty reports the output drained, which a room that lagged while
        // everything was written already waits for.
        io.wake();
        while let Some(f) = b.poll_core() {
            rt.frame(conn, f);
        }
    }
}

/// What the runtime publishes for `will` of session `key`.
fn last_will(key: (UserId, DeviceId), will: WillMessage, delay: Option<WillDelay>) -> LastWill {
    let publish = surepush_core::Publish {
        request: 0,
        key: surepush_core::SendKey {
            from: key.0,
            from_device: key.1,
            client_msg_id: will.client_msg_id,
        },
        to: will.to,
        qos: will.qos,
        attrs: will.attrs,
        payload: will.payload,
        by: surepush_core::Publisher::User {
            room_grant: will.room_grant,
        },
        confirm: will.retain.is_some(),
    };
    LastWill {
        publish,
        retain: will.retain,
        delay,
    }
}

/// Encodes `p` into the connection's queue; a large PUBLISH payload is
/// gathered after the header, not copied.
fn queue_packet(b: &Bridge, p: &Packet, io: &ConnIo) {
    if matches!(p, Packet::Publish(publish) if publish.payload.len() >= GATHER_MIN_PAYLOAD) {
        let payload = b.encode_head(p, &mut io.out.borrow_mut());
        if let Some(payload) = payload.filter(|p| !p.is_empty()) {
            io.push_shared(payload);
        }
        return;
    }
    b.encode(p, &mut io.out.borrow_mut());
}

/// Hands a bridge's state write to the core.
fn write_bridge_state(rt: &dyn ShardPort, conn: ConnId, w: StateWrite) {
    let durability = match w.report {
        Some(id) => StateDurability::Report { conn, id },
        None => StateDurability::Deferred,
    };
    rt.write_state(w.key, w.value, durability);
}

impl Session for MqttSession {
    fn send(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo, frame: Frame) {
        self.bridge.set_clock(rt.wall_ms_now());
        self.bridge.on_frame(frame);
        self.pump(rt, conn, io);
    }

    fn send_shared(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo, bytes: Bytes) {
        // A room frame the core encoded once for every subscriber: read in
        // place, its payload stays a slice of `bytes`.
        match surepush_proto::decode_shared(&bytes) {
            Ok(frame) => self.send(rt, conn, io, frame),
            Err(e) => {
                tracing::error!(conn = conn.as_u64(), error = %e, "a shared frame does not decode")
            }
        }
    }

    fn release_idle_memory(&mut self) {
        self.bridge.release_idle_memory();
    }

    fn state_stored(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo, id: u64, ok: bool) {
        self.bridge.on_state_stored(id, ok);
        self.pump(rt, conn, io);
    }

    fn state_value(
        &mut self,
        rt: &dyn ShardPort,
        conn: ConnId,
        io: &ConnIo,
        key: StateKey,
        value: Option<Bytes>,
    ) {
        self.bridge.on_state_value(key, value);
        self.pump(rt, conn, io);
    }

    fn drop_for_quota(&mut self, io: &ConnIo) {
        self.bridge.drop_for_quota();
        while let Some(p) = self.bridge.poll_packet() {
            queue_packet(&self.bridge, &p, io);
        }
    }

    /// A room out of live fan-out after ROOMLAG catches up now.
    fn output_drained(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo) -> bool {
        if !self.bridge.wants_drain() {
            // Written out and nothing to follow: the packets that went
            // after the reader last idled (a CONNACK held for its state
            // write) leave their queue slots behind otherwise.
            self.bridge.release_idle_memory();
            return false;
        }
        self.bridge.on_output_drained();
        if !rt.is_open(conn) {
            return false;
        }
        self.pump(rt, conn, io);
        true
    }

    /// Keeps or forgets the session; its will, if it is to be published.
    fn finish(self: Box<Self>, rt: &dyn ShardPort, io: &Rc<ConnIo>) -> Option<LastWill> {
        let key = self.key;
        if let Some(mqtt) = rt.mqtt() {
            let mut live = mqtt.live.borrow_mut();
            if live.get(&key).is_some_and(|l| Rc::ptr_eq(l, io)) {
                live.remove(&key);
            }
        }
        let done = self.bridge.finish(rt.wall_ms_now());
        if let Some(w) = done.write {
            // The session as the connection left it (or its deletion):
            // appended now; nobody waits, the connection is gone.
            rt.write_state(w.key, w.value, StateDurability::Now);
        }
        let will = done.will?;
        let delay = match (will.delay_s, rt.mqtt()) {
            (0, _) | (_, None) => None,
            (s, Some(mqtt)) => {
                // Kept durably while it waits: a restart publishes it when
                // its delay is over. Appended now; nobody waits for it.
                let after = std::time::Duration::from_secs(u64::from(s));
                let pending = PendingWill {
                    due_ms: rt.wall_ms_now() + after.as_millis() as u64,
                    will: will.clone(),
                };
                let will_key = StateKey::MqttWill {
                    user: key.0,
                    device: key.1,
                };
                rt.write_state(will_key, Some(pending.encode()), StateDurability::Now);
                tracing::debug!(
                    user = key.0 .0,
                    device = key.1 .0,
                    delay_s = s,
                    "MQTT will waits for its delay"
                );
                Some(WillDelay {
                    after,
                    ticket: mqtt.delay_will(key),
                })
            }
        };
        Some(last_will(key, will, delay))
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
