//! The sans-IO client session: the other half of the protocol.
//!
//! It keeps what a device must keep to lose nothing and see nothing twice:
//! - an outbox of sends, retried with the same `client_msg_id` until
//!   SENDACK (QoS 1) or COMP (QoS 2), also across reconnects;
//! - `delivered`, the highest inbox sequence handed to the application, in
//!   order; pushes above it are buffered, pushes at or below it are
//!   duplicates and only re-acknowledged. Sequences the gateway says are
//!   gone (a PUSH whose `prev_seq` skips them, a SYNCPAGE with `GAP`) are
//!   reported once as [`Event::Lost`] and stepped over. The application
//!   persists `delivered` (see [`ClientSession::delivered`]) and passes it
//!   back to [`ClientSession::new`] after a restart;
//! - the replay loop: after CONNACK, `SYNC After(delivered)` pages until an
//!   empty page, which acknowledges the last and makes the session live.
//!
//! Call order: `connect`, then feed `handle_frame` / `handle_timeout` /
//! `handle_disconnect`, draining `poll_transmit` and `poll_event` after each.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use surepush_proto::{
    ConnAck, Connect, DeviceId, ErrorFrame, Frame, Push, Qos, SendAck, SendResult, Seq, Sync,
    SyncDirection, SyncPage, UserId,
};

const NS_PER_MS: u64 = 1_000_000;

/// Client behaviour knobs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Signed token for this (user, device).
    pub token: String,
    /// This device.
    pub device: DeviceId,
    /// Keepalive to ask for (ms); PING after half of it without traffic.
    pub keepalive_ms: u32,
    /// Resend a SEND/REL after this long without answer (ms).
    pub send_timeout_ms: u64,
    /// Resend a SYNC after this long without its page (ms).
    pub sync_timeout_ms: u64,
    /// Page size for replay.
    pub page: u32,
    /// Messages a new device (no cursor) fetches first.
    pub initial_latest: u32,
    /// First client message id; ids increase from here. Must not repeat
    /// for this (user, device) across restarts: the gateway treats a
    /// repeated id as a retry and stores nothing new. [`ClientConfig::new`]
    /// starts from the wall clock in µs, which is unique across restarts
    /// as long as the clock does not go back and a session sends less than
    /// one message per µs on average; persist a counter if that is not
    /// good enough.
    pub first_client_msg_id: u64,
}

impl ClientConfig {
    /// Defaults for `token` / `device`, numbering sends from
    /// `first_client_msg_id` (see the field: it must not repeat across
    /// restarts; [`ClientConfig::new`] takes it from the wall clock).
    pub fn with_first_id(
        token: String,
        device: DeviceId,
        first_client_msg_id: u64,
    ) -> ClientConfig {
        ClientConfig {
            token,
            device,
            keepalive_ms: 30_000,
            send_timeout_ms: 3_000,
            sync_timeout_ms: 5_000,
            page: 200,
            initial_latest: 50,
            first_client_msg_id,
        }
    }
}

/// What the session tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// CONNACK received.
    Connected(ConnAck),
    /// The next inbox message, in seq order, exactly once per seq. `echo`
    /// messages are this device's own sends (payload omitted).
    Message(Push),
    /// A QoS 0 message (no sequence, may be lost).
    Ephemeral(Push),
    /// Inbox sequences `first..=last` are gone and will never be delivered:
    /// removed by retention before this device fetched them, or lost by
    /// the gateway to a damaged disk (salvaged). Reported in order, between
    /// the messages around them.
    Lost {
        /// First missing sequence.
        first: Seq,
        /// Last missing sequence.
        last: Seq,
    },
    /// Older history requested with [`ClientSession::fetch_older`].
    Older(Vec<Push>),
    /// A page of conversation summaries ([`ClientSession::list_conversations`]).
    Conversations(surepush_proto::ConvPage),
    /// A page of one conversation ([`ClientSession::fetch_conversation`]).
    ConversationPage(surepush_proto::ConvMsgs),
    /// Replay finished: the session is live.
    CaughtUp,
    /// A send is stored (QoS 1: done; QoS 2: release in progress).
    SendAcked(SendAck),
    /// A QoS 2 send is released: complete.
    SendCompleted(u64),
    /// A send was refused for good.
    SendFailed(SendAck),
    /// The gateway reported an error (it closes afterwards).
    Error(ErrorFrame),
    /// The gateway closed the session (reason code, redirect).
    Disconnected(u16, String),
    /// A room subscription is in place (or was refused).
    Subscribed(surepush_proto::SubAck),
    /// A room message: in room order, each sequence once (seq 0: a QoS 0
    /// publish outside the sequence).
    RoomMessage(surepush_proto::RoomPush),
    /// The gateway dropped a room subscription as too slow; the session
    /// re-subscribed from the last message it delivered.
    RoomLagged(u64),
    /// The room does not allow this user to read it (SUBACK `Forbidden`):
    /// the subscription was refused, or ended because the permission was
    /// taken away. The session no longer follows the room; `last` is the
    /// last sequence delivered from it, for [`ClientSession::resume`] once
    /// the permission is back.
    RoomForbidden {
        /// The room.
        room: u64,
        /// Last sequence delivered, if any.
        last: Option<Seq>,
    },
    /// The answer to a WATCH ([`ClientSession::watch`]): `code` 0, or the
    /// refusal (`Forbidden`, `TooManyWatches`; none of its users is
    /// watched then).
    Watched(surepush_proto::WatchAck),
    /// A watched user's online devices (all of them; empty: offline).
    Presence(surepush_proto::Presence),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Disconnected,
    AwaitConnAck,
    Syncing,
    Live,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutState {
    AwaitAck,
    AwaitComp,
}

#[derive(Clone, Debug)]
struct OutMsg {
    to: UserId,
    qos: Qos,
    payload: Bytes,
    state: OutState,
    last_tx_ns: Option<u64>,
    /// StorageUnavailable answers in a row (each retried sooner than a
    /// send timeout: [`retry_after_ns`]).
    refusals: u32,
}

/// The first retry of a send refused with StorageUnavailable (ms); it
/// doubles with each refusal in a row, up to the send timeout. A partition
/// that moves between nodes refuses for well under a second.
pub const REFUSED_RETRY_MS: u64 = 50;

/// How long after its last transmission `m` is sent again.
fn retry_after_ns(m: &OutMsg, send_timeout_ns: u64) -> u64 {
    match m.refusals {
        0 => send_timeout_ns,
        n => (REFUSED_RETRY_MS * NS_PER_MS)
            .saturating_mul(1 << (n - 1).min(20))
            .min(send_timeout_ns),
    }
}

#[derive(Clone, Copy, Debug)]
struct SyncReq {
    id: u32,
    direction: SyncDirection,
    limit: u32,
    sent_ns: u64,
}

/// One device's protocol state. Lives across reconnects.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    now_ns: u64,
    delivered: Option<Seq>,
    acked: Seq,
    ack_due: bool,
    ack_forced: bool,
    buffered: BTreeMap<Seq, Push>,
    outbox: BTreeMap<u64, OutMsg>,
    next_cmid: u64,
    max_pending_sends: usize,
    max_sync_limit: u32,
    next_request: u32,
    sync: Option<SyncReq>,
    older: Option<SyncReq>,
    last_tx_ns: u64,
    transmit: VecDeque<Frame>,
    events: VecDeque<Event>,
    pub(super) rooms: super::rooms::Follows,
    pub(super) watching: super::presence::Watching,
}

impl ClientSession {
    /// A session for a device holding messages up to `delivered`
    /// (`None` for a new device).
    pub fn new(config: ClientConfig, delivered: Option<Seq>) -> ClientSession {
        ClientSession {
            next_cmid: config.first_client_msg_id,
            config,
            phase: Phase::Disconnected,
            now_ns: 0,
            delivered,
            acked: Seq::ZERO,
            ack_due: false,
            ack_forced: false,
            buffered: BTreeMap::new(),
            outbox: BTreeMap::new(),
            max_pending_sends: 16,
            max_sync_limit: u32::MAX,
            next_request: 0,
            sync: None,
            older: None,
            rooms: Default::default(),
            watching: Default::default(),
            last_tx_ns: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Highest sequence delivered to the application (persist this).
    pub fn delivered(&self) -> Option<Seq> {
        self.delivered
    }

    /// True after replay finished on the current connection.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// True while a CONNECT is outstanding or a session is open.
    pub fn is_connected(&self) -> bool {
        self.phase != Phase::Disconnected
    }

    /// Sends not yet acknowledged (QoS 1) or completed (QoS 2).
    pub fn unfinished_sends(&self) -> usize {
        self.outbox.len()
    }

    /// Starts a session on a fresh transport: queues CONNECT.
    pub fn connect(&mut self, now: u64) {
        self.set_now(now);
        self.phase = Phase::AwaitConnAck;
        self.transmit.clear();
        self.buffered.clear();
        self.sync = None;
        self.older = None;
        self.ack_due = false;
        for m in self.outbox.values_mut() {
            m.last_tx_ns = None;
        }
        self.queue(Frame::Connect(Connect {
            device: self.config.device,
            last_seq: self.delivered,
            keepalive_ms: self.config.keepalive_ms,
            token: self.config.token.clone(),
        }));
    }

    /// The transport is gone; nothing is lost, `connect` again later.
    pub fn handle_disconnect(&mut self, now: u64) {
        self.set_now(now);
        self.phase = Phase::Disconnected;
        self.transmit.clear();
    }

    /// Queues a message; returns its `client_msg_id`. QoS 0 goes out only
    /// if a session is open; QoS 1/2 are kept until acknowledged.
    pub fn send(&mut self, to: UserId, qos: Qos, payload: Bytes, now: u64) -> u64 {
        self.set_now(now);
        let cmid = self.next_cmid;
        self.next_cmid += 1;
        if qos == Qos::AtMostOnce {
            if self.phase != Phase::Disconnected && self.phase != Phase::AwaitConnAck {
                self.queue(Frame::Send(surepush_proto::Send {
                    client_msg_id: cmid,
                    to,
                    qos,
                    confirm: false,
                    // This client sends no message attributes.
                    attrs: Bytes::new(),
                    payload,
                }));
            }
            return cmid;
        }
        self.outbox.insert(
            cmid,
            OutMsg {
                to,
                qos,
                payload,
                state: OutState::AwaitAck,
                last_tx_ns: None,
                refusals: 0,
            },
        );
        self.pump_outbox();
        cmid
    }

    /// Asks for up to `limit` messages older than `before` (history paging).
    pub fn fetch_older(&mut self, before: Seq, limit: u32, now: u64) {
        self.set_now(now);
        if self.phase == Phase::Disconnected || self.phase == Phase::AwaitConnAck {
            return;
        }
        let req = self.new_request(SyncDirection::Before(before), limit);
        self.older = Some(req);
        self.queue_sync(req);
    }

    /// Handles one frame from the gateway.
    pub fn handle_frame(&mut self, frame: Frame, now: u64) {
        self.set_now(now);
        match frame {
            Frame::ConnAck(ack) if self.phase == Phase::AwaitConnAck => self.on_connack(ack),
            Frame::Push(p) => self.on_push(p),
            Frame::SyncPage(page) => self.on_page(page),
            Frame::SendAck(ack) => self.on_send_ack(ack),
            Frame::Comp { client_msg_id }
                if self
                    .outbox
                    .get(&client_msg_id)
                    .is_some_and(|m| m.state == OutState::AwaitComp) =>
            {
                self.outbox.remove(&client_msg_id);
                self.events.push_back(Event::SendCompleted(client_msg_id));
                self.pump_outbox();
            }
            Frame::Ping(n) => self.queue(Frame::Pong(n)),
            Frame::SubAck(ack) => self.on_suback(ack),
            Frame::RoomPush(p) => self.on_room_push(p),
            Frame::RoomLag { room, .. } => self.on_room_lag(room),
            Frame::ConvPage(p) => self.events.push_back(Event::Conversations(p)),
            Frame::ConvMsgs(p) => self.events.push_back(Event::ConversationPage(p)),
            Frame::WatchAck(ack) => self.on_watch_ack(ack),
            Frame::Presence(p) => self.events.push_back(Event::Presence(p)),
            Frame::Error(e) => self.events.push_back(Event::Error(e)),
            Frame::Disconnect(d) => {
                self.phase = Phase::Disconnected;
                self.events
                    .push_back(Event::Disconnected(d.reason, d.redirect));
            }
            _ => {}
        }
    }

    /// Fires retries and keepalives due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.set_now(now);
        if matches!(self.phase, Phase::Disconnected | Phase::AwaitConnAck) {
            return;
        }
        let timeout = self.config.sync_timeout_ms * NS_PER_MS;
        for older in [false, true] {
            let slot = if older { self.older } else { self.sync };
            if let Some(req) = slot.filter(|r| now >= r.sent_ns + timeout) {
                // Page lost or slow: ask again (a new id; the old answer is ignored).
                let fresh = self.new_request(req.direction, req.limit);
                if older {
                    self.older = Some(fresh);
                } else {
                    self.sync = Some(fresh);
                }
                self.queue_sync(fresh);
            }
        }
        self.pump_outbox();
        let keepalive = u64::from(self.config.keepalive_ms) * NS_PER_MS;
        if keepalive > 0 && now >= self.last_tx_ns + keepalive / 2 {
            self.queue(Frame::Ping(now));
        }
    }

    /// When `handle_timeout` should run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if matches!(self.phase, Phase::Disconnected | Phase::AwaitConnAck) {
            return None;
        }
        let mut t = u64::MAX;
        let keepalive = u64::from(self.config.keepalive_ms) * NS_PER_MS;
        if keepalive > 0 {
            t = t.min(self.last_tx_ns + keepalive / 2);
        }
        for req in self.sync.iter().chain(&self.older) {
            t = t.min(req.sent_ns + self.config.sync_timeout_ms * NS_PER_MS);
        }
        let retry = self.config.send_timeout_ms * NS_PER_MS;
        for m in self.outbox.values() {
            if let Some(tx) = m.last_tx_ns {
                t = t.min(tx + retry_after_ns(m, retry));
            }
        }
        Some(t)
    }

    /// Next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if let Some(f) = self.transmit.pop_front() {
            return Some(f);
        }
        if self.ack_due && matches!(self.phase, Phase::Syncing | Phase::Live) {
            self.ack_due = false;
            let forced = std::mem::take(&mut self.ack_forced);
            if let Some(d) = self.delivered {
                if d > self.acked || (forced && d > Seq::ZERO) {
                    self.acked = d;
                    self.last_tx_ns = self.now_ns;
                    return Some(Frame::Ack(d));
                }
            }
        }
        None
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- internals ----------------------------------------------------------

    pub(super) fn set_now(&mut self, now: u64) {
        self.now_ns = self.now_ns.max(now);
    }

    pub(super) fn queue(&mut self, frame: Frame) {
        self.last_tx_ns = self.now_ns;
        self.transmit.push_back(frame);
    }

    pub(super) fn queue_frame(&mut self, frame: Frame) {
        self.queue(frame);
    }

    pub(super) fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// A request id for a CONVLIST or CONVFETCH, if connected (ids are
    /// shared with SYNC, which needs them increasing).
    pub(super) fn conversation_request(&mut self, now: u64) -> Option<u32> {
        self.set_now(now);
        if self.phase == Phase::Disconnected || self.phase == Phase::AwaitConnAck {
            return None;
        }
        self.next_request += 1;
        Some(self.next_request)
    }

    fn new_request(&mut self, direction: SyncDirection, limit: u32) -> SyncReq {
        self.next_request += 1;
        SyncReq {
            id: self.next_request,
            direction,
            limit: limit.clamp(1, self.max_sync_limit.max(1)),
            sent_ns: self.now_ns,
        }
    }

    fn queue_sync(&mut self, req: SyncReq) {
        self.queue(Frame::Sync(Sync {
            request_id: req.id,
            direction: req.direction,
            limit: req.limit,
            read_ahead: false,
        }));
    }

    fn on_connack(&mut self, ack: ConnAck) {
        self.phase = Phase::Syncing;
        self.resubscribe_all();
        self.rewatch_all();
        self.max_pending_sends = ack.max_pending_sends.max(1) as usize;
        self.max_sync_limit = ack.max_sync_limit.max(1);
        self.acked = ack.cursor.unwrap_or_default();
        let direction = match self.delivered {
            Some(d) => SyncDirection::After(d),
            None => SyncDirection::Latest,
        };
        let limit = if self.delivered.is_some() {
            self.config.page
        } else {
            self.config.initial_latest.max(1)
        };
        self.events.push_back(Event::Connected(ack));
        let req = self.new_request(direction, limit);
        self.sync = Some(req);
        self.queue_sync(req);
        self.pump_outbox();
    }

    fn on_page(&mut self, page: SyncPage) {
        if self.older.is_some_and(|r| r.id == page.request_id) {
            self.older = None;
            self.events.push_back(Event::Older(page.items));
            return;
        }
        let Some(req) = self.sync.filter(|r| r.id == page.request_id) else {
            return; // an answer to a request we already gave up on
        };
        match req.direction {
            SyncDirection::Latest => {
                // A new device starts at the newest messages (or the head).
                let start = page
                    .items
                    .first()
                    .map_or(page.head, |p| Seq(p.seq.0.saturating_sub(1)));
                self.delivered = Some(start);
                for item in page.items {
                    self.deliver_from_page(item);
                }
            }
            SyncDirection::After(_) => {
                if page.items.is_empty() {
                    let d = self.delivered.unwrap_or_default();
                    if page.gap && page.head > d {
                        // Nothing up to the head exists any more.
                        self.report_lost(d, page.head.next());
                        self.delivered = Some(page.head);
                        self.ack_due = true;
                    }
                    self.sync = None;
                    self.phase = Phase::Live;
                    self.drain_buffered();
                    self.events.push_back(Event::CaughtUp);
                    return;
                }
                for item in page.items {
                    self.deliver_from_page(item);
                }
            }
            SyncDirection::Before(_) => return,
        }
        let next = self.new_request(
            SyncDirection::After(self.delivered.unwrap_or_default()),
            self.config.page,
        );
        self.sync = Some(next);
        self.queue_sync(next);
    }

    /// Page items are authoritative history: take anything newer than what
    /// was delivered (a retention gap is accepted, a duplicate is skipped).
    fn deliver_from_page(&mut self, item: Push) {
        let d = self.delivered.unwrap_or_default();
        if item.seq > d {
            self.report_lost(d, item.seq);
            self.delivered = Some(item.seq);
            self.buffered.remove(&item.seq);
            self.events.push_back(Event::Message(item));
        }
    }

    fn on_push(&mut self, p: Push) {
        if p.seq == Seq::ZERO {
            self.events.push_back(Event::Ephemeral(p));
            return;
        }
        let d = self.delivered.unwrap_or_default();
        if p.seq <= d {
            // Duplicate (retransmit after a lost ACK): acknowledge again.
            self.ack_due = true;
            self.ack_forced = true;
            return;
        }
        if self.delivered.is_none() {
            // No position yet (replay of a new device not done): hold it.
            self.buffered.insert(p.seq, p);
            return;
        }
        self.buffered.insert(p.seq, p);
        self.drain_buffered();
        // Bound the reorder buffer: the gateway retransmits what we drop.
        while self.buffered.len() > 4096 {
            self.buffered.pop_last();
        }
    }

    fn drain_buffered(&mut self) {
        let Some(mut d) = self.delivered else { return };
        self.buffered.retain(|s, _| *s > d);
        // The next push is deliverable if it follows `d`, or if the
        // gateway says nothing exists between what it sent before it and
        // it (`prev_seq`), and `d` is at least that far.
        while let Some(entry) = self.buffered.first_entry() {
            let p = entry.get();
            if p.seq != d.next() && p.prev_seq > d {
                break;
            }
            let p = entry.remove();
            self.report_lost(d, p.seq);
            d = p.seq;
            self.events.push_back(Event::Message(p));
            self.ack_due = true;
        }
        self.delivered = Some(d);
    }

    /// Reports the sequences strictly between `delivered` and `next` as lost.
    fn report_lost(&mut self, delivered: Seq, next: Seq) {
        if next > delivered.next() {
            self.events.push_back(Event::Lost {
                first: delivered.next(),
                last: Seq(next.0 - 1),
            });
        }
    }

    fn on_send_ack(&mut self, ack: SendAck) {
        let Some(m) = self.outbox.get_mut(&ack.client_msg_id) else {
            return;
        };
        if m.state != OutState::AwaitAck {
            return;
        }
        match ack.result {
            SendResult::Stored | SendResult::Duplicate => {
                m.refusals = 0;
                if m.qos == Qos::ExactlyOnce {
                    m.state = OutState::AwaitComp;
                    m.last_tx_ns = Some(self.now_ns);
                    let to = m.to;
                    self.queue(Frame::Rel {
                        client_msg_id: ack.client_msg_id,
                        to,
                    });
                } else {
                    self.outbox.remove(&ack.client_msg_id);
                }
                self.events.push_back(Event::SendAcked(ack));
            }
            SendResult::StorageUnavailable => {
                // Retried by pump_outbox, soon, then backing off.
                m.refusals = m.refusals.saturating_add(1);
                m.last_tx_ns = Some(self.now_ns);
            }
            SendResult::Forbidden | SendResult::Conflict => {
                self.outbox.remove(&ack.client_msg_id);
                self.events.push_back(Event::SendFailed(ack));
            }
        }
        self.pump_outbox();
    }

    /// (Re)transmits outbox entries that are due, oldest first, keeping at
    /// most `max_pending_sends` SENDs outstanding.
    fn pump_outbox(&mut self) {
        if matches!(self.phase, Phase::Disconnected | Phase::AwaitConnAck) {
            return;
        }
        let now = self.now_ns;
        let retry = self.config.send_timeout_ms * NS_PER_MS;
        let mut outstanding = self
            .outbox
            .values()
            .filter(|m| m.state == OutState::AwaitAck && m.last_tx_ns.is_some())
            .count();
        let mut frames = Vec::new();
        for (&cmid, m) in self.outbox.iter_mut() {
            let due = m
                .last_tx_ns
                .is_none_or(|t| now >= t + retry_after_ns(m, retry));
            if !due {
                continue;
            }
            match m.state {
                OutState::AwaitAck => {
                    if m.last_tx_ns.is_none() {
                        if outstanding >= self.max_pending_sends {
                            continue;
                        }
                        outstanding += 1;
                    }
                    frames.push(Frame::Send(surepush_proto::Send {
                        client_msg_id: cmid,
                        to: m.to,
                        qos: m.qos,
                        confirm: false,
                        attrs: Bytes::new(),
                        payload: m.payload.clone(),
                    }));
                }
                OutState::AwaitComp => frames.push(Frame::Rel {
                    client_msg_id: cmid,
                    to: m.to,
                }),
            }
            m.last_tx_ns = Some(now);
        }
        for f in frames {
            self.queue(f);
        }
    }
}

#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod tests;
