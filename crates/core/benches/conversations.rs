//! Conversation summaries (issue #22): CONVLIST requests per second for a
//! user with 1,000 conversations, served by the shard state machine
//! (request in, CONVPAGE encoded), beside a PING answered by the same
//! shard in the same run (the cheapest request: the ratio is what a
//! summary page costs over the fixed cost of a frame); and the memory a
//! tracked conversation takes.
//!
//! Run: `cargo bench -p surepush-core --bench conversations` (results:
//! BENCHMARKS.md). The memory figure is printed before the timings.

use std::hint::black_box;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use surepush_core::auth::{Acl, Claims, TokenVerifier};
use surepush_core::{
    Action, ConnId, CoreConfig, MessageRecord, Record, RecoveredState, Shard, ShardId, ShardParams,
};
use surepush_proto::{Connect, ConvList, DeviceId, Frame, Qos, Seq, UserId};

#[path = "support/counting.rs"]
mod counting;
use counting::LIVE;

const USER: UserId = UserId(1);
const CONVERSATIONS: u64 = 1_000;
const MESSAGES_EACH: u64 = 5;
const SECRET: &[u8] = b"bench";

/// The user's inbox: `MESSAGES_EACH` rounds, each a message from every
/// peer in turn (so conversations interleave), 100-byte payloads.
fn inbox() -> impl Iterator<Item = Record> {
    (0..MESSAGES_EACH).flat_map(|round| {
        (0..CONVERSATIONS).map(move |i| {
            let seq = round * CONVERSATIONS + i + 1;
            Record::Message(MessageRecord {
                inbox: USER,
                seq: Seq(seq),
                from: UserId(1_000 + i),
                from_device: DeviceId(1),
                to: USER,
                client_msg_id: seq,
                qos: Qos::AtLeastOnce,
                ts_ms: 1_700_000_000_000 + seq,
                attrs: Bytes::new(),
                payload: Bytes::from(vec![b'x'; 100]),
            })
        })
    })
}

fn recovered() -> RecoveredState {
    let config = CoreConfig::default();
    let mut state = RecoveredState::default();
    for r in inbox() {
        state.apply(&r, &config.dedup);
    }
    state
}

/// A shard holding the inbox and one device connected with its cursor 10
/// messages below the head (10 conversations with one unread each).
fn shard() -> (Shard, ConnId) {
    let verifier = TokenVerifier::new(SECRET);
    let token = verifier.mint(&Claims {
        user: USER,
        device: DeviceId(1),
        expires_s: u64::MAX / 4,
        acl: Acl::default(),
    });
    let params = ShardParams {
        id: ShardId(0),
        shards: 1,
        wall_ms_at_zero: 1_700_000_000_000,
    };
    let mut shard = Shard::new(params, CoreConfig::default(), verifier, recovered());
    let conn = shard.handle_open(0);
    let head = CONVERSATIONS * MESSAGES_EACH;
    shard.handle_frame(
        conn,
        Frame::Connect(Connect {
            device: DeviceId(1),
            last_seq: Some(Seq(head - 10)),
            keepalive_ms: 0,
            token,
        }),
        0,
    );
    drain(&mut shard, &mut BytesMut::new());
    (shard, conn)
}

/// Carries out the actions: frames are encoded (as the transport does).
fn drain(shard: &mut Shard, out: &mut BytesMut) -> usize {
    let mut frames = 0;
    while let Some(a) = shard.poll_action() {
        if let Action::Send { frame, .. } = a {
            frame.encode(out);
            frames += 1;
        }
    }
    out.clear();
    frames
}

fn memory_per_conversation() {
    let before = LIVE.load(Ordering::Relaxed);
    let state = recovered();
    let after = LIVE.load(Ordering::Relaxed);
    let tracked = state.conversations.tracked();
    let bytes = (after - before) as f64;
    // The state also holds heads and the dedup window: measure them alone.
    let mut bare = RecoveredState {
        conversations: surepush_core::Conversations::new(surepush_core::ConversationConfig {
            max_per_user: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let before_bare = LIVE.load(Ordering::Relaxed);
    let config = CoreConfig::default();
    for r in inbox() {
        bare.apply(&r, &config.dedup);
    }
    let bare_bytes = (LIVE.load(Ordering::Relaxed) - before_bare) as f64;
    println!(
        "conversation summaries: {tracked} conversations of {MESSAGES_EACH} messages each \
         (index of up to 256 seqs, 64-byte previews): {:.0} bytes per conversation \
         (state with summaries {:.0} KiB, without {:.0} KiB)",
        (bytes - bare_bytes) / tracked as f64,
        bytes / 1024.0,
        bare_bytes / 1024.0
    );
    black_box((state, bare));
}

fn bench(c: &mut Criterion) {
    memory_per_conversation();
    let (mut shard, conn) = shard();
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut group = c.benchmark_group("conversations_1000");
    group.throughput(Throughput::Elements(1));
    let mut request_id = 0u32;
    group.bench_function("ping (baseline)", |b| {
        b.iter(|| {
            shard.handle_frame(conn, Frame::Ping(7), 0);
            assert_eq!(drain(&mut shard, &mut out), 1);
        })
    });
    let cases = [
        ("convlist first page of 50", 50, false),
        ("convlist unread only (10 of 1000)", 50, true),
        ("convlist all 1000 in one page", 1_000, false),
    ];
    for (name, limit, unread_only) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                request_id = request_id.wrapping_add(1);
                let list = ConvList {
                    request_id,
                    before: Seq::ZERO,
                    limit,
                    unread_only,
                };
                shard.handle_frame(conn, Frame::ConvList(list), 0);
                assert_eq!(drain(&mut shard, &mut out), 1);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
