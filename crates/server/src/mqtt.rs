//! The MQTT front end on the shards (docs/MQTT.md).
//!
//! A second listener accepts MQTT 3.1.1 and 5.0 connections. The accepting
//! shard reads CONNECT, checks the token in the password field, and keeps
//! the connection or hands it to the shard that owns the user, as for the
//! native protocol. There a [`Bridge`] turns it into a native session of the
//! same core: storage, dedup, retransmission and fan-out are the core's.
//!
//! Two small pieces of state are MQTT's own and live beside the segment
//! logs, under `<data_dir>/mqtt/`:
//! - `sessions/{user}-{device}`: a persistent session's state
//!   ([`SessionState::encode`]: subscriptions, room positions, QoS 2 and
//!   packet-id state), rewritten (write, fsync, rename) before the CONNACK of
//!   a new session, before a SUBACK/UNSUBACK, when a room position becomes
//!   known, and when the connection ends;
//! - `retained/room-{n}`: a room's retained message, written the same way
//!   before the PUBACK of the retained PUBLISH.
//!
//! They change at subscription rate, not message rate; messages themselves
//! are only ever in the segment log. Each file carries a CRC32C
//! ([`frame_state`]); the store checks every one when it opens and refuses
//! to start on a damaged one, or, with `log.recovery = "salvage"`, moves
//! it aside (`<file>.damaged`) and goes on without it (issue 23).

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use glommio::net::TcpStream;

use super::conn::{self, ConnIo};
use super::log_every::LogEvery;
use super::mesh::MeshMsg;
use super::runtime::ShardRuntime;
use surepush_core::hashing::FastHashMap;
use surepush_core::{shard_of, Action, ConnId};
use surepush_mqtt as mqtt;
use surepush_mqtt::bridge::{self, Bridge, BridgeParams, Keep, Retained, SessionState};
use surepush_mqtt::{Packet, ProtocolLevel, QoS, ReasonCode};
use surepush_proto::{DeviceId, UserId};

/// Read size per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// MQTT state shared by the node's shards: retained messages and the
/// directory of persistent sessions.
#[derive(Debug)]
pub(crate) struct MqttStore {
    /// When this process opened the store (ms since the epoch).
    opened_ms: u64,
    sessions: PathBuf,
    retained_dir: PathBuf,
    retained: Mutex<FastHashMap<u64, Retained>>,
    /// Failed state writes (a full disk fails every one), logged at most
    /// once a second.
    write_failures_log: LogEvery,
}

impl MqttStore {
    /// Opens (creating) `<data_dir>/mqtt`, checks every state file and
    /// loads the retained messages. A damaged file is an error, or with
    /// `salvage` is moved aside.
    pub(crate) fn open(data_dir: &Path, salvage: bool) -> std::io::Result<MqttStore> {
        let root = data_dir.join("mqtt");
        let sessions = root.join("sessions");
        let retained_dir = root.join("retained");
        std::fs::create_dir_all(&sessions)?;
        std::fs::create_dir_all(&retained_dir)?;
        let mut retained = FastHashMap::default();
        for entry in std::fs::read_dir(&retained_dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(room) = name.strip_prefix("room-").and_then(|n| n.parse().ok()) else {
                continue; // a temp file of an interrupted write, or foreign
            };
            let bytes = std::fs::read(&path)?;
            match unframe_state(&bytes).and_then(decode_retained) {
                Some(msg) => {
                    retained.insert(room, msg);
                }
                None => damaged_state(&path, salvage)?,
            }
        }
        for entry in std::fs::read_dir(&sessions)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.contains('.') {
                continue; // a temp file, or one moved aside
            }
            let bytes = std::fs::read(&path)?;
            if unframe_state(&bytes)
                .and_then(SessionState::decode)
                .is_none()
            {
                damaged_state(&path, salvage)?;
            }
        }
        Ok(MqttStore {
            opened_ms: ShardRuntime::wall_ms_now(),
            sessions,
            retained_dir,
            retained: Mutex::new(retained),
            write_failures_log: LogEvery::new(Duration::from_secs(1)),
        })
    }

    fn retained(&self, room: u64) -> Option<Retained> {
        self.retained
            .lock()
            .expect("no panics under this lock")
            .get(&room)
            .cloned()
    }

    /// Sets (or clears) a room's retained message, durably.
    fn set_retained(&self, room: u64, msg: Option<Retained>) -> std::io::Result<()> {
        let path = self.retained_dir.join(format!("room-{room}"));
        let mut map = self.retained.lock().expect("no panics under this lock");
        match &msg {
            Some(m) => write_durably(&path, &encode_retained(m))?,
            None => remove_durably(&path)?,
        }
        match msg {
            Some(m) => map.insert(room, m),
            None => map.remove(&room),
        };
        Ok(())
    }

    fn session_path(&self, (user, device): (UserId, DeviceId)) -> PathBuf {
        self.sessions.join(format!("{}-{}", user.0, device.0))
    }

    fn load_session(&self, key: (UserId, DeviceId)) -> Option<SessionState> {
        let path = self.session_path(key);
        let bytes = std::fs::read(&path).ok()?;
        let mut state = unframe_state(&bytes).and_then(SessionState::decode);
        match &mut state {
            // Written while its connection was open, which the last stop
            // (or crash) ended: the session expiry counts from then.
            Some(s) => s.mark_ended(self.opened_ms),
            None => tracing::warn!(path = %path.display(), "unreadable MQTT session state ignored"),
        }
        state
    }

    fn save_session(&self, key: (UserId, DeviceId), bytes: &[u8]) -> std::io::Result<()> {
        write_durably(&self.session_path(key), bytes).inspect_err(|e| {
            if let Some(failures) = self.write_failures_log.tick() {
                tracing::error!(user = key.0 .0, device = key.1 .0, error = %e, failures, "cannot store an MQTT session");
            }
        })
    }

    fn forget_session(&self, key: (UserId, DeviceId)) {
        if let Err(e) = remove_durably(&self.session_path(key)) {
            if let Some(failures) = self.write_failures_log.tick() {
                tracing::error!(user = key.0 .0, device = key.1 .0, error = %e, failures, "cannot remove an MQTT session");
            }
        }
    }
}

/// First bytes of a state file written with its checksum.
const STATE_MAGIC: [u8; 4] = *b"SPMQ";

/// `bytes` as a state file holds them: magic, CRC32C of `bytes`, `bytes`.
fn frame_state(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The content of a state file, verified; a file written before the
/// checksum existed is returned as it is (its decoder still checks its
/// shape). `None`: damaged.
fn unframe_state(file: &[u8]) -> Option<&[u8]> {
    let Some(rest) = file.strip_prefix(&STATE_MAGIC) else {
        return Some(file);
    };
    let (crc, body) = rest.split_first_chunk::<4>()?;
    (crc32c::crc32c(body) == u32::from_le_bytes(*crc)).then_some(body)
}

/// A state file that does not verify: refuse to start, or (salvage) move
/// it aside and go on without it.
fn damaged_state(path: &Path, salvage: bool) -> std::io::Result<()> {
    if !salvage {
        return Err(std::io::Error::other(format!(
            "{} is damaged (checksum or layout); nothing was changed. Start once with \
             log.recovery = \"salvage\" to move it aside and go on without it",
            path.display()
        )));
    }
    let aside = path.with_extension("damaged");
    std::fs::rename(path, &aside)?;
    sync_dir(path)?;
    tracing::error!(file = %path.display(), moved_to = %aside.display(), "salvage: a damaged MQTT state file moved aside (that session or retained message is lost)");
    Ok(())
}

/// Writes `bytes` to `path` so that after a crash it holds either the old
/// or the new content: temp file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&frame_state(bytes))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().expect("files live in a directory"))?.sync_all()
}

fn encode_retained(m: &Retained) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + m.payload.len());
    out.push(m.qos as u8);
    out.extend_from_slice(&m.from.0.to_le_bytes());
    out.extend_from_slice(&m.payload);
    out
}

fn decode_retained(b: &[u8]) -> Option<Retained> {
    let qos = QoS::from_u8(*b.first()?)?;
    let from = UserId(u64::from_le_bytes(b.get(1..9)?.try_into().ok()?));
    let payload = Bytes::copy_from_slice(&b[9..]);
    (!payload.is_empty()).then_some(Retained { from, qos, payload })
}

/// Per-shard MQTT state.
pub(crate) struct MqttShard {
    store: Arc<MqttStore>,
    params: BridgeParams,
    /// Persistent sessions whose connection ended (also on disk).
    sessions: RefCell<FastHashMap<(UserId, DeviceId), SessionState>>,
    /// Open MQTT connections by session (for takeover).
    live: RefCell<FastHashMap<(UserId, DeviceId), Rc<ConnIo>>>,
}

impl MqttShard {
    pub(crate) fn new(store: Arc<MqttStore>, params: BridgeParams) -> MqttShard {
        MqttShard {
            store,
            params,
            sessions: RefCell::new(FastHashMap::default()),
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
    let owner = shard_of(claims.user, rt.shards);
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
    let level = h.connect.protocol_level;
    // Take the session over from a connection still open for it, else from
    // where the last connection left it.
    let previous = mqtt.live.borrow().get(&key).cloned();
    let mut stored =
        previous.and_then(|io| io.bridge.borrow_mut().as_mut().and_then(|b| b.take_over()));
    if stored.is_none() {
        stored = mqtt.sessions.borrow_mut().remove(&key);
    }
    if stored.is_none() && !h.connect.clean_start {
        stored = mqtt.store.load_session(key);
    }
    let now_ms = ShardRuntime::wall_ms_now();
    if stored.as_ref().is_some_and(|s| s.expired(now_ms)) {
        // Session Expiry Interval passed since the last connection ended.
        stored = None;
        mqtt.store.forget_session(key);
    }
    let msg_id_base = ShardRuntime::wall_ms_now() * 1000;
    let clean_start = h.connect.clean_start;
    let bridge = Bridge::new(
        h.connect,
        h.token,
        h.claims,
        stored,
        msg_id_base,
        mqtt.params,
    );
    if clean_start || !bridge.persistent() {
        // Discarded (clean start), or ends with this connection (expiry
        // 0): a file left on disk could be resumed after a crash.
        mqtt.store.forget_session(key);
    }
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
    /// Moves what a bridge produced to the socket and the core: durable
    /// MQTT state first, then the packets (so a PUBACK or SUBACK leaves
    /// only after what it confirms is on disk), then the frames.
    pub(crate) fn pump_bridge(&self, conn: ConnId, io: &Rc<ConnIo>) {
        let Some(mqtt) = self.mqtt.as_ref() else {
            return;
        };
        let mut frames = Vec::new();
        {
            let mut guard = io.bridge.borrow_mut();
            let Some(b) = guard.as_mut() else { return };
            let mut stored = Ok(());
            while let Some((room, msg)) = b.poll_retain() {
                stored = stored.and(mqtt.store.set_retained(room, msg).inspect_err(|e| {
                    if let Some(failures) = mqtt.store.write_failures_log.tick() {
                        tracing::error!(room, error = %e, failures, "cannot store a retained message");
                    }
                }));
            }
            if let Some(state) = b.take_dirty_state() {
                stored = stored.and(mqtt.store.save_session(b.session(), &state));
            }
            if stored.is_err() {
                // What the queued PUBACK/SUBACK would confirm is not on
                // disk: withdraw them and close; the client retries.
                b.abort(ReasonCode::UNSPECIFIED_ERROR);
            }
            while let Some(room) = b.poll_retained_query() {
                if let Some(msg) = mqtt.store.retained(room) {
                    b.deliver_retained(room, msg);
                }
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
            Action::Send { conn, .. } | Action::SendShared { conn, .. } => *conn,
            _ => return Some(action),
        };
        let Some(io) = self.conn_io(conn).filter(|io| io.bridge.borrow().is_some()) else {
            return Some(action);
        };
        let frame = match action {
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
        match done.keep {
            Keep::Save(state) => {
                // Best effort: the connection is gone; a failure is logged.
                let _ = mqtt.store.save_session(key, &state.encode());
                mqtt.sessions.borrow_mut().insert(key, state);
            }
            Keep::Forget => {
                // A session file may exist from earlier in this connection
                // (written when it was still persistent) or before it.
                mqtt.sessions.borrow_mut().remove(&key);
                mqtt.store.forget_session(key);
            }
            Keep::Nothing => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_messages_round_trip_and_empty_ones_are_refused() {
        let m = Retained {
            from: UserId(9),
            qos: QoS::AtLeastOnce,
            payload: Bytes::from_static(b"status: up"),
        };
        assert_eq!(decode_retained(&encode_retained(&m)), Some(m));
        assert_eq!(decode_retained(&[1, 0, 0, 0, 0, 0, 0, 0, 9]), None);
        assert_eq!(decode_retained(&[3; 12]), None);
        assert_eq!(decode_retained(&[1, 2]), None);
    }

    #[test]
    fn a_store_reopened_finds_its_retained_messages_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = MqttStore::open(dir.path(), false).unwrap();
        let m = Retained {
            from: UserId(1),
            qos: QoS::ExactlyOnce,
            payload: Bytes::from_static(b"x"),
        };
        store.set_retained(4, Some(m.clone())).unwrap();
        store.set_retained(5, Some(m.clone())).unwrap();
        store.set_retained(5, None).unwrap();
        let key = (UserId(3), DeviceId(2));
        store
            .save_session(key, &SessionState::new(77).encode())
            .unwrap();
        let again = MqttStore::open(dir.path(), false).unwrap();
        assert_eq!(again.retained(4), Some(m));
        assert_eq!(again.retained(5), None);
        let loaded = again.load_session(key).expect("stored");
        // Written while connected (no end time), found after a restart: the
        // expiry (0 here) counts from the restart, so it has expired.
        assert!(loaded.expired(again.opened_ms));
        again.forget_session(key);
        assert!(again.load_session(key).is_none());
    }

    /// Issue 23, item 4: a flipped byte in a retained message or a session
    /// file refuses the start (nothing changed); salvage moves that file
    /// aside and keeps the rest.
    #[test]
    fn a_damaged_state_file_refuses_the_start_and_salvage_moves_only_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = MqttStore::open(dir.path(), false).unwrap();
        let m = Retained {
            from: UserId(1),
            qos: QoS::AtLeastOnce,
            payload: Bytes::from_static(b"kept"),
        };
        store.set_retained(1, Some(m.clone())).unwrap();
        store.set_retained(2, Some(m.clone())).unwrap();
        let (good, bad) = ((UserId(3), DeviceId(1)), (UserId(4), DeviceId(1)));
        for key in [good, bad] {
            store
                .save_session(key, &SessionState::new(77).encode())
                .unwrap();
        }
        let root = dir.path().join("mqtt");
        for (file, at) in [("retained/room-2", 14), ("sessions/4-1", 9)] {
            let path = root.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at] ^= 0x04;
            std::fs::write(&path, &bytes).unwrap();
            let e = MqttStore::open(dir.path(), false).unwrap_err().to_string();
            assert!(e.contains(file) && e.contains("damaged"), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing changed");
            bytes[at] ^= 0x04;
            std::fs::write(&path, &bytes).unwrap();
            MqttStore::open(dir.path(), false).unwrap();
        }
        for (file, at) in [("retained/room-2", 14), ("sessions/4-1", 9)] {
            let path = root.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at] ^= 0x04;
            std::fs::write(&path, &bytes).unwrap();
        }
        let salvaged = MqttStore::open(dir.path(), true).unwrap();
        assert_eq!(salvaged.retained(1), Some(m));
        assert_eq!(salvaged.retained(2), None);
        assert!(root.join("retained/room-2.damaged").exists());
        assert!(salvaged.load_session(good).is_some());
        assert!(salvaged.load_session(bad).is_none());
        assert!(root.join("sessions/4-1.damaged").exists());
        // Files written before the checksum existed still load.
        std::fs::write(
            root.join("retained/room-9"),
            encode_retained(&Retained {
                from: UserId(2),
                qos: QoS::AtMostOnce,
                payload: Bytes::from_static(b"old"),
            }),
        )
        .unwrap();
        assert!(MqttStore::open(dir.path(), false)
            .unwrap()
            .retained(9)
            .is_some());
    }
}
