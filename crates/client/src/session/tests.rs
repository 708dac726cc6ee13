//! The session's handling of sequences the gateway says are gone (issue
//! 23, issue 16 item 7): reported once as `Event::Lost`, in order, and
//! stepped over; a reordered push is still waited for.

use super::*;
use surepush_proto::{ConnAck, DeviceId, Frame, Push, Qos, Seq, SyncPage, UserId};

fn push(seq: u64, prev: u64) -> Push {
    Push {
        seq: Seq(seq),
        prev_seq: Seq(prev),
        from: UserId(2),
        from_device: DeviceId(1),
        to: UserId(1),
        client_msg_id: seq,
        ts_ms: 1,
        qos: Qos::AtLeastOnce,
        echo: false,
        retransmit: false,
        attrs: Bytes::new(),
        payload: bytes::Bytes::from_static(b"m"),
    }
}

/// A session connected and replaying after `delivered`; returns it and the
/// SYNC request id it sent.
fn replaying(delivered: u64) -> (ClientSession, u32) {
    let config = ClientConfig::new("t".into(), DeviceId(1));
    let mut s = ClientSession::new(config, Some(Seq(delivered)));
    s.connect(0);
    s.handle_frame(
        Frame::ConnAck(ConnAck {
            user: UserId(1),
            device: DeviceId(1),
            head: Seq(delivered),
            cursor: Some(Seq(delivered)),
            max_frame: 1 << 20,
            push_window: 64,
            max_pending_sends: 16,
            keepalive_ms: 30_000,
            max_sync_limit: 1000,
        }),
        0,
    );
    let mut id = 0;
    while let Some(f) = s.poll_transmit() {
        if let Frame::Sync(sync) = f {
            id = sync.request_id;
        }
    }
    (s, id)
}

fn page(id: u32, head: u64, gap: bool, items: Vec<Push>) -> Frame {
    Frame::SyncPage(SyncPage {
        request_id: id,
        head: Seq(head),
        end: true,
        gap,
        items,
    })
}

/// What the application is told, in order: messages by seq, losses as ranges.
fn told(s: &mut ClientSession) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = s.poll_event() {
        match e {
            Event::Message(p) => out.push(format!("m{}", p.seq.0)),
            Event::Lost { first, last } => out.push(format!("lost{}-{}", first.0, last.0)),
            _ => {}
        }
    }
    out
}

pub(super) fn live(delivered: u64) -> ClientSession {
    let (mut s, id) = replaying(delivered);
    s.handle_frame(page(id, delivered, false, vec![]), 0);
    told(&mut s);
    s
}

#[test]
fn a_push_whose_prev_seq_skips_sequences_reports_them_lost() {
    let mut s = live(5);
    s.handle_frame(Frame::Push(push(8, 5)), 0);
    s.handle_frame(Frame::Push(push(9, 8)), 0);
    assert_eq!(told(&mut s), ["lost6-7", "m8", "m9"]);
    assert_eq!(s.delivered(), Some(Seq(9)));
}

#[test]
fn a_reordered_push_is_still_waited_for() {
    let mut s = live(5);
    s.handle_frame(Frame::Push(push(7, 6)), 0);
    assert!(told(&mut s).is_empty(), "6 is on its way");
    s.handle_frame(Frame::Push(push(6, 5)), 0);
    assert_eq!(told(&mut s), ["m6", "m7"]);
}

#[test]
fn pages_with_gaps_report_what_is_gone_and_an_empty_gap_page_moves_to_the_head() {
    let (mut s, id) = replaying(10);
    // Retention removed 11..=499; then a hole at 502.
    s.handle_frame(
        page(
            id,
            600,
            true,
            vec![push(500, 10), push(501, 500), push(503, 501)],
        ),
        0,
    );
    assert_eq!(
        told(&mut s),
        ["lost11-499", "m500", "m501", "lost502-502", "m503"]
    );
    let (mut s, id) = replaying(79);
    s.handle_frame(page(id, 80, true, vec![]), 0);
    assert_eq!(told(&mut s), ["lost80-80"]);
    assert_eq!(s.delivered(), Some(Seq(80)));
    assert!(s.is_live());
    let acked: Vec<Frame> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(acked.contains(&Frame::Ack(Seq(80))), "{acked:?}");
}
