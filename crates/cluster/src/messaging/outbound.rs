//! The sending end of one node-to-node link: batching, a window of batches
//! in flight, retries (sans-IO: time comes in as `now`).
//!
//! Messages for one peer are queued, cut into batches of at most
//! `max_batch_bytes` and sent as [`BatchRequest`]s numbered 1, 2, ... At
//! most `window` batches wait for their reply at once; the rest wait in the
//! queue, and the queue takes new messages only while less than one batch
//! of bytes is waiting ([`OutboundLink::accepts`]): beyond that the callers'
//! bounded channel fills and they wait. Nothing is dropped.
//!
//! Loss is repaired by resending, never by guessing:
//! - no reply within the retry interval: every batch in flight is sent
//!   again, in order, and the interval doubles (up to `retry_max`); any
//!   reply resets it;
//! - `OutOfOrder { expected }` (the receiver missed a batch): the batches
//!   from `expected` on are sent again, at most once per quarter interval;
//! - the receiver answers a repeated batch from its reply cache
//!   (`inbound.rs`), so a resend never hands a message on twice.
//!
//! Call order for the driver: [`OutboundLink::push`] while
//! [`OutboundLink::accepts`]; then [`OutboundLink::poll_transmit`] until it
//! returns `None`; feed replies to [`OutboundLink::handle_reply`]; wake at
//! [`OutboundLink::poll_timeout`] and call [`OutboundLink::handle_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::{BatchOutcome, BatchReply, BatchRequest, Envelope};
use crate::node_id::NodeId;
use crate::wire;

/// Largest window a sender may use; receivers keep this many replies per
/// link, so any batch a sender can still retry is answered from cache.
pub const MAX_WINDOW: usize = 64;

/// Batching and retry settings of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Batches waiting for their reply at once (1..=[`MAX_WINDOW`]).
    pub window: usize,
    /// A batch is cut when it reaches this many bytes (a single larger
    /// message still goes, alone). Keep it below the NATS server's
    /// `max_payload` (1 MiB by default).
    pub max_batch_bytes: usize,
    /// First retry interval; any reply resets to it.
    pub retry_initial: Duration,
    /// Cap of the doubling retry interval.
    pub retry_max: Duration,
    /// How long messages wait for company while a batch is in flight
    /// (Nagle's rule for batches): a message finding the link idle goes
    /// at once; while a batch waits for its reply, new messages are held
    /// until a batch's worth of bytes is queued, the replies are all in,
    /// or this long has passed since the first of them was looked at.
    /// Zero: every message goes as soon as the window has room.
    pub linger: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            window: 16,
            max_batch_bytes: 64 * 1024,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(5),
            linger: Duration::ZERO,
        }
    }
}

/// Who waits for one message's reply: a lane and the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTarget {
    /// The lane (shard) that sent the message.
    pub lane: u16,
    /// The caller's token, returned with the reply.
    pub token: u64,
}

/// One message's reply, ready for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Who waits for it.
    pub target: ReplyTarget,
    /// The receiver's reply body.
    pub body: Bytes,
}

/// The link cannot deliver these messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFailure {
    /// The peer has seen a newer incarnation of this node's id: this
    /// process is a stale copy and every message on the link fails.
    Stale(Vec<ReplyTarget>),
    /// The peer no longer holds the reply of a batch it handled (it cannot
    /// happen within [`MAX_WINDOW`]); these messages' outcome is unknown.
    Forgotten(Vec<ReplyTarget>),
}

/// Counters of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Batches sent for the first time.
    pub batches: u64,
    /// Messages sent (first time).
    pub messages: u64,
    /// Batches sent again.
    pub resent: u64,
    /// Replies matched to a batch in flight.
    pub replies: u64,
}

#[derive(Debug)]
struct InFlight {
    seq: u64,
    items: Vec<Envelope>,
    targets: Vec<ReplyTarget>,
    sent_at: Instant,
}

/// The sending end of the link from this node to one peer.
#[derive(Debug)]
pub struct OutboundLink {
    me: NodeId,
    incarnation: u64,
    config: LinkConfig,
    next_seq: u64,
    queued: VecDeque<(Envelope, ReplyTarget)>,
    queued_bytes: usize,
    /// Ascending by seq.
    inflight: VecDeque<InFlight>,
    /// Seqs to send again, ascending, each once.
    resend: VecDeque<u64>,
    retry_interval: Duration,
    /// Retransmit everything in flight if no reply came by then.
    deadline: Option<Instant>,
    stale: bool,
    stats: LinkStats,
    /// Until when queued messages wait for more ([`LinkConfig::linger`]).
    linger_until: Option<Instant>,
    /// Most bytes of envelopes in a batch the transport takes now (NATS
    /// `max_payload` less a batch's own fields); see
    /// [`OutboundLink::cap_batch_bytes`].
    batch_cap: usize,
}

impl OutboundLink {
    /// A link from `me` (this process's `incarnation`) with `config`
    /// (`window` clamped to 1..=[`MAX_WINDOW`]).
    pub fn new(me: NodeId, incarnation: u64, mut config: LinkConfig) -> OutboundLink {
        config.window = config.window.clamp(1, MAX_WINDOW);
        OutboundLink {
            me,
            incarnation,
            retry_interval: config.retry_initial,
            config,
            next_seq: 1,
            queued: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            resend: VecDeque::new(),
            deadline: None,
            stale: false,
            stats: LinkStats::default(),
            batch_cap: usize::MAX,
            linger_until: None,
        }
    }

    /// Cuts new batches at `cap` bytes of envelopes if that is below
    /// `max_batch_bytes` (the transport's limit, which the driver learns
    /// from the NATS server and may change on a reconnect).
    pub fn cap_batch_bytes(&mut self, cap: usize) {
        self.batch_cap = cap.max(1);
    }

    /// Bytes of envelopes at which a batch is cut.
    fn batch_bytes(&self) -> usize {
        self.config.max_batch_bytes.min(self.batch_cap)
    }

    /// True while the link takes more messages: less than one batch of
    /// bytes waits for a window slot, and the peer has not declared this
    /// process stale.
    pub fn accepts(&self) -> bool {
        !self.stale && self.queued_bytes < self.batch_bytes()
    }

    /// True if this process turned out to be a stale incarnation.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Queues one message (callers check [`OutboundLink::accepts`]).
    pub fn push(&mut self, envelope: Envelope, target: ReplyTarget) {
        self.queued_bytes += envelope.encoded_len();
        self.queued.push_back((envelope, target));
    }

    /// Messages queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.queued.len() + self.inflight.iter().map(|b| b.items.len()).sum::<usize>()
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    fn first_unacked(&self) -> u64 {
        self.inflight.front().map_or(self.next_seq, |b| b.seq)
    }

    fn encode(&self, seq: u64, items: Vec<Envelope>) -> (Bytes, Vec<Envelope>) {
        let req = BatchRequest {
            from: self.me.clone(),
            incarnation: self.incarnation,
            seq,
            first_unacked: self.first_unacked().min(seq),
            items,
        };
        let size = wire::FRAME_HEADER
            + 2
            + self.me.as_str().len()
            + 3 * 8
            + 4
            + req.items.iter().map(Envelope::encoded_len).sum::<usize>();
        let bytes = wire::to_bytes_sized(&req, size);
        (bytes, req.items)
    }

    /// The next NATS payload to send: a resend first, then a new batch if
    /// the window has room.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        while let Some(seq) = self.resend.pop_front() {
            let Some(i) = self.inflight.iter().position(|b| b.seq == seq) else {
                continue; // answered meanwhile
            };
            let items = std::mem::take(&mut self.inflight[i].items);
            let (bytes, items) = self.encode(seq, items);
            let batch = &mut self.inflight[i];
            batch.items = items;
            batch.sent_at = now;
            self.stats.resent += 1;
            return Some(bytes);
        }
        if self.stale || self.queued.is_empty() || self.inflight.len() >= self.config.window {
            return None;
        }
        if self.lingers(now) {
            return None;
        }
        let mut items = Vec::new();
        let mut targets = Vec::new();
        let mut bytes = 0;
        while let Some((env, _)) = self.queued.front() {
            let len = env.encoded_len();
            if !items.is_empty() && bytes + len > self.batch_bytes() {
                break;
            }
            let (env, target) = self.queued.pop_front().expect("front exists");
            bytes += len;
            items.push(env);
            targets.push(target);
        }
        self.queued_bytes -= bytes;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.batches += 1;
        self.stats.messages += items.len() as u64;
        if self.inflight.is_empty() {
            self.deadline = Some(now + self.retry_interval);
        }
        // Pushed before encoding so first_unacked counts this batch.
        self.inflight.push_back(InFlight {
            seq,
            items: Vec::new(),
            targets,
            sent_at: now,
        });
        let (payload, items) = self.encode(seq, items);
        self.inflight.back_mut().expect("just pushed").items = items;
        Some(payload)
    }

    /// Whether queued messages keep waiting for company (see
    /// [`LinkConfig::linger`]); starts the wait on first sight.
    fn lingers(&mut self, now: Instant) -> bool {
        let hold = !self.config.linger.is_zero()
            && !self.inflight.is_empty()
            && self.queued_bytes < self.batch_bytes();
        if !hold {
            self.linger_until = None;
            return false;
        }
        match self.linger_until {
            None => {
                self.linger_until = Some(now + self.config.linger);
                true
            }
            Some(until) if now < until => true,
            Some(_) => {
                self.linger_until = None;
                false
            }
        }
    }

    /// Applies the peer's reply; returns the replies now available to
    /// callers, or a failure of the messages it concerns.
    pub fn handle_reply(
        &mut self,
        reply: BatchReply,
        now: Instant,
    ) -> Result<Vec<Completion>, LinkFailure> {
        if reply.incarnation != self.incarnation {
            return Ok(Vec::new()); // meant for an earlier process
        }
        match reply.outcome {
            BatchOutcome::Done(bodies) => {
                let Some(i) = self.inflight.iter().position(|b| b.seq == reply.seq) else {
                    return Ok(Vec::new()); // a duplicate reply
                };
                if bodies.len() != self.inflight[i].targets.len() {
                    // A peer that answers a different number of messages
                    // is broken; treat its reply as lost and retry.
                    return Ok(Vec::new());
                }
                let batch = self.inflight.remove(i).expect("index found above");
                self.stats.replies += 1;
                self.progress(now);
                Ok(batch
                    .targets
                    .into_iter()
                    .zip(bodies)
                    .map(|(target, body)| Completion { target, body })
                    .collect())
            }
            BatchOutcome::OutOfOrder { expected } => {
                let guard = self.config.retry_initial / 4;
                let due = self
                    .inflight
                    .iter()
                    .find(|b| b.seq == expected)
                    .is_some_and(|b| now >= b.sent_at + guard);
                if due {
                    self.queue_resend(|seq| seq >= expected);
                }
                Ok(Vec::new())
            }
            BatchOutcome::Stale => {
                self.stale = true;
                let mut lost: Vec<ReplyTarget> =
                    self.inflight.drain(..).flat_map(|b| b.targets).collect();
                lost.extend(self.queued.drain(..).map(|(_, t)| t));
                self.queued_bytes = 0;
                self.resend.clear();
                self.deadline = None;
                Err(LinkFailure::Stale(lost))
            }
            BatchOutcome::Forgotten => {
                let Some(i) = self.inflight.iter().position(|b| b.seq == reply.seq) else {
                    return Ok(Vec::new());
                };
                let batch = self.inflight.remove(i).expect("index found above");
                self.progress(now);
                Err(LinkFailure::Forgotten(batch.targets))
            }
        }
    }

    fn progress(&mut self, now: Instant) {
        self.retry_interval = self.config.retry_initial;
        self.deadline = (!self.inflight.is_empty()).then(|| now + self.retry_interval);
    }

    fn queue_resend(&mut self, pick: impl Fn(u64) -> bool) {
        for b in &self.inflight {
            if pick(b.seq) && !self.resend.contains(&b.seq) {
                self.resend.push_back(b.seq);
            }
        }
        self.resend.make_contiguous().sort_unstable();
    }

    /// When [`OutboundLink::handle_timeout`] is due, if anything is in
    /// flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deadline, self.linger_until) {
            (Some(d), Some(l)) => Some(d.min(l)),
            (d, l) => d.or(l),
        }
    }

    /// No reply came in time: resend everything in flight, back off.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return,
        }
        self.queue_resend(|_| true);
        self.retry_interval = (self.retry_interval * 2).min(self.config.retry_max);
        self.deadline = (!self.inflight.is_empty()).then(|| now + self.retry_interval);
    }
}
