//! SUBSCRIBE and UNSUBSCRIBE: inbox filters are kept in the session state,
//! room filters go to `rooms.rs`, exact free-form topics to both (their
//! permission checked first, `streams.rs`), wildcard filters over
//! free-form topics are kept and registered with the core
//! (`wildcards.rs`); a SUBACK leaves once every room it names has its
//! native SUBACK and every such filter is registered, in the order the
//! SUBSCRIBEs came.

use super::persist::Change;
use super::retained::wants_retained;
use super::streams::stream_room;
use super::topics::room_filter;
use super::wildcards::is_topic_wildcard;
use super::{Bridge, PendingSubAck};
use crate as mqtt;
use crate::{MqttString, Packet, Properties, QoS, ReasonCode, UnsubAck};
use surepush_proto::SubResult;
use surepush_token::AclAction;

impl Bridge {
    /// The highest QoS among the inbox subscriptions matching `topic`.
    pub(super) fn inbox_qos(&self, topic: &str) -> Option<QoS> {
        self.state
            .subs
            .iter()
            .filter(|s| mqtt::topic_matches(s.filter.as_str(), topic))
            .map(|s| s.options.qos)
            .max()
    }

    /// Room `n`'s native SUBACK came: its MQTT SUBACK may go.
    pub(super) fn room_suback_arrived(&mut self, n: u64, result: SubResult) {
        for pending in self.busy.subacks.iter_mut() {
            if let Some(i) = pending.rooms.iter().position(|&(r, _)| r == n) {
                let (_, index) = pending.rooms.swap_remove(i);
                pending.reasons[index] = match (result, self.level.is_v5()) {
                    (SubResult::Ok | SubResult::Gap, _) => pending.reasons[index],
                    (SubResult::Forbidden, true) => ReasonCode::NOT_AUTHORIZED,
                    // 3.1.1 has one failure code for everything (MQTT-3.9.3-2).
                    (SubResult::Forbidden | SubResult::Refused, _) => ReasonCode::UNSPECIFIED_ERROR,
                };
                break;
            }
        }
        self.flush_subacks();
        self.topic_stream_confirmed(n, result.subscribed());
        if result.subscribed() && self.busy.retained_wanted.remove(&n) {
            self.busy.retained_queries.push_back(n);
        } else if !result.subscribed() {
            // Not allowed to read it: not its retained message either.
            self.busy.retained_wanted.remove(&n);
        }
    }

    pub(super) fn on_subscribe(&mut self, s: mqtt::Subscribe) {
        let id = s.properties.subscription_identifiers.first().copied();
        let names: Vec<MqttString> = s.filters.iter().map(|f| f.filter.clone()).collect();
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut rooms = Vec::new();
        let mut filters = Vec::new();
        for sub in s.filters {
            let filter = sub.filter.as_str();
            if filter.starts_with(mqtt::SHARED_PREFIX) {
                // A share group (shared.rs): the SUBACK waits for the core.
                match self.subscribe_shared(&sub) {
                    Ok(()) => {
                        filters.push((filter.to_string(), reasons.len()));
                        reasons.push(ReasonCode(sub.options.qos as u8));
                        self.keep_filter(sub);
                    }
                    Err(code) => reasons.push(code),
                }
                continue;
            }
            let stream = stream_room(filter);
            if stream.is_some() && !self.topic_allowed(AclAction::Subscribe, filter) {
                reasons.push(if self.level.is_v5() {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            if let Some(n) = stream {
                // An exact free-form topic (streams.rs): a room by its
                // hashed name; the filter names it durably.
                let existed = self.state.subs.iter().any(|s| s.filter.as_str() == filter);
                if wants_retained(&sub.options, existed) {
                    self.want_topic_retained(n, filter);
                }
                let (qos, _) = self.subscribe_room(n, &sub.options);
                self.keep_filter(sub);
                if !rooms.iter().any(|&(r, _)| r == n) {
                    rooms.push((n, reasons.len()));
                }
                reasons.push(ReasonCode(qos as u8));
                continue;
            }
            if let Some(n) = room_filter(filter) {
                let (qos, existed) = self.subscribe_room(n, &sub.options);
                if wants_retained(&sub.options, existed) {
                    self.busy.retained_wanted.insert(n);
                }
                if !rooms.iter().any(|&(r, _)| r == n) {
                    rooms.push((n, reasons.len()));
                }
                reasons.push(ReasonCode(qos as u8));
                continue;
            }
            let qos = sub.options.qos;
            if is_topic_wildcard(filter) {
                // A wildcard over free-form topics (wildcards.rs).
                if !self.topic_filter_allowed(filter) {
                    reasons.push(if self.level.is_v5() {
                        ReasonCode::NOT_AUTHORIZED
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR
                    });
                    continue;
                }
                let existed = self.state.subs.iter().any(|s| s.filter.as_str() == filter);
                if wants_retained(&sub.options, existed) {
                    self.want_filter_retained(filter, existed);
                }
                let filter = filter.to_string();
                let now = self.now_ms;
                self.state
                    .wild_mut()
                    .filter_since
                    .entry(filter.clone())
                    .or_insert(now);
                self.register_filter(&filter);
                filters.push((filter, reasons.len()));
            }
            self.keep_filter(sub);
            reasons.push(ReasonCode(qos as u8));
        }
        self.remember_subscription_ids(&names, &reasons, id);
        self.changed(Change::Subscriptions);
        self.busy.subacks.push_back(PendingSubAck {
            packet_id: s.packet_id,
            reasons,
            rooms,
            filters,
        });
        // Answer at once when no room subscription is outstanding.
        self.flush_subacks();
    }

    pub(super) fn on_unsubscribe(&mut self, u: mqtt::Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in u.filters {
            let filter = f.as_str();
            self.forget_subscription_id(filter);
            let existed = if let Some(n) = stream_room(filter) {
                let had = self.state.subs.iter().any(|s| s.filter.as_str() == filter);
                if !self.drop_stream_filter(filter, n) {
                    self.unsubscribe_room(n);
                }
                had
            } else if let Some(n) = room_filter(filter) {
                self.unsubscribe_room(n)
            } else {
                let before = self.state.subs.len();
                self.state.subs.retain(|s| s.filter.as_str() != filter);
                let existed = self.state.subs.len() != before;
                if existed && is_topic_wildcard(filter) {
                    self.drop_topic_filter(filter);
                } else if existed && filter.starts_with(mqtt::SHARED_PREFIX) {
                    self.leave_shared(filter);
                }
                existed
            };
            reasons.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        self.changed(Change::Subscriptions);
        self.to_client.push_back(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reasons: if self.level.is_v5() {
                reasons
            } else {
                Vec::new()
            },
            properties: Properties::default(),
        }));
    }
}
