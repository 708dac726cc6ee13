//! The MQTT front end on the shards (docs/MQTT.md).
//!
//! A second listener accepts MQTT 3.1.1 and 5.0 connections. The accepting
//! shard reads CONNECT, checks the token in the password field, and keeps
//! the connection or hands it to the shard that owns the user, as for the
//! native protocol. There a [`Bridge`] turns it into a native session of the
//! same core: storage, dedup, retransmission and fan-out are the core's.
//!
//! Two small pieces of state are MQTT's own: a persistent session's state
//! ([`SessionState`]: subscriptions, room positions, QoS 2 and packet-id
//! state) and a room's retained message. Both are keyed state records in
//! the segment log (`StateKey::MqttSession` on the user's shard,
//! `StateKey::Retained` on the room's home shard), written through the core
//! ([`surepush_core::Shard::handle_state`]) in log order with the messages.
//! The bridge says which packet waits for which write (`bridge/persist.rs`);
//! here they are only carried: nothing blocks the shard, and no state is
//! shared between shards. The files of earlier builds are moved into the
//! log on the first start (`mqtt_legacy.rs`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use glommio::net::TcpStream;

use super::conn::{self, ConnIo};
use super::mesh::MeshMsg;
use super::runtime::ShardRuntime;
use surepush_core::hashing::FastHashMap;
use surepush_core::{Action, ConnId, Router, StateDurability, StateKey};
use surepush_mqtt as mqtt;
use surepush_mqtt::bridge::{self, Bridge, BridgeParams, SessionState, StateWrite};
use surepush_mqtt::{Packet, ProtocolLevel, ReasonCode};
use surepush_proto::{DeviceId, UserId};

/// Read size per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// Per-shard MQTT state.
pub(crate) struct MqttShard {
    params: BridgeParams,
    /// When this generation of the shards started (ms since the epoch): a
    /// session stored while its connection was open (a crash ended it)
    /// counts its expiry from here.
    opened_ms: u64,
    /// Open MQTT connections by session (for takeover).
    live: RefCell<FastHashMap<(UserId, DeviceId), Rc<ConnIo>>>,
}

impl MqttShard {
    pub(crate) fn new(params: BridgeParams, opened_ms: u64) -> MqttShard {
        MqttShard {
            params,
            opened_ms,
            live: RefCell::new(FastHashMap::default()),
        }
    }
}

/// Accepting side: reads CONNECT within the connect timeout, checks it and
/// the token, then serves the connection here or hands it to the owner.
pub(crate) async fn accept(rt: Rc<ShardRuntime>, mut stream: TcpStream) {
    let Some(mqtt) = rt.mqtt.as_ref() else { return };
    let timeout = Duration::from_millis(rt.config.core.connect_timeout_ms);
    let mut buf = BytesMut::new();
    let max_packet = mqtt.params.max_packet;
    let first = future::or(read_connect(&mut stream, &mut buf, max_packet), async {
        glommio::timer::sleep(timeout).await;
        Err(None)
    })
    .await;
    let connect = match first {
        Ok(c) => c,
        Err(Some(reply)) => return conn::refuse_with(stream, &reply).await,
        Err(None) => return, // silent, gone, or not MQTT at all
    };
    let level = connect.protocol_level;
    if let Some(code) = bridge::refuse_connect(&connect) {
        return conn::refuse_with(stream, &connack(level, code)).await;
    }
    let token = connect
        .password
        .as_ref()
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or("")
        .to_string();
    let claims = match rt.verifier.verify(&token, rt.wall_ms()) {
        Ok(c) => c,
        Err(_) => {
            rt.count_auth_failure();
            let code = bridge::bad_credentials(level);
            return conn::refuse_with(stream, &connack(level, code)).await;
        }
    };
    let rest = buf.freeze();
    let owner = Router::of_node(rt.shards).owner(claims.user).0;
    let session = Box::new(Handoff {
        connect,
        token,
        claims,
        rest,
    });
    if owner == rt.id {
        start(&rt, stream, *session);
        return;
    }
    match conn::duplicate(&stream) {
        Ok(fd) => {
            drop(stream);
            rt.handoff(owner, MeshMsg::MqttHandoff { fd, session });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot duplicate a socket for handoff");
            let reply = connack(level, unavailable(level));
            conn::refuse_with(stream, &reply).await;
        }
    }
}

/// An authenticated MQTT CONNECT on its way to the owner shard.
#[derive(Debug)]
pub(crate) struct Handoff {
    connect: mqtt::Connect,
    token: String,
    claims: surepush_core::Claims,
    /// Bytes received after CONNECT.
    rest: Bytes,
}

/// The owner's side of a handoff.
pub(crate) fn adopt(rt: &Rc<ShardRuntime>, fd: std::os::fd::OwnedFd, session: Handoff) {
    start(rt, conn::stream_from(fd), session);
}

fn unavailable(level: ProtocolLevel) -> ReasonCode {
    if level.is_v5() {
        ReasonCode::SERVER_UNAVAILABLE
    } else {
        ReasonCode(0x03)
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

/// Reads the first packet; it must be CONNECT. `Err(Some(bytes))`: answer
/// with `bytes` and close; `Err(None)`: just close.
async fn read_connect(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    max_packet: u32,
) -> Result<mqtt::Connect, Option<Vec<u8>>> {
    let mut decoder = mqtt::Decoder::new(None, max_packet);
    let mut chunk = [0u8; 4096];
    loop {
        match decoder.decode(buf) {
            Ok(Some(Packet::Connect(c))) => return Ok(*c),
            Ok(Some(_)) => return Err(None), // MQTT-3.1.0-1: close
            Ok(None) => {}
            Err(e) => {
                let code = e.reason_code();
                // An unknown protocol level gets CONNACK 0x01 (MQTT-3.1.2-2).
                // The v5 arm would answer other refusals of a v5 CONNECT,
                // but the decoder learns the level only from a CONNECT it
                // could decode, so today such a CONNECT is just closed
                // (allowed: MQTT-3.1.4-5 makes the CONNACK optional).
                let reply = match decoder.protocol_level() {
                    Some(ProtocolLevel::V5)
                        if code.valid_in(mqtt::PacketType::ConnAck, ProtocolLevel::V5) =>
                    {
                        Some(connack(ProtocolLevel::V5, code))
                    }
                    _ if code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
                        Some(connack(ProtocolLevel::V311, ReasonCode(0x01)))
                    }
                    _ => None,
                };
                return Err(reply);
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Serves an authenticated MQTT connection on the owner shard.
fn start(rt: &Rc<ShardRuntime>, stream: TcpStream, h: Handoff) {
    let mqtt = rt
        .mqtt
        .as_ref()
        .expect("MQTT connections only when enabled");
    let key = (h.claims.user, h.claims.device);
    let state_key = StateKey::MqttSession {
        user: h.claims.user,
        device: h.claims.device,
    };
    let level = h.connect.protocol_level;
    // Take the session over from a connection still open for it, else from
    // where the last connection left it (the log's record of it). The
    // bridge decides what to do with it (resume, replace or delete).
    let previous = mqtt.live.borrow().get(&key).cloned();
    let mut stored =
        previous.and_then(|io| io.bridge.borrow_mut().as_mut().and_then(|b| b.take_over()));
    if stored.is_none() {
        stored = rt
            .stored_state(&state_key)
            .and_then(|v| SessionState::from_record(&v, mqtt.opened_ms));
    }
    let now_ms = ShardRuntime::wall_ms_now();
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
    let (io, signals) = ConnIo::new(&stream);
    *io.bridge.borrow_mut() = Some(Box::new(bridge));
    let conn = rt.open_connection(io.clone());
    mqtt.live.borrow_mut().insert(key, io.clone());
    let (reader, writer) = futures_lite::io::split(stream);
    glommio::spawn_local(conn::write_loop(
        rt.clone(),
        conn,
        io.clone(),
        writer,
        signals,
    ))
    .detach();
    glommio::spawn_local(read_loop(rt.clone(), conn, io, reader, h.rest, level)).detach();
}

async fn read_loop(
    rt: Rc<ShardRuntime>,
    conn: ConnId,
    io: Rc<ConnIo>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    rest: Bytes,
    level: ProtocolLevel,
) {
    let max_packet = rt.mqtt.as_ref().map_or(0, |m| m.params.max_packet);
    let mut decoder = mqtt::Decoder::new(Some(level), max_packet);
    let mut buf = BytesMut::from(&rest[..]);
    drop(rest); // a slice of the accepting side's buffer: do not pin it
    loop {
        loop {
            let packet = decoder.decode(&mut buf);
            let mut guard = io.bridge.borrow_mut();
            let Some(bridge) = guard.as_mut() else { break };
            match packet {
                Ok(Some(p)) => bridge.on_packet(p),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(conn = conn.as_u64(), error = %e, "bad MQTT packet");
                    bridge.on_decode_error(&e);
                    break;
                }
            }
        }
        rt.pump_bridge(conn, &io);
        rt.drive();
        if io.closing.get() {
            return conn::drain_until_closed(reader, &io).await;
        }
        rt.wait_for_mesh_room().await;
        let old = buf.len();
        buf.resize(old + READ_CHUNK, 0);
        match reader.read(&mut buf[old..]).await {
            Ok(n) if n > 0 => buf.truncate(old + n),
            _ => {
                buf.truncate(old);
                rt.transport_closed(conn);
                io.shutdown();
                return io.reader_done();
            }
        }
    }
}

impl ShardRuntime {
    /// Moves what a bridge produced to the core and the socket: its state
    /// writes first (appended before the frames that follow, in log order),
    /// then its queries, the packets the gate lets go (`bridge/persist.rs`),
    /// then the frames.
    pub(crate) fn pump_bridge(&self, conn: ConnId, io: &Rc<ConnIo>) {
        let mut frames = Vec::new();
        {
            let mut guard = io.bridge.borrow_mut();
            let Some(b) = guard.as_mut() else { return };
            while let Some(w) = b.poll_state() {
                self.write_bridge_state(conn, w);
            }
            while let Some(key) = b.poll_state_query() {
                self.query_state(conn, key);
            }
            let mut out = io.out.borrow_mut();
            while let Some(p) = b.poll_packet() {
                b.encode(&p, &mut out);
            }
            while let Some(f) = b.poll_core() {
                frames.push(f);
            }
        }
        self.check_write_budget(conn, io);
        // Also when nothing was queued: a writer that finds its queue
        // empty reports the output drained, which a room that lagged while
        // everything was written already waits for.
        io.wake();
        for f in frames {
            self.frame(conn, f);
        }
    }

    /// Hands a bridge's state write to the core.
    fn write_bridge_state(&self, conn: ConnId, w: StateWrite) {
        let durability = match w.report {
            Some(id) => StateDurability::Report { conn, id },
            None => StateDurability::Deferred,
        };
        self.write_state(w.key, w.value, durability);
    }

    /// A connection's writer emptied its queue: an MQTT session waiting for
    /// that (a room out of live fan-out after ROOMLAG) catches up now.
    pub(crate) fn output_drained(self: &Rc<Self>, conn: ConnId, io: &Rc<ConnIo>) {
        {
            let mut guard = io.bridge.borrow_mut();
            match guard.as_mut() {
                Some(b) if b.wants_drain() => b.on_output_drained(),
                _ => return,
            }
        }
        if self.conn_io(conn).is_some() {
            self.pump_bridge(conn, io);
            self.drive();
        }
    }

    /// Hands an action for an MQTT connection to its bridge (`None`);
    /// returns every other action.
    pub(crate) fn to_bridge(&self, action: Action) -> Option<Action> {
        if self.mqtt.is_none() {
            return Some(action);
        }
        let conn = match &action {
            Action::Send { conn, .. }
            | Action::SendShared { conn, .. }
            | Action::StateStored { conn, .. }
            | Action::StateValue { conn, .. } => *conn,
            _ => return Some(action),
        };
        let Some(io) = self.conn_io(conn).filter(|io| io.bridge.borrow().is_some()) else {
            return Some(action);
        };
        let frame = match action {
            Action::StateStored { id, ok, .. } => {
                if let Some(b) = io.bridge.borrow_mut().as_mut() {
                    b.on_state_stored(id, ok);
                }
                self.pump_bridge(conn, &io);
                return None;
            }
            Action::StateValue { key, value, .. } => {
                if let Some(b) = io.bridge.borrow_mut().as_mut() {
                    b.on_state_value(key, value);
                }
                self.pump_bridge(conn, &io);
                return None;
            }
            Action::Send { frame, .. } => frame,
            Action::SendShared { bytes, .. } => {
                // A room frame encoded once for native subscribers.
                let mut d = surepush_proto::Decoder::new(bytes.len() as u32);
                d.feed(&bytes);
                match d.decode() {
                    Ok(Some(frame)) => frame,
                    _ => return None,
                }
            }
            other => return Some(other),
        };
        if let Some(b) = io.bridge.borrow_mut().as_mut() {
            b.on_frame(frame);
        }
        self.pump_bridge(conn, &io);
        None
    }

    /// An MQTT connection is gone: keep or forget its session, publish its will.
    pub(crate) fn finish_bridge(self: &Rc<Self>, io: &Rc<ConnIo>) {
        let Some(mqtt) = self.mqtt.as_ref() else {
            return;
        };
        let Some(b) = io.bridge.borrow_mut().take() else {
            return;
        };
        let key = b.session();
        {
            let mut live = mqtt.live.borrow_mut();
            if live.get(&key).is_some_and(|l| Rc::ptr_eq(l, io)) {
                live.remove(&key);
            }
        }
        let done = b.finish(ShardRuntime::wall_ms_now());
        if let Some(w) = done.write {
            // The session as the connection left it (or its deletion):
            // appended now; nobody waits, the connection is gone.
            self.write_state(w.key, w.value, StateDurability::Now);
        }
        if let Some(will) = done.will {
            let rt = self.clone();
            let send = surepush_log::SendKey {
                from: key.0,
                from_device: key.1,
                client_msg_id: will.client_msg_id,
            };
            glommio::spawn_local(async move {
                let by = surepush_core::Publisher::User {
                    room_grant: will.room_grant,
                };
                let outcome = rt.publish(send, will.to, will.qos, will.payload, by).await;
                tracing::debug!(user = key.0 .0, ?outcome, "MQTT will published");
            })
            .detach();
        }
    }
}
