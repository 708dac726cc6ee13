//! The summaries as a data structure: keys, bounds, unread per cursor,
//! page plans.

use bytes::Bytes;

use super::*;
use surepush_proto::Qos;

const ME: UserId = UserId(1);

fn msg(inbox: UserId, seq: u64, from: UserId, to: UserId, payload: &'static [u8]) -> MessageRecord {
    MessageRecord {
        inbox,
        seq: Seq(seq),
        from,
        from_device: DeviceId(from.0 * 10),
        to,
        client_msg_id: seq,
        qos: Qos::AtLeastOnce,
        ts_ms: 1_000 + seq,
        attrs: Bytes::new(),
        payload: Bytes::from_static(payload),
    }
}

fn limits(max_per_user: u32, index: u32, preview: u32) -> ConversationConfig {
    ConversationConfig {
        max_per_user,
        index_per_conversation: index,
        preview_bytes: preview,
    }
}

#[test]
fn a_message_belongs_to_the_peer_the_group_or_oneself() {
    let group = UserId(UserId::GROUP_BIT | 5);
    assert_eq!(
        conversation_of(ME, &msg(ME, 1, UserId(2), ME, b"")),
        UserId(2)
    );
    assert_eq!(
        conversation_of(ME, &msg(ME, 2, ME, UserId(3), b"")),
        UserId(3)
    );
    assert_eq!(
        conversation_of(ME, &msg(ME, 3, UserId(2), group, b"")),
        group
    );
    assert_eq!(conversation_of(ME, &msg(ME, 4, ME, group, b"")), group);
    assert_eq!(conversation_of(ME, &msg(ME, 5, ME, ME, b"")), ME);
}

#[test]
fn summaries_hold_the_last_message_and_unread_counts_from_the_cursor() {
    let mut c = Conversations::new(limits(10, 10, 4));
    c.note(&msg(ME, 1, UserId(2), ME, b"hello two"));
    c.note(&msg(ME, 2, UserId(3), ME, b"hi"));
    c.note(&msg(ME, 3, ME, UserId(2), b"reply to two"));
    c.note(&msg(ME, 4, UserId(2), ME, b"again"));
    let page = c.summaries(ME, Seq(2), Seq::ZERO, 10, false);
    let got: Vec<_> = page
        .items
        .iter()
        .map(|(p, c, unread, at_least)| {
            (
                p.0,
                c.last.seq.0,
                c.last.from.0,
                c.last.preview.clone(),
                c.last.len,
                c.total,
                *unread,
                *at_least,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 4, 2, Bytes::from_static(b"agai"), 5, 3, 1, false),
            (3, 2, 3, Bytes::from_static(b"hi"), 2, 1, 0, false),
        ]
    );
    assert!(page.end);
    // Own sends are never unread: 2's conversation at cursor 3 has only
    // 4 (from 2) unread.
    assert_eq!(
        c.of(ME).unwrap().peers[&UserId(2)].unread(Seq(3)),
        (1, false)
    );
    assert_eq!(c.of(ME).unwrap().peers[&UserId(2)].own, [Seq(3)]);
    // Only unread ones; a cursor past everything leaves none.
    let unread = c.summaries(ME, Seq(2), Seq::ZERO, 10, true);
    assert_eq!(unread.items.len(), 1);
    assert!(c
        .summaries(ME, Seq(4), Seq::ZERO, 10, true)
        .items
        .is_empty());
    // A repeated or older sequence changes nothing (recovery folds twice).
    let before = c.clone();
    c.note(&msg(ME, 4, UserId(2), ME, b"again"));
    assert_eq!(c, before);
}

#[test]
fn summary_pages_go_from_the_newest_down_by_last_seq() {
    let mut c = Conversations::new(limits(100, 4, 8));
    for peer in 2..=11u64 {
        c.note(&msg(ME, peer, UserId(peer), ME, b"x"));
    }
    let first = c.summaries(ME, Seq::ZERO, Seq::ZERO, 4, false);
    let peers: Vec<u64> = first.items.iter().map(|i| i.0 .0).collect();
    assert_eq!(peers, [11, 10, 9, 8]);
    assert!(!first.end);
    let next = c.summaries(ME, Seq::ZERO, Seq(8), 4, false);
    let peers: Vec<u64> = next.items.iter().map(|i| i.0 .0).collect();
    assert_eq!(peers, [7, 6, 5, 4]);
    let last = c.summaries(ME, Seq::ZERO, Seq(4), 4, false);
    let peers: Vec<u64> = last.items.iter().map(|i| i.0 .0).collect();
    assert_eq!(peers, [3, 2]);
    assert!(last.end);
}

#[test]
fn the_least_recent_conversation_is_evicted_beyond_the_per_user_limit() {
    let mut c = Conversations::new(limits(3, 4, 8));
    for (seq, peer) in [(1, 2), (2, 3), (3, 4), (4, 2), (5, 5)] {
        c.note(&msg(ME, seq, UserId(peer), ME, b"x"));
    }
    // 3 was the least recent (2 spoke again at 4): evicted by 5.
    let u = c.of(ME).expect("tracked");
    let mut peers: Vec<u64> = u.peers.keys().map(|p| p.0).collect();
    peers.sort_unstable();
    assert_eq!(peers, [2, 4, 5]);
    assert_eq!(u.older, 1);
    assert_eq!(u.recent.len(), 3);
    assert_eq!(c.tracked(), 3);
}

#[test]
fn the_index_keeps_the_newest_sequences_and_unread_becomes_a_lower_bound() {
    let mut c = Conversations::new(limits(10, 3, 8));
    for seq in 1..=5 {
        c.note(&msg(ME, seq, UserId(2), ME, b"x"));
    }
    let conv = &c.of(ME).unwrap().peers[&UserId(2)];
    assert_eq!(conv.seqs, [Seq(3), Seq(4), Seq(5)]);
    assert!(conv.trimmed);
    assert_eq!(conv.total, 5);
    assert_eq!(conv.unread(Seq(0)), (3, true), "5 unread, 3 indexed");
    assert_eq!(conv.unread(Seq(3)), (2, false));
    assert_eq!(conv.unread(Seq(5)), (0, false));
}

#[test]
fn page_plans_read_only_the_conversations_sequences() {
    let mut c = Conversations::new(limits(10, 100, 8));
    // Two conversations interleaved: 2 has the odd sequences.
    for seq in 1..=10u64 {
        let peer = if seq % 2 == 1 { 2 } else { 3 };
        c.note(&msg(ME, seq, UserId(peer), ME, b"x"));
    }
    let latest = c.plan(ME, UserId(2), SyncDirection::Latest, 2).unwrap();
    assert_eq!(latest.seqs, [Seq(7), Seq(9)]);
    assert_eq!(latest.first_prev, Seq(5));
    assert!(!latest.end && !latest.truncated);
    let older = c
        .plan(ME, UserId(2), SyncDirection::Before(Seq(7)), 2)
        .unwrap();
    assert_eq!(older.seqs, [Seq(3), Seq(5)]);
    let oldest = c
        .plan(ME, UserId(2), SyncDirection::Before(Seq(3)), 2)
        .unwrap();
    assert_eq!(oldest.seqs, [Seq(1)]);
    assert!(oldest.end && !oldest.truncated);
    assert_eq!(oldest.first_prev, Seq::ZERO);
    let after = c
        .plan(ME, UserId(3), SyncDirection::After(Seq(4)), 2)
        .unwrap();
    assert_eq!(after.seqs, [Seq(6), Seq(8)]);
    assert!(!after.end);
    let rest = c
        .plan(ME, UserId(3), SyncDirection::After(Seq(8)), 2)
        .unwrap();
    assert_eq!(rest.seqs, [Seq(10)]);
    assert!(rest.end);
    assert!(c.plan(ME, UserId(4), SyncDirection::Latest, 2).is_none());
    // Trimmed: the page reaching the index's start says so.
    let mut t = Conversations::new(limits(10, 2, 8));
    for seq in 1..=4 {
        t.note(&msg(ME, seq, UserId(2), ME, b"x"));
    }
    let p = t.plan(ME, UserId(2), SyncDirection::Latest, 5).unwrap();
    assert_eq!(p.seqs, [Seq(3), Seq(4)]);
    assert!(p.truncated && !p.end);
}

#[test]
fn smaller_limits_evict_and_trim_what_is_beyond_them() {
    let mut c = Conversations::new(limits(10, 10, 8));
    for seq in 1..=6u64 {
        c.note(&msg(ME, seq, UserId(2 + seq % 3), ME, b"abcdefgh"));
    }
    c.set_limits(limits(2, 1, 3));
    let u = c.of(ME).unwrap();
    assert_eq!(u.peers.len(), 2);
    assert_eq!(u.older, 1);
    for conv in u.peers.values() {
        assert_eq!(conv.seqs.len(), 1);
        assert!(conv.trimmed);
        assert_eq!(conv.last.preview, Bytes::from_static(b"abc"));
    }
}
