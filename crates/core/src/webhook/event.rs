//! What a webhook event says: its kinds and the JSON body a backend
//! receives (docs/WEBHOOKS.md is the contract; change both together).
//!
//! The body is built once, when the event is emitted, and stored in the
//! log as it is: a retry after a restart sends the same bytes (the
//! signature is computed per attempt, over the timestamp and these bytes).
//! 64-bit numbers are JSON strings (JavaScript cannot hold them as numbers).

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::MessageRecord;
use surepush_proto::{DeviceId, Seq, UserId};

/// The kinds of webhook events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookKind {
    /// A QoS 1/2 message was stored while none of the addressee's devices
    /// was online (the backend sends the APNs/FCM notification).
    MessageOffline,
    /// A push is still unacknowledged after `after_retransmits`
    /// retransmissions.
    MessageUnacked,
    /// A session was established (CONNACK sent).
    SessionConnected,
    /// An established session ended.
    SessionDisconnected,
}

impl WebhookKind {
    /// Every kind, in a fixed order.
    pub const ALL: [WebhookKind; 4] = [
        WebhookKind::MessageOffline,
        WebhookKind::MessageUnacked,
        WebhookKind::SessionConnected,
        WebhookKind::SessionDisconnected,
    ];

    /// The event's name on the wire (`"event"` field, config filters,
    /// metric label).
    pub fn name(self) -> &'static str {
        match self {
            WebhookKind::MessageOffline => "message.offline",
            WebhookKind::MessageUnacked => "message.unacked",
            WebhookKind::SessionConnected => "session.connected",
            WebhookKind::SessionDisconnected => "session.disconnected",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<WebhookKind> {
        WebhookKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// This kind's bit in a [`super::WebhookRules::events`] set.
    pub(super) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What happened, with the facts its body carries.
#[derive(Clone, Debug)]
pub(super) enum EventFacts<'a> {
    Offline {
        record: &'a MessageRecord,
        preview_bytes: usize,
    },
    Unacked {
        record: &'a MessageRecord,
        device: DeviceId,
        retransmits: u32,
    },
    Connected {
        user: UserId,
        device: DeviceId,
        transport: &'static str,
    },
    Disconnected {
        user: UserId,
        device: DeviceId,
        transport: &'static str,
        reason: &'a str,
    },
}

impl EventFacts<'_> {
    pub(super) fn kind(&self) -> WebhookKind {
        match self {
            EventFacts::Offline { .. } => WebhookKind::MessageOffline,
            EventFacts::Unacked { .. } => WebhookKind::MessageUnacked,
            EventFacts::Connected { .. } => WebhookKind::SessionConnected,
            EventFacts::Disconnected { .. } => WebhookKind::SessionDisconnected,
        }
    }

    /// The JSON body of event `id` emitted at `time_ms` (wall clock).
    pub(super) fn body(&self, id: &str, time_ms: u64) -> Bytes {
        let mut body = Map::new();
        body.insert("id".into(), json!(id));
        body.insert("event".into(), json!(self.kind().name()));
        body.insert("time_ms".into(), json!(time_ms.to_string()));
        let data = match self {
            EventFacts::Offline {
                record,
                preview_bytes,
            } => {
                let mut m = message_fields(record, record.inbox);
                let cut = record.payload.len().min(*preview_bytes);
                let preview = &record.payload[..cut];
                if *preview_bytes > 0 {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(preview);
                    m.insert("preview".into(), json!(encoded));
                }
                m.insert("payload_len".into(), json!(record.payload.len()));
                m
            }
            EventFacts::Unacked {
                record,
                device,
                retransmits,
            } => {
                let mut m = message_fields(record, record.inbox);
                m.insert("device".into(), json!(device.0.to_string()));
                m.insert("retransmits".into(), json!(retransmits));
                m
            }
            EventFacts::Connected {
                user,
                device,
                transport,
            } => session_fields(*user, *device, transport),
            EventFacts::Disconnected {
                user,
                device,
                transport,
                reason,
            } => {
                let mut m = session_fields(*user, *device, transport);
                m.insert("reason".into(), json!(reason));
                m
            }
        };
        body.extend(data);
        let text = serde_json::to_vec(&Value::Object(body)).expect("a JSON map always serialises");
        Bytes::from(text)
    }
}

fn message_fields(record: &MessageRecord, user: UserId) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("user".into(), json!(user.0.to_string()));
    m.insert("sender".into(), json!(record.from.0.to_string()));
    m.insert(
        "sender_device".into(),
        json!(record.from_device.0.to_string()),
    );
    m.insert("to".into(), json!(record.to.0.to_string()));
    if record.to.is_group() {
        m.insert("group".into(), json!(record.to.0.to_string()));
    }
    m.insert("seq".into(), json!(seq_text(record.seq)));
    m.insert(
        "client_msg_id".into(),
        json!(record.client_msg_id.to_string()),
    );
    m.insert("qos".into(), json!(record.qos as u8));
    m.insert("message_time_ms".into(), json!(record.ts_ms.to_string()));
    m
}

fn session_fields(user: UserId, device: DeviceId, transport: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("user".into(), json!(user.0.to_string()));
    m.insert("device".into(), json!(device.0.to_string()));
    m.insert("transport".into(), json!(transport));
    m
}

fn seq_text(seq: Seq) -> String {
    seq.0.to_string()
}
