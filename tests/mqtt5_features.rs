//! MQTT 5 features against the mosquitto command-line clients (issue #21
//! item 3): subscription identifiers stored with a persistent session
//! across a kill -9, topic aliases from the server, and the Will Delay
//! Interval (also across a kill -9); with paho-mqtt, Will Retain (3.1.1
//! and 5.0) and the will's properties (`tests/mqtt/paho_will.py`).
//!
//! Needs `mosquitto_pub`/`mosquitto_sub` (Debian: mosquitto-clients) and
//! python3-paho-mqtt.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::TestServer;

/// Runs a mosquitto command-line client (`bin`) against `server` with
/// `token` and `args` (MQTT 5); returns (stdout, stdout and stderr).
fn mosquitto(bin: &str, server: &TestServer, token: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", token, "-V", "5"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} (apt-get install mosquitto-clients): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (stdout, all)
}

/// Publishes `msg` to `topic` at QoS 1; asserts the PUBACK was a success.
fn publish(server: &TestServer, token: &str, topic: &str, msg: &str) {
    let (_, out) = mosquitto(
        "mosquitto_pub",
        server,
        token,
        &["-t", topic, "-q", "1", "-m", msg, "-d"],
    );
    assert!(out.contains("RC:0"), "{topic}: {out}");
}

/// The printed message lines (the `-d` lines left out), sorted.
fn messages(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Subscription identifiers are part of the persistent session: given at
/// SUBSCRIBE, they come with every message of the subscription (inbox
/// wildcard and free-form topic alike), after a kill -9 of the gateway too,
/// without subscribing again.
#[test]
fn subscription_identifiers_survive_kill_9() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let (a, b) = (server.token(7501, 1), server.token(7502, 1));
    let session = ["-c", "-i", "subid", "-q", "1", "-d"];
    let mut args = session.to_vec();
    args.extend(["-t", "user/+", "-t", "chat/subid"]);
    args.extend(["-D", "subscribe", "subscription-identifier", "42"]);
    args.extend(["-W", "1"]);
    let (_, out) = mosquitto("mosquitto_sub", &server, &b, &args);
    assert!(out.contains("Subscribed (mid: 1): 1, 1"), "{out}");
    server.kill9();
    server.spawn();
    let sent = [
        ("user/7502", "d1"),
        ("chat/subid", "c1"),
        ("user/7502", "d2"),
        ("chat/subid", "c2"),
    ];
    for (topic, msg) in sent {
        publish(&server, &a, topic, msg);
    }
    let mut args = session.to_vec();
    args.extend(["-t", "unrelated/x"]);
    args.extend(["-F", "%t|%S|%p", "-C", "4", "-W", "20"]);
    let (got, out) = mosquitto("mosquitto_sub", &server, &b, &args);
    assert_eq!(
        messages(&got),
        vec![
            "chat/subid|42|c1",
            "chat/subid|42|c2",
            "user/7502|42|d1",
            "user/7502|42|d2"
        ],
        "{out}"
    );
}

/// Topic aliases from the server: a paho-mqtt MQTT 5 client allowing two
/// gets each of the first two topics by name once and by alias after,
/// the third always by name (tests/mqtt/topic_alias_check.py).
#[test]
fn topic_aliases_toward_a_paho_client_stay_within_its_maximum() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let out = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/mqtt/topic_alias_check.py"
        ))
        .arg(server.mqtt.port().to_string())
        .arg(server.token(7701, 1))
        .arg(server.token(7702, 1))
        .output()
        .expect("run /usr/bin/python3 (install python3-paho-mqtt)");
    common::assert_ok(&out, "topic_alias_check.py");
}

/// Starts `mosquitto_sub` as `token` with a will to `will_to` delayed by
/// `delay_s` (a persistent session: `-c` sets the longest Session Expiry
/// Interval), waits for its SUBACK and kills it (SIGKILL: no DISCONNECT,
/// so the will is due).
fn connect_with_will_and_die(
    server: &TestServer,
    token: &str,
    id: &str,
    will_to: &str,
    delay_s: u32,
) {
    let delay = delay_s.to_string();
    // Line-buffered: the SUBACK line must reach us while it runs.
    let mut child = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", token, "-V", "5", "-d", "-c", "-i", id])
        .args(["-t", "user/1", "-q", "1"])
        .args([
            "--will-topic",
            will_to,
            "--will-payload",
            id,
            "--will-qos",
            "1",
        ])
        .args(["-D", "will", "will-delay-interval", &delay])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if line.expect("read").contains("received SUBACK") {
            break;
        }
    }
    child.kill().expect("kill mosquitto_sub");
    child.wait().expect("reap");
}

/// Will Delay Interval: a will is published after its delay, unless the
/// session connects again before (MQTT-3.1.3-9).
#[test]
fn a_delayed_will_goes_after_its_delay_unless_the_session_comes_back() {
    let server = TestServer::start(2, "");
    let (w1, w2, r) = (
        server.token(7601, 1),
        server.token(7603, 1),
        server.token(7602, 1),
    );
    let receiver = ["-c", "-i", "will-rx", "-q", "1", "-t", "user/+", "-v", "-d"];
    let mut args = receiver.to_vec();
    args.extend(["-W", "1"]);
    mosquitto("mosquitto_sub", &server, &r, &args);
    // Comes back within its 3 s: the will is never published. Without
    // the delay it would have gone at once.
    connect_with_will_and_die(&server, &w1, "will-back", "user/7602", 3);
    let (_, out) = mosquitto(
        "mosquitto_sub",
        &server,
        &w1,
        &["-c", "-i", "will-back", "-t", "user/1", "-W", "1", "-d"],
    );
    assert!(out.contains("received CONNACK (0)"), "{out}");
    // Does not come back: published after 1 s.
    connect_with_will_and_die(&server, &w2, "will-gone", "user/7602", 1);
    let mut args = receiver.to_vec();
    args.extend(["-C", "1", "-W", "20"]);
    let (got, out) = mosquitto("mosquitto_sub", &server, &r, &args);
    assert_eq!(messages(&got), vec!["user/7602 will-gone"], "{out}");
    // The cancelled one stays cancelled past its delay (a negative check:
    // nothing signals that a will was not published, so it waits 4 s).
    let mut args = receiver.to_vec();
    args.extend(["-W", "4"]);
    let (got, out) = mosquitto("mosquitto_sub", &server, &r, &args);
    assert_eq!(messages(&got), Vec::<String>::new(), "{out}");
}

/// Will Retain (MQTT-3.1.2-17, 5.0 MQTT-3.1.2-15) and the will's
/// properties (MQTT-3.1.3-10) with paho-mqtt (`tests/mqtt/paho_will.py`):
/// a killed client's retained will becomes the retained message of its
/// free-form topic or room (a new subscriber gets it, RETAIN 1, the same
/// payload), a will with retain 0 does not, and a 5.0 will's message
/// properties reach its subscribers in their order, live and retained.
#[test]
fn paho_wills_are_retained_and_keep_their_properties() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let (a, b, c) = (
        server.token(7801, 1),
        server.token(7802, 1),
        server.token(7803, 1),
    );
    let port = server.mqtt.port().to_string();
    common::run_paho_script(
        "paho_will.py",
        &[
            "--port",
            &port,
            "--room",
            "78",
            "--token-a",
            &a,
            "--user-a",
            "7801",
            "--token-b",
            &b,
            "--user-b",
            "7802",
            "--token-c",
            &c,
        ],
        "all will checks passed",
    );
    server.terminate();
}

/// A will waiting for its Will Delay Interval survives a kill -9 of the
/// gateway (docs/MQTT.md 2.7): stored as a keyed record when its
/// connection ends, it is published after the restart once its delay is
/// over; one whose session resumes after the restart, within its delay,
/// is never published.
#[test]
fn a_delayed_will_survives_kill_9_unless_its_session_resumes() {
    let mut server = TestServer::unstarted(2, "", "");
    server.rust_log = "info,surepush_server::transport::mqtt=debug".into();
    server.spawn();
    let (w1, w2, r) = (
        server.token(7901, 1),
        server.token(7903, 1),
        server.token(7902, 1),
    );
    let receiver = [
        "-c", "-i", "will-rx9", "-q", "1", "-t", "user/+", "-v", "-d",
    ];
    let mut args = receiver.to_vec();
    args.extend(["-W", "1"]);
    mosquitto("mosquitto_sub", &server, &r, &args);
    let waiting = |l: &str| l.contains("MQTT will waits for its delay");
    let mark = server.log.lock().unwrap().len();
    connect_with_will_and_die(&server, &w1, "will-kill9", "user/7902", 4);
    let at = server.wait_for_line(mark, waiting);
    connect_with_will_and_die(&server, &w2, "will-resumes", "user/7902", 10);
    server.wait_for_line(at + 1, waiting);
    // Each will's record is in its user's shard log before a message
    // stored there after it: once these are acknowledged, both are
    // durable.
    let sync = server.token(7904, 1);
    publish(&server, &sync, "user/7901", "sync");
    publish(&server, &sync, "user/7903", "sync");
    server.kill9();
    server.spawn();
    // The second session comes back within its delay: no will.
    let (_, out) = mosquitto(
        "mosquitto_sub",
        &server,
        &w2,
        &["-c", "-i", "will-resumes", "-t", "user/1", "-W", "1", "-d"],
    );
    assert!(out.contains("received CONNACK (0)"), "{out}");
    // The first is published after the restart, once its delay is over.
    let mut args = receiver.to_vec();
    args.extend(["-C", "1", "-W", "20"]);
    let (got, out) = mosquitto("mosquitto_sub", &server, &r, &args);
    assert_eq!(messages(&got), vec!["user/7902 will-kill9"], "{out}");
    // The resumed session's will stays unpublished past its delay (a
    // negative check: nothing signals that a will was not published).
    let mut args = receiver.to_vec();
    args.extend(["-W", "8"]);
    let (got, out) = mosquitto("mosquitto_sub", &server, &r, &args);
    assert_eq!(messages(&got), Vec::<String>::new(), "{out}");
    server.terminate();
}
