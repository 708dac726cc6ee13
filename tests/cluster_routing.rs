//! Three surepush processes and a real nats-server 2.15 on 127.0.0.1
//! (issue #20): sends, group copies and backend publishes cross nodes,
//! clients that land on the wrong node are redirected to their user's
//! node, and a receiving node killed with SIGKILL mid-traffic loses no
//! acknowledged message and stores none twice. Rooms span nodes: the
//! home node publishes each message once per node on the room's subject,
//! and subscribers everywhere survive kill -9 of their node or the home.

#[path = "../crates/cluster/tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use support::NatsServer;
use surepush::client::{BlockingClient, Event};
use surepush::proto::{ErrorCode, Qos, RoomPush, SendResult, Seq, SubResult, UserId, ROOM_BIT};

const PARTITIONS: u64 = 64;
const NODES: usize = 3;
const WAIT: Duration = Duration::from_secs(20);

/// A nats-server and three nodes, partition `p` on node `p % 3`.
struct Cluster {
    nodes: Vec<TestServer>,
    _nats: NatsServer,
}

impl Cluster {
    fn start() -> Cluster {
        let nats = NatsServer::start();
        let names: Vec<String> = (0..NODES).map(|n| format!("n{n}")).collect();
        common::cluster_init(&nats.url(), PARTITIONS, &names);
        let nodes = names
            .iter()
            .map(|name| common::cluster_node(&nats.url(), name, PARTITIONS, ""))
            .collect();
        Cluster { nodes, _nats: nats }
    }

    /// The node that owns `user` (the placement `init --nodes` wrote).
    fn node_of(user: u64) -> usize {
        common::node_of(PARTITIONS, NODES, user)
    }

    /// `count` users owned by node `node`, from `from` up.
    fn users_on(node: usize, from: u64, count: usize) -> Vec<u64> {
        common::ids_where(PARTITIONS, from, count, |p| p as usize % NODES == node)
    }

    /// Connects `user` through node `via` and follows the redirect to its
    /// node; waits until the session is live. Returns the messages replayed
    /// on the way.
    fn connect_replaying(
        &self,
        via: usize,
        user: u64,
        delivered: Option<Seq>,
    ) -> (BlockingClient, Vec<surepush::proto::Push>) {
        let node = &self.nodes[via];
        let mut c =
            BlockingClient::connect_routed(node.addr, node.client_config(user, 1), delivered, WAIT)
                .expect("connect");
        let mut replayed = Vec::new();
        loop {
            match c.next_event(WAIT).expect("io") {
                Some(Event::CaughtUp) => break,
                Some(Event::Message(p)) => replayed.push(p),
                Some(Event::Error(_) | Event::Disconnected(..)) | None => {
                    panic!("user {user} did not get a live session")
                }
                Some(_) => {}
            }
        }
        assert_eq!(
            c.peer_addr().expect("connected"),
            self.nodes[Cluster::node_of(user)].addr,
            "user {user} must end on its own node"
        );
        (c, replayed)
    }

    /// [`Cluster::connect_replaying`] for a user with nothing to replay.
    fn connect(&self, via: usize, user: u64, delivered: Option<Seq>) -> BlockingClient {
        let (c, replayed) = self.connect_replaying(via, user, delivered);
        assert!(replayed.is_empty(), "{replayed:?}");
        c
    }
}

/// Waits for the SENDACKs of `ids` (client message ids); returns each one's
/// result and inbox sequence.
fn acks(c: &mut BlockingClient, ids: &[u64]) -> BTreeMap<u64, (SendResult, Seq)> {
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left).expect("io") {
            Some(Event::SendAcked(a)) | Some(Event::SendFailed(a)) => {
                got.insert(a.client_msg_id, (a.result, a.seq));
            }
            Some(_) => {}
            None => panic!("{} of {} SENDACKs", got.len(), ids.len()),
        }
    }
    got
}

/// Collects `count` inbox messages (live pushes and replay pages).
fn receive(c: &mut BlockingClient, count: usize) -> Vec<surepush::proto::Push> {
    receive_more(c, Vec::new(), count)
}

/// Collects inbox messages after `got` until there are `count`.
fn receive_more(
    c: &mut BlockingClient,
    mut got: Vec<surepush::proto::Push>,
    count: usize,
) -> Vec<surepush::proto::Push> {
    let deadline = Instant::now() + WAIT;
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left).expect("io") {
            Some(Event::Message(p)) => got.push(p),
            Some(_) => {}
            None => panic!("{} of {count} messages", got.len()),
        }
    }
    got
}

/// Issue #20: a 1:1 send to a user on another node is stored there and
/// acknowledged after it is durable there, with its identity intact; a
/// group spanning the three nodes gets one copy per member; a backend
/// publish on a node that owns neither side reaches the addressee; a
/// client connecting to the wrong node is told where its user lives.
#[test]
fn sends_groups_and_publishes_cross_nodes_with_their_identity() {
    let cluster = Cluster::start();
    let sender = Cluster::users_on(0, 1, 1)[0];
    let (r1, r2) = (Cluster::users_on(1, 1, 1)[0], Cluster::users_on(2, 1, 1)[0]);

    // A raw connect to a node that does not own the user: DISCONNECT
    // WrongNode naming the owner's client address.
    let mut wrong = BlockingClient::connect(
        cluster.nodes[1].addr,
        cluster.nodes[1].client_config(sender, 9),
        None,
        WAIT,
    )
    .expect("connect");
    match wrong.next_event(WAIT).expect("io") {
        Some(Event::Disconnected(code, to)) => {
            assert_eq!(code, ErrorCode::WrongNode as u16);
            assert_eq!(to, cluster.nodes[0].addr.to_string());
        }
        other => panic!("expected a redirect, got {other:?}"),
    }

    let mut s = cluster.connect(2, sender, Some(Seq::ZERO));
    let mut c1 = cluster.connect(0, r1, Some(Seq::ZERO));
    let mut c2 = cluster.connect(1, r2, Some(Seq::ZERO));

    const N: usize = 20;
    let mut sent = Vec::new();
    for i in 0..N {
        for to in [r1, r2] {
            let payload = format!("m{i} {sender}->{to}");
            let id = s
                .send(UserId(to), Qos::AtLeastOnce, Bytes::from(payload.clone()))
                .expect("send");
            sent.push((id, to, payload));
        }
    }
    let ids: Vec<u64> = sent.iter().map(|(id, ..)| *id).collect();
    let acked = acks(&mut s, &ids);
    for (c, to) in [(&mut c1, r1), (&mut c2, r2)] {
        let got = receive(c, N);
        let expected: Vec<&(u64, u64, String)> = sent.iter().filter(|m| m.1 == to).collect();
        for (k, (p, (id, _, payload))) in got.iter().zip(expected).enumerate() {
            assert_eq!(p.to, UserId(to));
            assert_eq!(p.from, UserId(sender));
            assert_eq!(p.client_msg_id, *id);
            assert_eq!(p.payload, Bytes::from(payload.clone()));
            assert_eq!(p.seq, Seq(k as u64 + 1), "{to}'s inbox in send order");
            assert_eq!(
                acked[id],
                (SendResult::Stored, p.seq),
                "SENDACK names the seq"
            );
        }
    }

    // A group homed on some node, with a member on every node; the sender
    // is a member too (it gets its own-inbox copy as a member).
    let group_no = 11u64;
    let group = UserId(UserId::GROUP_BIT | group_no);
    let (status, body) = cluster.nodes[1].http(
        "POST",
        &format!("/v1/groups/{group_no}"),
        &format!(r#"{{"add": [{sender}, {r1}, {r2}]}}"#),
        true,
    );
    assert_eq!(status, 200, "{body}");
    let id = s
        .send(group, Qos::AtLeastOnce, Bytes::from_static(b"to the group"))
        .expect("send");
    assert_eq!(acks(&mut s, &[id])[&id].0, SendResult::Stored);
    for (c, seq) in [(&mut c1, Seq(N as u64 + 1)), (&mut c2, Seq(N as u64 + 1))] {
        let p = &receive(c, 1)[0];
        assert_eq!(
            (p.to, p.from, p.client_msg_id, p.seq, p.payload.clone()),
            (
                group,
                UserId(sender),
                id,
                seq,
                Bytes::from_static(b"to the group")
            )
        );
    }

    // A backend publish to r1 on node 2 (which owns neither r1 nor the
    // admin's publisher) is stored on r1's node and answered when durable.
    let (status, body) = cluster.nodes[2].http(
        "POST",
        "/v1/publish",
        &format!(r#"{{"to": {r1}, "payload": "from the backend", "from": 5, "id": 77}}"#),
        true,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(r#""seq":{}"#, N + 2)), "{body}");
    let p = &receive(&mut c1, 1)[0];
    assert_eq!(
        (p.to, p.from, p.client_msg_id, p.seq, p.payload.clone()),
        (
            UserId(r1),
            UserId(5),
            77,
            Seq(N as u64 + 2),
            Bytes::from_static(b"from the backend")
        )
    );
}

/// Issue #20: the receiving node is killed with SIGKILL while sends to it
/// are in flight, then restarted. Every send the sender saw acknowledged is
/// in the receiver's inbox exactly once; sends not yet acknowledged are
/// acknowledged once the node is back (the sender's link resends them; the
/// receiver's dedup window, rebuilt from its log, stops a second copy).
#[test]
fn a_receiving_node_killed_mid_traffic_loses_and_repeats_nothing() {
    let mut cluster = Cluster::start();
    let sender = Cluster::users_on(0, 1, 1)[0];
    let receiver = Cluster::users_on(1, 1, 1)[0];
    let mut s = cluster.connect(0, sender, Some(Seq::ZERO));

    const BEFORE: usize = 200;
    const AFTER: usize = 50;
    let mut ids = Vec::new();
    let mut acked = BTreeMap::new();
    for i in 0..BEFORE {
        let payload = Bytes::from(format!("m{i}"));
        ids.push(
            s.send(UserId(receiver), Qos::AtLeastOnce, payload)
                .expect("send"),
        );
        // Read what is there without waiting, so acknowledgements arrive
        // while the node dies.
        while let Some(e) = s.next_event(Duration::ZERO).expect("io") {
            if let Event::SendAcked(a) = e {
                acked.insert(a.client_msg_id, a.seq);
            }
        }
        if i == BEFORE / 2 {
            cluster.nodes[1].kill9();
        }
    }
    let acked_before_restart = acked.len();
    assert!(
        acked_before_restart < BEFORE,
        "the kill came too late to cut traffic ({acked_before_restart} acknowledged)"
    );
    cluster.nodes[1].spawn();
    for i in BEFORE..BEFORE + AFTER {
        let payload = Bytes::from(format!("m{i}"));
        ids.push(
            s.send(UserId(receiver), Qos::AtLeastOnce, payload)
                .expect("send"),
        );
    }
    let missing: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !acked.contains_key(id))
        .collect();
    for (id, (result, seq)) in acks(&mut s, &missing) {
        assert!(
            matches!(result, SendResult::Stored | SendResult::Duplicate),
            "{id}: {result:?}"
        );
        acked.insert(id, seq);
    }
    assert_eq!(acked.len(), ids.len());

    let (mut r, replayed) = cluster.connect_replaying(1, receiver, Some(Seq::ZERO));
    let got = receive_more(&mut r, replayed, ids.len());
    let mut seen = BTreeMap::new();
    for (k, p) in got.iter().enumerate() {
        assert_eq!(p.seq, Seq(k as u64 + 1), "contiguous inbox");
        assert_eq!((p.to, p.from), (UserId(receiver), UserId(sender)));
        let i = ids
            .iter()
            .position(|id| *id == p.client_msg_id)
            .expect("a message the sender sent");
        assert_eq!(p.payload, Bytes::from(format!("m{i}")), "payload of {i}");
        assert_eq!(acked[&p.client_msg_id], p.seq, "SENDACK names its seq");
        assert!(
            seen.insert(p.client_msg_id, p.seq).is_none(),
            "duplicate {i}"
        );
    }
    assert_eq!(seen.len(), ids.len(), "every acknowledged message is there");
    // Nothing after the last one either.
    assert!(
        r.wait_for(Duration::from_millis(300), |e| matches!(
            e,
            Event::Message(_)
        ))
        .expect("io")
        .is_none(),
        "a message beyond the sent ones"
    );
}

/// A paho-mqtt 1.6.1 MQTT 5 client (Debian's python3-paho-mqtt) connects
/// to `port`; prints the CONNACK's reason code and Server Reference.
const PAHO_CONNACK: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port, token = int(sys.argv[1]), sys.argv[2]
done = threading.Event()
def on_connect(c, userdata, flags, rc, properties=None):
    ref = getattr(properties, "ServerReference", "") if properties else ""
    print(f"{int(rc.value) if hasattr(rc, 'value') else int(rc)} {ref}", flush=True)
    done.set()
c = mqtt.Client(client_id="redirected", protocol=mqtt.MQTTv5)
c.username_pw_set("u", token)
c.on_connect = on_connect
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
ok = done.wait(10)
c.loop_stop()
sys.exit(0 if ok else 3)
"#;

/// Issue #20: an MQTT 5 client whose user lives on another node gets
/// CONNACK 0x9C (Use another server) with that node's MQTT address as the
/// Server Reference; on its own node it is accepted.
#[test]
fn mqtt5_clients_are_sent_to_their_users_node() {
    let cluster = Cluster::start();
    let user = Cluster::users_on(2, 1, 1)[0];
    let paho = |node: &TestServer| {
        let out = Command::new("/usr/bin/python3")
            .args(["-c", PAHO_CONNACK])
            .arg(node.mqtt.port().to_string())
            .arg(node.token(user, 1))
            .output()
            .expect("run /usr/bin/python3 (install python3-paho-mqtt)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let elsewhere = paho(&cluster.nodes[0]);
    assert_eq!(
        elsewhere,
        format!("156 {}", cluster.nodes[2].mqtt),
        "0x9C with the owner's MQTT address"
    );
    assert_eq!(paho(&cluster.nodes[2]), "0", "accepted on its own node");
}

// ----- rooms across nodes ---------------------------------------------------

/// A room homed on node `node` (its partition's owner).
fn room_on(node: usize) -> u64 {
    (1..)
        .map(|k| ROOM_BIT | k)
        .find(|r| Cluster::node_of(*r) == node)
        .expect("some room lives on every node")
}

/// One room message as its publisher saw it acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Published {
    from: UserId,
    client_msg_id: u64,
    payload: Bytes,
}

/// Publishes `payloads` into `room` from `c` at QoS 1 and returns each
/// one by the room sequence its SENDACK names.
fn publish_room(
    c: &mut BlockingClient,
    user: u64,
    room: u64,
    payloads: &[String],
) -> BTreeMap<u64, Published> {
    let ids: Vec<u64> = payloads
        .iter()
        .map(|p| {
            c.send(UserId(room), Qos::AtLeastOnce, Bytes::from(p.clone()))
                .expect("send")
        })
        .collect();
    let acked = acks(c, &ids);
    ids.iter()
        .zip(payloads)
        .map(|(id, payload)| {
            let (result, seq) = acked[id];
            assert_eq!(result, SendResult::Stored, "{payload}");
            let p = Published {
                from: UserId(user),
                client_msg_id: *id,
                payload: Bytes::from(payload.clone()),
            };
            (seq.0, p)
        })
        .collect()
}

/// Room messages on `c` until sequence `until`, in arrival order.
fn room_messages(c: &mut BlockingClient, until: u64) -> Vec<RoomPush> {
    let mut got: Vec<RoomPush> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.last().is_none_or(|p| p.seq.0 < until) {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left).expect("io") {
            Some(Event::RoomMessage(p)) => got.push(p),
            Some(_) => {}
            None => panic!("room messages stopped at {:?}", got.last().map(|p| p.seq)),
        }
    }
    got
}

/// `got` is exactly sequences `from..=to` of the room, in order, each with
/// the identity its publisher's SENDACK gave it.
fn assert_room(got: &[RoomPush], from: u64, to: u64, room: &BTreeMap<u64, Published>) {
    let seqs: Vec<u64> = got.iter().map(|p| p.seq.0).collect();
    assert_eq!(seqs, (from..=to).collect::<Vec<_>>(), "in order, once each");
    for p in got {
        let want = &room[&p.seq.0];
        assert_eq!(
            (p.from, p.payload.clone()),
            (want.from, want.payload.clone()),
            "seq {}",
            p.seq.0
        );
    }
}

/// Subscribes `c` to `room` at QoS 1 from now; returns the SUBACK.
fn subscribe_now(c: &mut BlockingClient, room: u64) -> surepush::proto::SubAck {
    c.subscribe(room, Qos::AtLeastOnce).expect("subscribe");
    match c
        .wait_for(WAIT, |e| matches!(e, Event::Subscribed(_)))
        .expect("io")
    {
        Some(Event::Subscribed(a)) => a,
        other => panic!("no SUBACK: {other:?}"),
    }
}

/// A mosquitto_sub (MQTT 3.1.1) following `room` on its user's node until
/// it has `count` messages; yields its `room/N payload` lines.
struct MqttRoomReader {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl MqttRoomReader {
    fn start(node: &TestServer, user: u64, room: u64, count: usize) -> MqttRoomReader {
        use std::io::BufRead;
        let topic = format!("room/{}", room & !ROOM_BIT);
        // Line-buffered: its debug lines (the SUBACK) are not flushed
        // into a pipe otherwise.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &node.mqtt.port().to_string()])
            .args(["-u", "x", "-P", &node.token(user, 1)])
            .args(["-i", &format!("room-reader-{user}")])
            .args(["-t", &topic, "-q", "1", "-v", "-d"])
            .args(["-C", &count.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub (apt-get install mosquitto-clients)");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let reader = MqttRoomReader { child, lines };
        // Its SUBACK follows the room's own (the node asked the home node).
        reader.next_where(|l| l.contains("received SUBACK"));
        reader
    }

    fn next_where(&self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("mosquitto_sub output");
            if want(&line) {
                return line;
            }
        }
    }

    /// The next `count` payloads.
    fn payloads(&self, topic: &str, count: usize) -> Vec<String> {
        let prefix = format!("{topic} ");
        (0..count)
            .map(|_| {
                let line = self.next_where(|l| l.starts_with(&prefix));
                line[prefix.len()..].to_string()
            })
            .collect()
    }
}

impl Drop for MqttRoomReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue #20: a room homed on node 0 with native subscribers on every node
/// and MQTT subscribers on the two others; publishers on the non-home
/// nodes and the admin API of another node publish into it. Every
/// subscriber gets every message once, in the room's order, with the
/// identity its publisher's SENDACK gave it; and each room message crossed
/// NATS once per node, not once per subscriber.
#[test]
fn a_room_spans_nodes_and_crosses_nats_once_per_node() {
    let cluster = Cluster::start();
    let room = room_on(0);
    const PER_PUBLISHER: usize = 25;
    const TOTAL: usize = 2 * PER_PUBLISHER + 1;

    let mut subs: Vec<BlockingClient> = (0..NODES)
        .flat_map(|n| Cluster::users_on(n, 100, 3))
        .map(|user| {
            let mut c = cluster.connect(0, user, Some(Seq::ZERO));
            let ack = subscribe_now(&mut c, room);
            assert_eq!((ack.result, ack.first), (SubResult::Ok, Seq(1)));
            c
        })
        .collect();
    let mqtt: Vec<MqttRoomReader> = [1, 2]
        .into_iter()
        .map(|n| {
            let user = Cluster::users_on(n, 500, 1)[0];
            MqttRoomReader::start(&cluster.nodes[n], user, room, TOTAL)
        })
        .collect();
    let received_before: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.counter("surepush_cluster_room_messages_received_total"))
        .collect();

    let (p1, p2) = (Cluster::users_on(1, 1, 1)[0], Cluster::users_on(2, 1, 1)[0]);
    let mut c1 = cluster.connect(1, p1, Some(Seq::ZERO));
    let mut c2 = cluster.connect(2, p2, Some(Seq::ZERO));
    let mut published = BTreeMap::new();
    for round in 0..PER_PUBLISHER {
        for (c, user) in [(&mut c1, p1), (&mut c2, p2)] {
            let payload = format!("r{round} from {user}");
            published.extend(publish_room(c, user, room, &[payload]));
        }
    }
    // The backend, on node 2, publishes by room number.
    let (status, body) = cluster.nodes[2].http(
        "POST",
        "/v1/publish",
        &format!(
            r#"{{"room": {}, "payload": "from the backend", "from": 5, "id": 99}}"#,
            room & !ROOM_BIT
        ),
        true,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(r#""seq":{TOTAL}"#)), "{body}");
    published.insert(
        TOTAL as u64,
        Published {
            from: UserId(5),
            client_msg_id: 99,
            payload: Bytes::from_static(b"from the backend"),
        },
    );
    assert_eq!(published.len(), TOTAL, "one room sequence: {published:?}");

    for c in &mut subs {
        let got = room_messages(c, TOTAL as u64);
        assert_room(&got, 1, TOTAL as u64, &published);
    }
    let topic = format!("room/{}", room & !ROOM_BIT);
    let in_order: Vec<String> = published
        .values()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    for reader in &mqtt {
        assert_eq!(reader.payloads(&topic, TOTAL), in_order, "MQTT subscriber");
    }

    // Node 0 published each message once; nodes 1 and 2 (four subscribers
    // each) received each once; node 0 takes none from the subject.
    for (n, before) in received_before.iter().enumerate() {
        let received =
            cluster.nodes[n].counter("surepush_cluster_room_messages_received_total") - before;
        let want = if n == 0 { 0 } else { TOTAL as u64 };
        assert_eq!(received, want, "node {n}: room messages from NATS");
    }
    assert_eq!(
        cluster.nodes[0].counter("surepush_cluster_room_messages_published_total"),
        TOTAL as u64
    );
}

/// Issue #20: kill -9 of a node with subscribers of a room homed
/// elsewhere, then of the room's home node, each mid-traffic and then
/// restarted. Subscribers resume where they were: every acknowledged
/// message once, in order, with its identity; subscribers whose node
/// stayed up keep their connection and repair what they missed from the
/// home node. Replays are larger than one cross-node reply.
#[test]
fn a_room_survives_kill9_of_a_subscriber_node_and_of_its_home() {
    let mut cluster = Cluster::start();
    let room = room_on(0);
    let publisher = Cluster::users_on(1, 1, 1)[0];
    // Subscribers: two on node 1 (stays up), one on node 2, one on node 0.
    let users: Vec<u64> = [1, 1, 2, 0]
        .into_iter()
        .enumerate()
        .map(|(i, n)| Cluster::users_on(n, 100, 2)[i % 2])
        .collect();
    let mut subs: Vec<BlockingClient> = users
        .iter()
        .map(|u| {
            let mut c = cluster.connect(0, *u, Some(Seq::ZERO));
            subscribe_now(&mut c, room);
            c
        })
        .collect();
    let mut got: Vec<Vec<RoomPush>> = vec![Vec::new(); subs.len()];
    let mut p = cluster.connect(1, publisher, Some(Seq::ZERO));
    // 2 KB each: a resume replays more than one reply carries (32 KiB of
    // frames), so the subscriber's node asks again where a reply stopped.
    let payloads = |r: std::ops::Range<usize>| -> Vec<String> {
        r.map(|i| format!("room message {i} {}", "x".repeat(2000)))
            .collect()
    };
    let mut published = publish_room(&mut p, publisher, room, &payloads(0..20));
    for (c, got) in subs.iter_mut().zip(&mut got) {
        got.extend(room_messages(c, 20));
    }

    // Node 2 (subscriber 2) dies while messages 20..40 go on.
    let mut ids = Vec::new();
    for (i, payload) in payloads(20..40).into_iter().enumerate() {
        ids.push((
            p.send(UserId(room), Qos::AtLeastOnce, Bytes::from(payload.clone()))
                .expect("send"),
            payload,
        ));
        if i == 5 {
            cluster.nodes[2].kill9();
        }
    }
    let only: Vec<u64> = ids.iter().map(|(id, _)| *id).collect();
    for ((id, payload), (_, (result, seq))) in ids.iter().zip(acks(&mut p, &only)) {
        assert_eq!(result, SendResult::Stored, "{payload}");
        let msg = Published {
            from: UserId(publisher),
            client_msg_id: *id,
            payload: Bytes::from(payload.clone()),
        };
        published.insert(seq.0, msg);
    }
    cluster.nodes[2].spawn();
    let away = subs.remove(2).into_session();
    let back = BlockingClient::resume(cluster.nodes[2].addr, away, WAIT)
        .expect("resume on the restarted node");
    subs.insert(2, back);

    // The home node dies while messages 40..60 are sent: those not yet
    // acknowledged wait on node 1 and are stored once it is back.
    let mut ids = Vec::new();
    for (i, payload) in payloads(40..60).into_iter().enumerate() {
        ids.push((
            p.send(UserId(room), Qos::AtLeastOnce, Bytes::from(payload.clone()))
                .expect("send"),
            payload,
        ));
        if i == 5 {
            cluster.nodes[0].kill9();
        }
    }
    cluster.nodes[0].spawn();
    let only: Vec<u64> = ids.iter().map(|(id, _)| *id).collect();
    let acked = acks(&mut p, &only);
    for (id, payload) in &ids {
        let (result, seq) = acked[id];
        assert!(
            matches!(result, SendResult::Stored | SendResult::Duplicate),
            "{payload}: {result:?}"
        );
        let msg = Published {
            from: UserId(publisher),
            client_msg_id: *id,
            payload: Bytes::from(payload.clone()),
        };
        assert!(published.insert(seq.0, msg).is_none(), "seq {seq:?} twice");
    }
    let away = subs.remove(3).into_session();
    let back = BlockingClient::resume(cluster.nodes[0].addr, away, WAIT)
        .expect("resume on the restarted home node");
    subs.insert(3, back);
    // One more after both restarts: the last one shows every subscriber
    // is live again (and lets node 1 see any hole the home node left).
    published.extend(publish_room(&mut p, publisher, room, &payloads(60..61)));
    let last = published.len() as u64;
    assert_eq!(
        published.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );

    for (k, (c, got)) in subs.iter_mut().zip(&mut got).enumerate() {
        let from = got.last().map_or(1, |p| p.seq.0 + 1);
        got.extend(room_messages(c, last));
        assert_eq!(from, 21, "subscriber {k} had 1..=20 before the kills");
        assert_room(got, 1, last, &published);
    }
}
