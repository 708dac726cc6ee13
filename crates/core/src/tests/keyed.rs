//! Keyed state through the core (issue #16 item 4): a write lands in the
//! log of its key's owner shard, is reported to the asking connection only
//! once durable, a deferred write waits for the bookkeeping flush and
//! yields to a newer write, a failed log answers "not stored", and a query
//! finds the value wherever it lives.

use super::pair::{on_shard, room_on, Pair};
use super::*;
use crate::StateKey;

/// The write reports (id, stored) the shards sent so far (drained).
fn reports(p: &mut Pair) -> Vec<(u64, bool)> {
    let mut got = Vec::new();
    p.out.retain(|a| match a {
        Action::StateStored { id, ok, .. } => {
            got.push((*id, *ok));
            false
        }
        _ => true,
    });
    got
}

fn conn() -> ConnId {
    ConnId {
        index: 3,
        generation: 1,
    }
}

/// A write is reported only when the append that holds it is durable, on
/// the key's owner shard even when another shard asks.
#[test]
fn a_reported_write_is_answered_once_durable_on_the_owner_shard() {
    let mut p = Pair::new();
    let session = StateKey::MqttSession {
        user: on_shard(0),
        device: DeviceId(1),
    };
    let retained = StateKey::Retained { room: room_on(1) };
    let report = |id| StateDurability::Report { conn: conn(), id };
    p.shards[0].handle_state(session, Some(Bytes::from_static(b"s")), report(1), 0);
    p.shards[0].handle_state(retained, Some(Bytes::from_static(b"r")), report(2), 0);
    p.run();
    assert!(reports(&mut p).is_empty(), "nothing is durable yet");
    assert_eq!(p.unsynced[0].len(), 1, "the session on shard 0");
    assert_eq!(
        p.unsynced[1].len(),
        1,
        "the retained message on the room's shard"
    );
    p.commit(1, true);
    assert_eq!(reports(&mut p), vec![(2, true)]);
    p.commit(0, true);
    assert_eq!(reports(&mut p), vec![(1, true)]);
    assert_eq!(p.shards[0].state(&session), Some(&Bytes::from_static(b"s")));
    assert_eq!(
        p.shards[1].state(&retained),
        Some(&Bytes::from_static(b"r"))
    );
    // A query from shard 0 finds the retained message on shard 1.
    p.shards[0].handle_state_query(conn(), retained, 0);
    p.run();
    assert!(p.out.iter().any(|a| matches!(a,
        Action::StateValue { key, value: Some(v), .. } if *key == retained && v == "r"
    )));
}

/// A deferred write is appended with the bookkeeping flush, and a newer
/// write of the same key before the flush replaces it (only the newer one
/// is appended).
#[test]
fn a_deferred_write_waits_for_the_flush_and_yields_to_a_newer_write() {
    let mut p = Pair::new();
    let key = StateKey::MqttSession {
        user: on_shard(0),
        device: DeviceId(1),
    };
    p.shards[0].handle_state(
        key,
        Some(Bytes::from_static(b"old")),
        StateDurability::Deferred,
        0,
    );
    p.run();
    assert!(p.unsynced[0].is_empty(), "deferred: nothing appended yet");
    assert_eq!(p.shards[0].state(&key), Some(&Bytes::from_static(b"old")));
    let report = StateDurability::Report {
        conn: conn(),
        id: 9,
    };
    p.shards[0].handle_state(key, None, report, 0);
    p.run();
    p.now += CoreConfig::default().cursor_flush_ms * MS;
    p.shards[0].handle_timeout(p.now);
    p.run();
    p.commit(0, true);
    assert_eq!(p.log[0], vec![Record::State { key, value: None }]);
    assert_eq!(reports(&mut p), vec![(9, true)]);
    assert_eq!(p.shards[0].state(&key), None);
    // A deferred write alone reaches the log at the flush.
    p.shards[0].handle_state(
        key,
        Some(Bytes::from_static(b"new")),
        StateDurability::Deferred,
        p.now,
    );
    p.now += CoreConfig::default().cursor_flush_ms * MS;
    p.shards[0].handle_timeout(p.now);
    p.run();
    p.commit(0, true);
    assert_eq!(p.log[0].len(), 2);
    assert!(
        reports(&mut p).is_empty(),
        "a deferred write is never reported"
    );
}

/// A failed log answers the write "not stored", and every later write at
/// once, without appending.
#[test]
fn a_failed_log_answers_state_writes_not_stored() {
    let mut p = Pair::new();
    let key = StateKey::MqttSession {
        user: on_shard(1),
        device: DeviceId(1),
    };
    let report = |id| StateDurability::Report { conn: conn(), id };
    p.shards[0].handle_state(key, Some(Bytes::from_static(b"a")), report(1), 0);
    p.run();
    p.commit(1, false);
    assert_eq!(reports(&mut p), vec![(1, false)]);
    p.shards[0].handle_state(key, Some(Bytes::from_static(b"b")), report(2), 0);
    p.run();
    assert_eq!(reports(&mut p), vec![(2, false)]);
    assert!(p.unsynced[1].is_empty());
}

/// Retained messages of topic streams (issue #21): writes are merged by
/// topic name on the owner (two names sharing a stream id keep one each),
/// and a write that would hold more names than `max_retained_topics` is
/// refused, while replacing and clearing are not.
#[test]
fn topic_retained_writes_merge_by_name_and_are_bounded() {
    use surepush_proto::topic_stream::{retained_entries, retained_entry, stream_id};
    let mut p = Pair::with(CoreConfig {
        max_retained_topics: 2,
        ..CoreConfig::default()
    });
    let key = |name: &str| StateKey::Retained {
        room: UserId(stream_id(name)),
    };
    let shared = key("t/1");
    let owner = crate::Router::of_node(2)
        .owner(UserId(stream_id("t/1")))
        .index();
    let mut id = 0;
    let mut write = |p: &mut Pair, k: StateKey, name: &str, body: &'static [u8]| {
        id += 1;
        let report = StateDurability::Report { conn: conn(), id };
        let value = Some(retained_entry(name, body));
        p.shards[0].handle_state(k, value, report, 0);
        p.run();
        p.commit(owner, true);
        p.commit(1 - owner, true);
        let got = reports(p);
        assert_eq!(got.len(), 1, "{got:?}");
        got[0].1
    };
    let names = |p: &Pair| -> Vec<(String, Bytes)> {
        p.shards[owner]
            .state(&shared)
            .map(|v| {
                retained_entries(v)
                    .expect("entries")
                    .into_iter()
                    .map(|(n, b)| (n.to_string(), b))
                    .collect()
            })
            .unwrap_or_default()
    };
    // "t/other" stands for a name colliding with "t/1": same key.
    assert!(write(&mut p, shared, "t/1", b"a"));
    assert!(write(&mut p, shared, "t/other", b"b"));
    let b = |s: &'static [u8]| Bytes::from_static(s);
    assert_eq!(
        names(&p),
        vec![("t/1".into(), b(b"a")), ("t/other".into(), b(b"b"))]
    );
    // A third name is beyond the bound, wherever its stream lives.
    let third = (0..)
        .map(|i| format!("t/x{i}"))
        .find(|n| {
            crate::Router::of_node(2)
                .owner(UserId(stream_id(n)))
                .index()
                == owner
        })
        .expect("a name on the same shard");
    assert!(!write(&mut p, key(&third), &third, b"c"), "refused");
    assert_eq!(p.shards[owner].stats().retained_topics_refused, 1);
    assert_eq!(p.shards[owner].state(&key(&third)), None);
    // Replacing and clearing are always allowed; then there is room.
    assert!(write(&mut p, shared, "t/1", b"a2"));
    assert!(write(&mut p, shared, "t/other", b""));
    assert_eq!(names(&p), vec![("t/1".into(), b(b"a2"))]);
    assert!(write(&mut p, key(&third), &third, b"c"));
    // The log holds the merged lists: recovery folds the newest.
    let last = p.log[owner]
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::State { key, value } if *key == shared => Some(value.clone()),
            _ => None,
        })
        .expect("a record of the shared key");
    assert_eq!(last, Some(retained_entry("t/1", b"a2")));
}
