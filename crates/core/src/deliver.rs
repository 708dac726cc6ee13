//! Live delivery: the push window, cumulative ACKs, retransmission with
//! backoff, dead-connection detection and batched cursor persistence.
//!
//! Invariants per live connection:
//! - pushes go out in seq order: the next push is the inbox's next
//!   sequence the log holds after `sent_up_to`, and its PUSH `prev_seq` is
//!   `sent_up_to` (sequences in between are gone: lost to a salvaged
//!   damage or past a head a device raised; `gone_to` remembers how far),
//!   so `pending` is sorted and a cumulative ACK pops a prefix of it;
//! - an ACK may acknowledge anything up to the inbox's durable head (a
//!   device may hold messages from an earlier connection or page); beyond
//!   it is `AckBeyondSent`;
//! - at most `push_window` pushes await an ACK; beyond that, messages stay
//!   in the log and are read back (`refill`) as the window opens;
//! - a push unacknowledged after `max_retries` retransmits closes the
//!   connection (`AckTimeout`); the message stays stored for the next session.

use super::action::{ConnId, ReadId};
use super::sessions::PendingPush;
use super::shard::{AppendPurpose, ReadPurpose, Shard, TimerEvent, NS_PER_MS};
use crate::{InboxQuery, MessageRecord, Record};
use surepush_proto::{DeviceId, ErrorCode, Frame, Push, Seq, UserId};

/// The PUSH frame for `record` as seen by `device`; `prev` is the
/// sequence before it in what the device is sent.
pub(super) fn push_frame(
    record: &MessageRecord,
    device: DeviceId,
    retransmit: bool,
    prev: Seq,
) -> Frame {
    let echo = record.inbox == record.from && record.from_device == device;
    Frame::Push(Push {
        seq: record.seq,
        prev_seq: prev,
        from: record.from,
        from_device: record.from_device,
        to: record.to,
        client_msg_id: record.client_msg_id,
        ts_ms: record.ts_ms,
        qos: record.qos,
        echo,
        retransmit,
        attrs: if echo {
            Default::default()
        } else {
            record.attrs.clone()
        },
        payload: if echo {
            Default::default()
        } else {
            record.payload.clone()
        },
    })
}

impl Shard {
    /// A copy just became durable: push it to the inbox's live devices
    /// (the sending device's echo of a send still waiting for its SENDACK
    /// is held, see [`Shard::hold_echo`]).
    pub(super) fn on_durable(&mut self, record: &MessageRecord) {
        let Some(inbox) = self.sessions.inbox(record.inbox) else {
            return;
        };
        let conns: Vec<ConnId> = inbox.devices.iter().filter_map(|d| d.conn).collect();
        let window = self.config.push_window as usize;
        for conn in conns {
            if self.hold_echo(conn, record) {
                continue;
            }
            self.release_echoes(conn);
            let Some(c) = self.conn(conn) else { continue };
            if !c.live {
                continue;
            }
            let next = c.sent_up_to.max(c.gone_to).next();
            if c.refill.is_none() && next == record.seq && c.pending.len() < window {
                self.push_now(conn, record.clone());
            } else {
                self.refill(conn);
            }
        }
    }

    /// Holds `record` back from `conn` if it is the echo of a send this
    /// connection still awaits the SENDACK of, next in line for it.
    ///
    /// Why (issue #20): a send's own-inbox copy and its addressee's copy
    /// become durable together when both inboxes are on this shard (one
    /// commit), and the echo and the SENDACK then leave in one write. When
    /// the addressee is on another shard or node, the own copy is durable
    /// first; pushed at once, the echo was a write of its own, and its ACK
    /// a read of its own, a round trip before the SENDACK. Held, it goes
    /// out just before the next frame to the connection (`send_frame`),
    /// which is normally that SENDACK, or before any other push to it.
    fn hold_echo(&mut self, conn: ConnId, record: &MessageRecord) -> bool {
        let window = self.config.push_window as usize;
        let Some(c) = self.conn(conn) else {
            return false;
        };
        let Some((user, device)) = c.session else {
            return false;
        };
        let echo = record.inbox == user && record.from == user && record.from_device == device;
        let front = c
            .held_echoes
            .last()
            .map_or(c.sent_up_to.max(c.gone_to), |r| r.seq);
        let fits = c.live
            && c.refill.is_none()
            && front.next() == record.seq
            && c.pending.len() + c.held_echoes.len() < window;
        if !echo || !fits {
            return false;
        }
        let key = crate::SendKey {
            from: record.from,
            from_device: record.from_device,
            client_msg_id: record.client_msg_id,
        };
        if !self.sends.awaited_on(&key, conn) {
            return false;
        }
        let c = self.conn_mut(conn).expect("checked above");
        c.held_echoes.push(record.clone());
        true
    }

    /// Pushes the echoes held for `conn` (those the device acknowledged
    /// meanwhile are skipped).
    pub(super) fn release_echoes(&mut self, conn: ConnId) {
        let held = match self.conn_mut(conn) {
            Some(c) if !c.held_echoes.is_empty() => std::mem::take(&mut c.held_echoes),
            _ => return,
        };
        for record in held {
            let c = self.conn(conn).expect("held by an open connection");
            if record.seq > c.sent_up_to.max(c.gone_to) {
                self.push_now(conn, record);
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
        debug_assert!(seq > c.sent_up_to.max(c.gone_to), "pushes go forward");
        let prev = c.sent_up_to;
        c.sent_up_to = seq;
        let frame = push_frame(&record, device, false, prev);
        c.pending.push_back(PendingPush {
            record,
            prev,
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
        self.release_echoes(conn);
        let window = self.config.push_window as usize;
        let Some(c) = self.conn(conn) else { return };
        let Some((user, _)) = c.session else { return };
        if !c.live || c.refill.is_some() || c.pending.len() >= window {
            return;
        }
        let durable = self.durable_head(user);
        let after = c.sent_up_to.max(c.gone_to);
        if after >= durable {
            return;
        }
        let query = InboxQuery::After {
            after,
            limit: (window - c.pending.len()) as u32,
        };
        let purpose = ReadPurpose::Refill {
            conn,
            head: durable,
        };
        let id = self.read(user, query, purpose);
        self.conn_mut(conn).expect("checked above").refill = Some(id);
    }

    pub(super) fn on_refill_read(
        &mut self,
        conn: ConnId,
        id: ReadId,
        head: Seq,
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
        if !records.iter().any(|r| r.seq <= head) {
            // Everything the log held up to the head is read (the limit
            // was above zero): what is not there is gone.
            let c = self.conn_mut(conn).expect("checked above");
            c.gone_to = c.gone_to.max(head);
        }
        for record in records {
            if record.seq > head {
                break;
            }
            let Some(c) = self.conn(conn) else { return };
            if !c.live || c.pending.len() >= window {
                break;
            }
            if record.seq > c.sent_up_to.max(c.gone_to) {
                self.push_now(conn, record);
            }
        }
        self.refill(conn);
    }

    pub(super) fn on_ack(&mut self, conn: ConnId, user: UserId, device: DeviceId, up_to: Seq) {
        self.stats.acks += 1;
        let head = self.durable_head(user);
        if up_to > head {
            self.fail(
                conn,
                ErrorCode::AckBeyondSent,
                &format!("ACK {} beyond the inbox head {}", up_to.0, head.0),
            );
            return;
        }
        let c = self.conn_mut(conn).expect("connected");
        if c.live && up_to > c.sent_up_to {
            // The device holds these already (an earlier connection or
            // page): live delivery goes on after them.
            c.sent_up_to = up_to;
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
        if self.sessions.advance_cursor(user, device, seq) {
            self.arm_bookkeeping_flush();
        }
    }

    /// Arms the flush of cursors and deferred state (`cursor_flush_ms`
    /// from now), unless it is armed already.
    pub(super) fn arm_bookkeeping_flush(&mut self) {
        if self.sessions.arm_flush() {
            let at = self.now_ns + self.config.cursor_flush_ms * NS_PER_MS;
            self.timers.insert(at, TimerEvent::FlushCursors);
        }
    }

    /// Writes every changed cursor to the log (one record each, one batch).
    pub(super) fn flush_cursors(&mut self) {
        let dirty = self.sessions.take_dirty_cursors();
        for (user, device) in dirty {
            let Some(seq) = self.sessions.persist_cursor(user, device) else {
                continue;
            };
            if !self.storage.failed() {
                self.append(
                    Record::Cursor { user, device, seq },
                    AppendPurpose::Bookkeeping,
                );
            }
        }
    }

    pub(super) fn on_retransmit_timer(&mut self, conn: ConnId, seq: Seq) {
        let max_retries = self.config.max_retries;
        let Some(c) = self.conn(conn) else { return };
        let Some(pos) = c.pending.iter().position(|p| p.record.seq == seq) else {
            return;
        };
        let (_, device) = c.session.expect("pending pushes imply a session");
        let tries = c.pending[pos].tries + 1;
        // `tries - 1` retransmissions went unanswered.
        if self.wants_unacked_webhook(tries - 1) {
            let record = c.pending[pos].record.clone();
            self.webhook_unacked(&record, device, tries - 1);
        }
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
        let c = self.conn_mut(conn).expect("checked above");
        let pending = &c.pending[pos];
        let frame = push_frame(&pending.record, device, true, pending.prev);
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
