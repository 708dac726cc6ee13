//! What the log keeps of the delivery state while it appends, and how
//! recovery rebuilds the part it does not keep.
//!
//! The delivery core holds the whole send dedup window. The log needs the
//! window only to hand it back after a restart, and most of it, the QoS 1
//! part, is a pure function of the QoS 1 message records in log order (see
//! [`DedupWindow`]). So the log does not keep a second copy of that part
//! (a hash insert and an eviction lookup per append) nor write it into
//! every checkpoint (tens of MB each). It keeps:
//! - heads, cursors and groups, as before;
//! - the QoS 2 part of the window (unreleased and released entries), which
//!   only QoS 2 traffic touches;
//! - [`WindowMarks`]: a coarse list of where the QoS 1 window's records are
//!   in the log.
//!
//! A checkpoint stores the first two; the pointer to it also names where
//! the QoS 1 window began at that moment ([`WindowStart`]). Recovery folds
//! the QoS 1 message records from there on ([`QosOneFold`]; from the
//! sealed segments' sidecars, which list each message's dedup key, or from
//! scanned records) and merges the result with the checkpoint's QoS 2 part.
//!
//! Exactness: the rebuilt window equals a fold of every record of the log
//! as long as message timestamps do not go backwards (the core stamps them
//! from a monotonic clock). The QoS 1 FIFO only ever drops its oldest slots,
//! by count or by age, so a fold that starts earlier than the oldest slot
//! still held converges to the same FIFO; `tests.rs` checks the equality
//! against a full fold with checkpoints at random places.

use std::collections::VecDeque;

use super::format::SidecarKey;
use super::record::{MessageRecord, Record};
use super::segment_log::Lsn;
use super::state::{DedupConfig, DedupEntry, DedupWindow, RecoveredState, SendKey};
use surepush_core::conversation::{ConversationConfig, Conversations};
use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// Where the QoS 1 dedup window began when a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowStart {
    /// No QoS 1 entry of the window was stored before this position.
    pub lsn: Lsn,
    /// Newest message time before `lsn` (the fold starts with this clock).
    pub newest_ts_ms: u64,
}

/// QoS 1 slots of the window grouped in runs of about a 256th of the
/// window: enough to find a position no later than the oldest slot the
/// window still holds (at most a run early), in a few hundred entries.
#[derive(Clone, Debug, Default)]
pub struct WindowMarks {
    runs: VecDeque<Run>,
    /// Slots in `runs`.
    slots: u64,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    lsn: Lsn,
    slots: u64,
    max_ts_ms: u64,
    newest_before_ms: u64,
}

/// Slots per run for a window of `max_entries`.
fn run_slots(max_entries: usize) -> u64 {
    (max_entries as u64 / 256).clamp(1, 4096)
}

impl WindowMarks {
    /// A QoS 1 message at `lsn`; `newest_before_ms` is the newest message
    /// time before it.
    pub fn note(&mut self, lsn: Lsn, ts_ms: u64, newest_before_ms: u64, config: &DedupConfig) {
        self.slots += 1;
        match self.runs.back_mut() {
            Some(run) if run.slots < run_slots(config.max_entries) => {
                run.slots += 1;
                run.max_ts_ms = run.max_ts_ms.max(ts_ms);
            }
            _ => {
                self.runs.push_back(Run {
                    lsn,
                    slots: 1,
                    max_ts_ms: ts_ms,
                    newest_before_ms,
                });
                self.trim(newest_before_ms.max(ts_ms), config);
            }
        }
    }

    /// Drops runs the window no longer reaches: every slot of the run is
    /// behind `max_entries` newer ones, or older than the age limit.
    fn trim(&mut self, now_ms: u64, config: &DedupConfig) {
        while let Some(front) = self.runs.front() {
            let behind = self.slots - front.slots >= config.max_entries as u64;
            let too_old = now_ms.saturating_sub(front.max_ts_ms) > config.max_age_ms;
            if !(behind || too_old) {
                break;
            }
            self.slots -= front.slots;
            self.runs.pop_front();
        }
    }

    /// Where the window begins now; `next` and `newest_ms` are the log's
    /// end and newest message time (the start when no slot is held).
    pub fn start(&mut self, next: Lsn, newest_ms: u64, config: &DedupConfig) -> WindowStart {
        self.trim(newest_ms, config);
        match self.runs.front() {
            Some(run) => WindowStart {
                lsn: run.lsn,
                newest_ts_ms: run.newest_before_ms,
            },
            None => WindowStart {
                lsn: next,
                newest_ts_ms: newest_ms,
            },
        }
    }
}

/// The delivery state the log keeps up to date on every append.
#[derive(Clone, Debug, Default)]
pub struct Tracked {
    /// Heads, cursors, groups; `dedup` holds the QoS 2 entries only, but its
    /// clock follows every message.
    pub state: RecoveredState,
    /// Where the QoS 1 entries are.
    pub marks: WindowMarks,
}

impl Tracked {
    /// Nothing folded yet; conversation summaries kept within `limits`.
    pub fn with_conversations(limits: ConversationConfig) -> Tracked {
        let mut t = Tracked::default();
        t.state.conversations = Conversations::new(limits);
        t
    }

    /// Folds the record at `lsn`.
    pub fn apply(&mut self, record: &Record, lsn: Lsn, config: &DedupConfig) {
        match record {
            Record::Message(m) if m.qos != Qos::ExactlyOnce => {
                self.state.note_head(m.inbox, m.seq);
                if !surepush_proto::is_room(m.inbox.0) {
                    self.state.conversations.note(m);
                }
                let newest = self.state.dedup.newest_ts_ms();
                self.marks.note(lsn, m.ts_ms, newest, config);
                self.state.dedup.observe(m.ts_ms);
            }
            _ => self.state.apply(record, config),
        }
    }

    /// Where the QoS 1 window begins for a checkpoint written at `next`.
    pub fn window_start(&mut self, next: Lsn, config: &DedupConfig) -> WindowStart {
        let newest = self.state.dedup.newest_ts_ms();
        self.marks.start(next, newest, config)
    }
}

/// What a message contributes to the dedup window (from a record or from
/// a sidecar).
#[derive(Clone, Copy, Debug)]
pub struct MessageKey {
    /// Inbox of the copy.
    pub inbox: UserId,
    /// Its sequence there.
    pub seq: Seq,
    /// Sending user.
    pub from: UserId,
    /// Sending device.
    pub from_device: DeviceId,
    /// The sender's id of the send.
    pub client_msg_id: u64,
    /// QoS of the send.
    pub qos: Qos,
    /// Gateway receive time.
    pub ts_ms: u64,
}

impl MessageKey {
    /// The key of a message record.
    pub fn of(m: &MessageRecord) -> MessageKey {
        MessageKey {
            inbox: m.inbox,
            seq: m.seq,
            from: m.from,
            from_device: m.from_device,
            client_msg_id: m.client_msg_id,
            qos: m.qos,
            ts_ms: m.ts_ms,
        }
    }

    /// The key of a message listed in a sidecar (`None`: an unknown QoS).
    pub fn from_sidecar(inbox: UserId, seq: Seq, k: &SidecarKey) -> Option<MessageKey> {
        Some(MessageKey {
            inbox,
            seq,
            from: UserId(k.from.get()),
            from_device: DeviceId(k.from_device.get()),
            client_msg_id: k.client_msg_id.get(),
            qos: Qos::from_u8(k.qos)?,
            ts_ms: k.ts_ms.get(),
        })
    }

    fn entry(&self) -> DedupEntry {
        DedupEntry {
            key: SendKey {
                from: self.from,
                from_device: self.from_device,
                client_msg_id: self.client_msg_id,
            },
            inbox: self.inbox,
            seq: self.seq,
            qos: self.qos,
            ts_ms: self.ts_ms,
            released: false,
        }
    }
}

/// Recovery's rebuild of the QoS 1 window: every message from `from` on,
/// in log order.
#[derive(Debug)]
pub struct QosOneFold {
    /// First position folded.
    pub from: Lsn,
    /// The QoS 1 entries (its clock follows every message).
    pub window: DedupWindow,
    /// Marks of the folded slots (the log goes on with them).
    pub marks: WindowMarks,
}

impl QosOneFold {
    /// A fold starting at `start`.
    pub fn new(start: WindowStart) -> QosOneFold {
        let mut window = DedupWindow::default();
        window.observe(start.newest_ts_ms);
        QosOneFold {
            from: start.lsn,
            window,
            marks: WindowMarks::default(),
        }
    }

    /// Folds the message at `lsn` (ignored before the start).
    pub fn message(&mut self, lsn: Lsn, m: &MessageKey, config: &DedupConfig) {
        if lsn < self.from {
            return;
        }
        if m.qos == Qos::ExactlyOnce {
            self.window.observe(m.ts_ms);
        } else {
            let newest = self.window.newest_ts_ms();
            self.marks.note(lsn, m.ts_ms, newest, config);
            self.window.insert(m.entry(), config);
        }
    }

    /// Takes a version 1 checkpoint at `lsn`, which holds the whole window:
    /// its QoS 2 part is returned (the log keeps that), its QoS 1 part
    /// joins the fold unless the fold already covers the log before `lsn`.
    /// Their positions are unknown, so they are marked at position 0: the
    /// next checkpoint's window then starts at the log's beginning until
    /// newer sends push them out.
    pub fn take_whole_window(
        &mut self,
        mut state: RecoveredState,
        lsn: Lsn,
        config: &DedupConfig,
    ) -> RecoveredState {
        let mut entries: Vec<DedupEntry> = state.dedup.entries().copied().collect();
        entries.sort_by_key(|e| (e.ts_ms, e.inbox, e.seq));
        let newest = state.dedup.newest_ts_ms();
        let mut qos2 = DedupWindow::default();
        qos2.observe(newest);
        for e in entries {
            if e.qos == Qos::ExactlyOnce {
                qos2.restore(e, config);
            } else if self.from >= lsn {
                let before = self.window.newest_ts_ms();
                self.marks.note(0, e.ts_ms, before, config);
                self.window.restore(e, config);
            }
        }
        state.dedup = qos2;
        state
    }

    /// The window for the delivery core (`tracked` plus the QoS 1 part) and
    /// the log's own state to go on with.
    pub fn finish(
        self,
        mut tracked: RecoveredState,
        config: &DedupConfig,
    ) -> (RecoveredState, Tracked) {
        tracked.dedup.observe(self.window.newest_ts_ms());
        tracked.dedup.evict(config);
        let mut full = tracked.clone();
        full.dedup.merge(self.window, config);
        (
            full,
            Tracked {
                state: tracked,
                marks: self.marks,
            },
        )
    }
}
