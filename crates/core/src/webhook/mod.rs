//! Webhook events for the backend: emitted by the core, kept in the log
//! until delivered, handed to the driver's HTTP dispatcher a window at a
//! time (docs/WEBHOOKS.md).
//!
//! Owns: the shard's events not delivered yet (`pending`), their numbering
//! and the cursor of the highest number done.
//!
//! Rules:
//! - an event is a [`Record::State`] under [`StateKey::WebhookEvent`],
//!   appended when it happens, right behind the record that caused it (a
//!   message copy: the same group commit); it is handed out
//!   ([`Action::Webhook`]) only once durable, so a crash never drops an
//!   event that was sent, and never sends one the log lost;
//! - at most `window` events are handed out and not reported back
//!   ([`Shard::handle_webhook_done`]); the rest wait here, in id order;
//! - an event reported done (delivered, or given up by the dispatcher) is
//!   forgotten and, with the next bookkeeping flush, gets a tombstone;
//!   the flush writes the cursor (the highest number done) *before* the
//!   tombstones, so whatever survives a crash, recovery numbers new events
//!   above every number a backend has seen (the id is the idempotency key);
//! - at most `max_pending` events are kept: beyond, the oldest is dropped
//!   (tombstoned, counted in [`crate::CoreStats::webhooks_dropped`], logged)
//!   so a backend down for long costs old notifications, never memory or
//!   the newest ones;
//! - a tombstone lost in a crash costs a repeat of a delivered event with
//!   the same id (at least once), never a loss.

mod event;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use event::EventFacts;
pub use event::WebhookKind;

use super::action::{Action, ConnId};
use super::shard::{AppendPurpose, Shard};
use crate::{MessageRecord, Record, StateKey};
use surepush_proto::{DeviceId, UserId};

/// Which events a shard emits and how many it keeps (the core's half of
/// the server's `[webhooks]` config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookRules {
    /// The kinds emitted, one bit each ([`WebhookRules::with`]); 0: none,
    /// webhooks off (the default).
    events: u8,
    /// Payload bytes copied into a `message.offline` event (base64); 0: none.
    pub preview_bytes: u32,
    /// `message.unacked` fires when a push is still unacknowledged after
    /// this many retransmissions (at most `core.max_retries`: the
    /// connection is closed then).
    pub after_retransmits: u32,
    /// Events kept per shard before the oldest is dropped.
    pub max_pending: u32,
    /// Events handed to the dispatcher and not reported back, per shard.
    pub window: u32,
}

impl Default for WebhookRules {
    fn default() -> Self {
        WebhookRules {
            events: 0,
            preview_bytes: 0,
            after_retransmits: 5,
            max_pending: 100_000,
            window: 64,
        }
    }
}

impl WebhookRules {
    /// These rules with `kind` emitted too.
    pub fn with(mut self, kind: WebhookKind) -> WebhookRules {
        self.events |= kind.bit();
        self
    }

    /// Whether `kind` is emitted.
    pub fn emits(&self, kind: WebhookKind) -> bool {
        self.events & kind.bit() != 0
    }
}

/// An event for the dispatcher ([`Action::Webhook`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The shard's event number; with the shard, the event's idempotency
    /// key (`X-Surepush-Event-Id: <shard>-<id>`, also the body's `"id"`).
    pub id: u64,
    /// What happened.
    pub kind: WebhookKind,
    /// The JSON body, as stored.
    pub body: Bytes,
}

/// How the dispatcher finished with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// Retried until the give-up age; dropped.
    GaveUp,
}

/// One event kept until done.
#[derive(Debug)]
struct Pending {
    kind: WebhookKind,
    body: Bytes,
    durable: bool,
}

/// The shard's webhook events (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Webhooks {
    rules: WebhookRules,
    pending: BTreeMap<u64, Pending>,
    /// Durable, not handed out, in id order.
    ready: VecDeque<u64>,
    handed: BTreeSet<u64>,
    next_id: u64,
    /// The highest id done, and whether the log has it yet.
    done_up_to: u64,
    cursor_dirty: bool,
    /// Done ids awaiting their tombstone.
    tombstones: Vec<u64>,
}

impl Webhooks {
    /// The events recovery found (taken out of `keyed`: they are not the
    /// layers' state).
    pub(super) fn recovered(keyed: &mut BTreeMap<StateKey, Bytes>) -> Webhooks {
        let mut w = Webhooks::default();
        if let Some(cursor) = keyed.remove(&StateKey::WebhookCursor) {
            w.done_up_to = decode_cursor(&cursor);
        }
        let ids: Vec<u64> = keyed
            .range(StateKey::WebhookEvent { id: 0 }..=StateKey::WebhookEvent { id: u64::MAX })
            .map(|(k, _)| match k {
                StateKey::WebhookEvent { id } => *id,
                _ => unreachable!("the range holds event keys only"),
            })
            .collect();
        for id in ids {
            let body = keyed
                .remove(&StateKey::WebhookEvent { id })
                .expect("listed above");
            let Some(kind) = kind_of(&body) else {
                tracing::warn!(id, "dropping a stored webhook event without a known kind");
                w.tombstones.push(id);
                continue;
            };
            w.pending.insert(
                id,
                Pending {
                    kind,
                    body,
                    durable: true,
                },
            );
            w.ready.push_back(id);
        }
        let highest = w.pending.keys().next_back().copied().unwrap_or(0);
        w.next_id = highest.max(w.done_up_to) + 1;
        w
    }

    /// Events kept (gauge).
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The cursor's value: the highest id done, little-endian.
fn encode_cursor(id: u64) -> Bytes {
    Bytes::copy_from_slice(&id.to_le_bytes())
}

fn decode_cursor(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The kind named by a stored body's `"event"` field.
fn kind_of(body: &[u8]) -> Option<WebhookKind> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    WebhookKind::from_name(v.get("event")?.as_str()?)
}

impl Shard {
    /// Sets which webhook events this shard emits (call before the first
    /// input; events recovered from the log are handed out either way).
    pub fn set_webhook_rules(&mut self, rules: WebhookRules) {
        self.webhooks.rules = rules;
        self.count_pending();
    }

    /// Webhook events kept, delivered or not (gauge).
    pub fn webhooks_pending(&self) -> usize {
        self.webhooks.pending()
    }

    /// The dispatcher finished with event `id` (see [`WebhookOutcome`]).
    pub fn handle_webhook_done(&mut self, id: u64, outcome: WebhookOutcome, now: u64) {
        self.set_now(now);
        if !self.webhooks.handed.remove(&id) {
            return; // reported twice
        }
        if outcome == WebhookOutcome::GaveUp {
            self.stats.webhooks_given_up += 1;
        }
        // A dropped event is done already (and stayed in the window until
        // now: the dispatcher held it).
        if self.webhooks.pending.remove(&id).is_some() {
            self.mark_done(id);
        }
        self.hand_out_webhooks();
    }

    /// Hands ready events to the driver up to the window. Call after
    /// recovery (the driver's first drive) and whenever the window opens.
    pub fn hand_out_webhooks(&mut self) {
        let window = self.webhooks.rules.window.max(1) as usize;
        while self.webhooks.handed.len() < window {
            let Some(id) = self.webhooks.ready.pop_front() else {
                return;
            };
            let Some(p) = self.webhooks.pending.get(&id) else {
                continue; // dropped meanwhile
            };
            let event = WebhookEvent {
                id,
                kind: p.kind,
                body: p.body.clone(),
            };
            self.webhooks.handed.insert(id);
            self.actions.push_back(Action::Webhook(event));
        }
    }

    /// Emits an event if the rules ask for its kind.
    fn emit_webhook(&mut self, facts: EventFacts<'_>) {
        let kind = facts.kind();
        if !self.webhooks.rules.emits(kind) || self.storage.failed() {
            return;
        }
        if self.webhooks.pending.len() >= self.webhooks.rules.max_pending.max(1) as usize {
            self.drop_oldest_webhook();
        }
        let id = self.webhooks.next_id.max(1);
        self.webhooks.next_id = id + 1;
        let body = facts.body(&format!("{}-{id}", self.params.id.0), self.wall_ms());
        self.stats.webhook_events[kind as usize] += 1;
        self.webhooks.pending.insert(
            id,
            Pending {
                kind,
                body: body.clone(),
                durable: false,
            },
        );
        self.count_pending();
        let record = Record::State {
            key: StateKey::WebhookEvent { id },
            value: Some(body),
        };
        self.append(record, AppendPurpose::Webhook(id));
    }

    fn drop_oldest_webhook(&mut self) {
        let Some((id, p)) = self.webhooks.pending.pop_first() else {
            return;
        };
        self.stats.webhooks_dropped += 1;
        tracing::warn!(
            shard = self.params.id.0,
            id,
            event = p.kind.name(),
            max_pending = self.webhooks.rules.max_pending,
            "webhook backlog full: dropping the oldest event"
        );
        if p.durable {
            self.mark_done(id);
        }
        self.count_pending();
    }

    fn count_pending(&mut self) {
        self.stats.webhooks_pending = self.webhooks.pending.len() as u64;
    }

    /// `id` is delivered or dropped: its tombstone goes with the next flush.
    fn mark_done(&mut self, id: u64) {
        self.count_pending();
        let w = &mut self.webhooks;
        w.tombstones.push(id);
        if id > w.done_up_to {
            w.done_up_to = id;
            w.cursor_dirty = true;
        }
        self.arm_bookkeeping_flush();
    }

    /// An event's append is durable (or failed).
    pub(super) fn on_webhook_durable(&mut self, id: u64, ok: bool) {
        if !ok {
            self.webhooks.pending.remove(&id);
            self.count_pending();
            return;
        }
        let Some(p) = self.webhooks.pending.get_mut(&id) else {
            // Dropped before it was durable: its tombstone comes now.
            self.mark_done(id);
            return;
        };
        p.durable = true;
        self.webhooks.ready.push_back(id);
        self.hand_out_webhooks();
    }

    /// The bookkeeping flush: the cursor, then the tombstones it covers.
    pub(super) fn flush_webhooks(&mut self) {
        if self.storage.failed() {
            return;
        }
        let w = &mut self.webhooks;
        let tombstones = std::mem::take(&mut w.tombstones);
        if w.cursor_dirty {
            w.cursor_dirty = false;
            let value = Some(encode_cursor(w.done_up_to));
            let record = Record::State {
                key: StateKey::WebhookCursor,
                value,
            };
            self.append(record, AppendPurpose::Bookkeeping);
        }
        for id in tombstones {
            let record = Record::State {
                key: StateKey::WebhookEvent { id },
                value: None,
            };
            self.append(record, AppendPurpose::Bookkeeping);
        }
    }

    // ----- where events happen (hooks called by the delivery code) --------

    /// A message copy was just appended to `record.inbox`: `message.offline`
    /// if none of the inbox owner's devices is online. Not for the sender's
    /// own copy, nor for rooms.
    pub(super) fn webhook_copy_appended(&mut self, record: &MessageRecord) {
        let inbox = record.inbox;
        if inbox == record.from || inbox.is_group() || surepush_proto::is_room(inbox.0) {
            return;
        }
        let online = self
            .sessions
            .inbox(inbox)
            .is_some_and(|i| i.devices.iter().any(|d| d.conn.is_some()));
        if online {
            return;
        }
        let preview_bytes = self.webhooks.rules.preview_bytes as usize;
        self.emit_webhook(EventFacts::Offline {
            record,
            preview_bytes,
        });
    }

    /// Whether a push unanswered through `retransmits` retransmissions
    /// makes a `message.unacked` event (the configured count).
    pub(super) fn wants_unacked_webhook(&self, retransmits: u32) -> bool {
        let rules = &self.webhooks.rules;
        rules.emits(WebhookKind::MessageUnacked) && retransmits == rules.after_retransmits
    }

    /// A push to `device` went unacknowledged through `retransmits`
    /// retransmissions (see [`Shard::wants_unacked_webhook`]).
    pub(super) fn webhook_unacked(
        &mut self,
        record: &MessageRecord,
        device: DeviceId,
        retransmits: u32,
    ) {
        self.emit_webhook(EventFacts::Unacked {
            record,
            device,
            retransmits,
        });
    }

    /// A session was established on `conn`.
    pub(super) fn webhook_connected(&mut self, conn: ConnId, user: UserId, device: DeviceId) {
        let transport = self.conn(conn).map_or("native", |c| c.transport);
        self.emit_webhook(EventFacts::Connected {
            user,
            device,
            transport,
        });
    }

    /// An established session ended for `reason`.
    pub(super) fn webhook_disconnected(
        &mut self,
        user: UserId,
        device: DeviceId,
        transport: &'static str,
        reason: &str,
    ) {
        self.emit_webhook(EventFacts::Disconnected {
            user,
            device,
            transport,
            reason,
        });
    }
}
