//! A retried SEND must be the same SEND (issue #16 item 5).
//!
//! The gateway recognises a retry by its key (sender, device,
//! client_msg_id). A client that reuses an id for a *different* message
//! (another addressee, QoS or payload) used to get it silently merged into
//! the first while that was in flight, or stored a second time under the
//! old id after the SENDACK. Both are now refused with SENDACK `Conflict`,
//! and nothing is stored for the refused SEND:
//! - in flight: the pending send carries a [`SendFingerprint`] of the
//!   original, compared with the retry's;
//! - after the SENDACK: the key's copy in the dedup window is read back
//!   from the log and compared with the retry, byte for byte, before
//!   anything new is stored. For a send that leaves a copy in the sender's
//!   own inbox (to a user, to itself, to a group) that copy is checked on
//!   the sender's shard before the send is routed anywhere; a copy found
//!   on another shard (a room, a backend publish) is checked there. The
//!   read happens only for retries of stored sends, so the normal path
//!   pays nothing.
//!
//! Not recognised: a send to a room retried to a *different* room or user
//! (a room send leaves no copy on the sender's side, so nothing there
//! remembers it); it is stored as a new message.

use bytes::Bytes;

use super::action::{ConnId, StoreOutcome};
use super::group::Reply;
use super::send::NewCopy;
use super::shard::{ReadPurpose, Shard};
use crate::{InboxQuery, MessageRecord, SendKey};
use surepush_proto::{Frame, Qos, Send, SendAck, SendResult, Seq, UserId};

/// What a retry must repeat: addressee, QoS and payload (length and CRC32C,
/// enough to tell a client's mistake; exact bytes are compared whenever the
/// original is read back from the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SendFingerprint {
    to: UserId,
    qos: Qos,
    payload_len: usize,
    payload_crc: u32,
}

impl SendFingerprint {
    pub(super) fn of(to: UserId, qos: Qos, payload: &[u8]) -> SendFingerprint {
        SendFingerprint {
            to,
            qos,
            payload_len: payload.len(),
            payload_crc: crc32c::crc32c(payload),
        }
    }
}

/// The stored copy a retry is compared with.
fn same_send(stored: &MessageRecord, to: UserId, qos: Qos, payload: &Bytes) -> bool {
    stored.to == to && stored.qos == qos && stored.payload == *payload
}

/// A retried SEND waiting for its original to be read back.
#[derive(Debug)]
pub(super) struct RetryCheck {
    pub(super) conn: ConnId,
    pub(super) key: SendKey,
    pub(super) send: Send,
    pub(super) ts_ms: u64,
    /// Sequence of the original's copy in the sender's own inbox.
    pub(super) seq: Seq,
}

/// A copy found in the dedup window, waiting to be compared with the
/// retry that found it.
#[derive(Debug)]
pub(super) struct CopyCheck {
    pub(super) reply: Reply,
    pub(super) copy: NewCopy,
    pub(super) seq: Seq,
}

/// The query that reads back exactly the copy at `seq`.
fn copy_at(seq: Seq) -> InboxQuery {
    InboxQuery::After {
        after: Seq(seq.0.saturating_sub(1)),
        limit: 1,
    }
}

/// The record a copy check read, if it is the one at `seq`.
fn found(result: &Result<Vec<MessageRecord>, ()>, seq: Seq) -> Option<&MessageRecord> {
    result.as_ref().ok()?.first().filter(|r| r.seq == seq)
}

impl Shard {
    /// A SEND whose key has a pending send with another fingerprint.
    pub(super) fn refuse_conflicting_retry(&mut self, conn: ConnId, client_msg_id: u64) {
        self.stats.send_conflicts += 1;
        self.send_frame(
            conn,
            Frame::SendAck(SendAck {
                client_msg_id,
                seq: Seq::ZERO,
                own_seq: Seq::ZERO,
                result: SendResult::Conflict,
            }),
        );
    }

    /// Reads back the own-inbox copy of a stored send before its retry
    /// goes anywhere; continues in [`Shard::on_retry_read`].
    pub(super) fn check_retry(&mut self, check: RetryCheck) {
        let user = check.key.from;
        self.read(user, copy_at(check.seq), ReadPurpose::Retry(check));
    }

    pub(super) fn on_retry_read(
        &mut self,
        check: RetryCheck,
        result: Result<Vec<MessageRecord>, ()>,
    ) {
        let conn = check.conn;
        self.finish_retry_check(check, result);
        self.resume_deferred_sends(conn);
    }

    /// Handles the SENDs a connection sent while one of its retries was
    /// being compared, in order, until one needs a comparison again.
    fn resume_deferred_sends(&mut self, conn: ConnId) {
        let Some((user, device)) = self.conn_mut(conn).and_then(|c| {
            c.verifying = false;
            c.session
        }) else {
            return;
        };
        loop {
            let Some(c) = self.conn_mut(conn) else { return };
            if c.verifying {
                return;
            }
            let Some(send) = c.deferred.pop_front() else {
                return;
            };
            self.on_send(conn, user, device, send);
        }
    }

    fn finish_retry_check(&mut self, check: RetryCheck, result: Result<Vec<MessageRecord>, ()>) {
        let same = match found(&result, check.seq) {
            Some(stored) => same_send(stored, check.send.to, check.send.qos, &check.send.payload),
            // Gone (retention) or unreadable: nothing left to compare with;
            // the retry goes on as before this check existed.
            None => true,
        };
        if same {
            self.route_send(check.conn, check.key, check.send, check.ts_ms);
            return;
        }
        tracing::debug!(key = ?check.key, "retry differs from the stored send");
        if self.sends.forget(&check.key) {
            if let Some(c) = self.conn_mut(check.conn) {
                c.pending_sends -= 1;
            }
        }
        if self.conn(check.conn).is_some() {
            self.refuse_conflicting_retry(check.conn, check.key.client_msg_id);
        }
    }

    /// Reads back a copy the dedup window holds before a retry is answered
    /// `Duplicate`; continues in [`Shard::on_copy_check_read`].
    pub(super) fn check_copy(&mut self, check: CopyCheck) {
        let inbox = check.copy.inbox;
        self.read(inbox, copy_at(check.seq), ReadPurpose::Copy(check));
    }

    pub(super) fn on_copy_check_read(
        &mut self,
        check: CopyCheck,
        result: Result<Vec<MessageRecord>, ()>,
    ) {
        let outcome = match found(&result, check.seq) {
            Some(stored)
                if !same_send(stored, check.copy.to, check.copy.qos, &check.copy.payload) =>
            {
                self.stats.send_conflicts += 1;
                StoreOutcome::Conflict
            }
            _ => StoreOutcome::Duplicate(check.seq),
        };
        if outcome != StoreOutcome::Conflict {
            self.stats.send_duplicates += 1;
        }
        self.answer(check.reply, check.copy.key, check.copy.inbox, outcome);
    }
}
