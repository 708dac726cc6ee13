//! The WebSocket listener end to end (issue #19 item 1): the real binary,
//! real WebSocket clients (tungstenite in the Rust SDK's `Transport::
//! WebSocket`, raw frames for bad input).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event, Transport};
use surepush::proto::{DeviceId, Qos, Seq, UserId};

/// A server with the WebSocket listener on (`extra`: more `[websocket]`
/// settings); returns it and the listener's address.
fn start(shards: u16, extra: &str) -> (TestServer, SocketAddr) {
    let port = surepush::server::limits::free_loopback_port().expect("a free port");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let top = format!("[websocket]\nenabled = true\nlisten = \"{addr}\"\n{extra}\n");
    (TestServer::start_full(shards, &top, "", |_| {}), addr)
}

fn ws() -> Transport {
    Transport::WebSocket { path: "/".into() }
}

/// Connects `user`/`device` over WebSocket and waits until it is live.
fn connect_ws(server: &TestServer, addr: SocketAddr, user: u64, device: u64) -> BlockingClient {
    let config = server.client_config(user, device);
    let mut c = BlockingClient::connect_over(addr, &ws(), config, None, Duration::from_secs(5))
        .expect("connect over WebSocket");
    loop {
        match c.next_event(Duration::from_secs(10)).expect("io") {
            Some(Event::CaughtUp) => return c,
            Some(Event::Error(e)) => panic!("gateway error while connecting: {e:?}"),
            Some(_) => {}
            None => panic!("not live in time"),
        }
    }
}

// Issue #19 item 1: native frames in binary WebSocket messages, across the
// shard hand-off (16 users on 2 shards: most land on a shard that does not
// own them and are handed over with their WebSocket state, which
// `connections_adopted_total{layers="ws"}` counts).
#[test]
fn native_protocol_over_websocket_delivers_with_identity_on_every_shard() {
    let (server, addr) = start(2, "");
    let users: Vec<u64> = (1..=16).collect();
    let mut clients: Vec<BlockingClient> = users
        .iter()
        .map(|&u| connect_ws(&server, addr, u, 1))
        .collect();
    // Each user sends two messages to the next one.
    let mut sent = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let to = users[(i + 1) % users.len()];
        for n in 0..2 {
            let payload = Bytes::from(format!("ws {} -> {to} #{n}", users[i]));
            let id = c
                .send(UserId(to), Qos::AtLeastOnce, payload.clone())
                .unwrap();
            sent.push((users[i], to, id, payload));
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let me = users[i];
        let from = users[(i + users.len() - 1) % users.len()];
        let mut got = Vec::new();
        while got.len() < 2 {
            match c.next_event(Duration::from_secs(10)).unwrap() {
                Some(Event::Message(p)) if !p.echo => got.push(p),
                Some(_) => {}
                None => panic!("user {me}: messages missing, got {got:?}"),
            }
        }
        // The inbox also holds the user's own sends (echoes): stored
        // messages are contiguous and in send order.
        assert!(got[0].seq < got[1].seq, "user {me}: {got:?}");
        assert!(got[0].client_msg_id < got[1].client_msg_id, "in send order");
        for p in &got {
            let (s_from, s_to, id, payload) = sent
                .iter()
                .find(|(f, t, _, pl)| *f == from && *t == me && *pl == p.payload)
                .unwrap_or_else(|| panic!("user {me} got a message nobody sent: {p:?}"));
            assert_eq!((p.from, p.to), (UserId(*s_from), UserId(*s_to)));
            assert_eq!(p.from_device, DeviceId(1));
            assert_eq!(p.client_msg_id, *id);
            assert_eq!(&p.payload, payload);
            assert_eq!(
                p.prev_seq,
                Seq(p.seq.0 - 1),
                "user {me}: stored, contiguous"
            );
        }
    }
    // Issue #19 item 3: the hand-offs are visible (all 16 accepted by
    // their owner has odds of 2^-16).
    let (_, metrics) = server.http("GET", "/metrics", "", true);
    let adopted = |layers: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("surepush_connections_adopted_total{"))
            .filter(|l| l.contains(&format!("layers=\"{layers}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let ws = adopted("ws");
    assert!(ws > 0 && ws <= 16, "handed over: {ws}\n{metrics}");
    assert_eq!(adopted("tcp") + adopted("wss"), 0, "WebSocket clients only");
}

/// A raw WebSocket client for bad input: hand-made requests and frames.
mod raw {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    pub use crate::common::ws_wire::{masked, read_frame, read_head};

    pub const MASK: [u8; 4] = [0xa1, 0x02, 0x5c, 0x7e];

    /// An upgrade request with the usual headers and `extra` lines.
    pub fn request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    }

    /// Sends `request`; returns the socket and the HTTP status line.
    pub fn upgrade(addr: SocketAddr, request: &str) -> (TcpStream, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut s);
        (s, head.lines().next().unwrap_or_default().to_string())
    }

    /// A masked client frame.
    pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        masked(first, payload, Some(MASK))
    }

    /// Server frames until the server closes the socket.
    pub fn frames_until_closed(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
        std::iter::from_fn(|| read_frame(s)).collect()
    }

    /// The close code of the last frame, which must be a close frame.
    pub fn close_code(frames: &[(u8, Vec<u8>)]) -> u16 {
        let (opcode, payload) = frames.last().expect("a close frame");
        assert_eq!(*opcode, 0x8, "the last frame is a close: {frames:?}");
        u16::from_be_bytes([payload[0], payload[1]])
    }
}

const BINARY: u8 = 0x82;

use common::connect_frame;

// Issue #19 item 1 (docs/BAD_INPUT.md, WebSocket rows): a bad upgrade gets
// the HTTP status the RFC or the config gives, and no WebSocket.
#[test]
fn bad_upgrades_get_their_http_status() {
    let (_server, addr) = start(1, "allowed_origins = [\"https://chat.example\"]");
    let ok = "Origin: https://chat.example\r\nSec-WebSocket-Protocol: surepush.v1\r\n";
    let cases = [
        (raw::request("/", ok), "101"),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), "426"),
        ("\x16\x03\x01 not http\r\n\r\n".to_string(), "400"),
        (raw::request("/other", ok), "404"),
        (
            raw::request(
                "/",
                "Origin: https://evil.example\r\nSec-WebSocket-Protocol: surepush.v1\r\n",
            ),
            "403",
        ),
        (
            raw::request(
                "/",
                "Origin: https://chat.example\r\nSec-WebSocket-Protocol: chat\r\n",
            ),
            "400",
        ),
        (raw::request("/", "Origin: https://chat.example\r\n"), "400"),
    ];
    for (request, status) in cases {
        let (_, line) = raw::upgrade(addr, &request);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} -> {line:?}"
        );
    }
}

// Issue #19 item 1: an upgrade request that never ends (slowloris) is
// answered 408 and closed at the connect timeout.
#[test]
fn a_slow_upgrade_request_is_cut_off_at_the_connect_timeout() {
    let port = surepush::server::limits::free_loopback_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let top = format!(
        "[websocket]\nenabled = true\nlisten = \"{addr}\"\n[core]\nconnect_timeout_ms = 300\n"
    );
    let _server = TestServer::start_full(1, &top, "", |_| {});
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    use std::io::Write;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let head = raw::read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut at the timeout"
    );
}

// Issue #19 item 1: each violation of RFC 6455 by a client ends the
// connection with the close code the RFC gives; before the hello and
// after it (a live session, handed to its shard).
#[test]
fn frame_violations_get_the_rfc_close_code() {
    let (server, addr) = start(2, "max_message_size = 1000");
    let request = raw::request("/", "Sec-WebSocket-Protocol: surepush.v1\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", raw::masked(BINARY, b"x", None), 1002),
        ("text message", raw::frame(0x81, b"hello"), 1003),
        ("oversized", raw::frame(BINARY, &[0u8; 1001]), 1009),
        (
            // (one byte of a native frame, incomplete: no native error)
            "oversized in fragments",
            [raw::frame(0x02, &[0u8; 1]), raw::frame(0x80, &[0u8; 1000])].concat(),
            1009,
        ),
        ("continuation without a start", raw::frame(0x80, b"x"), 1002),
        (
            "new message inside a fragmented one",
            [raw::frame(0x02, b"a"), raw::frame(BINARY, b"b")].concat(),
            1002,
        ),
        (
            "endless empty fragments",
            std::iter::once(raw::frame(0x02, b""))
                .chain(std::iter::repeat_n(raw::frame(0x00, b""), 1100))
                .flatten()
                .collect(),
            1008,
        ),
        (
            "compressed (no extension agreed)",
            raw::frame(0xc2, b"x"),
            1002,
        ),
        ("long ping", raw::frame(0x89, &[0u8; 126]), 1002),
    ];
    for (user, (what, bad, code)) in (1u64..).zip(cases) {
        for after_hello in [false, true] {
            let (mut s, line) = raw::upgrade(addr, &request);
            assert!(line.contains("101"), "{line}");
            use std::io::Write;
            if after_hello {
                s.write_all(&raw::frame(BINARY, &connect_frame(&server, user)))
                    .unwrap();
            }
            s.write_all(&bad).unwrap();
            let frames = raw::frames_until_closed(&mut s);
            assert_eq!(
                raw::close_code(&frames),
                code,
                "{what} (after hello: {after_hello})"
            );
            if after_hello {
                assert!(
                    frames.len() > 1,
                    "{what}: the CONNACK came first: {frames:?}"
                );
            }
        }
    }
}

// Issue #19 item 1: a ping is answered with its payload, a client's close
// with the same code, and a native frame split over messages and
// interleaved with control frames is one byte stream.
#[test]
fn pings_close_and_split_messages_follow_the_rfc() {
    let (server, addr) = start(1, "");
    let request = raw::request("/", "Sec-WebSocket-Protocol: surepush.v1\r\n");
    let (mut s, line) = raw::upgrade(addr, &request);
    assert!(line.contains("101"), "{line}");
    let connect = connect_frame(&server, 5);
    let (a, b) = connect.split_at(connect.len() / 2);
    let mut input = raw::frame(0x02, &a[..1]);
    input.extend(raw::frame(0x89, b"are you there"));
    input.extend(raw::frame(0x80, &a[1..]));
    input.extend(raw::frame(BINARY, b));
    use std::io::Write;
    s.write_all(&input).unwrap();
    let pong = raw::read_frame(&mut s).expect("a pong");
    assert_eq!(pong, (0xa, b"are you there".to_vec()));
    let (opcode, native) = raw::read_frame(&mut s).expect("the CONNACK");
    assert_eq!(opcode, 0x2, "binary");
    let mut decoder = surepush::proto::Decoder::new(1 << 20);
    decoder.feed(&native);
    match decoder.decode() {
        Ok(Some(surepush::proto::Frame::ConnAck(_))) => {}
        other => panic!("expected a CONNACK, got {other:?}"),
    }
    s.write_all(&raw::frame(0x88, &4000u16.to_be_bytes()))
        .unwrap();
    let frames = raw::frames_until_closed(&mut s);
    assert_eq!(raw::close_code(&frames), 4000, "the client's code echoed");
}

// Issue #19 item 1: room messages reach WebSocket subscribers on both
// shards (one shared buffer per shard, a WebSocket header in front), next
// to native TCP subscribers, each in room order with publisher and payload.
#[test]
fn room_messages_reach_websocket_and_tcp_subscribers_alike() {
    use surepush::proto::{SubResult, ROOM_BIT};
    const ROOM: u64 = ROOM_BIT | 19;
    let (server, addr) = start(2, "");
    let subscribe = |c: &mut BlockingClient| {
        c.subscribe(ROOM, Qos::AtLeastOnce).unwrap();
        match c
            .wait_for(Duration::from_secs(10), |e| {
                matches!(e, Event::Subscribed(_))
            })
            .unwrap()
        {
            Some(Event::Subscribed(a)) => assert_eq!(a.result, SubResult::Ok),
            other => panic!("no SUBACK: {other:?}"),
        }
    };
    let mut subs: Vec<BlockingClient> = (100..112)
        .map(|u| {
            let mut c = match u % 3 {
                0 => server.connect(u, 1, None).0,
                _ => connect_ws(&server, addr, u, 1),
            };
            subscribe(&mut c);
            c
        })
        .collect();
    let mut publisher = connect_ws(&server, addr, 1, 1);
    let payload = |n: u64| Bytes::from(format!("room message {n} {}", "x".repeat(n as usize * 37)));
    for n in 1..=40 {
        publisher
            .send(UserId(ROOM), Qos::AtLeastOnce, payload(n))
            .unwrap();
    }
    for c in &mut subs {
        let mut got = Vec::new();
        while got.len() < 40 {
            match c.next_event(Duration::from_secs(10)).unwrap() {
                Some(Event::RoomMessage(p)) => got.push(p),
                Some(_) => {}
                None => panic!("room messages stopped after {}", got.len()),
            }
        }
        for (n, p) in (1..).zip(&got) {
            assert_eq!((p.room, p.seq, p.from), (ROOM, Seq(n), UserId(1)));
            assert_eq!(p.payload, payload(n));
        }
    }
}

// Issue #19 item 1: MQTT over WebSocket (subprotocol `mqtt`) with a real
// client (paho-mqtt, `transport="websockets"`), 3.1.1 and 5, two shards.
#[test]
fn paho_clients_speak_mqtt_over_websocket() {
    let (server, addr) = start(2, "");
    for scenario in ["roundtrip", "room", "retained", "will"] {
        let extra = [
            "--room",
            "31",
            "--transport",
            "websockets",
            "--ws-path",
            "/",
        ];
        let out = common::paho_check(&server, addr.port(), scenario, &extra);
        common::assert_ok(&out, &format!("{scenario} over WebSocket"));
    }
}

// Issue #19 item 1: a client that stops sending is pinged after
// `ping_interval_ms` of quiet and, still silent, closed with 1008 at
// `idle_timeout_ms`; one that answers the pings stays.
#[test]
fn a_silent_websocket_client_is_pinged_then_closed_with_1008() {
    use std::io::Write;
    let (server, addr) = start(1, "ping_interval_ms = 100\nidle_timeout_ms = 600");
    let request = raw::request("/", "Sec-WebSocket-Protocol: surepush.v1\r\n");
    // Answers every ping for a while: still open.
    let (mut alive, _) = raw::upgrade(addr, &request);
    alive
        .write_all(&raw::frame(BINARY, &connect_frame(&server, 7)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let (opcode, payload) = raw::read_frame(&mut alive).expect("open");
        assert_ne!(opcode, 0x8, "closed although it answered every ping");
        if opcode == 0x9 {
            pings += 1;
            alive.write_all(&raw::frame(0x8a, &payload)).unwrap();
        }
    }
    assert!(pings >= 2, "pinged while quiet: {pings}");
    // Silent: pinged, then closed with 1008.
    let (mut silent, _) = raw::upgrade(addr, &request);
    silent
        .write_all(&raw::frame(BINARY, &connect_frame(&server, 8)))
        .unwrap();
    let started = std::time::Instant::now();
    let frames = raw::frames_until_closed(&mut silent);
    assert!(
        frames.iter().any(|(op, _)| *op == 0x9),
        "a ping first: {frames:?}"
    );
    assert_eq!(raw::close_code(&frames), 1008);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "not before the idle timeout"
    );
}

// Issue #19 item 1: the WebSocket state travels with the socket in the
// hand-off: a native frame whose bytes the accepting shard had only partly
// read (inside a WebSocket frame it had begun to unmask) completes on the
// owner. 8 users on 2 shards: most are accepted by a shard that does not
// own them.
#[test]
fn a_websocket_frame_begun_on_the_accepting_shard_completes_on_the_owner() {
    use std::io::Write;
    use surepush::proto::{Decoder, Frame};
    let (server, addr) = start(2, "");
    let request = raw::request("/", "Sec-WebSocket-Protocol: surepush.v1\r\n");
    for user in 1..=8 {
        let (mut s, _) = raw::upgrade(addr, &request);
        let connect = connect_frame(&server, user);
        let mut ping = bytes::BytesMut::new();
        Frame::Ping(0xfeed_0000 + user).encode(&mut ping);
        // Message 1: the start of CONNECT; message 2: its rest and a PING,
        // cut 5 bytes before its end.
        let mut wire = raw::frame(0x82, &connect[..10]);
        wire.extend(raw::frame(0x82, &[&connect[10..], &ping[..]].concat()));
        let (first, last) = wire.split_at(wire.len() - 5);
        s.write_all(first).unwrap();
        let mut decoder = Decoder::new(1 << 20);
        let mut next = |s: &mut std::net::TcpStream| loop {
            if let Some(frame) = decoder.decode().unwrap() {
                return frame;
            }
            let (opcode, payload) = raw::read_frame(s).expect("open");
            assert_eq!(opcode, 0x2);
            decoder.feed(&payload);
        };
        // The CONNACK comes from the owner: the hand-off is done.
        assert!(matches!(next(&mut s), Frame::ConnAck(_)), "user {user}");
        s.write_all(last).unwrap();
        match next(&mut s) {
            Frame::Pong(n) => assert_eq!(n, 0xfeed_0000 + user, "user {user}"),
            other => panic!("user {user}: expected PONG, got {other:?}"),
        }
    }
}
