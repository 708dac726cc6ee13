//! The send path: dedup, durable store of each copy, SENDACK, QoS 2 release.
//!
//! A QoS 1/2 SEND from user S to user R makes two copies: one in R's inbox
//! (on R's owner shard) and one in S's own inbox (on this shard) so that S's
//! other devices see it. Each copy is idempotent on its own shard: the shard
//! looks up `(send key, inbox)` in its dedup window (durable copies) and in
//! its in-flight copies (appended, not yet durable) before appending. The
//! SENDACK goes out only when both copies are durable, so a crash at any
//! point leaves either nothing acknowledged or everything stored; a retry
//! after a crash stores whatever copy is missing and reports the other as a
//! duplicate.

use bytes::Bytes;

use super::action::{Action, ConnId, Publish, Publisher, StoreOutcome};
use super::group::Reply;
use super::retry::{CopyCheck, RetryCheck, SendFingerprint};
use super::sends::{AnsweredSend, PendingMatch, PendingSend, SendOrigin};
use super::shard::{AppendPurpose, Shard};
use crate::peer::{Ephemeral, GroupEphemeral, GroupStore, PeerMsg, RoomPublish, StoreCopy, Stored};
use crate::{MessageRecord, Record, SendKey};
use surepush_proto::{
    DeviceId, ErrorCode, Frame, Push, Qos, Send, SendAck, SendResult, Seq, UserId,
};
use surepush_token::AclAction;

/// A copy of a send to store in an inbox owned by this shard (from a
/// [`StoreCopy`], a group's [`crate::StoreMany`], a room publish, or the
/// sender's own copy).
#[derive(Clone, Debug)]
pub(super) struct NewCopy {
    pub(super) key: SendKey,
    pub(super) inbox: UserId,
    /// Addressee of the send (the group for a member copy, the room for a
    /// room message).
    pub(super) to: UserId,
    pub(super) qos: Qos,
    pub(super) ts_ms: u64,
    pub(super) attrs: Bytes,
    pub(super) payload: Bytes,
}

impl From<StoreCopy> for NewCopy {
    fn from(m: StoreCopy) -> NewCopy {
        NewCopy {
            key: m.key,
            inbox: m.inbox,
            to: m.to,
            qos: m.qos,
            ts_ms: m.ts_ms,
            attrs: m.attrs,
            payload: m.payload,
        }
    }
}

impl Shard {
    pub(super) fn on_send(&mut self, conn: ConnId, user: UserId, device: DeviceId, send: Send) {
        let max = self.config.max_pending_sends as usize;
        if let Some(c) = self.conn_mut(conn).filter(|c| c.verifying) {
            // Behind a retry being compared: keep the connection's order.
            if c.pending_sends as usize + c.deferred.len() >= max {
                self.fail(
                    conn,
                    ErrorCode::InflightExceeded,
                    "too many SENDs awaiting SENDACK",
                );
                return;
            }
            c.deferred.push_back(send);
            return;
        }
        self.stats.sends += 1;
        let key = SendKey {
            from: user,
            from_device: device,
            client_msg_id: send.client_msg_id,
        };
        let ts_ms = self.wall_ms();
        // QoS 0 is answered only when asked (CONFIRM); then it is tracked
        // like any send until the answer comes.
        let confirm = send.confirm && !Self::qos_needs_store(send.qos);
        if !Self::qos_needs_store(send.qos) && !confirm {
            self.route_ephemeral(conn, key, send, ts_ms, false);
            return;
        }
        if Self::qos_needs_store(send.qos) && (self.storage.failed() || self.shutting_down) {
            self.send_frame(
                conn,
                Frame::SendAck(SendAck {
                    client_msg_id: send.client_msg_id,
                    seq: Seq::ZERO,
                    own_seq: Seq::ZERO,
                    result: SendResult::StorageUnavailable,
                }),
            );
            return;
        }
        let fingerprint = SendFingerprint::of(send.to, send.qos, &send.payload);
        match self.sends.match_pending(&key, fingerprint, conn) {
            PendingMatch::New => {}
            PendingMatch::Conflict => {
                // Not a retry: another message under the same id.
                self.refuse_conflicting_retry(conn, send.client_msg_id);
                return;
            }
            PendingMatch::Retry { previous } => {
                // A retry while the first attempt is still being stored:
                // answered on the newest connection once it completes.
                if previous != SendOrigin::Conn(conn) {
                    if let SendOrigin::Conn(old) = previous {
                        if let Some(c) = self.conn_mut(old) {
                            c.pending_sends -= 1;
                        }
                        // Its SENDACK now goes elsewhere: nothing to wait for.
                        self.release_echoes(old);
                    }
                    self.conn_mut(conn)
                        .expect("sender is connected")
                        .pending_sends += 1;
                }
                return;
            }
        }
        let max = self.config.max_pending_sends;
        let c = self.conn_mut(conn).expect("sender is connected");
        if c.pending_sends >= max {
            self.fail(
                conn,
                ErrorCode::InflightExceeded,
                "too many SENDs awaiting SENDACK",
            );
            return;
        }
        c.pending_sends += 1;
        let to_group = send.to.is_group();
        // A room message is stored once, in the room: no own copy.
        let to_room = surepush_proto::is_room(send.to.0);
        self.sends.start(
            key,
            PendingSend {
                origin: SendOrigin::Conn(conn),
                to: send.to,
                fingerprint: Some(fingerprint),
                remote: None,
                // A group send's own copy is the sender's member copy; QoS 0
                // makes no copy of its own.
                own: (to_group || to_room || confirm).then_some(StoreOutcome::Stored(Seq::ZERO)),
            },
        );
        if confirm {
            self.route_ephemeral(conn, key, send, ts_ms, true);
            return;
        }
        if let Some(seq) = self.sends.durable_copy(&key, user) {
            // A retry of a send stored before (its own-inbox copy is known):
            // make sure it is the same SEND before anything is stored.
            self.conn_mut(conn).expect("sender is connected").verifying = true;
            self.check_retry(RetryCheck {
                conn,
                key,
                send,
                ts_ms,
                seq,
            });
            return;
        }
        self.route_send(conn, key, send, ts_ms);
    }

    /// Hands a QoS 0 SEND to delivery: the addressee's live devices, a
    /// group's members, a room's live subscribers. With `confirm` (the send
    /// is registered in `sends`) the outcome comes back as `Stored`.
    fn route_ephemeral(
        &mut self,
        conn: ConnId,
        key: SendKey,
        send: Send,
        ts_ms: u64,
        confirm: bool,
    ) {
        let origin = self.params.id;
        if send.to.is_group() {
            let msg = GroupEphemeral {
                key,
                group: send.to,
                ts_ms,
                attrs: send.attrs,
                payload: send.payload,
                confirm_to: confirm.then_some(origin),
                members_only: true,
            };
            self.route_to_owner(send.to, msg);
        } else if surepush_proto::is_room(send.to.0) {
            self.publish_to_room(conn, key, send, ts_ms, confirm);
        } else {
            let msg = Ephemeral {
                key,
                inbox: send.to,
                to: send.to,
                ts_ms,
                attrs: send.attrs,
                payload: send.payload,
            };
            if send.to != key.from {
                let own = Ephemeral {
                    inbox: key.from,
                    ..msg.clone()
                };
                self.route_to_owner(send.to, msg);
                self.push_ephemeral(own);
            } else {
                self.route_to_owner(send.to, msg);
            }
            if confirm {
                // Nothing can refuse a message to a user.
                self.on_stored(Stored {
                    key,
                    inbox: send.to,
                    outcome: StoreOutcome::Stored(Seq::ZERO),
                });
            }
        }
    }

    /// Hands a session's SEND to a room's home shard, with what the
    /// session's token grants (`room_access.rs` decides there).
    fn publish_to_room(
        &mut self,
        conn: ConnId,
        key: SendKey,
        send: Send,
        ts_ms: u64,
        confirm: bool,
    ) {
        let msg = RoomPublish {
            origin: self.params.id,
            key,
            room: send.to,
            qos: send.qos,
            ts_ms,
            attrs: send.attrs,
            payload: send.payload,
            granted: self.token_grants(conn, AclAction::Publish, send.to.0),
            confirm,
        };
        self.route_to_owner(send.to, msg);
    }

    /// Sends the store requests of an accepted SEND (registered in `sends`,
    /// from `conn`) to the shards of its copies.
    pub(super) fn route_send(&mut self, conn: ConnId, key: SendKey, send: Send, ts_ms: u64) {
        let user = key.from;
        let to_self = send.to == user;
        let to_group = send.to.is_group();
        let to_room = surepush_proto::is_room(send.to.0);
        let origin = self.params.id;
        if to_group {
            let msg = GroupStore {
                origin,
                key,
                group: send.to,
                qos: send.qos,
                ts_ms,
                attrs: send.attrs,
                payload: send.payload,
                members_only: true,
            };
            self.route_to_owner(send.to, msg);
            return;
        }
        if to_room {
            self.publish_to_room(conn, key, send, ts_ms, false);
            return;
        }
        let own = NewCopy {
            key,
            inbox: user,
            to: send.to,
            qos: send.qos,
            ts_ms,
            attrs: send.attrs.clone(),
            payload: send.payload.clone(),
        };
        let msg = StoreCopy {
            origin,
            key,
            inbox: send.to,
            to: send.to,
            qos: send.qos,
            ts_ms,
            attrs: send.attrs,
            payload: send.payload,
        };
        self.route_to_owner(send.to, msg);
        if !to_self {
            self.store_copy(Reply::Send(origin), own);
        }
    }

    /// A message published by the application backend, or on behalf of a
    /// user whose session is gone ([`Publish::by`]): stored in the
    /// addressee's inbox only (or the room, or the group's members),
    /// answered with [`Action::Published`]. [`Publish::key`] identifies it
    /// for dedup (the API's idempotency key).
    pub fn handle_publish(&mut self, publish: Publish, now: u64) {
        self.set_now(now);
        let Publish {
            request,
            key,
            to,
            qos,
            attrs,
            payload,
            by,
            confirm,
        } = publish;
        let ts_ms = self.wall_ms();
        let (members_only, room_grant) = match by {
            Publisher::Backend => (false, true),
            Publisher::User { room_grant } => (true, room_grant),
        };
        // QoS 0 answered by the room's or group's home shard (`confirm`).
        let confirm = confirm
            && !Self::qos_needs_store(qos)
            && (to.is_group() || surepush_proto::is_room(to.0));
        let origin = self.params.id;
        let msg: PeerMsg = if to.is_group() {
            if Self::qos_needs_store(qos) {
                GroupStore {
                    origin,
                    key,
                    group: to,
                    qos,
                    ts_ms,
                    attrs,
                    payload,
                    members_only,
                }
                .into()
            } else {
                GroupEphemeral {
                    key,
                    group: to,
                    ts_ms,
                    attrs,
                    payload,
                    confirm_to: confirm.then_some(origin),
                    members_only,
                }
                .into()
            }
        } else if surepush_proto::is_room(to.0) {
            RoomPublish {
                origin,
                key,
                room: to,
                qos,
                ts_ms,
                attrs,
                payload,
                granted: room_grant,
                confirm,
            }
            .into()
        } else if Self::qos_needs_store(qos) {
            StoreCopy {
                origin,
                key,
                inbox: to,
                to,
                qos,
                ts_ms,
                attrs,
                payload,
            }
            .into()
        } else {
            Ephemeral {
                key,
                inbox: to,
                to,
                ts_ms,
                attrs,
                payload,
            }
            .into()
        };
        if !Self::qos_needs_store(qos) && !confirm {
            self.route_to_owner(to, msg);
            self.actions.push_back(Action::Published {
                request,
                outcome: StoreOutcome::Stored(Seq::ZERO),
            });
            return;
        }
        let refused = Self::qos_needs_store(qos) && (self.storage.failed() || self.shutting_down);
        if refused || self.sends.is_pending(&key) {
            // A concurrent publish with the same id is refused rather than
            // merged: the API caller retries and then gets Duplicate.
            self.actions.push_back(Action::Published {
                request,
                outcome: StoreOutcome::Failed,
            });
            return;
        }
        self.sends.start(
            key,
            PendingSend {
                origin: SendOrigin::Api(request),
                to,
                fingerprint: None,
                remote: None,
                own: Some(StoreOutcome::Stored(Seq::ZERO)),
            },
        );
        self.route_to_owner(to, msg);
    }

    /// Stores `copy` (its inbox is owned here), answering `origin`.
    pub(super) fn store_copy(&mut self, origin: Reply, copy: NewCopy) {
        let (key, inbox) = (copy.key, copy.inbox);
        if let Some(seq) = self.sends.durable_copy(&key, inbox) {
            if matches!(origin, Reply::Send(_)) && inbox != key.from {
                // Compare with the stored copy before calling it a retry
                // (the sender's own copy was compared on its shard; group
                // member copies through the sender's member copy).
                self.check_copy(CopyCheck {
                    reply: origin,
                    copy,
                    seq,
                });
                return;
            }
            self.stats.send_duplicates += 1;
            self.answer(origin, key, inbox, StoreOutcome::Duplicate(seq));
            return;
        }
        let Err(origin) = self.sends.await_in_flight(key, inbox, origin) else {
            return; // appended already: answered when durable
        };
        if self.storage.failed() || self.refuses_writes(inbox) {
            // Its partition is moving or moved: the sender retries (and
            // its routes catch up).
            self.answer(origin, key, inbox, StoreOutcome::Failed);
            return;
        }
        let state = self.sessions.inbox_entry(inbox);
        state.assigned = state.assigned.next();
        let record = MessageRecord {
            inbox,
            seq: state.assigned,
            from: key.from,
            from_device: key.from_device,
            to: copy.to,
            client_msg_id: key.client_msg_id,
            qos: copy.qos,
            ts_ms: copy.ts_ms,
            attrs: copy.attrs,
            payload: copy.payload,
        };
        self.append(
            Record::Message(record.clone()),
            AppendPurpose::Copy { key, inbox },
        );
        // Right behind the copy: the same group commit.
        self.webhook_copy_appended(&record);
        self.sends.copy_appended(key, record, origin);
    }

    pub(super) fn answer(
        &mut self,
        reply: Reply,
        key: SendKey,
        inbox: UserId,
        outcome: StoreOutcome,
    ) {
        let (shard, msg): (_, PeerMsg) = match reply {
            Reply::Send(origin) => (
                origin,
                Stored {
                    key,
                    inbox,
                    outcome,
                }
                .into(),
            ),
            Reply::Group { home, group } => (
                home,
                crate::peer::GroupStored {
                    key,
                    group,
                    inbox,
                    outcome,
                }
                .into(),
            ),
        };
        self.route_to(shard, msg);
    }

    pub(super) fn on_copy_durable(&mut self, key: SendKey, inbox: UserId, ok: bool) {
        let Some(copy) = self.sends.copy_completed(key, inbox, ok) else {
            debug_assert!(false, "durable copy {key:?} in {inbox} was not in flight");
            return;
        };
        let outcome = if ok {
            let seq = copy.record.seq;
            let state = self.sessions.inbox_entry(inbox);
            debug_assert_eq!(
                state.durable.next(),
                seq,
                "copies become durable in seq order"
            );
            state.durable = state.durable.max(seq);
            self.stats.copies_stored += 1;
            if surepush_proto::is_room(inbox.0) {
                self.room_fan_out(&copy.record);
            } else {
                self.conversations.note(&copy.record);
                self.on_durable(&copy.record);
            }
            StoreOutcome::Stored(seq)
        } else {
            StoreOutcome::Failed
        };
        for origin in copy.waiters {
            self.answer(origin, key, inbox, outcome);
        }
    }

    pub(super) fn on_stored(&mut self, stored: Stored) {
        let Stored {
            key,
            inbox,
            outcome,
        } = stored;
        // `None`: copies still awaited, or answered already (a duplicate
        // answer for a merged retry).
        let Some(AnsweredSend {
            origin,
            remote,
            own,
        }) = self.sends.copy_answered(key, inbox, outcome)
        else {
            return;
        };
        let result = match (remote, own) {
            (StoreOutcome::Rejected, _) | (_, StoreOutcome::Rejected) => SendResult::Forbidden,
            (StoreOutcome::Conflict, _) | (_, StoreOutcome::Conflict) => SendResult::Conflict,
            (StoreOutcome::Failed, _) | (_, StoreOutcome::Failed) => SendResult::StorageUnavailable,
            (StoreOutcome::Duplicate(_), _) => SendResult::Duplicate,
            _ => SendResult::Stored,
        };
        let conn = match origin {
            SendOrigin::Conn(conn) => conn,
            SendOrigin::Api(request) => {
                self.actions.push_back(Action::Published {
                    request,
                    outcome: remote,
                });
                return;
            }
        };
        let Some(c) = self.conn_mut(conn) else {
            return; // the sender left; it retries on its next session
        };
        c.pending_sends -= 1;
        self.send_frame(
            conn,
            Frame::SendAck(SendAck {
                client_msg_id: key.client_msg_id,
                seq: remote.seq(),
                own_seq: own.seq(),
                result,
            }),
        );
    }

    /// Pushes a QoS 0 message to the online devices of its inbox (owned here).
    pub(super) fn push_ephemeral(&mut self, msg: Ephemeral) {
        let Ephemeral {
            key,
            inbox,
            to,
            ts_ms,
            attrs,
            payload,
        } = msg;
        let Some(state) = self.sessions.inbox(inbox) else {
            return;
        };
        let targets: Vec<(ConnId, DeviceId)> = state
            .devices
            .iter()
            .filter_map(|d| d.conn.map(|c| (c, d.id)))
            .collect();
        for (conn, device) in targets {
            let echo = inbox == key.from && device == key.from_device;
            if echo {
                continue; // the sending device needs no copy of a QoS 0 send
            }
            if self.conn(conn).is_some_and(|c| c.live) {
                self.send_frame(
                    conn,
                    Frame::Push(Push {
                        seq: Seq::ZERO,
                        prev_seq: Seq::ZERO,
                        from: key.from,
                        from_device: key.from_device,
                        to,
                        client_msg_id: key.client_msg_id,
                        ts_ms,
                        qos: Qos::AtMostOnce,
                        echo: false,
                        retransmit: false,
                        attrs: attrs.clone(),
                        payload: payload.clone(),
                    }),
                );
            }
        }
    }

    pub(super) fn on_rel(
        &mut self,
        conn: ConnId,
        user: UserId,
        device: DeviceId,
        client_msg_id: u64,
        to: UserId,
    ) {
        let key = SendKey {
            from: user,
            from_device: device,
            client_msg_id,
        };
        self.route_to_owner(to, crate::peer::Release { key, to });
        if to != user && !to.is_group() {
            self.release(key, to);
        }
        self.send_frame(conn, Frame::Comp { client_msg_id });
    }

    /// Forgets the QoS 2 dedup entries of `key` held here and logs it.
    pub(super) fn release(&mut self, key: SendKey, to: UserId) {
        if self.sends.release(&key, to) && !self.storage.failed() {
            self.append(
                Record::Release {
                    from: key.from,
                    from_device: key.from_device,
                    client_msg_id: key.client_msg_id,
                    to,
                },
                AppendPurpose::Bookkeeping,
            );
        }
    }
}
