//! Shared subscriptions: `$share/{group}/{filter}` (issue #21, docs/MQTT.md
//! 2.3). The session joins the share group with native SHARE; the core
//! gives each message of the group to one member (SHAREPUSH), and the
//! member's PUBACK (QoS 1) or PUBREC (QoS 2) goes back as SHAREACK, which
//! lets the group hand that member more.
//!
//! Rules:
//! - The filter must be over free-form topics (an exact name or a topic
//!   wildcard, `wildcards.rs`) and covered by a `sub` grant of the token
//!   (or `mqtt.topics_open`), wildcards at its start included: the core
//!   does not check a shared message's name against the member's grants,
//!   so a filter may not reach further than they do. Else SUBACK `0x87`
//!   (5.0) / `0x80` (3.1.1); a room or inbox filter gets `0x9E` Shared
//!   Subscriptions not supported / `0x80`.
//! - 3.1.1 clients may subscribe `$share/...` too (as mosquitto allows).
//! - No retained message is sent on a shared subscription (5.0 §4.8.2).
//! - The SUBACK waits until every shard has the member (TOPIC room 0
//!   naming the shared filter, as for a wildcard filter).
//! - A resumed persistent session joins its groups again after CONNACK.

use super::streams::stream_room;
use super::wildcards::{covers, is_topic_wildcard};
use super::{mqtt_qos, native_qos, Bridge, Delivery};
use crate as mqtt;
use crate::{QoS, ReasonCode, Subscription};
use surepush_proto::topic_stream::split_payload;
use surepush_proto::{share_key, Frame, ShareAck, SharePush, ShareReq};
use surepush_token::AclAction;

use super::outbound::Outgoing;
use super::persist::Change;
use super::state::{SharedKey, SHARED_COMPLETED_KEPT};

/// `(group, filter)` of a shared subscription filter, if it is one and
/// its share name is valid ([MQTT-4.8.2-1], [MQTT-4.8.2-2]; a 3.1.1
/// client's filter is not checked by the codec for it).
pub(super) fn split_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(mqtt::SHARED_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    let valid = !group.is_empty()
        && group.len() <= surepush_proto::MAX_SHARE_NAME_LEN
        && !group.contains(['+', '#'])
        && !inner.is_empty();
    valid.then_some((group, inner))
}

impl Bridge {
    /// SUBSCRIBE of a `$share/...` filter: `Ok` once SHARE is sent (the
    /// SUBACK waits for the core), or the reason code refusing it.
    pub(super) fn subscribe_shared(&mut self, sub: &Subscription) -> Result<(), ReasonCode> {
        let v5 = self.level.is_v5();
        let refused = |code: ReasonCode| if v5 { code } else { ReasonCode(0x80) };
        let Some((group, inner)) = split_shared(sub.filter.as_str()) else {
            return Err(ReasonCode(0x80));
        };
        if !is_topic_wildcard(inner) && stream_room(inner).is_none() {
            return Err(refused(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED));
        }
        let allowed = if is_topic_wildcard(inner) {
            self.params.topics_open
                || self
                    .acl
                    .filters(AclAction::Subscribe)
                    .iter()
                    .any(|g| covers(g, inner))
        } else {
            self.topic_allowed(AclAction::Subscribe, inner)
        };
        if !allowed {
            return Err(refused(ReasonCode::NOT_AUTHORIZED));
        }
        let req = self.share_req(group, inner, sub.options.qos, false);
        self.to_core.push_back(Frame::Share(req));
        Ok(())
    }

    fn share_req(&self, group: &str, filter: &str, qos: QoS, leave: bool) -> ShareReq {
        ShareReq {
            group: group.to_string(),
            filter: filter.to_string(),
            qos: native_qos(qos),
            receive_max: self.client_receive_max,
            leave,
            persistent: self.persistent,
            // 0xFFFFFFFF: the session never expires (MQTT 5 3.1.2.11.2).
            expiry_s: (self.persistent && self.state.expiry_s != u32::MAX)
                .then_some(self.state.expiry_s),
        }
    }

    /// UNSUBSCRIBE of a shared filter the session had.
    pub(super) fn leave_shared(&mut self, filter: &str) {
        if let Some((group, inner)) = split_shared(filter) {
            let req = self.share_req(group, inner, QoS::AtMostOnce, true);
            self.to_core.push_back(Frame::Share(req));
            // The group drops what it sent this session and did not see
            // received ([MQTT-4.8.2-5]): it never comes again.
            let key = share_key(group, inner);
            if let Some(w) = self.state.wild.as_deref_mut() {
                let before = w.shared_pids.len();
                w.shared_pids.retain(|k, _| k.0 != key);
                if w.shared_pids.len() != before {
                    self.changed(Change::Bookkeeping);
                }
            }
        }
    }

    /// Joins every share group of a resumed session (after CONNACK).
    pub(super) fn register_shares(&mut self) {
        let reqs: Vec<ShareReq> = self
            .state
            .subs
            .iter()
            .filter_map(|s| {
                let (group, inner) = split_shared(s.filter.as_str())?;
                Some(self.share_req(group, inner, s.options.qos, false))
            })
            .collect();
        for req in reqs {
            self.to_core.push_back(Frame::Share(req));
        }
    }

    /// SHAREPUSH: a message of one of the session's share groups.
    pub(super) fn deliver_shared(&mut self, p: SharePush) {
        let SharePush { group, push } = p;
        let (room, seq) = (push.room, push.seq);
        let done = Frame::ShareAck(ShareAck { group, room, seq });
        let ours = self.state.subs.iter().any(|s| {
            split_shared(s.filter.as_str()).is_some_and(|(g, f)| share_key(g, f) == group)
        });
        let Some((name, body)) = split_payload(&push.payload).filter(|_| ours) else {
            // Not (or no longer) ours, or no topic: finished for the group.
            if push.qos != surepush_proto::Qos::AtMostOnce {
                self.to_core.push_back(done);
            }
            return;
        };
        let key = (group, room, seq.0);
        let w = self.state.wild();
        if w.shared_done.contains_key(&key) || w.shared_completed.contains(&key) {
            // Received before a restart lost the group's record of it:
            // never again; finished for the group.
            self.to_core.push_back(done);
            return;
        }
        let what = Delivery::Shared(group, room, seq);
        let pid = w.shared_pids.get(&key).copied();
        let sending = pid
            .is_some_and(|p| self.busy.inflight.get(&p).is_some_and(|o| o.what == what))
            || self.busy.waiting.iter().any(|(_, d)| *d == what);
        if sending {
            return; // given twice (a join racing a give-back): once is enough
        }
        // Sent before (the group gives it again after a reconnect or a
        // restart): the same packet id, DUP, so the client's QoS 2 state
        // knows it (MQTT 4.3.3).
        let dup = pid.is_some();
        let topic = name.to_string();
        let qos = mqtt_qos(push.qos);
        let msg = Outgoing {
            payload: body,
            sent_before: dup,
            share: Some(group),
            ..Outgoing::from(push)
        };
        if qos == QoS::AtMostOnce {
            self.publish(&topic, qos, msg, None, false);
        } else {
            self.publish(&topic, qos, msg, Some(what), dup);
        }
    }

    /// The client sent PUBREC for a share group's QoS 2 message (packet id
    /// `pid`): durable before its SHAREACK leaves (`persist.rs`).
    pub(super) fn shared_received(&mut self, key: SharedKey, pid: u16) {
        let w = self.state.wild_mut();
        w.shared_pids.remove(&key);
        w.shared_done.insert(key, pid);
        self.changed(Change::SharedReceived);
    }

    /// PUBCOMP for `pid`: a share group message received with it is
    /// completed. Still remembered (see [`SHARED_COMPLETED_KEPT`]): the
    /// group records it finished when the SHAREACK reaches the stream's
    /// shard, in that shard's next group commit, which a kill -9 may beat;
    /// the restarted group then gives it to this session again.
    pub(super) fn shared_completed(&mut self, pid: u16) {
        let Some(w) = self.state.wild.as_deref_mut() else {
            return;
        };
        let done: Vec<SharedKey> = w
            .shared_done
            .iter()
            .filter(|(_, &p)| p == pid)
            .map(|(&k, _)| k)
            .collect();
        if done.is_empty() {
            return;
        }
        for key in done {
            w.shared_done.remove(&key);
            w.shared_completed.push_back(key);
        }
        while w.shared_completed.len() > SHARED_COMPLETED_KEPT {
            w.shared_completed.pop_front();
        }
        self.changed(Change::Bookkeeping);
    }

    /// The core confirmed (or refused) this connection's join of `filter`
    /// (TOPIC room 0). A group answers a join only after giving the member
    /// again all it counts as the member's (`share_groups.rs`): the
    /// completed messages of that group are forgotten.
    pub(super) fn shared_joined(&mut self, filter: &str) {
        let Some((group, inner)) = split_shared(filter) else {
            return;
        };
        let key = share_key(group, inner);
        let Some(w) = self.state.wild.as_deref_mut() else {
            return;
        };
        let before = w.shared_completed.len();
        w.shared_completed.retain(|k| k.0 != key);
        if w.shared_completed.len() != before {
            self.changed(Change::Bookkeeping);
        }
    }

    /// The client has (or will never get) a shared message.
    pub(super) fn shared_done(&mut self, group: u64, room: u64, seq: surepush_proto::Seq) {
        self.to_core
            .push_back(Frame::ShareAck(ShareAck { group, room, seq }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_filters_split_into_group_and_filter() {
        assert_eq!(split_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(split_shared("$share/g/#"), Some(("g", "#")));
        for no in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
            "a/b",
            "$SHARE/g/a",
        ] {
            assert_eq!(split_shared(no), None, "{no}");
        }
    }
}
