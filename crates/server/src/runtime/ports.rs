//! The shard runtime as the transports see it: [`ShardPort`] (what a
//! session adapter may ask of its shard) and [`ShardLoop`] (what the
//! accept, read and write loops drive).

use super::*;

/// What the connections' protocols ask of the shard.
impl ShardPort for ShardRuntime {
    fn config(&self) -> &Config {
        &self.config
    }

    fn mqtt(&self) -> Option<&MqttShard> {
        self.mqtt.as_ref()
    }

    fn wall_ms_now(&self) -> u64 {
        ShardRuntime::wall_ms_now()
    }

    fn frame(&self, conn: ConnId, frame: Frame) {
        ShardRuntime::frame(self, conn, frame);
    }

    fn write_state(&self, key: StateKey, value: Option<Bytes>, durability: StateDurability) {
        ShardRuntime::write_state(self, key, value, durability);
    }

    fn query_state(&self, conn: ConnId, key: StateKey) {
        ShardRuntime::query_state(self, conn, key);
    }

    fn stored_state(&self, key: &StateKey) -> Option<Bytes> {
        ShardRuntime::stored_state(self, key)
    }

    fn check_budget(&self, conn: ConnId, io: &ConnIo) {
        self.slow.check_budget(conn, io);
    }

    fn is_open(&self, conn: ConnId) -> bool {
        self.conns.borrow().contains_key(&conn)
    }

    fn count_mqtt_expired(&self, n: u64) {
        self.metrics.count_mqtt_expired(n);
    }
}

/// What the accept path and the connection loops ask of the shard.
impl ShardLoop for ShardRuntime {
    fn shard_id(&self) -> u16 {
        self.id
    }

    fn owner(&self, user: UserId, listener: Listener) -> Owner {
        let address = self.core.borrow().router().address(user);
        match (address, &self.cluster) {
            (Address::Shard(shard), _) => Owner::Shard(shard.0),
            (Address::Node(node, _), Some(link)) => {
                match link.redirect(&node, listener == Listener::Mqtt) {
                    Redirect::To(to) => Owner::Redirect(to),
                    Redirect::Unavailable => Owner::Unavailable,
                }
            }
            (Address::Node(..) | Address::Unplaced(_), _) => Owner::Unavailable,
        }
    }

    fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let verified = self.verifier.verify(token, self.wall_ms());
        if verified == Err(AuthError::UnknownKey) {
            self.auth.key_missing();
        }
        verified
    }

    fn count_auth_failure(&self) {
        self.metrics.count_auth_failure();
    }

    fn hand_off(&self, owner: u16, handoff: Handoff) {
        self.handoff(owner, MeshMsg::Handoff(Box::new(handoff)));
    }

    fn count_relay(&self, event: crate::transport::RelayEvent) {
        if let Some(link) = &self.cluster {
            link.count_relay(event);
        }
    }

    fn count_adopted(&self, layers: &'static str) {
        self.metrics.count_adopted(layers);
    }

    fn open_connection(&self, io: Rc<ConnIo>, transport: &'static str) -> ConnId {
        ShardRuntime::open_connection(self, io, transport)
    }

    fn decode_error(self: &Rc<Self>, conn: ConnId, e: &ProtoError) {
        ShardRuntime::decode_error(self, conn, e);
    }

    fn drive(self: &Rc<Self>) {
        ShardRuntime::drive(self);
    }

    fn transport_closed(self: &Rc<Self>, conn: ConnId) {
        ShardRuntime::transport_closed(self, conn);
    }

    fn output_drained(self: &Rc<Self>, conn: ConnId, io: &Rc<ConnIo>) {
        ShardRuntime::output_drained(self, conn, io);
    }

    fn mesh_congested(&self) -> bool {
        ShardRuntime::mesh_congested(self)
    }

    fn read_pause(&self, conn: ConnId) -> Option<Duration> {
        let now = self.now();
        let pause = self.core.borrow().read_pause(conn, now)?;
        self.metrics.count_read_pause();
        Some(Duration::from_nanos(pause))
    }

    fn parker(&self) -> Option<&crate::transport::park::Parker> {
        self.parker.as_ref()
    }

    fn conn_by_token(&self, token: u64) -> Option<Rc<ConnIo>> {
        self.conn_io(ConnId::from_u64(token))
    }

    fn sweep_idle(&self) {
        for io in self.conns.borrow().values() {
            io.sweep();
        }
    }
}
