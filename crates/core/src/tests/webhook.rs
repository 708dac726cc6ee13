//! Webhook events from the core (issue #22 item 3): `message.offline` only
//! for an addressee with no device online (one per offline group member),
//! appended right behind the copy that caused it and handed out only once
//! durable; `message.unacked` after the configured retransmissions; the
//! session events with their reasons; the window, the backlog cap, and
//! recovery numbering new events above every id handed out before.

use std::collections::BTreeMap;

use super::*;
use crate::{StateKey, WebhookEvent, WebhookKind, WebhookOutcome, WebhookRules};

fn all_events() -> WebhookRules {
    WebhookKind::ALL
        .into_iter()
        .fold(WebhookRules::default(), WebhookRules::with)
}

fn harness(rules: WebhookRules) -> Harness {
    let mut h = Harness::new(CoreConfig::default());
    h.shard.set_webhook_rules(rules);
    h
}

fn json(event: &WebhookEvent) -> serde_json::Value {
    serde_json::from_slice(&event.body).expect("bodies are JSON")
}

impl Harness {
    /// The webhook events handed out so far (drained).
    fn webhooks(&mut self) -> Vec<WebhookEvent> {
        let mut events = Vec::new();
        self.out.retain(|a| match a {
            Action::Webhook(e) => {
                events.push(e.clone());
                false
            }
            _ => true,
        });
        events
    }

    fn webhooks_of(&mut self, kind: WebhookKind) -> Vec<serde_json::Value> {
        self.webhooks()
            .iter()
            .filter(|e| e.kind == kind)
            .map(json)
            .collect()
    }
}

#[test]
fn a_message_to_an_offline_user_emits_message_offline_right_behind_its_copy() {
    let mut h = harness(all_events().with(WebhookKind::MessageOffline));
    let sender = h.connect(1, 10);
    h.webhooks();
    h.frame(sender, send(77, 3, Qos::AtLeastOnce));
    let events = h.webhooks_of(WebhookKind::MessageOffline);
    assert_eq!(events.len(), 1, "one event for the offline addressee");
    let e = &events[0];
    assert_eq!(e["event"], "message.offline");
    assert_eq!(
        e["id"], "0-2",
        "shard 0, the second event (after session.connected)"
    );
    assert_eq!(e["user"], "3");
    assert_eq!(e["sender"], "1");
    assert_eq!(e["sender_device"], "10");
    assert_eq!(e["seq"], "1");
    assert_eq!(e["client_msg_id"], "77");
    assert_eq!(e["qos"], 1);
    assert!(e.get("preview").is_none(), "preview_bytes 0: no preview");
    // The event record follows the receiver's copy in the log.
    let at = h
        .log
        .iter()
        .position(|r| matches!(r, Record::Message(m) if m.inbox == UserId(3)))
        .expect("copy stored");
    assert!(
        matches!(
            &h.log[at + 1],
            Record::State {
                key: StateKey::WebhookEvent { id: 2 },
                value: Some(_)
            }
        ),
        "log: {:?}",
        h.log
    );
}

#[test]
fn a_message_to_an_online_user_or_at_qos_0_emits_no_offline_event() {
    let mut h = harness(all_events());
    let sender = h.connect(1, 10);
    let receiver = h.connect(2, 20);
    h.go_live(receiver, 0);
    h.webhooks();
    h.frame(sender, send(1, 2, Qos::AtLeastOnce));
    h.frame(sender, send(2, 3, Qos::AtMostOnce));
    assert_eq!(
        h.webhooks_of(WebhookKind::MessageOffline),
        Vec::<serde_json::Value>::new()
    );
    // A connected device that is still syncing counts as online too.
    h.frame(sender, send(3, 2, Qos::ExactlyOnce));
    assert!(h.webhooks_of(WebhookKind::MessageOffline).is_empty());
}

#[test]
fn a_group_send_emits_one_offline_event_per_offline_member_with_a_preview() {
    let mut rules = WebhookRules::default().with(WebhookKind::MessageOffline);
    rules.preview_bytes = 1;
    let mut h = harness(rules);
    let group = UserId(UserId::GROUP_BIT | 5);
    let ids = |v: &[u64]| v.iter().copied().map(UserId).collect();
    h.shard
        .handle_members_update(1, group, ids(&[1, 2, 3, 4]), vec![], h.now);
    h.run();
    let sender = h.connect(1, 10);
    let online = h.connect(2, 20);
    h.go_live(online, 0);
    h.frame(sender, send(9, group.0, Qos::AtLeastOnce));
    let mut users: Vec<String> = h
        .webhooks_of(WebhookKind::MessageOffline)
        .iter()
        .map(|e| {
            assert_eq!(e["group"], group.0.to_string());
            assert_eq!(e["sender"], "1");
            assert_eq!(e["client_msg_id"], "9");
            assert_eq!(e["preview"], "aA==", "base64 of the first byte of \"hi\"");
            assert_eq!(e["payload_len"], 2);
            e["user"].as_str().expect("user").to_string()
        })
        .collect();
    users.sort();
    assert_eq!(
        users,
        ["3", "4"],
        "members 3 and 4 are offline; 2 is online, 1 sent it"
    );
}

#[test]
fn session_events_name_the_user_device_transport_and_reason() {
    let mut h = harness(all_events());
    let first = h.connect(4, 40);
    let connected = h.webhooks_of(WebhookKind::SessionConnected);
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0]["user"], "4");
    assert_eq!(connected[0]["device"], "40");
    assert_eq!(connected[0]["transport"], "native");
    // The same device again: the first connection is replaced.
    let _second = h.connect(4, 40);
    let gone = h.webhooks_of(WebhookKind::SessionDisconnected);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["reason"], "replaced");
    assert_eq!(gone[0]["device"], "40");
    assert!(h.closed(first));
    // A connection that never had a session makes no event.
    let c = h.open();
    h.shard.handle_closed(c, h.now);
    h.run();
    assert!(h.webhooks_of(WebhookKind::SessionDisconnected).is_empty());
}

#[test]
fn message_unacked_fires_once_after_the_configured_retransmissions() {
    let mut rules = WebhookRules::default().with(WebhookKind::MessageUnacked);
    rules.after_retransmits = 2;
    let mut h = harness(rules);
    let receiver = h.connect(2, 20);
    h.go_live(receiver, 0);
    let sender = h.connect(1, 10);
    h.frame(sender, send(5, 2, Qos::AtLeastOnce));
    let mut seen = Vec::new();
    for _ in 0..20 {
        h.advance(5_000);
        seen.extend(h.webhooks_of(WebhookKind::MessageUnacked));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["user"], "2");
    assert_eq!(seen[0]["device"], "20");
    assert_eq!(seen[0]["seq"], "1");
    assert_eq!(seen[0]["sender"], "1");
    assert_eq!(seen[0]["retransmits"], 2);
}

#[test]
fn the_window_bounds_events_handed_out_and_a_report_opens_it() {
    let mut rules = all_events();
    rules.window = 2;
    let mut h = harness(rules);
    for device in 1..=4 {
        h.connect(1, device);
    }
    let handed = h.webhooks();
    assert_eq!(handed.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]);
    h.shard
        .handle_webhook_done(1, WebhookOutcome::Delivered, h.now);
    h.run();
    assert_eq!(h.webhooks().iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
    assert_eq!(h.shard.webhooks_pending(), 3);
    // The flush writes the cursor, then the tombstone.
    h.advance(1_000);
    let tail: Vec<&Record> = h.log.iter().rev().take(2).collect();
    assert_eq!(
        tail[0],
        &Record::State {
            key: StateKey::WebhookEvent { id: 1 },
            value: None
        }
    );
    assert_eq!(
        tail[1],
        &Record::State {
            key: StateKey::WebhookCursor,
            value: Some(Bytes::copy_from_slice(&1u64.to_le_bytes()))
        }
    );
}

#[test]
fn a_full_backlog_drops_the_oldest_event_and_counts_it() {
    let mut rules = all_events();
    rules.window = 1;
    rules.max_pending = 2;
    let mut h = harness(rules);
    for device in 1..=3 {
        h.connect(1, device);
    }
    assert_eq!(h.shard.stats().webhooks_dropped, 1);
    assert_eq!(h.shard.webhooks_pending(), 2);
    // Event 1, handed out, was the oldest: it holds its place in the window
    // until the dispatcher reports it (the dispatcher holds it), then the
    // next goes out.
    let handed = h.webhooks();
    assert_eq!(handed.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
    h.shard
        .handle_webhook_done(1, WebhookOutcome::Delivered, h.now);
    h.run();
    assert_eq!(h.webhooks().iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
    assert_eq!(h.shard.webhooks_pending(), 2);
}

/// Recovery: undelivered events come back in id order and new events are
/// numbered above the cursor even when every event below it was delivered
/// (ids are the backend's idempotency keys; a reused id would be dropped as
/// a duplicate).
#[test]
fn recovery_hands_out_stored_events_and_numbers_new_ones_above_the_cursor() {
    let mut h = harness(all_events());
    for device in 1..=3 {
        h.connect(1, device);
    }
    let handed = h.webhooks();
    h.shard
        .handle_webhook_done(3, WebhookOutcome::Delivered, h.now);
    h.advance(1_000);
    // Fold the log the way recovery does.
    let mut recovered = RecoveredState::default();
    for r in &h.log {
        recovered.apply(r, &DedupConfig::default());
    }
    let mut expect_keyed = BTreeMap::new();
    for e in &handed[..2] {
        expect_keyed.insert(StateKey::WebhookEvent { id: e.id }, e.body.clone());
    }
    expect_keyed.insert(
        StateKey::WebhookCursor,
        Bytes::copy_from_slice(&3u64.to_le_bytes()),
    );
    assert_eq!(recovered.keyed, expect_keyed);
    let params = ShardParams {
        id: crate::ShardId(0),
        shards: 1,
        wall_ms_at_zero: 1_700_000_000_000,
    };
    let mut shard = Shard::new(
        params,
        CoreConfig::default(),
        TokenVerifier::new(SECRET),
        recovered,
    );
    shard.set_webhook_rules(all_events());
    shard.hand_out_webhooks();
    let mut again = Vec::new();
    while let Some(a) = shard.poll_action() {
        if let Action::Webhook(e) = a {
            again.push(e);
        }
    }
    assert_eq!(again, handed[..2].to_vec(), "same ids, same bodies");
    assert_eq!(
        shard.state(&StateKey::WebhookCursor),
        None,
        "not the layers' state"
    );
    let c = shard.handle_open(0);
    let token = Harness::token(1, 9, u64::MAX / 2);
    let connect = Frame::Connect(Connect {
        device: DeviceId(9),
        last_seq: None,
        keepalive_ms: 0,
        token,
    });
    shard.handle_frame(c, connect, 0);
    let mut ids = Vec::new();
    while let Some(a) = shard.poll_action() {
        if let Action::Append {
            record:
                Record::State {
                    key: StateKey::WebhookEvent { id },
                    ..
                },
            ..
        } = a
        {
            ids.push(id);
        }
    }
    assert_eq!(ids, [4], "above the cursor (3), not above the pending (2)");
}
