//! The admin API's reads and actions about one user answer on every node
//! of a cluster (issue #20, docs/CLUSTER.md "Admin reads on any node"):
//! two surepush processes and a real nats-server 2.15 on 127.0.0.1. A node
//! that does not own the user asks the owner node over NATS and answers
//! with the owner's result — the same JSON the owner gives — for presence
//! (single and batch), conversation summaries and pages, inbox pages and
//! disconnects. With the owner killed (SIGKILL) the read is a typed 503
//! `owner_unavailable` at once, and the right answer again after its
//! restart.

#[path = "../crates/cluster/tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::TestServer;
use support::NatsServer;
use surepush::client::{BlockingClient, Event};
use surepush::proto::{Qos, SendResult, Seq, UserId};

const PARTITIONS: u64 = 64;
const WAIT: Duration = Duration::from_secs(20);

/// A nats-server and two nodes, partition `p` on node `p % 2`.
struct Cluster {
    nodes: Vec<TestServer>,
    nats: NatsServer,
}

impl Cluster {
    fn start() -> Cluster {
        let nats = NatsServer::start();
        let names = ["n0", "n1"];
        common::cluster_init(&nats.url(), PARTITIONS, &names);
        let nodes = names
            .iter()
            .map(|name| common::cluster_node(&nats.url(), name, PARTITIONS, ""))
            .collect();
        Cluster { nodes, nats }
    }

    /// The first user from `from` up owned by node `node`.
    fn user_on(node: usize, from: u64) -> u64 {
        common::ids_where(PARTITIONS, from, 1, |p| p as usize % 2 == node)[0]
    }

    /// `user`'s device connected to its own node `node`, live.
    fn connect(&self, node: usize, user: u64, device: u64) -> BlockingClient {
        let n = &self.nodes[node];
        let config = n.client_config(user, device);
        let mut c =
            BlockingClient::connect(n.addr, config, Some(Seq::ZERO), WAIT).expect("connect");
        c.wait_for(WAIT, |e| matches!(e, Event::CaughtUp))
            .expect("io")
            .expect("caught up");
        c
    }
}

/// GET `path` on `node`: the status and the body as JSON.
fn get(node: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = node.http("GET", path, "", true);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

/// The same read on both nodes: 200, and the same answer.
fn on_both(cluster: &Cluster, path: &str) -> serde_json::Value {
    let (owner_status, owner) = get(&cluster.nodes[1], path);
    let (status, other) = get(&cluster.nodes[0], path);
    assert_eq!(
        (owner_status, status),
        (200, 200),
        "{path}: {owner} / {other}"
    );
    assert_eq!(other, owner, "{path}: the other node answers as the owner");
    other
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Sends `count` messages from `s` to `to`; returns client id -> seq.
fn send_all(s: &mut BlockingClient, to: u64, count: usize) -> BTreeMap<u64, (usize, Seq)> {
    let mut ids = BTreeMap::new();
    for i in 0..count {
        let payload = Bytes::from(format!("m{i}"));
        let id = s.send(UserId(to), Qos::AtLeastOnce, payload).expect("send");
        ids.insert(id, i);
    }
    let mut acked = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while acked.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.next_event(left).expect("io") {
            Some(Event::SendAcked(a)) => {
                assert_eq!(a.result, SendResult::Stored);
                acked.insert(a.client_msg_id, (ids[&a.client_msg_id], a.seq));
            }
            Some(Event::SendFailed(a)) => panic!("send failed: {a:?}"),
            Some(_) => {}
            None => panic!("{} of {count} SENDACKs", acked.len()),
        }
    }
    acked
}

/// Checks an inbox page's messages: `sent` (client id -> (index, seq))
/// from `from` to `to`, in seq order, with their payloads.
fn assert_messages(page: &serde_json::Value, from: u64, to: u64, sent: &[(u64, usize, Seq)]) {
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), sent.len(), "{page}");
    for (m, (id, i, seq)) in messages.iter().zip(sent) {
        assert_eq!(m["seq"], seq.0, "{m}");
        assert_eq!(m["from"], from.to_string(), "{m}");
        assert_eq!(m["to"], to.to_string(), "{m}");
        assert_eq!(m["client_msg_id"], id.to_string(), "{m}");
        assert_eq!(m["payload"], b64(&format!("m{i}")), "{m}");
    }
}

/// Issue #20: every per-user admin read and the disconnect answer on the
/// node that does not own the user with the owner's result.
#[test]
fn per_user_admin_reads_and_disconnects_answer_on_every_node() {
    let cluster = Cluster::start();
    let sender = Cluster::user_on(0, 1);
    let receiver = Cluster::user_on(1, 1);
    let mut s = cluster.connect(0, sender, 1);
    let acked = send_all(&mut s, receiver, 3);
    let sent: Vec<(u64, usize, Seq)> = acked.iter().map(|(id, (i, seq))| (*id, *i, *seq)).collect();
    assert_eq!(
        sent.iter().map(|m| m.2 .0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let mut r = cluster.connect(1, receiver, 7);

    // Presence: the receiver's device, on node 1, seen from node 0.
    let presence = on_both(&cluster, &format!("/v1/users/{receiver}/presence"));
    assert_eq!(presence["user"], receiver.to_string());
    assert_eq!(presence["online"], true);
    let devices = presence["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{presence}");
    assert_eq!(devices[0]["device"], "7");
    assert_eq!(devices[0]["transport"], "native");
    // A batch spanning both nodes, in the order asked; the sender's own
    // node answers for it, node 1 for the receiver.
    let body = format!(
        r#"{{"users": [{receiver}, {sender}, {}]}}"#,
        Cluster::user_on(1, receiver + 1)
    );
    for node in &cluster.nodes {
        let (status, text) = node.http("POST", "/v1/presence", &body, true);
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let users = v["users"].as_array().expect("users");
        assert_eq!(users[0]["user"], receiver.to_string());
        assert_eq!(users[0]["devices"][0]["device"], "7");
        assert_eq!(users[1]["user"], sender.to_string());
        assert_eq!(users[1]["devices"][0]["device"], "1");
        assert_eq!(users[2]["online"], false, "{v}");
        assert!(users.iter().all(|u| u.get("error").is_none()), "{v}");
    }

    // The inbox and the conversation, read on the owner's log.
    let inbox = on_both(&cluster, &format!("/v1/users/{receiver}/messages"));
    assert_messages(&inbox, sender, receiver, &sent);
    assert_eq!(inbox["head"], 3);
    let summaries = on_both(&cluster, &format!("/v1/users/{receiver}/conversations"));
    let conversations = summaries["conversations"].as_array().expect("list");
    assert_eq!(conversations.len(), 1, "{summaries}");
    assert_eq!(conversations[0]["kind"], "user");
    assert_eq!(conversations[0]["peer"], sender.to_string());
    assert_eq!(conversations[0]["total"], 3);
    assert_eq!(conversations[0]["last_seq"], 3);
    let path = format!("/v1/users/{receiver}/conversations/user/{sender}/messages?limit=2");
    let page = on_both(&cluster, &path);
    assert_messages(&page, sender, receiver, &sent[1..]);
    assert_eq!(page["end"], false);
    let path = format!(
        "/v1/users/{receiver}/conversations/user/{sender}/messages?direction=before&anchor=2"
    );
    assert_messages(&on_both(&cluster, &path), sender, receiver, &sent[..1]);
    // The owner's refusals travel too.
    let (status, v) = get(
        &cluster.nodes[0],
        &format!("/v1/users/{receiver}/messages?limit=100000"),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    // And the other way round: node 1 reads the sender, owned by node 0.
    let (status, v) = get(&cluster.nodes[1], &format!("/v1/users/{sender}/presence"));
    assert_eq!(status, 200);
    assert_eq!(v["devices"][0]["device"], "1");

    // A disconnect asked of node 0 closes the session on node 1.
    let path = format!("/v1/users/{receiver}/disconnect");
    let (status, text) = cluster.nodes[0].http("POST", &path, r#"{"device": "7"}"#, true);
    assert_eq!(
        (status, text.as_str()),
        (
            200,
            format!(r#"{{"disconnected":1,"user":"{receiver}"}}"#).as_str()
        )
    );
    let closed = r
        .wait_for(WAIT, |e| matches!(e, Event::Disconnected(..)))
        .expect("io");
    assert!(closed.is_some(), "the receiver's session was closed");
    let (status, v) = get(&cluster.nodes[0], &format!("/v1/users/{receiver}/presence"));
    assert_eq!((status, v["online"].as_bool()), (200, Some(false)), "{v}");
    drop(s);
}

/// Issue #20: the owner killed with SIGKILL: a read of its user on the
/// other node is a typed 503 `owner_unavailable` (NATS has no responders
/// for its subject), for presence a per-user error in a batch; after the
/// owner's restart the same read answers with the stored messages.
#[test]
fn an_admin_read_of_a_killed_owner_is_a_typed_503_then_the_answer() {
    let mut cluster = Cluster::start();
    let sender = Cluster::user_on(0, 1);
    let receiver = Cluster::user_on(1, 1);
    let mut s = cluster.connect(0, sender, 1);
    let acked = send_all(&mut s, receiver, 4);
    let sent: Vec<(u64, usize, Seq)> = acked.iter().map(|(id, (i, seq))| (*id, *i, *seq)).collect();
    let path = format!("/v1/users/{receiver}/messages");
    assert_messages(&on_both(&cluster, &path), sender, receiver, &sent);

    cluster.nodes[1].kill9();
    for path in [
        path.clone(),
        format!("/v1/users/{receiver}/conversations"),
        format!("/v1/users/{receiver}/presence"),
    ] {
        let (status, v) = get(&cluster.nodes[0], &path);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (503, Some("owner_unavailable")),
            "{path}: {v}"
        );
    }
    let (status, text) = cluster.nodes[0].http(
        "POST",
        &format!("/v1/users/{receiver}/disconnect"),
        "",
        true,
    );
    assert_eq!(status, 503, "{text}");
    let body = format!(r#"{{"users": [{receiver}, {sender}]}}"#);
    let (status, text) = cluster.nodes[0].http("POST", "/v1/presence", &body, true);
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["users"][0]["error"], "owner_unavailable", "{v}");
    assert_eq!(v["users"][1]["devices"][0]["device"], "1", "{v}");

    cluster.nodes[1].spawn();
    let (status, page) = get(&cluster.nodes[0], &path);
    assert_eq!(status, 200, "{page}");
    assert_messages(&page, sender, receiver, &sent);
    drop(s);
}

/// Runs `future` to its end on this thread (the admin call's answer comes
/// from the cluster thread through a channel that wakes this one).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Issue #20 (no loops): a node asked about a user it does not own —
/// as a node with a stale placement would ask — refuses with `NotOwner`
/// and asks no one further; about its own user it answers.
#[test]
fn a_node_asked_about_a_user_it_does_not_own_refuses_and_asks_no_one() {
    use surepush::cluster::admin_calls::{AdminAnswer, AdminCall, Refusal, UserPresence};
    let cluster = Cluster::start();
    let on_n0 = Cluster::user_on(0, 1);
    let on_n1 = Cluster::user_on(1, 1);
    let _device = cluster.connect(1, on_n1, 4);
    // A member that owns no partition, asking node n1 directly.
    let probe = support::join(support::node_config(&cluster.nats, "probe", PARTITIONS, 1));
    let calls = probe.admin_calls();
    let n1 = support::node_id("n1");
    let ask = |call| block_on(calls.call(n1.clone(), call, WAIT)).expect("n1 answers");

    let answer = ask(AdminCall::Presence {
        users: vec![on_n0, on_n1].into_iter().map(UserId).collect(),
    });
    let AdminAnswer::Presence(users) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(
        users[0],
        UserPresence {
            user: UserId(on_n0),
            owned: false,
            devices: Vec::new()
        }
    );
    assert_eq!((users[1].user, users[1].owned), (UserId(on_n1), true));
    assert_eq!(users[1].devices.len(), 1, "{users:?}");
    assert_eq!(users[1].devices[0].device.0, 4);
    for call in [
        AdminCall::Disconnect {
            user: UserId(on_n0),
            device: None,
        },
        AdminCall::Inbox {
            user: UserId(on_n0),
            fetch: surepush::proto::ConvFetch {
                request_id: 0,
                peer: UserId(0),
                direction: surepush::proto::SyncDirection::Latest,
                limit: 10,
            },
        },
    ] {
        match ask(call) {
            AdminAnswer::Refused {
                why: Refusal::NotOwner,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }
    probe.shutdown(Duration::from_secs(2));
}
