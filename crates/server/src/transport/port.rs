//! What the transport asks of its shard: the runtime implements these, so
//! the transport depends on no other module of the server (the runtime
//! depends on the transport, one way).

use std::rc::Rc;

use bytes::Bytes;

use super::{ConnIo, Handoff, Listener, MqttShard, Owner};
use crate::config::Config;
use surepush_core::{AuthError, Claims, ConnId, StateDurability, StateKey};
use surepush_proto::{Frame, ProtoError, UserId};

/// A connection's protocol talking to its shard (object safe: sessions are
/// trait objects). Nothing here drives the shard: the caller does, after.
pub(crate) trait ShardPort {
    /// The node's configuration.
    fn config(&self) -> &Config;
    /// The MQTT front end of this shard, when enabled.
    fn mqtt(&self) -> Option<&MqttShard>;
    /// Wall clock, ms since the Unix epoch.
    fn wall_ms_now(&self) -> u64;
    /// A frame from `conn` for the core.
    fn frame(&self, conn: ConnId, frame: Frame);
    /// Writes keyed state through the core.
    fn write_state(&self, key: StateKey, value: Option<Bytes>, durability: StateDurability);
    /// Asks for keyed state wherever it lives; `conn` hears the answer.
    fn query_state(&self, conn: ConnId, key: StateKey);
    /// The newest value of keyed state this shard owns.
    fn stored_state(&self, key: &StateKey) -> Option<Bytes>;
    /// Something was queued for `conn`: check its output budget
    /// (`slow.rs`).
    fn check_budget(&self, conn: ConnId, io: &ConnIo);
    /// Whether `conn` is still open.
    fn is_open(&self, conn: ConnId) -> bool;
    /// MQTT messages not sent because their Message Expiry Interval
    /// passed while they were stored.
    fn count_mqtt_expired(&self, n: u64);
}

/// What the accept path and the loops ask of their shard, on top.
pub(crate) trait ShardLoop: ShardPort + 'static {
    /// This shard's index.
    fn shard_id(&self) -> u16;
    /// Where `user`'s owner is: a shard here, or another node to redirect
    /// a client of `listener` to.
    fn owner(&self, user: UserId, listener: Listener) -> Owner;
    /// Verifies a session token.
    fn verify(&self, token: &str) -> Result<Claims, AuthError>;
    /// Counts a refused token.
    fn count_auth_failure(&self);
    /// Sends a connection to the shard that owns its user.
    fn hand_off(&self, owner: u16, handoff: Handoff);
    /// A connection relayed to its user's node opened, closed, or was
    /// refused (it arrived relayed for a user this node does not own).
    fn count_relay(&self, event: super::relay::RelayEvent);
    /// Counts a connection adopted from another shard; `layers`: what
    /// wraps its protocol (`tcp`, `tls`, `ws`, `wss`).
    fn count_adopted(&self, layers: &'static str);
    /// Registers a new connection with the core.
    fn open_connection(&self, io: Rc<ConnIo>, transport: &'static str) -> ConnId;
    /// The input of `conn` is not its protocol (then drives).
    fn decode_error(self: &Rc<Self>, conn: ConnId, e: &ProtoError);
    /// Carries out what the core queued.
    fn drive(self: &Rc<Self>);
    /// The socket of `conn` failed or the peer closed it (then drives).
    fn transport_closed(self: &Rc<Self>, conn: ConnId);
    /// The writer of `conn` emptied its queue (then drives if needed).
    fn output_drained(self: &Rc<Self>, conn: ConnId, io: &Rc<ConnIo>);
    /// Readers pause while this holds (the mesh is backed up).
    fn mesh_congested(&self) -> bool;
    /// How long to stop reading `conn`: it sent its frames for this second
    /// (`core.max_frames_per_sec`).
    fn read_pause(&self, conn: ConnId) -> Option<std::time::Duration>;
    /// Where idle connections park (`park.rs`); `None` when they do not
    /// (`park_idle_ms = 0`).
    fn parker(&self) -> Option<&super::park::Parker>;
    /// The open connection a parker report names.
    fn conn_by_token(&self, token: u64) -> Option<Rc<ConnIo>>;
    /// One idle sweep over every open connection (`ConnIo::sweep`).
    fn sweep_idle(&self);
}

/// A message to publish on behalf of a connection that is gone (an MQTT
/// will), as the backend would.
pub(crate) struct LastWill {
    /// The message, as the backend would publish it: the session's dedup
    /// key, the will's MQTT 5 properties as its attributes, on the
    /// session's authority; confirmed when it sets a retained message.
    pub(crate) publish: surepush_core::Publish,
    /// Will Retain 1 to a room or free-form topic: the retained message to
    /// set once the will is stored.
    pub(crate) retain: Option<surepush_mqtt::bridge::WillRetain>,
    /// Published only after this wait, and only if still due then
    /// (`MqttShard::will_due`); `None`: at once.
    pub(crate) delay: Option<WillDelay>,
}

/// The wait of a delayed will (MQTT 5 Will Delay Interval).
pub(crate) struct WillDelay {
    /// How long.
    pub(crate) after: std::time::Duration,
    /// Which pending will of its session this is.
    pub(crate) ticket: u64,
}
