//! MQTT 3.1.1 clients of another node's user are relayed byte for byte to
//! that node (issue #20, docs/CLUSTER.md "Connections land anywhere"):
//! two surepush processes and a real nats-server 2.15 on 127.0.0.1, every
//! user owned by node 1, every MQTT client connected to node 0. Real
//! clients (mosquitto_pub/sub -V mqttv311, paho-mqtt) publish and
//! subscribe through the relay with their identities checked, a QoS 1
//! persistent session resumes through it, and killing the owner node
//! closes the relayed connections.

#[path = "../crates/cluster/tests/support/mod.rs"]
mod support;

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use support::NatsServer;
use surepush::client::{BlockingClient, Event};
use surepush::proto::{Qos, SendResult, UserId};

const PARTITIONS: u64 = 64;
const WAIT: Duration = Duration::from_secs(20);

/// A nats-server and two nodes, partition `p` on node `p % 2`; node 0
/// has a WebSocket listener too.
struct Cluster {
    nodes: Vec<TestServer>,
    ws_port: u16,
    _nats: NatsServer,
}

impl Cluster {
    fn start() -> Cluster {
        let nats = NatsServer::start();
        let names = ["n0", "n1"];
        common::cluster_init(&nats.url(), PARTITIONS, &names);
        let ws_port = surepush::server::limits::free_loopback_port().expect("a free port");
        let nodes = names
            .iter()
            .map(|name| {
                let ws = match *name {
                    "n0" => {
                        format!("[websocket]\nenabled = true\nlisten = \"127.0.0.1:{ws_port}\"\n")
                    }
                    _ => String::new(),
                };
                common::cluster_node(&nats.url(), name, PARTITIONS, &ws)
            })
            .collect();
        Cluster {
            nodes,
            ws_port,
            _nats: nats,
        }
    }

    /// `count` users owned by node `node`, from `from` up.
    fn users_on(node: usize, from: u64, count: usize) -> Vec<u64> {
        common::ids_where(PARTITIONS, from, count, |p| p as usize % 2 == node)
    }
}

/// Runs tests/mqtt/paho_check.py's `scenario` at MQTT 3.1.1 against
/// `port` as users `a` and `b` of `owner`.
fn paho(
    owner: &TestServer,
    port: u16,
    scenario: &str,
    (a, b): (u64, u64),
    extra: &[&str],
) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/mqtt/paho_check.py"
        ))
        .args(["--port", &port.to_string(), "--scenario", scenario])
        .args(["--version", "311"])
        .args([
            "--token-a",
            &owner.token(a, 1),
            "--token-b",
            &owner.token(b, 1),
        ])
        .args(["--user-a", &a.to_string(), "--user-b", &b.to_string()])
        .args(extra)
        .output()
        .expect("run /usr/bin/python3 (install python3-paho-mqtt)");
    common::assert_ok(&out, scenario);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Issue #20: MQTT 3.1.1 clients whose users live on node 1 connect to
/// node 0 and are served through its relay: paho's round trip at QoS
/// 0/1/2, a mosquitto_sub following a user's inbox gets exactly what
/// mosquitto_pub (relayed as well) and a native client on the other node
/// sent it, in order, paho over WebSocket as well, and a QoS 1 persistent session created through the
/// relay resumes through it with what arrived while it was away.
#[test]
fn mqtt311_clients_are_relayed_to_their_users_node() {
    let cluster = Cluster::start();
    let (relay, owner) = (&cluster.nodes[0], &cluster.nodes[1]);
    let users = Cluster::users_on(1, 1, 3);
    let (a, b, c) = (users[0], users[1], users[2]);
    let port = relay.mqtt.port();

    paho(owner, port, "roundtrip", (a, b), &[]);
    // MQTT over WebSocket: the relay carries the unframed MQTT bytes to
    // the owner's plain MQTT listener.
    let ws = ["--transport", "websockets"];
    paho(owner, cluster.ws_port, "roundtrip", (a, b), &ws);

    // A subscriber on b's inbox, through the relay; line-buffered so its
    // debug lines (the SUBACK) reach the pipe at once.
    let topic = format!("user/{b}");
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-V", "mqttv311"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-u", "x", "-P", &owner.token(b, 1), "-i", "relayed-sub"])
        .args(["-t", &topic, "-q", "1", "-v", "-d", "-C", "6"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run mosquitto_sub (apt-get install mosquitto-clients)");
    let lines = lines_of(sub.stdout.take().expect("piped"));
    let next_line = || lines.recv_timeout(WAIT).expect("mosquitto_sub output");
    while !next_line().contains("received SUBACK") {}
    assert_eq!(relay.counter("surepush_cluster_relayed_connections"), 1);

    let publish = |payload: &str| {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311"])
            .args(["-u", "x", "-P", &owner.token(a, 1), "-i", "relayed-pub"])
            .args(["-t", &topic, "-q", "1", "-m", payload])
            .output()
            .expect("run mosquitto_pub");
        common::assert_ok(&out, "mosquitto_pub");
    };
    let mut sent = Vec::new();
    for i in 0..3 {
        let p = format!("from-a-{i}");
        publish(&p);
        sent.push(p);
    }
    // A native sender on node 0 (its user lives there) to b on node 1.
    let native = Cluster::users_on(0, 1, 1)[0];
    let mut n =
        BlockingClient::connect_routed(relay.addr, relay.client_config(native, 1), None, WAIT)
            .expect("native sender");
    for i in 0..3u64 {
        let p = format!("from-native-{i}");
        n.send(UserId(b), Qos::AtLeastOnce, Bytes::from(p.clone()))
            .expect("send");
        loop {
            match n.next_event(WAIT).expect("io") {
                Some(Event::SendAcked(ack)) => {
                    assert_eq!(ack.result, SendResult::Stored);
                    break;
                }
                Some(Event::SendFailed(ack)) => panic!("refused: {ack:?}"),
                Some(_) => {}
                None => panic!("no SENDACK"),
            }
        }
        sent.push(p);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let line = next_line();
        if line.starts_with(&format!("{topic} ")) {
            got.push(line);
        }
    }
    let want: Vec<String> = sent.iter().map(|p| format!("{topic} {p}")).collect();
    assert_eq!(got, want, "b's inbox through the relay, in order");
    assert!(sub.wait().expect("mosquitto_sub").success());
    assert!(relay.counter("surepush_cluster_relayed_connections_opened_total") >= 5);

    // A persistent QoS 1 session created through the relay, messages while
    // it is away, and its resumption through the relay.
    let phase1 = paho(owner, port, "persistent", (a, c), &["--phase", "1"]);
    let sent: Vec<String> = phase1
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| serde_json::from_value(v["sent"].clone()).ok())
        .expect("phase 1 prints what it sent");
    assert_eq!(sent.len(), 5, "{phase1}");
    paho(
        owner,
        port,
        "persistent",
        (a, c),
        &["--phase", "2", "--expect", &sent.join(",")],
    );
}

/// The lines a child writes, as they come.
fn lines_of(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Issue #20: killing the owner node closes the connections relayed to it
/// (the client reconnects and is told the node is unavailable), and the
/// relay's gauge goes back to zero.
#[test]
fn a_relayed_client_is_closed_when_its_node_dies() {
    let mut cluster = Cluster::start();
    let user = Cluster::users_on(1, 1, 1)[0];
    let token = cluster.nodes[1].token(user, 1);
    let mut socket =
        std::net::TcpStream::connect(cluster.nodes[0].mqtt).expect("connect to node 0");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
        .write_all(&common::mqtt311_connect("relayed-raw", &token, 60))
        .expect("CONNECT");
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(
        connack,
        [0x20, 2, 0, 0],
        "accepted by the owner through the relay"
    );
    assert_eq!(
        cluster.nodes[0].counter("surepush_cluster_relayed_connections"),
        1
    );

    cluster.nodes[1].kill9();
    let mut rest = Vec::new();
    match socket.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "nothing after the CONNACK: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let deadline = Instant::now() + WAIT;
    while cluster.nodes[0].counter("surepush_cluster_relayed_connections") != 0 {
        assert!(
            Instant::now() < deadline,
            "the relay still counts the closed connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The relay preamble (docs/CLUSTER.md "Connections land anywhere"): a
/// PROXY protocol v2 header with the `surepush-relay` TLV, which a relaying
/// node writes before the client's bytes.
const RELAY_PREAMBLE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x11\xE5\x00\x0Esurepush-relay";

/// Writes `bytes` to `node`'s MQTT listener; returns the 4-byte CONNACK.
fn connack_for(node: &TestServer, bytes: &[u8]) -> [u8; 4] {
    let mut socket = std::net::TcpStream::connect(node.mqtt).expect("connect");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket.write_all(bytes).expect("write");
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).expect("CONNACK");
    connack
}

/// Issue #20 (relay loop guard): a connection relayed to a node that does
/// not own its user — two nodes disagreeing on the owner while a move is
/// half seen — is refused with CONNACK 0x03 and never relayed again; the
/// owner serves a relayed connection as any other, and a client's own
/// connection to the wrong node is still relayed.
#[test]
fn a_relayed_connection_for_a_user_not_owned_here_is_refused_not_relayed_again() {
    let cluster = Cluster::start();
    let user = Cluster::users_on(0, 1, 1)[0];
    let token = cluster.nodes[0].token(user, 1);
    let connect = common::mqtt311_connect("loop", &token, 60);
    let relayed: Vec<u8> = [RELAY_PREAMBLE, &connect].concat();

    // As a node that wrongly believed node 1 owns the user would relay it.
    assert_eq!(
        connack_for(&cluster.nodes[1], &relayed),
        [0x20, 2, 0, 0x03],
        "refused as unavailable"
    );
    let refused = "surepush_cluster_relays_refused_total";
    let opened = "surepush_cluster_relayed_connections_opened_total";
    assert_eq!(cluster.nodes[1].counter(refused), 1);
    assert_eq!(cluster.nodes[1].counter(opened), 0, "not relayed again");
    assert_eq!(cluster.nodes[0].counter(opened), 0);

    // The owner takes a relayed connection as any other.
    assert_eq!(connack_for(&cluster.nodes[0], &relayed), [0x20, 2, 0, 0]);
    // A client's own connection to node 1 is relayed once, to node 0.
    assert_eq!(connack_for(&cluster.nodes[1], &connect), [0x20, 2, 0, 0]);
    assert_eq!(cluster.nodes[1].counter(opened), 1);
    assert_eq!(cluster.nodes[1].counter(refused), 1);
    assert_eq!(cluster.nodes[0].counter(refused), 0);
}
