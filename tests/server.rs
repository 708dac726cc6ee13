//! End-to-end tests of the real binary on 127.0.0.1 (issue 6): delivery at
//! every QoS, offline replay, multi-device, cross-shard handoff, kill -9
//! durability, bad input and the admin API.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::{next_message, read_until_closed, TestServer};
use surepush::client::{BlockingClient, Event};
use surepush::core::Router;
use surepush::proto::{Connect, DeviceId, ErrorCode, Frame, Qos, SendResult, Seq, UserId};

fn error_code(frames: &[Frame]) -> Option<u16> {
    frames.iter().find_map(|f| match f {
        Frame::Error(e) => Some(e.code),
        _ => None,
    })
}

#[test]
fn one_to_one_at_every_qos() {
    let server = TestServer::start(1, "");
    let (mut rx, _) = server.connect(2, 1, Some(Seq::ZERO));
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    for qos in [Qos::AtLeastOnce, Qos::ExactlyOnce] {
        let id = tx
            .send(UserId(2), qos, Bytes::from(format!("qos {qos:?}")))
            .unwrap();
        let ack = tx
            .wait_for(
                Duration::from_secs(10),
                |e| matches!(e, Event::SendAcked(a) if a.client_msg_id == id),
            )
            .unwrap();
        assert!(matches!(ack, Some(Event::SendAcked(a)) if a.result == SendResult::Stored));
        let p = next_message(&mut rx);
        assert_eq!(p.payload, Bytes::from(format!("qos {qos:?}")));
        assert_eq!((p.from, p.qos), (UserId(1), qos));
    }
    let done = tx
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::SendCompleted(_))
        })
        .unwrap();
    assert!(done.is_some(), "QoS 2 send completes with COMP");
    tx.send(
        UserId(2),
        Qos::AtMostOnce,
        Bytes::from_static(b"fire and forget"),
    )
    .unwrap();
    let e = rx
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::Ephemeral(_))
        })
        .unwrap();
    assert!(
        matches!(e, Some(Event::Ephemeral(p)) if p.payload == Bytes::from_static(b"fire and forget"))
    );
}

#[test]
fn offline_receiver_gets_everything_in_order_through_pages() {
    let server = TestServer::start(1, "");
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    for i in 0..25 {
        tx.send(UserId(3), Qos::AtLeastOnce, Bytes::from(format!("m{i}")))
            .unwrap();
    }
    let mut acked = 0;
    while acked < 25 {
        if let Some(Event::SendAcked(_)) = tx.next_event(Duration::from_secs(10)).unwrap() {
            acked += 1;
        }
    }
    // Page size 10: three pages, then an empty one.
    let (_rx, events) = server.connect(3, 1, Some(Seq::ZERO));
    let got: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(p) => Some(String::from_utf8(p.payload.to_vec()).unwrap()),
            _ => None,
        })
        .collect();
    let want: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn every_device_sees_the_inbox_and_own_sends_sync_to_other_devices() {
    let server = TestServer::start(1, "");
    let (mut d1, _) = server.connect(4, 1, Some(Seq::ZERO));
    let (mut d2, _) = server.connect(4, 2, Some(Seq::ZERO));
    let (mut other, _) = server.connect(5, 1, Some(Seq::ZERO));
    other
        .send(UserId(4), Qos::AtLeastOnce, Bytes::from_static(b"to both"))
        .unwrap();
    assert_eq!(
        next_message(&mut d1).payload,
        Bytes::from_static(b"to both")
    );
    assert_eq!(
        next_message(&mut d2).payload,
        Bytes::from_static(b"to both")
    );
    d1.send(UserId(5), Qos::AtLeastOnce, Bytes::from_static(b"mine"))
        .unwrap();
    let on_d2 = next_message(&mut d2);
    assert_eq!(
        (on_d2.payload.clone(), on_d2.echo),
        (Bytes::from_static(b"mine"), false)
    );
    let on_d1 = next_message(&mut d1);
    assert!(
        on_d1.echo && on_d1.payload.is_empty(),
        "the sender device gets an echo without payload"
    );
    assert_eq!(on_d1.seq, on_d2.seq, "same inbox position on both devices");
    // The sender's inbox holds its own send first (an echo on the sending device).
    let own = next_message(&mut other);
    assert!(own.echo && own.seq == Seq(1), "{own:?}");
    assert_eq!(
        next_message(&mut other).payload,
        Bytes::from_static(b"mine")
    );
}

#[test]
fn users_on_different_shards_talk_through_the_mesh() {
    let server = TestServer::start(2, "");
    let a = (1..100u64)
        .find(|u| Router::of_node(2).owner(UserId(*u)).0 == 0)
        .unwrap();
    let b = (1..100u64)
        .find(|u| Router::of_node(2).owner(UserId(*u)).0 == 1)
        .unwrap();
    // Several connections each, so some land on the non-owner shard and are handed off.
    let mut receivers: Vec<BlockingClient> = (1..=3)
        .map(|d| server.connect(b, d, Some(Seq::ZERO)).0)
        .collect();
    let (mut sender, _) = server.connect(a, 1, Some(Seq::ZERO));
    for i in 0..10 {
        sender
            .send(UserId(b), Qos::AtLeastOnce, Bytes::from(format!("x{i}")))
            .unwrap();
    }
    for r in &mut receivers {
        for i in 0..10 {
            let p = next_message(r);
            assert_eq!(p.payload, Bytes::from(format!("x{i}")));
            assert_eq!(p.seq, Seq(i + 1));
        }
    }
}

#[test]
fn kill_9_loses_nothing_that_was_acknowledged() {
    let mut server = TestServer::start(2, "");
    let receiver = (1..100u64)
        .find(|u| Router::of_node(2).owner(UserId(*u)).0 == 1)
        .unwrap();
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    let mut acked = Vec::new();
    for i in 0..200u32 {
        let id = tx
            .send(
                UserId(receiver),
                Qos::ExactlyOnce,
                Bytes::from(i.to_string()),
            )
            .unwrap();
        // Collect acknowledgements as they come, without waiting for each.
        while let Ok(Some(e)) = tx.next_event(Duration::from_millis(1)) {
            if let Event::SendAcked(a) = e {
                acked.push(a.client_msg_id);
            }
        }
        if i == 120 {
            server.kill9();
            break;
        }
        let _ = id;
    }
    assert!(
        !acked.is_empty(),
        "some sends were acknowledged before the kill"
    );
    server.spawn();
    // The receiver must hold every acknowledged message, once, in order.
    let (_rx, events) = server.connect(receiver, 1, Some(Seq::ZERO));
    let got = common::messages(events);
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.seq, Seq(i as u64 + 1), "in order without gaps");
    }
    let ids: std::collections::HashSet<u64> = got.iter().map(|p| p.client_msg_id).collect();
    assert_eq!(ids.len(), got.len(), "no duplicates at QoS 2");
    for id in &acked {
        assert!(ids.contains(id), "acknowledged send {id} lost by kill -9");
    }
}

#[test]
fn bad_token_is_refused_before_any_state() {
    let server = TestServer::start(1, "");
    let mut s = TcpStream::connect(server.addr).unwrap();
    let connect = Frame::Connect(Connect {
        device: DeviceId(1),
        last_seq: None,
        keepalive_ms: 0,
        token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.AAAA".into(),
    });
    s.write_all(&connect.to_bytes()).unwrap();
    assert_eq!(
        error_code(&read_until_closed(&mut s)),
        Some(ErrorCode::AuthFailed as u16)
    );
}

#[test]
fn a_token_for_one_device_cannot_connect_as_another() {
    let server = TestServer::start(1, "");
    let mut s = TcpStream::connect(server.addr).unwrap();
    let connect = Frame::Connect(Connect {
        device: DeviceId(2),
        last_seq: None,
        keepalive_ms: 0,
        token: server.token(1, 1),
    });
    s.write_all(&connect.to_bytes()).unwrap();
    assert_eq!(
        error_code(&read_until_closed(&mut s)),
        Some(ErrorCode::DeviceMismatch as u16)
    );
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    let server = TestServer::start(1, "");
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut header = vec![0xB5, 1, 0x03, 0];
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&header).unwrap();
    assert_eq!(
        error_code(&read_until_closed(&mut s)),
        Some(ErrorCode::FrameTooLarge as u16)
    );
}

#[test]
fn silent_connection_is_closed_after_the_connect_timeout() {
    let server = TestServer::start(1, "[core]\nconnect_timeout_ms = 300\n");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&[0xB5]).unwrap(); // slowloris: one byte, then nothing
    assert_eq!(
        error_code(&read_until_closed(&mut s)),
        Some(ErrorCode::IdleTimeout as u16)
    );
}

#[test]
fn ack_beyond_what_was_sent_is_refused() {
    let server = TestServer::start(1, "");
    let (mut c, _) = server.connect(9, 1, Some(Seq::ZERO));
    c.write_raw(&Frame::Ack(Seq(1000)).to_bytes()).unwrap();
    let e = c
        .wait_for(Duration::from_secs(10), |e| matches!(e, Event::Error(_)))
        .unwrap();
    assert!(matches!(e, Some(Event::Error(e)) if e.code == ErrorCode::AckBeyondSent as u16));
}

#[test]
fn backend_publish_reaches_the_user_and_metrics_count_it() {
    let server = TestServer::start(2, "");
    let (mut rx, _) = server.connect(7, 1, Some(Seq::ZERO));
    let (status, body) = server.http(
        "POST",
        "/v1/publish",
        r#"{"to": 7, "payload": "from backend", "id": 42}"#,
        true,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"seq\":1"), "{body}");
    let (status, body) = server.http(
        "POST",
        "/v1/publish",
        r#"{"to": 7, "payload": "from backend", "id": 42}"#,
        true,
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("\"duplicate\":true"),
        "a retried publish is stored once: {body}"
    );
    let p = next_message(&mut rx);
    assert_eq!(
        (p.payload, p.from),
        (Bytes::from_static(b"from backend"), UserId(0))
    );
    let (status, _) = server.http("POST", "/v1/publish", r#"{"to": 7, "payload": "x"}"#, false);
    assert_eq!(status, 401, "publishing needs the admin token");
    let (status, body) = server.http("GET", "/healthz", "", false);
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, metrics) = server.http("GET", "/metrics", "", false);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("surepush_copies_stored_total"),
        "{metrics}"
    );
}

/// Regression test: a shard whose log cannot be opened stopped by itself
/// while the other shard went on serving, and the node waited for both
/// before it said anything: the process hung half up, the error unsaid
/// (found by the 1,000-cycle crash loop). Now the node stops and exits
/// with the shard's error.
#[test]
fn a_shard_that_cannot_open_its_log_stops_the_node_with_the_reason() {
    let mut server = TestServer::start(2, "");
    server.terminate();
    let segment = server
        .data_dir()
        .join("data/shard-001/00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[0] ^= 0xFF; // the segment header's magic: damage, not a torn tail
    std::fs::write(&segment, &bytes).unwrap();
    let (status, stderr) = server.start_expecting_failure();
    assert!(!status.success(), "exit status {status:?}");
    assert!(
        stderr.contains("cannot open the log") && stderr.contains("bad segment header"),
        "{stderr}"
    );
}

#[test]
fn sigterm_disconnects_clients_and_exits_cleanly() {
    let mut server = TestServer::start(2, "");
    let (mut c, _) = server.connect(1, 1, Some(Seq::ZERO));
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let e = c
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::Disconnected(..))
        })
        .unwrap_or(None);
    assert!(
        matches!(e, Some(Event::Disconnected(code, _)) if code == ErrorCode::ShuttingDown as u16),
        "{e:?}"
    );
}

/// Issue 16 item 8: PROTOCOL.md section 5b says a connection that is not
/// through CONNECT when the gateway stops is closed without any frame (a
/// client must treat that like a network failure and retry), and that the
/// retry works once the gateway is back.
#[test]
fn a_connection_before_connect_is_closed_without_a_frame_on_shutdown_and_a_retry_works() {
    let mut server = TestServer::start(2, "");
    let mut early = TcpStream::connect(server.addr).unwrap();
    // Accepted by the kernel and (soon) by a shard; no CONNECT is sent.
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(read_until_closed(&mut early), vec![], "no frame before EOF");
    server.spawn();
    let (_c, events) = server.connect(1, 1, Some(Seq::ZERO));
    assert!(
        events.iter().any(|e| matches!(e, Event::Connected(_))),
        "{events:?}"
    );
}

/// Issue 9, security: no secret reaches the log, even at `trace` level —
/// not the token secret, not the admin token, not a client's session token
/// (valid or forged), whatever the traffic does.
#[test]
fn secrets_never_reach_the_log_even_at_trace_level() {
    let mut server = TestServer::start_with(2, "", |_| {});
    server.terminate();
    server.rust_log = "trace".into();
    server.spawn();
    let token = server.token(5, 1);
    let (mut a, _) = server.connect(5, 1, Some(Seq::ZERO));
    a.send(UserId(6), Qos::AtLeastOnce, Bytes::from_static(b"hi"))
        .unwrap();
    let _ = a.wait_for(Duration::from_secs(5), |e| matches!(e, Event::SendAcked(_)));
    let forged = format!("{}x", &token[..token.len() - 1]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let connect = Frame::Connect(Connect {
        device: DeviceId(1),
        last_seq: None,
        keepalive_ms: 0,
        token: forged.clone(),
    });
    s.write_all(&connect.to_bytes()).unwrap();
    let _ = read_until_closed(&mut s);
    let (status, _) = server.http("POST", "/v1/tokens", r#"{"user": 9, "device": 1}"#, true);
    assert_eq!(status, 200);
    let (status, _) = server.http("GET", "/metrics", "", true);
    assert_eq!(status, 200);
    drop(a);
    server.terminate();
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on"
    );
    for (what, secret) in [
        ("token secret", common::SECRET),
        ("admin token", common::ADMIN_TOKEN),
        ("session token", token.as_str()),
        ("forged token", forged.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} appears in the log");
    }
}

/// Sends one QoS 1 message and returns its SENDACK.
fn send_stored(tx: &mut BlockingClient, to: u64, text: &str) -> surepush::proto::SendAck {
    let id = tx
        .send(UserId(to), Qos::AtLeastOnce, Bytes::from(text.to_string()))
        .unwrap();
    match tx
        .wait_for(
            Duration::from_secs(10),
            |e| matches!(e, Event::SendAcked(a) if a.client_msg_id == id),
        )
        .unwrap()
    {
        Some(Event::SendAcked(a)) => a,
        other => panic!("no SENDACK for {text}: {other:?}"),
    }
}

/// Issue #16 item 1: two gateways on one data dir both ran (SO_REUSEPORT
/// let the second join the ports, nothing locked the dir), numbered one
/// inbox twice and lost acknowledged messages. The second must exit at
/// once, naming the data dir and the holder, and the first keep serving.
#[test]
fn a_second_gateway_on_the_same_data_dir_is_refused_and_the_first_keeps_its_sequence() {
    let server = TestServer::start(2, "");
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    assert_eq!(send_stored(&mut tx, 2, "before").seq, Seq(1));
    let mut twin = server.twin(true);
    let (status, stderr) = twin.start_expecting_failure();
    assert!(!status.success(), "exit status {status:?}");
    let data = server.data_dir().display().to_string();
    assert!(stderr.contains(&data), "names the data dir: {stderr}");
    assert!(
        stderr.contains(&format!("pid {}", server.pid())),
        "names the holder: {stderr}"
    );
    // Nothing of the first node was disturbed: new connections still reach
    // it alone, and the inbox numbering continues.
    let (mut tx2, _) = server.connect(3, 1, Some(Seq::ZERO));
    assert_eq!(send_stored(&mut tx2, 2, "after").seq, Seq(2));
    assert_eq!(send_stored(&mut tx, 2, "after, again").seq, Seq(3));
}

/// Issue #16 item 1: a listener address served by another process is
/// refused with the address in the error (SO_REUSEPORT only among our own
/// shards), even with a data dir of its own.
#[test]
fn a_second_gateway_on_the_same_ports_is_refused_naming_the_address() {
    let server = TestServer::start(2, "");
    let mut other = server.twin(false);
    let (status, stderr) = other.start_expecting_failure();
    assert!(!status.success(), "exit status {status:?}");
    assert!(
        stderr.contains(&server.addr.to_string()) && stderr.contains("client"),
        "names the address: {stderr}"
    );
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    assert_eq!(send_stored(&mut tx, 2, "still served").seq, Seq(1));
}

/// Port of `addr` in TIME_WAIT in /proc/net/tcp (state 06), as the local end.
fn time_wait_on(addr: std::net::SocketAddr) -> usize {
    let port = format!(":{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&port) && f[3] == "06"
        })
        .count()
}

/// Issue #16 item 1: a port held only by TIME_WAIT sockets of the previous
/// run is bound at once after a restart (SO_REUSEADDR).
#[test]
fn a_restart_binds_ports_held_only_by_time_wait_sockets() {
    let mut server = TestServer::start(1, "");
    let (mut c, _) = server.connect(1, 1, Some(Seq::ZERO));
    // A graceful stop closes the sessions from the server's side first:
    // its end of each connection goes to TIME_WAIT.
    assert!(server.terminate().success());
    let _ = c.wait_for(Duration::from_secs(10), |e| {
        matches!(e, Event::Disconnected(..))
    });
    drop(c);
    assert!(
        time_wait_on(server.addr) > 0,
        "the test needs a TIME_WAIT socket"
    );
    server.spawn();
    let (mut tx, _) = server.connect(1, 1, Some(Seq::ZERO));
    assert_eq!(send_stored(&mut tx, 2, "after restart").seq, Seq(1));
}

/// #17: a client over `core.max_frames_per_sec` is throttled, not closed:
/// the gateway stops reading it for the rest of each second, so 251 frames
/// at 100 a second take at least two seconds, and every send is stored and
/// delivered (before, the connection was closed with `RateLimited` and a
/// QoS 1 resend after reconnecting could be stored twice). The sends are
/// 1 KiB each so that they span many reads: what one read holds is served
/// whole.
#[test]
fn a_client_over_the_frame_rate_is_slowed_down_not_closed() {
    let server = TestServer::start(1, "[core]\nmax_frames_per_sec = 100\n");
    let (mut rx, _) = server.connect(2, 1, Some(Seq::ZERO));
    let started = std::time::Instant::now();
    let (mut tx, _) = server.connect(1, 1, None);
    let ids: Vec<u64> = (0..250)
        .map(|i| {
            tx.send(UserId(2), Qos::AtLeastOnce, kib_payload(i))
                .unwrap()
        })
        .collect();
    let mut acked = std::collections::HashSet::new();
    while acked.len() < ids.len() {
        match tx.wait_for(Duration::from_secs(20), |e| {
            matches!(
                e,
                Event::SendAcked(_) | Event::Error(_) | Event::Disconnected(..)
            )
        }) {
            Ok(Some(Event::SendAcked(a))) => {
                assert_eq!(a.result, SendResult::Stored);
                acked.insert(a.client_msg_id);
            }
            other => panic!("sender: {other:?} after {} SENDACKs", acked.len()),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "251 frames at 100/s went through in {:?}: not throttled",
        started.elapsed()
    );
    for i in 0..250 {
        let p = next_message(&mut rx);
        assert_eq!((p.from, p.payload), (UserId(1), kib_payload(i)));
    }
    let (_, metrics) = server.http("GET", "/metrics", "", false);
    let pauses: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("surepush_read_pauses_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(pauses >= 2, "read pauses counted: {pauses}");
}

fn kib_payload(i: usize) -> Bytes {
    let mut p = format!("m{i} ").into_bytes();
    p.resize(1024, b'.');
    Bytes::from(p)
}
