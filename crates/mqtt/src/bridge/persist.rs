//! What of an MQTT session must be durable before which packet, and the
//! gate that holds packets until it is (issue #16 item 4).
//!
//! The session's durable state ([`SessionState`]) and the retained
//! messages a session sets are keyed state records in the segment log. The
//! bridge hands them to the driver ([`Bridge::poll_state`]), which gives
//! them to the core of its shard (appended on the key's owner shard, in log
//! order with the messages); the driver reports each one durable
//! ([`Bridge::on_state_stored`]). Nothing blocks: the group commit that
//! makes the messages durable makes the state durable.
//!
//! [`need`] is the one place that says, per kind of change, what waits for
//! it. A change that needs it holds every packet for the client (and, for
//! an inbound QoS 2 PUBLISH, every frame for the core) queued before the
//! next [`Bridge::poll_state`], until that write is durable; packets keep
//! their order. A deferred change is written with the core's bookkeeping
//! flush (`core.cursor_flush_ms`); a crash can lose it, which costs at
//! most a QoS 1 (or room) message delivered again, never a loss and never
//! a QoS 2 duplicate.
//!
//! Call order for a driver: after every input, [`Bridge::poll_state`]
//! until `None`, then [`Bridge::poll_state_query`], then
//! [`Bridge::poll_packet`] and [`Bridge::poll_core`]. While a change that
//! gates is not yet polled, `poll_packet` (and `poll_core` for the core's
//! gate) hold everything back.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use super::busy::{Lazy, OnDemand};
use super::{Bridge, Retained};
use crate::{Packet, ReasonCode};
use surepush_proto::StateKey;
use surepush_proto::{ErrorCode, Frame, ROOM_BIT};

/// What changed in the durable state of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// A persistent session begins on this connection (new, resumed or
    /// taken over): its CONNACK says "session present" from now on.
    Started,
    /// Stored state is dropped (clean start, or a session that ends with
    /// its connection): a crash must not bring it back after the CONNACK.
    Discarded,
    /// Subscriptions changed (SUBSCRIBE, UNSUBSCRIBE, a room refused).
    Subscriptions,
    /// A room's position became known (the core's SUBACK, or a gap).
    RoomStart,
    /// A known room position moved (the client acknowledged room messages).
    RoomProgress,
    /// An inbound QoS 2 PUBLISH got the native id every retry will carry.
    InboundAccepted,
    /// An inbound QoS 2 PUBLISH was stored (its SENDACK).
    InboundStored,
    /// An inbound QoS 2 entry was dropped: released (COMP), or refused.
    InboundDropped,
    /// An outbound QoS 2 PUBLISH took its packet id.
    OutboundQos2Sent,
    /// The client received an outbound QoS 2 message (PUBREC).
    OutboundReceived,
    /// The client received a share group's QoS 2 message (PUBREC): its
    /// SHAREACK follows.
    SharedReceived,
    /// Outbound QoS 1 packet ids, PUBCOMP, the inbox position.
    Bookkeeping,
}

/// What waits for a change to be durable. Ordered: a later one includes
/// the earlier ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Need {
    /// Nothing changed.
    #[default]
    Nothing,
    /// Written with the next bookkeeping flush; nothing waits.
    Deferred,
    /// The packets for the client queued so far wait for it.
    BeforeClient,
    /// The frames for the core queued so far wait too.
    BeforeCore,
}

/// The rule: what must not happen before a change is durable, and why.
pub(super) fn need(change: Change) -> Need {
    match change {
        // The CONNACK says "session present" / "clean"; after a crash the
        // session must be found (or stay gone) as it said.
        Change::Started | Change::Discarded => Need::BeforeClient,
        // SUBACK and UNSUBACK confirm the subscriptions.
        Change::Subscriptions => Need::BeforeClient,
        // A room subscription from "now" is confirmed by its SUBACK; a
        // restart must resume it where that SUBACK started, not from a
        // later "now" (what came in between would be lost).
        Change::RoomStart => Need::BeforeClient,
        // Losing it repeats room messages (rooms are QoS 0/1).
        Change::RoomProgress => Need::Deferred,
        // The SEND must not reach any log before the native id is durable:
        // its copy on another shard could survive a crash that loses the
        // id, and the client's retry would then be stored a second time.
        Change::InboundAccepted => Need::BeforeCore,
        // A hint only: a PUBREL for the packet id proves it stored.
        Change::InboundStored => Need::Deferred,
        // After PUBCOMP (or a refusal) the client may reuse the packet id
        // for a new message, which must not be taken for the old one.
        Change::InboundDropped => Need::BeforeClient,
        // A resend after a crash must carry the same packet id, or the
        // client cannot tell it from a new message and delivers it twice.
        Change::OutboundQos2Sent => Need::BeforeClient,
        // After PUBREL the client forgets the packet id: the message must
        // never be sent again, so "received" is durable first.
        Change::OutboundReceived => Need::BeforeClient,
        // The SHAREACK lets the group forget the message: a restart that
        // loses the group's record of it gives it to this session again
        // (DUP), which must know that its client has it, or the client
        // would get it twice.
        Change::SharedReceived => Need::BeforeCore,
        // QoS 1 allows a repeat; a lost PUBCOMP only repeats the PUBREL.
        Change::Bookkeeping => Need::Deferred,
    }
}

/// A keyed state write for the core (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateWrite {
    /// Whose state.
    pub key: StateKey,
    /// The new value, or `None` to delete it.
    pub value: Option<Bytes>,
    /// `Some(id)`: packets wait for it; report it with
    /// [`Bridge::on_state_stored`]. `None`: deferred, never reported.
    pub report: Option<u64>,
}

/// Packets and frames held until the state writes before them are durable.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Changes since the last [`Bridge::poll_state`], by what they need.
    pub(super) need: Need,
    /// A deletion of the stored session is due ([`Change::Discarded`]).
    pub(super) discard: bool,
    /// The session may have a record in the log (so ending it must delete
    /// it).
    pub(super) logged: bool,
    next_id: u64,
    /// The queues, made on first use and dropped when they empty out
    /// ([`Gate::release_idle_memory`]; issue #17 goal 4).
    pub(super) q: Lazy<GateQueues>,
}

/// What a [`Gate`] holds while state writes are under way.
#[derive(Debug, Default)]
pub(super) struct GateQueues {
    /// Writes handed out and not yet reported durable.
    pending: BTreeSet<u64>,
    /// Writes to hand out.
    pub(super) writes: VecDeque<StateWrite>,
    /// Packets for the client waiting for every write up to their id.
    pub(super) client: VecDeque<(u64, Packet)>,
    /// Frames for the core, likewise.
    pub(super) core: VecDeque<(u64, Frame)>,
}

static NO_QUEUES: GateQueues = GateQueues {
    pending: BTreeSet::new(),
    writes: VecDeque::new(),
    client: VecDeque::new(),
    core: VecDeque::new(),
};

impl OnDemand for GateQueues {
    fn empty() -> &'static GateQueues {
        &NO_QUEUES
    }

    fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.writes.is_empty()
            && self.client.is_empty()
            && self.core.is_empty()
    }

    fn shrink(&mut self) {
        super::release_if_empty(&mut self.writes);
        super::release_if_empty(&mut self.client);
        super::release_if_empty(&mut self.core);
        // Every reported write leaves and empties this set.
        super::release_tree_if_empty(&mut self.pending);
    }
}

impl Gate {
    fn open(&self, barrier: u64) -> bool {
        self.q.pending.first().is_none_or(|&p| p > barrier)
    }

    /// The next packet for the client: held ones first, in order; `queued`
    /// only when nothing is held and no gating change awaits its write.
    pub(super) fn next_packet(&mut self, queued: &mut VecDeque<Packet>) -> Option<Packet> {
        if let Some(&(barrier, _)) = self.q.client.front() {
            return self
                .open(barrier)
                .then(|| self.q.client.pop_front().expect("checked").1);
        }
        if self.need >= Need::BeforeClient {
            return None;
        }
        queued.pop_front()
    }

    /// The next frame for the core, as [`Gate::next_packet`].
    pub(super) fn next_frame(&mut self, queued: &mut VecDeque<Frame>) -> Option<Frame> {
        if let Some(&(barrier, _)) = self.q.core.front() {
            return self
                .open(barrier)
                .then(|| self.q.core.pop_front().expect("checked").1);
        }
        if self.need >= Need::BeforeCore {
            return None;
        }
        queued.pop_front()
    }

    /// Whether frames for the core are held (the keep-alive waits too).
    pub(super) fn core_held(&self) -> bool {
        !self.q.core.is_empty() || self.need >= Need::BeforeCore
    }

    /// Frees the buffers of the gate's empty queues (see
    /// [`Bridge::release_idle_memory`]).
    pub(super) fn release_idle_memory(&mut self) {
        self.q.release_idle_memory();
    }

    fn report(&mut self) -> u64 {
        self.next_id += 1;
        self.q.pending.insert(self.next_id);
        self.next_id
    }
}

impl Bridge {
    /// Notes a change of the durable state (see [`need`]).
    pub(super) fn changed(&mut self, change: Change) {
        if change == Change::Discarded {
            self.gate.discard = true;
        }
        self.gate.need = self.gate.need.max(need(change));
    }

    fn session_key(&self) -> StateKey {
        StateKey::MqttSession {
            user: self.user,
            device: self.device,
        }
    }

    /// The next state write for the core (see the module docs for the call
    /// order). A write with an id holds what was queued before it.
    pub fn poll_state(&mut self) -> Option<StateWrite> {
        self.seal_writes();
        if self.gate.q.writes.is_empty() {
            return None; // nothing to make the queues for
        }
        self.gate.q.writes.pop_front()
    }

    /// Turns the changes since the last call into writes, and holds what
    /// the gating ones must precede.
    fn seal_writes(&mut self) {
        let need = std::mem::take(&mut self.gate.need);
        let mut barrier = None;
        let key = self.session_key();
        if std::mem::take(&mut self.gate.discard) && !self.persistent {
            let id = self.gate.report();
            barrier = Some(id);
            self.gate.q.writes.push_back(StateWrite {
                key,
                value: None,
                report: Some(id),
            });
        } else if need > Need::Nothing && self.persistent {
            let report = (need >= Need::BeforeClient).then(|| self.gate.report());
            barrier = barrier.max(report);
            self.gate.logged = true;
            self.gate.q.writes.push_back(StateWrite {
                key,
                value: Some(Bytes::from(self.state.encode())),
                report,
            });
        }
        while let Some(change) = self.busy.made_mut().and_then(|b| b.retains.pop_front()) {
            let id = self.gate.report();
            barrier = Some(id);
            self.retained_written(id, &change);
            self.gate.q.writes.push_back(StateWrite {
                key: change.key,
                value: change.value,
                report: Some(id),
            });
        }
        let Some(barrier) = barrier else { return };
        self.gate
            .q
            .client
            .extend(self.to_client.drain(..).map(|p| (barrier, p)));
        if need >= Need::BeforeCore {
            self.gate
                .q
                .core
                .extend(self.to_core.drain(..).map(|f| (barrier, f)));
        }
    }

    /// Queues `p` for the client behind every state write already handed
    /// out and not yet durable. For a packet made after the change it
    /// confirms was written: a SUBACK that waited for the core (a room's
    /// SUBACK, a wildcard filter's registration) could otherwise overtake
    /// the write of its subscription, and a client holding the SUBACK of a
    /// subscription whose write then failed never subscribes again. A
    /// change not yet written holds `p` anyway (`seal_writes`).
    pub(super) fn queue_after_writes(&mut self, p: Packet) {
        if self.gate.need < Need::BeforeClient {
            if let Some(&last) = self.gate.q.pending.last() {
                // Behind it too: what was queued before `p` (order kept).
                let queued = self.to_client.drain(..).map(|q| (last, q));
                self.gate.q.client.extend(queued);
                self.gate.q.client.push_back((last, p));
                return;
            }
        }
        self.to_client.push_back(p);
    }

    /// The state write `id` is durable (`ok`), or could not be stored: then
    /// what waited for it is withdrawn and the session ends; the client
    /// retries on its next connection. A CONNACK that waited becomes a
    /// refusal (5.0 0x88, 3.1.1 0x03): the session it would have announced
    /// is not stored (found by the simulator: a CONNACK kept here told a
    /// client its session existed, and the next connection found none).
    /// Once the CONNACK is out, a 5.0 client gets DISCONNECT 0x80.
    pub fn on_state_stored(&mut self, id: u64, ok: bool) {
        let topic_retained = self.topic_retained_reported(id);
        if !self.gate.q.pending.remove(&id) || ok {
            return;
        }
        if let Some(ack) = topic_retained {
            return self.topic_retained_refused(ack);
        }
        tracing::error!(
            user = self.user.0,
            device = self.device.0,
            "cannot store MQTT session state or a retained message: closing the session"
        );
        self.gate.q.pending.clear();
        self.gate.q.core.clear();
        let held = std::mem::take(&mut self.gate.q.client)
            .into_iter()
            .map(|(_, p)| p);
        let connack_held = held
            .chain(self.to_client.drain(..))
            .any(|p| matches!(p, Packet::ConnAck(_)));
        if connack_held {
            self.refuse_session(ReasonCode::SERVER_UNAVAILABLE);
            self.to_core
                .push_back(Frame::disconnect(ErrorCode::Normal, ""));
        } else {
            self.close_session(
                ReasonCode::UNSPECIFIED_ERROR,
                "could not store the session state",
            );
        }
    }

    /// The next key whose value the session wants (a room's retained
    /// message for a new subscription); answer with
    /// [`Bridge::on_state_value`].
    pub fn poll_state_query(&mut self) -> Option<StateKey> {
        let Some(room) = self
            .busy
            .made_mut()
            .and_then(|b| b.retained_queries.pop_front())
        else {
            return self.poll_topic_query();
        };
        Some(StateKey::Retained {
            room: surepush_proto::UserId(room | ROOM_BIT),
        })
    }

    /// The value of a key asked for with [`Bridge::poll_state_query`].
    pub fn on_state_value(&mut self, key: StateKey, value: Option<Bytes>) {
        let StateKey::Retained { room } = key else {
            return;
        };
        if surepush_proto::topic_stream::is_topic_stream(room.0) {
            return self.on_topic_retained(room.0 & !ROOM_BIT, value);
        }
        match value.as_deref().map(Retained::decode) {
            Some(Some(msg)) => self.deliver_retained(room.0 & !ROOM_BIT, msg),
            Some(None) => tracing::warn!(
                room = room.0 & !ROOM_BIT,
                "unreadable retained message ignored"
            ),
            None => {}
        }
    }
}
