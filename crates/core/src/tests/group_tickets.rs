//! A group send answered to everyone waiting for it (issue #20): a sender
//! node that restarts resends an unfinished group send under a new return
//! ticket while the first fan-out still waits for member copies; both
//! tickets must get the answer, or the second one is never freed (a
//! leaked ticket: a node has 16,383, and one that runs out stops taking
//! requests from other nodes).

use super::*;
use crate::peer::{GroupStore, MembersUpdate, PeerMsg, Stored};

#[test]
fn a_duplicate_group_send_from_another_origin_is_answered_too() {
    let mut shard = Shard::new(
        ShardParams {
            id: crate::ShardId(0),
            shards: 1,
            wall_ms_at_zero: 1_700_000_000_000,
        },
        CoreConfig::default(),
        TokenVerifier::new(SECRET),
        RecoveredState::default(),
    );
    let group = UserId(UserId::GROUP_BIT | 5);
    let members = vec![UserId(1), UserId(2), UserId(3)];
    // Carries out actions; appends wait in `unsynced` until committed.
    let mut unsynced = Vec::new();
    let mut answers: Vec<(crate::ShardId, Stored)> = Vec::new();
    let mut run = |shard: &mut Shard, unsynced: &mut Vec<AppendToken>, commit: bool| loop {
        if commit {
            for token in unsynced.drain(..) {
                shard.handle_appended(token, Ok(()), 0);
            }
        }
        let Some(a) = shard.poll_action() else {
            if commit && !unsynced.is_empty() {
                continue;
            }
            return;
        };
        match a {
            Action::Append { token, .. } => unsynced.push(token),
            Action::Peer {
                shard: to,
                msg: PeerMsg::Stored(s),
            } => answers.push((to, s)),
            _ => {}
        }
    };
    let update = MembersUpdate {
        origin: crate::ShardId(0),
        request: 1,
        id: group,
        add: members.clone(),
        remove: Vec::new(),
    };
    shard.handle_peer(update.into(), 0);
    run(&mut shard, &mut unsynced, true);

    let send = |origin| GroupStore {
        origin,
        key: SendKey {
            from: UserId(1),
            from_device: DeviceId(1),
            client_msg_id: 42,
        },
        group,
        qos: Qos::AtLeastOnce,
        ts_ms: 1,
        attrs: Bytes::new(),
        payload: Bytes::from_static(b"to the group"),
        members_only: true,
    };
    let (first, second) = (crate::ShardId::ticket(7), crate::ShardId::ticket(8));
    // The first request's member copies are not durable yet when the
    // resent one (a new ticket) arrives.
    shard.handle_peer(send(first).into(), 0);
    run(&mut shard, &mut unsynced, false);
    assert!(!unsynced.is_empty(), "the member copies wait for the log");
    shard.handle_peer(send(second).into(), 0);
    // The sender's shard merging its own retry: no third answer.
    shard.handle_peer(send(first).into(), 0);
    run(&mut shard, &mut unsynced, true);

    let mut got: Vec<(crate::ShardId, StoreOutcome)> =
        answers.iter().map(|(to, s)| (*to, s.outcome)).collect();
    got.sort_by_key(|(to, _)| to.0);
    assert_eq!(
        got,
        vec![
            (first, StoreOutcome::Stored(Seq::ZERO)),
            (second, StoreOutcome::Stored(Seq::ZERO)),
        ],
        "each ticket answered once"
    );
}
