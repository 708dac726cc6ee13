//! A room push lost between the home shard and a subscriber's shard (in a
//! cluster: between nodes, over NATS) is repaired from the home shard: the
//! subscriber's shard sees the hole in its ring, replays the subscription
//! from its next sequence, and the subscriber gets every message once, in
//! order, with no new SUBACK (issue #20).

use super::*;
use crate::router::Router;
use crate::PeerMsg;
use surepush_proto::{Subscribe, SubscribeFrom, ROOM_BIT};

/// Two shards whose appends are durable at once; `lose` drops matching
/// peer messages.
struct Two {
    shards: Vec<Shard>,
    log: Vec<Vec<Record>>,
    out: Vec<(usize, Action)>,
}

impl Two {
    fn new() -> Two {
        let shards = (0..2)
            .map(|id| {
                let params = ShardParams {
                    id: crate::ShardId(id),
                    shards: 2,
                    wall_ms_at_zero: 1_700_000_000_000,
                };
                let verifier = TokenVerifier::new(SECRET);
                Shard::new(
                    params,
                    CoreConfig::default(),
                    verifier,
                    RecoveredState::default(),
                )
            })
            .collect();
        Two {
            shards,
            log: vec![Vec::new(), Vec::new()],
            out: Vec::new(),
        }
    }

    fn run(&mut self, lose: &impl Fn(usize, &PeerMsg) -> bool) {
        loop {
            let mut idle = true;
            for s in 0..2 {
                while let Some(a) = self.shards[s].poll_action() {
                    idle = false;
                    match a {
                        Action::Append { token, record } => {
                            self.log[s].push(record);
                            self.shards[s].handle_appended(token, Ok(()), 0);
                        }
                        Action::Read { id, user, query } => {
                            assert!(
                                matches!(query, InboxQuery::After { .. }),
                                "rooms read pages: {query:?}"
                            );
                            let page = read_log(&self.log[s], user, &query);
                            self.shards[s].handle_read(id, Ok(page), 0);
                        }
                        Action::Peer { shard, msg } if !lose(shard.index(), &msg) => {
                            self.shards[shard.index()].handle_peer(msg, 0)
                        }
                        other => self.out.push((s, other)),
                    }
                }
            }
            if idle {
                return;
            }
        }
    }

    fn connect(&mut self, s: usize, user: u64) -> ConnId {
        let c = self.shards[s].handle_open(0);
        let connect = Frame::Connect(Connect {
            device: DeviceId(1),
            last_seq: Some(Seq::ZERO),
            keepalive_ms: 0,
            token: Harness::token(user, 1, u64::MAX / 2),
        });
        self.shards[s].handle_frame(c, connect, 0);
        self.run(&|_, _| false);
        c
    }

    /// Frames `conn` of shard `s` got (room pushes decoded).
    fn frames(&mut self, s: usize, conn: ConnId) -> Vec<Frame> {
        let mut got = Vec::new();
        self.out.retain(|(at, a)| match a {
            Action::Send { conn: c, frame } if *at == s && *c == conn => {
                got.push(frame.clone());
                false
            }
            Action::SendShared { conn: c, bytes, .. } if *at == s && *c == conn => {
                got.push(surepush_proto::decode_shared(bytes).expect("a frame"));
                false
            }
            _ => true,
        });
        got
    }
}

/// The first of `ids` that shard `shard` of two owns.
fn owned_by(shard: u16, mut ids: impl Iterator<Item = u64>) -> u64 {
    let router = Router::of_node(2);
    ids.find(|id| router.owner(UserId(*id)).0 == shard)
        .expect("ids spread over both shards")
}

#[test]
fn a_room_push_lost_on_the_way_is_replayed_from_the_home_shard() {
    let room = owned_by(0, (1..).map(|n| ROOM_BIT | n));
    let (reader, writer) = (owned_by(1, 100..), owned_by(0, 200..));
    let mut two = Two::new();
    let r = two.connect(1, reader);
    let w = two.connect(0, writer);
    two.frames(1, r);
    two.frames(0, w);
    let subscribe = Subscribe {
        room,
        from: SubscribeFrom::Now,
        qos: Qos::AtLeastOnce,
    };
    two.shards[1].handle_frame(r, Frame::Subscribe(subscribe), 0);
    two.run(&|_, _| false);
    assert!(
        matches!(two.frames(1, r).as_slice(), [Frame::SubAck(a)] if a.first == Seq(1)),
        "subscribed from 1"
    );

    // Message 2's push to the reader's shard is lost.
    let lose_2 =
        |to: usize, m: &PeerMsg| to == 1 && matches!(m, PeerMsg::RoomFanout(f) if f.seq == Seq(2));
    for cmid in 1..=3 {
        two.shards[0].handle_frame(w, send(cmid, room, Qos::AtLeastOnce), 0);
        two.run(&lose_2);
    }
    let seqs: Vec<u64> = two
        .frames(1, r)
        .iter()
        .map(|f| match f {
            Frame::RoomPush(p) => p.seq.0,
            other => panic!("only room pushes, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3], "every message once, in order");
    assert_eq!(two.shards[1].stats().room_resyncs, 1);
}
