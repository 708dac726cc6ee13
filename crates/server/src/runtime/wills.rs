//! MQTT wills (docs/MQTT.md 2.7) published on behalf of a connection that
//! is gone: at once, or after their Will Delay Interval unless the
//! session connected again meanwhile (`MqttShard::will_due`). A will with
//! Will Retain 1 to a room or free-form topic then sets the retained
//! message, once the core has stored it (a QoS 0 one once its room
//! accepted it: the publish asks for confirmation), as a retained PUBLISH
//! of that session would (`surepush_mqtt::bridge::WillRetain`).
//!
//! A will waiting for its delay is also a `StateKey::MqttWill` record
//! (written by `transport/mqtt.rs` when its connection ends): deleted once
//! the will is published (kept if the log refused it, so the next start
//! tries again; the will's dedup key makes a second publish a duplicate),
//! and read back at start ([`ShardRuntime::resume_delayed_wills`]).

use std::rc::Rc;

use super::ShardRuntime;
use crate::transport::{LastWill, ShardPort};
use surepush_core::{StateDurability, StateKey, StoreOutcome};
use surepush_mqtt::bridge::PendingWill;

impl ShardRuntime {
    /// Publishes `will` (after its delay, if it has one), then sets its
    /// retained message; runs on its own task.
    pub(crate) fn publish_will(self: &Rc<Self>, will: LastWill) {
        let rt = self.clone();
        glommio::spawn_local(async move {
            let LastWill {
                publish,
                retain,
                delay,
            } = will;
            let key = publish.key;
            let delayed = delay.is_some();
            if let Some(d) = delay {
                // MQTT 5 Will Delay Interval: dropped if the session
                // connected again meanwhile.
                glommio::timer::sleep(d.after).await;
                let session = (key.from, key.from_device);
                if !rt.mqtt().is_some_and(|m| m.will_due(session, d.ticket)) {
                    return;
                }
            }
            let published_ms = ShardRuntime::wall_ms_now();
            let outcome = rt.publish(publish).await;
            tracing::debug!(user = key.from.0, ?outcome, "will published");
            let stored = matches!(
                outcome,
                StoreOutcome::Stored(_) | StoreOutcome::Duplicate(_)
            );
            if let Some(retain) = retain.filter(|_| stored) {
                let w = retain.write(published_ms);
                rt.write_state(w.key, w.value, StateDurability::Now);
            }
            if delayed && outcome != StoreOutcome::Failed {
                rt.forget_delayed_will(key);
            }
            rt.drive();
        })
        .detach();
    }

    /// Deletes the `StateKey::MqttWill` record of the will `key` names,
    /// if it still holds that will (a newer connection of the session may
    /// have left another one since).
    fn forget_delayed_will(&self, key: surepush_core::SendKey) {
        let will_key = StateKey::MqttWill {
            user: key.from,
            device: key.from_device,
        };
        let same = self
            .stored_state(&will_key)
            .and_then(|v| PendingWill::decode(&v))
            .is_some_and(|p| p.will.client_msg_id == key.client_msg_id);
        if same {
            self.write_state(will_key, None, StateDurability::Now);
        }
    }

    /// At start: the wills that were waiting for their delay when the
    /// gateway stopped or died (their records, folded by recovery) wait
    /// for the rest of it, and are published unless their session resumes
    /// first (docs/MQTT.md 2.7).
    pub(crate) fn resume_delayed_wills(self: &Rc<Self>) {
        let Some(mqtt) = self.mqtt() else { return };
        let records: Vec<_> = self
            .core
            .borrow()
            .states()
            .filter(|(k, _)| matches!(k, StateKey::MqttWill { .. }))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        if records.is_empty() {
            return;
        }
        let wills = mqtt.stored_wills(records, ShardRuntime::wall_ms_now());
        tracing::info!(
            shard = self.id,
            wills = wills.len(),
            "MQTT wills waiting for their delay"
        );
        for will in wills {
            self.publish_will(will);
        }
    }
}
