//! A persistent share group member's session expiry survives a restart
//! (issue #21, docs/MQTT.md 2.3a "A persistent member's session
//! expires"): the group's durable state keeps the session of each member
//! it holds QoS 2 messages for, and the restored group ends a session that
//! does not come back at its deadline, as the live timer would have.
//! Before, the timer was memory only: after a restart the group kept such
//! a member's QoS 2 messages for ever (`share_expired` stayed 0).

use super::share_handout::job_pushes as pushes;
use super::share_handout::join_persistent as share;
use super::share_handout::{a_left_the_group_to, a_member_holding_qos2, publish_jobs as publish};
use super::topic_filters::mqtt_session;
use super::*;

const WALL_AT_ZERO: u64 = 1_700_000_000_000;

/// A publisher, member A (user 2, Session Expiry 2 s) holding QoS 2
/// messages unfinished, member B (user 3, never expires) finishing the
/// rest. A's connection closes at 1 s if `a_closes`. What A holds.
fn a_member_holding_qos2_messages(h: &mut Harness, a_closes: bool) -> Vec<(Seq, String)> {
    let (_, a, _, frames) = a_member_holding_qos2(h, 2);
    let held = pushes(frames);
    h.advance(1_000);
    if a_closes {
        h.shard.handle_closed(a, h.now);
        h.run();
    }
    held
}

/// kill -9 after `ms` more, and a restart `down_ms` later: a new shard from
/// the log, its clock from zero, the wall clock on.
fn restart(h: &mut Harness, ms: u64, down_ms: u64) {
    h.advance(ms);
    let mut recovered = RecoveredState::default();
    for r in &h.log {
        recovered.apply(r, &CoreConfig::default().dedup);
    }
    let params = ShardParams {
        id: crate::ShardId(0),
        shards: 1,
        wall_ms_at_zero: WALL_AT_ZERO + h.now / MS + down_ms,
    };
    let verifier = TokenVerifier::new(SECRET);
    h.shard = Shard::new(params, CoreConfig::default(), verifier, recovered);
    h.now = 0;
    h.out.clear();
    h.shard.load_topic_names();
    h.run();
}

#[test]
fn a_restored_group_ends_a_session_at_its_recorded_close_plus_expiry() {
    let mut h = Harness::new(CoreConfig::default());
    let held = a_member_holding_qos2_messages(&mut h, true);
    // Closed at 1 s: its session ends at 3 s. Down from 1.5 s to 2.5 s.
    restart(&mut h, 500, 1_000);
    let b = mqtt_session(&mut h, 3);
    let publisher = mqtt_session(&mut h, 1);
    assert!(pushes(share(&mut h, b, None)).is_empty(), "A's wait for A");

    h.advance(499);
    assert_eq!(h.shard.stats().share_expired, 0, "not yet");
    h.advance(1);
    // The restarted shard counts from zero.
    a_left_the_group_to(&mut h, publisher, b, 0, held.len());
}

#[test]
fn without_a_recorded_close_the_expiry_counts_from_the_start() {
    let mut h = Harness::new(CoreConfig::default());
    let held = a_member_holding_qos2_messages(&mut h, false);
    // kill -9 while A is connected: no close recorded.
    restart(&mut h, 0, 60_000);
    let b = mqtt_session(&mut h, 3);
    assert!(pushes(share(&mut h, b, None)).is_empty());
    h.advance(1_999);
    assert_eq!(h.shard.stats().share_expired, 0, "2 s from the start");
    h.advance(1);
    assert_eq!(h.shard.stats().share_expired, 1);
    assert_eq!(h.shard.stats().share_dropped, held.len() as u64);
    assert!(pushes(h.take(b)).is_empty(), "never to another member");
}

#[test]
fn a_member_back_before_its_restored_deadline_keeps_its_messages() {
    let mut h = Harness::new(CoreConfig::default());
    let held = a_member_holding_qos2_messages(&mut h, true);
    restart(&mut h, 0, 0);
    h.advance(1_500);
    let a = mqtt_session(&mut h, 2);
    let again = pushes(share(&mut h, a, Some(2)));
    assert_eq!(again, held, "given again to A (DUP)");
    h.advance(10_000);
    assert_eq!(h.shard.stats().share_expired, 0, "the join cancelled it");
    assert_eq!(h.shard.stats().share_dropped, 0);
}

#[test]
fn a_session_whose_deadline_passed_while_down_ends_at_the_start() {
    let mut h = Harness::new(CoreConfig::default());
    let held = a_member_holding_qos2_messages(&mut h, true);
    restart(&mut h, 0, 60_000);
    h.advance(0);
    assert_eq!(h.shard.stats().share_expired, 1);
    assert_eq!(h.shard.stats().share_dropped, held.len() as u64);
}

/// A member whose session never expires (Session Expiry 0xFFFFFFFF, a
/// 3.1.1 session) keeps its QoS 2 messages across a restart, however
/// long it stays away.
#[test]
fn a_member_that_never_expires_keeps_its_messages_after_a_restart() {
    let mut h = Harness::new(CoreConfig::default());
    let publisher = mqtt_session(&mut h, 1);
    let a = mqtt_session(&mut h, 2);
    share(&mut h, a, None);
    publish(&mut h, publisher, 0, 2);
    let held = pushes(h.take(a));
    assert_eq!(held.len(), 2);
    h.shard.handle_closed(a, h.now);
    h.run();
    restart(&mut h, 0, 0);
    h.advance(3_600_000);
    assert_eq!(h.shard.stats().share_expired, 0);
    let a = mqtt_session(&mut h, 2);
    assert_eq!(pushes(share(&mut h, a, None)), held);
}

/// A restored group's notice may reach the member's shard after the
/// member joined again (another shard loaded later): the member is back,
/// nothing expires.
#[test]
fn a_late_notice_for_a_member_that_joined_again_changes_nothing() {
    let mut h = Harness::new(CoreConfig::default());
    a_member_holding_qos2_messages(&mut h, true);
    restart(&mut h, 0, 0);
    let a = mqtt_session(&mut h, 2);
    share(&mut h, a, Some(2));
    let late = crate::peer::ShareAway {
        group: "g".into(),
        filter: "jobs/+".into(),
        user: UserId(2),
        device: DeviceId(1),
        deadline_ms: h.shard.wall_ms(),
    };
    h.shard.on_share_away(late);
    h.run();
    h.advance(10_000);
    assert_eq!(h.shard.stats().share_expired, 0);
}
