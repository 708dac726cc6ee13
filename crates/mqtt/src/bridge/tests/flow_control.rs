//! Flow control and keep alive the client asked for (issue #21 item 4):
//! the Receive Maximum the server advertises counts a QoS 2 PUBLISH until
//! its PUBCOMP (MQTT-3.3.4-7/-8, MQTT-4.9.0-2), and keep alive 0 asks the
//! core for none.

use super::*;

/// A QoS `qos` PUBLISH with packet id `id` to user 8.
fn publish(qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: MqttString::from("user/8"),
        packet_id: Some(pid(id)),
        payload: Bytes::from_static(b"x"),
        properties: Properties::default(),
    })
}

/// The core stores every SEND queued so far.
fn store_all(h: &mut Harness) {
    let sends: Vec<u64> = h
        .core()
        .iter()
        .filter_map(|f| match f {
            Frame::Send(s) => Some(s.client_msg_id),
            _ => None,
        })
        .collect();
    for (i, id) in sends.into_iter().enumerate() {
        h.b.on_frame(Frame::SendAck(SendAck {
            client_msg_id: id,
            seq: Seq(i as u64 + 1),
            own_seq: Seq(i as u64 + 1),
            result: SendResult::Stored,
        }));
    }
}

#[test]
fn a_qos2_publish_counts_against_receive_maximum_until_pubcomp() {
    let max = params().receive_max;
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.core();
    for id in 1..=max {
        h.b.on_packet(publish(QoS::ExactlyOnce, id));
    }
    store_all(&mut h);
    let recs = h.packets();
    assert_eq!(recs.len(), usize::from(max));
    assert!(recs
        .iter()
        .all(|p| matches!(p, Packet::PubRec(r) if r.reason == ReasonCode::SUCCESS)));
    // PUBREC does not free the slot: PUBREL → PUBCOMP does.
    h.b.on_packet(Packet::PubRel(PubReply::success(pid(1))));
    let rel = h.core();
    assert!(matches!(rel.as_slice(), [Frame::Rel { .. }]), "{rel:?}");
    let Frame::Rel { client_msg_id, .. } = rel[0] else {
        unreachable!()
    };
    h.b.on_frame(Frame::Comp { client_msg_id });
    assert_eq!(
        h.packets(),
        vec![Packet::PubComp(PubReply::success(pid(1)))]
    );
    // A resend of a counted one is not one more.
    h.b.on_packet(Packet::Publish(Publish {
        dup: true,
        ..match publish(QoS::ExactlyOnce, 2) {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }));
    assert_eq!(h.packets(), vec![Packet::PubRec(PubReply::success(pid(2)))]);
    // The freed slot takes one QoS 1 PUBLISH...
    h.b.on_packet(publish(QoS::AtLeastOnce, 1));
    assert!(!h.b.wants_close());
    // ...and one more than Receive Maximum is refused.
    h.b.on_packet(publish(QoS::AtLeastOnce, max + 1));
    match h.packets().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        other => panic!("{other:?}"),
    }
    assert!(h.b.wants_close());
}

#[test]
fn puback_and_refusing_pubrec_give_the_slot_back() {
    let max = params().receive_max;
    let mut h = Harness::live(ProtocolLevel::V5, &[]);
    h.packets();
    h.core();
    // Receive Maximum QoS 1 messages, each answered, twice over.
    for round in 0..2u16 {
        for id in 1..=max {
            h.b.on_packet(publish(QoS::AtLeastOnce, id));
        }
        store_all(&mut h);
        assert_eq!(h.packets().len(), usize::from(max), "round {round}");
    }
    // A QoS 2 message the core refuses: PUBREC 0x87 ends it.
    for id in 1..=max {
        h.b.on_packet(publish(QoS::ExactlyOnce, id));
    }
    let sends: Vec<u64> = h
        .core()
        .iter()
        .filter_map(|f| match f {
            Frame::Send(s) => Some(s.client_msg_id),
            _ => None,
        })
        .collect();
    for id in sends {
        h.b.on_frame(Frame::SendAck(SendAck {
            client_msg_id: id,
            seq: Seq::ZERO,
            own_seq: Seq::ZERO,
            result: SendResult::Forbidden,
        }));
    }
    let recs = h.packets();
    assert!(recs
        .iter()
        .all(|p| matches!(p, Packet::PubRec(r) if r.reason == ReasonCode::NOT_AUTHORIZED)));
    h.b.on_packet(publish(QoS::ExactlyOnce, 1));
    assert!(!h.b.wants_close(), "every slot is free again");
}

#[test]
fn keep_alive_0_asks_the_core_for_no_keep_alive_and_is_not_overridden() {
    for level in [ProtocolLevel::V311, ProtocolLevel::V5] {
        let mut c = connect(level, true);
        c.keep_alive = 0;
        let mut h = Harness::of(Bridge::new(c, "token".into(), me(), None, 1, params()));
        match h.core().as_slice() {
            [Frame::Connect(c)] => assert_eq!(c.keepalive_ms, proto::KEEPALIVE_OFF),
            other => panic!("{other:?}"),
        }
        let Frame::ConnAck(mut ack) = native_connack(0, None) else {
            unreachable!()
        };
        ack.keepalive_ms = proto::KEEPALIVE_OFF;
        h.b.on_frame(Frame::ConnAck(ack));
        match h.packets().as_slice() {
            [Packet::ConnAck(a)] => assert_eq!(
                a.properties.server_keep_alive, None,
                "{level:?}: keep alive off as asked"
            ),
            other => panic!("{other:?}"),
        }
    }
    // A server that keeps a maximum tells a v5 client.
    let mut c = connect(ProtocolLevel::V5, true);
    c.keep_alive = 0;
    let mut h = Harness::of(Bridge::new(c, "token".into(), me(), None, 1, params()));
    h.core();
    let Frame::ConnAck(mut ack) = native_connack(0, None) else {
        unreachable!()
    };
    ack.keepalive_ms = 600_000;
    h.b.on_frame(Frame::ConnAck(ack));
    match h.packets().as_slice() {
        [Packet::ConnAck(a)] => assert_eq!(a.properties.server_keep_alive, Some(600)),
        other => panic!("{other:?}"),
    }
}
