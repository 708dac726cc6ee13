//! Issue #16 item 4: the session's state is in the log, and a packet that
//! depends on a change of it leaves only once that change is durable
//! (`persist.rs`). Each test holds the state writes back (as a group
//! commit not yet done would) and checks what waits and what does not.

use super::*;

/// A persistent v3.1.1 session, connected and live, whose state writes
/// are held until [`Held::durable`].
struct Held {
    b: Bridge,
    /// Reported writes not yet durable.
    pending: Vec<StateWrite>,
    /// Deferred writes handed out.
    deferred: Vec<StateWrite>,
    /// Every write handed out, in order.
    all: Vec<StateWrite>,
}

impl Held {
    fn of(b: Bridge) -> Held {
        Held {
            b,
            pending: Vec::new(),
            deferred: Vec::new(),
            all: Vec::new(),
        }
    }

    /// A persistent session of `level` (5.0: expiring after 600 s), its
    /// native CONNACK in, its writes not yet reported.
    fn persistent(level: ProtocolLevel) -> Held {
        let mut c = connect(level, false);
        if level.is_v5() {
            c.properties.session_expiry_interval = Some(600);
        }
        let mut h = Held::of(Bridge::new(c, "t".into(), me(), None, 1, params()));
        h.core();
        h.b.on_frame(native_connack(0, None));
        h
    }

    fn new(stored: Option<SessionState>, head: u64, cursor: Option<u64>) -> Held {
        let mut h = Held::of(persistent_bridge(stored, 1_000));
        h.core();
        h.b.on_frame(native_connack(head, cursor));
        h
    }

    /// A new session that went live on an empty inbox.
    fn live() -> Held {
        let mut h = Held::new(None, 0, None);
        h.durable();
        assert!(matches!(h.packets().as_slice(), [Packet::ConnAck(_)]));
        let request = match h.core().as_slice() {
            [Frame::Sync(s)] => s.request_id,
            other => panic!("{other:?}"),
        };
        h.b.on_frame(empty_sync_page(request));
        h
    }

    fn take_writes(&mut self) {
        while let Some(w) = self.b.poll_state() {
            self.all.push(w.clone());
            match w.report {
                Some(_) => self.pending.push(w),
                None => self.deferred.push(w),
            }
        }
    }

    fn packets(&mut self) -> Vec<Packet> {
        self.take_writes();
        std::iter::from_fn(|| self.b.poll_packet()).collect()
    }

    fn core(&mut self) -> Vec<Frame> {
        self.take_writes();
        std::iter::from_fn(|| self.b.poll_core())
            .filter(|f| *f != Frame::Ping(0))
            .collect()
    }

    /// The held writes become durable.
    fn durable(&mut self) {
        self.take_writes();
        for w in std::mem::take(&mut self.pending) {
            self.b.on_state_stored(w.report.expect("reported"), true);
        }
    }

    /// The last session state handed to the log.
    fn last_state(&self) -> SessionState {
        let w = self
            .all
            .iter()
            .filter(|w| matches!(w.key, surepush_proto::StateKey::MqttSession { .. }))
            .last()
            .expect("a session write");
        SessionState::decode(w.value.as_ref().expect("a value")).expect("decodes")
    }
}

fn subscribe(id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        filters: vec![Subscription {
            filter: MqttString::from(filter),
            options: SubscriptionOptions::qos(qos),
        }],
        properties: Properties::default(),
    })
}

fn qos2_publish(id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: MqttString::from("user/8"),
        packet_id: Some(pid(id)),
        payload: Bytes::from_static(b"once"),
        properties: Properties::default(),
    })
}

#[test]
fn the_connack_of_a_persistent_session_waits_for_its_state_and_a_suback_for_its_subscription() {
    let mut h = Held::new(None, 3, None);
    assert_eq!(h.packets(), vec![], "the CONNACK waits");
    assert_eq!(h.pending.len(), 1);
    assert_eq!(h.last_state().inbox_start, Seq(3));
    h.durable();
    assert!(matches!(h.packets().as_slice(), [Packet::ConnAck(a)] if !a.session_present));
    h.b.on_packet(subscribe(1, "user/7", QoS::AtLeastOnce));
    assert_eq!(h.packets(), vec![], "the SUBACK waits");
    assert_eq!(
        h.last_state().subs.len(),
        1,
        "the write holds the subscription"
    );
    h.durable();
    assert!(matches!(h.packets().as_slice(), [Packet::SubAck(_)]));
}

#[test]
fn a_new_inbound_qos2_publish_reaches_the_core_only_once_its_native_id_is_durable() {
    let mut h = Held::live();
    h.packets();
    h.core();
    h.b.on_packet(qos2_publish(9));
    assert_eq!(h.core(), vec![], "the SEND waits for the id to be durable");
    let inbound = h.last_state().inbound;
    let id = inbound[&9].client_msg_id;
    h.durable();
    match h.core().as_slice() {
        [Frame::Send(s)] => assert_eq!(s.client_msg_id, id),
        other => panic!("{other:?}"),
    }
    h.b.on_frame(Frame::SendAck(SendAck {
        client_msg_id: id,
        seq: Seq(1),
        own_seq: Seq(1),
        result: SendResult::Stored,
    }));
    // "Stored" is a hint written later: the PUBREC does not wait for it.
    assert_eq!(h.packets(), vec![Packet::PubRec(PubReply::success(pid(9)))]);
    assert!(h.pending.is_empty());
    h.b.on_packet(Packet::PubRel(PubReply::success(pid(9))));
    assert!(matches!(h.core().as_slice(), [Frame::Rel { .. }]));
    h.b.on_frame(Frame::Comp { client_msg_id: id });
    assert_eq!(h.packets(), vec![], "the PUBCOMP waits for the release");
    assert!(h.last_state().inbound.is_empty());
    h.durable();
    assert_eq!(
        h.packets(),
        vec![Packet::PubComp(PubReply::success(pid(9)))]
    );
}

#[test]
fn an_outbound_qos2_publish_waits_for_its_packet_id_and_the_pubrel_for_the_receipt() {
    let mut h = Held::live();
    h.b.on_packet(subscribe(1, "user/7", QoS::ExactlyOnce));
    h.durable();
    h.packets();
    h.core();
    h.b.on_frame(Frame::Push(push(1, ME.0, Qos::ExactlyOnce)));
    assert_eq!(h.packets(), vec![], "the PUBLISH waits for its packet id");
    let pid1 = h.last_state().out_pids[&1];
    h.durable();
    let sent = h.packets();
    let [Packet::Publish(p)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(p.packet_id.map(|p| p.get()), Some(pid1));
    h.b.on_packet(Packet::PubRec(PubReply::success(pid(pid1))));
    assert_eq!(h.packets(), vec![], "the PUBREL waits for the receipt");
    let state = h.last_state();
    assert!(state.out_pids.is_empty() && state.rel_pending.contains(&pid1));
    assert_eq!(state.inbox_acked, Seq(1), "the message is done");
    h.durable();
    assert_eq!(
        h.packets(),
        vec![Packet::PubRel(PubReply::success(pid(pid1)))]
    );
}

#[test]
fn qos1_deliveries_and_room_positions_are_written_deferred_and_hold_nothing() {
    let mut h = Held::live();
    h.b.on_packet(subscribe(1, "user/7", QoS::AtLeastOnce));
    h.durable();
    h.packets();
    h.b.on_frame(Frame::Push(push(1, ME.0, Qos::AtLeastOnce)));
    let sent = h.packets();
    assert!(matches!(sent.as_slice(), [Packet::Publish(_)]), "{sent:?}");
    assert!(h.pending.is_empty());
    assert!(!h.deferred.is_empty(), "the packet id is written, deferred");
}

/// The write failed: what waited for it never leaves (a v5 client hears
/// DISCONNECT 0x80), and the session ends.
#[test]
fn a_failed_state_write_withdraws_what_waited_for_it_and_ends_the_session() {
    let mut h = Held::persistent(ProtocolLevel::V5);
    h.durable();
    h.packets();
    h.core();
    h.b.on_packet(subscribe(1, "user/7", QoS::AtLeastOnce));
    h.take_writes();
    let id = h.pending[0].report.expect("reported");
    h.b.on_state_stored(id, false);
    match h.packets().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::UNSPECIFIED_ERROR),
        other => panic!("no SUBACK, a DISCONNECT: {other:?}"),
    }
    assert!(h.b.wants_close());
    assert!(h.core().contains(&Frame::disconnect(ErrorCode::Normal, "")));
}

/// After a restart the session resumes from what it acknowledged: a QoS 2
/// message received (PUBREC) out of order is never sent again, and an
/// unacknowledged one comes with its packet id and DUP, although the
/// core's cursor is behind both.
#[test]
fn a_restart_resumes_from_what_the_session_acknowledged() {
    let mut stored = SessionState::new(1);
    stored.subs.push(Subscription {
        filter: MqttString::from("user/7"),
        options: SubscriptionOptions::qos(QoS::ExactlyOnce),
    });
    stored.inbox_acked = Seq(5);
    stored.done.insert(7);
    stored.out_pids.insert(6, 60);
    stored.out_pids.insert(8, 80);
    let mut h = Held::new(Some(stored), 8, Some(2));
    h.durable();
    assert!(matches!(h.packets().as_slice(), [Packet::ConnAck(a)] if a.session_present));
    let request = match h.core().as_slice() {
        [Frame::Sync(s)] => {
            assert_eq!(
                s.direction,
                SyncDirection::After(Seq(5)),
                "not from the cursor (2)"
            );
            s.request_id
        }
        other => panic!("{other:?}"),
    };
    h.b.on_frame(Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(8),
        end: false,
        gap: false,
        items: (6..=8).map(|s| push(s, ME.0, Qos::ExactlyOnce)).collect(),
    }));
    h.durable();
    let sent: Vec<(u64, bool, u16)> = h
        .packets()
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.payload.len() as u64,
                p.dup,
                p.packet_id.expect("QoS 2").get(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![(2, true, 60), (2, true, 80)],
        "seq 7 is not sent again"
    );
}

/// A crash lost the "stored" hint of an inbound QoS 2 entry: the client's
/// PUBREL (it had the PUBREC) still releases it, instead of answering
/// "unknown packet id" and leaving the id taken for good (a later
/// PUBLISH with that id would have been taken for the old message).
#[test]
fn a_pubrel_after_a_restart_releases_an_entry_whose_stored_hint_was_lost() {
    let mut stored = SessionState::new(1);
    stored.inbound.insert(
        4,
        Inbound {
            client_msg_id: 77,
            to: UserId(8),
            stored: false,
        },
    );
    let mut h = Held::new(Some(stored), 0, None);
    h.durable();
    h.packets();
    h.core();
    h.b.on_packet(Packet::PubRel(PubReply::success(pid(4))));
    assert_eq!(
        h.core(),
        vec![Frame::Rel {
            client_msg_id: 77,
            to: UserId(8)
        }]
    );
    h.b.on_frame(Frame::Comp { client_msg_id: 77 });
    h.durable();
    assert_eq!(
        h.packets(),
        vec![Packet::PubComp(PubReply::success(pid(4)))]
    );
}

/// A clean session over a stored one deletes it before its CONNACK, so a
/// crash cannot resume what the client was told is gone.
#[test]
fn a_clean_session_deletes_a_stored_one_before_its_connack() {
    let mut h = Held::of(Bridge::new(
        connect(ProtocolLevel::V311, true),
        "t".into(),
        me(),
        Some(SessionState::new(1)),
        1,
        params(),
    ));
    h.core();
    h.b.on_frame(native_connack(0, None));
    assert_eq!(h.packets(), vec![]);
    assert_eq!(h.pending.len(), 1);
    assert_eq!(h.pending[0].value, None, "a deletion");
    h.durable();
    assert!(matches!(h.packets().as_slice(), [Packet::ConnAck(a)] if !a.session_present));
    // The connection ends: the session is not written again.
    let done = h.b.finish(5);
    assert!(matches!(done.keep, Keep::Forget));
}

/// Found by the simulator (seed 26 with `SIM_MQTT_SHARE=1`): when the
/// record of a new persistent session could not be stored (the log had
/// failed), its CONNACK still went out, announcing a session the next
/// connection did not find. The CONNACK is a refusal now, in both
/// versions, and the core is told to close.
#[test]
fn a_connack_whose_session_could_not_be_stored_is_a_refusal() {
    for (level, code) in [
        (ProtocolLevel::V311, ReasonCode(0x03)),
        (ProtocolLevel::V5, ReasonCode::SERVER_UNAVAILABLE),
    ] {
        let mut h = Held::persistent(level);
        h.take_writes();
        let id = h.pending[0].report.expect("the CONNACK waits for it");
        h.b.on_state_stored(id, false);
        match h.packets().as_slice() {
            [Packet::ConnAck(a)] => {
                assert_eq!((a.code, a.session_present), (code, false), "{level:?}")
            }
            other => panic!("{level:?}: {other:?}"),
        }
        assert!(h.b.wants_close());
        assert!(h.core().contains(&Frame::disconnect(ErrorCode::Normal, "")));
        assert!(
            matches!(h.b.finish(1).keep, Keep::Nothing),
            "a refused session leaves the stored one as it was"
        );
    }
}

/// Found by the simulator (seed 791 with `SIM_MQTT_SHARE=1`): a QoS 2
/// PUBLISH whose store failed on one shard (its own-inbox copy was durable
/// on the other) got PUBREC 0x80 (5.0) or a close (3.1.1) that also freed
/// its packet id, so the client's retry became a new message and was
/// stored a second time. Now, in both versions, the session ends without
/// PUBREC and the packet id keeps its native id: the resend on the next
/// connection carries the same id to the core, which recognises the copy
/// already stored.
#[test]
fn a_qos2_publish_stored_in_part_keeps_its_native_id_for_the_resend() {
    for level in [ProtocolLevel::V5, ProtocolLevel::V311] {
        let mut h = Held::persistent(level);
        h.durable();
        h.packets();
        h.core();
        h.b.on_packet(qos2_publish(5));
        h.durable();
        let id = match h.core().as_slice() {
            [Frame::Send(s)] => s.client_msg_id,
            other => panic!("{other:?}"),
        };
        h.b.on_frame(Frame::SendAck(SendAck {
            client_msg_id: id,
            seq: Seq(0),
            own_seq: Seq(0),
            result: SendResult::StorageUnavailable,
        }));
        h.durable();
        assert!(
            !h.packets().iter().any(|p| matches!(p, Packet::PubRec(_))),
            "{level:?}: no PUBREC"
        );
        assert!(h.b.wants_close(), "{level:?}");
        let Keep::Save(state) = h.b.finish(1).keep else {
            panic!("a persistent session is kept");
        };
        // The next connection: the resend goes to the core with the same id.
        let mut next = Held::new(Some(*state), 0, None);
        next.durable();
        next.packets();
        next.core();
        next.b.on_packet(qos2_publish(5));
        next.durable();
        match next.core().as_slice() {
            [Frame::Send(s)] => assert_eq!(s.client_msg_id, id, "{level:?}"),
            other => panic!("{level:?}: {other:?}"),
        }
    }
}

/// A SUBACK that waits for the core (here a wildcard filter's
/// registration; a room's SUBACK likewise) leaves only once the state
/// write of its subscription is durable, however late the core answers,
/// and not at all when that write fails. Found by the simulator: the core
/// answered before the write's outcome, the SUBACK went out, the write
/// failed and the session (reconnected) no longer had the filter, while
/// the client, holding its SUBACK, never subscribed again and missed every
/// message.
#[test]
fn a_suback_the_core_confirms_late_still_waits_for_the_subscriptions_write() {
    for fails in [false, true] {
        let mut h = Held::persistent(ProtocolLevel::V5);
        h.durable();
        h.packets();
        h.core();
        h.b.on_packet(subscribe(1, "#", QoS::AtLeastOnce));
        h.take_writes();
        assert_eq!(
            h.pending.len(),
            1,
            "the subscription's write, not durable yet"
        );
        let registered = h.core();
        assert!(
            registered
                .iter()
                .any(|f| matches!(f, Frame::Filter(r) if r.filter == "#" && !r.remove)),
            "{registered:?}"
        );
        h.b.on_frame(Frame::Topic(surepush_proto::TopicSeen {
            room: 0,
            seq: Seq(1),
            name: "#".into(),
        }));
        assert_eq!(h.packets(), vec![], "the SUBACK waits for the write");
        let id = h.pending.remove(0).report.expect("reported");
        h.b.on_state_stored(id, !fails);
        let packets = h.packets();
        if fails {
            assert!(
                matches!(packets.as_slice(), [Packet::Disconnect(_)]),
                "no SUBACK for a subscription that was not stored: {packets:?}"
            );
        } else {
            assert!(
                matches!(packets.as_slice(), [Packet::SubAck(a)] if a.reasons == vec![ReasonCode(1)]),
                "{packets:?}"
            );
        }
    }
}

/// A persistent session with `$share/g/jobs/+` at QoS 2, resumed from
/// `stored` (or made with it) and live.
fn shared_member(stored: Option<SessionState>) -> Held {
    let stored = stored.unwrap_or_else(|| {
        let mut s = SessionState::new(1);
        s.subs.push(Subscription {
            filter: MqttString::from("$share/g/jobs/+"),
            options: SubscriptionOptions::qos(QoS::ExactlyOnce),
        });
        s
    });
    let mut h = Held::new(Some(stored), 0, None);
    h.durable();
    h.packets();
    let request = h
        .core()
        .into_iter()
        .find_map(|f| match f {
            Frame::Sync(s) => Some(s.request_id),
            _ => None,
        })
        .expect("a SYNC");
    h.b.on_frame(empty_sync_page(request));
    h
}

/// The answer to SYNC `request` of a session whose inbox is empty.
fn empty_sync_page(request: u32) -> Frame {
    Frame::SyncPage(SyncPage {
        request_id: request,
        head: Seq(0),
        end: true,
        gap: false,
        items: vec![],
    })
}

fn share_push() -> Frame {
    use surepush_proto::topic_stream::{frame_payload, stream_id};
    Frame::SharePush(surepush_proto::SharePush {
        group: surepush_proto::share_key("g", "jobs/+"),
        push: surepush_proto::RoomPush {
            room: stream_id("jobs/1"),
            seq: Seq(4),
            from: UserId(9),
            ts_ms: 0,
            qos: Qos::ExactlyOnce,
            attrs: Bytes::new(),
            payload: frame_payload("jobs/1", b"m4"),
        },
    })
}

fn share_acks(frames: Vec<Frame>) -> usize {
    frames
        .iter()
        .filter(|f| matches!(f, Frame::ShareAck(a) if a.seq == Seq(4)))
        .count()
}

/// Issue #21, gap (2) of MQTT.md 3.3: a share group gives a QoS 2
/// message again after a restart lost its record (DUP). The session
/// resends it with the packet id it had (durable before it first left),
/// so the client's QoS 2 state knows it; and once the client sent PUBREC
/// (durable before the SHAREACK and the PUBREL leave) it is not sent again
/// at all, only finished for the group.
#[test]
fn a_shared_qos2_message_given_again_after_a_restart_keeps_its_packet_id_or_is_not_sent() {
    let mut h = shared_member(None);
    h.b.on_frame(share_push());
    assert_eq!(h.packets(), vec![], "the PUBLISH waits for its packet id");
    let pid1 = *h
        .last_state()
        .wild()
        .shared_pids
        .values()
        .next()
        .expect("kept");
    h.durable();
    let first = h.packets();
    let [Packet::Publish(p)] = first.as_slice() else {
        panic!("{first:?}")
    };
    assert_eq!((p.packet_id.map(|p| p.get()), p.dup), (Some(pid1), false));

    // A kill -9 before the PUBREC: the group gives it again.
    let mut h = shared_member(Some(h.last_state()));
    h.b.on_frame(share_push());
    h.durable();
    let again = h.packets();
    let [Packet::Publish(p)] = again.as_slice() else {
        panic!("{again:?}")
    };
    assert_eq!((p.packet_id.map(|p| p.get()), p.dup), (Some(pid1), true));

    h.b.on_packet(Packet::PubRec(PubReply::success(pid(pid1))));
    assert_eq!(h.packets(), vec![], "the PUBREL waits for the receipt");
    assert_eq!(share_acks(h.core()), 0, "and so does the SHAREACK");
    let state = h.last_state();
    assert!(state.wild().shared_pids.is_empty());
    assert_eq!(state.wild().shared_done.values().next(), Some(&pid1));
    h.durable();
    assert_eq!(
        h.packets(),
        vec![Packet::PubRel(PubReply::success(pid(pid1)))]
    );
    assert_eq!(share_acks(h.core()), 1);

    // A kill -9 before the group's record of that SHAREACK was durable:
    // the group gives it again; the client does not get it again.
    let mut h = shared_member(Some(h.last_state()));
    h.b.on_frame(share_push());
    h.durable();
    let publishes = h
        .packets()
        .into_iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count();
    assert_eq!(publishes, 0);
    assert_eq!(share_acks(h.core()), 1, "finished for the group");
    // PUBCOMP (for the PUBREL the resumed session sent again) completes
    // it; the session still knows it (the group may not have recorded its
    // SHAREACK durably yet, and a restart gives it again) ...
    h.b.on_packet(Packet::PubComp(PubReply::success(pid(pid1))));
    h.packets();
    assert_eq!(h.last_state().wild().shared_completed.len(), 1);
    let mut h = shared_member(Some(h.last_state()));
    h.b.on_frame(share_push());
    h.durable();
    assert!(!h.packets().iter().any(|p| matches!(p, Packet::Publish(_))));
    assert_eq!(share_acks(h.core()), 1);
    // ... until the group confirms the join: it gives everything it
    // counts as the member's before that.
    h.b.on_frame(Frame::Topic(surepush_proto::TopicSeen {
        room: 0,
        seq: Seq(1),
        name: "$share/g/jobs/+".into(),
    }));
    h.packets();
    assert!(h.last_state().wild.is_none());
}
