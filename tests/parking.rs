//! Idle connections park (`park_idle_ms`, crates/server/src/transport/
//! park.rs): their tasks end and their sockets wait in the shard's epoll
//! set. A parked connection must behave exactly like a live one: it
//! receives (output resumes it), it sends (input resumes it), its peer's
//! close and its keep-alive expiry are noticed, and an MQTT will still
//! goes out when its socket dies. Every test waits for the gauge
//! `surepush_connections_parked` before acting, so each step starts from
//! a parked connection, and checks what arrives by identity.
//!
//! The MQTT tests use the mosquitto command-line clients (Debian:
//! mosquitto-clients).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event};
use surepush::proto::{DeviceId, Qos, SendAck, SendResult, UserId};

/// Parks after 50 ms idle: every wait between steps parks.
const PARK: &str = "park_idle_ms = 50\n";

fn server() -> TestServer {
    TestServer::start_full(2, PARK, "", |_| {})
}

/// Waits (up to 10 s) until `surepush_connections_parked` is `want`.
fn wait_parked(server: &TestServer, want: u64) {
    wait_metric(server, "surepush_connections_parked", want);
}

/// Waits (up to 10 s) until the gauge `series` is `want`.
fn wait_metric(server: &TestServer, series: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = server.counter(series);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, waited for {want}"
        );
        // Polling: the gauge is refreshed once a second by each shard.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The SENDACK of send `id` (stored now).
fn sendack(c: &mut BlockingClient, id: u64) -> SendAck {
    loop {
        match c.next_event(Duration::from_secs(10)).expect("io") {
            Some(Event::SendAcked(a)) if a.client_msg_id == id => {
                assert_eq!(a.result, SendResult::Stored, "{a:?}");
                return a;
            }
            Some(_) => {}
            None => panic!("no SENDACK within 10 s"),
        }
    }
}

/// Native connections parked between every step: a push resumes the
/// addressee, a send resumes the sender; both park again, many times over;
/// every message arrives once with its sender, payload and sequence.
#[test]
fn parked_native_connections_send_receive_and_park_again() {
    let server = server();
    let (mut a, _) = server.connect(9101, 1, None);
    let (mut b, _) = server.connect(9102, 1, None);
    for round in 1..=5u64 {
        wait_parked(&server, 2);
        let payload = format!("round {round}");
        let id = a
            .send(UserId(9102), Qos::AtLeastOnce, Bytes::from(payload.clone()))
            .expect("send");
        let ack = sendack(&mut a, id);
        assert_eq!(ack.seq.0, round, "round {round}");
        let push = common::next_message(&mut b);
        assert_eq!(push.from, UserId(9101), "round {round}");
        assert_eq!(push.from_device, DeviceId(1), "round {round}");
        assert_eq!(push.payload.as_ref(), payload.as_bytes(), "round {round}");
        assert_eq!(push.seq.0, round, "round {round}");
    }
    wait_parked(&server, 2);
    // A parked connection whose peer closes is noticed: it is gone from the
    // gateway (and from the parked ones).
    drop(a);
    wait_metric(&server, "surepush_connections", 1);
    wait_parked(&server, 1);
}

/// A parked MQTT connection's keep alive still runs: a client silent past
/// 1.5 times its keep alive is closed by the gateway, parked or not
/// (MQTT-3.1.2-24), and nothing stays behind.
#[test]
fn a_parked_mqtt_connection_past_its_keep_alive_is_closed() {
    let server = server();
    let mut socket = TcpStream::connect(server.mqtt).expect("connect");
    socket
        .write_all(&common::mqtt311_connect(
            "park-ka",
            &server.token(9201, 1),
            2,
        ))
        .unwrap();
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    wait_parked(&server, 1);
    let parked_at = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let read = socket.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the gateway did not close a silent connection: {read:?}"
    );
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
    // Closed by its keep alive (3 s), not at once.
    assert!(
        parked_at.elapsed() >= Duration::from_secs(1),
        "closed too early"
    );
    wait_metric(&server, "surepush_connections", 0);
    wait_parked(&server, 0);
}

/// A mosquitto command-line client for `server`, its output line-buffered
/// (`-d` prints the SUBACK on stdout, which a pipe would hold back).
fn mosquitto(bin: &str, server: &TestServer, user: u64, args: &[&str]) -> Command {
    let mut c = Command::new("stdbuf");
    c.args(["-oL", bin])
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", &server.token(user, 1)])
        .args(args);
    c
}

/// A running `mosquitto_sub` and its output lines.
struct Sub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Sub {
    fn start(mut command: Command) -> Sub {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Sub { child, lines }
    }

    /// The next message line (`-d` debug lines skipped).
    fn next(&self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("a message within 10 s");
            if !line.starts_with("Client ") && !line.starts_with("Subscribed") {
                return line;
            }
        }
    }

    /// Waits for the SUBACK (`-d` prints "Subscribed").
    fn subscribed(self) -> Sub {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("SUBACK within 10 s");
            if line.starts_with("Subscribed") {
                return self;
            }
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `msg` to `topic` at QoS 1 as `user` and checks the PUBACK.
fn publish(server: &TestServer, user: u64, topic: &str, msg: &str) {
    let out = mosquitto(
        "mosquitto_pub",
        server,
        user,
        &["-t", topic, "-q", "1", "-m", msg, "-d"],
    )
    .output()
    .expect("mosquitto_pub");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("PUBACK"), "{text}");
}

/// MQTT subscribers parked between messages get each one (a PUBLISH
/// resumes them), and a parked client killed without DISCONNECT has its
/// will published: its socket's end reaches the gateway while parked.
#[test]
fn parked_mqtt_subscribers_receive_and_a_killed_one_leaves_its_will() {
    let mut server = TestServer::unstarted(2, PARK, "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let watcher = Sub::start(mosquitto(
        "mosquitto_sub",
        &server,
        9301,
        &["-t", "park/#", "-q", "1", "-v", "-d"],
    ))
    .subscribed();
    let mut willing = Sub::start(mosquitto(
        "mosquitto_sub",
        &server,
        9302,
        &[
            "-t",
            "other/topic",
            "-q",
            "1",
            "--will-topic",
            "park/will",
            "--will-payload",
            "gone 9302",
            "--will-qos",
            "1",
        ],
    ));
    for n in 1..=4 {
        wait_parked(&server, 2);
        let msg = format!("message {n}");
        publish(&server, 9303, "park/news", &msg);
        assert_eq!(watcher.next(), format!("park/news {msg}"));
    }
    wait_parked(&server, 2);
    willing.child.kill().expect("kill mosquitto_sub");
    let _ = willing.child.wait();
    assert_eq!(watcher.next(), "park/will gone 9302");
    wait_metric(&server, "surepush_connections", 1);
}

/// Output counts as activity: a QoS 0 subscriber that only receives (it
/// never writes to the gateway) is not parked between messages that come
/// more often than `park_idle_ms`, so it does not churn between parking
/// and resuming; the publisher feeding it does not either. Once the
/// stream stops, both park.
#[test]
fn a_connection_that_only_receives_stays_unparked_while_messages_flow() {
    let mut server = TestServer::unstarted(1, "park_idle_ms = 100\n", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let sub = Sub::start(mosquitto(
        "mosquitto_sub",
        &server,
        9401,
        &["-t", "flow/#", "-q", "0", "-v", "-d"],
    ))
    .subscribed();
    let mut publisher = mosquitto(
        "mosquitto_pub",
        &server,
        9402,
        &["-t", "flow/x", "-q", "0", "-l"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("mosquitto_pub");
    let mut lines = publisher.stdin.take().unwrap();
    // The publisher is connected once its first line comes back.
    writeln!(lines, "0").unwrap();
    assert_eq!(sub.next(), "flow/x 0");
    let resumed_before = server.counter("surepush_connections_resumed_total");
    for n in 1..=60 {
        // Pacing the publisher (every 25 ms, a quarter of park_idle_ms).
        std::thread::sleep(Duration::from_millis(25));
        writeln!(lines, "{n}").unwrap();
        assert_eq!(sub.next(), format!("flow/x {n}"));
    }
    assert_eq!(
        server.counter("surepush_connections_resumed_total"),
        resumed_before,
        "a connection parked and resumed while messages flowed"
    );
    // Quiet now: both park (and the stream still works after).
    wait_parked(&server, 2);
    writeln!(lines, "last").unwrap();
    assert_eq!(sub.next(), "flow/x last");
    drop(lines);
    let _ = publisher.wait();
}
