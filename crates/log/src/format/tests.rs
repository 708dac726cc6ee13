//! Round trips and damage cases of the byte layout.

use super::*;
use crate::state::{DedupConfig, RecoveredState};
use crate::window::WindowStart;

fn msg(seq: u64, payload: &'static [u8]) -> Record {
    Record::Message(MessageRecord {
        inbox: UserId(7),
        seq: Seq(seq),
        from: UserId(1),
        from_device: DeviceId(2),
        to: UserId(7),
        client_msg_id: 99,
        qos: Qos::ExactlyOnce,
        ts_ms: 123,
        attrs: Bytes::new(),
        payload: Bytes::from_static(payload),
    })
}

#[test]
fn every_kind_round_trips() {
    let records = [
        msg(1, b"hello"),
        Record::Cursor {
            user: UserId(1),
            device: DeviceId(2),
            seq: Seq(3),
        },
        Record::Release {
            from: UserId(1),
            from_device: DeviceId(2),
            client_msg_id: 3,
            to: UserId(4),
        },
        Record::Member {
            group: UserId(UserId::GROUP_BIT | 5),
            user: UserId(6),
            joined: true,
        },
        Record::Checkpoint(Bytes::from_static(b"snap")),
        Record::State {
            key: StateKey::MqttSession {
                user: UserId(3),
                device: DeviceId(4),
            },
            value: Some(Bytes::from_static(b"session")),
        },
        Record::State {
            key: StateKey::Retained {
                room: UserId(surepush_proto::ROOM_BIT | 9),
            },
            value: Some(Bytes::new()),
        },
        Record::State {
            key: StateKey::Retained {
                room: UserId(surepush_proto::ROOM_BIT | 9),
            },
            value: None,
        },
        // Webhook events and their cursor (issue #22 item 3).
        Record::State {
            key: StateKey::WebhookEvent { id: u64::MAX - 1 },
            value: Some(Bytes::from_static(b"{\"event\":\"message.offline\"}")),
        },
        Record::State {
            key: StateKey::WebhookEvent { id: 7 },
            value: None,
        },
        Record::State {
            key: StateKey::WebhookCursor,
            value: Some(Bytes::copy_from_slice(&7u64.to_le_bytes())),
        },
        // A share group's state on its shard (issue #21).
        Record::State {
            key: StateKey::ShareGroup { key: u64::MAX - 2 },
            value: Some(Bytes::from_static(b"\x01\x00\x00\x00\x00")),
        },
        // An MQTT will waiting for its delay (issue #21).
        Record::State {
            key: StateKey::MqttWill {
                user: UserId(3),
                device: DeviceId(u64::MAX),
            },
            value: Some(Bytes::from_static(b"will")),
        },
    ];
    for r in records {
        let mut b = BytesMut::new();
        encode(&r, &mut b);
        assert_eq!(b.len(), encoded_len(&r));
        assert_eq!(
            decode(&b.freeze()),
            Decoded::Record(r.clone(), encoded_len(&r))
        );
    }
}

/// Issue #21 item 3: a message with attributes is its own kind (10), one
/// without is still kind 1, byte for byte as before, so both old records
/// and old readers of attribute-free logs keep working; a bad attributes
/// length is damage.
#[test]
fn message_attributes_round_trip_in_their_own_kind() {
    let Record::Message(mut m) = msg(5, b"payload") else {
        unreachable!()
    };
    let plain = Record::Message(m.clone());
    let mut b = BytesMut::new();
    encode(&plain, &mut b);
    assert_eq!(b[RECORD_HEADER_LEN], Kind::Message as u8);
    assert_eq!(b.len(), RECORD_HEADER_LEN + 1 + 57 + 7, "the old layout");
    m.attrs = Bytes::from_static(b"\x01\x01\x03\x00\x04text");
    let with = Record::Message(m);
    let mut b = BytesMut::new();
    encode(&with, &mut b);
    assert_eq!(b[RECORD_HEADER_LEN], Kind::MessageWithAttrs as u8);
    assert_eq!(b.len(), encoded_len(&with));
    let bytes = b.freeze();
    assert_eq!(decode(&bytes), Decoded::Record(with.clone(), bytes.len()));
    // The attributes' length pointing past the body, or 0: damage.
    for bad_len in [u32::MAX, 1_000, 0] {
        let mut raw = BytesMut::from(&bytes[..]);
        let at = RECORD_HEADER_LEN + 1 + 57;
        raw[at..at + 4].copy_from_slice(&bad_len.to_le_bytes());
        seal_crc(&mut raw, 0);
        assert_eq!(
            decode(&raw.freeze()),
            Decoded::Corrupt("bad message attributes"),
            "{bad_len}"
        );
    }
}

/// A state record whose key names nothing this build knows (an
/// unknown tag, a retained message of a non-room id, a deletion that
/// carries a value) is damage, not a key to fold.
#[test]
fn state_records_with_impossible_keys_are_refused() {
    let encode_raw = |kind: Kind, tag: u8, a: u64, b: u64, value: &[u8]| {
        let mut out = BytesMut::new();
        let body_len = 1 + STATE_KEY_LEN + value.len();
        out.put_u32_le(body_len as u32);
        out.put_u32_le(0);
        out.put_u8(kind as u8);
        out.put_u8(tag);
        out.put_u64_le(a);
        out.put_u64_le(b);
        out.put_slice(value);
        seal_crc(&mut out, 0);
        out.freeze()
    };
    let room = surepush_proto::ROOM_BIT | 1;
    for (kind, tag, a, b, value, why) in [
        (Kind::State, 3, 1, 1, &b"v"[..], "bad state key"),
        (Kind::State, STATE_TAG_RETAINED, 5, 0, b"v", "bad state key"),
        (
            Kind::State,
            STATE_TAG_RETAINED,
            room,
            1,
            b"v",
            "bad state key",
        ),
        (
            Kind::StateDeleted,
            STATE_TAG_MQTT_SESSION,
            1,
            1,
            b"v",
            "a state deletion with a value",
        ),
    ] {
        assert_eq!(
            decode(&encode_raw(kind, tag, a, b, value)),
            Decoded::Corrupt(why)
        );
    }
    let good = encode_raw(Kind::StateDeleted, STATE_TAG_RETAINED, room, 0, b"");
    assert!(matches!(
        decode(&good),
        Decoded::Record(Record::State { value: None, .. }, _)
    ));
}

#[test]
fn markers_and_fillers_round_trip_and_fillers_cover_exactly() {
    let mut b = BytesMut::new();
    encode_marker(123_456, &mut b);
    assert_eq!(b.len(), MARKER_LEN);
    assert_eq!(
        decode(&b.clone().freeze()),
        Decoded::Internal(Internal::Durable { up_to: 123_456 }, MARKER_LEN)
    );
    let largest = RECORD_HEADER_LEN + MAX_RECORD_LEN as usize;
    for len in [
        MIN_FILLER_LEN,
        10,
        4096,
        largest,
        largest + 1,
        largest + 9,
        2 * largest + 3,
    ] {
        let mut b = BytesMut::new();
        encode_filler(len, &mut b);
        assert_eq!(b.len(), len, "filler of {len}");
        let mut rest = b.freeze();
        while !rest.is_empty() {
            let Decoded::Internal(Internal::Filler, n) = decode(&rest) else {
                panic!("filler of {len} does not decode as fillers");
            };
            rest = rest.slice(n..);
        }
    }
}

#[test]
fn every_truncation_and_every_flipped_bit_is_detected() {
    let mut b = BytesMut::new();
    encode(&msg(5, b"payload bytes"), &mut b);
    let full = b.freeze();
    for cut in 1..full.len() {
        let d = decode(&full.slice(..cut));
        assert!(matches!(d, Decoded::Truncated), "cut {cut}: {d:?}");
    }
    for byte in 0..full.len() {
        for bit in 0..8 {
            let mut bad = full.to_vec();
            bad[byte] ^= 1 << bit;
            let d = decode(&Bytes::from(bad));
            assert!(
                !matches!(d, Decoded::Record(..)),
                "byte {byte} bit {bit} accepted"
            );
        }
    }
}

#[test]
fn zeros_are_the_clean_end() {
    assert_eq!(decode(&Bytes::from(vec![0u8; 64])), Decoded::End);
    assert_eq!(decode(&Bytes::from(vec![0u8; 3])), Decoded::End);
}

#[test]
fn segment_header_verifies() {
    let h = SegmentHeader::new(4096 * 7);
    let parsed = SegmentHeader::parse(h.as_bytes()).unwrap();
    assert_eq!(parsed.base_lsn.get(), 4096 * 7);
    let mut bad = h.as_bytes().to_vec();
    bad[10] ^= 1;
    assert!(SegmentHeader::parse(&bad).is_none());
}

#[test]
fn sidecar_round_trips_and_rejects_damage() {
    let entries: Vec<SidecarEntry> = (0..5u64)
        .map(|i| SidecarEntry {
            inbox: i.into(),
            seq: (i + 1).into(),
            offset: (i as u32 * 100).into(),
            len: 100.into(),
        })
        .collect();
    let keys: Vec<SidecarKey> = (0..5u64)
        .map(|i| SidecarKey {
            from: (i + 10).into(),
            from_device: 1.into(),
            client_msg_id: (i * 3).into(),
            ts_ms: (1000 + i).into(),
            qos: 1 + (i % 2) as u8,
        })
        .collect();
    let bytes = encode_sidecar(4096, 9000, 77, &entries, &keys);
    assert_eq!(bytes.len(), sidecar_len(5, true));
    assert_eq!(sidecar_count(&bytes), Some(5));
    let full = decode_sidecar(&bytes, 4096, true).unwrap();
    assert_eq!((full.end_offset, full.max_ts_ms), (9000, 77));
    assert_eq!((&full.entries, &full.keys), (&entries, &keys));
    // The index part alone reads and verifies without the keys.
    let index_only = decode_sidecar(&bytes[..sidecar_len(5, false)], 4096, false).unwrap();
    assert_eq!((index_only.entries, index_only.keys), (entries, Vec::new()));
    assert_eq!(
        decode_sidecar(&bytes, 8192, false),
        None,
        "another segment's sidecar"
    );
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 1;
        assert_eq!(decode_sidecar(&bad, 4096, true), None, "flip at {i}");
        if i < sidecar_len(5, false) {
            assert_eq!(decode_sidecar(&bad, 4096, false), None, "flip at {i}");
        }
    }
    assert_eq!(decode_sidecar(&bytes[..bytes.len() - 1], 4096, true), None);
}

#[test]
fn pointer_round_trips_and_rejects_damage() {
    for lsn in [0u64, 4096, u64::MAX] {
        let window = WindowStart {
            lsn: lsn / 2,
            newest_ts_ms: 1_700_000_000_000,
        };
        assert_eq!(
            parse_pointer(&encode_pointer(lsn, window)),
            Some(Pointer {
                lsn,
                window: Some(window)
            })
        );
    }
    let window = WindowStart {
        lsn: 100,
        newest_ts_ms: 5,
    };
    let good = encode_pointer(123_456, window);
    assert_eq!(parse_pointer(&good.replace("123456", "123457")), None);
    assert_eq!(parse_pointer(&good.replace(" 100 ", " 101 ")), None);
    assert_eq!(parse_pointer("garbage"), None);
    assert_eq!(parse_pointer(""), None);
    // Version 1 pointers (no window) still parse.
    let v1 = format!(
        "surepush-checkpoint v1 4096 {:08x}\n",
        crc32c::crc32c(b"4096")
    );
    assert_eq!(
        parse_pointer(&v1),
        Some(Pointer {
            lsn: 4096,
            window: None
        })
    );
}

#[test]
fn checkpoint_round_trips_the_state() {
    let config = DedupConfig::default();
    let mut state = RecoveredState::default();
    for r in [
        msg(1, b"a"),
        msg(2, b"b"),
        Record::Cursor {
            user: UserId(7),
            device: DeviceId(1),
            seq: Seq(2),
        },
        Record::Member {
            group: UserId(UserId::GROUP_BIT | 1),
            user: UserId(9),
            joined: true,
        },
        Record::Member {
            group: UserId(UserId::GROUP_BIT | 1),
            user: UserId(3),
            joined: true,
        },
    ] {
        state.apply(&r, &config);
    }
    for (device, value) in [(1, Some("a")), (2, Some("b")), (1, Some("c")), (2, None)] {
        let record = Record::State {
            key: StateKey::MqttSession {
                user: UserId(7),
                device: DeviceId(device),
            },
            value: value.map(|v: &'static str| Bytes::from_static(v.as_bytes())),
        };
        state.apply(&record, &config);
    }
    state.dedup.observe(5_000);
    assert_eq!(
        state.groups.values().next().unwrap(),
        &[UserId(3), UserId(9)]
    );
    let session = |device| StateKey::MqttSession {
        user: UserId(7),
        device: DeviceId(device),
    };
    assert_eq!(
        state.keyed.iter().collect::<Vec<_>>(),
        vec![(&session(1), &Bytes::from_static(b"c"))],
        "the last value wins; a deletion removes the key"
    );
    // Conversation summaries (issue #22): an own send (the own-inbox
    // copy) and a group message besides the two from user 1.
    let own = MessageRecord {
        inbox: UserId(7),
        seq: Seq(3),
        from: UserId(7),
        from_device: DeviceId(1),
        to: UserId(1),
        client_msg_id: 5,
        qos: Qos::AtLeastOnce,
        ts_ms: 200,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"reply"),
    };
    let group = MessageRecord {
        seq: Seq(4),
        from: UserId(8),
        to: UserId(UserId::GROUP_BIT | 1),
        client_msg_id: 6,
        ..own.clone()
    };
    state.apply(&Record::Message(own), &config);
    state.apply(&Record::Message(group), &config);
    let convs = state.conversations.of(UserId(7)).expect("tracked");
    assert_eq!(convs.peers.len(), 2);
    assert_eq!(convs.peers[&UserId(1)].own, [Seq(3)]);
    let back = decode_checkpoint(&encode_checkpoint(&state), &config).unwrap();
    assert!(!back.whole_window);
    assert_eq!(back.state, state);
    assert_eq!(back.state.dedup.newest_ts_ms(), 5_000, "the clock is kept");
    // Version 3 (no conversations) still loads, without summaries.
    let mut untracked = state.clone();
    untracked.conversations = Default::default();
    let v3 = decode_checkpoint(&encode_checkpoint_v3(&state), &config).unwrap();
    assert_eq!(v3.state, untracked);
    // Version 2 (no keyed section) still loads, without keyed state.
    let mut unkeyed = untracked.clone();
    unkeyed.keyed.clear();
    let v2 = decode_checkpoint(&encode_checkpoint_v2(&state), &config).unwrap();
    assert_eq!(v2.state, unkeyed);
    // Version 1 (the whole window, groups optional) still loads.
    let v1 = decode_checkpoint(&encode_checkpoint_v1(&state), &config).unwrap();
    assert!(v1.whole_window);
    assert_eq!(v1.state, unkeyed);
    let mut old = unkeyed.clone();
    old.groups.clear();
    let old_encoded = encode_checkpoint_v1(&old);
    let without_section = &old_encoded[..old_encoded.len() - 4];
    assert_eq!(
        decode_checkpoint(without_section, &config).unwrap().state,
        old
    );
    assert!(decode_checkpoint(b"\x01\x00\x00", &config).is_none());
    // A body cut short is malformed (its sections are not optional).
    let v4 = encode_checkpoint(&state);
    assert!(decode_checkpoint(&v4[..v4.len() - 4], &config).is_none());
    let v3 = encode_checkpoint_v3(&state);
    assert!(decode_checkpoint(&v3[..v3.len() - 4], &config).is_none());
    let v2 = encode_checkpoint_v2(&old);
    assert!(decode_checkpoint(&v2[..v2.len() - 4], &config).is_none());
}
