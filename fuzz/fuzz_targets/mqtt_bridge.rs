//! A hostile MQTT client and an arbitrary core, interleaved, into the
//! bridge: client packets decoded from the input, native frames built from
//! it. The bridge must never panic, every packet it emits must encode for
//! the connection's protocol level, and it must never acknowledge to the
//! core an inbox sequence it was not given.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use surepush::bridge::{Bridge, BridgeParams};
use surepush::core::Claims;
use surepush::mqtt::{self, Decoder, MqttString, Packet, ProtocolLevel};
use surepush::proto::{
    ConnAck, DeviceId, Frame, Push, Qos, RoomPush, SendAck, SendResult, Seq, SubAck, SubResult,
    SyncPage, UserId, ROOM_BIT,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let level = if mode & 1 == 0 {
        ProtocolLevel::V311
    } else {
        ProtocolLevel::V5
    };
    let connect = mqtt::Connect {
        protocol_level: level,
        clean_start: mode & 2 == 0,
        keep_alive: 30,
        client_id: MqttString::from("fuzz"),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    let params = BridgeParams {
        page: 4,
        inflight: 6,
        max_packet: 64 * 1024,
        receive_max: 8,
        room_window: 4,
        topics_open: true,
        // Small, so the byte window stops read-ahead too.
        inflight_bytes: 256,
    };
    let claims = Claims {
        user: UserId(7),
        device: DeviceId(1),
        expires_s: u64::MAX,
        acl: Default::default(),
    };
    let mut b = Bridge::new(connect, String::new(), claims, None, 1, params);
    let mut decoder = Decoder::new(Some(level), 64 * 1024);
    let mut buf = BytesMut::new();
    let mut given = Seq::ZERO;
    let mut sync_request = 0u32;
    let mut sends: Vec<u64> = Vec::new();
    // Each chunk: one control byte, then up to 15 bytes.
    for chunk in rest.chunks(16) {
        let (&op, body) = chunk.split_first().expect("chunks are non-empty");
        let n = u64::from(body.first().copied().unwrap_or(0));
        match op % 8 {
            0 | 1 | 2 => {
                buf.extend_from_slice(body);
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(p)) => b.on_packet(p),
                        Ok(None) => break,
                        Err(e) => {
                            b.on_decode_error(&e);
                            return;
                        }
                    }
                }
            }
            3 => b.on_frame(Frame::ConnAck(ConnAck {
                user: UserId(7),
                device: DeviceId(1),
                head: given,
                cursor: (n & 1 == 0).then_some(Seq(given.0 / 2)),
                max_frame: 1 << 20,
                push_window: 8,
                max_pending_sends: 8,
                keepalive_ms: 30_000,
                max_sync_limit: 100,
            })),
            4 => {
                given = Seq(given.0 + 1 + n % 3);
                b.on_frame(Frame::Push(push(given, n)));
            }
            5 => {
                let items = (0..n % 4)
                    .map(|_| {
                        given = Seq(given.0 + 1);
                        push(given, n)
                    })
                    .collect();
                b.on_frame(Frame::SyncPage(SyncPage {
                    request_id: sync_request,
                    head: given,
                    end: n & 4 != 0,
                    gap: n & 8 != 0,
                    items,
                }));
            }
            6 => {
                let result = match n % 4 {
                    0 => SendResult::Stored,
                    1 => SendResult::Duplicate,
                    2 => SendResult::StorageUnavailable,
                    _ => SendResult::Forbidden,
                };
                let id = sends
                    .get(n as usize % sends.len().max(1))
                    .copied()
                    .unwrap_or(n);
                b.on_frame(Frame::SendAck(SendAck {
                    client_msg_id: id,
                    seq: Seq(n),
                    own_seq: Seq::ZERO,
                    result,
                }));
                b.on_frame(Frame::Comp { client_msg_id: id });
            }
            _ => {
                let room = (n % 3) | ROOM_BIT;
                // Mostly Ok; now and then a refusal, asked or not.
                let result = match n % 8 {
                    5 => SubResult::Refused,
                    6 => SubResult::Forbidden,
                    7 => SubResult::Gap,
                    _ => SubResult::Ok,
                };
                b.on_frame(Frame::SubAck(SubAck {
                    room,
                    head: Seq(n),
                    first: Seq(n + 1),
                    result,
                }));
                b.on_frame(Frame::RoomPush(RoomPush {
                    room,
                    seq: Seq(n),
                    from: UserId(1),
                    ts_ms: 0,
                    qos: Qos::AtLeastOnce,
                    attrs: Bytes::new(),
                    payload: Bytes::from_static(b"r"),
                }));
            }
        }
        // State writes: durable, or (rarely) failed.
        while let Some(w) = b.poll_state() {
            if let Some(id) = w.report {
                b.on_state_stored(id, op & 0xF0 != 0xF0);
            }
        }
        while b.poll_state_query().is_some() {}
        while let Some(f) = b.poll_core() {
            match f {
                Frame::Ack(s) => assert!(
                    s <= given,
                    "ACK {s:?} beyond what the core gave ({given:?})"
                ),
                Frame::Sync(s) => {
                    sync_request = s.request_id;
                    if let surepush::proto::SyncDirection::After(a) = s.direction {
                        assert!(a <= given, "SYNC after {a:?} beyond {given:?}");
                    }
                }
                Frame::Send(s) => sends.push(s.client_msg_id),
                _ => {}
            }
        }
        while let Some(p) = b.poll_packet() {
            let mut out = BytesMut::new();
            if let Packet::Publish(_) = p {
                b.encode(&p, &mut out);
            } else {
                mqtt::encode(&p, level, &mut out).expect("the bridge emits valid packets");
            }
        }
    }
    let _ = b.finish(1);
});

fn push(seq: Seq, n: u64) -> Push {
    Push {
        seq,
        prev_seq: Seq(seq.0 - 1),
        from: UserId(n % 9),
        from_device: DeviceId(n % 2),
        to: UserId(if n & 8 == 0 { 7 } else { 3 | UserId::GROUP_BIT }),
        client_msg_id: n,
        ts_ms: 0,
        qos: if n & 16 == 0 {
            Qos::AtLeastOnce
        } else {
            Qos::ExactlyOnce
        },
        echo: n & 32 != 0,
        retransmit: false,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"p"),
    }
}
