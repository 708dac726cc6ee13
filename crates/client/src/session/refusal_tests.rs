//! A send refused with StorageUnavailable (a partition moving between
//! nodes, a full disk) is retried soon and then less often: after
//! [`REFUSED_RETRY_MS`], doubling with each refusal in a row, never later
//! than the send timeout; a SEND that gets no answer at all still waits
//! one send timeout.

use super::tests::live;
use super::*;
use surepush_proto::{Frame, Qos, SendAck, SendResult, UserId};

const MS: u64 = NS_PER_MS;

/// The client message ids of the SENDs the session writes at `now`.
fn sends_at(s: &mut ClientSession, now: u64) -> Vec<u64> {
    s.handle_timeout(now);
    std::iter::from_fn(|| s.poll_transmit())
        .filter_map(|f| match f {
            Frame::Send(send) => Some(send.client_msg_id),
            _ => None,
        })
        .collect()
}

fn refuse(s: &mut ClientSession, id: u64, now: u64) {
    let ack = SendAck {
        client_msg_id: id,
        seq: Seq::ZERO,
        own_seq: Seq::ZERO,
        result: SendResult::StorageUnavailable,
    };
    s.handle_frame(Frame::SendAck(ack), now);
}

#[test]
fn a_refused_send_is_retried_soon_then_less_often_up_to_the_send_timeout() {
    let mut s = live(0);
    let timeout = s.config.send_timeout_ms * MS;
    let id = s.send(UserId(9), Qos::AtLeastOnce, Bytes::from_static(b"m"), 0);
    assert_eq!(sends_at(&mut s, 0), [id]);
    // No answer: one send timeout.
    assert!(sends_at(&mut s, timeout - 1).is_empty());
    assert_eq!(sends_at(&mut s, timeout), [id]);
    // Refused: 50 ms, then 100 ms.
    let t = timeout + 5 * MS;
    refuse(&mut s, id, t);
    assert!(sends_at(&mut s, t + REFUSED_RETRY_MS * MS - 1).is_empty());
    assert_eq!(s.poll_timeout(), Some(t + REFUSED_RETRY_MS * MS));
    assert_eq!(sends_at(&mut s, t + REFUSED_RETRY_MS * MS), [id]);
    let t = t + REFUSED_RETRY_MS * MS;
    refuse(&mut s, id, t);
    assert!(sends_at(&mut s, t + 2 * REFUSED_RETRY_MS * MS - 1).is_empty());
    assert_eq!(sends_at(&mut s, t + 2 * REFUSED_RETRY_MS * MS), [id]);
    // Refused many times: never later than the send timeout.
    let mut t = t + 2 * REFUSED_RETRY_MS * MS;
    for _ in 0..40 {
        refuse(&mut s, id, t);
        t += timeout;
        assert_eq!(sends_at(&mut s, t), [id]);
    }
    refuse(&mut s, id, t);
    assert!(sends_at(&mut s, t + timeout - 1).is_empty());
    assert_eq!(sends_at(&mut s, t + timeout), [id]);
}
