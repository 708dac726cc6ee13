//! Two shards of one node, for tests whose messages cross shards: peer
//! messages are handed over at once, appends wait in a per-shard queue
//! until [`Pair::commit`], and reads are served from what a shard
//! committed. Frames to connections are kept apart per shard
//! ([`Pair::take`]); every other action lands in `out`.

use std::collections::VecDeque;

use super::*;
use surepush_proto::ROOM_BIT;

pub(super) struct Pair {
    pub(super) shards: Vec<Shard>,
    pub(super) unsynced: Vec<VecDeque<(AppendToken, Record)>>,
    pub(super) log: Vec<Vec<Record>>,
    pub(super) out: Vec<Action>,
    /// Frames sent to connections: (shard, connection, frame).
    sent: Vec<(usize, ConnId, Frame)>,
    pub(super) now: u64,
}

impl Pair {
    pub(super) fn new() -> Pair {
        Pair::with(CoreConfig::default())
    }

    pub(super) fn with(config: CoreConfig) -> Pair {
        let shards = (0..2)
            .map(|id| {
                let params = ShardParams {
                    id: crate::ShardId(id),
                    shards: 2,
                    wall_ms_at_zero: 1_700_000_000_000,
                };
                Shard::new(
                    params,
                    config.clone(),
                    TokenVerifier::new(SECRET),
                    RecoveredState::default(),
                )
            })
            .collect();
        Pair {
            shards,
            unsynced: vec![VecDeque::new(), VecDeque::new()],
            log: vec![Vec::new(), Vec::new()],
            out: Vec::new(),
            sent: Vec::new(),
            now: 0,
        }
    }

    /// Carries out actions (peer messages and reads at once) until none
    /// are left.
    pub(super) fn run(&mut self) {
        loop {
            let mut idle = true;
            for s in 0..2 {
                while let Some(a) = self.shards[s].poll_action() {
                    idle = false;
                    match a {
                        Action::Append { token, record } => {
                            self.unsynced[s].push_back((token, record))
                        }
                        Action::Peer { shard, msg } => {
                            self.shards[shard.index()].handle_peer(msg, self.now)
                        }
                        Action::Read { id, user, query } => {
                            let records = read_log(&self.log[s], user, &query);
                            self.shards[s].handle_read(id, Ok(records), self.now);
                        }
                        Action::Send { conn, frame } => self.sent.push((s, conn, frame)),
                        other => self.out.push(other),
                    }
                }
            }
            if idle {
                return;
            }
        }
    }

    /// Makes shard `s`'s appends durable (`ok`) or failed.
    pub(super) fn commit(&mut self, s: usize, ok: bool) {
        let mut last = None;
        while let Some((token, record)) = self.unsynced[s].pop_front() {
            if ok {
                self.log[s].push(record);
            }
            last = Some(token);
        }
        if let Some(token) = last {
            let result = if ok { Ok(()) } else { Err(()) };
            self.shards[s].handle_appended(token, result, self.now);
        }
        self.run();
    }

    /// `frame` from connection `conn` of shard `s`.
    pub(super) fn frame(&mut self, s: usize, conn: ConnId, frame: Frame) {
        self.shards[s].handle_frame(conn, frame, self.now);
        self.run();
    }

    /// A live session of `user`'s `device` on the user's shard: CONNECT,
    /// then an empty SYNC page. Returns the shard and the connection.
    pub(super) fn live(&mut self, user: UserId, device: u64) -> (usize, ConnId) {
        let s = usize::from(crate::Router::of_node(2).owner(user).0);
        let conn = self.shards[s].handle_open(self.now);
        self.frame(
            s,
            conn,
            Frame::Connect(surepush_proto::Connect {
                device: DeviceId(device),
                last_seq: Some(Seq::ZERO),
                keepalive_ms: 0,
                token: Harness::token(user.0, device, u64::MAX / 2),
            }),
        );
        self.frame(
            s,
            conn,
            Frame::Sync(surepush_proto::Sync {
                request_id: 1,
                direction: surepush_proto::SyncDirection::After(Seq::ZERO),
                limit: 100,
                read_ahead: false,
            }),
        );
        let frames = self.take(s, conn);
        assert!(
            matches!(frames.as_slice(), [Frame::ConnAck(_), Frame::SyncPage(p)] if p.items.is_empty()),
            "{frames:?}"
        );
        (s, conn)
    }

    /// Frames shard `s` sent to `conn` so far, in order (drained).
    pub(super) fn take(&mut self, s: usize, conn: ConnId) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.sent.retain(|(shard, c, frame)| {
            if *shard == s && *c == conn {
                frames.push(frame.clone());
                false
            } else {
                true
            }
        });
        frames
    }
}

/// A user whose inbox lives on shard `shard` of two.
pub(super) fn on_shard(shard: u16) -> UserId {
    on_shard_after(shard, 0)
}

/// The first user after `after` whose inbox lives on shard `shard` of two.
pub(super) fn on_shard_after(shard: u16, after: u64) -> UserId {
    (after + 1..)
        .map(UserId)
        .find(|u| crate::Router::of_node(2).owner(*u).0 == shard)
        .expect("a user there")
}

/// A room homed on shard `shard` of two.
pub(super) fn room_on(shard: u16) -> UserId {
    (1..)
        .map(|n| UserId(n | ROOM_BIT))
        .find(|r| crate::Router::of_node(2).owner(*r).0 == shard)
        .expect("a room there")
}
