//! Reading ahead is not acknowledging (issue #24): a SYNC with
//! `read_ahead` pages on without moving the device's cursor, ACK moves it
//! during the replay, and the empty page still turns the connection live.

use super::*;

/// SYNC `After(after)` for `limit` items, reading ahead or not.
fn sync(request_id: u32, after: u64, limit: u32, read_ahead: bool) -> Frame {
    Frame::Sync(Sync {
        request_id,
        direction: SyncDirection::After(Seq(after)),
        limit,
        read_ahead,
    })
}

fn read_ahead(request_id: u32, after: u64, limit: u32) -> Frame {
    sync(request_id, after, limit, true)
}

fn sync_after_limit(request_id: u32, after: u64, limit: u32) -> Frame {
    sync(request_id, after, limit, false)
}

/// The cursor a new connection of (user, device) is told in its CONNACK.
fn cursor_on_reconnect(h: &mut Harness, user: u64, device: u64) -> Option<Seq> {
    let c = super::gone::connect_with(h, user, device, None);
    match h.take(c).as_slice() {
        [Frame::ConnAck(a), ..] => a.cursor,
        other => panic!("{other:?}"),
    }
}

fn page_seqs(frames: &[Frame]) -> Vec<u64> {
    match frames {
        [Frame::SyncPage(p)] => p.items.iter().map(|i| i.seq.0).collect(),
        other => panic!("{other:?}"),
    }
}

/// Issue #24: the MQTT bridge fetched page N+1 only once the client had
/// acknowledged all of page N (fetching it acknowledged page N), so replay
/// stopped and waited per page. A read-ahead SYNC must not acknowledge.
#[test]
fn a_read_ahead_sync_pages_on_without_acknowledging_and_ack_moves_the_cursor() {
    let mut h = Harness::new(CoreConfig::default());
    let tx = h.connect(1, 1);
    for cmid in 1..=10 {
        h.frame(tx, send(cmid, 2, Qos::AtLeastOnce));
    }
    let rx = h.connect(2, 1);
    h.take(rx);
    h.frame(rx, sync_after_limit(1, 0, 4));
    assert_eq!(page_seqs(&h.take(rx)), [1, 2, 3, 4]);
    h.frame(rx, read_ahead(2, 4, 4));
    assert_eq!(page_seqs(&h.take(rx)), [5, 6, 7, 8]);
    h.frame(rx, read_ahead(3, 8, 4));
    assert_eq!(page_seqs(&h.take(rx)), [9, 10]);
    assert_eq!(
        cursor_on_reconnect(&mut h, 2, 1),
        Some(Seq::ZERO),
        "pages read ahead are not acknowledged"
    );

    // The reconnect replaced `rx`; replay again, acknowledging by ACK.
    let rx = h.connect(2, 1);
    h.take(rx);
    h.frame(rx, sync_after_limit(1, 0, 4));
    h.frame(rx, read_ahead(2, 4, 4));
    h.frame(rx, Frame::Ack(Seq(6)));
    h.frame(rx, read_ahead(3, 8, 4));
    h.frame(rx, read_ahead(4, 10, 4));
    match h.take(rx).as_slice() {
        [.., Frame::SyncPage(last)] => assert!(last.items.is_empty() && last.end, "{last:?}"),
        other => panic!("{other:?}"),
    }
    // The empty read-ahead page turned the connection live: a new message
    // is pushed, after 10, although only 6 is acknowledged.
    h.frame(tx, send(11, 2, Qos::AtLeastOnce));
    match h.take(rx).as_slice() {
        [Frame::Push(p)] => assert_eq!((p.seq, p.prev_seq), (Seq(11), Seq(10))),
        other => panic!("{other:?}"),
    }
    assert_eq!(cursor_on_reconnect(&mut h, 2, 1), Some(Seq(6)));
}
