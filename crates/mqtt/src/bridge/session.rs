//! The session's life on this connection: the core's CONNACK (and where
//! a resumed session continues), refusal, takeover, the server or the
//! client closing it, and what is kept and published when it ends.
//!
//! A session refused before it opened answers with a CONNACK (a DISCONNECT
//! may not precede one, MQTT-3.2.0-1), leaves no will and leaves its stored
//! state as it was.

use bytes::Bytes;

use super::aliases::TOPIC_ALIAS_MAX;
use super::persist::{Change, StateWrite};
use super::state::SessionState;
use super::topics::Target;
use super::will::WillMessage;
use super::{Bridge, Delivery, Mode, Outbound, Stage};
use crate as mqtt;
use crate::{
    ConnAck, MqttString, Packet, PacketId, Properties, ProtocolLevel, PubReply, ReasonCode,
};
use surepush_proto::{ConnAck as NativeConnAck, ErrorCode, Frame, Seq};

/// How a connection's session ends, for the server.
#[derive(Debug)]
pub struct Finished {
    /// What becomes of the session state.
    pub keep: Keep,
    /// The log write that records `keep` (append it at once; nobody waits
    /// for it), if the log must change.
    pub write: Option<StateWrite>,
    /// The will to publish (the connection ended without DISCONNECT).
    pub will: Option<WillMessage>,
}

/// What becomes of a session when its connection ends.
#[derive(Debug)]
pub enum Keep {
    /// A persistent session: keep this state for the next connection
    /// (boxed: the other variants are empty).
    Save(Box<SessionState>),
    /// A clean session: forget any stored state.
    Forget,
    /// Another connection took the session over: leave its state alone.
    Nothing,
}

/// Checks a CONNECT before the session starts; `Some(code)` refuses it with
/// a CONNACK carrying `code` (already in the right protocol's numbering).
pub fn refuse_connect(c: &mqtt::Connect) -> Option<ReasonCode> {
    let v5 = c.protocol_level.is_v5();
    if v5 && c.properties.authentication_method.is_some() {
        // Enhanced authentication is not supported (MQTT-4.12.0-1).
        return Some(ReasonCode::BAD_AUTHENTICATION_METHOD);
    }
    if !v5 && c.client_id.is_empty() && !c.clean_start {
        return Some(ReasonCode(0x02)); // v3.1.1: identifier rejected
    }
    if let Some(w) = &c.will {
        let topic = w.topic.as_str();
        if Target::parse(topic).is_none() && super::streams::stream_room(topic).is_none() {
            return Some(if v5 {
                ReasonCode::TOPIC_NAME_INVALID
            } else {
                ReasonCode(0x05) // v3.1.1: not authorized
            });
        }
    }
    None
}

/// The CONNACK code for a refused token.
pub fn bad_credentials(level: ProtocolLevel) -> ReasonCode {
    if level.is_v5() {
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    } else {
        ReasonCode(0x04)
    }
}

impl Bridge {
    /// The server drops the connection because the client does not read
    /// its output (issue #25): whatever is queued for the client is
    /// withdrawn, and a v5 client gets DISCONNECT 0x97 Quota exceeded (a
    /// 3.1.1 connection is just closed). The session itself is kept as for
    /// any connection that ends without DISCONNECT.
    pub fn drop_for_quota(&mut self) {
        self.to_client.retain(|p| matches!(p, Packet::ConnAck(_)));
        self.server_disconnect(
            ReasonCode::QUOTA_EXCEEDED,
            "the client does not read: output buffer full",
        );
    }

    /// Another connection of the same (user, device) takes over: this one
    /// ends (its will is published: it did not DISCONNECT, MQTT-3.1.2-8)
    /// and keeps nothing; its state moves on if the session was persistent
    /// (a clean session ends with its connection, MQTT-3.1.2-6).
    /// `resumes`: the new connection continues the session (no clean
    /// start); then a will with a delay is never published, a new
    /// connection having come within its delay (MQTT-3.1.3-9).
    pub fn take_over(&mut self, resumes: bool) -> Option<SessionState> {
        self.taken_over = true;
        if resumes && self.will_delay_s() > 0 {
            self.will = None;
        }
        let state = self.persistent.then(|| self.state.clone());
        if !resumes {
            // The session ends here (the new connection starts clean): a
            // will goes at once, whatever its delay.
            self.persistent = false;
        }
        state
    }

    /// How long the will waits after the connection ends (see
    /// [`WillMessage::delay_s`]).
    fn will_delay_s(&self) -> u32 {
        let asked = self
            .will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .unwrap_or(0);
        let session = if self.persistent {
            self.state.expiry_s
        } else {
            0
        };
        asked.min(session)
    }

    /// CONNACK with a failure code (already in the connection's protocol's
    /// numbering for v5; mapped for 3.1.1), then close.
    pub(super) fn refuse_session(&mut self, reason: ReasonCode) {
        // The session never opened: no will, and its stored state (if
        // any) is left as it was.
        self.graceful = true;
        self.taken_over = true;
        let code = if self.level.is_v5() {
            reason
        } else if reason == ReasonCode::NOT_AUTHORIZED {
            ReasonCode(0x05)
        } else {
            ReasonCode(0x03) // server unavailable
        };
        self.closed = true;
        self.to_client.push_back(Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: Properties::default(),
        }));
    }

    /// The connection is over (at `now_ms`, ms since the epoch): what to
    /// keep and what to publish.
    pub fn finish(mut self, now_ms: u64) -> Finished {
        self.state.ended_ms = now_ms.max(1);
        let delay_s = self.will_delay_s();
        let will = if self.graceful {
            None
        } else {
            self.will
                .take()
                .and_then(|w| self.will_message(&w, delay_s))
        };
        let key = surepush_proto::StateKey::MqttSession {
            user: self.user,
            device: self.device,
        };
        let (keep, write) = if self.taken_over {
            (Keep::Nothing, None)
        } else if self.persistent {
            let value = Some(Bytes::from(self.state.encode()));
            let write = StateWrite {
                key,
                value,
                report: None,
            };
            (Keep::Save(Box::new(self.state)), Some(write))
        } else {
            // A session that was persistent earlier on this connection (or
            // was stored before it) may have a record to delete.
            let write = self.gate.logged.then_some(StateWrite {
                key,
                value: None,
                report: None,
            });
            (Keep::Forget, write)
        };
        Finished { keep, write, will }
    }

    pub(super) fn on_connack(&mut self, a: NativeConnAck) {
        let mut props = Properties::default();
        if self.level.is_v5() {
            props.receive_maximum = std::num::NonZeroU16::new(self.params.receive_max);
            props.maximum_packet_size = std::num::NonZeroU32::new(self.params.max_packet);
            props.retain_available = Some(true);
            props.shared_subscription_available = Some(true);
            props.subscription_identifier_available = Some(true);
            props.wildcard_subscription_available = Some(true);
            props.topic_alias_maximum = Some(TOPIC_ALIAS_MAX);
            let keep_alive = match a.keepalive_ms {
                surepush_proto::KEEPALIVE_OFF => 0,
                ms => (ms / 1000).min(u32::from(u16::MAX)) as u16,
            };
            if keep_alive != self.client_keep_alive {
                props.server_keep_alive = Some(keep_alive);
            }
            if self.client_id_assigned {
                let id = format!("surepush-{}-{}", self.user.0, self.device.0);
                props.assigned_client_identifier = Some(MqttString::from(id.as_str()));
            }
        }
        self.to_client.push_back(Packet::ConnAck(ConnAck {
            session_present: self.session_present,
            code: ReasonCode::SUCCESS,
            properties: props,
        }));
        // A resumed session continues from what it acknowledged (its own
        // record, or the device's cursor, whichever is further); a new or
        // clean one from the inbox head (older messages were not for it).
        let from = if self.session_present {
            let from = a.cursor.unwrap_or(Seq::ZERO).max(self.state.inbox_start);
            from.max(self.state.inbox_acked).min(a.head)
        } else {
            self.state.inbox_start = a.head;
            self.state.inbox_acked = a.head;
            a.head
        };
        if self.persistent {
            self.changed(Change::Started);
        } else if self.gate.logged {
            // A stored session that ends with this connection (or a clean
            // start): deleted before the CONNACK, so a crash cannot bring
            // it back.
            self.changed(Change::Discarded);
        }
        self.seen = from;
        // Ids of messages acknowledged after the state was last written
        // are free again (the position is past them).
        self.state.out_pids.retain(|&seq, _| seq > from.0);
        self.state.done.retain(|&seq| seq > from.0);
        for &pid in &self.state.rel_pending {
            let pid = PacketId::new(pid).expect("stored ids are non-zero");
            self.busy.inflight.insert(
                pid.get(),
                Outbound {
                    what: Delivery::Retained,
                    stage: Stage::Comp,
                },
            );
            self.to_client
                .push_back(Packet::PubRel(PubReply::success(pid)));
        }
        self.started_ms = self.now_ms;
        self.resubscribe_rooms();
        self.register_filters();
        self.register_shares();
        // The first SYNC acknowledges `from`: the session holds it already.
        let limit = self
            .window
            .next_page(0, 0)
            .expect("an empty window has room");
        self.ask_page(from, false, limit);
        // Packets the client sent before this CONNACK, in order.
        while let Some(p) = self.busy.made_mut().and_then(|b| b.early.pop_front()) {
            self.on_packet(p);
        }
    }

    /// The client broke the protocol: DISCONNECT (v5) and close.
    pub(super) fn protocol_error(&mut self, why: &str) {
        self.close_session(ReasonCode::PROTOCOL_ERROR, why);
    }

    /// Ends the session from this side: DISCONNECT (v5), then the core
    /// closes the connection.
    pub(super) fn close_session(&mut self, reason: ReasonCode, why: &str) {
        tracing::debug!(
            user = self.user.0,
            device = self.device.0,
            why,
            "closing an MQTT session"
        );
        self.server_disconnect(reason, why);
        self.to_core
            .push_back(Frame::disconnect(ErrorCode::Normal, ""));
    }

    /// Tells a v5 client why the server closes (v3.1.1 has no such packet).
    pub(super) fn server_disconnect(&mut self, reason: ReasonCode, why: &str) {
        if self.closed {
            return;
        }
        if self.mode == Mode::Connecting {
            // No CONNACK yet: the refusal is one (MQTT-3.2.0-1).
            return self.refuse_session(reason);
        }
        self.closed = true;
        if self.level.is_v5() && reason.valid_in(mqtt::PacketType::Disconnect, self.level) {
            let mut properties = Properties::default();
            if !why.is_empty() {
                properties.reason_string = Some(MqttString::from(why));
            }
            self.to_client
                .push_back(Packet::Disconnect(mqtt::Disconnect { reason, properties }));
        }
    }
}
