//! The mosquitto command-line clients against a [`TestServer`]
//! (`mosquitto_pub`, `mosquitto_sub`; Debian: mosquitto-clients), shared
//! by the free-form topic tests.

use std::process::Command;

use super::TestServer;

/// Runs a mosquitto command-line client (`bin`) against `server` with
/// `token` and `args`; returns (stdout, stdout and stderr).
pub fn mosquitto(bin: &str, server: &TestServer, token: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", "x", "-P", token])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} (apt-get install mosquitto-clients): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (stdout, all)
}

/// Publishes `msg` to `topic` at `qos` and returns the client's debug
/// output (`-d`: the acknowledgement and its reason code).
pub fn publish(
    server: &TestServer,
    token: &str,
    version: &str,
    topic: &str,
    qos: &str,
    msg: &str,
) -> String {
    let args = ["-t", topic, "-q", qos, "-V", version, "-m", msg, "-d"];
    mosquitto("mosquitto_pub", server, token, &args).1
}

/// A persistent session (`-c -i id`) on `topics` at QoS `qos`: `extra`
/// says what to wait for (`-W 1` to register, `-C n -W 20` to collect).
pub fn session_at(
    server: &TestServer,
    token: &str,
    version: &str,
    id: &str,
    qos: &str,
    topics: &[&str],
    extra: &[&str],
) -> (String, String) {
    // --nodelay: a client that exits right after its last message (`-C`)
    // closes with the late SUBACK unread, and the kernel then resets the
    // connection and drops what Nagle still held back: its last PUBACKs
    // and its DISCONNECT (seen in tests/mqtt_topics.rs).
    let mut args = vec![
        "-c",
        "-i",
        id,
        "-q",
        qos,
        "-V",
        version,
        "-v",
        "-d",
        "--nodelay",
    ];
    for t in topics {
        args.extend(["-t", t]);
    }
    args.extend(extra);
    mosquitto("mosquitto_sub", server, token, &args)
}

/// [`session_at`] QoS 1.
pub fn session(
    server: &TestServer,
    token: &str,
    version: &str,
    id: &str,
    topics: &[&str],
    extra: &[&str],
) -> (String, String) {
    session_at(server, token, version, id, "1", topics, extra)
}

/// The `topic payload` lines a subscriber printed (its `-d` lines left
/// out), sorted: streams are ordered each on its own, not among each other.
pub fn messages(stdout: &str) -> Vec<String> {
    let mut lines = in_order(stdout);
    lines.sort();
    lines
}

/// The `topic payload` lines a subscriber printed, in arrival order.
pub fn in_order(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
        .map(str::to_string)
        .collect()
}

/// `lines`, sorted.
pub fn sorted(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
