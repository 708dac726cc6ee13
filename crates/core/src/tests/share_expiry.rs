//! A persistent share group member whose session expires before it comes
//! back (issue #21, docs/MQTT.md 2.3a): its QoS 2 messages waited for it;
//! at its Session Expiry Interval after the close it leaves the group,
//! they are dropped for the group (never sent to another member,
//! MQTT-4.8.2-5) and the group goes on without it. Before, they stayed
//! with it for as long as the gateway kept the group.

use super::share_handout::join_persistent as share;
use super::share_handout::{a_left_the_group_to, a_member_holding_qos2};
use super::topic_filters::mqtt_session;
use super::*;

fn pushes(frames: Vec<Frame>) -> Vec<Seq> {
    frames
        .into_iter()
        .filter_map(|f| match f {
            Frame::SharePush(p) => Some(p.push.seq),
            _ => None,
        })
        .collect()
}

/// A publisher, member A (user 2, Session Expiry 1 s) holding some QoS 2
/// messages unfinished, member B (user 3) finishing the rest; A's
/// connection then closes. What A holds, and B's connection.
fn a_member_gone_with_qos2_messages(h: &mut Harness) -> (Vec<Seq>, ConnId, ConnId) {
    let (publisher, a, b, frames) = a_member_holding_qos2(h, 1);
    let held = pushes(frames);
    h.shard.handle_closed(a, h.now);
    h.run();
    (held, b, publisher)
}

#[test]
fn an_expired_members_qos2_messages_are_dropped_for_the_group() {
    let mut h = Harness::new(CoreConfig::default());
    let (held, b, publisher) = a_member_gone_with_qos2_messages(&mut h);
    let dropped = h.shard.stats().share_dropped;

    h.advance(999);
    assert_eq!(h.shard.stats().share_expired, 0, "not yet");
    assert!(
        pushes(h.take(b)).is_empty(),
        "A's QoS 2 messages wait for A"
    );
    h.advance(1);
    a_left_the_group_to(&mut h, publisher, b, dropped, held.len());
}

#[test]
fn a_member_back_before_its_expiry_keeps_its_messages() {
    let mut h = Harness::new(CoreConfig::default());
    let (held, _, _) = a_member_gone_with_qos2_messages(&mut h);
    h.advance(500);
    let a = mqtt_session(&mut h, 2);
    let again = pushes(share(&mut h, a, Some(1)));
    assert_eq!(again, held, "given again to A (DUP)");
    h.advance(2_000);
    assert_eq!(h.shard.stats().share_expired, 0);
}

#[test]
fn a_later_close_pushes_the_expiry_back() {
    let mut h = Harness::new(CoreConfig::default());
    a_member_gone_with_qos2_messages(&mut h);
    h.advance(800);
    let a = mqtt_session(&mut h, 2);
    share(&mut h, a, Some(1));
    h.shard.handle_closed(a, h.now);
    h.run();
    // The first close's deadline passes: the session lives on.
    h.advance(500);
    assert_eq!(h.shard.stats().share_expired, 0);
    h.advance(500);
    assert_eq!(h.shard.stats().share_expired, 1);
}
