//! Conversation summaries through the real gateway (issue #22 item 1):
//! CONVLIST and CONVFETCH over TCP, identical after a kill -9 (rebuilt
//! from the log's records) and after a clean restart (loaded from the
//! final checkpoint), and an ACK lowers the unread counts.
//!
//! The reading device speaks raw frames: the SDK's connect replays and
//! acknowledges the whole inbox, and this test needs a device that has
//! read nothing.
//!
//! The admin API's reads (`GET /v1/users/{n}/conversations` and
//! `.../{kind}/{peer}/messages`) answer the same pages for a user owned
//! by the shard that does not serve the admin port, also after kill -9.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::TestServer;
use serde_json::Value;
use surepush::client::{BlockingClient, Event};
use surepush::core::Router;
use surepush::proto::{
    Connect, ConvFetch, ConvList, ConvMsgs, ConvPage, Decoder, DeviceId, Frame, Qos, SendResult,
    Seq, SyncDirection, UserId,
};

const READER: u64 = 1;

/// A device that speaks frames directly.
struct Raw {
    stream: TcpStream,
    decoder: Decoder,
}

impl Raw {
    fn connect(server: &TestServer, user: u64, device: u64) -> Raw {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut raw = Raw {
            stream,
            decoder: Decoder::default(),
        };
        raw.send(Frame::Connect(Connect {
            device: DeviceId(device),
            last_seq: None,
            keepalive_ms: 60_000,
            token: server.token(user, device),
        }));
        match raw.next() {
            Frame::ConnAck(_) => raw,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, frame: Frame) {
        self.stream.write_all(&frame.to_bytes()).expect("write");
    }

    fn next(&mut self) -> Frame {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.decoder.decode().expect("valid frames") {
                return f;
            }
            let n = self.stream.read(&mut buf).expect("a frame within 15 s");
            assert!(n > 0, "the gateway closed the connection");
            self.decoder.feed(&buf[..n]);
        }
    }

    fn list(&mut self, request_id: u32, unread_only: bool) -> ConvPage {
        self.send(Frame::ConvList(ConvList {
            request_id,
            before: Seq::ZERO,
            limit: 100,
            unread_only,
        }));
        match self.next() {
            Frame::ConvPage(p) if p.request_id == request_id => p,
            other => panic!("expected CONVPAGE {request_id}, got {other:?}"),
        }
    }

    fn fetch(&mut self, request_id: u32, peer: u64, direction: SyncDirection) -> ConvMsgs {
        self.send(Frame::ConvFetch(ConvFetch {
            request_id,
            peer: UserId(peer),
            direction,
            limit: 2,
        }));
        match self.next() {
            Frame::ConvMsgs(p) if p.request_id == request_id => p,
            other => panic!("expected CONVMSGS {request_id}, got {other:?}"),
        }
    }
}

fn send_stored(c: &mut BlockingClient, to: u64, text: &'static str) -> Seq {
    c.send(
        UserId(to),
        Qos::AtLeastOnce,
        Bytes::from_static(text.as_bytes()),
    )
    .unwrap();
    match c
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::SendAcked(_) | Event::SendFailed(_))
        })
        .unwrap()
    {
        Some(Event::SendAcked(ack)) => {
            assert_eq!(ack.result, SendResult::Stored);
            ack.seq
        }
        other => panic!("no SENDACK: {other:?}"),
    }
}

/// (peer, unread, total, last seq, last sender, preview) of each item.
type Row = (u64, u32, u64, u64, u64, Bytes);

fn rows(p: &ConvPage) -> Vec<Row> {
    p.items
        .iter()
        .map(|i| {
            (
                i.peer.0,
                i.unread,
                i.total,
                i.last_seq.0,
                i.last_from.0,
                i.preview.clone(),
            )
        })
        .collect()
}

/// (seq, sender, payload) of each message.
fn messages(m: &ConvMsgs) -> Vec<(u64, u64, Bytes)> {
    m.items
        .iter()
        .map(|p| (p.seq.0, p.from.0, p.payload.clone()))
        .collect()
}

#[test]
fn summaries_and_conversation_pages_survive_kill_9_and_a_clean_restart() {
    let mut server = TestServer::start(2, "[core.conversations]\npreview_bytes = 8\n");
    // Peers 2 and 3 write to the reader; the reader answers 2 from
    // another device. The reader's device 1 is offline throughout.
    let (mut two, _) = server.connect(2, 1, Some(Seq::ZERO));
    let (mut three, _) = server.connect(3, 1, Some(Seq::ZERO));
    let (mut mine, _) = server.connect(READER, 2, Some(Seq::ZERO));
    let s1 = send_stored(&mut two, READER, "two: hello");
    let s2 = send_stored(&mut three, READER, "three: hi");
    let s3 = send_stored(&mut two, READER, "two: are you there?");
    send_stored(&mut mine, 2, "one: yes");
    let s5 = send_stored(&mut three, READER, "three: bye");
    assert_eq!((s1, s2, s3, s5), (Seq(1), Seq(2), Seq(3), Seq(5)));
    drop((two, three, mine));

    let mut reader = Raw::connect(&server, READER, 1);
    let page = reader.list(1, false);
    let expected: Vec<Row> = vec![
        (3, 2, 2, 5, 3, Bytes::from_static(b"three: b")),
        // The reader's own reply is the last message and is not unread.
        (2, 2, 3, 4, READER, Bytes::from_static(b"one: yes")),
    ];
    assert_eq!(rows(&page), expected);
    assert_eq!(
        (page.cursor, page.head, page.older, page.end),
        (Seq(0), Seq(5), 0, true)
    );
    let newest = reader.fetch(2, 2, SyncDirection::Latest);
    assert_eq!(
        messages(&newest),
        vec![
            (3, 2, Bytes::from_static(b"two: are you there?")),
            (4, READER, Bytes::from_static(b"one: yes")),
        ]
    );
    assert_eq!(
        newest.items[0].prev_seq,
        Seq(1),
        "prev_seq chains the conversation"
    );
    let older = reader.fetch(3, 2, SyncDirection::Before(Seq(3)));
    assert_eq!(
        messages(&older),
        vec![(1, 2, Bytes::from_static(b"two: hello"))]
    );
    assert!(older.end);
    drop(reader);

    // kill -9: the summaries are rebuilt from the log's records.
    server.kill9();
    server.spawn();
    let mut reader = Raw::connect(&server, READER, 1);
    let after_kill = reader.list(1, false);
    assert_eq!(after_kill, page, "identical after kill -9");
    assert_eq!(reader.fetch(2, 2, SyncDirection::Latest), newest);
    drop(reader);

    // A clean stop writes a final checkpoint: the next start loads the
    // summaries from it.
    server.terminate();
    server.spawn();
    let mut reader = Raw::connect(&server, READER, 1);
    assert_eq!(reader.list(1, false), page, "identical after a checkpoint");
    assert_eq!(reader.fetch(2, 2, SyncDirection::Latest), newest);

    // The device acknowledges up to 3: only 3's last message is unread.
    reader.send(Frame::Ack(Seq(3)));
    let unread = reader.list(4, true);
    assert_eq!(
        rows(&unread),
        vec![(3, 1, 2, 5, 3, Bytes::from_static(b"three: b"))]
    );
    assert_eq!(unread.cursor, Seq(3));

    // The Rust SDK asks the same (its device 2 replayed and acknowledged
    // everything on connect, so only unread differs).
    let (mut sdk, _) = server.connect(READER, 2, Some(Seq::ZERO));
    let id = sdk.list_conversations(Seq::ZERO, 100, false).unwrap();
    let got = match sdk
        .wait_for(
            Duration::from_secs(10),
            |e| matches!(e, Event::Conversations(p) if p.request_id == id),
        )
        .unwrap()
    {
        Some(Event::Conversations(p)) => p,
        other => panic!("no CONVPAGE: {other:?}"),
    };
    let without_unread = |p: &ConvPage| -> Vec<Row> {
        rows(p)
            .into_iter()
            .map(|mut r| {
                r.1 = 0;
                r
            })
            .collect()
    };
    assert_eq!(without_unread(&got), without_unread(&page));
    let id = sdk
        .fetch_conversation(UserId(2), SyncDirection::Latest, 2)
        .unwrap();
    match sdk
        .wait_for(
            Duration::from_secs(10),
            |e| matches!(e, Event::ConversationPage(p) if p.request_id == id),
        )
        .unwrap()
    {
        Some(Event::ConversationPage(p)) => assert_eq!(p.items, newest.items),
        other => panic!("no CONVMSGS: {other:?}"),
    }
}

/// The first user id from `from` up owned by `shard` of two.
fn user_on(shard: u16, from: u64) -> u64 {
    (from..)
        .find(|n| Router::of_node(2).owner(UserId(*n)).0 == shard)
        .expect("users live on every shard")
}

fn admin_get(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.http("GET", path, "", true);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn unbase64(v: &Value) -> Bytes {
    let text = v.as_str().expect("base64 text");
    let raw = base64::engine::general_purpose::STANDARD.decode(text);
    Bytes::from(raw.expect("valid base64"))
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn id(v: &Value) -> u64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not a string id"));
    text.parse().expect("decimal id")
}

/// The conversation key a JSON summary or page names.
fn peer_key(item: &Value) -> u64 {
    match item["kind"].as_str() {
        Some("group") => id(&item["peer"]) | UserId::GROUP_BIT,
        Some("user") => id(&item["peer"]),
        other => panic!("kind {other:?}"),
    }
}

/// The admin summaries as [`Row`]s (what [`rows`] takes from a CONVPAGE),
/// with each item's sender device and payload length.
fn json_rows(v: &Value) -> Vec<(Row, u64, u64)> {
    v["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| {
            let row = (
                peer_key(c),
                number(&c["unread"]) as u32,
                number(&c["total"]),
                number(&c["last_seq"]),
                id(&c["last_from"]),
                unbase64(&c["preview"]),
            );
            (row, id(&c["last_from_device"]), number(&c["last_len"]))
        })
        .collect()
}

/// (seq, prev_seq, sender, addressee, payload) of each message of an admin
/// page.
fn json_messages(v: &Value) -> Vec<(u64, u64, u64, u64, Bytes)> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            assert_eq!(
                number(&m["payload_len"]) as usize,
                unbase64(&m["payload"]).len()
            );
            (
                number(&m["seq"]),
                number(&m["prev_seq"]),
                id(&m["from"]),
                id(&m["to"]),
                unbase64(&m["payload"]),
            )
        })
        .collect()
}

#[test]
fn the_admin_api_reads_summaries_and_pages_from_the_owner_shard_also_after_kill_9() {
    let mut server = TestServer::start(2, "[core.conversations]\npreview_bytes = 8\n");
    // The admin port is served by shard 0; the reader lives on shard 1.
    let reader = user_on(1, 1_000);
    let (a, b) = (user_on(0, 2_000), user_on(1, 3_000));
    let (mut ca, _) = server.connect(a, 1, Some(Seq::ZERO));
    let (mut cb, _) = server.connect(b, 2, Some(Seq::ZERO));
    assert_eq!(send_stored(&mut ca, reader, "a: one"), Seq(1));
    assert_eq!(send_stored(&mut cb, reader, "b: hello there"), Seq(2));
    assert_eq!(send_stored(&mut ca, reader, "a: two"), Seq(3));
    // A group message: group 5 of the reader and a, published as a.
    let members = format!(r#"{{"add": [{reader}, {a}]}}"#);
    assert_eq!(server.http("POST", "/v1/groups/5", &members, true).0, 200);
    let publish = format!(r#"{{"group": 5, "from": {a}, "payload": "group hi!"}}"#);
    let (status, body) = server.http("POST", "/v1/publish", &publish, true);
    assert_eq!(status, 200, "{body}");
    drop((ca, cb));
    let group = 5 | UserId::GROUP_BIT;

    // Device 1 has read nothing: the admin page with its cursor is the
    // CONVPAGE it gets over the protocol.
    let base = format!("/v1/users/{reader}/conversations");
    let mut device = Raw::connect(&server, reader, 1);
    let page = device.list(1, false);
    let v = admin_get(&server, &format!("{base}?device=1&limit=100"));
    assert_eq!(
        (v["user"].as_str(), v["device"].as_str()),
        (Some(&*reader.to_string()), Some("1"))
    );
    let got = json_rows(&v);
    let want: Vec<Row> = vec![
        (group, 1, 1, 4, a, Bytes::from_static(b"group hi")),
        (a, 2, 2, 3, a, Bytes::from_static(b"a: two")),
        (b, 1, 1, 2, b, Bytes::from_static(b"b: hello")),
    ];
    assert_eq!(got.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), want);
    assert_eq!(rows(&page), want, "the frame's page agrees");
    let devices_and_lengths: Vec<(u64, u64)> = got.iter().map(|r| (r.1, r.2)).collect();
    let from_frames: Vec<(u64, u64)> = page
        .items
        .iter()
        .map(|i| (i.last_from_device.0, u64::from(i.last_len)))
        .collect();
    assert_eq!(devices_and_lengths, from_frames);
    assert_eq!(
        (devices_and_lengths[1], devices_and_lengths[2]),
        ((1, 6), (2, 14))
    );
    assert_eq!(
        (
            number(&v["cursor"]),
            number(&v["head"]),
            number(&v["older"]),
            v["end"].as_bool()
        ),
        (0, 4, 0, Some(true))
    );
    // Paging: two, then the rest below the second's last_seq.
    let first = admin_get(&server, &format!("{base}?device=1&limit=2"));
    assert_eq!(
        (json_rows(&first).len(), first["end"].as_bool()),
        (2, Some(false))
    );
    let rest = admin_get(&server, &format!("{base}?device=1&limit=2&before=3"));
    assert_eq!(
        json_rows(&rest).iter().map(|r| r.0 .0).collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(rest["end"], true);

    // Pages of one conversation, as CONVFETCH reads them.
    let convs = format!("/v1/users/{reader}/conversations");
    let latest = admin_get(&server, &format!("{convs}/user/{a}/messages?limit=2"));
    let a_messages = vec![
        (1, 0, a, reader, Bytes::from_static(b"a: one")),
        (3, 1, a, reader, Bytes::from_static(b"a: two")),
    ];
    assert_eq!(json_messages(&latest), a_messages);
    assert_eq!(
        (latest["kind"].as_str(), id(&latest["peer"])),
        (Some("user"), a)
    );
    assert_eq!(
        (latest["end"].as_bool(), number(&latest["head"])),
        (Some(true), 4)
    );
    let framed = device.fetch(2, a, SyncDirection::Latest);
    let framed: Vec<_> = framed
        .items
        .iter()
        .map(|p| (p.seq.0, p.prev_seq.0, p.from.0, p.to.0, p.payload.clone()))
        .collect();
    assert_eq!(json_messages(&latest), framed, "the frame's page agrees");
    let back = admin_get(
        &server,
        &format!("{convs}/user/{a}/messages?direction=before&anchor=3&limit=1"),
    );
    assert_eq!(json_messages(&back), a_messages[..1]);
    assert_eq!(back["end"], true);
    let after = admin_get(
        &server,
        &format!("{convs}/user/{a}/messages?direction=after&anchor=1&limit=1"),
    );
    assert_eq!(json_messages(&after), a_messages[1..]);
    let in_group = admin_get(&server, &format!("{convs}/group/5/messages"));
    assert_eq!(
        json_messages(&in_group),
        [(4, 0, a, group, Bytes::from_static(b"group hi!"))]
    );
    assert_eq!(
        (in_group["kind"].as_str(), in_group["peer"].as_str()),
        (Some("group"), Some("5"))
    );
    // The whole inbox history, every conversation, in pages.
    let inbox = format!("/v1/users/{reader}/messages");
    let everything: Vec<(u64, u64, u64, u64, Bytes)> = [
        (1, 0, a, reader, &b"a: one"[..]),
        (2, 1, b, reader, b"b: hello there"),
        (3, 2, a, reader, b"a: two"),
        (4, 3, a, group, b"group hi!"),
    ]
    .into_iter()
    .map(|(seq, prev, from, to, text)| (seq, prev, from, to, Bytes::from_static(text)))
    .collect();
    let first = admin_get(
        &server,
        &format!("{inbox}?direction=after&anchor=0&limit=3"),
    );
    assert_eq!(json_messages(&first), everything[..3]);
    assert_eq!(
        (first["end"].as_bool(), number(&first["head"])),
        (Some(false), 4)
    );
    let next = admin_get(
        &server,
        &format!("{inbox}?direction=after&anchor=3&limit=3"),
    );
    assert_eq!(json_messages(&next), everything[3..]);
    assert_eq!(next["end"], true);
    let newest = admin_get(&server, &format!("{inbox}?limit=2"));
    assert_eq!(json_messages(&newest), everything[2..]);
    assert_eq!(newest["end"], false);
    let older = admin_get(
        &server,
        &format!("{inbox}?direction=before&anchor=3&limit=5"),
    );
    assert_eq!(json_messages(&older), everything[..2]);
    assert_eq!(older["end"], true);
    let untracked = admin_get(&server, &format!("{convs}/user/{}/messages", a + 1));
    assert_eq!(
        (json_messages(&untracked).len(), untracked["end"].as_bool()),
        (0, Some(true))
    );

    // Without a device, unread counts from the highest cursor of any
    // device: device 1 acknowledges 2 (its next CONVPAGE shows the ACK
    // was handled first).
    device.send(Frame::Ack(Seq(2)));
    assert_eq!(device.list(3, false).cursor, Seq(2));
    let read = admin_get(&server, &base);
    assert_eq!(number(&read["cursor"]), 2);
    let unread: Vec<(u64, u32)> = json_rows(&read).iter().map(|r| (r.0 .0, r.0 .1)).collect();
    assert_eq!(unread, [(group, 1), (a, 1), (b, 0)]);
    let only = admin_get(&server, &format!("{base}?unread_only=true"));
    assert_eq!(json_rows(&only).len(), 2);
    drop(device);

    // kill -9: a device that never acknowledged sees the same summaries,
    // and the pages read the same messages, from the rebuilt state.
    let unknown = format!("{base}?device=99&limit=100");
    let before_kill = (
        admin_get(&server, &unknown),
        admin_get(&server, &format!("{convs}/user/{a}/messages?limit=2")),
        admin_get(&server, &format!("{convs}/group/5/messages")),
        admin_get(&server, &inbox),
    );
    assert_eq!(json_rows(&before_kill.0), got);
    assert_eq!(json_messages(&before_kill.3), everything);
    server.kill9();
    server.spawn();
    let after_kill = (
        admin_get(&server, &unknown),
        admin_get(&server, &format!("{convs}/user/{a}/messages?limit=2")),
        admin_get(&server, &format!("{convs}/group/5/messages")),
        admin_get(&server, &inbox),
    );
    assert_eq!(after_kill, before_kill, "identical after kill -9");
}
