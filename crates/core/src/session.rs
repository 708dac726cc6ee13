//! Connection lifecycle: open, CONNECT, frame dispatch, limits, close.
//!
//! Invariants:
//! - a connection without a session accepts only CONNECT (anything else is
//!   `NotConnected`), and must send it within `connect_timeout_ms`;
//! - at most one connection per (user, device): a newer one replaces the
//!   older, which gets DISCONNECT `Replaced`;
//! - every limit breach is answered with a typed ERROR, then a close;
//! - a CONNECT whose `last_seq` is beyond the inbox head (the gateway lost
//!   what the device holds, say to a salvaged damage) raises the head to
//!   it: the device is evidence those sequences were handed out, and they
//!   are never numbered again. The raise is a cursor record; the CONNACK
//!   (and anything sent meanwhile) waits until it is durable.

/// How far above the head a CONNECT `last_seq` may raise it; beyond, the
/// claim is refused (`AckBeyondSent`): no device holds four billion
/// messages the gateway lost, and sequences must stay far from overflow.
pub(super) const MAX_RAISE: u64 = 1 << 32;

use std::collections::VecDeque;

use super::action::{Action, ConnId};
use super::sessions::{Conn, Device, SyncState};
use super::shard::{AppendPurpose, Shard, TimerEvent, NS_PER_MS};
use crate::config::MQTT_MAX_KEEPALIVE_MS;
use crate::Record;
use surepush_proto::{ConnAck, Connect, DeviceId, ErrorCode, Frame, Seq, UserId, KEEPALIVE_OFF};

/// `Conn::idle_limit_ns` of a session without keepalive: never idle.
const IDLE_NEVER: u64 = u64::MAX;

impl Shard {
    pub(super) fn open_connection(&mut self, transport: &'static str) -> ConnId {
        let idle_limit_ns = self.config.connect_timeout_ms * NS_PER_MS;
        let now_ns = self.now_ns;
        let id = self.sessions.open(|generation| Conn {
            generation,
            session: None,
            live: false,
            sent_up_to: Default::default(),
            gone_to: Default::default(),
            held: None,
            pending: VecDeque::new(),
            held_echoes: Vec::new(),
            refill: None,
            sync: SyncState::default(),
            last_rx_ns: now_ns,
            idle_timer: None,
            idle_limit_ns,
            pending_sends: 0,
            rate_window_start_ns: now_ns,
            rate_count: 0,
            rooms: Vec::new(),
            verifying: false,
            deferred: VecDeque::new(),
            acl: Default::default(),
            transport,
            since_ms: 0,
        });
        self.arm_idle(id);
        id
    }

    pub(super) fn on_frame(&mut self, conn: ConnId, frame: Frame) {
        let now = self.now_ns;
        let Some(c) = self.conn_mut(conn) else {
            return; // closed by us; the driver may still deliver buffered frames
        };
        c.last_rx_ns = now;
        if now.saturating_sub(c.rate_window_start_ns) >= 1_000 * NS_PER_MS {
            c.rate_window_start_ns = now;
            c.rate_count = 0;
        }
        // Over the allowance the frame is still served (it was read and
        // may be a SEND the client waits on): the driver stops reading
        // this connection for the rest of the second instead
        // (`Shard::read_pause`), so TCP slows the client down.
        // Acknowledgements do not count: each only moves a cursor, and
        // throttling them throttles the delivery the client keeps up with
        // (an MQTT client draining a backlog at 100k messages/s sends a
        // PUBACK each; at 10,000 frames/s its drain fell to a quarter).
        if !matches!(frame, Frame::Ack(_) | Frame::RoomAck { .. }) {
            c.rate_count = c.rate_count.saturating_add(1);
        }
        let session = c.session;
        match (session, frame) {
            (None, Frame::Connect(connect)) => self.on_connect(conn, connect),
            (Some(_), Frame::Connect(_)) => {
                self.fail(conn, ErrorCode::AlreadyConnected, "second CONNECT")
            }
            (None, _) => self.fail(conn, ErrorCode::NotConnected, "CONNECT must come first"),
            (Some(_), Frame::Ping(n)) => self.send_frame(conn, Frame::Pong(n)),
            (Some(_), Frame::Pong(_)) => {}
            (Some((user, device)), Frame::Send(s)) => self.on_send(conn, user, device, s),
            (Some((user, device)), Frame::Ack(seq)) => self.on_ack(conn, user, device, seq),
            (Some((user, device)), Frame::Sync(s)) => self.on_sync(conn, user, device, s),
            (Some((user, device)), Frame::ConvList(l)) => self.on_conv_list(conn, user, device, l),
            (Some((user, _)), Frame::ConvFetch(f)) => self.on_conv_fetch(conn, user, f),
            (Some(_), Frame::Subscribe(s)) => self.on_subscribe(conn, s),
            (Some(_), Frame::Unsubscribe { room }) => self.on_unsubscribe(conn, room),
            (Some(_), Frame::RoomAck { room, seq }) => self.on_room_ack(conn, room, seq),
            (Some((user, _)), Frame::Watch(w)) => self.on_watch(conn, user, w),
            (Some(_), Frame::Unwatch(users)) => self.on_unwatch(conn, users),
            (Some(_), Frame::Filter(f)) => self.on_filter(conn, f),
            (Some(_), Frame::Share(s)) => self.on_share(conn, s),
            (Some(_), Frame::ShareAck(a)) => self.on_share_ack(conn, a),
            (Some((user, device)), Frame::Rel { client_msg_id, to }) => {
                self.on_rel(conn, user, device, client_msg_id, to)
            }
            (Some(_), Frame::Disconnect(_)) => {
                self.close_with(conn, Frame::disconnect(ErrorCode::Normal, ""))
            }
            (Some(_), Frame::Error(e)) => {
                tracing::debug!(
                    conn = conn.as_u64(),
                    code = e.code,
                    "client reported an error"
                );
            }
            (Some(_), other) => self.fail(
                conn,
                ErrorCode::Malformed,
                &format!(
                    "{} is sent by the gateway, not by clients",
                    other.kind().name()
                ),
            ),
        }
    }

    fn on_connect(&mut self, conn: ConnId, connect: Connect) {
        let claims = match self.auth.verify(&connect.token, self.wall_ms()) {
            Ok(c) => c,
            Err(e) => {
                self.stats.auth_failures += 1;
                self.fail(conn, e.code(), &e.to_string());
                return;
            }
        };
        if claims.device != connect.device {
            self.stats.auth_failures += 1;
            self.fail(
                conn,
                ErrorCode::DeviceMismatch,
                "CONNECT device differs from the token's",
            );
            return;
        }
        let user = claims.user;
        if !self.router.is_mine(user) {
            // The routes changed between the accepting shard's decision and
            // this one's (a partition moved between shards or nodes: each
            // shard swaps its routes snapshot on its own turn). Transient:
            // the client retries and is routed by the new routes.
            tracing::info!(%user, shard = self.params.id.0, "session reached a shard that no longer owns its user");
            self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "this user's partition just moved; retry",
            );
            return;
        }
        if self.is_fenced(user) {
            // Its partition is moving: come back when it has landed.
            self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "this user's partition is moving; retry",
            );
            return;
        }
        let max_conns = self.config.max_connections_per_user as usize;
        let inbox = self.sessions.inbox_entry(user);
        let durable = inbox.durable;
        let raise = connect.last_seq.filter(|last| *last > durable);
        if let Some(last) = raise {
            if last.0 - durable.0 > MAX_RAISE {
                self.fail(
                    conn,
                    ErrorCode::AckBeyondSent,
                    &format!(
                        "last_seq {} is more than {MAX_RAISE} beyond the inbox head {}",
                        last.0, durable.0
                    ),
                );
                return;
            }
            if self.storage.failed() {
                self.fail(
                    conn,
                    ErrorCode::StorageUnavailable,
                    "cannot record a last_seq beyond the inbox head now",
                );
                return;
            }
        }
        let replaced = inbox.device_mut(connect.device).and_then(|d| d.conn.take());
        let online = inbox.devices.iter().filter(|d| d.conn.is_some()).count();
        if replaced.is_none() && online >= max_conns {
            self.fail(
                conn,
                ErrorCode::TooManyConnections,
                "too many devices online for this user",
            );
            return;
        }
        if let Some(old) = replaced {
            self.close_with(old, Frame::disconnect(ErrorCode::Replaced, ""));
        }
        let inbox = self.sessions.inbox_entry(user);
        let known = inbox.device_mut(connect.device).is_some();
        if !known {
            // Most users have one device: a new device grows the list by
            // one, not to Vec's first four (160 bytes per user).
            inbox.devices.reserve_exact(1);
            inbox.devices.push(Device {
                id: connect.device,
                cursor: Default::default(),
                persisted: Default::default(),
                conn: None,
            });
        }
        let device = inbox.device_mut(connect.device).expect("present");
        device.conn = Some(conn);
        let cursor = device.cursor;
        if let Some(last) = raise {
            // Written now, not with the batched cursors: it carries the raise.
            device.cursor = last;
            device.persisted = last;
            inbox.assigned = inbox.assigned.max(last);
            tracing::warn!(%user, device = connect.device.0, head = durable.0, last_seq = last.0, "a device holds sequences beyond the inbox head; raising the head");
            let record = Record::Cursor {
                user,
                device: connect.device,
                seq: last,
            };
            let purpose = AppendPurpose::Raise {
                conn,
                user,
                seq: last,
            };
            self.append(record, purpose);
        } else if let Some(last) = connect.last_seq {
            self.advance_cursor(user, connect.device, last);
        }
        let cursor = cursor.max(connect.last_seq.unwrap_or_default());
        let keepalive_ms = self.grant_keepalive(connect.keepalive_ms);
        let since_ms = self.wall_ms();
        let c = self
            .conn_mut(conn)
            .expect("connection exists while handling its frame");
        c.session = Some((user, connect.device));
        c.since_ms = since_ms;
        c.acl = claims.acl;
        c.sent_up_to = cursor;
        c.idle_limit_ns = match keepalive_ms {
            KEEPALIVE_OFF => IDLE_NEVER,
            k => u64::from(k) * NS_PER_MS * 3 / 2,
        };
        self.stats.sessions_opened += 1;
        self.stats.sessions_live += 1;
        self.webhook_connected(conn, user, connect.device);
        self.presence_changed(user);
        let ack = ConnAck {
            user,
            device: connect.device,
            head: durable,
            cursor: (known || connect.last_seq.is_some()).then_some(cursor),
            max_frame: self.config.max_frame,
            push_window: self.config.push_window,
            max_pending_sends: self.config.max_pending_sends,
            keepalive_ms,
            max_sync_limit: self.config.max_sync_limit,
        };
        match raise {
            Some(_) => {
                let c = self.conn_mut(conn).expect("connection exists");
                c.held = Some(Box::new((ack, Vec::new())));
            }
            None => self.send_frame(conn, Frame::ConnAck(ack)),
        }
        self.arm_idle(conn);
    }

    /// The cursor record raising `user`'s head to `seq` is durable (or
    /// failed): the head moves up and the held CONNACK goes out.
    pub(super) fn on_raise_durable(&mut self, conn: ConnId, user: UserId, seq: Seq, ok: bool) {
        if ok {
            let inbox = self.sessions.inbox_entry(user);
            inbox.durable = inbox.durable.max(seq);
        }
        let head = self.durable_head(user);
        let Some(held) = self.conn_mut(conn).and_then(|c| c.held.take()) else {
            return; // the connection is gone
        };
        let (mut ack, queued) = *held;
        if !ok {
            self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "could not record last_seq beyond the inbox head",
            );
            return;
        }
        ack.head = head;
        self.send_frame(conn, Frame::ConnAck(ack));
        for frame in queued {
            self.send_frame(conn, frame);
        }
    }

    /// The keepalive granted for a CONNECT's `keepalive_ms` (PROTOCOL.md
    /// 5a): 0 gets the default, [`KEEPALIVE_OFF`] none while
    /// `max_keepalive_ms` is at MQTT's largest (else that maximum), and
    /// anything else at most the maximum.
    fn grant_keepalive(&self, asked_ms: u32) -> u32 {
        let max = self.config.max_keepalive_ms;
        let granted = match asked_ms {
            0 => self.config.keepalive_ms,
            KEEPALIVE_OFF if max >= MQTT_MAX_KEEPALIVE_MS => return KEEPALIVE_OFF,
            k => u64::from(k).min(max),
        };
        // Never KEEPALIVE_OFF by accident: a configured value that large is
        // 49 days, granted as the largest finite one.
        granted.min(u64::from(KEEPALIVE_OFF - 1)) as u32
    }

    pub(super) fn arm_idle(&mut self, conn: ConnId) {
        let Some(c) = self.conn(conn) else { return };
        let deadline = c.last_rx_ns.saturating_add(c.idle_limit_ns);
        let never = c.idle_limit_ns == IDLE_NEVER;
        let old = c.idle_timer;
        if let Some(t) = old {
            self.timers.cancel(t);
        }
        if never {
            // Keepalive off (MQTT keep alive 0): no timer at all.
            if let Some(c) = self.conn_mut(conn) {
                c.idle_timer = None;
            }
            return;
        }
        let t = self.timers.insert(deadline, TimerEvent::Idle { conn });
        if let Some(c) = self.conn_mut(conn) {
            c.idle_timer = Some(t);
        }
    }

    pub(super) fn on_idle_timer(&mut self, conn: ConnId) {
        let now = self.now_ns;
        let Some(c) = self.conn_mut(conn) else { return };
        c.idle_timer = None;
        if now.saturating_sub(c.last_rx_ns) >= c.idle_limit_ns {
            let what = if c.session.is_some() {
                "no frame within 1.5x keepalive"
            } else {
                "no CONNECT within the connect timeout"
            };
            self.fail(conn, ErrorCode::IdleTimeout, what);
        } else {
            self.arm_idle(conn);
        }
    }

    /// Closes the sessions of `user` (only `device`'s, if given) with
    /// DISCONNECT `Kicked` (the admin's disconnect call); returns how many.
    /// Stored messages and cursors stay; the devices may reconnect (a
    /// revocation is what keeps a token out).
    pub fn disconnect_user(&mut self, user: UserId, device: Option<DeviceId>, now: u64) -> usize {
        self.set_now(now);
        let Some(inbox) = self.sessions.inbox(user) else {
            return 0;
        };
        let conns: Vec<ConnId> = inbox
            .devices
            .iter()
            .filter(|d| device.is_none_or(|want| d.id == want))
            .filter_map(|d| d.conn)
            .collect();
        for &conn in &conns {
            self.close_with(conn, Frame::disconnect(ErrorCode::Kicked, ""));
        }
        conns.len()
    }

    /// Answers a violation with ERROR `code` and closes the connection.
    pub(super) fn fail(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        tracing::debug!(conn = conn.as_u64(), ?code, message, "closing connection");
        self.close_with(conn, Frame::error(code, message));
    }

    /// Sends `last` (ERROR or DISCONNECT), then closes.
    pub(super) fn close_with(&mut self, conn: ConnId, last: Frame) {
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        // Frames held behind a CONNACK go out first (without it: the
        // session never opened).
        let held = c.held.take().map(|held| held.1).unwrap_or_default();
        for frame in held {
            self.send_frame(conn, frame);
        }
        let reason = close_reason(&last);
        self.send_frame(conn, last);
        self.forget_connection_because(conn, &reason);
        self.actions.push_back(Action::Close { conn });
    }

    /// The transport of `conn` is gone: drops every trace of it.
    pub(super) fn forget_connection(&mut self, conn: ConnId) {
        self.forget_connection_because(conn, "closed");
    }

    /// Drops every trace of `conn` (its stored messages stay in the log);
    /// `reason` goes into the `session.disconnected` webhook.
    fn forget_connection_because(&mut self, conn: ConnId, reason: &str) {
        let Some(mut c) = self.sessions.close(conn) else {
            return;
        };
        let rooms = std::mem::take(&mut c.rooms);
        self.drop_room_subs(conn, rooms);
        self.drop_conn_filters(conn);
        self.drop_conn_shares(conn, c.session);
        self.presence_on_close(conn, c.session.map(|(user, _)| user));
        if let Some(t) = c.idle_timer {
            self.timers.cancel(t);
        }
        for p in &c.pending {
            self.timers.cancel(p.timer);
        }
        self.stats.pending_acks -= c.pending.len() as u64;
        if let Some((user, device)) = c.session {
            self.stats.sessions_live -= 1;
            self.webhook_disconnected(user, device, c.transport, reason);
            if let Some(d) = self.sessions.device_mut(user, device) {
                if d.conn == Some(conn) {
                    d.conn = None;
                }
            }
        }
    }
}

/// Why a connection closed with `last` (ERROR or DISCONNECT), as the
/// `session.disconnected` webhook says it: the wire code's name in
/// snake case (`ack_timeout`, `replaced`, `normal`, ...), or `code_<n>`.
fn close_reason(last: &Frame) -> String {
    let code = match last {
        Frame::Error(e) => e.code,
        Frame::Disconnect(d) => d.reason,
        _ => return "closed".into(),
    };
    match ErrorCode::from_u16(code) {
        Some(known) => snake_case(&format!("{known:?}")),
        None => format!("code_{code}"),
    }
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
