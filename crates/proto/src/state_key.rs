//! Keys of the state kept in the log for the layers above the core.

use crate::{DeviceId, UserId};

/// The key of a piece of state a layer above the core keeps in the log
/// (the core's keyed state records; the MQTT bridge writes them). Each key
/// lives on one shard, the owner of [`StateKey::owner`], like every other
/// state of that id. Not on the wire: it is here so the bridge and the core
/// share it without the bridge depending on the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// An MQTT persistent session of (user, device), on the user's shard.
    MqttSession {
        /// The session's user.
        user: UserId,
        /// The session's device.
        device: DeviceId,
    },
    /// A room's retained MQTT message, on the room's home shard.
    Retained {
        /// The room's wire id (with [`crate::ROOM_BIT`]).
        room: UserId,
    },
    /// A webhook event not delivered yet, in the log of the shard that
    /// emitted it (the core's `webhook.rs`); `id` is that shard's event
    /// number. A tombstone marks it delivered (or given up).
    WebhookEvent {
        /// The shard's event number (never reused: see `WebhookCursor`).
        id: u64,
    },
    /// The highest webhook event number of this shard that was delivered
    /// or given up, written before the tombstones it covers, so a restart
    /// never numbers an event again.
    WebhookCursor,
    /// An MQTT will waiting for its Will Delay Interval after the
    /// connection of session (user, device) ended, on the user's shard
    /// (docs/MQTT.md 2.7): published when its delay is over, also after a
    /// restart, unless the session resumed first.
    MqttWill {
        /// The session's user.
        user: UserId,
        /// The session's device.
        device: DeviceId,
    },
    /// A share group's state for the topic streams homed on a shard
    /// (MQTT shared subscriptions, `core::share_groups`), in the log of
    /// that shard; `key` is the group's [`crate::share_key`].
    ShareGroup {
        /// The group's key.
        key: u64,
    },
}

impl StateKey {
    /// The id whose owner shard keeps this key; `None` for a key of the
    /// shard itself (webhook events), which stays in the log it was
    /// written to and is never routed.
    pub fn owner(self) -> Option<UserId> {
        match self {
            StateKey::MqttSession { user, .. } | StateKey::MqttWill { user, .. } => Some(user),
            StateKey::Retained { room } => Some(room),
            StateKey::WebhookEvent { .. }
            | StateKey::WebhookCursor
            | StateKey::ShareGroup { .. } => None,
        }
    }
}
