//! Round trips of every message and decoding of malformed input.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::action::{ConnId, MembersOutcome, StoreOutcome};
use crate::keyed::StateReport;
use crate::router::ShardId;
use crate::{Record, SendKey, StateKey};
use surepush_proto::{DeviceId, Qos, Seq, SubscribeFrom, UserId};

fn key() -> SendKey {
    SendKey {
        from: UserId(7),
        from_device: DeviceId(3),
        client_msg_id: u64::MAX - 1,
    }
}

fn conn() -> ConnId {
    ConnId {
        index: 12,
        generation: 0xdead_beef,
    }
}

/// One message of every kind, with fields that differ from their
/// neighbours so a swapped field would show.
fn every_kind() -> Vec<PeerMsg> {
    let payload = Bytes::from_static(b"payload \x00\xff");
    let room = surepush_proto::ROOM_BIT | 44;
    vec![
        StoreCopy {
            origin: ShardId(3),
            key: key(),
            inbox: UserId(9),
            to: UserId(10),
            qos: Qos::ExactlyOnce,
            ts_ms: 1_700_000_000_123,
            attrs: Bytes::new(),
            payload: payload.clone(),
        }
        .into(),
        Stored {
            key: key(),
            inbox: UserId(9),
            outcome: StoreOutcome::Duplicate(Seq(41)),
        }
        .into(),
        RoomPublish {
            origin: ShardId(1),
            key: key(),
            room: UserId(room),
            qos: Qos::AtMostOnce,
            ts_ms: 5,
            attrs: Bytes::new(),
            payload: payload.clone(),
            granted: true,
            confirm: false,
        }
        .into(),
        Ephemeral {
            key: key(),
            inbox: UserId(2),
            to: UserId(UserId::GROUP_BIT | 5),
            ts_ms: 6,
            attrs: Bytes::new(),
            payload: Bytes::new(),
        }
        .into(),
        Release {
            key: key(),
            to: UserId(8),
        }
        .into(),
        GroupStore {
            origin: ShardId(2),
            key: key(),
            group: UserId(UserId::GROUP_BIT | 5),
            qos: Qos::AtLeastOnce,
            ts_ms: 7,
            attrs: Bytes::new(),
            payload: payload.clone(),
            members_only: true,
        }
        .into(),
        StoreMany {
            home: ShardId(0),
            key: key(),
            group: UserId(UserId::GROUP_BIT | 5),
            inboxes: vec![UserId(1), UserId(4), UserId(u64::MAX >> 2)],
            qos: Qos::ExactlyOnce,
            ts_ms: 8,
            attrs: Bytes::new(),
            payload: payload.clone(),
        }
        .into(),
        GroupStored {
            key: key(),
            group: UserId(UserId::GROUP_BIT | 5),
            inbox: UserId(4),
            outcome: StoreOutcome::Conflict,
        }
        .into(),
        GroupEphemeral {
            key: key(),
            group: UserId(UserId::GROUP_BIT | 5),
            ts_ms: 9,
            attrs: Bytes::new(),
            payload: payload.clone(),
            confirm_to: Some(ShardId(65_535)),
            members_only: false,
        }
        .into(),
        ReleaseMany {
            key: key(),
            inboxes: vec![],
        }
        .into(),
        MembersUpdate {
            origin: ShardId(1),
            request: 99,
            id: UserId(room),
            add: vec![UserId(1), UserId(2)],
            remove: vec![UserId(3)],
        }
        .into(),
        MembersUpdated {
            request: 99,
            outcome: MembersOutcome::Invalid(MembersOutcome::INVALID_REASONS[1]),
        }
        .into(),
        RoomSubscribe {
            room,
            shard: ShardId(1),
            conn: conn(),
            sub: 17,
            from: SubscribeFrom::After(Seq(30)),
            user: UserId(5),
            granted: false,
        }
        .into(),
        RoomRefused {
            room,
            conn: conn(),
            sub: 18,
        }
        .into(),
        RoomRevoke {
            room,
            revoked: Revoked::AllBut(vec![UserId(1), UserId(9)]),
        }
        .into(),
        RoomLeave {
            room,
            shard: ShardId(2),
        }
        .into(),
        RoomPage {
            room,
            conn: conn(),
            sub: 19,
            head: Seq(100),
            first: Seq(90),
            gap: true,
            frames: vec![
                (Seq(90), payload.clone()),
                (Seq(91), Bytes::from_static(b"x")),
            ],
            skip_to: Seq(88),
            done: false,
        }
        .into(),
        RoomFanout {
            room,
            seq: Seq(101),
            frame: payload.clone(),
        }
        .into(),
        StoreState {
            key: StateKey::MqttSession {
                user: UserId(5),
                device: DeviceId(6),
            },
            value: Some(payload.clone()),
            report: Some(StateReport {
                origin: ShardId(1),
                conn: conn(),
                id: 77,
            }),
        }
        .into(),
        StateStored {
            conn: conn(),
            id: 78,
            ok: true,
        }
        .into(),
        QueryState {
            origin: ShardId(3),
            conn: conn(),
            key: StateKey::Retained { room: UserId(room) },
        }
        .into(),
        StateValue {
            conn: conn(),
            key: StateKey::Retained { room: UserId(room) },
            value: None,
        }
        .into(),
        MoveFetch {
            origin: ShardId(2),
            partition: 7,
            from: MoveCursor {
                position: 3,
                after: Seq(41),
            },
        }
        .into(),
        MovePage {
            partition: 7,
            status: MoveStatus::Page,
            records: vec![
                Record::Message(crate::MessageRecord {
                    inbox: UserId(5),
                    seq: Seq(9),
                    from: UserId(6),
                    from_device: DeviceId(2),
                    to: UserId(5),
                    client_msg_id: 77,
                    qos: Qos::ExactlyOnce,
                    ts_ms: 1_700_000_000_000,
                    attrs: Bytes::from_static(b"a"),
                    payload: Bytes::from_static(b"moved"),
                }),
                Record::Cursor {
                    user: UserId(5),
                    device: DeviceId(2),
                    seq: Seq(8),
                },
                Record::Release {
                    from: UserId(6),
                    from_device: DeviceId(2),
                    client_msg_id: 77,
                    to: UserId(5),
                },
                Record::Member {
                    group: UserId(UserId::GROUP_BIT | 3),
                    user: UserId(5),
                    joined: true,
                },
                Record::State {
                    key: StateKey::Retained { room: UserId(4) },
                    value: Some(Bytes::from_static(b"r")),
                },
                Record::State {
                    key: StateKey::WebhookCursor,
                    value: None,
                },
            ],
            next: Some(MoveCursor {
                position: 4,
                after: Seq::ZERO,
            }),
        }
        .into(),
        PresenceWatch {
            user: UserId(91),
            shard: ShardId(2),
        }
        .into(),
        PresenceUnwatch {
            user: UserId(92),
            shard: ShardId(1),
        }
        .into(),
        FilterJoin {
            filter: "sensors/+/temp".into(),
            shard: ShardId(1),
            conn: conn(),
        }
        .into(),
        FilterLeave {
            filter: "#".into(),
            shard: ShardId(2),
        }
        .into(),
        TopicNotice {
            room: surepush_proto::topic_stream::stream_id("sensors/1/temp"),
            seq: Seq(12),
            name: "sensors/1/temp".into(),
            conn: Some(conn()),
            frame: payload.clone(),
        }
        .into(),
        FilterJoined {
            conn: conn(),
            filter: "a/#".into(),
        }
        .into(),
        PresenceChanged {
            user: UserId(93),
            devices: vec![
                surepush_proto::OnlineDevice {
                    device: DeviceId(4),
                    since_ms: 1_700_000_000_123,
                    shard: 1,
                    transport: "native".into(),
                },
                surepush_proto::OnlineDevice {
                    device: DeviceId(5),
                    since_ms: 1_700_000_000_456,
                    shard: 1,
                    transport: "mqtt".into(),
                },
            ],
        }
        .into(),
        MoveRoundFetch {
            origin: ShardId(2),
            partition: 7,
            round: 3,
            fence: true,
            from: MoveCursor {
                position: 1,
                after: Seq(12),
            },
        }
        .into(),
        NodeFilters {
            node: surepush_cluster::NodeId::parse("n1").expect("valid"),
            epoch: 1_700_000_000_000,
            version: 7,
            full: false,
            joined: vec!["sensors/+/temp".into(), "#".into()],
            left: vec!["a/#".into()],
            relay: true,
        }
        .into(),
        FilterQuery {
            node: surepush_cluster::NodeId::parse("n2").expect("valid"),
            want: FilterWant::WholeSet,
            relay: true,
        }
        .into(),
        FilterQuery {
            node: surepush_cluster::NodeId::parse("n0").expect("valid"),
            want: FilterWant::Streams {
                filter: "t/+/x".into(),
                shard: ShardId(1),
                conn: conn(),
            },
            relay: false,
        }
        .into(),
        TopicRelay {
            room: surepush_proto::topic_stream::stream_id("sensors/1/temp"),
            seq: Seq::ZERO,
            name: "sensors/1/temp".into(),
            frame: payload.clone(),
            to: Some((ShardId(1), conn())),
        }
        .into(),
        ShareJoin {
            group: "workers".into(),
            filter: "jobs/+".into(),
            user: UserId(94),
            device: DeviceId(6),
            shard: ShardId(1),
            conn: conn(),
            qos: Qos::ExactlyOnce,
            receive_max: 20,
            op: ShareOp::Disconnect,
            expiry_s: Some(7_200),
        }
        .into(),
        ShareJoined {
            conn: conn(),
            name: "$share/workers/jobs/+".into(),
            ok: true,
        }
        .into(),
        ShareDeliver {
            key: 0x1234_5678_9abc_def0,
            conn: conn(),
            user: UserId(95),
            device: DeviceId(7),
            home: ShardId(2),
            room: surepush_proto::topic_stream::stream_id("jobs/1"),
            seq: Seq(13),
            from: UserId(96),
            ts_ms: 1_700_000_000_789,
            qos: Qos::AtLeastOnce,
            attrs: Bytes::from_static(b"\x01\x02"),
            payload: payload.clone(),
        }
        .into(),
        ShareDone {
            key: 0x0fed_cba9_8765_4321,
            user: UserId(97),
            device: DeviceId(8),
            room: surepush_proto::topic_stream::stream_id("jobs/2"),
            seq: Seq(14),
            returned: true,
        }
        .into(),
        PresenceNodeWatch {
            user: UserId(94),
            node: surepush_cluster::NodeId::parse("n-2").expect("valid"),
            incarnation: 1_700_000_000_000_001,
            origin: ShardId(1),
        }
        .into(),
        PresenceNodeUnwatch {
            user: UserId(95),
            node: surepush_cluster::NodeId::parse("n_1").expect("valid"),
            incarnation: 7,
        }
        .into(),
        PresenceUpdate {
            user: UserId(96),
            epoch: 3,
            version: 41,
            devices: vec![surepush_proto::OnlineDevice {
                device: DeviceId(6),
                since_ms: 1_700_000_000_789,
                shard: 0,
                transport: "websocket".into(),
            }],
        }
        .into(),
        StreamsAnswered {
            filter: "t/+/x".into(),
            shard: ShardId(1),
            conn: conn(),
            node: surepush_cluster::NodeId::parse("n2").expect("valid"),
            shards: 4,
        }
        .into(),
        ShareAway {
            group: "workers".into(),
            filter: "jobs/+".into(),
            user: UserId(98),
            device: DeviceId(9),
            deadline_ms: 1_700_000_002_000,
        }
        .into(),
    ]
}

#[test]
fn every_kind_round_trips() {
    let all = every_kind();
    assert_eq!(all.len(), 45, "a message kind is missing from the sample");
    for msg in all {
        let bytes = msg.to_bytes();
        assert_eq!(bytes[0], PEER_WIRE_VERSION);
        assert_eq!(PeerMsg::decode(&bytes), Ok(msg));
    }
}

#[test]
fn other_outcomes_round_trip() {
    let outcomes = [
        MembersOutcome::Members(vec![UserId(1), UserId(2)]),
        MembersOutcome::Invalid(MembersOutcome::INVALID_REASONS[0]),
        MembersOutcome::Failed,
    ];
    for outcome in outcomes {
        let msg = PeerMsg::from(MembersUpdated {
            request: 1,
            outcome,
        });
        assert_eq!(PeerMsg::decode(&msg.to_bytes()), Ok(msg));
    }
    let stores = [
        StoreOutcome::Stored(Seq(1)),
        StoreOutcome::Failed,
        StoreOutcome::Rejected,
    ];
    for outcome in stores {
        let msg = PeerMsg::from(Stored {
            key: key(),
            inbox: UserId(1),
            outcome,
        });
        assert_eq!(PeerMsg::decode(&msg.to_bytes()), Ok(msg));
    }
}

#[test]
fn payloads_share_the_input_buffer() {
    let msg = every_kind().remove(0);
    let bytes = msg.to_bytes();
    let Ok(PeerMsg::StoreCopy(copy)) = PeerMsg::decode(&bytes) else {
        panic!("not a StoreCopy");
    };
    let range = bytes.as_ptr_range();
    assert!(range.contains(&copy.payload.as_ptr()), "payload was copied");
}

#[test]
fn every_truncation_is_an_error() {
    for msg in every_kind() {
        let bytes = msg.to_bytes();
        for cut in 0..bytes.len() {
            let got = PeerMsg::decode(&bytes.slice(..cut));
            assert_eq!(got, Err(PeerWireError::Truncated), "{msg:?} cut at {cut}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = BytesMut::new();
    every_kind()[1].encode(&mut bytes);
    bytes.extend_from_slice(&[0, 0]);
    assert_eq!(
        PeerMsg::decode(&bytes.freeze()),
        Err(PeerWireError::Trailing(2))
    );
}

#[test]
fn unknown_version_and_kind_are_refused() {
    let good = every_kind()[4].to_bytes();
    let mut v = good.to_vec();
    v[0] = PEER_WIRE_VERSION + 1;
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Version(PEER_WIRE_VERSION + 1))
    );
    for kind in [0u8, 39, 255] {
        let mut v = good.to_vec();
        v[1] = kind;
        assert_eq!(
            PeerMsg::decode(&Bytes::from(v)),
            Err(PeerWireError::Kind(kind))
        );
    }
}

#[test]
fn invalid_field_values_are_refused() {
    // StoreCopy: version, kind, origin (2), key (24), inbox, to (8 + 8), qos.
    let mut v = every_kind()[0].to_bytes().to_vec();
    v[2 + 2 + 24 + 16] = 3;
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Invalid("qos"))
    );
    // StateStored: version, kind, conn (8), id (8), ok.
    let mut v = every_kind()[19].to_bytes().to_vec();
    v[2 + 8 + 8] = 2;
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Invalid("bool"))
    );
    // Stored: version, kind, key (24), inbox (8), outcome tag, seq: a
    // failure with a sequence would be a second form of the same message.
    let failed = PeerMsg::from(Stored {
        key: key(),
        inbox: UserId(1),
        outcome: StoreOutcome::Failed,
    });
    let mut v = failed.to_bytes().to_vec();
    v[2 + 24 + 8 + 1] = 1;
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Invalid("store outcome"))
    );
    // MembersUpdated: version, kind, request (8), tag 1, reason code.
    let mut v = every_kind()[11].to_bytes().to_vec();
    v[2 + 8 + 1] = 200;
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Invalid("membership refusal"))
    );
}

#[test]
fn a_forged_list_count_allocates_nothing() {
    // ReleaseMany: version, kind, key (24), count.
    let mut v = every_kind()[9].to_bytes().to_vec();
    v[2 + 24..2 + 24 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Truncated)
    );
}

/// The seed corpus of the `peer_msg` fuzz target holds one message of
/// every kind, in the current encoding (a stale corpus would start the
/// fuzzer from bytes that no longer decode). To rewrite it after a format
/// change: `SUREPUSH_WRITE_PEER_CORPUS=1 cargo nextest run -p surepush-core
/// fuzz_seeds`.
#[test]
fn fuzz_seeds_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/peer_msg");
    let rewrite = std::env::var_os("SUREPUSH_WRITE_PEER_CORPUS").is_some();
    for (i, msg) in every_kind().into_iter().enumerate() {
        let path = dir.join(format!("seed-{i:02}"));
        if rewrite {
            std::fs::create_dir_all(&dir).expect("corpus dir can be made");
            std::fs::write(&path, msg.to_bytes()).expect("corpus dir is writable");
        }
        let stored = std::fs::read(&path).expect("seed file exists");
        assert_eq!(PeerMsg::decode(&Bytes::from(stored)), Ok(msg), "{path:?}");
    }
}

/// Issue #20: a reply body carrying several answers decodes to the same
/// answers, and a body cut inside an answer is an error.
#[test]
fn answers_round_trip_and_a_cut_body_is_refused() {
    let answers = every_kind();
    let body = encode_answers(&answers);
    assert_eq!(decode_answers(&body), Ok(answers.clone()));
    assert_eq!(decode_answers(&Bytes::new()), Ok(Vec::new()));
    let mut ends = Vec::new();
    for n in 0..=answers.len() {
        ends.push(encode_answers(&answers[..n]).len());
    }
    for cut in (1..body.len()).filter(|c| !ends.contains(c)) {
        let short = body.slice(..cut);
        if let Ok(got) = decode_answers(&short) {
            panic!("a body cut at {cut} decoded to {} answers", got.len());
        }
    }
}

/// Issue #20: every message whose receiver answers has a return address
/// for the receiving node to substitute; a message that can cross nodes
/// names how many answers it gets.
#[test]
fn answered_messages_name_their_return_address() {
    for mut msg in every_kind() {
        match msg.answers() {
            Some(Answers::Stream) => assert!(msg.return_address_mut().is_some(), "{msg:?}"),
            Some(Answers::Count(n)) if n > 0 => assert!(
                msg.return_address_mut().is_some(),
                "{msg:?} is answered {n} times but has no return address"
            ),
            _ => {}
        }
    }
}

/// Issue #20: a room subscription crosses nodes; its answers are a stream
/// that ends with the last replay page or a refusal, never with a middle
/// page.
#[test]
fn a_room_subscription_is_answered_by_a_stream_of_pages() {
    for msg in every_kind() {
        let streams = msg.answers() == Some(Answers::Stream);
        assert_eq!(streams, matches!(msg, PeerMsg::RoomSubscribe(_)), "{msg:?}");
    }
    let page = |done, frames: u64, skip_to| {
        PeerMsg::from(RoomPage {
            room: surepush_proto::ROOM_BIT | 7,
            conn: conn(),
            sub: 1,
            head: Seq(10),
            first: Seq(1),
            gap: false,
            frames: (1..=frames)
                .map(|i| (Seq(i), Bytes::from_static(b"f")))
                .collect(),
            skip_to: Seq(skip_to),
            done,
        })
    };
    assert!(!page(false, 3, 0).ends_answers(), "a middle page");
    assert!(
        !page(false, 0, 4).ends_answers(),
        "an empty page that skips"
    );
    assert!(page(true, 3, 0).ends_answers(), "the last page");
    assert!(page(false, 0, 0).ends_answers(), "a failed read");
    let refused = RoomRefused {
        room: surepush_proto::ROOM_BIT | 7,
        conn: conn(),
        sub: 1,
    };
    assert!(PeerMsg::from(refused).ends_answers());
}

/// Every state key has its encoding (the webhook keys never cross shards,
/// but the encoding of a `StateKey` is total; issue #22 item 3).
#[test]
fn every_state_key_round_trips() {
    let keys = [
        StateKey::MqttSession {
            user: UserId(5),
            device: DeviceId(6),
        },
        StateKey::Retained {
            room: UserId(surepush_proto::ROOM_BIT | 3),
        },
        StateKey::WebhookEvent { id: u64::MAX },
        StateKey::WebhookCursor,
        StateKey::MqttWill {
            user: UserId(5),
            device: DeviceId(7),
        },
    ];
    for key in keys {
        let msg: PeerMsg = StateValue {
            conn: conn(),
            key,
            value: None,
        }
        .into();
        assert_eq!(PeerMsg::decode(&msg.to_bytes()), Ok(msg));
    }
}

/// Issue 22 item 2: a PresenceChanged whose transport name is not UTF-8 is
/// a typed error, not a panic.
#[test]
fn a_presence_transport_name_must_be_utf8() {
    let msg = every_kind()
        .into_iter()
        .find(|m| matches!(m, PeerMsg::PresenceChanged(_)))
        .expect("the sample has a PresenceChanged");
    let mut v = msg.to_bytes().to_vec();
    // The last device's name ("mqtt") ends the message.
    let n = v.len();
    v[n - 4..].copy_from_slice(&[0xFF, 0xFE, 0xFD, 0xFC]);
    assert_eq!(
        PeerMsg::decode(&Bytes::from(v)),
        Err(PeerWireError::Invalid("transport name"))
    );
}

/// Issue #20: a presence watch between nodes whose node id is not a
/// valid one (empty, or characters a NATS subject cannot hold) is refused
/// as invalid, not taken.
#[test]
fn a_presence_node_watch_names_a_valid_node() {
    let msg = every_kind()
        .into_iter()
        .find(|m| matches!(m, PeerMsg::PresenceNodeUnwatch(_)))
        .expect("the sample has a PresenceNodeUnwatch");
    let bytes = msg.to_bytes();
    // version, kind, user (8), then the node id's length and text "n_1".
    let at = 2 + 8 + 4;
    assert_eq!(&bytes[at..at + 3], b"n_1");
    for bad in [b"n.1", b"n 1", b"n*1"] {
        let mut forged = BytesMut::from(&bytes[..]);
        forged[at..at + 3].copy_from_slice(bad);
        assert_eq!(
            PeerMsg::decode(&forged.freeze()),
            Err(PeerWireError::Invalid("node id"))
        );
    }
}
