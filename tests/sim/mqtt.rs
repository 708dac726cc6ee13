//! MQTT sessions in the simulated world (issue #16 item 3, the bridge
//! half): MQTT clients driven through the sans-IO bridge on the simulated
//! shards, under the same faults as everything else (connections killed,
//! the whole process crashing and losing its unsynced log tail, failed
//! syncs), with session state in the log exactly like the messages.
//!
//! Some seeds add 1-2 MQTT users (ids of their own: the SDK clients never
//! address them) with 1-2 devices each, and 0-2 rooms of their own. Every
//! device is a persistent session (MQTT 3.1.1 clean session 0, or 5.0 with
//! a Session Expiry Interval that never ends) and behaves as the specs
//! require of a client: after each reconnect it resends every
//! unacknowledged PUBLISH with DUP and its packet id, and every unanswered
//! PUBREL; as a receiver it answers a QoS 2 PUBLISH whose packet id awaits
//! PUBREL with PUBREC without delivering it again. It subscribes once (to
//! `user/{id}` or `#` at QoS 1 or 2, and to some rooms at QoS 0 or 1),
//! again only if no SUBACK came, and publishes QoS 0/1/2 to MQTT users
//! (itself included) and rooms. Some seeds add free-form topics (issue
//! #21): topic streams the devices publish to at QoS 0/1/2 and subscribe
//! to by name or through wildcard filters (`t/+/x`, `t/#`; `#` matches
//! them too), up to QoS 2. MQTT connections are TCP: in order, no loss
//! inside a connection; a kill or a crash ends one.
//!
//! The checker ([`check`]), after quiescence:
//! - every QoS 1/2 publish was acknowledged (PUBACK/PUBREC) and is stored
//!   in its addressee's inbox (and the sender's own inbox) or room: a QoS 2
//!   one exactly once, a QoS 1 one at least once, as sent (sender, device,
//!   addressee, QoS, payload); nothing else is stored there;
//! - every application delivery is a publish made to a topic the device
//!   subscribed (identity: topic, payload, and for 5.0 the `from`
//!   property), at the QoS the subscription and the message allow;
//! - a QoS 2 message delivered at QoS 2 reaches the application exactly
//!   once per session; every QoS 1/2 message stored after the device's
//!   SUBACK that its subscriptions match reaches it at least once (rooms:
//!   when the room's history keeps everything, for QoS 1 subscriptions);
//! - per connection and topic, deliveries follow the inbox's or the room's
//!   order;
//! - no CONNACK of a session the gateway had confirmed says "no session".

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use surepush::bridge::topics::Target;
use surepush::bridge::{Bridge, BridgeParams, SessionState};
use surepush::core::{Claims, ConnId, Router, StateDurability, TokenVerifier};
use surepush::log::{MessageRecord, StateKey};
use surepush::mqtt::{
    self, Connect, MqttString, Packet, PacketId, Properties, ProtocolLevel, PubReply, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions,
};
use surepush::proto::topic_stream::{is_free_form, is_topic_stream, split_payload, stream_id};
use surepush::proto::{is_room, DeviceId, Frame, Seq, UserId, ROOM_BIT};

use super::world::{Ev, World, MS, SECRET, WALL_MS_AT_ZERO};

/// The MQTT part of a seed's plan.
#[derive(Clone, Debug)]
pub struct MqttPlan {
    /// MQTT users (never addressed by the SDK clients).
    pub users: Vec<UserId>,
    /// Their devices.
    pub clients: Vec<MqttClientPlan>,
    /// MQTT rooms (wire ids; never used by the SDK clients).
    pub rooms: Vec<u64>,
    /// Free-form topic names published to (each a topic stream).
    pub topics: Vec<String>,
    /// Publishes per device.
    pub publishes: u32,
}

/// One MQTT device.
#[derive(Clone, Debug)]
pub struct MqttClientPlan {
    pub user: UserId,
    pub device: DeviceId,
    pub level: ProtocolLevel,
    /// 5.0 Receive Maximum asked of the server (small: the bridge holds
    /// PUBLISHes back).
    pub receive_max: Option<u16>,
    /// Subscriptions: `user/{id}` or `#`, rooms, free-form topics by name
    /// and wildcard filters over them.
    pub filters: Vec<(String, QoS)>,
}

/// Share of seeds with MQTT sessions: `SIM_MQTT_SHARE` (0 to 1) for a
/// campaign on MQTT. An MQTT seed costs about 2.2 times an SDK-only one
/// (debug build: packets, bridges and session records on top of the SDK
/// traffic); the default 0.1 keeps the CI run of 10,000 seeds about as
/// long as before MQTT (3.5% more simulated events; 40-42 s of CPU either
/// way on the 2-core machine, within its noise).
fn mqtt_seed_share() -> f64 {
    static SHARE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *SHARE.get_or_init(|| {
        std::env::var("SIM_MQTT_SHARE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|share| (0.0..=1.0).contains(share))
            .unwrap_or(0.1)
    })
}

/// First MQTT user id (the SDK users are 1..=4).
const FIRST_USER: u64 = 101;
/// First MQTT room number (the SDK rooms are 1 and 2).
const FIRST_ROOM: u64 = 51;
/// Free-form topic names a seed picks from, and wildcard filters over
/// them (two share `t/+/x`, one is outside `t/#`).
const TOPICS: [&str; 4] = ["t/a/x", "t/b/x", "t/a/y", "s/a"];
const TOPIC_FILTERS: [&str; 4] = ["t/+/x", "t/#", "t/a/+", "+/a"];

impl MqttPlan {
    pub fn from_seed(seed: u64) -> Option<MqttPlan> {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x3000_5EED);
        if !rng.random_bool(mqtt_seed_share()) {
            return None;
        }
        let users: Vec<UserId> = (0..rng.random_range(1..=2u64))
            .map(|i| UserId(FIRST_USER + i))
            .collect();
        let rooms: Vec<u64> = (0..rng.random_range(0..=2u64))
            .map(|i| ROOM_BIT | (FIRST_ROOM + i))
            .collect();
        let topics: Vec<String> = if rng.random_bool(0.5) {
            TOPICS
                .iter()
                .filter(|_| rng.random_bool(0.6))
                .map(|t| t.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let mut clients = Vec::new();
        for &user in &users {
            for d in 1..=rng.random_range(1..=2u64) {
                let level = if rng.random_bool(0.6) {
                    ProtocolLevel::V5
                } else {
                    ProtocolLevel::V311
                };
                let qos = if rng.random_bool(0.5) {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                let inbox = if rng.random_bool(0.25) {
                    "#".to_string()
                } else {
                    format!("user/{}", user.0)
                };
                let mut filters = vec![(inbox, qos)];
                for &room in &rooms {
                    if rng.random_bool(0.7) {
                        let q = if rng.random_bool(0.2) {
                            QoS::AtMostOnce
                        } else {
                            QoS::AtLeastOnce
                        };
                        filters.push((format!("room/{}", room & !ROOM_BIT), q));
                    }
                }
                if !topics.is_empty() {
                    let any_qos = |rng: &mut SmallRng| match rng.random_range(0..5) {
                        0 => QoS::AtMostOnce,
                        1 | 2 => QoS::AtLeastOnce,
                        _ => QoS::ExactlyOnce,
                    };
                    for t in &topics {
                        if rng.random_bool(0.4) {
                            let q = any_qos(&mut rng);
                            filters.push((t.clone(), q));
                        }
                    }
                    if rng.random_bool(0.5) {
                        let f = TOPIC_FILTERS[rng.random_range(0..TOPIC_FILTERS.len())];
                        let q = any_qos(&mut rng);
                        filters.push((f.to_string(), q));
                    }
                }
                let receive_max =
                    (level.is_v5() && rng.random_bool(0.3)).then(|| rng.random_range(1..=3u16));
                clients.push(MqttClientPlan {
                    user,
                    device: DeviceId(d),
                    level,
                    receive_max,
                    filters,
                });
            }
        }
        Some(MqttPlan {
            users,
            clients,
            rooms,
            topics,
            publishes: rng.random_range(1..=8),
        })
    }
}

/// What an MQTT publish was (keyed by its payload, unique per publish).
#[derive(Clone, Debug)]
pub struct MqttSent {
    pub user: UserId,
    pub device: DeviceId,
    /// The addressee's wire id (a user, a room or a topic stream).
    pub to: UserId,
    /// The topic it was published to.
    pub topic: String,
    pub qos: QoS,
}

/// A publish the client has not completed.
#[derive(Clone, Debug)]
struct Out {
    publish: Publish,
    /// QoS 2 and PUBREC received: PUBREL sent, awaiting PUBCOMP.
    released: bool,
    /// Sent at least once (a later send carries DUP).
    sent: bool,
}

/// A message the client's application got.
#[derive(Clone, Debug)]
pub struct Got {
    /// Which connection (counts from 1).
    pub conn: u32,
    pub topic: String,
    pub from: Option<u64>,
    pub qos: QoS,
    pub payload: Bytes,
}

/// One MQTT device: its connection and the client side of its persistent
/// session.
pub struct SimMqtt {
    pub plan: MqttClientPlan,
    token: String,
    /// The current connection (a link id), if any.
    pub link: Option<u64>,
    /// CONNACK received on the current connection.
    pub connected: bool,
    pub conns: u32,
    /// The gateway confirmed the session once.
    known: bool,
    outgoing: BTreeMap<u16, Out>,
    awaiting_rel: BTreeSet<u16>,
    /// SUBACK received.
    pub subscribed: bool,
    /// When the SUBSCRIBE was first sent and its SUBACK came (wall ms): a
    /// wildcard filter over free-form topics matches messages stored since
    /// the gateway took it, somewhere in between.
    subscribe_sent_ms: Option<u64>,
    suback_ms: Option<u64>,
    pub got: Vec<Got>,
    pub sends_left: u32,
    next: u32,
    /// Where completeness starts: the inbox's and each room's durable head
    /// when the SUBACK arrived.
    pub starts: HashMap<UserId, Seq>,
    /// Publishes acknowledged (PUBACK/PUBREC) at least once.
    pub acked: BTreeSet<Bytes>,
    /// QoS 2 PUBLISHes recognised by packet id (not delivered again).
    pub qos2_repeats: u32,
    /// What the client found wrong while it ran.
    pub errors: Vec<String>,
    /// Publishes to send again now (refused, see `acknowledged`).
    retry: Vec<u16>,
}

impl SimMqtt {
    pub fn new(plan: MqttClientPlan, publishes: u32) -> SimMqtt {
        let token = TokenVerifier::new(SECRET).mint(&Claims {
            user: plan.user,
            device: plan.device,
            expires_s: u64::MAX / 2,
            acl: Default::default(),
        });
        SimMqtt {
            plan,
            token,
            link: None,
            connected: false,
            conns: 0,
            known: false,
            outgoing: BTreeMap::new(),
            awaiting_rel: BTreeSet::new(),
            subscribed: false,
            subscribe_sent_ms: None,
            suback_ms: None,
            got: Vec::new(),
            sends_left: publishes,
            next: 0,
            starts: HashMap::new(),
            acked: BTreeSet::new(),
            qos2_repeats: 0,
            errors: Vec::new(),
            retry: Vec::new(),
        }
    }

    fn who(&self) -> String {
        format!("mqtt {}/{}", self.plan.user.0, self.plan.device.0)
    }

    /// The CONNECT of a new connection.
    pub fn connect_packet(&mut self) -> Packet {
        self.conns += 1;
        self.connected = false;
        let v5 = self.plan.level.is_v5();
        let properties = Properties {
            session_expiry_interval: v5.then_some(u32::MAX),
            receive_maximum: self.plan.receive_max.and_then(std::num::NonZeroU16::new),
            ..Properties::default()
        };
        Packet::Connect(Box::new(Connect {
            protocol_level: self.plan.level,
            clean_start: false,
            keep_alive: 60,
            client_id: MqttString::from(self.who()),
            will: None,
            username: Some(MqttString::from("x")),
            password: Some(Bytes::from(self.token.clone())),
            properties,
        }))
    }

    /// The next publish of the plan (sent now if connected, else on the
    /// next connection).
    pub fn publish(&mut self, topic: &str, qos: QoS, n: usize) -> (Bytes, Option<Packet>) {
        self.sends_left -= 1;
        self.next += 1;
        let payload = Bytes::from(format!("mq{n}/{}", self.next));
        let packet_id = (qos != QoS::AtMostOnce).then(|| {
            (1..)
                .filter_map(PacketId::new)
                .find(|id| !self.outgoing.contains_key(&id.get()))
                .expect("a free packet id")
        });
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: MqttString::from(topic),
            packet_id,
            payload: payload.clone(),
            properties: Properties::default(),
        };
        let Some(id) = packet_id else {
            // QoS 0: now or never.
            return (payload, self.connected.then_some(Packet::Publish(publish)));
        };
        self.outgoing.insert(
            id.get(),
            Out {
                publish: publish.clone(),
                released: false,
                sent: self.connected,
            },
        );
        (payload, self.connected.then_some(Packet::Publish(publish)))
    }

    /// A packet from the gateway; returns the answers.
    /// `heads`: the durable head of every inbox, room and stream its
    /// subscriptions watch (where completeness starts at the SUBACK).
    /// `now_ms`: the wall clock.
    pub fn handle(&mut self, p: Packet, heads: &HashMap<UserId, Seq>, now_ms: u64) -> Vec<Packet> {
        let mut out = Vec::new();
        match p {
            Packet::ConnAck(a) => {
                let unavailable = [mqtt::ReasonCode::SERVER_UNAVAILABLE, mqtt::ReasonCode(0x03)];
                if unavailable.contains(&a.code) {
                    // A failed log: the server closes; the client retries.
                    return out;
                }
                if a.code != mqtt::ReasonCode::SUCCESS {
                    self.errors.push(format!("{}: {a:?}", self.who()));
                    return out;
                }
                if self.known && !a.session_present {
                    self.errors
                        .push(format!("{}: a confirmed session was not found", self.who()));
                }
                self.known = true;
                self.connected = true;
                // MQTT-4.4.0-1: unacknowledged PUBLISHes (DUP, same id) and
                // PUBRELs, in order.
                for (&id, o) in self.outgoing.iter_mut() {
                    let id = PacketId::new(id).expect("non-zero");
                    if o.released {
                        out.push(Packet::PubRel(PubReply::success(id)));
                    } else {
                        let mut p = o.publish.clone();
                        p.dup = o.sent;
                        o.sent = true;
                        out.push(Packet::Publish(p));
                    }
                }
                if !self.subscribed {
                    self.subscribe_sent_ms.get_or_insert(now_ms);
                    out.push(self.subscribe_packet());
                }
            }
            Packet::SubAck(a) => {
                if a.reasons.iter().any(|r| r.is_error()) {
                    self.errors.push(format!("{}: {a:?}", self.who()));
                }
                if !self.subscribed {
                    self.subscribed = true;
                    self.suback_ms = Some(now_ms);
                    self.starts
                        .extend(heads.iter().map(|(&id, &seq)| (id, seq)));
                }
            }
            Packet::PubAck(r) => {
                self.acknowledged(&r, false);
                for id in std::mem::take(&mut self.retry) {
                    if let Some(o) = self.outgoing.get_mut(&id) {
                        o.sent = true;
                        out.push(Packet::Publish(o.publish.clone()));
                    }
                }
            }
            Packet::PubRec(r) => {
                self.acknowledged(&r, true);
                if self.outgoing.contains_key(&r.packet_id.get()) {
                    out.push(Packet::PubRel(PubReply::success(r.packet_id)));
                }
            }
            Packet::PubComp(r) => {
                if self
                    .outgoing
                    .get(&r.packet_id.get())
                    .is_some_and(|o| o.released)
                {
                    self.outgoing.remove(&r.packet_id.get());
                }
            }
            Packet::Publish(p) => out.extend(self.receive(p)),
            Packet::PubRel(r) => {
                self.awaiting_rel.remove(&r.packet_id.get());
                out.push(Packet::PubComp(PubReply::success(r.packet_id)));
            }
            Packet::PingResp => {}
            other => self
                .errors
                .push(format!("{}: unexpected {other:?}", self.who())),
        }
        out
    }

    fn subscribe_packet(&self) -> Packet {
        Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(60_000).expect("non-zero"),
            filters: self
                .plan
                .filters
                .iter()
                .map(|(f, q)| Subscription {
                    filter: MqttString::from(f.as_str()),
                    options: SubscriptionOptions::qos(*q),
                })
                .collect(),
            properties: Properties::default(),
        })
    }

    fn acknowledged(&mut self, r: &PubReply, rec: bool) {
        let Some(o) = self.outgoing.get_mut(&r.packet_id.get()) else {
            return;
        };
        if r.reason.is_error() {
            // 5.0, a QoS 1 PUBLISH the server could not store (its log
            // failed): the application publishes it again, as a new
            // message. Any other refusal is unexpected.
            let qos1 = o.publish.qos == QoS::AtLeastOnce && !rec;
            if !qos1 || r.reason != mqtt::ReasonCode::UNSPECIFIED_ERROR {
                self.errors
                    .push(format!("{}: publish refused {r:?}", self.who()));
                return;
            }
            let mut again = self.outgoing.remove(&r.packet_id.get()).expect("present");
            let id = (1..)
                .filter_map(PacketId::new)
                .find(|id| !self.outgoing.contains_key(&id.get()))
                .expect("a free packet id");
            again.publish.packet_id = Some(id);
            again.publish.dup = false;
            again.sent = false;
            self.outgoing.insert(id.get(), again);
            self.retry.push(id.get());
            return;
        }
        let qos2 = o.publish.qos == QoS::ExactlyOnce;
        if qos2 != rec || (qos2 && o.released) {
            return; // a repeat, or the wrong answer for its QoS
        }
        self.acked.insert(o.publish.payload.clone());
        if qos2 {
            o.released = true;
        } else {
            self.outgoing.remove(&r.packet_id.get());
        }
    }

    /// A PUBLISH from the gateway: delivered to the application unless its
    /// packet id awaits PUBREL (a QoS 2 repeat); then acknowledged.
    fn receive(&mut self, p: Publish) -> Option<Packet> {
        let from = p
            .properties
            .user_properties
            .iter()
            .find(|(k, _)| k.as_str() == "from")
            .and_then(|(_, v)| v.as_str().parse().ok());
        let repeat = p.qos == QoS::ExactlyOnce
            && p.packet_id
                .is_some_and(|id| !self.awaiting_rel.insert(id.get()));
        if repeat {
            self.qos2_repeats += 1;
        } else {
            self.got.push(Got {
                conn: self.conns,
                topic: p.topic.as_str().to_string(),
                from,
                qos: p.qos,
                payload: p.payload.clone(),
            });
        }
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => Some(Packet::PubAck(PubReply::success(id))),
            (QoS::ExactlyOnce, Some(id)) => Some(Packet::PubRec(PubReply::success(id))),
            _ => None,
        }
    }

    /// Nothing left to send or to hear back about.
    pub fn settled(&self) -> bool {
        self.connected && self.subscribed && self.outgoing.is_empty() && self.sends_left == 0
    }
}

/// The server side of one MQTT connection.
pub struct SimBridge {
    pub bridge: Bridge,
    pub client: usize,
    pub link: u64,
    /// Packets on their way to the client (the connection's unsent output).
    pub in_flight: usize,
}

/// The MQTT part of the world.
#[derive(Default)]
pub struct MqttWorld {
    pub clients: Vec<SimMqtt>,
    /// Server side, by (shard, connection).
    pub bridges: HashMap<(u16, ConnId), SimBridge>,
    /// Link → (epoch, shard, connection), once its CONNECT arrived.
    pub links: HashMap<u64, (u64, u16, ConnId)>,
    /// When the last packet of each link arrives, per direction (TCP keeps
    /// order).
    pub arrivals: HashMap<u64, [u64; 2]>,
    /// Every publish made, by payload.
    pub sent: HashMap<Bytes, MqttSent>,
}

impl MqttWorld {
    pub fn new(plan: Option<&MqttPlan>) -> MqttWorld {
        let clients = plan.map_or_else(Vec::new, |p| {
            p.clients
                .iter()
                .map(|c| SimMqtt::new(c.clone(), p.publishes))
                .collect()
        });
        MqttWorld {
            clients,
            ..MqttWorld::default()
        }
    }
}

impl World {
    /// Schedules the first connection and work of every MQTT device.
    pub fn start_mqtt(&mut self) {
        for c in 0..self.mqtt.clients.len() {
            let t = self.rng.random_range(0..50 * MS);
            self.schedule(t, Ev::MqttConnect { client: c });
            let t = self.rng.random_range(0..100 * MS);
            self.schedule(t, Ev::MqttWork { client: c });
        }
    }

    /// Sends `packet` on `link` (0: to the server, 1: to the client), in
    /// order behind what the link already carries.
    fn mqtt_transmit(&mut self, link: u64, to_client: Option<usize>, packet: Packet) {
        let delayed = self.now + self.delay();
        let dir = usize::from(to_client.is_some());
        let last = &mut self.mqtt.arrivals.entry(link).or_default()[dir];
        let at = delayed.max(*last);
        *last = at;
        let epoch = self.epoch;
        let ev = match to_client {
            Some(client) => Ev::MqttToClient {
                client,
                link,
                packet,
            },
            None => Ev::MqttToServer {
                link,
                epoch,
                packet,
            },
        };
        self.schedule(at, ev);
    }

    pub fn mqtt_connect(&mut self, client: usize) {
        if self.mqtt.clients[client].link.is_some() {
            return;
        }
        self.next_link += 1;
        let link = self.next_link;
        let c = &mut self.mqtt.clients[client];
        c.link = Some(link);
        let connect = c.connect_packet();
        self.mqtt_transmit(link, None, connect);
    }

    pub fn mqtt_work(&mut self, client: usize) {
        let Some(plan) = self.plan.mqtt.clone() else {
            return;
        };
        if self.mqtt.clients[client].sends_left == 0 {
            return;
        }
        let (to, topic) = if !plan.topics.is_empty() && self.rng.random_bool(0.35) {
            let name = plan.topics[self.rng.random_range(0..plan.topics.len())].clone();
            (UserId(stream_id(&name)), name)
        } else {
            let to = if !plan.rooms.is_empty() && self.rng.random_bool(0.35) {
                UserId(plan.rooms[self.rng.random_range(0..plan.rooms.len())])
            } else {
                plan.users[self.rng.random_range(0..plan.users.len())]
            };
            (to, Target::from_wire(to.0).topic())
        };
        let qos = match self.rng.random_range(0..10) {
            0 => QoS::AtMostOnce,
            1..=5 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let c = &mut self.mqtt.clients[client];
        let (payload, packet) = c.publish(&topic, qos, client);
        let sent = MqttSent {
            user: c.plan.user,
            device: c.plan.device,
            to,
            topic,
            qos,
        };
        let link = c.link;
        self.mqtt.sent.insert(payload, sent);
        if let (Some(link), Some(packet)) = (link, packet) {
            self.mqtt_transmit(link, None, packet);
        }
        let t = self.now + self.rng.random_range(1..200) * MS;
        self.schedule(t, Ev::MqttWork { client });
    }

    /// A packet reaches the server side of `link`.
    pub fn mqtt_to_server(&mut self, link: u64, epoch: u64, packet: Packet) {
        if self.trace {
            eprintln!(
                "{}ms mqtt link {link} -> server (epoch {epoch}/{}): {}",
                self.now / MS,
                self.epoch,
                brief(&packet)
            );
        }
        if epoch != self.epoch {
            return; // sent to a process that crashed
        }
        if let Packet::Connect(connect) = packet {
            return self.mqtt_open(link, *connect);
        }
        let Some(&(_, shard, conn)) = self.mqtt.links.get(&link) else {
            return;
        };
        if let Some(b) = self.mqtt.bridges.get_mut(&(shard, conn)) {
            b.bridge.set_clock(WALL_MS_AT_ZERO + self.now / MS);
            b.bridge.on_packet(packet);
            self.mqtt_pump(shard, conn);
        }
    }

    /// The CONNECT of `link` arrived: the owner shard starts a bridge, as
    /// `server::mqtt::start` does (taking over an open connection's
    /// session, else resuming the log's record of it).
    fn mqtt_open(&mut self, link: u64, connect: Connect) {
        let Some(client) = self.mqtt.clients.iter().position(|c| c.link == Some(link)) else {
            return; // the client gave up on this connection already
        };
        let (user, device) = {
            let p = &self.mqtt.clients[client].plan;
            (p.user, p.device)
        };
        let shard = Router::of_node(self.plan.shards).owner(user).0;
        let now = self.now;
        let conn = self.shards[shard as usize].handle_open_via(surepush_core::MQTT_TRANSPORT, now);
        let open = self
            .mqtt
            .bridges
            .values_mut()
            .find(|b| b.bridge.session() == (user, device));
        let stored = match open {
            Some(b) => b.bridge.take_over(!connect.clean_start),
            None => self.shards[shard as usize]
                .state(&StateKey::MqttSession { user, device })
                .and_then(|v| SessionState::from_record(v, WALL_MS_AT_ZERO)),
        };
        let token = self.mqtt.clients[client].token.clone();
        let params = BridgeParams {
            page: 3,
            // Above the page, so replay reads ahead several pages.
            inflight: 7,
            inflight_bytes: 1 << 20,
            max_packet: 1 << 20,
            receive_max: 4,
            room_window: self.config.room_window,
            topics_open: true,
        };
        let msg_id_base = (WALL_MS_AT_ZERO + now / MS) * 1000;
        let claims = Claims {
            user,
            device,
            expires_s: u64::MAX / 2,
            acl: Default::default(),
        };
        let mut bridge = Bridge::new(connect, token, claims, stored, msg_id_base, params);
        bridge.set_clock(WALL_MS_AT_ZERO + now / MS);
        self.mqtt.links.insert(link, (self.epoch, shard, conn));
        self.mqtt.bridges.insert(
            (shard, conn),
            SimBridge {
                bridge,
                client,
                link,
                in_flight: 0,
            },
        );
        self.mqtt_pump(shard, conn);
    }

    /// What a bridge produced goes to the core and the client, as
    /// `ShardRuntime::pump_bridge` does: state writes, queries, packets,
    /// then frames.
    pub fn mqtt_pump(&mut self, shard: u16, conn: ConnId) {
        let now = self.now;
        let Some(b) = self.mqtt.bridges.get_mut(&(shard, conn)) else {
            return;
        };
        let (client, link) = (b.client, b.link);
        let mut writes = Vec::new();
        while let Some(w) = b.bridge.poll_state() {
            writes.push(w);
        }
        let queries: Vec<StateKey> = std::iter::from_fn(|| b.bridge.poll_state_query()).collect();
        let packets: Vec<Packet> = std::iter::from_fn(|| b.bridge.poll_packet()).collect();
        let frames: Vec<Frame> = std::iter::from_fn(|| b.bridge.poll_core()).collect();
        b.in_flight += packets.len();
        if self.trace {
            for w in &writes {
                let inbound = w
                    .value
                    .as_ref()
                    .and_then(|v| SessionState::decode(v))
                    .map(|s| format!("{s:?}"));
                eprintln!(
                    "{}ms s{shard} {conn:?} state write {:?} report {:?}: {inbound:?}",
                    now / MS,
                    w.key,
                    w.report
                );
            }
            for f in &frames {
                if let Frame::Send(s) = f {
                    eprintln!(
                        "{}ms s{shard} {conn:?} SEND {} {:?}",
                        now / MS,
                        s.client_msg_id,
                        s.payload
                    );
                }
            }
        }
        let core = &mut self.shards[shard as usize];
        for w in writes {
            let durability = match w.report {
                Some(id) => StateDurability::Report { conn, id },
                None => StateDurability::Deferred,
            };
            core.handle_state(w.key, w.value, durability, now);
        }
        for key in queries {
            core.handle_state_query(conn, key, now);
        }
        for p in packets {
            self.mqtt_transmit(link, Some(client), p);
        }
        for f in frames {
            self.shards[shard as usize].handle_frame(conn, f, now);
        }
    }

    /// An action of the core for an MQTT connection (`None`), or back.
    pub fn mqtt_action(
        &mut self,
        shard: u16,
        action: surepush::core::Action,
    ) -> Option<surepush::core::Action> {
        use surepush::core::Action;
        let conn = match &action {
            Action::Send { conn, .. }
            | Action::SendShared { conn, .. }
            | Action::Close { conn }
            | Action::StateStored { conn, .. }
            | Action::StateValue { conn, .. } => *conn,
            _ => return Some(action),
        };
        if !self.mqtt.bridges.contains_key(&(shard, conn)) {
            return match action {
                // For a connection gone meanwhile.
                Action::StateStored { .. } | Action::StateValue { .. } => None,
                other => Some(other),
            };
        }
        let b = self.mqtt.bridges.get_mut(&(shard, conn)).expect("checked");
        // The wall clock, as the server sets it before every input.
        b.bridge.set_clock(WALL_MS_AT_ZERO + self.now / MS);
        match action {
            Action::Send { frame, .. } => {
                if self.trace {
                    let f = format!("{frame:?}");
                    eprintln!(
                        "{}ms s{shard} {conn:?} frame {}",
                        self.now / MS,
                        &f[..f.len().min(240)]
                    );
                }
                b.bridge.on_frame(frame)
            }
            Action::SendShared { bytes, .. } => {
                b.bridge.on_frame(super::link::decode_shared(&bytes))
            }
            Action::StateStored { id, ok, .. } => {
                if self.trace {
                    eprintln!(
                        "{}ms s{shard} {conn:?} state write {id} stored: {ok}",
                        self.now / MS
                    );
                }
                b.bridge.on_state_stored(id, ok)
            }
            Action::StateValue { key, value, .. } => b.bridge.on_state_value(key, value),
            Action::Close { .. } => {
                let b = self.mqtt.bridges.remove(&(shard, conn)).expect("checked");
                self.mqtt_finish(shard, b.bridge);
                // After every packet queued before it.
                let at = self
                    .mqtt
                    .arrivals
                    .get(&b.link)
                    .map_or(0, |a| a[1])
                    .max(self.now)
                    + 1;
                let ev = Ev::MqttServerClosed {
                    client: b.client,
                    link: b.link,
                };
                self.schedule(at, ev);
                return None;
            }
            other => return Some(other),
        }
        self.mqtt_pump(shard, conn);
        None
    }

    /// A bridge's connection ended: its session as it left it is written
    /// (nobody waits).
    fn mqtt_finish(&mut self, shard: u16, bridge: Bridge) {
        let now = self.now;
        let done = bridge.finish(WALL_MS_AT_ZERO + now / MS);
        if let Some(w) = done.write {
            self.shards[shard as usize].handle_state(w.key, w.value, StateDurability::Now, now);
        }
    }

    /// A packet reaches the client of `link`.
    pub fn mqtt_to_client(&mut self, client: usize, link: u64, packet: Packet) {
        if self.trace {
            let cur = self.mqtt.clients[client].link;
            eprintln!(
                "{}ms mqtt link {link} (cur {cur:?}) -> client {client}: {}",
                self.now / MS,
                brief(&packet)
            );
        }
        if let Some(&(_, shard, conn)) = self.mqtt.links.get(&link) {
            if let Some(b) = self.mqtt.bridges.get_mut(&(shard, conn)) {
                b.in_flight -= 1;
                if b.in_flight == 0 && b.bridge.wants_drain() {
                    // The connection's output is written: a lagged room
                    // may resume (the runtime's writer reports this).
                    b.bridge.on_output_drained();
                    self.mqtt_pump(shard, conn);
                }
            }
        }
        if self.mqtt.clients[client].link != Some(link) {
            return;
        }
        if let Packet::Disconnect(_) = packet {
            return self.mqtt_drop_link(client, None);
        }
        let c = &self.mqtt.clients[client];
        let rooms = c
            .plan
            .filters
            .iter()
            .filter_map(|(f, _)| match Target::parse(f) {
                Some(Target::Room(n)) => Some(UserId(n | ROOM_BIT)),
                _ => None,
            });
        let topics = self.plan.mqtt.iter().flat_map(|p| &p.topics);
        let streams = topics
            .filter(|t| grants(c, t, None).1.is_some())
            .map(|t| UserId(stream_id(t)));
        let watched = std::iter::once(c.plan.user).chain(rooms).chain(streams);
        let heads: HashMap<UserId, Seq> = watched.map(|id| (id, self.durable_head(id))).collect();
        let now_ms = WALL_MS_AT_ZERO + self.now / MS;
        let answers = self.mqtt.clients[client].handle(packet, &heads, now_ms);
        for a in answers {
            self.mqtt_transmit(link, None, a);
        }
    }

    /// The client side of a connection ends (killed, or the server closed
    /// it); the server hears of it (`tell`), the client reconnects later.
    pub fn mqtt_drop_link(&mut self, client: usize, tell: Option<u64>) {
        let c = &mut self.mqtt.clients[client];
        let Some(link) = c.link.take() else { return };
        c.connected = false;
        if let Some(epoch) = tell {
            let t = self.now + self.delay();
            self.schedule(t, Ev::MqttClientClosed { link, epoch });
        }
        let t = self.now + self.rng.random_range(1..100) * MS;
        self.schedule(t, Ev::MqttConnect { client });
    }

    /// The server hears that the client closed `link`.
    pub fn mqtt_client_closed(&mut self, link: u64, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        let Some((_, shard, conn)) = self.mqtt.links.remove(&link) else {
            return;
        };
        if let Some(b) = self.mqtt.bridges.remove(&(shard, conn)) {
            self.mqtt_finish(shard, b.bridge);
            let now = self.now;
            self.shards[shard as usize].handle_closed(conn, now);
        }
    }

    /// A random MQTT connection is killed.
    pub fn mqtt_kill(&mut self) {
        let open: Vec<usize> = (0..self.mqtt.clients.len())
            .filter(|&c| self.mqtt.clients[c].link.is_some())
            .collect();
        if open.is_empty() {
            return;
        }
        let c = open[self.rng.random_range(0..open.len())];
        let epoch = self.epoch;
        self.mqtt_drop_link(c, Some(epoch));
    }

    /// The process crashed: every bridge is gone with it.
    pub fn mqtt_crash(&mut self) {
        self.mqtt.bridges.clear();
        self.mqtt.links.clear();
        for c in 0..self.mqtt.clients.len() {
            self.mqtt_drop_link(c, None);
        }
    }

    /// Durable head of an inbox or a room.
    pub fn durable_head(&self, id: UserId) -> Seq {
        let shard = Router::of_node(self.plan.shards).owner(id).0 as usize;
        self.shards[shard].durable_head(id)
    }

    /// Every MQTT device is settled and holds what it must.
    pub fn mqtt_quiescent(&self) -> bool {
        if !self.mqtt.clients.iter().all(SimMqtt::settled) {
            return false;
        }
        let stored = self.mqtt_stored();
        self.mqtt.clients.iter().all(|c| {
            c.settled()
                && expected(self, c, &stored)
                    .iter()
                    .all(|(payload, _)| c.got.iter().any(|g| g.payload == *payload))
        })
    }

    /// Durable messages of the MQTT users' inboxes and rooms, in order.
    fn mqtt_stored(&self) -> HashMap<UserId, Vec<MessageRecord>> {
        let Some(plan) = &self.plan.mqtt else {
            return HashMap::new();
        };
        let mine = |id: UserId| {
            plan.users.contains(&id)
                || plan.rooms.contains(&id.0)
                || plan.topics.iter().any(|t| stream_id(t) == id.0)
        };
        let mut out: HashMap<UserId, Vec<MessageRecord>> = HashMap::new();
        for s in &self.storage {
            for m in s.durable_messages().filter(|m| mine(m.inbox)) {
                out.entry(m.inbox)
                    .or_default()
                    .push(self.application_view(m));
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|m| m.seq);
        }
        out
    }

    /// A stored message as the publisher made it: a topic stream's record
    /// carries the name before the payload (`proto::topic_stream`), taken
    /// off when it is the name the payload was published to (else the
    /// record stays as stored, and `check_stored` reports it).
    fn application_view(&self, m: &MessageRecord) -> MessageRecord {
        let mut m = m.clone();
        if !is_topic_stream(m.to.0) {
            return m;
        }
        if let Some((name, payload)) = split_payload(&m.payload) {
            let published = self.mqtt.sent.get(&payload);
            if published.is_some_and(|s| s.topic == name && stream_id(name) == m.to.0) {
                m.payload = payload;
            }
        }
        m
    }

    pub fn describe_mqtt(&self) -> String {
        let stored = self.mqtt_stored();
        self.mqtt
            .clients
            .iter()
            .map(|c| {
                let missing: Vec<String> = expected(self, c, &stored)
                    .iter()
                    .filter(|(payload, _)| !c.got.iter().any(|g| g.payload == *payload))
                    .map(|(payload, _)| format!("{:?}", String::from_utf8_lossy(payload)))
                    .collect();
                format!(
                    "\n{}: link={:?} connected={} subscribed={} outgoing={} sends_left={} got={} missing={missing:?}",
                    c.who(),
                    c.link,
                    c.connected,
                    c.subscribed,
                    c.outgoing.len(),
                    c.sends_left,
                    c.got.len()
                )
            })
            .collect()
    }
}

/// Whether the room history the core keeps holds every room message of a
/// run (then a room subscriber must get all of them).
fn rooms_complete(w: &World) -> bool {
    let day_ms = 24 * 60 * 60 * 1000;
    (w.config.room_resume_limit == 0 || w.config.room_resume_limit >= 1_000)
        && (w.config.room_max_age_ms == 0 || w.config.room_max_age_ms >= day_ms)
}

/// Rooms deliver at most QoS 1 (ROOMACK is cumulative); topic streams and
/// inboxes up to the subscription's QoS.
fn qos_cap(id: UserId, sub: QoS) -> QoS {
    if is_room(id.0) && !is_topic_stream(id.0) {
        sub.min(QoS::AtLeastOnce)
    } else {
        sub
    }
}

/// The QoS a device's subscriptions grant a topic (the highest matching
/// filter), `None` if none matches; `wild`: whether wildcard filters count
/// for a free-form topic.
fn granted(c: &SimMqtt, topic: &str, wild: bool) -> Option<QoS> {
    let free_form = is_free_form(topic);
    c.plan
        .filters
        .iter()
        .filter(|(f, _)| match Target::parse(f) {
            // A room is joined by naming it; wildcards never match rooms.
            Some(Target::Room(_)) => f == topic,
            _ if free_form && !wild && f.contains(['+', '#']) => false,
            _ => !topic.starts_with("room/") && mqtt::topic_matches(f, topic),
        })
        .map(|(_, q)| *q)
        .max()
}

/// The grants a message on `topic` stored at `ts_ms` may get: (certain,
/// possible). A wildcard filter over free-form topics matches only
/// messages stored since the gateway took the SUBSCRIBE (`wildcards.rs`),
/// a moment the client knows only within [sent, SUBACK]: a message stored
/// in between may be matched or not (`ts_ms` unknown: a QoS 0 message,
/// never stored).
fn grants(c: &SimMqtt, topic: &str, ts_ms: Option<u64>) -> (Option<QoS>, Option<QoS>) {
    let (without, with) = (granted(c, topic, false), granted(c, topic, true));
    match (ts_ms, c.subscribe_sent_ms, c.suback_ms) {
        _ if !is_free_form(topic) => (with, with),
        (Some(ts), _, Some(suback)) if ts >= suback => (with, with),
        (Some(ts), Some(sent), _) if ts < sent => (without, without),
        (Some(_), None, _) => (without, without),
        _ => (without, with),
    }
}

/// The stored time of the message with `payload` (`None`: not stored).
fn stored_ts(stored: &HashMap<UserId, Vec<MessageRecord>>, payload: &Bytes) -> Option<u64> {
    stored
        .values()
        .flatten()
        .find(|m| m.payload == *payload)
        .map(|m| m.ts_ms)
}

/// What must reach the device's application at least once: every stored
/// QoS 1/2 message after its SUBACK that its subscriptions match (rooms:
/// QoS 1 subscriptions, when the history keeps everything), with the QoS
/// it is delivered at.
fn expected(
    w: &World,
    c: &SimMqtt,
    stored: &HashMap<UserId, Vec<MessageRecord>>,
) -> Vec<(Bytes, QoS)> {
    let mut out = Vec::new();
    for (&id, log) in stored {
        let Some(&start) = c.starts.get(&id) else {
            continue;
        };
        if is_room(id.0) && !rooms_complete(w) {
            continue;
        }
        for m in log.iter().filter(|m| m.seq > start) {
            let own = m.from == c.plan.user && m.from_device == c.plan.device;
            let Some(sent) = w.mqtt.sent.get(&m.payload) else {
                continue; // check_stored reports it
            };
            let Some(sub) = grants(c, &sent.topic, Some(m.ts_ms)).0 else {
                continue;
            };
            let qos = qos_cap(id, sub).min(mqtt_qos(m.qos));
            if (own && !is_room(id.0)) || qos == QoS::AtMostOnce {
                continue;
            }
            out.push((m.payload.clone(), qos));
        }
    }
    out
}

fn mqtt_qos(q: surepush::proto::Qos) -> QoS {
    match q {
        surepush::proto::Qos::AtMostOnce => QoS::AtMostOnce,
        surepush::proto::Qos::AtLeastOnce => QoS::AtLeastOnce,
        surepush::proto::Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// Counts for the run's summary: (publishes, deliveries, QoS 2 repeats
/// recognised by packet id, deliveries on free-form topics).
pub fn summary(w: &World) -> (u64, u64, u64, u64) {
    let deliveries = w.mqtt.clients.iter().map(|c| c.got.len() as u64).sum();
    let on_topics = w
        .mqtt
        .clients
        .iter()
        .flat_map(|c| &c.got)
        .filter(|g| is_free_form(&g.topic))
        .count() as u64;
    let repeats = w
        .mqtt
        .clients
        .iter()
        .map(|c| u64::from(c.qos2_repeats))
        .sum();
    (w.mqtt.sent.len() as u64, deliveries, repeats, on_topics)
}

/// The MQTT guarantees, checked after quiescence (see the module docs).
pub fn check(w: &World) -> Result<(), String> {
    if w.plan.mqtt.is_none() {
        return Ok(());
    }
    let stored = w.mqtt_stored();
    for c in &w.mqtt.clients {
        if let Some(e) = c.errors.first() {
            return Err(e.clone());
        }
    }
    check_stored(w, &stored)?;
    for c in &w.mqtt.clients {
        check_deliveries(w, c, &stored).map_err(|e| format!("{}: {e}", c.who()))?;
    }
    Ok(())
}

/// Every QoS 1/2 publish acknowledged and stored as sent (QoS 2 once), in
/// the addressee's inbox or room and the sender's own inbox; nothing else
/// stored there.
fn check_stored(w: &World, stored: &HashMap<UserId, Vec<MessageRecord>>) -> Result<(), String> {
    for (id, log) in stored {
        super::numbered_from_one(log.iter().map(|m| m.seq))
            .map_err(|e| format!("{id}: stored message {e}"))?;
        for m in log {
            let sent = w
                .mqtt
                .sent
                .get(&m.payload)
                .ok_or_else(|| format!("{id}: stored {m:?}, never published"))?;
            let holder = m.inbox == sent.to || m.inbox == sent.user;
            if (m.from, m.from_device, m.to, mqtt_qos(m.qos))
                != (sent.user, sent.device, sent.to, sent.qos)
                || !holder
            {
                return Err(format!(
                    "{id}: seq {} is not what was published: {sent:?}",
                    m.seq.0
                ));
            }
        }
    }
    for c in &w.mqtt.clients {
        for (payload, sent) in w.mqtt.sent.iter().filter(|(_, s)| {
            (s.user, s.device) == (c.plan.user, c.plan.device) && s.qos != QoS::AtMostOnce
        }) {
            if !c.acked.contains(payload) {
                return Err(format!("{}: {sent:?} never acknowledged", c.who()));
            }
            let mut holders = vec![sent.to];
            if sent.to != sent.user && !is_room(sent.to.0) {
                holders.push(sent.user); // the own-inbox copy
            }
            for h in holders {
                let n = stored.get(&h).map_or(0, |log| {
                    log.iter().filter(|m| m.payload == *payload).count()
                });
                if n == 0 || (sent.qos == QoS::ExactlyOnce && n != 1) {
                    return Err(format!(
                        "{}: {:?} publish {sent:?} stored {n} times in {h}",
                        c.who(),
                        sent.qos
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One device's deliveries (see the module docs).
fn check_deliveries(
    w: &World,
    c: &SimMqtt,
    stored: &HashMap<UserId, Vec<MessageRecord>>,
) -> Result<(), String> {
    let mut count: HashMap<&Bytes, u32> = HashMap::new();
    let mut at_qos2: BTreeSet<&Bytes> = BTreeSet::new();
    // Per (connection, topic): the index in the stored order last used.
    let mut last: HashMap<(u32, &str), usize> = HashMap::new();
    for g in &c.got {
        let sent = w
            .mqtt
            .sent
            .get(&g.payload)
            .ok_or_else(|| format!("got {g:?}, never published"))?;
        let topic = sent.topic.as_str();
        if g.topic != topic {
            return Err(format!("got {g:?} on the wrong topic ({topic})"));
        }
        if c.plan.level.is_v5() && g.from != Some(sent.user.0) {
            return Err(format!("got {g:?}, published by {}", sent.user));
        }
        let (certain, possible) = grants(c, topic, stored_ts(stored, &g.payload));
        let possible = possible.ok_or_else(|| format!("got {g:?}, not subscribed"))?;
        let at = |sub: QoS| qos_cap(sent.to, sub).min(sent.qos);
        if g.qos != at(possible) && certain.map(at) != Some(g.qos) {
            return Err(format!(
                "got {g:?} at {:?}, expected {:?} (or {:?})",
                g.qos,
                at(possible),
                certain.map(at)
            ));
        }
        if !is_room(sent.to.0) && sent.user == c.plan.user && sent.device == c.plan.device {
            return Err(format!("got its own {g:?}"));
        }
        *count.entry(&g.payload).or_default() += 1;
        if g.qos == QoS::ExactlyOnce {
            at_qos2.insert(&g.payload);
        }
        if sent.qos == QoS::AtMostOnce {
            continue; // outside the sequence
        }
        // Within a connection, in the stored order of the inbox or room.
        let holder = if is_room(sent.to.0) {
            sent.to
        } else {
            c.plan.user
        };
        let log = stored.get(&holder).map_or(&[][..], Vec::as_slice);
        let key = (g.conn, g.topic.as_str());
        let after = last.get(&key).map_or(0, |i| i + 1);
        let at = (after..log.len())
            .find(|&i| log[i].payload == g.payload)
            .ok_or_else(|| format!("on connection {} {} came out of order", g.conn, g.topic))?;
        last.insert(key, at);
    }
    for (payload, n) in &count {
        let sent = &w.mqtt.sent[*payload];
        // A message delivered at QoS 2 (once) is delivered exactly once.
        if at_qos2.contains(payload) && *n != 1 {
            return Err(format!("QoS 2 {sent:?} delivered {n} times"));
        }
    }
    for (payload, _) in expected(w, c, stored) {
        if !count.contains_key(&payload) {
            return Err(format!("{:?} never delivered", w.mqtt.sent[&payload]));
        }
    }
    Ok(())
}

/// A packet in a trace line.
fn brief(p: &Packet) -> String {
    match p {
        Packet::Connect(c) => format!("CONNECT {}", c.client_id.as_str()),
        Packet::ConnAck(a) => format!("CONNACK present={} {:?}", a.session_present, a.code),
        Packet::Publish(p) => format!(
            "PUBLISH {} {:?} id={:?} dup={} {:?}",
            p.topic.as_str(),
            p.qos,
            p.packet_id.map(|i| i.get()),
            p.dup,
            p.payload
        ),
        Packet::PubAck(r) => format!("PUBACK {} {:?}", r.packet_id.get(), r.reason),
        Packet::PubRec(r) => format!("PUBREC {} {:?}", r.packet_id.get(), r.reason),
        Packet::PubRel(r) => format!("PUBREL {} {:?}", r.packet_id.get(), r.reason),
        Packet::PubComp(r) => format!("PUBCOMP {} {:?}", r.packet_id.get(), r.reason),
        Packet::Subscribe(_) => "SUBSCRIBE".into(),
        Packet::SubAck(a) => format!("SUBACK {:?}", a.reasons),
        other => format!("{:?}", other.packet_type()),
    }
}
