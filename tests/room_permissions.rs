//! Room permissions end to end (issue #16 item 6), over TCP against the
//! real binary on two shards with `rooms_open = false`: tokens that grant
//! rooms by filter, membership through the admin API (durable across
//! kill -9), typed refusals (SUBACK and SENDACK `Forbidden`), and a member
//! removed while subscribed dropped from live delivery. Messages are
//! checked by identity (room, sequence, publisher, payload), not count.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event};
use surepush::core::{Acl, Router};
use surepush::proto::{Qos, RoomPush, SendResult, Seq, SubResult, UserId, ROOM_BIT};

const CLOSED: &str = "[core]\nrooms_open = false\n";
const WAIT: Duration = Duration::from_secs(10);

/// Room number `n`'s wire id.
fn room(n: u64) -> u64 {
    n | ROOM_BIT
}

/// A room number homed on `shard` of two, from `from` up.
fn room_on(shard: u16, from: u64) -> u64 {
    (from..)
        .find(|n| Router::of_node(2).owner(UserId(room(*n))).0 == shard)
        .expect("rooms live on every shard")
}

fn acl(subscribe: &[&str], publish: &[&str]) -> Acl {
    Acl::new(subscribe, publish).expect("valid filters")
}

/// SUBSCRIBE from the room's start; the result of its SUBACK.
fn subscribe(c: &mut BlockingClient, room: u64) -> SubResult {
    c.resume_room(room, Qos::AtLeastOnce, Seq::ZERO).unwrap();
    let e = c
        .wait_for(WAIT, |e| {
            matches!(e, Event::Subscribed(_) | Event::RoomForbidden { .. })
        })
        .unwrap();
    match e {
        Some(Event::Subscribed(a)) => a.result,
        Some(Event::RoomForbidden { .. }) => SubResult::Forbidden,
        other => panic!("no SUBACK: {other:?}"),
    }
}

/// A QoS 1 SEND's result and room sequence.
fn publish(c: &mut BlockingClient, room: u64, text: &str) -> (SendResult, Seq) {
    c.send(
        UserId(room),
        Qos::AtLeastOnce,
        Bytes::from(text.to_string()),
    )
    .unwrap();
    match c
        .wait_for(WAIT, |e| {
            matches!(e, Event::SendAcked(_) | Event::SendFailed(_))
        })
        .unwrap()
    {
        Some(Event::SendAcked(a) | Event::SendFailed(a)) => (a.result, a.seq),
        other => panic!("no SENDACK: {other:?}"),
    }
}

/// The next room message.
fn next_room_message(c: &mut BlockingClient) -> RoomPush {
    match c
        .wait_for(WAIT, |e| matches!(e, Event::RoomMessage(_)))
        .unwrap()
    {
        Some(Event::RoomMessage(p)) => p,
        other => panic!("no room message: {other:?}"),
    }
}

fn identity(p: &RoomPush) -> (u64, u64, u64, Bytes) {
    (p.room, p.seq.0, p.from.0, p.payload.clone())
}

fn members(server: &TestServer, n: u64, body: &str) -> serde_json::Value {
    let (status, answer) = server.http("POST", &format!("/v1/rooms/{n}"), body, true);
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).expect("JSON")
}

#[test]
fn token_grants_open_the_rooms_they_name_and_nothing_else() {
    let server = TestServer::start(2, CLOSED);
    for home in 0..2 {
        let (granted, other) = (room_on(home, 100), room_on(home, 200));
        let name = format!("room/{granted}");
        let mut reader = server.connect_granted(11, 1, acl(&["room/+"], &[]));
        let mut writer = server.connect_granted(12, 1, acl(&[], &[&name]));
        let (mut nobody, _) = server.connect(13, 1, None);
        assert_eq!(subscribe(&mut reader, room(granted)), SubResult::Ok);
        assert_eq!(subscribe(&mut nobody, room(granted)), SubResult::Forbidden);
        assert_eq!(
            publish(&mut nobody, room(granted), "not me").0,
            SendResult::Forbidden
        );
        assert_eq!(
            publish(&mut reader, room(granted), "sub only").0,
            SendResult::Forbidden,
            "a sub grant is not a pub grant"
        );
        assert_eq!(
            publish(&mut writer, room(other), "other room").0,
            SendResult::Forbidden
        );
        let (result, seq) = publish(&mut writer, room(granted), "hello");
        assert_eq!((result, seq), (SendResult::Stored, Seq(1)), "home {home}");
        // The only message stored is the granted one.
        assert_eq!(
            identity(&next_room_message(&mut reader)),
            (room(granted), 1, 12, Bytes::from("hello"))
        );
    }
}

#[test]
fn an_acl_over_the_limits_refuses_the_token_with_auth_failed() {
    let server = TestServer::start(1, CLOSED);
    let filters: Vec<String> = (0..=surepush::core::MAX_ACL_FILTERS)
        .map(|n| format!("room/{n}"))
        .collect();
    // Acl::new refuses it too, so mint by hand: the gateway must check.
    let token = {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let list = filters
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(",");
        let claims = format!(r#"{{"sub":"21","dev":1,"exp":4000000000,"acl":{{"sub":[{list}]}}}}"#);
        let body = b64(claims.as_bytes());
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(common::SECRET.as_bytes())
            .expect("any key length");
        mac.update(format!("{header}.{body}").as_bytes());
        format!("{header}.{body}.{}", b64(&mac.finalize().into_bytes()))
    };
    let mut config = server.client_config(21, 1);
    config.token = token;
    let mut c = BlockingClient::connect(server.addr, config, None, WAIT).expect("connect");
    match c.wait_for(WAIT, |e| matches!(e, Event::Error(_))).unwrap() {
        Some(Event::Error(e)) => {
            assert_eq!(e.code, surepush::proto::ErrorCode::AuthFailed as u16);
            assert!(e.message.contains("more than 64 filters"), "{}", e.message);
        }
        other => panic!("expected ERROR AuthFailed: {other:?}"),
    }
}

#[test]
fn members_read_and_write_and_one_removed_while_subscribed_is_dropped() {
    let mut server = TestServer::start(2, CLOSED);
    let n = room_on(1, 300);
    let r = room(n);
    let answer = members(&server, n, r#"{"add": [31, 32, 33]}"#);
    assert_eq!(answer["members"], serde_json::json!(["31", "32", "33"]));
    assert_eq!(answer["room"], serde_json::json!(n.to_string()));
    let (mut publisher, _) = server.connect(31, 1, None);
    let (mut leaving, _) = server.connect(32, 1, None);
    let (mut staying, _) = server.connect(33, 1, None);
    let (mut outsider, _) = server.connect(34, 1, None);
    assert_eq!(subscribe(&mut outsider, r), SubResult::Forbidden);
    assert_eq!(publish(&mut outsider, r, "x").0, SendResult::Forbidden);
    assert_eq!(subscribe(&mut leaving, r), SubResult::Ok);
    assert_eq!(subscribe(&mut staying, r), SubResult::Ok);
    for (i, text) in ["one", "two"].into_iter().enumerate() {
        assert_eq!(
            publish(&mut publisher, r, text),
            (SendResult::Stored, Seq(i as u64 + 1))
        );
        for c in [&mut leaving, &mut staying] {
            let want = (r, i as u64 + 1, 31, Bytes::from(text));
            assert_eq!(identity(&next_room_message(c)), want);
        }
    }
    let answer = members(&server, n, r#"{"remove": [32]}"#);
    assert_eq!(answer["members"], serde_json::json!(["31", "33"]));
    match leaving
        .wait_for(WAIT, |e| matches!(e, Event::RoomForbidden { .. }))
        .unwrap()
    {
        Some(Event::RoomForbidden { room, last }) => assert_eq!((room, last), (r, Some(Seq(2)))),
        other => panic!("the removed member was not told: {other:?}"),
    }
    assert_eq!(
        publish(&mut publisher, r, "three"),
        (SendResult::Stored, Seq(3))
    );
    assert_eq!(
        identity(&next_room_message(&mut staying)),
        (r, 3, 31, Bytes::from("three"))
    );
    // Its subscription ended on its own shard before the SUBACK Forbidden
    // left, and the session stays open. Message 3 was fanned out from the
    // room's home shard before this SEND reached it, so anything of the
    // room for this session would come before its SENDACK.
    leaving
        .send(UserId(r), Qos::AtLeastOnce, Bytes::from("still here?"))
        .unwrap();
    let mut seen = Vec::new();
    let result = loop {
        match leaving.next_event(WAIT).unwrap() {
            Some(Event::SendFailed(a) | Event::SendAcked(a)) => break a.result,
            Some(other) => seen.push(other),
            None => panic!("no SENDACK"),
        }
    };
    assert_eq!(result, SendResult::Forbidden);
    assert!(
        !seen.iter().any(|e| matches!(e, Event::RoomMessage(_))),
        "a room message after the removal: {seen:?}"
    );

    // Membership is durable: it survives kill -9.
    drop((publisher, leaving, staying, outsider));
    server.kill9();
    server.spawn();
    let (mut member, _) = server.connect(33, 1, None);
    let (mut former, _) = server.connect(32, 1, None);
    assert_eq!(subscribe(&mut former, r), SubResult::Forbidden);
    assert_eq!(subscribe(&mut member, r), SubResult::Ok);
    let replayed: Vec<_> = (0..3)
        .map(|_| identity(&next_room_message(&mut member)))
        .collect();
    let texts = ["one", "two", "three"];
    let want: Vec<_> = (0..3)
        .map(|i| (r, i as u64 + 1, 31, Bytes::from(texts[i])))
        .collect();
    assert_eq!(replayed, want);
    let (status, body) = server.http("GET", &format!("/v1/rooms/{n}"), "", true);
    assert_eq!(status, 200);
    let read: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(read["members"], serde_json::json!(["31", "33"]));
}

#[test]
fn backend_publishes_reach_a_closed_room() {
    let server = TestServer::start(2, CLOSED);
    let n = room_on(0, 400);
    let mut reader = server.connect_granted(41, 1, acl(&[&format!("room/{n}")], &[]));
    assert_eq!(subscribe(&mut reader, room(n)), SubResult::Ok);
    let (status, body) = server.http(
        "POST",
        "/v1/publish",
        &format!(r#"{{"room": {n}, "payload": "from the backend", "from": 7}}"#),
        true,
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"duplicate":false,"seq":1}"#)
    );
    assert_eq!(
        identity(&next_room_message(&mut reader)),
        (room(n), 1, 7, Bytes::from("from the backend"))
    );
}
