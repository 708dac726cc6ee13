//! Three surepush processes and a real nats-server 2.15 on 127.0.0.1
//! (issue #20): sends, group copies and backend publishes cross nodes,
//! clients that land on the wrong node are redirected to their user's
//! node, and a receiving node killed with SIGKILL mid-traffic loses no
//! acknowledged message and stores none twice.

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
use surepush::cluster::PartitionCount;
use surepush::proto::{ErrorCode, Qos, SendResult, Seq, UserId};

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
        let out = Command::new(env!("CARGO_BIN_EXE_surepush"))
            .args(["cluster", "init", "--nats", &nats.url()])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--nodes", &names.join(",")])
            .output()
            .expect("run surepush cluster init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nodes = names
            .iter()
            .map(|name| {
                let top = format!(
                    "[cluster]\nnats = \"{}\"\nnode_id = \"{name}\"\npartitions = {PARTITIONS}\n",
                    nats.url()
                );
                let mut node = TestServer::unstarted(2, &top, "");
                node.spawn();
                node
            })
            .collect();
        Cluster { nodes, _nats: nats }
    }

    /// The node that owns `user` (the placement `init --nodes` wrote).
    fn node_of(user: u64) -> usize {
        let p = PartitionCount::new(PARTITIONS)
            .expect("valid")
            .partition_of_wire_id(user);
        p.0 as usize % NODES
    }

    /// `count` users owned by node `node`, from `from` up.
    fn users_on(node: usize, from: u64, count: usize) -> Vec<u64> {
        (from..)
            .filter(|u| Cluster::node_of(*u) == node)
            .take(count)
            .collect()
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
