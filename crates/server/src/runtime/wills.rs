//! MQTT wills (docs/MQTT.md 2.7) published on behalf of a connection that
//! is gone: at once, or after their Will Delay Interval unless the
//! session connected again meanwhile (`MqttShard::will_due`). A will with
//! Will Retain 1 to a room or free-form topic then sets the retained
//! message, once the core has stored it (a QoS 0 one once its room
//! accepted it: the publish asks for confirmation), as a retained PUBLISH
//! of that session would (`surepush_mqtt::bridge::WillRetain`).

use std::rc::Rc;

use super::ShardRuntime;
use crate::transport::{LastWill, ShardPort};
use surepush_core::{Publish, StateDurability, StoreOutcome};

impl ShardRuntime {
    /// Publishes `will` (after its delay, if it has one), then sets its
    /// retained message; runs on its own task.
    pub(crate) fn publish_will(self: &Rc<Self>, will: LastWill) {
        let rt = self.clone();
        glommio::spawn_local(async move {
            let LastWill {
                key,
                to,
                qos,
                attrs,
                payload,
                by,
                retain,
                delay,
            } = will;
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
            let publish = Publish {
                request: 0,
                key,
                to,
                qos,
                attrs,
                payload,
                by,
                confirm: retain.is_some(),
            };
            let outcome = rt.publish(publish).await;
            tracing::debug!(user = key.from.0, ?outcome, "will published");
            let stored = matches!(
                outcome,
                StoreOutcome::Stored(_) | StoreOutcome::Duplicate(_)
            );
            if let Some(retain) = retain.filter(|_| stored) {
                let w = retain.write(published_ms);
                rt.write_state(w.key, w.value, StateDurability::Now);
                rt.drive();
            }
        })
        .detach();
    }
}
