//! MQTT 5 shared subscriptions (`$share/{group}/{filter}`, issue #21) with
//! real clients (`tests/mqtt/paho_shared.py`, paho-mqtt and a raw socket
//! member): each message reaches exactly one member of the group, a member
//! cut off mid-stream has its unacknowledged messages delivered to the
//! others, QoS 2 is delivered exactly once across the group, and 3.1.1
//! clients may share too. Two shards: the topics `jobs/0..6` are homed on
//! both, and members on both.
//!
//! Needs `/usr/bin/python3` with paho-mqtt (Debian: python3-paho-mqtt).

mod common;

use std::process::Command;

use common::TestServer;

/// Runs one scenario of the script against a fresh 2-shard server whose
/// free-form topics are open.
fn scenario(name: &str, count: u32) {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let publisher = server.token(8300, 1);
    // Users 8301..8304: members spread over both shards.
    let members: Vec<String> = (8301..=8304).map(|u| server.token(u, 1)).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqtt/paho_shared.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--port", &server.mqtt.port().to_string()])
        .args(["--pub-token", &publisher])
        .arg("--member-token")
        .args(&members)
        .args(["--scenario", name, "--count", &count.to_string()])
        .output()
        .expect("python3 (apt-get install python3-paho-mqtt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("shared checks passed"), "{text}");
    eprintln!("{text}");
    server.terminate();
}

#[test]
fn each_message_reaches_one_member_of_the_group() {
    scenario("spread", 2000);
}

#[test]
fn a_lost_members_unacknowledged_messages_reach_the_others() {
    scenario("lost_member", 2000);
}

#[test]
fn qos2_is_delivered_exactly_once_across_the_group() {
    scenario("qos2", 1000);
}

#[test]
fn mqtt_311_clients_share_too() {
    scenario("v311", 500);
}
