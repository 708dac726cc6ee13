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
}

impl StateKey {
    /// The id whose owner shard keeps this key.
    pub fn owner(self) -> UserId {
        match self {
            StateKey::MqttSession { user, .. } => user,
            StateKey::Retained { room } => room,
        }
    }
}
