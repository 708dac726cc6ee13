//! Retained messages of free-form topics (issue #21) with real clients:
//! `mosquitto_pub -r` / `mosquitto_sub` (3.1.1 and 5.0) for delivery on
//! subscribe (exact topic and payload, RETAIN 1), replacement, deletion,
//! wildcard matches across shards and a kill -9 of the gateway; paho-mqtt
//! (`tests/mqtt/paho_retained.py`) for Retain Handling 1 and 2 and the
//! v5 message properties (Message Expiry Interval: the remaining time, and
//! an expired retained message is not sent).
//!
//! Needs `mosquitto_pub`/`mosquitto_sub` (Debian: mosquitto-clients) and
//! python3-paho-mqtt.

mod common;

use common::mosquitto::{messages, mosquitto, sorted};
use common::TestServer;
use surepush::core::{Router, ShardId};
use surepush::proto::topic_stream::stream_id;
use surepush::proto::UserId;

/// Publishes `msg` (`None`: an empty payload, which clears) to `topic`
/// with RETAIN 1 at QoS 1; asserts the PUBACK.
fn retain(server: &TestServer, token: &str, version: &str, topic: &str, msg: Option<&str>) {
    let mut args = vec!["-t", topic, "-q", "1", "-V", version, "-r", "-d"];
    match msg {
        Some(m) => args.extend(["-m", m]),
        None => args.push("-n"),
    }
    let (_, out) = mosquitto("mosquitto_pub", server, token, &args);
    assert!(
        out.contains("received PUBACK") && !out.contains("RC:1"),
        "{out}"
    );
}

/// What a new clean subscriber on `filters` gets within two seconds: the
/// `topic payload` lines (sorted) and how many carried RETAIN 1.
fn new_subscriber(
    server: &TestServer,
    token: &str,
    version: &str,
    filters: &[&str],
) -> (Vec<String>, usize) {
    let mut args = vec!["-q", "1", "-V", version, "-v", "-d", "-W", "2"];
    for f in filters {
        args.extend(["-t", f]);
    }
    let (stdout, all) = mosquitto("mosquitto_sub", server, token, &args);
    let flagged = all
        .lines()
        .filter(|l| l.contains("received PUBLISH") && l.contains(", r1,"))
        .count();
    (messages(&stdout), flagged)
}

/// The shard of a 2-shard node that homes the topic `name`.
fn home(name: &str) -> ShardId {
    Router::new(ShardId(0), 2).owner(UserId(stream_id(name)))
}

#[test]
fn retained_messages_of_free_form_topics_replace_clear_match_wildcards_and_survive_kill_9() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let (a, b) = (server.token(8101, 1), server.token(8102, 1));
    for version in ["311", "5"] {
        let t = |s: &str| format!("rt{version}/{s}");
        let (one, two, gone) = (t("a/1"), t("b/2"), t("c"));
        // A name homed on the other shard than `one`: the topics span both.
        let deep = (0..)
            .map(|i| t(&format!("d/{i}/f")))
            .find(|n| home(n) != home(&one))
            .expect("names hash to both shards");
        retain(&server, &a, version, &one, Some("first"));
        retain(&server, &a, version, &two, Some("two"));
        retain(&server, &a, version, &gone, Some("soon gone"));
        retain(&server, &a, version, &deep, Some("deep"));
        // Replacement and deletion.
        retain(&server, &a, version, &one, Some("second"));
        retain(&server, &a, version, &gone, None);
        // A message without RETAIN changes nothing.
        let (_, out) = mosquitto(
            "mosquitto_pub",
            &server,
            &a,
            &["-t", &two, "-q", "1", "-V", version, "-m", "live", "-d"],
        );
        assert!(out.contains("received PUBACK"), "{out}");
        let all = sorted(&[
            &format!("{one} second"),
            &format!("{two} two"),
            &format!("{deep} deep"),
        ]);
        for round in ["before", "after kill -9"] {
            let (got, flagged) = new_subscriber(&server, &b, version, &[&one]);
            assert_eq!(got, vec![format!("{one} second")], "v{version} {round}");
            assert_eq!(flagged, 1, "v{version} {round}: RETAIN 1");
            let (got, flagged) = new_subscriber(&server, &b, version, &[&t("#")]);
            assert_eq!(got, all, "v{version} {round}");
            assert_eq!(flagged, 3, "v{version} {round}");
            let (got, _) = new_subscriber(&server, &b, version, &[&t("+/2"), &t("d/+/f")]);
            let want = sorted(&[&format!("{two} two"), &format!("{deep} deep")]);
            assert_eq!(got, want, "v{version} {round}");
            let (got, _) = new_subscriber(&server, &b, version, &[&gone, &t("c/#")]);
            assert_eq!(got, Vec::<String>::new(), "v{version} {round}: cleared");
            if round == "before" {
                server.kill9();
                server.spawn();
            }
        }
        // Cleared after the restart too, and set again.
        retain(&server, &a, version, &one, None);
        retain(&server, &a, version, &gone, Some("back"));
        let (got, _) = new_subscriber(&server, &b, version, &[&t("#")]);
        let want = sorted(&[
            &format!("{two} two"),
            &format!("{deep} deep"),
            &format!("{gone} back"),
        ]);
        assert_eq!(got, want, "v{version}");
    }
    server.terminate();
}

/// Retain Handling 1 and 2, Retain As Published 0 and 1 for live messages,
/// 3.1.1 delivery and the v5 properties of a retained message, with
/// paho-mqtt.
#[test]
fn paho_clients_get_retained_messages_by_retain_handling_with_their_properties() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let (a, b, c) = (
        server.token(8201, 1),
        server.token(8202, 1),
        server.token(8203, 1),
    );
    let port = server.mqtt.port().to_string();
    common::run_paho_script(
        "paho_retained.py",
        &[
            "--port",
            &port,
            "--token-a",
            &a,
            "--token-b",
            &b,
            "--token-c",
            &c,
        ],
        "all retained checks passed",
    );
    server.terminate();
}
