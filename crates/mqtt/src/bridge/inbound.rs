//! Client → core: PUBLISH (topic aliases, retained changes, QoS 2
//! inbound state) becomes a native SEND, and PUBREL a REL; the core's
//! SENDACK becomes the client's PUBACK or PUBREC, so those leave only once
//! the message is durable.

use bytes::Bytes;

use super::aliases::AliasError;
use super::outbound::retain_mark;
use super::persist::Change;
use super::retained::{room_change, topic_change, TopicRetained};
use super::state::{Inbound, Retained};
use super::streams::stream_room;
use super::topics::Target;
use super::{native_qos, Bridge, PendingPub};
use crate::{Packet, PacketId, Properties, PubReply, Publish, QoS, ReasonCode};
use surepush_proto as proto;
use surepush_proto::{Frame, SendAck, SendResult, Seq, ROOM_BIT};

impl Bridge {
    fn next_msg_id(&mut self) -> u64 {
        let id = self.state.next_msg_id;
        self.state.next_msg_id += 1;
        id
    }

    pub(super) fn on_publish(&mut self, mut p: Publish) {
        let aliased = p.properties.topic_alias.is_some();
        let resolved = match &mut self.aliases {
            Some(a) => a.resolve(&mut p),
            None if aliased => self.aliases.insert(Box::default()).resolve(&mut p),
            None => Ok(()),
        };
        match resolved {
            Ok(()) => {}
            Err(AliasError::AboveMaximum) => {
                return self.close_session(
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias above the maximum",
                )
            }
            Err(AliasError::NotSet) => return self.protocol_error("topic alias not set"),
        }
        // A free-form topic is a topic stream (streams.rs); its retained
        // message is made of the PUBLISH as it came (retained.rs).
        let topic_retain = (p.retain && stream_room(p.topic.as_str()).is_some()).then(|| {
            let msg = (!p.payload.is_empty()).then(|| TopicRetained {
                from: self.user,
                qos: p.qos,
                ts_ms: self.now_ms,
                attrs: self.message_attrs(&p.properties, false),
                payload: p.payload.clone(),
            });
            let ack = p.packet_id.filter(|_| p.qos == QoS::AtLeastOnce);
            topic_change(p.topic.as_str(), msg, ack.map(PacketId::get))
        });
        // Cleared for a stream by `stream_publish`, kept for the message.
        let published_retain = p.retain;
        let stream = self.stream_publish(&mut p);
        let target = match stream {
            Some(s) => Some(Target::Room(s.room)),
            None => Target::parse(p.topic.as_str()),
        };
        let Some(target) = target else {
            return self.refuse_topic(&p);
        };
        if let Some(pid) = p.packet_id {
            if self.level.is_v5() && !self.count_unanswered(pid) {
                return self.close_session(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "more unacknowledged QoS 1/2 PUBLISHes than Receive Maximum",
                );
            }
        }
        let to = target.wire_id();
        let qos = native_qos(p.qos);
        let retain = match target {
            Target::Room(n) if p.retain => {
                let msg = (!p.payload.is_empty()).then(|| Retained {
                    from: self.user,
                    qos: p.qos,
                    payload: p.payload.clone(),
                });
                Some(room_change(proto::UserId(n | ROOM_BIT), msg.as_ref()))
            }
            _ => topic_retain,
        };
        let pending = |packet_id| PendingPub {
            packet_id,
            qos: p.qos,
            retain: retain.clone(),
        };
        // A QoS 0 retained PUBLISH changes the retained message only once
        // the room has accepted it (its permissions): the core confirms it.
        let confirm = p.qos == QoS::AtMostOnce && retain.is_some();
        let id = match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                let id = self.next_msg_id();
                if confirm {
                    self.busy.sends.insert(id, pending(None));
                }
                id
            }
            (QoS::AtLeastOnce, Some(pid)) => {
                let id = self.next_msg_id();
                self.busy.sends.insert(id, pending(Some(pid)));
                id
            }
            (QoS::ExactlyOnce, Some(pid)) => match self.state.inbound.get(&pid.get()).copied() {
                Some(i) if i.stored => {
                    // A resend after PUBREC was lost: stored already. Its
                    // retained-message change is made again (idempotent),
                    // in case writing it failed the first time.
                    if let Some(change) = retain {
                        self.busy.retains.push_back(change);
                    }
                    self.to_client
                        .push_back(Packet::PubRec(PubReply::success(pid)));
                    return;
                }
                Some(i) if self.busy.sends.contains_key(&i.client_msg_id) => return,
                Some(i) => {
                    // Sent on an earlier connection, outcome unknown: the
                    // same id lets the core recognise a stored copy.
                    self.busy.sends.insert(i.client_msg_id, pending(Some(pid)));
                    i.client_msg_id
                }
                None => {
                    let id = self.next_msg_id();
                    self.state.inbound.insert(
                        pid.get(),
                        Inbound {
                            client_msg_id: id,
                            to,
                            stored: false,
                        },
                    );
                    self.changed(Change::InboundAccepted);
                    self.busy.sends.insert(id, pending(Some(pid)));
                    id
                }
            },
        };
        if stream.is_some_and(|s| !s.allowed) {
            // Refused by name, here (streams.rs): answered as the core
            // answers a refused room publish.
            return self.on_sendack(SendAck {
                client_msg_id: id,
                seq: Seq::ZERO,
                own_seq: Seq::ZERO,
                result: SendResult::Forbidden,
            });
        }
        self.to_core.push_back(Frame::Send(proto::Send {
            client_msg_id: id,
            to,
            qos,
            confirm,
            attrs: self.message_attrs(&p.properties, published_retain),
            payload: p.payload,
        }));
    }

    /// The message attributes stored with a PUBLISH: its MQTT 5 message
    /// properties (docs/MQTT.md 2.4; none from v3.1.1, which has none),
    /// and last the [`RETAIN_MARK`] if it was published with RETAIN 1, for
    /// subscriptions with Retain As Published (`outbound.rs`).
    pub(super) fn message_attrs(&self, properties: &Properties, retain: bool) -> Bytes {
        if !self.level.is_v5() && !retain {
            return Bytes::new();
        }
        let mut m = if self.level.is_v5() {
            properties.message_properties()
        } else {
            Properties::default()
        };
        if retain {
            m.user_properties.push(retain_mark());
        }
        m.encode_message_block().unwrap_or_else(|e| {
            // Decoded from the wire, so within the limits it checks (the
            // mark adds 21 bytes to a block of at most a packet's size).
            tracing::debug!(error = %e, "message properties not stored");
            Bytes::new()
        })
    }

    /// Counts a v5 QoS 1/2 PUBLISH against the Receive Maximum the CONNACK
    /// advertised until it is answered (`Bridge::unanswered`); `false`: one
    /// too many. A resend of an id already counted counts once.
    fn count_unanswered(&mut self, pid: PacketId) -> bool {
        let id = pid.get();
        if self.busy.unanswered.contains(&id) {
            return true;
        }
        if self.busy.unanswered.len() >= usize::from(self.params.receive_max) {
            return false;
        }
        self.busy.unanswered.insert(id);
        true
    }

    /// A PUBLISH to a valid topic name this server does not serve: stored
    /// nowhere. v5 says why (PUBACK/PUBREC `0x90`; QoS 0 has no answer, so
    /// DISCONNECT `0x90`). v3.1.1 cannot say it and need not close
    /// (MQTT-3.3.5-2: a positive acknowledgement or a close), so the
    /// message is acknowledged as its QoS requires and dropped (issue #21
    /// item 4); its PUBREL then finds no id and still gets PUBCOMP.
    fn refuse_topic(&mut self, p: &Publish) {
        let v5 = self.level.is_v5();
        if v5 && p.packet_id.is_none() {
            let why = "topic must be user/{id}, group/{n}, room/{n} or not start with $";
            return self.close_session(ReasonCode::TOPIC_NAME_INVALID, why);
        }
        tracing::debug!(
            user = self.user.0,
            "MQTT publish to an unserved topic dropped"
        );
        let Some(pid) = p.packet_id else { return };
        let reply = PubReply {
            packet_id: pid,
            reason: if v5 {
                ReasonCode::TOPIC_NAME_INVALID
            } else {
                ReasonCode::SUCCESS
            },
            properties: Properties::default(),
        };
        self.to_client.push_back(if p.qos == QoS::ExactlyOnce {
            Packet::PubRec(reply)
        } else {
            Packet::PubAck(reply)
        });
    }

    pub(super) fn on_sendack(&mut self, a: SendAck) {
        let Some(pending) = self.busy.sends.remove(&a.client_msg_id) else {
            return;
        };
        let ok = matches!(a.result, SendResult::Stored | SendResult::Duplicate);
        if ok {
            if let Some(change) = pending.retain {
                self.busy.retains.push_back(change);
            }
        }
        let (Some(pid), qos) = (pending.packet_id, pending.qos) else {
            return;
        };
        let reason = match a.result {
            SendResult::Stored | SendResult::Duplicate => ReasonCode::SUCCESS,
            SendResult::Forbidden => ReasonCode::NOT_AUTHORIZED,
            _ => ReasonCode::UNSPECIFIED_ERROR,
        };
        if qos == QoS::ExactlyOnce && a.result == SendResult::StorageUnavailable {
            // Perhaps stored in part (one copy durable, another failed):
            // the packet id keeps its native id, and the client's resend
            // with it on its next connection completes the message once.
            // A refusal would free the id and make the retry a second
            // message (found by the simulator: a QoS 2 message stored
            // twice in the sender's own inbox).
            self.close_session(ReasonCode::UNSPECIFIED_ERROR, "not stored");
            return;
        }
        if qos == QoS::ExactlyOnce {
            if ok {
                if let Some(i) = self.state.inbound.get_mut(&pid.get()) {
                    i.stored = true;
                    self.changed(Change::InboundStored);
                }
            } else if self.state.inbound.remove(&pid.get()).is_some() {
                self.changed(Change::InboundDropped);
            }
        }
        if !ok && !self.level.is_v5() {
            if a.result == SendResult::Forbidden {
                // v3.1.1 cannot say "refused": acknowledge (MQTT-3.3.5-2).
                // The client's doing, per publish: not the operator's log.
                tracing::debug!(user = self.user.0, "MQTT publish refused (forbidden)");
            } else {
                // Nothing stored and no way to say so: close, the client
                // resends on its next connection.
                self.close_session(ReasonCode::UNSPECIFIED_ERROR, "not stored");
                return;
            }
        }
        if qos == QoS::AtLeastOnce || reason.is_error() {
            // Answered: PUBACK, or a PUBREC refusing the message.
            self.busy.unanswered.remove(&pid.get());
        }
        let reply = PubReply {
            packet_id: pid,
            reason: if self.level.is_v5() {
                reason
            } else {
                ReasonCode::SUCCESS
            },
            properties: Properties::default(),
        };
        self.to_client.push_back(if qos == QoS::ExactlyOnce {
            Packet::PubRec(reply)
        } else {
            Packet::PubAck(reply)
        });
    }

    pub(super) fn on_pubrel(&mut self, pid: PacketId) {
        match self.state.inbound.get(&pid.get()).copied() {
            // The client releases only what it got PUBREC for, which left
            // after the SENDACK: stored, even if the state written before a
            // crash did not say so yet (unless its SEND is still under way
            // on this connection: then PUBREL came before PUBREC).
            Some(i) if !self.busy.sends.contains_key(&i.client_msg_id) => {
                self.busy.releases.insert(i.client_msg_id, pid);
                self.to_core.push_back(Frame::Rel {
                    client_msg_id: i.client_msg_id,
                    to: i.to,
                });
            }
            _ => {
                self.busy.unanswered.remove(&pid.get());
                let reason = if self.level.is_v5() {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                } else {
                    ReasonCode::SUCCESS
                };
                self.to_client.push_back(Packet::PubComp(PubReply {
                    packet_id: pid,
                    reason,
                    properties: Properties::default(),
                }));
            }
        }
    }
}
