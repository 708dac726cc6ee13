//! The frame format: round trips, and every malformed input an error.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::messaging::batch::{BatchOutcome, BatchReply, BatchRequest, Envelope, RoomPublish};
use crate::node_id::NodeId;

fn sample_batch() -> BatchRequest {
    BatchRequest {
        from: NodeId::parse("node-a").unwrap(),
        incarnation: 77,
        seq: 5,
        first_unacked: 3,
        items: vec![
            Envelope {
                kind: MessageKind(60_001),
                version: 2,
                route: 513,
                body: Bytes::from_static(b"hello"),
            },
            Envelope {
                kind: MessageKind(60_002),
                version: 1,
                route: 0,
                body: Bytes::new(),
            },
        ],
    }
}

#[test]
fn a_frame_carries_its_length_kind_and_version() {
    let bytes = to_bytes(&sample_batch());
    assert_eq!(
        u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize,
        bytes.len() - 4
    );
    assert_eq!(
        u16::from_le_bytes([bytes[4], bytes[5]]),
        kinds::BATCH_REQUEST.0
    );
    assert_eq!(bytes[6], BatchRequest::VERSION);
}

#[test]
fn batches_replies_and_room_publishes_round_trip() {
    let batch = sample_batch();
    assert_eq!(decode::<BatchRequest>(&to_bytes(&batch)), Ok(batch));
    for outcome in [
        BatchOutcome::Done(vec![Bytes::from_static(b"r1"), Bytes::new()]),
        BatchOutcome::OutOfOrder { expected: 9 },
        BatchOutcome::Stale,
        BatchOutcome::Forgotten,
    ] {
        let reply = BatchReply {
            from: NodeId::parse("b").unwrap(),
            incarnation: 1,
            seq: 2,
            outcome,
        };
        assert_eq!(decode::<BatchReply>(&to_bytes(&reply)), Ok(reply));
    }
    let room = RoomPublish {
        origin: NodeId::parse("c").unwrap(),
        room: 1 << 62 | 5,
        payload: Bytes::from_static(b"push"),
    };
    assert_eq!(decode::<RoomPublish>(&to_bytes(&room)), Ok(room));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = to_bytes(&sample_batch());
    for cut in 0..bytes.len() {
        let short = bytes.slice(..cut);
        assert!(decode::<BatchRequest>(&short).is_err(), "cut at {cut}");
    }
}

#[test]
fn trailing_bytes_wrong_kinds_and_newer_versions_are_refused() {
    let mut longer = BytesMut::from(&to_bytes(&sample_batch())[..]);
    longer.put_u8(0);
    assert_eq!(
        decode::<BatchRequest>(&longer.freeze()),
        Err(WireError::Trailing(1))
    );
    let reply = to_bytes(&BatchReply {
        from: NodeId::parse("b").unwrap(),
        incarnation: 1,
        seq: 1,
        outcome: BatchOutcome::Stale,
    });
    assert_eq!(
        decode::<BatchRequest>(&reply),
        Err(WireError::WrongKind {
            expected: kinds::BATCH_REQUEST.0,
            got: kinds::BATCH_REPLY.0
        })
    );
    let mut newer = BytesMut::from(&to_bytes(&sample_batch())[..]);
    newer[6] = BatchRequest::VERSION + 1;
    assert_eq!(
        decode::<BatchRequest>(&newer.freeze()),
        Err(WireError::UnsupportedVersion {
            kind: kinds::BATCH_REQUEST.0,
            version: BatchRequest::VERSION + 1,
            supported: BatchRequest::VERSION
        })
    );
}

/// Found by the `cluster_wire` fuzz target: a cluster record framed with
/// version 0 decoded (as if version 1) and re-encoded as version 1, so
/// two different byte strings meant the same record. Layouts are numbered
/// from 1; 0 is refused.
#[test]
fn version_zero_is_refused() {
    let mut zero = BytesMut::from(&to_bytes(&sample_batch())[..]);
    zero[6] = 0;
    assert_eq!(
        decode::<BatchRequest>(&zero.freeze()),
        Err(WireError::UnsupportedVersion {
            kind: kinds::BATCH_REQUEST.0,
            version: 0,
            supported: BatchRequest::VERSION
        })
    );
}

#[test]
fn a_forged_item_count_is_refused_before_any_allocation() {
    // A batch header claiming 2^32 - 1 items in a few bytes.
    let mut body = BytesMut::new();
    put_str(&mut body, "a");
    body.put_u64_le(1);
    body.put_u64_le(1);
    body.put_u64_le(1);
    body.put_u32_le(u32::MAX);
    let body = body.freeze();
    assert!(matches!(
        decode_body::<BatchRequest>(kinds::BATCH_REQUEST, 1, &body),
        Err(WireError::Invalid {
            field: "item count",
            ..
        })
    ));
}

#[test]
fn a_first_unacked_past_the_batch_is_refused() {
    let mut batch = sample_batch();
    batch.first_unacked = batch.seq + 1;
    assert!(matches!(
        decode::<BatchRequest>(&to_bytes(&batch)),
        Err(WireError::Invalid {
            field: "first_unacked",
            ..
        })
    ));
}

#[test]
fn envelope_bodies_are_slices_of_the_received_buffer() {
    let bytes = to_bytes(&sample_batch());
    let batch: BatchRequest = decode(&bytes).unwrap();
    let body = &batch.items[0].body;
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(range.contains(&(body.as_ptr() as usize)), "no copy");
}

#[test]
fn frames_iterate_and_stop_at_the_first_error() {
    let mut buf = BytesMut::new();
    encode(&sample_batch(), &mut buf);
    encode(&sample_batch(), &mut buf);
    buf.put_slice(&[9, 0, 0]); // a truncated third frame
    let buf = buf.freeze();
    let frames: Vec<_> = Frames::new(&buf).collect();
    assert_eq!(frames.len(), 3);
    assert!(frames[0].is_ok() && frames[1].is_ok());
    assert!(frames[2].is_err());
}

proptest! {
    /// Any bytes decode to a value or an error, never a panic; whatever
    /// decodes re-encodes to the same bytes.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let bytes = Bytes::from(data);
        if let Ok(b) = decode::<BatchRequest>(&bytes) {
            prop_assert_eq!(to_bytes(&b), bytes.clone());
        }
        if let Ok(r) = decode::<BatchReply>(&bytes) {
            prop_assert_eq!(to_bytes(&r), bytes.clone());
        }
        let _ = decode::<RoomPublish>(&bytes);
        let _ = decode::<crate::registry::record::NodeRecord>(&bytes);
        let _ = decode::<crate::placement::record::ClusterMeta>(&bytes);
        let _ = decode::<crate::placement::record::PlacementRecord>(&bytes);
    }

    /// Random batches round-trip.
    #[test]
    fn batches_round_trip(
        seq in 1u64..1000,
        items in proptest::collection::vec(
            (any::<u16>(), any::<u8>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..20),
    ) {
        let batch = BatchRequest {
            from: NodeId::parse("n").unwrap(),
            incarnation: seq * 3,
            seq,
            first_unacked: seq,
            items: items
                .into_iter()
                .map(|(k, v, r, b)| Envelope { kind: MessageKind(k), version: v, route: r, body: Bytes::from(b) })
                .collect(),
        };
        prop_assert_eq!(decode::<BatchRequest>(&to_bytes(&batch)), Ok(batch));
    }
}
