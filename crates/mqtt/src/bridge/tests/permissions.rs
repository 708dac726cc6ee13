//! Room permissions seen through MQTT (issue #16 item 6): the core's
//! refusals become the reason codes each protocol level has, an ended
//! subscription leaves the session, and neither a retained message nor a
//! will gets around the room's permissions.

use super::*;
use surepush_token::{Acl, Claims};

const ROOM: u64 = 4;

fn native_suback(result: SubResult, first: u64) -> Frame {
    Frame::SubAck(proto::SubAck {
        room: ROOM | ROOM_BIT,
        head: Seq::ZERO,
        first: Seq(first),
        result,
    })
}

fn suback_reasons(packets: &[Packet]) -> Vec<ReasonCode> {
    match packets {
        [Packet::SubAck(a)] => a.reasons.clone(),
        other => panic!("expected one SUBACK: {other:?}"),
    }
}

#[test]
fn a_forbidden_room_gets_0x87_in_v5_and_0x80_in_v311_and_no_retained_message() {
    for (level, code) in [
        (ProtocolLevel::V5, ReasonCode::NOT_AUTHORIZED),
        (ProtocolLevel::V311, ReasonCode(0x80)),
    ] {
        let mut h = Harness::live(level, &[]);
        h.packets();
        h.core();
        h.subscribe(
            2,
            &[("room/4", QoS::AtLeastOnce), ("user/7", QoS::AtLeastOnce)],
        );
        h.core();
        h.b.on_frame(native_suback(SubResult::Forbidden, 0));
        assert_eq!(
            suback_reasons(&h.packets()),
            [code, ReasonCode(1)],
            "{level:?}"
        );
        assert_eq!(h.b.poll_state_query(), None, "{level:?}");
        // Not part of the session: UNSUBSCRIBE finds nothing.
        h.b.on_packet(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(3),
            filters: vec![MqttString::from("room/4")],
            properties: Properties::default(),
        }));
        assert_eq!(h.core(), [], "{level:?}: nothing to unsubscribe");
    }
}

#[test]
fn a_subscription_ended_by_a_membership_change_leaves_the_persistent_session() {
    let mut b = persistent_bridge(None, 1000);
    b.on_frame(native_connack(0, None));
    b.on_packet(Packet::Subscribe(mqtt::Subscribe {
        packet_id: pid(1),
        filters: vec![Subscription {
            filter: MqttString::from("room/4"),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }],
        properties: Properties::default(),
    }));
    b.on_frame(native_suback(SubResult::Ok, 1));
    // Unasked: the user was removed from the room's members.
    b.on_frame(native_suback(SubResult::Forbidden, 1));
    let Keep::Save(state) = b.finish(5).keep else {
        panic!("a persistent session is kept");
    };
    let mut h = Harness::of(persistent_bridge(Some(*state), 2000));
    h.core();
    h.b.on_frame(native_connack(0, None));
    let resubscribed = h
        .core()
        .into_iter()
        .filter(|f| matches!(f, Frame::Subscribe(_)))
        .count();
    assert_eq!(resubscribed, 0, "the room is no longer subscribed");
}

/// A QoS 0 PUBLISH has no acknowledgement of its own, so a retained one
/// used to change the room's retained message before anyone had checked
/// that the publisher may write the room. It now asks the core (CONFIRM)
/// and changes it only once the room accepted the message.
#[test]
fn a_qos0_retained_publish_changes_the_retained_message_only_once_the_room_accepted_it() {
    for (result, retained) in [(SendResult::Forbidden, false), (SendResult::Stored, true)] {
        let mut h = Harness::live(ProtocolLevel::V5, &[]);
        h.packets();
        h.core();
        h.b.on_packet(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: MqttString::from("room/4"),
            packet_id: None,
            payload: Bytes::from_static(b"status"),
            properties: Properties::default(),
        }));
        let id = match h.core().as_slice() {
            [Frame::Send(s)] => {
                assert!(s.confirm, "a retained QoS 0 publish asks for a SENDACK");
                s.client_msg_id
            }
            other => panic!("{other:?}"),
        };
        assert!(!h.retained_written(), "not before the room answered");
        h.b.on_frame(Frame::SendAck(SendAck {
            client_msg_id: id,
            seq: Seq::ZERO,
            own_seq: Seq::ZERO,
            result,
        }));
        h.store_state();
        assert_eq!(h.retained_written(), retained, "{result:?}");
        assert_eq!(h.packets(), [], "QoS 0 is never acknowledged to the client");
    }
}

#[test]
fn a_will_carries_what_the_sessions_token_grants_for_its_room() {
    for (acl, granted) in [
        (Acl::new(&[], &["room/+"]).expect("valid"), true),
        (Acl::new(&["room/4"], &["room/5"]).expect("valid"), false),
        (Acl::default(), false),
    ] {
        let mut c = connect(ProtocolLevel::V311, true);
        c.will = Some(Will {
            topic: MqttString::from("room/4"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
        let claims = Claims { acl, ..me() };
        let b = Bridge::new(c, "t".into(), claims, None, 1, params());
        let will = b
            .finish(1)
            .will
            .expect("an abnormal end publishes the will");
        assert_eq!(will.to, UserId(ROOM | ROOM_BIT));
        assert_eq!(will.room_grant, granted);
    }
}
