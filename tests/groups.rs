//! Groups end to end (issue 8): membership through the admin API, kept
//! durably on the group's home shard; a SEND to a group is stored in every
//! member's inbox across shards and acknowledged once.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{next_message, TestServer};
use surepush::client::Event;
use surepush::core::Router;
use surepush::proto::{Qos, SendResult, Seq, UserId};

const GROUP_NO: u64 = 7;
const GROUP: UserId = UserId(UserId::GROUP_BIT | GROUP_NO);

fn members(server: &TestServer, body: &str) -> (u16, String) {
    server.http("POST", &format!("/v1/groups/{GROUP_NO}"), body, true)
}

#[test]
fn group_sends_reach_every_member_across_shards_and_survive_restarts() {
    let mut server = TestServer::start(2, "");
    // Members on both shards (the test needs that to mean anything).
    let (a, b, c, outsider) = (1, 2, 3, 4);
    let shards: Vec<u16> = [a, b, c]
        .iter()
        .map(|u| Router::of_node(2).owner(UserId(*u)).0)
        .collect();
    assert!(shards.contains(&0) && shards.contains(&1), "{shards:?}");
    let (status, body) = members(&server, &format!(r#"{{"add": [{a}, {b}, {c}]}}"#));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(r#""members":["{a}","{b}","{c}"]"#)),
        "{body}"
    );
    assert_eq!(server.http("POST", "/v1/groups/7", "{}", false).0, 401);

    // b is online, c is offline.
    let (mut rb, _) = server.connect(b, 1, Some(Seq::ZERO));
    let (mut sa, _) = server.connect(a, 1, Some(Seq::ZERO));
    sa.send(GROUP, Qos::AtLeastOnce, Bytes::from_static(b"hello group"))
        .unwrap();
    match sa
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::SendAcked(_))
        })
        .unwrap()
    {
        Some(Event::SendAcked(ack)) => assert_eq!(ack.result, SendResult::Stored),
        other => panic!("no SENDACK: {other:?}"),
    }
    let p = next_message(&mut rb);
    assert_eq!(
        (p.to, p.from, p.seq, p.payload.clone()),
        (GROUP, UserId(a), Seq(1), Bytes::from_static(b"hello group"))
    );

    // Not a member: refused, nothing stored anywhere.
    let (mut so, _) = server.connect(outsider, 1, Some(Seq::ZERO));
    so.send(GROUP, Qos::AtLeastOnce, Bytes::from_static(b"let me in"))
        .unwrap();
    match so
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::SendFailed(_))
        })
        .unwrap()
    {
        Some(Event::SendFailed(ack)) => assert_eq!(ack.result, SendResult::Forbidden),
        other => panic!("expected Forbidden: {other:?}"),
    }

    // The backend publishes to the group by number.
    let (status, body) = server.http(
        "POST",
        "/v1/publish",
        &format!(r#"{{"group": {GROUP_NO}, "payload": "from backend", "id": 1}}"#),
        true,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        next_message(&mut rb).payload,
        Bytes::from_static(b"from backend")
    );
    let (status, _) = server.http(
        "POST",
        "/v1/publish",
        r#"{"group": 99, "payload": "x"}"#,
        true,
    );
    assert_eq!(status, 404, "an empty group is no group");

    // c leaves; membership survives a kill -9.
    let (status, body) = members(&server, &format!(r#"{{"remove": [{c}]}}"#));
    assert_eq!(status, 200, "{body}");
    drop((rb, sa, so));
    server.kill9();
    server.spawn();
    let (status, body) = server.http("GET", &format!("/v1/groups/{GROUP_NO}"), "", true);
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(r#""members":["{a}","{b}"]"#)),
        "{body}"
    );
    let (mut sa, _) = server.connect(a, 1, Some(Seq(2)));
    sa.send(
        GROUP,
        Qos::ExactlyOnce,
        Bytes::from_static(b"after restart"),
    )
    .unwrap();
    assert!(matches!(
        sa.wait_for(Duration::from_secs(10), |e| matches!(
            e,
            Event::SendCompleted(_)
        ))
        .unwrap(),
        Some(Event::SendCompleted(_))
    ));

    // c (offline all along) replays what was sent while it was a member.
    let (_, events) = server.connect(c, 1, Some(Seq::ZERO));
    let got: Vec<Bytes> = common::messages(events)
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(
        got,
        vec![
            Bytes::from_static(b"hello group"),
            Bytes::from_static(b"from backend")
        ]
    );
    // b gets everything, in order, exactly once.
    let (_, events) = server.connect(b, 1, Some(Seq::ZERO));
    let got: Vec<(u64, Bytes)> = common::messages(events)
        .into_iter()
        .map(|p| (p.seq.0, p.payload))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Bytes::from_static(b"hello group")),
            (2, Bytes::from_static(b"from backend")),
            (3, Bytes::from_static(b"after restart")),
        ]
    );
}
