//! Conversation summaries through the real gateway (issue #22 item 1):
//! CONVLIST and CONVFETCH over TCP, identical after a kill -9 (rebuilt
//! from the log's records) and after a clean restart (loaded from the
//! final checkpoint), and an ACK lowers the unread counts.
//!
//! The reading device speaks raw frames: the SDK's connect replays and
//! acknowledges the whole inbox, and this test needs a device that has
//! read nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use surepush::client::{BlockingClient, Event};
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
