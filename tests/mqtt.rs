//! The MQTT front end against real clients: paho-mqtt (Python), the
//! mosquitto command-line clients, our SDK on the native port, and raw
//! packets for the exact reactions the specs require.
//!
//! Needs `/usr/bin/python3` with paho-mqtt and `mosquitto_pub`/`mosquitto_sub`
//! (Debian: python3-paho-mqtt, mosquitto-clients; `.ci/run` installs them).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{next_message, TestServer};
use surepush::mqtt::{
    encode, ConnAck, Connect, Decoder, MqttString, Packet, PacketId, Properties, ProtocolLevel,
    PubReply, Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use surepush::proto::{Qos, UserId};

const V311: ProtocolLevel = ProtocolLevel::V311;
const V5: ProtocolLevel = ProtocolLevel::V5;

/// A raw MQTT connection speaking surepush's own codec.
struct Raw {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    level: ProtocolLevel,
}

impl Raw {
    fn open(addr: SocketAddr, level: ProtocolLevel) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            decoder: Decoder::new(Some(level), 1 << 20),
            buf: BytesMut::new(),
            level,
        }
    }

    /// Opens and sends CONNECT; returns the connection and its CONNACK.
    fn connect(addr: SocketAddr, level: ProtocolLevel, token: &str, clean: bool) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr, level);
        raw.send(&connect_packet(level, token, clean));
        match raw.recv() {
            Some(Packet::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, self.level, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet; `None` once the server closed the connection.
    fn recv(&mut self) -> Option<Packet> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .expect("server sends valid MQTT")
            {
                return Some(p);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no packet from the server: {e}"),
            }
        }
    }

    fn subscribe(&mut self, id: u16, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            filters: vec![Subscription {
                filter: MqttString::from(filter),
                options: SubscriptionOptions::qos(qos),
            }],
            properties: Properties::default(),
        }));
        match self.recv() {
            Some(Packet::SubAck(a)) => assert_eq!(a.reasons, vec![ReasonCode(qos as u8)]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn connect_packet(level: ProtocolLevel, token: &str, clean: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol_level: level,
        clean_start: clean,
        // Above the native default (30 s): MQTT clients keep theirs.
        keep_alive: 90,
        client_id: MqttString::from("raw"),
        will: None,
        // v3.1.1 allows a password only with a user name; ours is ignored.
        username: Some(MqttString::from("x")),
        password: Some(Bytes::copy_from_slice(token.as_bytes())),
        properties: Properties::default(),
    }))
}

fn publish(topic: &str, qos: QoS, id: Option<u16>, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: MqttString::from(topic),
        packet_id: id.map(pid),
        payload: Bytes::from_static(payload),
        properties: Properties::default(),
    })
}

fn paho(server: &TestServer, scenario: &str, extra: &[&str]) -> Output {
    common::paho_check(server, server.mqtt.port(), scenario, extra)
}

#[test]
fn paho_clients_get_qos_0_1_2_wildcards_rooms_retained_and_wills() {
    // Two shards: the accepting shard hands most connections over.
    let server = TestServer::start(2, "");
    for scenario in ["roundtrip", "wildcard", "room", "retained", "will"] {
        let out = paho(&server, scenario, &["--room", "31"]);
        common::assert_ok(&out, scenario);
    }
}

#[test]
fn a_persistent_session_gets_what_arrived_while_away_also_across_kill_9() {
    let mut server = TestServer::start(2, "");
    for (version, kill) in [("311", false), ("5", false), ("311", true), ("5", true)] {
        let phase1 = paho(
            &server,
            "persistent",
            &["--phase", "1", "--version", version],
        );
        common::assert_ok(&phase1, "persistent phase 1");
        let line = String::from_utf8_lossy(&phase1.stdout).to_string();
        let sent: Vec<String> = line
            .split('"')
            .filter(|s| s.starts_with("p-"))
            .map(str::to_string)
            .collect();
        assert_eq!(sent.len(), 5, "phase 1 printed {line}");
        if kill {
            server.kill9();
            server.spawn();
        }
        let expect = sent.join(",");
        let args = ["--phase", "2", "--version", version, "--expect", &expect];
        let phase2 = paho(&server, "persistent", &args);
        common::assert_ok(
            &phase2,
            &format!("persistent phase 2 (v{version}, kill -9: {kill})"),
        );
    }
}

#[test]
fn mosquitto_command_line_clients_round_trip_at_every_qos() {
    let server = TestServer::start(1, "");
    let port = server.mqtt.port().to_string();
    let b = server.token(5002, 1);
    let sub = |extra: &[&str]| {
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", "x", "-P", &b])
            .args(["-t", "user/5002", "-q", "2", "-v"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)")
    };
    let a = server.token(5001, 1);
    let publish = |qos: &str, msg: &str| {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", "x", "-P", &a])
            .args(["-t", "user/5002", "-q", qos, "-m", msg])
            .output()
            .expect("mosquitto_pub");
        common::assert_ok(&out, "mosquitto_pub");
    };
    // A persistent session: registered, then offline while QoS 1 and 2
    // messages arrive, then collected.
    let register = sub(&["-c", "-i", "msub", "-W", "1"])
        .wait_with_output()
        .unwrap();
    assert!(register.stdout.is_empty());
    publish("1", "offline-1");
    publish("2", "offline-2");
    let out = sub(&["-c", "-i", "msub", "-C", "2", "-W", "20"])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["user/5002 offline-1", "user/5002 offline-2"]
    );
    // QoS 0 reaches live subscribers only: publish until the subscriber
    // (which exits after one message) has one.
    let mut live = sub(&["-C", "1", "-W", "20"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while live.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "QoS 0 never reached the live subscriber"
        );
        publish("0", "live-0");
    }
    let out = live.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "user/5002 live-0"
    );
}

/// Issue #16 item 2: a persistent session subscribed to a room that has
/// never had a message stored its position as 0, which also meant "no
/// position", so it resumed from "now" and got nothing published while it
/// was away (with one earlier message in the room, everything came).
#[test]
fn a_persistent_mosquitto_session_on_an_empty_room_gets_what_came_while_it_was_away() {
    let server = TestServer::start(2, "");
    let port = server.mqtt.port().to_string();
    let b = server.token(5102, 1);
    let sub = |extra: &[&str]| {
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", "x", "-P", &b])
            .args(["-t", "room/42", "-q", "1", "-c", "-i", "room-sub"])
            .args(extra)
            .output()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)")
    };
    // Subscribed (persistent session), then offline.
    assert!(sub(&["-W", "1"]).stdout.is_empty());
    let a = server.token(5101, 1);
    for msg in ["one", "two", "three"] {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", "x", "-P", &a])
            .args(["-t", "room/42", "-q", "1", "-m", msg])
            .output()
            .expect("mosquitto_pub");
        common::assert_ok(&out, "mosquitto_pub");
    }
    let out = sub(&["-C", "3", "-W", "20"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["one", "two", "three"]
    );
}

/// Issue #25: a room subscriber that reads but acknowledges late is taken
/// out of live delivery at the room window (256 unacknowledged). When that
/// happens while everything sent to it is written already, nothing more is
/// written to report the socket drained; it must still resume as soon as
/// it acknowledges (not a keep alive later, at its next PINGRESP), after
/// its last acknowledged message, without a message twice.
#[test]
fn a_room_subscriber_that_acknowledges_late_resumes_when_it_does() {
    let server = TestServer::start(2, "");
    let (mut sub, _) = Raw::connect(server.mqtt, V311, &server.token(6102, 1), true);
    sub.subscribe(1, "room/77", QoS::AtLeastOnce);
    let publish = |range: std::ops::RangeInclusive<u64>| {
        for n in range {
            let body = format!(r#"{{"room": 77, "payload": "{n}", "id": {n}}}"#);
            let (status, answer) = server.http("POST", "/v1/publish", &body, true);
            assert_eq!(status, 200, "{answer}");
        }
    };
    let next = |sub: &mut Raw| match sub.recv() {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    publish(1..=256);
    let window: Vec<Publish> = (0..256).map(|_| next(&mut sub)).collect();
    // Everything is read, nothing acknowledged: the next one lags the room.
    publish(257..=300);
    let lagged = || {
        let (_, text) = server.http("GET", "/metrics", "", true);
        text.lines()
            .filter(|l| l.starts_with("surepush_slow_consumers_total{") && l.contains("lagged"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while lagged() < 1.0 {
        assert!(Instant::now() < deadline, "the room never lagged");
        std::thread::sleep(Duration::from_millis(100)); // a counter copied once a second
    }
    for p in &window {
        sub.send(&Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
    }
    let mut got: Vec<u64> = window
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).parse().unwrap())
        .collect();
    while got.len() < 300 {
        let p = next(&mut sub); // the read timeout (10 s) bounds the wait
        sub.send(&Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
        got.push(String::from_utf8_lossy(&p.payload).parse().unwrap());
    }
    assert_eq!(got, (1..=300).collect::<Vec<u64>>(), "in order, once");
}

#[test]
fn native_and_mqtt_clients_reach_each_other_through_the_same_inboxes() {
    let server = TestServer::start(2, "");
    let (mut native, _) = server.connect(6001, 1, None);
    let (mut mq, ack) = Raw::connect(server.mqtt, V5, &server.token(6002, 1), true);
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    assert_eq!(
        ack.properties.server_keep_alive, None,
        "keep alive 90 s granted as asked"
    );
    mq.subscribe(1, "user/+", QoS::AtLeastOnce);
    // Native → MQTT.
    native
        .send(
            UserId(6002),
            Qos::AtLeastOnce,
            Bytes::from_static(b"from native"),
        )
        .unwrap();
    match mq.recv() {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic.as_str(), "user/6002");
            assert_eq!(&p.payload[..], b"from native");
            let from = &p.properties.user_properties;
            assert!(
                from.iter().any(|(k, v)| k == "from" && v == "6001"),
                "{from:?}"
            );
            mq.send(&Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    // MQTT → native.
    mq.send(&publish(
        "user/6001",
        QoS::AtLeastOnce,
        Some(9),
        b"from mqtt",
    ));
    match mq.recv() {
        Some(Packet::PubAck(r)) => {
            assert_eq!(r.packet_id, pid(9));
            assert_eq!(r.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // The native device first sees the echo of its own send.
    let mut got = next_message(&mut native);
    while got.echo {
        got = next_message(&mut native);
    }
    assert_eq!(&got.payload[..], b"from mqtt");
    assert_eq!(got.from, UserId(6002));
}

#[test]
fn a_qos2_publish_retried_with_its_packet_id_is_delivered_once() {
    let server = TestServer::start(1, "");
    let (mut rx, _) = Raw::connect(server.mqtt, V311, &server.token(7002, 1), true);
    rx.subscribe(1, "user/7002", QoS::ExactlyOnce);
    let (mut tx, _) = Raw::connect(server.mqtt, V311, &server.token(7001, 1), true);
    let first = publish("user/7002", QoS::ExactlyOnce, Some(7), b"exactly once");
    tx.send(&first);
    assert_eq!(tx.recv(), Some(Packet::PubRec(PubReply::success(pid(7)))));
    // PUBREC "lost": the client retries with DUP, before releasing.
    let Packet::Publish(mut again) = first else {
        unreachable!()
    };
    again.dup = true;
    tx.send(&Packet::Publish(again));
    assert_eq!(tx.recv(), Some(Packet::PubRec(PubReply::success(pid(7)))));
    tx.send(&Packet::PubRel(PubReply::success(pid(7))));
    assert_eq!(tx.recv(), Some(Packet::PubComp(PubReply::success(pid(7)))));
    // The receiver gets it once; a second message proves nothing else came
    // in between.
    tx.send(&publish("user/7002", QoS::AtLeastOnce, Some(8), b"marker"));
    assert!(matches!(tx.recv(), Some(Packet::PubAck(_))));
    // Packets of different messages may interleave (the marker can come
    // before the PUBREL of the first).
    let mut payloads = Vec::new();
    let mut releasing = 0;
    while releasing > 0 || payloads.last().map(|p: &Bytes| &p[..]) != Some(b"marker") {
        match rx.recv() {
            Some(Packet::Publish(p)) => {
                let id = p.packet_id.unwrap();
                if p.qos == QoS::ExactlyOnce {
                    rx.send(&Packet::PubRec(PubReply::success(id)));
                    releasing += 1;
                } else {
                    rx.send(&Packet::PubAck(PubReply::success(id)));
                }
                payloads.push(p.payload);
            }
            Some(Packet::PubRel(r)) => {
                rx.send(&Packet::PubComp(PubReply::success(r.packet_id)));
                releasing -= 1;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    assert_eq!(
        payloads,
        vec![
            Bytes::from_static(b"exactly once"),
            Bytes::from_static(b"marker")
        ]
    );
}

#[test]
fn bad_input_gets_the_reaction_the_specs_require_and_the_server_keeps_serving() {
    let server = TestServer::start(2, "");
    // Not MQTT at all: closed without an answer.
    let mut junk = Raw::open(server.mqtt, V311);
    junk.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(junk.recv(), None);
    // An unknown protocol level: CONNACK 0x01 (unacceptable protocol), close.
    let mut old = Raw::open(server.mqtt, V311);
    old.stream
        .write_all(&[0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 3, 2, 0, 30, 0, 0])
        .unwrap();
    match old.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode(0x01)),
        other => panic!("expected CONNACK 0x01, got {other:?}"),
    }
    assert_eq!(old.recv(), None);
    // A bad token: 0x04 (v3.1.1) / 0x86 (v5), then close.
    for (level, code) in [
        (V311, ReasonCode(0x04)),
        (V5, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
    ] {
        let (mut c, ack) = Raw::connect(server.mqtt, level, "not-a-token", true);
        assert_eq!(ack.code, code);
        assert_eq!(c.recv(), None);
    }
    // v3.1.1: an empty client id with a persistent session: 0x02.
    let mut anon = Raw::open(server.mqtt, V311);
    let Packet::Connect(mut c) = connect_packet(V311, &server.token(8001, 1), false) else {
        unreachable!()
    };
    c.client_id = MqttString::from("");
    anon.send(&Packet::Connect(c));
    match anon.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode(0x02)),
        other => panic!("expected CONNACK 0x02, got {other:?}"),
    }
    // v5: a topic outside the mapping gets PUBACK 0x90; the session stays.
    let (mut v5, _) = Raw::connect(server.mqtt, V5, &server.token(8002, 1), true);
    v5.send(&publish("user/01", QoS::AtLeastOnce, Some(3), b"x"));
    match v5.recv() {
        Some(Packet::PubAck(r)) => assert_eq!(r.reason, ReasonCode::TOPIC_NAME_INVALID),
        other => panic!("expected PUBACK 0x90, got {other:?}"),
    }
    // v5: a malformed PUBLISH (QoS 3): DISCONNECT 0x81, then close.
    v5.stream
        .write_all(&[0x36, 0x05, 0, 1, b'a', 0, 1])
        .unwrap();
    match v5.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::MALFORMED_PACKET),
        other => panic!("expected DISCONNECT 0x81, got {other:?}"),
    }
    assert_eq!(v5.recv(), None);
    // v3.1.1: a topic outside the mapping is acknowledged and dropped; the
    // session stays (MQTT-3.3.5-2 allows this; issue #21 item 4). A real
    // client sees a normal publish.
    let (mut v3, _) = Raw::connect(server.mqtt, V311, &server.token(8003, 1), true);
    v3.send(&publish("user/01", QoS::AtLeastOnce, Some(3), b"x"));
    assert_eq!(v3.recv(), Some(Packet::PubAck(PubReply::success(pid(3)))));
    v3.send(&publish("user/01", QoS::ExactlyOnce, Some(4), b"x"));
    assert_eq!(v3.recv(), Some(Packet::PubRec(PubReply::success(pid(4)))));
    v3.send(&Packet::PubRel(PubReply::success(pid(4))));
    assert_eq!(v3.recv(), Some(Packet::PubComp(PubReply::success(pid(4)))));
    v3.send(&Packet::PingReq);
    assert_eq!(v3.recv(), Some(Packet::PingResp));
    for qos in ["0", "1", "2"] {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
            .args(["-u", "x", "-P", &server.token(8003, 2), "-V", "mqttv311"])
            .args(["-t", "user/01", "-q", qos, "-m", "dropped"])
            .output()
            .expect("mosquitto_pub (apt-get install mosquitto-clients)");
        assert!(out.status.success(), "QoS {qos}: {out:?}");
    }
    // And the node still serves.
    let (mut ok, ack) = Raw::connect(server.mqtt, V5, &server.token(8004, 1), true);
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    ok.send(&publish(
        "user/8004",
        QoS::AtLeastOnce,
        Some(1),
        b"still here",
    ));
    assert!(matches!(ok.recv(), Some(Packet::PubAck(r)) if r.reason == ReasonCode::SUCCESS));
}

#[test]
fn a_second_connection_of_the_same_device_takes_the_session_over() {
    let server = TestServer::start(2, "");
    let token = server.token(9001, 1);
    // v5: a session outlives its connection only with a session expiry.
    let persistent = || {
        let Packet::Connect(mut c) = connect_packet(V5, &token, false) else {
            unreachable!()
        };
        c.properties.session_expiry_interval = Some(600);
        Packet::Connect(c)
    };
    let mut first = Raw::open(server.mqtt, V5);
    first.send(&persistent());
    assert!(matches!(first.recv(), Some(Packet::ConnAck(_))));
    first.subscribe(1, "user/9001", QoS::AtLeastOnce);
    let mut second = Raw::open(server.mqtt, V5);
    second.send(&persistent());
    match second.recv() {
        Some(Packet::ConnAck(a)) => {
            assert!(a.session_present, "the subscription moved with the session")
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match first.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    assert_eq!(first.recv(), None);
}

#[test]
fn unacknowledged_deliveries_are_resent_on_reconnect_with_dup_and_the_same_ids() {
    let server = TestServer::start(2, "");
    let rx_token = server.token(9101, 1);
    let (mut rx, _) = Raw::connect(server.mqtt, V311, &rx_token, false);
    rx.subscribe(1, "user/9101", QoS::ExactlyOnce);
    let (mut tx, _) = Raw::connect(server.mqtt, V311, &server.token(9102, 1), true);
    tx.send(&publish("user/9101", QoS::AtLeastOnce, Some(1), b"one"));
    assert!(matches!(tx.recv(), Some(Packet::PubAck(_))));
    tx.send(&publish("user/9101", QoS::ExactlyOnce, Some(2), b"two"));
    assert!(matches!(tx.recv(), Some(Packet::PubRec(_))));
    tx.send(&Packet::PubRel(PubReply::success(pid(2))));
    assert!(matches!(tx.recv(), Some(Packet::PubComp(_))));
    // The receiver takes both, acknowledges neither the QoS 1 one nor the
    // end of the QoS 2 one (PUBREC, then gone before PUBCOMP).
    let mut first = None;
    let mut second = None;
    while first.is_none() || second.is_none() {
        match rx.recv() {
            Some(Packet::Publish(p)) if &p.payload[..] == b"one" => first = Some(p),
            Some(Packet::Publish(p)) if &p.payload[..] == b"two" => {
                rx.send(&Packet::PubRec(PubReply::success(p.packet_id.unwrap())));
                second = Some(p);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(!first.dup);
    assert_eq!(
        rx.recv(),
        Some(Packet::PubRel(PubReply::success(second.packet_id.unwrap())))
    );
    drop(rx);
    // Reconnect (persistent session): the QoS 1 message again with DUP and
    // its packet id, and PUBREL again for the QoS 2 one (MQTT-4.4.0-1).
    let (mut rx, ack) = Raw::connect(server.mqtt, V311, &rx_token, false);
    assert!(ack.session_present);
    let mut got_publish = false;
    let mut got_rel = false;
    while !(got_publish && got_rel) {
        match rx.recv() {
            Some(Packet::Publish(p)) => {
                assert_eq!(
                    &p.payload[..],
                    b"one",
                    "only the unacknowledged one comes again"
                );
                assert!(p.dup);
                assert_eq!(p.packet_id, first.packet_id);
                rx.send(&Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
                got_publish = true;
            }
            Some(Packet::PubRel(r)) => {
                assert_eq!(r.packet_id, second.packet_id.unwrap());
                rx.send(&Packet::PubComp(PubReply::success(r.packet_id)));
                got_rel = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Runs a mosquitto command-line client (`bin`) against `server` with
/// `token` and `args`; returns what it printed (stdout and stderr, `-d`
/// output included).
fn mosquitto(bin: &str, server: &TestServer, token: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", token])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} (apt-get install mosquitto-clients): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Issue #16 item 6: room permissions reach MQTT clients as the reason
/// codes each version has. With `rooms_open = false`: a user without a
/// grant or membership gets SUBACK 0x87 (5.0) / 0x80 (3.1.1, its only
/// failure code, MQTT-3.9.3-2); its QoS 1/2 PUBLISH gets PUBACK/PUBREC 0x87
/// (5.0) or a positive acknowledgement (3.1.1 cannot refuse, MQTT-3.3.5-2)
/// and is stored nowhere; its QoS 0 retained PUBLISH does not replace the
/// room's retained message. Members and token grants read and write.
#[test]
fn room_permissions_reach_mqtt_clients_as_the_reason_codes_of_each_version() {
    let server = TestServer::start(2, "[core]\nrooms_open = false\n");
    let (outsider, member) = (server.token(6001, 1), server.token(6002, 1));
    let acl = surepush::core::Acl::new(&["room/61"], &["room/+"]).expect("valid");
    let granted = server.token_granting(6003, 1, acl);
    let (status, body) = server.http("POST", "/v1/rooms/61", r#"{"add": [6002]}"#, true);
    assert_eq!(status, 200, "{body}");
    let mqtt_sub = |token: &str, version: &str, extra: &[&str]| {
        let args = [&["-t", "room/61", "-q", "1", "-V", version][..], extra].concat();
        mosquitto("mosquitto_sub", &server, token, &args)
    };
    let mqtt_pub = |token: &str, version: &str, qos: &str, msg: &str, extra: &[&str]| {
        let args = [
            &["-t", "room/61", "-q", qos, "-V", version, "-m", msg, "-d"][..],
            extra,
        ]
        .concat();
        mosquitto("mosquitto_pub", &server, token, &args)
    };
    for (version, refused, pub_rc) in [("311", 128, 0), ("5", 135, 135)] {
        let out = mqtt_sub(&outsider, version, &["-d", "-W", "2"]);
        assert!(
            out.contains(&format!("Subscribed (mid: 1): {refused}")),
            "v{version}: {out}"
        );
        // The member's persistent session is subscribed (its position
        // known), then offline while the outsider and the grantee publish.
        let id = format!("member-{version}");
        let session = ["-c", "-i", &id];
        let out = mqtt_sub(
            &member,
            version,
            &[&session[..], &["-d", "-W", "1"]].concat(),
        );
        assert!(out.contains("Subscribed (mid: 1): 1"), "v{version}: {out}");
        let out = mqtt_pub(&outsider, version, "1", "refused-1", &[]);
        assert!(
            out.contains(&format!("PUBACK (Mid: 1, RC:{pub_rc})")),
            "v{version}: {out}"
        );
        let out = mqtt_pub(&outsider, version, "2", "refused-2", &[]);
        // mosquitto prints no reason code for PUBREC; 5.0's 0x87 shows
        // as its name, and 3.1.1 goes on to PUBREL/PUBCOMP as usual.
        let pubrec = match version {
            "5" => "Publish 1 failed: Not authorized.",
            _ => "received PUBCOMP (Mid: 1, RC:0)",
        };
        assert!(out.contains(pubrec), "v{version}: {out}");
        let allowed = format!("allowed-v{version}");
        let out = mqtt_pub(&granted, version, "1", &allowed, &[]);
        assert!(out.contains("PUBACK (Mid: 1, RC:0)"), "v{version}: {out}");
        // Were either refused message stored, it would come first.
        let out = mqtt_sub(
            &member,
            version,
            &[&session[..], &["-C", "1", "-W", "20"]].concat(),
        );
        assert_eq!(out.trim(), allowed, "v{version}");
    }
    // The retained message: set by the grantee, not replaced by the
    // outsider's QoS 0 retained PUBLISH (which used to change it unchecked).
    let out = mqtt_pub(&granted, "5", "1", "keep", &["-r"]);
    assert!(out.contains("RC:0"), "{out}");
    for level in [V311, V5] {
        let (mut raw, _) = Raw::connect(server.mqtt, level, &outsider, true);
        let mut evil = publish("room/61", QoS::AtMostOnce, None, b"evil");
        if let Packet::Publish(p) = &mut evil {
            p.retain = true;
        }
        raw.send(&evil);
        // Packets are handled in order, and a retained change is durable
        // before the packets queued after it go out: once this PUBACK is
        // in, an unchecked change would be in place.
        raw.send(&publish("user/6001", QoS::AtLeastOnce, Some(1), b"marker"));
        assert!(
            matches!(raw.recv(), Some(Packet::PubAck(_))),
            "{level:?}: PUBACK of the marker"
        );
        let out = mqtt_sub(&granted, "5", &["-C", "1", "-W", "20", "-v"]);
        assert_eq!(out.trim(), "room/61 keep", "{level:?}");
    }
}

/// Issue #16 item 6, with paho: a refused SUBSCRIBE says 0x87 (5.0) or
/// 0x80 (3.1.1), and a refused publisher's messages (QoS 1 and 0) reach
/// no one while a granted user's do.
#[test]
fn paho_clients_see_room_refusals_and_refused_publishes_reach_no_one() {
    let server = TestServer::start(2, "[core]\nrooms_open = false\n");
    let acl = surepush::core::Acl::new(&["room/77"], &["room/77"]).expect("valid");
    let granted = server.token_granting(4002, 1, acl);
    let out = paho(
        &server,
        "permissions",
        &["--room", "77", "--token-b", &granted],
    );
    common::assert_ok(&out, "permissions");
}

/// Issue #16 item 4: the MQTT state files of an earlier build (a version 2
/// session file with its checksum, a retained message written before the
/// checksum existed) are moved into the log on the first start: the
/// session resumes with its subscription, the retained message is there,
/// the directory is renamed, and a kill -9 later the session is still
/// found (in the log now).
#[test]
fn the_state_files_of_an_earlier_build_move_into_the_log_on_the_first_start() {
    const USER: u64 = 9301;
    let write_legacy = |data: &std::path::Path| {
        let sessions = data.join("mqtt/sessions");
        let retained = data.join("mqtt/retained");
        std::fs::create_dir_all(&sessions).unwrap();
        std::fs::create_dir_all(&retained).unwrap();
        // Version 2 session: one inbox subscription `user/9301` at QoS 1,
        // no rooms, nothing in flight, never expires, ended at 1 ms.
        let filter = format!("user/{USER}");
        let mut body = vec![2u8];
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&(filter.len() as u16).to_le_bytes());
        body.extend_from_slice(filter.as_bytes());
        body.push(1); // QoS 1, no options
        body.extend_from_slice(&0u32.to_le_bytes()); // rooms
        body.extend_from_slice(&0u32.to_le_bytes()); // inbound QoS 2
        body.extend_from_slice(&1u64.to_le_bytes()); // next message id
        body.extend_from_slice(&0u64.to_le_bytes()); // inbox start
        body.extend_from_slice(&0u32.to_le_bytes()); // outbound packet ids
        body.extend_from_slice(&0u32.to_le_bytes()); // PUBREL pending
        body.extend_from_slice(&u32::MAX.to_le_bytes()); // expiry: never
        body.extend_from_slice(&1u64.to_le_bytes()); // ended
        let mut file = b"SPMQ".to_vec();
        file.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        file.extend_from_slice(&body);
        std::fs::write(sessions.join(format!("{USER}-1")), file).unwrap();
        // A retained message of room 77 without the checksum (older still).
        let mut msg = vec![1u8];
        msg.extend_from_slice(&42u64.to_le_bytes());
        msg.extend_from_slice(b"status: up");
        std::fs::write(retained.join("room-77"), msg).unwrap();
    };
    let mut server = TestServer::start_with(2, "", write_legacy);
    let data = server.dir.join("data");
    assert!(!data.join("mqtt").exists(), "the directory was moved");
    assert!(data.join("mqtt.migrated/sessions").exists());
    let token = server.token(USER, 1);
    for restart in [false, true] {
        if restart {
            server.kill9();
            server.spawn();
        }
        let (mut rx, ack) = Raw::connect(server.mqtt, V311, &token, false);
        assert!(
            ack.session_present,
            "restart {restart}: the session is found"
        );
        let (mut tx, _) = Raw::connect(server.mqtt, V311, &server.token(9302, 1), true);
        let body: &'static [u8] = if restart { b"after" } else { b"before" };
        tx.send(&publish(
            &format!("user/{USER}"),
            QoS::AtLeastOnce,
            Some(1),
            body,
        ));
        assert!(matches!(tx.recv(), Some(Packet::PubAck(_))));
        // Delivered through the subscription the old file held (after the
        // kill, "before" may come again: QoS 1, its acknowledgement was not
        // yet written when the process died).
        loop {
            match rx.recv() {
                Some(Packet::Publish(p)) => {
                    assert_eq!(p.topic.as_str(), format!("user/{USER}"));
                    rx.send(&Packet::PubAck(PubReply::success(p.packet_id.unwrap())));
                    if &p.payload[..] == body {
                        break;
                    }
                    assert!(restart && &p.payload[..] == b"before", "{p:?}");
                }
                other => panic!("expected the PUBLISH, got {other:?}"),
            }
        }
        let (mut sub, _) = Raw::connect(server.mqtt, V311, &server.token(9303, 1), true);
        sub.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![Subscription {
                filter: MqttString::from("room/77"),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            }],
            properties: Properties::default(),
        }));
        assert!(matches!(sub.recv(), Some(Packet::SubAck(_))));
        match sub.recv() {
            Some(Packet::Publish(p)) => {
                assert!(p.retain);
                assert_eq!(&p.payload[..], b"status: up");
            }
            other => panic!("expected the retained message, got {other:?}"),
        }
    }
}

/// Issue #18 item 2: a room message reaches MQTT subscribers as the native
/// bytes the core encoded once, read in place; from 1 KiB on its payload is
/// written after each connection's own PUBLISH header without a copy. Small
/// (copied) and large (gathered) payloads interleave here, on subscribers
/// of both protocol levels at QoS 0 and 1 on both shards: each must get
/// every message whole, byte for byte, in order, with its own header.
#[test]
fn room_pushes_of_every_size_reach_mqtt_subscribers_byte_exact_at_both_levels() {
    const ROOM: u64 = surepush::proto::ROOM_BIT | 91;
    let server = TestServer::start(2, "");
    let sizes = [0usize, 15, 1023, 1024, 1025, 4000, 70_000, 3, 200_000, 1];
    let payload =
        |n: usize, size: usize| -> Bytes { (0..size).map(|i| (i * 7 + n * 31) as u8).collect() };
    let mut subs = Vec::new();
    for (i, (level, qos)) in [
        (V311, QoS::AtMostOnce),
        (V311, QoS::AtLeastOnce),
        (V5, QoS::AtMostOnce),
        (V5, QoS::AtLeastOnce),
    ]
    .into_iter()
    .enumerate()
    {
        for user in [6300 + 2 * i as u64, 6301 + 2 * i as u64] {
            let (mut sub, ack) = Raw::connect(server.mqtt, level, &server.token(user, 1), true);
            assert_eq!(ack.code, ReasonCode::SUCCESS);
            sub.subscribe(1, "room/91", qos);
            subs.push((sub, level, qos));
        }
    }
    let (mut publisher, _) = server.connect(6299, 1, None);
    for (n, &size) in sizes.iter().enumerate() {
        publisher
            .send(UserId(ROOM), Qos::AtLeastOnce, payload(n, size))
            .unwrap();
    }
    for (sub, level, qos) in &mut subs {
        for (n, &size) in sizes.iter().enumerate() {
            let p = match sub.recv() {
                Some(Packet::Publish(p)) => p,
                other => panic!("{level:?} {qos:?}: expected PUBLISH {n}, got {other:?}"),
            };
            assert_eq!(p.topic.as_str(), "room/91");
            assert_eq!(p.qos, *qos, "message {n}");
            assert_eq!(p.payload, payload(n, size), "{level:?} {qos:?} message {n}");
            if level.is_v5() {
                let from = &p.properties.user_properties;
                assert!(
                    from.iter().any(|(k, v)| k == "from" && v == "6299"),
                    "{from:?}"
                );
            }
            if let Some(id) = p.packet_id {
                sub.send(&Packet::PubAck(PubReply::success(id)));
            }
        }
    }
}

/// Issue #21 item 4: keep alive 0 switches keep alive off (3.1.1 and 5.0
/// section 3.1.2.10), whatever the server's default keep alive is (here
/// 1 s). A client with keep alive 1 s connected after them and as silent
/// is closed for it first, so the timers did run past their deadline.
#[test]
fn keep_alive_0_connections_are_never_closed_for_silence() {
    let server = TestServer::start(1, "[core]\nkeepalive_ms = 1000\n");
    let with_keep_alive = |level, user, k: u16| {
        let mut raw = Raw::open(server.mqtt, level);
        let Packet::Connect(mut c) = connect_packet(level, &server.token(user, 1), true) else {
            unreachable!()
        };
        c.keep_alive = k;
        raw.send(&Packet::Connect(c));
        match raw.recv() {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, ReasonCode::SUCCESS);
                (raw, a)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    let (mut v3, _) = with_keep_alive(V311, 9101, 0);
    let (mut v5, ack) = with_keep_alive(V5, 9102, 0);
    assert_eq!(
        ack.properties.server_keep_alive, None,
        "keep alive 0 granted as asked"
    );
    let (mut control, _) = with_keep_alive(V311, 9103, 1);
    let started = Instant::now();
    assert_eq!(control.recv(), None, "1.5 x 1 s of silence closes it");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    for c in [&mut v3, &mut v5] {
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Some(Packet::PingResp), "{:?} still open", c.level);
    }
    // And they still carry messages.
    v5.send(&publish("user/9101", QoS::AtLeastOnce, Some(1), b"awake"));
    assert!(matches!(v5.recv(), Some(Packet::PubAck(r)) if r.reason == ReasonCode::SUCCESS));
}

/// Issue #21 item 3: MQTT 5 message properties are stored with the
/// message. mosquitto_pub (5.0) sends every message property to a
/// persistent mosquitto_sub (5.0) session that is away; the gateway is
/// killed with -9 and restarted; the subscriber comes back and gets the
/// message with the same payload, topic, sender and properties, the
/// Message Expiry Interval less the wait. A message whose interval (1 s)
/// passed while it waited is not delivered; the one after it is.
#[test]
fn v5_message_properties_survive_an_offline_wait_and_a_kill_9() {
    let mut server = TestServer::start(2, "");
    let (sender, receiver) = (server.token(9201, 1), server.token(9202, 1));
    let sub = |server: &TestServer, extra: &[&str]| {
        let mut args = vec!["-V", "5", "-c", "-i", "props-sub", "-x", "3600"];
        args.extend(["-q", "1", "-t", "user/9202"]);
        args.extend(extra);
        mosquitto("mosquitto_sub", server, &receiver, &args)
    };
    // The persistent session and its subscription, then away.
    let out = sub(&server, &["-E"]);
    assert!(out.trim().is_empty(), "{out}");
    let publish = |server: &TestServer, payload: &str, expiry: &str| {
        let out = mosquitto(
            "mosquitto_pub",
            server,
            &sender,
            &[
                "-V",
                "5",
                "-q",
                "1",
                "-t",
                "user/9202",
                "-m",
                payload,
                "-D",
                "publish",
                "content-type",
                "text/plain",
                "-D",
                "publish",
                "response-topic",
                "user/9201",
                "-D",
                "publish",
                "correlation-data",
                "corr-1",
                "-D",
                "publish",
                "payload-format-indicator",
                "1",
                "-D",
                "publish",
                "user-property",
                "k",
                "v1",
                "-D",
                "publish",
                "user-property",
                "k",
                "v2",
                "-D",
                "publish",
                "message-expiry-interval",
                expiry,
            ],
        );
        assert!(out.trim().is_empty(), "mosquitto_pub: {out}");
    };
    publish(&server, "kept", "3600");
    publish(&server, "expires", "1");
    publish(&server, "after", "3600");
    let published = Instant::now();
    server.kill9();
    server.spawn();
    // The second message's 1 s must have passed (the point of the test,
    // not a synchronisation).
    if let Some(rest) = Duration::from_millis(2_100).checked_sub(published.elapsed()) {
        std::thread::sleep(rest);
    }
    let out = sub(
        &server,
        &["-C", "2", "-W", "20", "-F", "%t|%p|%C|%R|%D|%F|%E|%P"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, payload) in lines.iter().zip(["kept", "after"]) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(
            f[..6],
            [
                "user/9202",
                payload,
                "text/plain",
                "user/9201",
                "corr-1",
                "1"
            ],
            "{line}"
        );
        let left: u32 = f[6].parse().expect("an expiry interval");
        assert!((3_500..=3_599).contains(&left), "{line}: waited, so less");
        assert_eq!(f[7], "k:v1 k:v2 from:9201", "{line}");
    }
}
