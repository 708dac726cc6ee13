//! Webhooks against a real HTTP receiver (issue #22 item 3): every event
//! kind arrives signed, with the identities of what caused it; a receiver
//! that is down for a while gets every event once it is back; a gateway
//! killed with -9 while events are undelivered delivers them after the
//! restart with the same event ids; a bad endpoint URL stops the start.

mod common;
#[path = "webhooks/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use hmac::{Hmac, Mac};
use receiver::{Receiver, Request};
use sha2::Sha256;
use surepush::client::BlockingClient;
use surepush::proto::{Connect, DeviceId, Frame, Qos, Seq, Sync, SyncDirection, UserId};

const SECRET: &str = "webhook-test-secret";
const WAIT: Duration = Duration::from_secs(30);

/// The `[webhooks]` table for a receiver at `addr` (retries fast).
fn webhooks_config(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[webhooks]\nurl = \"http://{addr}/hooks\"\nsecret = \"{SECRET}\"\n\
         retry_initial_ms = 50\nretry_max_ms = 300\n{extra}"
    )
}

/// Checks the signature the way docs/WEBHOOKS.md tells a backend to:
/// HMAC-SHA256 over `<timestamp>.<body>`, hex, `sha256=` in front.
fn assert_signed(r: &Request) {
    let timestamp = r.header("X-Surepush-Timestamp");
    assert!(timestamp.parse::<u64>().is_ok(), "timestamp {timestamp:?}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&r.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r.header("X-Surepush-Signature"), format!("sha256={hex}"));
    let body = r.json();
    assert_eq!(r.header("X-Surepush-Event-Id"), body["id"], "{body}");
    assert_eq!(r.header("X-Surepush-Event"), body["event"], "{body}");
    assert_eq!(r.header("content-type"), "application/json");
}

fn of_kind<'a>(requests: &'a [Request], event: &str) -> Vec<&'a Request> {
    requests
        .iter()
        .filter(|r| r.json()["event"] == event)
        .collect()
}

/// What identifies a message event: (user, sender, client_msg_id).
type MessageKey = (String, String, String);

fn message_key(body: &serde_json::Value) -> MessageKey {
    let field = |name: &str| body[name].as_str().expect(name).to_string();
    (field("user"), field("sender"), field("client_msg_id"))
}

/// The event id of each `message.offline` delivered (2xx), by message.
fn offline_delivered(requests: &[Request]) -> BTreeMap<MessageKey, String> {
    requests
        .iter()
        .filter(|r| r.answered == 200)
        .map(Request::json)
        .filter(|b| b["event"] == "message.offline")
        .map(|b| (message_key(&b), b["id"].as_str().unwrap().to_string()))
        .collect()
}

/// `count` QoS 1 sends from `sender` (user 1) to the never-connected
/// users `first ..first + users`, round robin; their keys.
fn send_to_offline_users(
    sender: &mut BlockingClient,
    count: u64,
    first: u64,
    users: u64,
) -> BTreeSet<MessageKey> {
    (0..count)
        .map(|i| {
            let to = first + i % users;
            let payload = Bytes::from(vec![i as u8]);
            let cmid = sender.send(UserId(to), Qos::AtLeastOnce, payload).unwrap();
            (to.to_string(), "1".to_string(), cmid.to_string())
        })
        .collect()
}

/// A raw native session of (user, device) that goes live and never ACKs.
fn silent_device(server: &TestServer, user: u64, device: u64) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    let connect = Frame::Connect(Connect {
        device: DeviceId(device),
        last_seq: Some(Seq::ZERO),
        keepalive_ms: 0,
        token: server.token(user, device),
    });
    s.write_all(&connect.to_bytes()).unwrap();
    let sync = Frame::Sync(Sync {
        request_id: 1,
        direction: SyncDirection::After(Seq::ZERO),
        limit: 10,
        read_ahead: false,
    });
    s.write_all(&sync.to_bytes()).unwrap();
    s
}

#[test]
fn every_event_kind_arrives_signed_with_its_identities() {
    let hooks = Receiver::start("127.0.0.1:0".parse().unwrap());
    let config = webhooks_config(hooks.addr, "after_retransmits = 1\npreview_bytes = 3\n");
    let server = TestServer::start_full(
        2,
        &config,
        "[core]\nack_timeout_ms = 100\nmax_backoff_ms = 100\nmax_retries = 2\n",
        |_| {},
    );
    let (mut sender, _) = server.connect(1, 11, None);
    let connected = hooks.wait_until("session.connected of user 1", WAIT, |r| {
        !of_kind(r, "session.connected").is_empty()
    });
    let c = of_kind(&connected, "session.connected")[0].json();
    assert_eq!(
        (c["user"].as_str(), c["device"].as_str()),
        (Some("1"), Some("11"))
    );
    assert_eq!(c["transport"], "native");

    // User 2 has never connected: offline.
    let cmid = sender
        .send(UserId(2), Qos::AtLeastOnce, Bytes::from_static(b"hello"))
        .unwrap();
    let got = hooks.wait_until("message.offline for user 2", WAIT, |r| {
        !of_kind(r, "message.offline").is_empty()
    });
    let o = of_kind(&got, "message.offline")[0].json();
    assert_eq!(o["user"], "2");
    assert_eq!(o["sender"], "1");
    assert_eq!(o["sender_device"], "11");
    assert_eq!(o["seq"], "1");
    assert_eq!(o["client_msg_id"], cmid.to_string());
    assert_eq!(o["preview"], "aGVs", "base64 of \"hel\"");
    assert_eq!(o["payload_len"], 5);

    // User 3 is online but never acknowledges: unacked, then closed.
    let _silent = silent_device(&server, 3, 33);
    hooks.wait_until("session.connected of user 3", WAIT, |r| {
        of_kind(r, "session.connected")
            .iter()
            .any(|r| r.json()["user"] == "3")
    });
    let cmid3 = sender
        .send(UserId(3), Qos::AtLeastOnce, Bytes::from_static(b"x"))
        .unwrap();
    // (The sender never reads, so it never acknowledges its own-inbox
    // echoes either: it gets events of its own.)
    let of_user_3 = |r: &[Request], kind: &str| -> Vec<serde_json::Value> {
        of_kind(r, kind)
            .iter()
            .map(|r| r.json())
            .filter(|b| b["user"] == "3")
            .collect()
    };
    let all = hooks.wait_until("unacked and disconnected for user 3", WAIT, |r| {
        !of_user_3(r, "message.unacked").is_empty()
            && !of_user_3(r, "session.disconnected").is_empty()
    });
    let u = of_user_3(&all, "message.unacked")[0].clone();
    assert_eq!(u["user"], "3");
    assert_eq!(u["device"], "33");
    assert_eq!(u["seq"], "1");
    assert_eq!(u["sender"], "1");
    assert_eq!(u["client_msg_id"], cmid3.to_string());
    assert_eq!(u["retransmits"], 1);
    let d = of_user_3(&all, "session.disconnected")[0].clone();
    assert_eq!(d["user"], "3");
    assert_eq!(d["device"], "33");
    assert_eq!(d["reason"], "ack_timeout");
    assert!(
        !of_kind(&all, "message.offline")
            .iter()
            .any(|r| r.json()["user"] == "3"),
        "user 3 was online: no message.offline"
    );
    for r in &all {
        assert_signed(r);
    }
    let ids: BTreeSet<&str> = all
        .iter()
        .map(|r| r.header("X-Surepush-Event-Id"))
        .collect();
    assert_eq!(
        ids.len(),
        all.len(),
        "each event once while the receiver answers 200"
    );
}

#[test]
fn a_receiver_down_for_a_while_gets_every_event_once_it_is_back() {
    let mut hooks = Receiver::start("127.0.0.1:0".parse().unwrap());
    let addr = hooks.addr;
    hooks.stop();
    let mut server = TestServer::start_full(2, &webhooks_config(addr, ""), "", |_| {});
    server.tolerated_errors.push("webhook");
    let (mut sender, _) = server.connect(1, 1, None);
    let sent = send_to_offline_users(&mut sender, 20, 100, 5);
    // Failed attempts are counted, and the events kept, before the
    // receiver comes back.
    wait_for_metrics(&server, "failed attempts and 20 pending", |m| {
        metric_sum(m, "surepush_webhook_deliveries_total{", "result=\"failed\"") > 0.0
            && metric_sum(m, "surepush_webhook_pending{", "") >= 20.0
    });
    let hooks = Receiver::start(addr);
    let got = hooks.wait_until("all 20 message.offline events", WAIT, |r| {
        offline_delivered(r).len() == sent.len()
    });
    let delivered = offline_delivered(&got);
    assert_eq!(delivered.keys().cloned().collect::<BTreeSet<_>>(), sent);
    got.iter().for_each(assert_signed);
    wait_for_metrics(&server, "nothing pending, 20 offline events counted", |m| {
        metric_sum(m, "surepush_webhook_pending{", "") == 0.0
            && metric_sum(
                m,
                "surepush_webhook_events_total{",
                "event=\"message.offline\"",
            ) == 20.0
            && metric_sum(
                m,
                "surepush_webhook_deliveries_total{",
                "result=\"delivered\"",
            ) >= 20.0
            && metric_sum(m, "surepush_webhook_delivery_seconds_count", "") >= 20.0
    });
}

/// The sum of the samples of `series` whose labels include `label`.
fn metric_sum(metrics: &str, series: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` until `done` holds (or panics after [`WAIT`]).
fn wait_for_metrics(server: &TestServer, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = server.http("GET", "/metrics", "", false);
        if done(&metrics) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed {what}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50)); // polling a metric
    }
}

#[test]
fn events_undelivered_at_a_kill_9_are_delivered_after_the_restart_with_the_same_ids() {
    let hooks = Receiver::start("127.0.0.1:0".parse().unwrap());
    hooks.answer(503);
    let config = webhooks_config(hooks.addr, "events = [\"message.offline\"]\n");
    let mut server = TestServer::start_full(2, &config, "", |_| {});
    let (mut sender, _) = server.connect(1, 1, None);
    let sent = send_to_offline_users(&mut sender, 10, 200, 4);
    // Every event was tried (and refused) at least once: all are durable.
    let tried = hooks.wait_until("an attempt of each event", WAIT, |r| {
        r.iter()
            .map(|r| r.header("X-Surepush-Event-Id").to_string())
            .collect::<BTreeSet<_>>()
            .len()
            == sent.len()
    });
    let ids_before: BTreeMap<_, _> = tried
        .iter()
        .map(|r| {
            let b = r.json();
            (message_key(&b), b["id"].as_str().unwrap().to_string())
        })
        .collect();
    drop(sender);
    server.kill9();
    hooks.answer(200);
    server.spawn();
    let got = hooks.wait_until("every event delivered after the restart", WAIT, |r| {
        offline_delivered(r).len() == sent.len()
    });
    let delivered = offline_delivered(&got);
    assert_eq!(delivered.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert_eq!(
        delivered, ids_before,
        "the same event ids across the restart"
    );
    got.iter().for_each(assert_signed);
}

#[test]
fn a_bad_webhook_url_is_refused_at_start_with_the_setting_named() {
    let mut server = TestServer::unstarted(1, "[webhooks]\nurl = \"ftp://backend/hooks\"\n", "");
    let (status, stderr) = server.start_expecting_failure();
    assert!(!status.success());
    assert!(
        stderr.contains("webhooks.url") && stderr.contains("http://"),
        "{stderr}"
    );
}
