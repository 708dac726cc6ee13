//! The delivery checker for scenarios whose receivers are SDK sessions:
//! each message carries an index its sender wrote into the payload (bytes
//! 8..16, see `publish_timed`), increasing per receiver. A receiver must
//! see inbox sequences 1, 2, 3, … without a gap, and every index once, in
//! increasing order.

use std::collections::HashSet;

use serde::Serialize;
use surepush_proto::Push;

/// One receiver's stream of inbox messages, checked as it arrives.
#[derive(Debug)]
pub(crate) struct InboxCheck {
    next_seq: u64,
    last: Option<u64>,
    seen: HashSet<u64>,
    gaps: u64,
    duplicates: u64,
    out_of_order: u64,
}

impl Default for InboxCheck {
    fn default() -> Self {
        InboxCheck {
            next_seq: 1,
            last: None,
            seen: HashSet::new(),
            gaps: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }
}

impl InboxCheck {
    /// Takes the next message the session delivered.
    pub(crate) fn on_message(&mut self, p: &Push) {
        if p.seq.0 != self.next_seq {
            self.gaps += 1;
        }
        self.next_seq = p.seq.0 + 1;
        let Some(index) = p.payload.get(8..16) else {
            self.out_of_order += 1; // not one of ours
            return;
        };
        let index = u64::from_le_bytes(index.try_into().expect("8 bytes"));
        if !self.seen.insert(index) {
            self.duplicates += 1;
            return;
        }
        if self.last.is_some_and(|l| index < l) {
            self.out_of_order += 1;
        }
        self.last = Some(index);
    }

    /// Distinct messages delivered so far.
    pub(crate) fn distinct(&self) -> u64 {
        self.seen.len() as u64
    }
}

/// The checker's totals over many receivers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeliveryCheck {
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Messages expected (acknowledged to their senders) but not delivered.
    pub lost: u64,
    /// Messages delivered again (the same sender index twice).
    pub duplicates: u64,
    /// Messages delivered after a later one of the same receiver.
    pub out_of_order: u64,
    /// Inbox sequences skipped (a delivery whose seq was not the previous
    /// one plus 1).
    pub gaps: u64,
}

impl DeliveryCheck {
    /// Adds one receiver that should have received `expected` messages.
    pub(crate) fn add(&mut self, c: &InboxCheck, expected: u64) {
        self.delivered += c.distinct();
        self.lost += expected.saturating_sub(c.distinct());
        self.duplicates += c.duplicates;
        self.out_of_order += c.out_of_order;
        self.gaps += c.gaps;
    }

    /// Adds another set of receivers' totals.
    pub(crate) fn merge(&mut self, o: &DeliveryCheck) {
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.gaps += o.gaps;
    }

    /// Exactly once, in order, nothing skipped.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0 && self.gaps == 0
    }

    /// One line for people.
    pub fn to_text(&self) -> String {
        format!(
            "delivered {}  lost {}  duplicates {}  out of order {}  seq gaps {}",
            self.delivered, self.lost, self.duplicates, self.out_of_order, self.gaps
        )
    }
}
