//! Live delivery: the push window, cumulative ACKs, retransmission with
//! backoff, dead-connection detection and batched cursor persistence.
//!
//! Invariants per live connection:
//! - pushes go out in seq order with no gap: the next push is always
//!   `sent_up_to + 1`, so `pending` is sorted and a cumulative ACK pops a
//!   prefix of it;
//! - at most `push_window` pushes await an ACK; beyond that, messages stay
//!   in the log and are read back (`refill`) as the window opens;
//! - a push unacknowledged after `max_retries` retransmits closes the
//!   connection (`AckTimeout`); the message stays stored for the next session.

use super::action::{ConnId, ReadId};
use super::shard::{AppendPurpose, PendingPush, ReadPurpose, Shard, TimerEvent, NS_PER_MS};
use crate::log::{InboxQuery, MessageRecord, Record};
use crate::proto::{DeviceId, ErrorCode, Frame, Push, Seq, UserId};

/// The PUSH frame for `record` as seen by `device`.
pub(super) fn push_frame(record: &MessageRecord, device: DeviceId, retransmit: bool) -> Frame {
    let echo = record.inbox == record.from && record.from_device == device;
    Frame::Push(Push {
        seq: record.seq,
        prev_seq: Seq(record.seq.0.saturating_sub(1)),
        from: record.from,
        from_device: record.from_device,
        to: record.to,
        client_msg_id: record.client_msg_id,
        ts_ms: record.ts_ms,
        qos: record.qos,
        echo,
        retransmit,
        payload: if echo {
            Default::default()
        } else {
            record.payload.clone()
        },
    })
}

impl Shard {
    /// A copy just became durable: push it to the inbox's live devices.
    pub(super) fn on_durable(&mut self, record: &MessageRecord) {
        let Some(inbox) = self.users.get(&record.inbox) else {
            return;
        };
        let conns: Vec<ConnId> = inbox.devices.iter().filter_map(|d| d.conn).collect();
        let window = self.config.push_window as usize;
        for conn in conns {
            let Some(c) = self.conn(conn) else { continue };
            if !c.live {
                continue;
            }
            if c.refill.is_none() && c.sent_up_to.next() == record.seq && c.pending.len() < window {
                self.push_now(conn, record.clone());
            } else {
                self.refill(conn);
            }
        }
    }

    /// Writes a first-time push and arms its retransmit timer.
    pub(super) fn push_now(&mut self, conn: ConnId, record: MessageRecord) {
        let deadline = self.now_ns + self.config.backoff_ms(1) * NS_PER_MS;
        let seq = record.seq;
        let timer = self
            .timers
            .insert(deadline, TimerEvent::Retransmit { conn, seq });
        let c = self.conn_mut(conn).expect("caller checked the connection");
        let (_, device) = c.session.expect("live connections have a session");
        debug_assert_eq!(c.sent_up_to.next(), seq, "pushes are contiguous");
        c.sent_up_to = seq;
        c.highest_sent = c.highest_sent.max(seq);
        let frame = push_frame(&record, device, false);
        c.pending.push_back(PendingPush {
            record,
            tries: 0,
            timer,
        });
        self.stats.pushes += 1;
        self.stats.pending_acks += 1;
        self.send_frame(conn, frame);
    }

    /// If a live connection is behind the durable head and its window has
    /// room, reads the next messages from the log.
    pub(super) fn refill(&mut self, conn: ConnId) {
        let window = self.config.push_window as usize;
        let Some(c) = self.conn(conn) else { return };
        let Some((user, _)) = c.session else { return };
        if !c.live || c.refill.is_some() || c.pending.len() >= window {
            return;
        }
        let durable = self.durable_head(user);
        if c.sent_up_to >= durable {
            return;
        }
        let query = InboxQuery::After {
            after: c.sent_up_to,
            limit: (window - c.pending.len()) as u32,
        };
        let id = self.read(user, query, ReadPurpose::Refill { conn });
        self.conn_mut(conn).expect("checked above").refill = Some(id);
    }

    pub(super) fn on_refill_read(
        &mut self,
        conn: ConnId,
        id: ReadId,
        result: Result<Vec<MessageRecord>, ()>,
    ) {
        let Some(c) = self.conn_mut(conn) else { return };
        if c.refill != Some(id) {
            return; // superseded (the connection re-synced meanwhile)
        }
        c.refill = None;
        let Ok(records) = result else {
            self.fail(
                conn,
                ErrorCode::StorageUnavailable,
                "could not read the inbox",
            );
            return;
        };
        let window = self.config.push_window as usize;
        let durable = self
            .conn(conn)
            .and_then(|c| c.session)
            .map(|(u, _)| self.durable_head(u));
        for record in records {
            if durable.is_some_and(|d| record.seq > d) {
                break;
            }
            let Some(c) = self.conn(conn) else { return };
            if !c.live || c.pending.len() >= window {
                break;
            }
            if record.seq == c.sent_up_to.next() {
                self.push_now(conn, record);
            }
        }
        self.refill(conn);
    }

    pub(super) fn on_ack(&mut self, conn: ConnId, user: UserId, device: DeviceId, up_to: Seq) {
        self.stats.acks += 1;
        let c = self.conn_mut(conn).expect("connected");
        if up_to > c.highest_sent {
            let bound = c.highest_sent;
            self.fail(
                conn,
                ErrorCode::AckBeyondSent,
                &format!(
                    "ACK {} beyond the highest sequence sent ({})",
                    up_to.0, bound.0
                ),
            );
            return;
        }
        let mut cancelled = Vec::new();
        while c.pending.front().is_some_and(|p| p.record.seq <= up_to) {
            cancelled.push(c.pending.pop_front().expect("front exists").timer);
        }
        self.stats.pending_acks -= cancelled.len() as u64;
        for t in cancelled {
            self.timers.cancel(t);
        }
        self.advance_cursor(user, device, up_to);
        self.refill(conn);
    }

    /// Moves a device's cursor forward (never back) and schedules its write.
    pub(super) fn advance_cursor(&mut self, user: UserId, device: DeviceId, seq: Seq) {
        let Some(d) = self.users.get_mut(&user).and_then(|i| i.device_mut(device)) else {
            return;
        };
        if seq <= d.cursor {
            return;
        }
        let was_clean = d.cursor == d.persisted;
        d.cursor = seq;
        if was_clean {
            self.dirty_cursors.push((user, device));
        }
        if !self.flush_armed {
            self.flush_armed = true;
            let at = self.now_ns + self.config.cursor_flush_ms * NS_PER_MS;
            self.timers.insert(at, TimerEvent::FlushCursors);
        }
    }

    /// Writes every changed cursor to the log (one record each, one batch).
    pub(super) fn flush_cursors(&mut self) {
        self.flush_armed = false;
        let dirty = std::mem::take(&mut self.dirty_cursors);
        for (user, device) in dirty {
            let Some(d) = self.users.get_mut(&user).and_then(|i| i.device_mut(device)) else {
                continue;
            };
            if d.cursor == d.persisted {
                continue;
            }
            d.persisted = d.cursor;
            let seq = d.cursor;
            if !self.storage_failed {
                self.append(
                    Record::Cursor { user, device, seq },
                    AppendPurpose::Bookkeeping,
                );
            }
        }
    }

    pub(super) fn on_retransmit_timer(&mut self, conn: ConnId, seq: Seq) {
        let max_retries = self.config.max_retries;
        let Some(c) = self.conn_mut(conn) else { return };
        let Some(pos) = c.pending.iter().position(|p| p.record.seq == seq) else {
            return;
        };
        let (_, device) = c.session.expect("pending pushes imply a session");
        let tries = c.pending[pos].tries + 1;
        if tries > max_retries {
            self.stats.dead_connections += 1;
            self.fail(
                conn,
                ErrorCode::AckTimeout,
                &format!(
                    "push {} unacknowledged after {max_retries} retransmits",
                    seq.0
                ),
            );
            return;
        }
        let frame = push_frame(&c.pending[pos].record, device, true);
        let deadline = self.now_ns + self.config.backoff_ms(tries + 1) * NS_PER_MS;
        let timer = self
            .timers
            .insert(deadline, TimerEvent::Retransmit { conn, seq });
        let c = self.conn_mut(conn).expect("checked above");
        c.pending[pos].tries = tries;
        c.pending[pos].timer = timer;
        self.stats.retransmits += 1;
        self.send_frame(conn, frame);
    }
}
