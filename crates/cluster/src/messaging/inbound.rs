//! The receiving end of every link to this node: order, dedup, reply cache
//! (sans-IO).
//!
//! Per sending node the receiver keeps the sender's incarnation, the next
//! batch number it expects and the last [`MAX_WINDOW`] batches: pending
//! ones (messages handed on, replies being collected) and finished ones
//! (the encoded reply, kept to answer a resend). So:
//!
//! - a batch is handed on exactly once per receiver process, and batches
//!   of one sender are handed on in their order (a batch that arrives
//!   early gets `OutOfOrder` and is sent again by its sender);
//! - a resent batch that finished is answered from the cache, one that is
//!   still pending is answered when it finishes;
//! - a new incarnation of a sender starts a fresh link at the sender's
//!   `first_unacked`; an older incarnation is told it is `Stale`.
//!
//! Across a restart of *this* node the state is gone: a batch handled
//! before the crash whose reply was lost is handed on again. The
//! application's own dedup (the send dedup window, rebuilt from the log)
//! covers that case; this layer gives exactly-once per receiver process.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::batch::{BatchOutcome, BatchReply, BatchRequest, Envelope};
use super::outbound::MAX_WINDOW;
use crate::node_id::NodeId;
use crate::wire;

/// Names one batch being handled: its sender, the sender's incarnation
/// and the batch number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The sending node.
    pub from: NodeId,
    /// Its incarnation.
    pub incarnation: u64,
    /// The batch number.
    pub seq: u64,
}

/// What to do with an arriving batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new batch: hand these messages on in order, then answer each
    /// with [`InboundLinks::complete`] (index = position in `items`).
    Deliver {
        /// The batch.
        key: BatchKey,
        /// Its messages.
        items: Vec<Envelope>,
    },
    /// Send these bytes (an encoded [`BatchReply`]) to the sender now.
    Answer(Bytes),
    /// A resend of a batch still being handled: its reply follows.
    InProgress,
}

#[derive(Debug)]
enum Slot {
    Pending {
        replies: Vec<Option<Bytes>>,
        remaining: usize,
    },
    Done(Bytes),
}

#[derive(Debug)]
struct PeerInbox {
    incarnation: u64,
    /// The batch expected next.
    next: u64,
    /// Seq of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
}

impl PeerInbox {
    fn fresh(incarnation: u64, first: u64) -> PeerInbox {
        PeerInbox {
            incarnation,
            next: first,
            base: first,
            slots: VecDeque::new(),
        }
    }

    /// Drops finished slots beyond the cache size.
    fn trim(&mut self) {
        while self.slots.len() > MAX_WINDOW && matches!(self.slots.front(), Some(Slot::Done(_))) {
            self.slots.pop_front();
            self.base += 1;
        }
    }
}

/// Receiver state for every peer sending to this node.
#[derive(Debug)]
pub struct InboundLinks {
    me: NodeId,
    peers: HashMap<NodeId, PeerInbox>,
}

impl InboundLinks {
    /// Receiver state of node `me`.
    pub fn new(me: NodeId) -> InboundLinks {
        InboundLinks {
            me,
            peers: HashMap::new(),
        }
    }

    fn answer(&self, req: &BatchRequest, outcome: BatchOutcome) -> Bytes {
        wire::to_bytes(&BatchReply {
            from: self.me.clone(),
            incarnation: req.incarnation,
            seq: req.seq,
            outcome,
        })
    }

    /// Decides what to do with `req`.
    pub fn handle(&mut self, req: BatchRequest) -> Verdict {
        match self.peers.get(&req.from).map(|p| (p.incarnation, p.next)) {
            Some((incarnation, _)) if incarnation > req.incarnation => {
                return Verdict::Answer(self.answer(&req, BatchOutcome::Stale));
            }
            Some((incarnation, next))
                if incarnation == req.incarnation && req.first_unacked <= next => {}
            // New sender, a restarted one, or one whose acknowledged
            // batches this receiver never saw (only after a reset):
            // start where the sender says its unanswered batches begin.
            _ => {
                let fresh = PeerInbox::fresh(req.incarnation, req.first_unacked);
                self.peers.insert(req.from.clone(), fresh);
            }
        }
        let peer = self
            .peers
            .get_mut(&req.from)
            .expect("present or inserted above");
        if req.seq > peer.next {
            let expected = peer.next;
            return Verdict::Answer(self.answer(&req, BatchOutcome::OutOfOrder { expected }));
        }
        if req.seq < peer.next {
            if req.seq < peer.base {
                return Verdict::Answer(self.answer(&req, BatchOutcome::Forgotten));
            }
            return match &peer.slots[(req.seq - peer.base) as usize] {
                Slot::Done(reply) => Verdict::Answer(reply.clone()),
                Slot::Pending { .. } => Verdict::InProgress,
            };
        }
        peer.next += 1;
        let n = req.items.len();
        if n == 0 {
            let reply = self.answer(&req, BatchOutcome::Done(Vec::new()));
            let peer = self.peers.get_mut(&req.from).expect("present above");
            peer.slots.push_back(Slot::Done(reply.clone()));
            peer.trim();
            return Verdict::Answer(reply);
        }
        peer.slots.push_back(Slot::Pending {
            replies: vec![None; n],
            remaining: n,
        });
        Verdict::Deliver {
            key: BatchKey {
                from: req.from,
                incarnation: req.incarnation,
                seq: req.seq,
            },
            items: req.items,
        }
    }

    /// Records the reply to message `index` of batch `key`. Returns the
    /// encoded [`BatchReply`] when that completes the batch. A reply for a
    /// batch this receiver no longer tracks (its sender restarted) or a
    /// second reply for the same message is ignored.
    pub fn complete(&mut self, key: &BatchKey, index: usize, body: Bytes) -> Option<Bytes> {
        let peer = self.peers.get_mut(&key.from)?;
        if peer.incarnation != key.incarnation || key.seq < peer.base {
            return None;
        }
        let slot = peer.slots.get_mut((key.seq - peer.base) as usize)?;
        let Slot::Pending { replies, remaining } = slot else {
            return None;
        };
        let entry = replies.get_mut(index)?;
        if entry.is_some() {
            return None;
        }
        *entry = Some(body);
        *remaining -= 1;
        if *remaining > 0 {
            return None;
        }
        let bodies: Vec<Bytes> = replies
            .iter_mut()
            .map(|b| b.take().expect("every reply present"))
            .collect();
        let size = wire::FRAME_HEADER
            + 2
            + self.me.as_str().len()
            + 2 * 8
            + 1
            + 4
            + bodies.iter().map(|b| 4 + b.len()).sum::<usize>();
        let reply = wire::to_bytes_sized(
            &BatchReply {
                from: self.me.clone(),
                incarnation: key.incarnation,
                seq: key.seq,
                outcome: BatchOutcome::Done(bodies),
            },
            size,
        );
        *slot = Slot::Done(reply.clone());
        peer.trim();
        Some(reply)
    }

    /// Forgets a node's link state (it left the cluster).
    pub fn forget(&mut self, node: &NodeId) {
        self.peers.remove(node);
    }
}
