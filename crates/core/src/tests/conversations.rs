//! Conversation summaries through the shard (issue #22): CONVLIST answers
//! from the summaries with the asking device's unread counts, an ACK
//! changes them, CONVFETCH pages one conversation with the right
//! messages, and a shard rebuilt from its log answers the same.

use super::*;
use surepush_proto::{ConvFetch, ConvList, ConvMsgs, ConvPage};

fn list(request_id: u32, before: u64, limit: u32, unread_only: bool) -> Frame {
    Frame::ConvList(ConvList {
        request_id,
        before: Seq(before),
        limit,
        unread_only,
    })
}

fn fetch(request_id: u32, peer: u64, direction: SyncDirection, limit: u32) -> Frame {
    Frame::ConvFetch(ConvFetch {
        request_id,
        peer: UserId(peer),
        direction,
        limit,
    })
}

fn page(h: &mut Harness, conn: ConnId, frame: Frame) -> ConvPage {
    h.frame(conn, frame);
    let frames = h.take(conn);
    match frames.as_slice() {
        [Frame::ConvPage(p)] => p.clone(),
        other => panic!("expected one CONVPAGE, got {other:?}"),
    }
}

fn msgs(h: &mut Harness, conn: ConnId, frame: Frame) -> ConvMsgs {
    h.frame(conn, frame);
    let frames = h.take(conn);
    match frames.as_slice() {
        [Frame::ConvMsgs(p)] => p.clone(),
        other => panic!("expected one CONVMSGS, got {other:?}"),
    }
}

/// User 1's inbox after users 2 and 3 write to it and 1 answers 2:
/// seq 1..=7 as (from, to, payload).
fn chat(h: &mut Harness) -> ConnId {
    let two = h.connect(2, 1);
    let three = h.connect(3, 1);
    let one = h.connect(1, 1);
    let sends: [(ConnId, u64, &[u8]); 5] = [
        (two, 1, b"two: hello"),
        (three, 1, b"three: hi"),
        (two, 1, b"two: are you there?"),
        (one, 2, b"one: yes"),
        (three, 1, b"three: a rather long message beyond the preview"),
    ];
    for (i, (conn, to, payload)) in sends.into_iter().enumerate() {
        h.frame(
            conn,
            Frame::Send(Send {
                client_msg_id: 100 + i as u64,
                to: UserId(to),
                qos: Qos::AtLeastOnce,
                confirm: false,
                attrs: Bytes::new(),
                payload: Bytes::from_static(payload),
            }),
        );
    }
    h.take(two);
    h.take(three);
    h.take(one);
    one
}

fn config() -> CoreConfig {
    let mut config = CoreConfig::default();
    config.conversations.preview_bytes = 12;
    config
}

#[test]
fn convlist_summarises_each_conversation_with_unread_from_the_device_cursor() {
    let mut h = Harness::new(config());
    let one = chat(&mut h);
    let p = page(&mut h, one, list(1, 0, 10, false));
    assert_eq!(p.request_id, 1);
    assert_eq!(
        (p.cursor, p.head, p.older, p.end),
        (Seq(0), Seq(5), 0, true)
    );
    let got: Vec<_> = p
        .items
        .iter()
        .map(|i| {
            (
                i.peer.0,
                i.last_seq.0,
                i.last_from.0,
                i.unread,
                i.total,
                i.preview.clone(),
                i.last_len,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (3, 5, 3, 2, 2, Bytes::from_static(b"three: a rat"), 47),
            // 1's own reply is the last message, and never unread.
            (2, 4, 1, 2, 3, Bytes::from_static(b"one: yes"), 8),
        ]
    );
    // The device acknowledges up to 3: unread drops, the summary changes.
    h.frame(one, Frame::Ack(Seq(3)));
    h.take(one);
    let p = page(&mut h, one, list(2, 0, 10, true));
    let got: Vec<_> = p.items.iter().map(|i| (i.peer.0, i.unread)).collect();
    assert_eq!(got, vec![(3, 1)], "all of 2's messages up to 3 are read");
    assert_eq!(p.cursor, Seq(3));
    // A second device of the same user has read nothing.
    let other = h.connect(1, 2);
    let p = page(&mut h, other, list(1, 0, 10, false));
    let got: Vec<_> = p.items.iter().map(|i| (i.peer.0, i.unread)).collect();
    assert_eq!(got, vec![(3, 2), (2, 2)]);
    // Paging: one at a time, continuing below the last seq.
    let first = page(&mut h, one, list(3, 0, 1, false));
    assert_eq!((first.items[0].peer, first.end), (UserId(3), false));
    let second = page(&mut h, one, list(4, first.items[0].last_seq.0, 1, false));
    assert_eq!((second.items[0].peer, second.end), (UserId(2), true));
}

#[test]
fn convfetch_pages_one_conversation_with_its_own_messages_only() {
    let mut h = Harness::new(config());
    let one = chat(&mut h);
    let m = msgs(&mut h, one, fetch(1, 2, SyncDirection::Latest, 2));
    let got: Vec<_> = m
        .items
        .iter()
        .map(|p| (p.seq.0, p.prev_seq.0, p.from.0, p.to.0, p.payload.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, 1, 2, 1, Bytes::from_static(b"two: are you there?")),
            (4, 3, 1, 2, Bytes::from_static(b"one: yes")),
        ]
    );
    assert!(!m.end && !m.truncated);
    let m = msgs(&mut h, one, fetch(2, 2, SyncDirection::Before(Seq(3)), 2));
    let got: Vec<_> = m
        .items
        .iter()
        .map(|p| (p.seq.0, p.payload.clone()))
        .collect();
    assert_eq!(got, vec![(1, Bytes::from_static(b"two: hello"))]);
    assert!(m.end);
    let m = msgs(&mut h, one, fetch(3, 3, SyncDirection::After(Seq(2)), 5));
    let got: Vec<_> = m.items.iter().map(|p| (p.seq.0, p.from.0)).collect();
    assert_eq!(got, vec![(5, 3)]);
    assert!(m.end);
    // Nothing acknowledged by reading a conversation.
    assert_eq!(h.shard.device_cursor(UserId(1), DeviceId(1)), Some(Seq(0)));
    // An unknown conversation is an empty last page.
    let m = msgs(&mut h, one, fetch(4, 9, SyncDirection::Latest, 5));
    assert!(m.items.is_empty() && m.end);
}

#[test]
fn a_page_size_out_of_range_is_a_typed_error_without_a_close() {
    let mut h = Harness::new(config());
    let one = chat(&mut h);
    for frame in [
        list(1, 0, 0, false),
        fetch(1, 2, SyncDirection::Latest, 1_000_000),
    ] {
        h.frame(one, frame);
        let frames = h.take(one);
        assert!(
            matches!(frames.as_slice(), [Frame::Error(e)] if e.code == ErrorCode::BadConversationRequest as u16),
            "{frames:?}"
        );
        assert!(!h.closed(one));
    }
}

#[test]
fn a_shard_rebuilt_from_its_log_answers_the_same_summaries() {
    let mut h = Harness::new(config());
    let one = chat(&mut h);
    h.frame(one, Frame::Ack(Seq(2)));
    h.advance(1_000); // cursor flush
    let before = page(&mut h, one, list(1, 0, 10, false));
    let mut recovered = RecoveredState {
        conversations: Conversations::new(config().conversations),
        ..Default::default()
    };
    for r in &h.log {
        recovered.apply(r, &config().dedup);
    }
    let log = std::mem::take(&mut h.log);
    let mut again = Harness::new(config());
    again.shard = Shard::new(
        ShardParams {
            id: crate::ShardId(0),
            shards: 1,
            wall_ms_at_zero: 1_700_000_000_000,
        },
        config(),
        TokenVerifier::new(SECRET),
        recovered,
    );
    again.log = log;
    let one = again.connect(1, 1);
    let after = page(&mut again, one, list(1, 0, 10, false));
    assert_eq!(after, before);
    assert_eq!(after.cursor, Seq(2));
    let m = msgs(&mut again, one, fetch(2, 3, SyncDirection::Latest, 10));
    let got: Vec<_> = m.items.iter().map(|p| p.seq.0).collect();
    assert_eq!(got, vec![2, 5]);
}
