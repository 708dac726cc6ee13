//! Presence (issue #22 item 2): the cost of fanning out one presence
//! change to N watching connections, in the shard state machines.
//!
//! Two shards of one node (shard 0 owns the watched user) are driven by a
//! loop that carries their actions out in memory: frames are encoded (as
//! the transport does), peer messages are handed to the other shard at
//! once (the glommio mesh channel itself is not in the figure), appends
//! and reads complete at once. One iteration is one change of the
//! watched user: a device session opens (CONNECT, token verified) or
//! closes, the coalescing window ends (`handle_timeout`), and every
//! watcher gets its PRESENCE frame (asserted). The baseline is the same
//! change with nobody watching, in the same run: the difference, divided
//! by N, is what each watcher costs.
//!
//! Run: `cargo bench -p surepush-core --bench presence` (results:
//! BENCHMARKS.md).

use std::collections::VecDeque;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use surepush_core::auth::{Acl, Claims, TokenVerifier};
use surepush_core::{
    Action, ConnId, CoreConfig, PeerMsg, RecoveredState, Router, Shard, ShardId, ShardParams,
};
use surepush_proto::{Connect, DeviceId, Frame, Seq, UserId, Watch};

const SHARDS: u16 = 2;
const SECRET: &[u8] = b"bench";
/// The coalescing window (the default is 500 ms; any value costs the
/// same). Short, because each iteration moves the virtual clock past it.
const DEBOUNCE_MS: u64 = 1;
/// The longest keepalive (MQTT's 65,535 s): the watchers stay silent, and
/// the clock moves 2 ms per iteration, so they must not be closed as idle
/// (at 1.5 x 30 s, the default, they were after 22,500 iterations).
const KEEPALIVE_MS: u32 = 65_535_000;
const NS_PER_MS: u64 = 1_000_000;

/// The first `n` user ids from `from` up owned by `shard`.
fn users_on(shard: u16, from: u64, n: usize) -> Vec<UserId> {
    let router = Router::of_node(SHARDS);
    (from..)
        .map(UserId)
        .filter(|u| router.owner(*u).0 == shard)
        .take(n)
        .collect()
}

/// Two shards and the driver that carries out their actions.
struct Node {
    shards: Vec<Shard>,
    verifier: TokenVerifier,
    now: u64,
    out: BytesMut,
    /// PRESENCE frames written since the last [`Node::take_presences`].
    presences: usize,
}

impl Node {
    fn new() -> Node {
        let verifier = TokenVerifier::new(SECRET);
        let config = CoreConfig {
            presence_debounce_ms: DEBOUNCE_MS,
            keepalive_ms: u64::from(KEEPALIVE_MS),
            ..CoreConfig::default()
        };
        let shards = (0..SHARDS)
            .map(|id| {
                let params = ShardParams {
                    id: ShardId(id),
                    shards: SHARDS,
                    wall_ms_at_zero: 1_700_000_000_000,
                };
                let state = RecoveredState::default();
                Shard::new(params, config.clone(), verifier.clone(), state)
            })
            .collect();
        Node {
            shards,
            verifier,
            now: 0,
            out: BytesMut::with_capacity(1 << 20),
            presences: 0,
        }
    }

    /// A session of `user` (owned by `shard`) with a token granting `acl`.
    fn connect(&mut self, shard: usize, user: UserId, device: u64, acl: Acl) -> ConnId {
        let token = self.verifier.mint(&Claims {
            user,
            device: DeviceId(device),
            expires_s: u64::MAX / 4,
            acl,
        });
        let now = self.now;
        let conn = self.shards[shard].handle_open(now);
        let connect = Frame::Connect(Connect {
            device: DeviceId(device),
            last_seq: Some(Seq::ZERO),
            keepalive_ms: KEEPALIVE_MS,
            token,
        });
        self.shards[shard].handle_frame(conn, connect, now);
        self.drive();
        conn
    }

    /// Carries out every action of every shard until none is left.
    fn drive(&mut self) {
        let mut peers: VecDeque<(usize, PeerMsg)> = VecDeque::new();
        loop {
            for i in 0..self.shards.len() {
                while let Some(action) = self.shards[i].poll_action() {
                    self.carry_out(i, action, &mut peers);
                }
            }
            let Some((to, msg)) = peers.pop_front() else {
                return;
            };
            self.shards[to].handle_peer(msg, self.now);
        }
    }

    fn carry_out(&mut self, shard: usize, action: Action, peers: &mut VecDeque<(usize, PeerMsg)>) {
        let now = self.now;
        match action {
            Action::Send { frame, .. } => {
                self.presences += usize::from(matches!(frame, Frame::Presence(_)));
                frame.encode(&mut self.out);
                self.out.clear();
            }
            Action::Peer { shard: to, msg } => peers.push_back((to.index(), msg)),
            Action::Append { token, .. } => self.shards[shard].handle_appended(token, Ok(()), now),
            Action::Read { id, .. } => self.shards[shard].handle_read(id, Ok(Vec::new()), now),
            _ => {}
        }
    }

    /// Ends the coalescing window: changes go out.
    fn flush(&mut self) {
        self.now += (DEBOUNCE_MS + 1) * NS_PER_MS;
        let now = self.now;
        for shard in &mut self.shards {
            shard.handle_timeout(now);
        }
        self.drive();
    }

    fn take_presences(&mut self) -> usize {
        std::mem::take(&mut self.presences)
    }
}

/// A node where `watchers` connections on `shard` watch a user of shard 0
/// (each the session of its own user); the watched user, offline.
fn watched_by(watchers: usize, shard: u16) -> (Node, UserId) {
    let mut node = Node::new();
    let watched = users_on(0, 1, 1)[0];
    let grant = Acl::new(&[format!("presence/{}", watched.0)], &[]).expect("a valid filter");
    for (i, user) in users_on(shard, 1_000, watchers).into_iter().enumerate() {
        let conn = node.connect(shard as usize, user, 1, grant.clone());
        let watch = Watch {
            request: i as u32,
            users: vec![watched],
        };
        let now = node.now;
        node.shards[shard as usize].handle_frame(conn, Frame::Watch(watch), now);
        node.drive();
    }
    node.flush();
    assert_eq!(
        node.take_presences(),
        watchers,
        "each watcher got the state"
    );
    (node, watched)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("presence_change");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("nobody watching (baseline)", 0, 0),
        ("same shard", 1, 0),
        ("same shard", 100, 0),
        ("same shard", 1_000, 0),
        ("other shard", 1, 1),
        ("other shard", 100, 1),
        ("other shard", 1_000, 1),
    ];
    for (name, watchers, shard) in cases {
        let (mut node, watched) = watched_by(watchers, shard);
        let mut online: Option<ConnId> = None;
        group.bench_function(BenchmarkId::new(name, watchers), |b| {
            b.iter(|| {
                // One change: the watched user's device comes or goes.
                match online.take() {
                    None => online = Some(node.connect(0, watched, 7, Acl::default())),
                    Some(conn) => {
                        let now = node.now;
                        node.shards[0].handle_closed(conn, now);
                        node.drive();
                    }
                }
                node.flush();
                assert_eq!(node.take_presences(), watchers);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
