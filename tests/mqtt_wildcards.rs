//! Wildcard filters over free-form MQTT topics (issue #21 item 1) with the
//! mosquitto command-line clients: `+` and `#` matching (topic, payload,
//! order), the `$` rule, overlapping subscriptions, permissions by filter,
//! QoS 2 delivery, and a persistent session with wildcard subscriptions
//! across a kill -9 of the gateway. Two shards, with topics homed on the
//! other shard than their subscriber.
//!
//! Needs `mosquitto_pub`/`mosquitto_sub` (Debian: mosquitto-clients).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::mosquitto::{in_order, messages, publish, session, session_at, sorted};
use common::TestServer;
use surepush::core::{Acl, Router, ShardId};
use surepush::proto::topic_stream::stream_id;
use surepush::proto::UserId;

/// How a persistent session collects what is due: it reads for a window
/// and exits by itself. Not `-C n`: a client that closes right after its
/// n-th message leaves what the server sent later (here the SUBACK of a
/// filter whose streams were resumed before it) unread, its TCP stack
/// answers with a reset, and the server's unread bytes (its last PUBACKs)
/// are dropped, so those messages are rightly due again (at least once).
const COLLECT: &[&str] = &["-W", "5"];

/// The shard of a 2-shard node that owns `id`.
fn shard_of(id: u64) -> ShardId {
    Router::new(ShardId(0), 2).owner(UserId(id))
}

/// Asserts the topics are homed on both shards, so some are homed on
/// another shard than the subscriber `user`.
fn spans_both_shards(user: u64, topics: &[&str]) {
    let mine = shard_of(user);
    assert!(
        topics.iter().any(|t| shard_of(stream_id(t)) != mine),
        "every topic is on the subscriber's shard: pick other names"
    );
}

/// Publishing succeeded (QoS 1 PUBACK 0 or a QoS 2 PUBCOMP).
fn published(out: &str) {
    assert!(out.contains("RC:0") || out.contains("PUBCOMP"), "{out}");
}

/// A live `mosquitto_sub` on `topics` (5.0, QoS 1) that exits after
/// `count` messages, and its output after the SUBACK.
struct LiveSub {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

/// Starts a [`LiveSub`] and returns once its SUBACK came.
fn live_sub(server: &TestServer, token: &str, topics: &[&str], count: usize) -> LiveSub {
    let port = server.mqtt.port().to_string();
    let count = count.to_string();
    // Line-buffered: its SUBACK line must come while it runs.
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub"])
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "x", "-P", token])
        .args(["-q", "1", "-V", "5", "-v", "-d", "-C", &count, "-W", "30"]);
    for t in topics {
        cmd.args(["-t", t]);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("mosquitto_sub");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        let line = lines.next().expect("SUBACK before exit").expect("read");
        if line.starts_with("Subscribed") {
            break;
        }
    }
    LiveSub { child, lines }
}

/// The `topic payload` lines a [`LiveSub`] printed, in order, once it
/// exited.
fn wait_live(sub: LiveSub) -> Vec<String> {
    let LiveSub { mut child, lines } = sub;
    let text: Vec<String> = lines.map_while(Result::ok).collect();
    child.wait().expect("mosquitto_sub exits");
    in_order(&text.join("\n"))
}

/// `+` and `#` over free-form topics: a persistent session gets exactly
/// the topics its filters match, with their names and payloads, in order
/// per topic, for messages published while it was away (to streams that
/// did not exist when it subscribed) and live (streams new then); the
/// `$` rule: a `#` subscriber never sees a `$` topic (publishing one is
/// refused, 5.0 RC 144).
#[test]
fn plus_and_hash_match_free_form_topics_across_shards_at_both_versions() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let (pub_user, sub_user) = (7401, 7402);
    let (a, b) = (server.token(pub_user, 1), server.token(sub_user, 1));
    let filters = ["sensors/+/temp", "fleet/#"];
    for version in ["311", "5"] {
        let id = format!("wild-{version}");
        let (_, out) = session(&server, &b, version, &id, &filters, &["-W", "1"]);
        assert!(
            out.contains("Subscribed (mid: 1): 1, 1"),
            "v{version}: {out}"
        );
        let m = |s: &str| format!("{s}-v{version}");
        let sent = [
            ("sensors/1/temp", m("t1"), true),
            ("sensors/2/temp", m("t2"), true),
            ("sensors/1/hum", m("hum"), false),
            ("sensors/1/temp/x", m("deeper"), false),
            ("sensors/temp", m("short"), false),
            ("fleet", m("parent"), true),
            ("fleet/a/b/c", m("deep"), true),
            ("fleets/x", m("sibling"), false),
            ("sensors/1/temp", m("t3"), true),
            ("sensors/1/temp", m("t4"), true),
        ];
        let names: Vec<&str> = sent.iter().map(|s| s.0).collect();
        spans_both_shards(sub_user, &names);
        for (topic, msg, _) in &sent {
            published(&publish(&server, &a, version, topic, "1", msg));
        }
        let want: Vec<String> = sent
            .iter()
            .filter(|s| s.2)
            .map(|(t, msg, _)| format!("{t} {msg}"))
            .collect();
        let (got, out) = session(&server, &b, version, &id, &filters, COLLECT);
        let got = in_order(&got);
        let want_refs: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(
            messages(&got.join("\n")),
            sorted(&want_refs),
            "v{version}: {out}"
        );
        // Order within a topic is the publishing order.
        let temp1: Vec<&String> = got
            .iter()
            .filter(|l| l.starts_with("sensors/1/temp "))
            .collect();
        let want1 = [m("t1"), m("t3"), m("t4")].map(|p| format!("sensors/1/temp {p}"));
        assert_eq!(temp1, want1.iter().collect::<Vec<_>>(), "v{version}");
        let (rest, out) = session(&server, &b, version, &id, &filters, &["-W", "2"]);
        assert_eq!(messages(&rest), Vec::<String>::new(), "v{version}: {out}");
    }
    // Live: streams created after the SUBSCRIBE, on both shards, reach a
    // connected `#` subscriber; a `$` topic is refused and reaches no one.
    let live_token = server.token(sub_user, 2);
    let sub = live_sub(&server, &live_token, &["#"], 3);
    let out = publish(&server, &a, "5", "$SYS/x", "1", "system");
    assert!(out.contains("RC:144"), "{out}");
    let live = ["new/1", "new/2/x", "other"];
    spans_both_shards(sub_user, &live);
    for (i, t) in live.iter().enumerate() {
        published(&publish(&server, &a, "5", t, "1", &format!("live-{i}")));
    }
    assert_eq!(
        wait_live(sub),
        vec!["new/1 live-0", "new/2/x live-1", "other live-2"]
    );
    server.terminate();
}

/// Overlapping subscriptions (an exact name and two wildcards matching
/// it): one copy per message, at the highest granted QoS (QoS 2 here),
/// for 3.1.1 and 5.0 alike; unsubscribing one filter keeps the others'
/// delivery; a filter whose first level is a name needs a token grant
/// covering it (SUBACK 0x80 / 0x87), a leading-wildcard filter gets only
/// the names the token grants.
#[test]
fn overlapping_filters_deliver_once_at_the_highest_qos_and_filters_need_grants() {
    let server = TestServer::start(2, "");
    let writer = server.token_granting(7501, 1, Acl::new(&[], &["#"]).expect("valid"));
    let reads = || Acl::new(&["ov/#", "perm/+"], &[]).expect("valid");
    for (version, refused, device) in [("311", "128", 1), ("5", "135", 3)] {
        // Sessions are per (user, device): one device per session here.
        let reader = server.token_granting(7502, device, reads());
        let perm_reader = server.token_granting(7502, device + 1, reads());
        let id = format!("overlap-{version}");
        let topics = ["ov/1", "ov/+", "ov/#"];
        let qos = ["1", "2", "1"];
        // mosquitto_sub asks one QoS for all its filters: subscribe in
        // three sessions' worth of SUBSCRIBEs on the same client id.
        for (t, q) in topics.iter().zip(qos) {
            let (_, out) = session_at(&server, &reader, version, &id, q, &[t], &["-W", "1"]);
            assert!(
                out.contains(&format!("Subscribed (mid: 1): {q}")),
                "v{version}: {out}"
            );
        }
        published(&publish(
            &server,
            &writer,
            version,
            "ov/1",
            "2",
            &format!("once-{version}"),
        ));
        // Collecting re-subscribes `ov/1` at QoS 1: `ov/+` still grants 2.
        let again = ["ov/1"];
        let (got, out) = session_at(&server, &reader, version, &id, "1", &again, COLLECT);
        assert_eq!(
            messages(&got),
            vec![format!("ov/1 once-{version}")],
            "v{version}: {out}"
        );
        assert!(out.contains("q2"), "delivered at QoS 2: {out}");
        let (rest, out) = session_at(&server, &reader, version, &id, "1", &again, &["-W", "2"]);
        assert_eq!(messages(&rest), Vec::<String>::new(), "v{version}: {out}");
        // Permissions by filter: `perm/+` is granted, `perm/#` and
        // `secret/+` are not covered by a grant; `#` is accepted and
        // delivers only granted names.
        let pid = format!("perm-{version}");
        let (_, out) = session(
            &server,
            &perm_reader,
            version,
            &pid,
            &["perm/+", "perm/#", "secret/+", "#"],
            &["-W", "1"],
        );
        let want = format!("Subscribed (mid: 1): 1, {refused}, {refused}, 1");
        assert!(out.contains(&want), "v{version}: {out}");
        for (t, msg) in [
            ("secret/x", "hidden"),
            ("perm/a", "shown"),
            ("ov/2", "also"),
        ] {
            published(&publish(&server, &writer, version, t, "1", msg));
        }
        let (got, out) = session(&server, &perm_reader, version, &pid, &["perm/+"], COLLECT);
        assert_eq!(
            messages(&got),
            sorted(&["ov/2 also", "perm/a shown"]),
            "v{version}: {out}"
        );
        let (rest, out) = session(
            &server,
            &perm_reader,
            version,
            &pid,
            &["perm/+"],
            &["-W", "2"],
        );
        assert_eq!(messages(&rest), Vec::<String>::new(), "v{version}: {out}");
    }
}

/// A persistent session with wildcard subscriptions misses nothing across
/// a kill -9 of the gateway: messages to existing streams and to streams
/// created while it was away (before the kill, and after the restart
/// before it came back) each arrive exactly once, QoS 1 and QoS 2 (the
/// subscriber at QoS 2), and nothing is due afterwards.
#[test]
fn a_persistent_wildcard_session_gets_everything_exactly_once_across_kill_9() {
    let mut server = TestServer::unstarted(2, "", "");
    server.mqtt_config = "topics_open = true\n".into();
    server.spawn();
    let (a, b) = (server.token(7601, 1), server.token(7602, 1));
    for version in ["311", "5"] {
        let id = format!("kill-{version}");
        let f = format!("k{version}/+/pos");
        let filters = [f.as_str()];
        let (_, out) = session_at(&server, &b, version, &id, "2", &filters, &["-W", "1"]);
        assert!(out.contains("Subscribed (mid: 1): 2"), "v{version}: {out}");
        let topic = |n: u32| format!("k{version}/{n}/pos");
        // A stream the session finds while connected.
        let sub = {
            let port = server.mqtt.port().to_string();
            let mut c = Command::new("mosquitto_sub");
            c.args(["-h", "127.0.0.1", "-p", &port, "-u", "x", "-P", &b])
                .args(["-c", "-i", &id, "-q", "2", "-V", version, "-v"])
                .args(COLLECT)
                .args(["-t", &f]);
            c.stdout(Stdio::piped()).spawn().expect("mosquitto_sub")
        };
        let first = format!("{} live-{version}", topic(1));
        // Published while it connects: live, or (before its resume) as a
        // message due to the persistent session; once either way.
        published(&publish(
            &server,
            &a,
            version,
            &topic(1),
            "2",
            &format!("live-{version}"),
        ));
        let out = sub.wait_with_output().expect("mosquitto_sub");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), first);
        let mut expect = Vec::new();
        for round in ["before", "after"] {
            for (n, qos) in [(1, "1"), (2, "2"), (1, "2"), (3, "1"), (4, "2")] {
                let n = if round == "after" { n + 4 } else { n };
                let msg = format!("{round}-q{qos}-{}", expect.len());
                published(&publish(&server, &a, version, &topic(n), qos, &msg));
                expect.push(format!("{} {msg}", topic(n)));
            }
            if round == "before" {
                server.kill9();
                server.spawn();
            }
        }
        let want: Vec<&str> = expect.iter().map(String::as_str).collect();
        let (got, out) = session_at(&server, &b, version, &id, "2", &filters, COLLECT);
        assert_eq!(messages(&got), sorted(&want), "v{version}: {out}");
        let (rest, out) = session_at(&server, &b, version, &id, "2", &filters, &["-W", "2"]);
        assert_eq!(messages(&rest), Vec::<String>::new(), "v{version}: {out}");
    }
}
