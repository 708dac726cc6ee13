//! Single-shard tests of the core's edges: each bad input gets its typed
//! error and a close; limits; retransmission and dead connections. The
//! delivery guarantees under faults are the simulator's job (tests/sim).

use bytes::Bytes;

use super::*;
use crate::{InboxQuery, Record, RecoveredState};
use surepush_proto::{
    Connect, DeviceId, ErrorCode, Frame, Qos, Send, Seq, Sync, SyncDirection, UserId,
};

const MS: u64 = 1_000_000;
const SECRET: &[u8] = b"core tests";

/// One shard whose log syncs every append at once.
struct Harness {
    shard: Shard,
    log: Vec<Record>,
    now: u64,
    out: Vec<Action>,
}

impl Harness {
    fn new(config: CoreConfig) -> Harness {
        let params = ShardParams {
            id: crate::ShardId(0),
            shards: 1,
            wall_ms_at_zero: 1_700_000_000_000,
        };
        Harness {
            shard: Shard::new(
                params,
                config,
                TokenVerifier::new(SECRET),
                RecoveredState::default(),
            ),
            log: Vec::new(),
            now: 0,
            out: Vec::new(),
        }
    }

    fn token(user: u64, device: u64, expires_s: u64) -> String {
        Self::token_granting(user, device, expires_s, Acl::default())
    }

    fn token_granting(user: u64, device: u64, expires_s: u64, acl: Acl) -> String {
        TokenVerifier::new(SECRET).mint(&Claims {
            user: UserId(user),
            device: DeviceId(device),
            expires_s,
            acl,
        })
    }

    /// Carries out actions until none are left; frames are collected.
    fn run(&mut self) {
        while let Some(a) = self.shard.poll_action() {
            match a {
                Action::Append { token, record } => {
                    self.log.push(record);
                    self.shard.handle_appended(token, Ok(()), self.now);
                }
                Action::Read { id, user, query } => {
                    let records = read_log(&self.log, user, &query);
                    self.shard.handle_read(id, Ok(records), self.now);
                }
                other => self.out.push(other),
            }
        }
    }

    fn open(&mut self) -> ConnId {
        let c = self.shard.handle_open(self.now);
        self.run();
        c
    }

    fn frame(&mut self, conn: ConnId, frame: Frame) {
        self.shard.handle_frame(conn, frame, self.now);
        self.run();
    }

    fn connect(&mut self, user: u64, device: u64) -> ConnId {
        self.connect_granted(user, device, Acl::default())
    }

    /// A session whose token carries `acl`.
    fn connect_granted(&mut self, user: u64, device: u64, acl: Acl) -> ConnId {
        let c = self.open();
        let token = Self::token_granting(user, device, u64::MAX / 2, acl);
        self.frame(
            c,
            Frame::Connect(Connect {
                device: DeviceId(device),
                last_seq: Some(Seq::ZERO),
                keepalive_ms: 0,
                token,
            }),
        );
        assert!(matches!(self.take(c).first(), Some(Frame::ConnAck(_))));
        c
    }

    fn go_live(&mut self, conn: ConnId, after: u64) {
        self.frame(
            conn,
            Frame::Sync(Sync {
                request_id: after as u32 + 1,
                direction: SyncDirection::After(Seq(after)),
                limit: 100,
                read_ahead: false,
            }),
        );
        self.take(conn);
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms * MS;
        self.shard.handle_timeout(self.now);
        self.run();
    }

    /// Frames sent to `conn` so far (drained).
    fn take(&mut self, conn: ConnId) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.out.retain(|a| match a {
            Action::Send { conn: c, frame } if *c == conn => {
                frames.push(frame.clone());
                false
            }
            _ => true,
        });
        frames
    }

    fn closed(&self, conn: ConnId) -> bool {
        self.out
            .iter()
            .any(|a| matches!(a, Action::Close { conn: c } if *c == conn))
    }

    /// Asserts `conn` got ERROR `code` and was closed.
    fn assert_failed(&mut self, conn: ConnId, code: ErrorCode) {
        let frames = self.take(conn);
        let got = frames.iter().find_map(|f| match f {
            Frame::Error(e) => Some(e.code),
            _ => None,
        });
        assert_eq!(got, Some(code as u16), "frames: {frames:?}");
        assert!(
            self.closed(conn),
            "connection must be closed after {code:?}"
        );
    }
}

/// What `query` reads of `user`'s inbox from a test's log.
fn read_log(log: &[Record], user: UserId, query: &InboxQuery) -> Vec<MessageRecord> {
    log.iter()
        .filter_map(|r| match r {
            Record::Message(m) if m.inbox == user => Some(m.clone()),
            _ => None,
        })
        .filter(|m| match query {
            InboxQuery::After { after, .. } => m.seq > *after,
            InboxQuery::Seqs(seqs) => seqs.contains(&m.seq),
            _ => true,
        })
        .take(match query {
            InboxQuery::After { limit, .. } => *limit as usize,
            _ => usize::MAX,
        })
        .collect()
}

fn send(cmid: u64, to: u64, qos: Qos) -> Frame {
    Frame::Send(Send {
        client_msg_id: cmid,
        to: UserId(to),
        qos,
        confirm: false,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"hi"),
    })
}

#[test]
fn frame_before_connect_is_not_connected() {
    let mut h = Harness::new(CoreConfig::default());
    let c = h.open();
    h.frame(c, Frame::Ack(Seq(1)));
    h.assert_failed(c, ErrorCode::NotConnected);
}

#[test]
fn bad_signature_expired_token_and_device_mismatch_are_typed() {
    let mut h = Harness::new(CoreConfig::default());
    let cases = [
        (
            TokenVerifier::new(b"wrong").mint(&Claims {
                user: UserId(1),
                device: DeviceId(1),
                expires_s: u64::MAX / 2,
                acl: Default::default(),
            }),
            1,
            ErrorCode::AuthFailed,
        ),
        (Harness::token(1, 1, 10), 1, ErrorCode::TokenExpired),
        (
            Harness::token(1, 1, u64::MAX / 2),
            2,
            ErrorCode::DeviceMismatch,
        ),
        ("not a token".to_string(), 1, ErrorCode::AuthFailed),
    ];
    for (token, device, code) in cases {
        let c = h.open();
        h.frame(
            c,
            Frame::Connect(Connect {
                device: DeviceId(device),
                last_seq: None,
                keepalive_ms: 0,
                token,
            }),
        );
        h.assert_failed(c, code);
    }
    assert_eq!(h.shard.stats().auth_failures, 4);
    assert_eq!(
        h.shard.stats().sessions_opened,
        0,
        "no state for refused sessions"
    );
}

#[test]
fn second_connect_is_already_connected() {
    let mut h = Harness::new(CoreConfig::default());
    let c = h.connect(1, 1);
    let token = Harness::token(1, 1, u64::MAX / 2);
    h.frame(
        c,
        Frame::Connect(Connect {
            device: DeviceId(1),
            last_seq: None,
            keepalive_ms: 0,
            token,
        }),
    );
    h.assert_failed(c, ErrorCode::AlreadyConnected);
}

#[test]
fn ack_beyond_the_inbox_head_is_refused() {
    let mut h = Harness::new(CoreConfig::default());
    let c = h.connect(1, 1);
    h.frame(c, Frame::Ack(Seq(5)));
    h.assert_failed(c, ErrorCode::AckBeyondSent);
}

#[test]
fn sync_with_absurd_limit_is_typed_but_keeps_the_session() {
    let mut h = Harness::new(CoreConfig::default());
    let c = h.connect(1, 1);
    for (id, limit) in [(1, 0), (2, u32::MAX)] {
        h.frame(
            c,
            Frame::Sync(Sync {
                request_id: id,
                direction: SyncDirection::Latest,
                limit,
                read_ahead: false,
            }),
        );
        let frames = h.take(c);
        assert!(
            matches!(frames.as_slice(), [Frame::Error(e)] if e.code == ErrorCode::BadSyncRequest as u16),
            "{frames:?}"
        );
    }
    assert!(!h.closed(c));
}

#[test]
fn gateway_only_frames_from_a_client_are_malformed() {
    let room = surepush_proto::ROOM_BIT | 1;
    for frame in [
        Frame::Comp { client_msg_id: 1 },
        Frame::RoomLag { room, next: Seq(1) },
        Frame::SubAck(surepush_proto::SubAck {
            room,
            head: Seq(0),
            first: Seq(1),
            result: surepush_proto::SubResult::Ok,
        }),
    ] {
        let mut h = Harness::new(CoreConfig::default());
        let c = h.connect(1, 1);
        h.frame(c, frame);
        h.assert_failed(c, ErrorCode::Malformed);
    }
}

#[test]
fn bad_room_requests_are_refused_or_ignored_and_the_session_stays() {
    let mut h = Harness::new(CoreConfig::default());
    let c = h.connect(1, 1);
    let refused = |h: &mut Harness, room: u64, qos: Qos| {
        h.frame(
            c,
            Frame::Subscribe(surepush_proto::Subscribe {
                room,
                from: surepush_proto::SubscribeFrom::Now,
                qos,
            }),
        );
        let frames = h.take(c);
        assert!(
            matches!(frames.as_slice(), [Frame::SubAck(a)] if a.result == surepush_proto::SubResult::Refused),
            "{frames:?}"
        );
    };
    refused(&mut h, 7, Qos::AtLeastOnce); // a user id, not a room
    refused(&mut h, UserId::GROUP_BIT | 3, Qos::AtLeastOnce); // a group id
    refused(&mut h, surepush_proto::ROOM_BIT | 3, Qos::ExactlyOnce); // QoS 2
                                                                     // ROOMACK and UNSUBSCRIBE of a room never subscribed: nothing happens.
    h.frame(
        c,
        Frame::RoomAck {
            room: surepush_proto::ROOM_BIT | 3,
            seq: Seq(1_000_000),
        },
    );
    h.frame(
        c,
        Frame::Unsubscribe {
            room: surepush_proto::ROOM_BIT | 3,
        },
    );
    assert!(h.take(c).is_empty());
    assert!(!h.closed(c));
}

/// #17: a client over `max_frames_per_sec` is throttled (its reads pause
/// for the rest of the second), not closed: every frame already read is
/// still served.
#[test]
fn frame_flood_pauses_reading_for_the_rest_of_the_second() {
    let mut h = Harness::new(CoreConfig {
        max_frames_per_sec: 10,
        ..CoreConfig::default()
    });
    let c = h.connect(1, 1);
    h.take(c);
    // CONNECT counted as the window's first frame.
    for i in 0..8 {
        h.frame(c, Frame::Ping(i));
        assert_eq!(h.shard.read_pause(c, h.now), None, "frame {i}");
    }
    h.advance(300);
    h.frame(c, Frame::Ping(8));
    let pause = h.shard.read_pause(c, h.now).expect("paused at the limit");
    assert_eq!(pause, 700 * 1_000_000);
    for i in 9..20 {
        h.frame(c, Frame::Ping(i));
    }
    let pongs: Vec<u64> = h
        .take(c)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Pong(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(pongs, (0..20).collect::<Vec<_>>());
    assert!(!h.closed(c));
    h.advance(700);
    assert_eq!(h.shard.read_pause(c, h.now), None, "a new second");
    // Acknowledgements do not count (a consumer keeping up is not slowed).
    for _ in 0..20 {
        h.frame(c, Frame::Ack(surepush_proto::Seq::ZERO));
    }
    assert_eq!(h.shard.read_pause(c, h.now), None, "ACKs are not counted");
    h.frame(c, Frame::Ping(20));
    assert_eq!(h.shard.read_pause(c, h.now), None);
}

#[test]
fn silent_connection_without_connect_times_out() {
    let mut h = Harness::new(CoreConfig::default());
    let c = h.open();
    h.advance(CoreConfig::default().connect_timeout_ms + 1);
    h.assert_failed(c, ErrorCode::IdleTimeout);
}

#[test]
fn idle_session_is_closed_after_one_and_a_half_keepalives() {
    let config = CoreConfig {
        keepalive_ms: 1_000,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    let c = h.connect(1, 1);
    h.advance(1_000);
    h.frame(c, Frame::Ping(1));
    assert_eq!(h.take(c), vec![Frame::Pong(1)]);
    h.advance(1_400);
    assert!(!h.closed(c), "activity restarted the idle clock");
    h.advance(200);
    h.assert_failed(c, ErrorCode::IdleTimeout);
}

/// Issue #21 item 4: MQTT keep alive 0 switches keep alive off (3.1.1
/// and 5.0 section 3.1.2.10); the bridge asks for `KEEPALIVE_OFF`.
#[test]
fn a_session_asking_for_no_keepalive_is_never_closed_for_silence() {
    let connect = |h: &mut Harness, device: u64, keepalive_ms: u32| {
        let c = h.open();
        let token = Harness::token(1, device, u64::MAX / 2);
        h.frame(
            c,
            Frame::Connect(Connect {
                device: DeviceId(device),
                last_seq: None,
                keepalive_ms,
                token,
            }),
        );
        match h.take(c).first() {
            Some(Frame::ConnAck(a)) => (c, a.keepalive_ms),
            other => panic!("{other:?}"),
        }
    };
    let config = CoreConfig {
        keepalive_ms: 1_000,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config.clone());
    let (off, granted) = connect(&mut h, 1, surepush_proto::KEEPALIVE_OFF);
    assert_eq!(granted, surepush_proto::KEEPALIVE_OFF, "granted as asked");
    let (default, granted) = connect(&mut h, 2, 0);
    assert_eq!(granted, 1_000);
    h.advance(1_500);
    h.assert_failed(default, ErrorCode::IdleTimeout);
    for _ in 0..48 {
        h.advance(3_600_000);
    }
    assert!(!h.closed(off), "silent for two days and still open");
    h.frame(off, Frame::Ping(7));
    assert_eq!(h.take(off), vec![Frame::Pong(7)]);

    // An operator who lowers the maximum keeps a keepalive on everybody.
    let mut h = Harness::new(CoreConfig {
        max_keepalive_ms: 10_000,
        ..config
    });
    let (capped, granted) = connect(&mut h, 1, surepush_proto::KEEPALIVE_OFF);
    assert_eq!(granted, 10_000);
    h.advance(14_999);
    assert!(!h.closed(capped));
    h.advance(1);
    h.assert_failed(capped, ErrorCode::IdleTimeout);
}

#[test]
fn sendack_follows_storage_and_retry_is_a_duplicate() {
    let mut h = Harness::new(CoreConfig::default());
    let a = h.connect(1, 1);
    h.frame(a, send(7, 2, Qos::AtLeastOnce));
    let first = h.take(a);
    let Some(Frame::SendAck(ack)) = first.first() else {
        panic!("{first:?}")
    };
    assert_eq!((ack.seq, ack.own_seq), (Seq(1), Seq(1)));
    assert_eq!(h.log.len(), 2, "addressee copy and own copy");
    h.frame(a, send(7, 2, Qos::AtLeastOnce));
    let again = h.take(a);
    assert!(
        matches!(again.as_slice(), [Frame::SendAck(a)] if a.result == surepush_proto::SendResult::Duplicate && a.seq == Seq(1)),
        "{again:?}"
    );
    assert_eq!(h.log.len(), 2, "a retry stores nothing");
}

#[test]
fn unacknowledged_push_is_retransmitted_with_backoff_then_the_connection_dies() {
    let config = CoreConfig {
        ack_timeout_ms: 100,
        max_backoff_ms: 400,
        max_retries: 3,
        keepalive_ms: 60_000,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    let receiver = h.connect(2, 1);
    h.go_live(receiver, 0);
    let sender = h.connect(1, 1);
    h.frame(sender, send(1, 2, Qos::AtLeastOnce));
    let pushes = h.take(receiver);
    assert!(matches!(pushes.as_slice(), [Frame::Push(p)] if p.seq == Seq(1) && !p.retransmit));
    // Retransmits at +100, +200, +400 (capped) ms.
    for wait in [100, 200, 400] {
        h.advance(wait - 1);
        assert!(h.take(receiver).is_empty(), "not before its backoff");
        h.advance(1);
        let r = h.take(receiver);
        assert!(
            matches!(r.as_slice(), [Frame::Push(p)] if p.retransmit),
            "{r:?}"
        );
    }
    assert_eq!(h.shard.stats().retransmits, 3);
    h.advance(400);
    h.assert_failed(receiver, ErrorCode::AckTimeout);
    assert_eq!(h.shard.stats().dead_connections, 1);
    assert_eq!(h.shard.stats().pending_acks, 0);
    assert_eq!(
        h.shard.durable_head(UserId(2)),
        Seq(1),
        "the message stays stored"
    );
}

#[test]
fn push_window_holds_back_until_acks_then_refills_from_the_log() {
    let config = CoreConfig {
        push_window: 2,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    let receiver = h.connect(2, 1);
    h.go_live(receiver, 0);
    let sender = h.connect(1, 1);
    for i in 1..=5 {
        h.frame(sender, send(i, 2, Qos::AtLeastOnce));
    }
    let seqs = |frames: Vec<Frame>| -> Vec<u64> {
        frames
            .into_iter()
            .filter_map(|f| match f {
                Frame::Push(p) => Some(p.seq.0),
                _ => None,
            })
            .collect()
    };
    assert_eq!(seqs(h.take(receiver)), vec![1, 2]);
    h.frame(receiver, Frame::Ack(Seq(2)));
    assert_eq!(seqs(h.take(receiver)), vec![3, 4]);
    h.frame(receiver, Frame::Ack(Seq(4)));
    assert_eq!(seqs(h.take(receiver)), vec![5]);
    assert_eq!(h.shard.stats().pending_acks, 1);
}

#[test]
fn newer_connection_of_the_same_device_replaces_the_older() {
    let mut h = Harness::new(CoreConfig::default());
    let old = h.connect(1, 1);
    let new = h.connect(1, 1);
    let frames = h.take(old);
    assert!(
        matches!(frames.as_slice(), [Frame::Disconnect(d)] if d.reason == ErrorCode::Replaced as u16),
        "{frames:?}"
    );
    assert!(h.closed(old));
    assert!(!h.closed(new));
}

/// Issue 22 item 4: the admin's disconnect closes one device's session,
/// or every session of the user, with DISCONNECT `Kicked`; other users and
/// devices stay connected.
#[test]
fn disconnect_user_kicks_one_device_or_all_of_the_user() {
    let mut h = Harness::new(CoreConfig::default());
    let (a1, a2, b1) = (h.connect(1, 1), h.connect(1, 2), h.connect(2, 1));
    let kicked = |frames: Vec<Frame>| matches!(frames.as_slice(), [Frame::Disconnect(d)] if d.reason == ErrorCode::Kicked as u16);
    let now = h.now;
    assert_eq!(
        h.shard.disconnect_user(UserId(1), Some(DeviceId(2)), now),
        1
    );
    h.run();
    assert!(kicked(h.take(a2)));
    assert!(h.closed(a2) && !h.closed(a1) && !h.closed(b1));
    assert_eq!(h.shard.disconnect_user(UserId(1), None, now), 1);
    h.run();
    assert!(kicked(h.take(a1)));
    assert!(h.closed(a1) && !h.closed(b1));
    assert_eq!(h.shard.disconnect_user(UserId(1), None, now), 0);
    assert_eq!(h.shard.disconnect_user(UserId(3), None, now), 0);
}

#[test]
fn too_many_devices_per_user_are_refused() {
    let mut h = Harness::new(CoreConfig {
        max_connections_per_user: 2,
        ..CoreConfig::default()
    });
    h.connect(1, 1);
    h.connect(1, 2);
    let c = h.open();
    let token = Harness::token(1, 3, u64::MAX / 2);
    h.frame(
        c,
        Frame::Connect(Connect {
            device: DeviceId(3),
            last_seq: None,
            keepalive_ms: 0,
            token,
        }),
    );
    h.assert_failed(c, ErrorCode::TooManyConnections);
}

#[test]
fn storage_failure_stops_acknowledging() {
    let mut h = Harness::new(CoreConfig::default());
    let a = h.connect(1, 1);
    h.shard.handle_frame(a, send(1, 2, Qos::AtLeastOnce), h.now);
    // Fail the appends instead of syncing them.
    while let Some(action) = h.shard.poll_action() {
        if let Action::Append { token, .. } = action {
            h.shard.handle_appended(token, Err(()), h.now);
        } else {
            h.out.push(action);
        }
    }
    let frames = h.take(a);
    assert!(
        matches!(frames.as_slice(), [Frame::SendAck(s)] if s.result == surepush_proto::SendResult::StorageUnavailable),
        "{frames:?}"
    );
    assert!(h.shard.storage_failed());
    h.frame(a, send(2, 2, Qos::AtLeastOnce));
    let frames = h.take(a);
    assert!(
        matches!(frames.as_slice(), [Frame::SendAck(s)] if s.result == surepush_proto::SendResult::StorageUnavailable),
        "{frames:?}"
    );
}

#[test]
fn backend_publish_is_stored_once_per_id_and_pushed() {
    let mut h = Harness::new(CoreConfig::default());
    let receiver = h.connect(2, 1);
    h.go_live(receiver, 0);
    let key = crate::SendKey {
        from: UserId(0),
        from_device: DeviceId(u64::MAX),
        client_msg_id: 99,
    };
    for (request, expect) in [
        (1, StoreOutcome::Stored(Seq(1))),
        (2, StoreOutcome::Duplicate(Seq(1))),
    ] {
        let publish = crate::Publish {
            request,
            key,
            to: UserId(2),
            qos: Qos::AtLeastOnce,
            attrs: Bytes::new(),
            payload: Bytes::from_static(b"x"),
            by: Publisher::Backend,
            confirm: false,
        };
        h.shard.handle_publish(publish, h.now);
        h.run();
        let done: Vec<_> = h
            .out
            .iter()
            .filter_map(|a| match a {
                Action::Published {
                    request: r,
                    outcome,
                } if *r == request => Some(*outcome),
                _ => None,
            })
            .collect();
        assert_eq!(done, vec![expect]);
    }
    assert_eq!(
        h.log.len(),
        1,
        "stored once, no own copy for the system sender"
    );
    let pushes = h.take(receiver);
    assert!(
        matches!(pushes.as_slice(), [Frame::Push(p)] if p.seq == Seq(1) && p.from == UserId(0))
    );
}

#[test]
fn a_read_racing_a_durability_report_shows_nothing_the_core_has_not_counted() {
    // Found by `surepush-loadgen storm`: a log read returned a record that
    // was durable on disk before the core handled its durability report;
    // the client then acknowledged it and was closed with AckBeyondSent.
    let mut h = Harness::new(CoreConfig::default());
    let rx = h.connect(2, 1);
    let tx = h.connect(1, 1);
    h.shard
        .handle_frame(tx, send(1, 2, Qos::AtLeastOnce), h.now);
    let mut held = Vec::new();
    while let Some(a) = h.shard.poll_action() {
        match a {
            Action::Append { token, record } => {
                h.log.push(record); // on disk ...
                held.push(token); // ... but not reported yet
            }
            other => h.out.push(other),
        }
    }
    let sync = |request_id, after| {
        Frame::Sync(Sync {
            request_id,
            direction: SyncDirection::After(Seq(after)),
            limit: 100,
            read_ahead: false,
        })
    };
    h.frame(rx, sync(1, 0));
    match h.take(rx).as_slice() {
        [Frame::SyncPage(p)] => assert!(p.items.is_empty(), "{p:?}"),
        other => panic!("{other:?}"),
    }
    for token in held {
        h.shard.handle_appended(token, Ok(()), h.now);
    }
    h.run();
    // The empty page made the connection live: the message is pushed now.
    let seq = match h.take(rx).as_slice() {
        [Frame::Push(p)] => p.seq,
        other => panic!("{other:?}"),
    };
    h.frame(rx, Frame::Ack(seq));
    assert!(!h.closed(rx), "acknowledging what was pushed is allowed");
}

mod conversations;
mod echo_hold;
mod gone;
mod group_tickets;
mod keyed;
mod pair;
mod presence;
mod presence_nodes;
mod read_ahead;
mod retry;
mod room_access;
mod room_resync;
mod share_backlog;
mod share_expiry;
mod share_handout;
mod share_restart_expiry;
mod topic_filters;
mod topic_nodes;
mod webhook;

/// Room frames (SUBACK, ROOMLAG and the shared ROOMPUSH bytes) sent to
/// `conn` so far, drained.
fn take_room(h: &mut Harness, conn: ConnId) -> Vec<Frame> {
    let mut frames = Vec::new();
    h.out.retain(|a| match a {
        Action::SendShared { conn: c, bytes, .. } if *c == conn => {
            let mut d = surepush_proto::Decoder::new(u32::MAX);
            d.feed(bytes);
            frames.push(d.decode().expect("valid").expect("whole frame"));
            false
        }
        Action::Send { conn: c, frame } if *c == conn => {
            frames.push(frame.clone());
            false
        }
        _ => true,
    });
    frames
}

#[test]
fn a_resume_past_history_that_aged_out_over_several_pages_is_told_where_delivery_starts() {
    // Found by the simulator (tests/sim, seed 1997 while rooms were added):
    // the age limit emptied the first replay page, so the SUBACK said Gap
    // with `first` = the next page's start; that page was too old as well
    // and the subscriber was moved past it silently. With nothing newer in
    // the room it waited forever before sequences that no longer existed.
    let room = surepush_proto::ROOM_BIT | 1;
    let mut h = Harness::new(CoreConfig {
        room_max_age_ms: 1_000,
        room_page: 2,
        ..CoreConfig::default()
    });
    let publisher = h.connect(1, 1);
    for cmid in 1..=4 {
        h.frame(publisher, send(cmid, room, Qos::AtLeastOnce));
    }
    h.advance(2_000);
    let sub = h.connect(2, 1);
    h.frame(
        sub,
        Frame::Subscribe(surepush_proto::Subscribe {
            room,
            from: surepush_proto::SubscribeFrom::After(Seq::ZERO),
            qos: Qos::AtLeastOnce,
        }),
    );
    let frames = take_room(&mut h, sub);
    let expected = surepush_proto::SubAck {
        room,
        head: Seq(4),
        first: Seq(5),
        result: surepush_proto::SubResult::Gap,
    };
    assert_eq!(frames, [Frame::SubAck(expected)]);
    // The next message is the first delivered.
    h.frame(publisher, send(5, room, Qos::AtLeastOnce));
    let frames = take_room(&mut h, sub);
    assert!(
        matches!(frames.as_slice(), [Frame::RoomPush(p)] if p.seq == Seq(5)),
        "{frames:?}"
    );
}

/// Found by the MQTT simulation: a QoS 0 publish to a room also went to
/// the sender's other devices as an inbox message (the own-inbox echo of a
/// QoS 0 send), although a room's messages are the room's only; an MQTT
/// session subscribed to `#` on the other device got it as an inbox
/// message. Now only the room's subscribers get it.
#[test]
fn a_qos0_room_publish_is_not_echoed_to_the_senders_other_devices() {
    let mut h = Harness::new(CoreConfig::default());
    let d1 = h.connect(1, 1);
    let d2 = h.connect(1, 2);
    h.go_live(d2, 0);
    let room = surepush_proto::ROOM_BIT | 5;
    h.frame(d1, send(1, room, Qos::AtMostOnce));
    h.frame(d1, send(2, 7, Qos::AtMostOnce));
    let pushed: Vec<UserId> = h
        .take(d2)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Push(p) => Some(p.to),
            _ => None,
        })
        .collect();
    assert_eq!(
        pushed,
        vec![UserId(7)],
        "the user send is echoed, the room one is not"
    );
}

#[test]
fn subscribing_again_to_a_room_does_not_grow_the_connection() {
    // Seen while adding rooms to the simulator (issue #16 item 3): every
    // SUBSCRIBE replacing the previous one (the SDK sends one after each
    // ROOMLAG or hole) added the room to the connection's list once more,
    // so a long-lived subscriber grew without bound.
    let room = surepush_proto::ROOM_BIT | 1;
    let mut h = Harness::new(CoreConfig::default());
    let c = h.connect(1, 1);
    for _ in 0..100 {
        h.frame(
            c,
            Frame::Subscribe(surepush_proto::Subscribe {
                room,
                from: surepush_proto::SubscribeFrom::Now,
                qos: Qos::AtLeastOnce,
            }),
        );
    }
    assert_eq!(h.shard.conn(c).expect("open").rooms, [room]);
    assert_eq!(take_room(&mut h, c).len(), 100, "one SUBACK each");
}
