use bytes::Bytes;

use super::*;
use crate::wire::{decode, to_bytes};
use surepush_proto::{ConvSummary, Push, Qos};

fn push(seq: u64, payload: usize) -> Push {
    Push {
        seq: Seq(seq),
        prev_seq: Seq(seq - 1),
        from: UserId(7),
        from_device: DeviceId(2),
        to: UserId(9),
        client_msg_id: seq * 10,
        ts_ms: 1_700_000_000_000 + seq,
        qos: Qos::AtLeastOnce,
        echo: false,
        retransmit: false,
        attrs: Bytes::new(),
        payload: Bytes::from(vec![seq as u8; payload]),
    }
}

fn page(seqs: std::ops::RangeInclusive<u64>, payload: usize) -> ConvMsgs {
    ConvMsgs {
        request_id: 0,
        peer: UserId(7),
        head: Seq(*seqs.end()),
        end: true,
        truncated: false,
        items: seqs.map(|s| push(s, payload)).collect(),
    }
}

fn round_trips<T: Wire + PartialEq + std::fmt::Debug>(msg: T) {
    let bytes = to_bytes(&msg);
    assert_eq!(decode::<T>(&bytes).expect("decodes"), msg);
}

#[test]
fn calls_and_answers_round_trip() {
    let fetch = ConvFetch {
        request_id: 0,
        peer: UserId(7),
        direction: SyncDirection::Before(Seq(40)),
        limit: 20,
    };
    round_trips(AdminCall::Presence {
        users: vec![UserId(1), UserId(u64::MAX >> 2)],
    });
    round_trips(AdminCall::Summaries {
        user: UserId(9),
        device: Some(DeviceId(3)),
        list: ConvList {
            request_id: 0,
            before: Seq(12),
            limit: 5,
            unread_only: true,
        },
    });
    round_trips(AdminCall::Messages {
        user: UserId(9),
        fetch: fetch.clone(),
    });
    round_trips(AdminCall::Inbox {
        user: UserId(9),
        fetch,
    });
    round_trips(AdminCall::Disconnect {
        user: UserId(9),
        device: None,
    });
    round_trips(AdminAnswer::Presence(vec![
        UserPresence {
            user: UserId(9),
            owned: true,
            devices: vec![OnlineDevice {
                device: DeviceId(3),
                since_ms: 12,
                shard: 1,
                transport: "mqtt".into(),
            }],
        },
        UserPresence {
            user: UserId(10),
            owned: false,
            devices: Vec::new(),
        },
    ]));
    round_trips(AdminAnswer::Summaries(ConvPage {
        request_id: 0,
        cursor: Seq(3),
        head: Seq(9),
        older: 1,
        end: false,
        items: vec![ConvSummary {
            peer: UserId(7),
            unread: 2,
            unread_at_least: false,
            total: 9,
            last_seq: Seq(9),
            last_from: UserId(7),
            last_from_device: DeviceId(2),
            last_ts_ms: 5,
            last_len: 3,
            preview: Bytes::from_static(b"hey"),
        }],
    }));
    round_trips(AdminAnswer::Messages(page(1..=3, 5)));
    round_trips(AdminAnswer::Disconnected(2));
    round_trips(AdminAnswer::Refused {
        why: Refusal::NotOwner,
        message: "placed on n2".into(),
    });
}

#[test]
fn truncated_or_foreign_bytes_are_errors() {
    let bytes = to_bytes(&AdminAnswer::Messages(page(1..=3, 5)));
    for cut in 0..bytes.len() {
        assert!(decode::<AdminAnswer>(&bytes.slice(..cut)).is_err(), "{cut}");
    }
    // A call is not an answer, and a frame of the wrong kind is refused.
    let call = to_bytes(&AdminCall::Disconnect {
        user: UserId(1),
        device: None,
    });
    assert!(decode::<AdminAnswer>(&call).is_err());
    let mut forged = BytesMut::new();
    forged.put_u8(2); // Summaries, holding a CONVMSGS frame
    put_frame(&mut forged, Frame::ConvMsgs(page(1..=1, 1)));
    let mut framed = BytesMut::new();
    crate::wire::encode(&RawBody(forged.freeze()), &mut framed);
    assert!(decode::<AdminAnswer>(&framed.freeze()).is_err());
}

/// Any body under the answer's kind, to forge answers.
struct RawBody(bytes::Bytes);

impl Wire for RawBody {
    const KIND: MessageKind = kinds::ADMIN_ANSWER;
    const VERSION: u8 = 1;
    fn encode_body(&self, out: &mut BytesMut) {
        out.extend_from_slice(&self.0);
    }
    fn decode_body(_: u8, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(RawBody(r.rest()))
    }
}

#[test]
fn a_page_over_max_payload_keeps_the_newest_and_pages_on() {
    // 100 messages of 1 KiB, 20 KiB allowed: the newest ones stay.
    let mut answer = AdminAnswer::Messages(page(1..=100, 1024));
    answer.fit(20 * 1024, Some(SyncDirection::Latest));
    let AdminAnswer::Messages(p) = &answer else {
        unreachable!()
    };
    assert!(to_bytes(&answer).len() <= 20 * 1024);
    assert!(
        p.items.len() > 10 && p.items.len() < 20,
        "{}",
        p.items.len()
    );
    assert_eq!(p.items.last().map(|m| m.seq), Some(Seq(100)));
    let first = &p.items[0];
    assert_eq!(first.prev_seq.0, first.seq.0 - 1);
    assert!(!p.end);

    // A page after an anchor keeps the oldest.
    let mut answer = AdminAnswer::Messages(page(1..=100, 1024));
    answer.fit(20 * 1024, Some(SyncDirection::After(Seq(0))));
    let AdminAnswer::Messages(p) = &answer else {
        unreachable!()
    };
    assert_eq!(p.items.first().map(|m| m.seq), Some(Seq(1)));
    assert!(!p.end);

    // One item too large stays (the owner's max_frame bounds it).
    let mut answer = AdminAnswer::Messages(page(1..=1, 4096));
    answer.fit(1024, Some(SyncDirection::Latest));
    let AdminAnswer::Messages(p) = &answer else {
        unreachable!()
    };
    assert_eq!(p.items.len(), 1);

    // A page that fits is left alone.
    let small = AdminAnswer::Messages(page(1..=3, 10));
    let mut same = small.clone();
    same.fit(1 << 20, Some(SyncDirection::Latest));
    assert_eq!(same, small);
}
