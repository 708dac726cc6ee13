//! Codec tests: round trips, arbitrary split points, and the bad-input
//! catalogue for the decoder.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_qos() -> impl Strategy<Value = Qos> {
    prop_oneof![
        Just(Qos::AtMostOnce),
        Just(Qos::AtLeastOnce),
        Just(Qos::ExactlyOnce)
    ]
}

fn arb_push(allow_flags: bool) -> impl Strategy<Value = Push> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), arb_qos()),
        (any::<bool>(), any::<bool>(), arb_bytes(16), arb_bytes(64)),
    )
        .prop_map(
            move |((seq, prev, from, dev), (to, cmid, ts, qos), (echo, rt, attrs, payload))| Push {
                seq: Seq(seq),
                prev_seq: Seq(prev),
                from: UserId(from),
                from_device: DeviceId(dev),
                to: UserId(to),
                client_msg_id: cmid,
                ts_ms: ts,
                qos,
                echo: echo && allow_flags,
                retransmit: rt && allow_flags,
                attrs,
                payload,
            },
        )
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u32>(),
            "[a-zA-Z0-9._-]{1,40}"
        )
            .prop_map(|(d, s, k, t)| Frame::Connect(Connect {
                device: DeviceId(d),
                last_seq: s.map(Seq),
                keepalive_ms: k,
                token: t,
            })),
        (
            any::<[u64; 3]>(),
            proptest::option::of(any::<u64>()),
            any::<[u32; 5]>()
        )
            .prop_map(|(a, c, b)| {
                Frame::ConnAck(ConnAck {
                    user: UserId(a[0]),
                    device: DeviceId(a[1]),
                    head: Seq(a[2]),
                    cursor: c.map(Seq),
                    max_frame: b[0],
                    push_window: b[1],
                    max_pending_sends: b[2],
                    keepalive_ms: b[3],
                    max_sync_limit: b[4],
                })
            }),
        (
            any::<u64>(),
            any::<u64>(),
            arb_qos(),
            any::<bool>(),
            arb_bytes(16),
            arb_bytes(200)
        )
            .prop_map(|(c, t, q, confirm, a, p)| {
                Frame::Send(Send {
                    client_msg_id: c,
                    to: UserId(t),
                    qos: q,
                    confirm,
                    attrs: a,
                    payload: p,
                })
            }),
        (any::<[u64; 3]>(), 0u8..4).prop_map(|(a, r)| Frame::SendAck(SendAck {
            client_msg_id: a[0],
            seq: Seq(a[1]),
            own_seq: Seq(a[2]),
            result: [
                SendResult::Stored,
                SendResult::Duplicate,
                SendResult::StorageUnavailable,
                SendResult::Forbidden
            ][r as usize],
        })),
        arb_push(true).prop_map(Frame::Push),
        any::<u64>().prop_map(|s| Frame::Ack(Seq(s))),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            0u8..3,
            any::<bool>()
        )
            .prop_map(|(r, a, l, d, read_ahead)| Frame::Sync(Sync {
                request_id: r,
                direction: match d {
                    0 => SyncDirection::After(Seq(a)),
                    1 => SyncDirection::Latest,
                    _ => SyncDirection::Before(Seq(a)),
                },
                limit: l,
                read_ahead,
            })),
        (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(arb_push(false), 0..5)
        )
            .prop_map(|(r, h, e, items)| Frame::SyncPage(SyncPage {
                request_id: r,
                head: Seq(h),
                end: e,
                gap: h % 3 == 0,
                items,
            })),
        (any::<u64>(), any::<u64>()).prop_map(|(c, t)| Frame::Rel {
            client_msg_id: c,
            to: UserId(t)
        }),
        any::<u64>().prop_map(|c| Frame::Comp { client_msg_id: c }),
        (any::<[u64; 4]>(), arb_qos(), arb_bytes(16), arb_bytes(64)).prop_map(
            |(a, qos, attrs, payload)| Frame::RoomPush(RoomPush {
                room: a[0] | ROOM_BIT,
                seq: Seq(a[1]),
                from: UserId(a[2]),
                ts_ms: a[3],
                qos,
                attrs,
                payload,
            })
        ),
        any::<u64>().prop_map(Frame::Ping),
        any::<u64>().prop_map(Frame::Pong),
        (any::<u16>(), ".{0,30}").prop_map(|(c, m)| Frame::Error(ErrorFrame {
            code: c,
            message: m
        })),
        (any::<u16>(), ".{0,30}").prop_map(|(c, m)| Frame::Disconnect(Disconnect {
            reason: c,
            redirect: m
        })),
        arb_presence_frame(),
        arb_conversation_frame(),
    ]
}

fn arb_direction() -> impl Strategy<Value = SyncDirection> {
    (0u8..3, any::<u64>()).prop_map(|(d, a)| match d {
        0 => SyncDirection::After(Seq(a)),
        1 => SyncDirection::Latest,
        _ => SyncDirection::Before(Seq(a)),
    })
}

fn arb_summary() -> impl Strategy<Value = ConvSummary> {
    (
        (any::<u64>(), any::<u32>(), any::<bool>(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<u32>(), arb_bytes(80)),
    )
        .prop_map(
            |((peer, unread, at_least, total), (seq, from, dev, ts), (len, preview))| ConvSummary {
                peer: UserId(peer),
                unread,
                unread_at_least: at_least,
                total,
                last_seq: Seq(seq),
                last_from: UserId(from),
                last_from_device: DeviceId(dev),
                last_ts_ms: ts,
                last_len: len,
                preview,
            },
        )
}

/// The conversation frames (issue #22).
fn arb_conversation_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<u32>(), any::<bool>()).prop_map(|(r, b, l, u)| {
            Frame::ConvList(ConvList {
                request_id: r,
                before: Seq(b),
                limit: l,
                unread_only: u,
            })
        }),
        (
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()),
            any::<bool>(),
            proptest::collection::vec(arb_summary(), 0..5)
        )
            .prop_map(|((r, c, h, o), end, items)| Frame::ConvPage(ConvPage {
                request_id: r,
                cursor: Seq(c),
                head: Seq(h),
                older: o,
                end,
                items,
            })),
        (any::<u32>(), any::<u64>(), arb_direction(), any::<u32>()).prop_map(|(r, p, d, l)| {
            Frame::ConvFetch(ConvFetch {
                request_id: r,
                peer: UserId(p),
                direction: d,
                limit: l,
            })
        }),
        (
            (any::<u32>(), any::<u64>(), any::<u64>()),
            (any::<bool>(), any::<bool>()),
            proptest::collection::vec(arb_push(false), 0..5)
        )
            .prop_map(
                |((r, p, h), (end, truncated), items)| Frame::ConvMsgs(ConvMsgs {
                    request_id: r,
                    peer: UserId(p),
                    head: Seq(h),
                    end,
                    truncated,
                    items,
                })
            ),
    ]
}

/// WATCH, WATCHACK, UNWATCH and PRESENCE (section 6c).
fn arb_presence_frame() -> impl Strategy<Value = Frame> {
    let users = || proptest::collection::vec(any::<u64>().prop_map(UserId), 0..6);
    let device = (any::<u64>(), any::<u64>(), any::<u16>(), "[a-z]{0,12}").prop_map(
        |(d, since_ms, shard, transport)| OnlineDevice {
            device: DeviceId(d),
            since_ms,
            shard,
            transport,
        },
    );
    prop_oneof![
        (any::<u32>(), users()).prop_map(|(request, users)| Frame::Watch(Watch { request, users })),
        (any::<u32>(), any::<u16>(), any::<u32>(), any::<u64>()).prop_map(
            |(request, code, watching, refused)| Frame::WatchAck(WatchAck {
                request,
                code,
                watching,
                refused: UserId(refused),
            })
        ),
        users().prop_map(Frame::Unwatch),
        (any::<u64>(), proptest::collection::vec(device, 0..4)).prop_map(|(user, devices)| {
            Frame::Presence(Presence {
                user: UserId(user),
                devices,
            })
        }),
    ]
}

fn decode_all(decoder: &mut Decoder) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(f) = decoder.decode().expect("valid stream") {
        out.push(f);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_frame_round_trips(frame in arb_frame()) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        let mut d = Decoder::default();
        d.feed(&bytes);
        prop_assert_eq!(d.decode().unwrap(), Some(frame));
        prop_assert_eq!(d.buffered(), 0);
    }

    /// A stream of frames cut into pieces at arbitrary byte boundaries
    /// decodes to the same frames.
    #[test]
    fn split_and_merged_streams_decode_identically(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        cuts in proptest::collection::vec(0usize..4096, 0..16),
    ) {
        let mut stream = BytesMut::new();
        for f in &frames {
            f.encode(&mut stream);
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for w in cuts.windows(2) {
            d.feed(&stream[w[0]..w[1]]);
            got.extend(decode_all(&mut d));
        }
        prop_assert_eq!(got, frames);
    }

    /// Arbitrary bytes never panic the decoder: they decode or fail typed.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut d = Decoder::new(256);
        d.feed(&data);
        for _ in 0..64 {
            match d.decode() {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

fn header(kind: u8, flags: u8, len: u32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(MAGIC);
    b.put_u8(VERSION);
    b.put_u8(kind);
    b.put_u8(flags);
    b.put_u32_le(len);
    b
}

fn decode_err(bytes: &[u8], max: u32) -> ProtoError {
    let mut d = Decoder::new(max);
    d.feed(bytes);
    d.decode().expect_err("must be rejected")
}

#[test]
fn truncated_frame_waits_for_more_bytes_then_decodes() {
    let bytes = Frame::Ack(Seq(7)).to_bytes();
    let mut d = Decoder::default();
    for b in &bytes[..bytes.len() - 1] {
        d.feed(&[*b]);
        assert_eq!(d.decode().unwrap(), None);
    }
    assert_eq!(d.missing(), 1);
    d.feed(&bytes[bytes.len() - 1..]);
    assert_eq!(d.decode().unwrap(), Some(Frame::Ack(Seq(7))));
}

#[test]
fn oversized_length_is_refused_from_the_header_alone() {
    let e = decode_err(&header(FrameKind::Send as u8, 0, u32::MAX), 1024);
    assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    assert!(matches!(e, ProtoError::FrameTooLarge { max: 1024, .. }));
}

#[test]
fn unknown_frame_type_is_typed() {
    let e = decode_err(&header(0x7F, 0, 0), 1024);
    assert_eq!(e, ProtoError::UnknownFrameType(0x7F));
    assert_eq!(e.code(), ErrorCode::UnknownFrameType);
}

#[test]
fn wrong_version_and_magic_are_typed() {
    let mut b = header(FrameKind::Ping as u8, 0, 8);
    b[1] = VERSION + 1;
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::UnsupportedVersion);
    let mut b = header(FrameKind::Ping as u8, 0, 8);
    b[0] = b'G'; // an HTTP client talking to the wrong port
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::UnsupportedVersion);
}

#[test]
fn body_of_wrong_size_is_malformed() {
    let mut b = header(FrameKind::Ack as u8, 0, 4);
    b.put_u32_le(1);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
    let mut b = header(FrameKind::Send as u8, 0, 3);
    b.put_slice(&[1, 2, 3]);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
}

#[test]
fn bad_utf8_token_is_typed() {
    let mut b = header(FrameKind::Connect as u8, 0, 20 + 2);
    b.put_slice(&[0u8; 20]);
    b.put_slice(&[0xFF, 0xFE]);
    let e = decode_err(&b, 1024);
    assert_eq!(e.code(), ErrorCode::InvalidUtf8);
}

#[test]
fn invalid_qos_is_typed() {
    let mut b = header(FrameKind::Send as u8, 0, 17);
    b.put_u64_le(1);
    b.put_u64_le(2);
    b.put_u8(3);
    assert_eq!(decode_err(&b, 1024), ProtoError::InvalidQos(3));
}

#[test]
fn unknown_flag_bits_are_malformed() {
    let mut b = header(FrameKind::Ack as u8, 0x80, 8);
    b.put_u64_le(1);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
}

#[test]
fn sync_page_count_beyond_body_is_refused_without_allocating() {
    let mut b = header(FrameKind::SyncPage as u8, 0, 16);
    b.put_u32_le(1);
    b.put_u64_le(1);
    b.put_u32_le(u32::MAX);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
}

#[test]
fn decoder_stays_failed_after_an_error() {
    let mut d = Decoder::new(1024);
    d.feed(&header(0x7F, 0, 0));
    assert!(d.decode().is_err());
    d.feed(&Frame::Ping(1).to_bytes());
    assert!(
        d.decode().is_err(),
        "a desynchronised stream must not resume"
    );
}

#[test]
fn payload_is_a_slice_of_the_receive_buffer_not_a_copy() {
    let payload = Bytes::from(vec![42u8; 1000]);
    let frame = Frame::Send(Send {
        client_msg_id: 1,
        to: UserId(2),
        qos: Qos::AtLeastOnce,
        confirm: false,
        attrs: Bytes::new(),
        payload,
    });
    let mut d = Decoder::default();
    d.feed(&frame.to_bytes());
    let base = d.buffer_mut().as_ptr() as usize;
    let Some(Frame::Send(s)) = d.decode().unwrap() else {
        panic!("expected SEND")
    };
    let p = s.payload.as_ptr() as usize;
    assert!(
        p >= base && p < base + 2000,
        "payload points into the decode buffer"
    );
}

#[test]
fn error_codes_are_unique_and_parse_back() {
    let mut seen = std::collections::HashSet::new();
    for c in ErrorCode::ALL {
        assert!(seen.insert(c as u16), "duplicate code {c:?}");
        assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
    }
    assert_eq!(ErrorCode::from_u16(0), None);
}

/// docs/PROTOCOL.md is the contract: its error table must list every code
/// with the same number and name.
#[test]
fn protocol_document_lists_every_error_code() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    for code in ErrorCode::ALL {
        let row = format!("| {:<4} | {:<18} |", code as u16, format!("{code:?}"));
        assert!(
            doc.contains(&row),
            "PROTOCOL.md lacks the row for {code:?}: {row}"
        );
    }
}

/// Issue 16 item 8: the frame-type table of docs/PROTOCOL.md section 2
/// stopped at 0x0E while 0x0F–0x14 lived in section 6b. The table must list
/// every type byte the decoder knows, with its name, in order, and nothing
/// else.
#[test]
fn the_protocol_doc_lists_every_frame_type() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let start = doc.find("## 2. Frame header").expect("section 2");
    let end = doc.find("## 3. Frame bodies").expect("section 3");
    let documented: Vec<(u8, &str)> = doc[start..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let hex = cells.get(1)?.strip_prefix("`0x")?.strip_suffix('`')?;
            Some((u8::from_str_radix(hex, 16).ok()?, *cells.get(2)?))
        })
        .collect();
    let known: Vec<(u8, &str)> = (0..=u8::MAX)
        .filter_map(|b| FrameKind::from_u8(b).map(|k| (b, k.name())))
        .collect();
    assert_eq!(documented, known);
}

/// Issue 16 item 6: SUBACK result 3 is `Forbidden` (2 stays `Refused`, a
/// malformed request), and SEND flag bit 0 asks a QoS 0 SEND for a SENDACK.
#[test]
fn suback_forbidden_and_send_confirm_have_their_wire_values() {
    for (result, byte) in [
        (SubResult::Ok, 0u8),
        (SubResult::Gap, 1),
        (SubResult::Refused, 2),
        (SubResult::Forbidden, 3),
    ] {
        let frame = Frame::SubAck(SubAck {
            room: ROOM_BIT | 5,
            head: Seq(9),
            first: Seq(10),
            result,
        });
        let bytes = frame.to_bytes();
        assert_eq!(bytes[bytes.len() - 1], byte, "{result:?}");
        let mut d = Decoder::default();
        d.feed(&bytes);
        assert_eq!(d.decode().expect("valid"), Some(frame));
    }
    let send = |confirm| {
        Frame::Send(Send {
            client_msg_id: 1,
            to: UserId(ROOM_BIT | 5),
            qos: Qos::AtMostOnce,
            confirm,
            attrs: Bytes::new(),
            payload: Bytes::from_static(b"x"),
        })
    };
    for confirm in [false, true] {
        let bytes = send(confirm).to_bytes();
        assert_eq!(
            bytes[3],
            if confirm { SEND_CONFIRM } else { 0 },
            "flags byte"
        );
        let mut d = Decoder::default();
        d.feed(&bytes);
        assert_eq!(d.decode().expect("valid"), Some(send(confirm)));
    }
}

proptest! {
    /// A frame encoded once and decoded from the shared bytes is the frame,
    /// and a ROOMPUSH's payload is a slice of those bytes, not a copy
    /// (issue #18 item 2: room pushes to MQTT subscribers).
    #[test]
    fn decode_shared_is_decode_without_a_copy(frame in arb_frame()) {
        let bytes = frame.to_bytes();
        let decoded = decode_shared(&bytes).expect("a whole frame");
        if let Frame::RoomPush(p) = &decoded {
            if !p.payload.is_empty() {
                let inside = bytes.as_ptr_range();
                prop_assert!(inside.contains(&p.payload.as_ptr()));
            }
        }
        prop_assert_eq!(decoded, frame);
    }
}

#[test]
fn decode_shared_refuses_anything_but_one_whole_frame() {
    let bytes = Frame::Ping(7).to_bytes();
    let mut two = BytesMut::from(&bytes[..]);
    two.extend_from_slice(&bytes);
    assert!(decode_shared(&two.freeze()).is_err());
    assert!(decode_shared(&bytes.slice(..bytes.len() - 1)).is_err());
    assert!(decode_shared(&Bytes::from_static(b"xx")).is_err());
}

/// Issue 22 item 2: the presence frames' counts are checked against the
/// body (a forged count is `Malformed` and allocates nothing), and a
/// transport name must be UTF-8.
#[test]
fn presence_frames_with_forged_counts_or_bad_names_are_typed() {
    // WATCH claiming 3 users with 1 in the body.
    let mut b = header(FrameKind::Watch as u8, 0, 4 + 2 + 8);
    b.put_u32_le(1);
    b.put_u16_le(3);
    b.put_u64_le(42);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
    // UNWATCH with a partial user id.
    let mut b = header(FrameKind::Unwatch as u8, 0, 2 + 4);
    b.put_u16_le(1);
    b.put_u32_le(7);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
    // PRESENCE claiming 65535 devices in an empty list.
    let mut b = header(FrameKind::Presence as u8, 0, 8 + 2);
    b.put_u64_le(5);
    b.put_u16_le(u16::MAX);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
    // PRESENCE whose transport name runs past the body.
    let mut b = header(FrameKind::Presence as u8, 0, 8 + 2 + 19);
    b.put_u64_le(5);
    b.put_u16_le(1);
    b.put_slice(&[0u8; 18]);
    b.put_u8(4);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
    // ... and one that is not UTF-8.
    let mut b = header(FrameKind::Presence as u8, 0, 8 + 2 + 19 + 2);
    b.put_u64_le(5);
    b.put_u16_le(1);
    b.put_slice(&[0u8; 18]);
    b.put_u8(2);
    b.put_slice(&[0xFF, 0xFE]);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::InvalidUtf8);
}

/// The presence frames' wire values (docs/PROTOCOL.md section 6c).
#[test]
fn presence_frames_have_their_wire_values() {
    let ack = Frame::WatchAck(WatchAck {
        request: 9,
        code: ErrorCode::TooManyWatches as u16,
        watching: 3,
        refused: UserId(0),
    });
    let bytes = ack.to_bytes();
    assert_eq!(bytes[2], 0x1A);
    assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), 29);
    let presence = Frame::Presence(Presence {
        user: UserId(7),
        devices: vec![OnlineDevice {
            device: DeviceId(2),
            since_ms: 1,
            shard: 1,
            transport: "native".into(),
        }],
    });
    let bytes = presence.to_bytes();
    assert_eq!(bytes[2], 0x1C);
    assert_eq!(bytes.len(), HEADER_LEN + 8 + 2 + 8 + 8 + 2 + 1 + 6);
    assert_eq!(&bytes[bytes.len() - 6..], b"native");
}

/// The conversation frames' sizes as docs/PROTOCOL.md section 7a gives them.
#[test]
fn conversation_frame_sizes_match_the_protocol_document() {
    assert_eq!(CONVPAGE_FIXED_LEN, 32);
    assert_eq!(SUMMARY_FIXED_LEN, 59);
    assert_eq!(CONVMSGS_FIXED_LEN, 24);
    assert_eq!(MSG_ITEM_FIXED_LEN, 61);
    let list = Frame::ConvList(ConvList {
        request_id: 1,
        before: Seq(2),
        limit: 3,
        unread_only: false,
    });
    assert_eq!(list.encoded_len(), HEADER_LEN + 16);
    let fetch = Frame::ConvFetch(ConvFetch {
        request_id: 1,
        peer: UserId(2),
        direction: SyncDirection::Latest,
        limit: 3,
    });
    assert_eq!(fetch.encoded_len(), HEADER_LEN + 25);
}

/// Issue #22: a CONVPAGE or CONVMSGS whose count is larger than its body
/// can hold is refused before anything is allocated for it.
#[test]
fn conversation_page_counts_beyond_body_are_refused_without_allocating() {
    let mut b = header(FrameKind::ConvPage as u8, 0, CONVPAGE_FIXED_LEN as u32);
    b.put_u32_le(1);
    b.put_u64_le(1);
    b.put_u64_le(1);
    b.put_u64_le(0);
    b.put_u32_le(u32::MAX);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
    let mut b = header(FrameKind::ConvMsgs as u8, 0, CONVMSGS_FIXED_LEN as u32);
    b.put_u32_le(1);
    b.put_u64_le(7);
    b.put_u64_le(1);
    b.put_u32_le(u32::MAX);
    assert_eq!(decode_err(&b, 1024).code(), ErrorCode::Malformed);
}

/// Issue #22: every proper prefix of a conversation frame's body is a
/// typed error (never a panic, never a frame), and so is a preview length
/// past the body's end.
#[test]
fn truncated_conversation_frames_are_malformed() {
    let page = Frame::ConvPage(ConvPage {
        request_id: 9,
        cursor: Seq(3),
        head: Seq(10),
        older: 2,
        end: true,
        items: vec![ConvSummary {
            peer: UserId(5),
            unread: 4,
            unread_at_least: false,
            total: 6,
            last_seq: Seq(10),
            last_from: UserId(5),
            last_from_device: DeviceId(1),
            last_ts_ms: 1_700_000_000_000,
            last_len: 300,
            preview: Bytes::from_static(b"hello there"),
        }],
    });
    let fetch = Frame::ConvFetch(ConvFetch {
        request_id: 1,
        peer: UserId(5),
        direction: SyncDirection::Before(Seq(9)),
        limit: 20,
    });
    let list = Frame::ConvList(ConvList {
        request_id: 1,
        before: Seq::ZERO,
        limit: 50,
        unread_only: true,
    });
    let msgs = Frame::ConvMsgs(ConvMsgs {
        request_id: 2,
        peer: UserId(5),
        head: Seq(10),
        end: false,
        truncated: true,
        items: vec![Push {
            seq: Seq(10),
            prev_seq: Seq(9),
            from: UserId(5),
            from_device: DeviceId(1),
            to: UserId(1),
            client_msg_id: 77,
            ts_ms: 1,
            qos: Qos::AtLeastOnce,
            echo: false,
            retransmit: false,
            attrs: Bytes::new(),
            payload: Bytes::from_static(b"hello there, how are you"),
        }],
    });
    for frame in [page, fetch, list, msgs] {
        let whole = frame.to_bytes();
        let body = &whole[HEADER_LEN..];
        for cut in 0..body.len() {
            let mut b = header(whole[2], whole[3], cut as u32);
            b.put_slice(&body[..cut]);
            assert_eq!(
                decode_err(&b, 4096).code(),
                ErrorCode::Malformed,
                "{} cut at {cut}",
                frame.kind().name()
            );
        }
    }
    // A preview length beyond the body.
    let whole = Frame::ConvPage(ConvPage {
        request_id: 1,
        cursor: Seq(0),
        head: Seq(1),
        older: 0,
        end: false,
        items: vec![ConvSummary {
            peer: UserId(2),
            unread: 1,
            unread_at_least: false,
            total: 1,
            last_seq: Seq(1),
            last_from: UserId(2),
            last_from_device: DeviceId(1),
            last_ts_ms: 1,
            last_len: 1,
            preview: Bytes::from_static(b"x"),
        }],
    })
    .to_bytes();
    let mut forged = BytesMut::from(&whole[..]);
    let at = HEADER_LEN + CONVPAGE_FIXED_LEN + SUMMARY_FIXED_LEN - 2;
    forged[at] = 0xFF;
    assert_eq!(decode_err(&forged, 4096).code(), ErrorCode::Malformed);
}
