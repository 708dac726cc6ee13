//! The durable part of an MQTT session and of a room's retained message,
//! and their byte forms (the values of the log's keyed state records,
//! `StateKey::MqttSession` and `StateKey::Retained`).
//!
//! Both forms are versioned and checked on decode (a value that does not
//! parse is not a session). Which change must be durable before which
//! packet is decided in `persist.rs`, not here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU32;

use bytes::Bytes;

use super::rooms::RoomSub;
use crate as mqtt;
use crate::{MqttString, PacketId, QoS, Subscription};
use surepush_proto::{Seq, UserId};

/// Session state that outlives a connection (persistent sessions).
#[derive(Clone, Debug, Default)]
pub struct SessionState {
    /// Inbox subscriptions (filters other than `room/{n}`).
    pub(super) subs: Vec<Subscription>,
    /// Room subscriptions by room number.
    pub(super) rooms: BTreeMap<u64, RoomSub>,
    /// Inbound QoS 2 messages awaiting PUBREL, by packet id.
    pub(super) inbound: BTreeMap<u16, Inbound>,
    /// Inbox messages sent and not acknowledged: seq → packet id (resent
    /// with the same id and DUP on reconnect).
    pub(super) out_pids: BTreeMap<u64, u16>,
    /// Outbound QoS 2 messages whose PUBREC arrived: awaiting PUBCOMP.
    pub(super) rel_pending: BTreeSet<u16>,
    /// Next native `client_msg_id` for an inbound PUBLISH.
    pub(super) next_msg_id: u64,
    /// The inbox head when the session began: a resumed session never
    /// replays from before it, even when the device has no cursor yet.
    pub(super) inbox_start: Seq,
    /// The inbox prefix the client acknowledged (as this session told the
    /// core): a resumed session replays from no earlier, whatever cursor
    /// the core persisted (version 3).
    pub(super) inbox_acked: Seq,
    /// Inbox messages above `inbox_acked` the client acknowledged (PUBACK,
    /// PUBREC) out of order: never sent again, not even after a restart
    /// (version 3).
    pub(super) done: BTreeSet<u64>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never, as in 3.1.1).
    pub(super) expiry_s: u32,
    /// When the last connection ended (ms since the epoch; 0: connected).
    pub(super) ended_ms: u64,
    /// MQTT 5 Subscription Identifiers by the filter they were given with
    /// (`identifiers.rs`; version 4).
    pub(super) sub_ids: BTreeMap<String, NonZeroU32>,
    /// What wildcard filters and QoS 2 on topic streams keep (version 4);
    /// boxed and absent in sessions that use neither.
    pub(super) wild: Option<Box<StreamState>>,
}

/// The topic stream part of a session (`wildcards.rs`, version 4).
#[derive(Clone, Debug, Default)]
pub(super) struct StreamState {
    /// Topic streams found through wildcard filters: room number → the
    /// names its TOPIC notices carried.
    pub(super) streams: BTreeMap<u64, Vec<String>>,
    /// Topic stream messages sent at QoS 2 and not yet received (PUBREC):
    /// (room, seq) → packet id, resent with the same id and DUP after a
    /// reconnect or a restart.
    pub(super) room_pids: BTreeMap<(u64, u64), u16>,
    /// Topic stream messages received (PUBREC) above their room's
    /// position: never sent again, not even after a restart.
    pub(super) room_done: BTreeSet<(u64, u64)>,
    /// When each wildcard topic filter was subscribed (ms since the
    /// epoch): a stream found later delivers no message stored before.
    pub(super) filter_since: BTreeMap<String, u64>,
    /// Share group messages sent at QoS 2 and not yet received (PUBREC):
    /// (group, stream, seq) → packet id, resent with the same id and DUP
    /// when the group gives them again after a reconnect or a restart
    /// (`shared.rs`, version 5).
    pub(super) shared_pids: BTreeMap<SharedKey, u16>,
    /// Share group messages received (PUBREC) whose PUBCOMP has not come:
    /// (group, stream, seq) → packet id. One the group gives again (a
    /// restart lost its SHAREACK) is not sent again (version 5).
    pub(super) shared_done: BTreeMap<SharedKey, u16>,
    /// Share group messages completed (PUBCOMP), newest last, at most
    /// [`SHARED_COMPLETED_KEPT`], until the group's next join is confirmed:
    /// not sent again either (`shared.rs`, version 5).
    pub(super) shared_completed: VecDeque<SharedKey>,
}

/// How many completed share group messages a session remembers.
pub(super) const SHARED_COMPLETED_KEPT: usize = 64;

/// A share group message: (group key, stream, seq).
pub(super) type SharedKey = (u64, u64, u64);

static NO_STREAMS: StreamState = StreamState {
    streams: BTreeMap::new(),
    room_pids: BTreeMap::new(),
    room_done: BTreeSet::new(),
    filter_since: BTreeMap::new(),
    shared_pids: BTreeMap::new(),
    shared_done: BTreeMap::new(),
    shared_completed: VecDeque::new(),
};

impl StreamState {
    fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.room_pids.is_empty()
            && self.room_done.is_empty()
            && self.filter_since.is_empty()
            && self.shared_pids.is_empty()
            && self.shared_done.is_empty()
            && self.shared_completed.is_empty()
    }
}

/// Version byte of [`SessionState::encode`]. Version 2 marks whether a
/// room position is known (issue #16 item 2); version 3 adds the inbox
/// position and the out-of-order acknowledgements (issue #16 item 4).
/// Version 4 adds the subscription identifiers (issue #21 item 3), the
/// topic streams found through wildcard filters and the QoS 2 bookkeeping
/// of topic streams (issue #21 item 1). Version 5 adds the QoS 2
/// bookkeeping of share group messages (issue #21, shared subscriptions).
/// Versions 1 to 4 (the files of earlier builds) still load.
pub(super) const STATE_VERSION: u8 = 5;

impl SessionState {
    /// Frees the nodes of the trees that emptied (see
    /// [`super::release_tree_if_empty`]); called with the bridge's
    /// `release_idle_memory`.
    pub(super) fn release_idle_memory(&mut self) {
        use super::release_tree_if_empty as release;
        release(&mut self.rooms);
        release(&mut self.inbound);
        release(&mut self.out_pids);
        release(&mut self.rel_pending);
        release(&mut self.done);
        release(&mut self.sub_ids);
        if self.wild.as_ref().is_some_and(|w| w.is_empty()) {
            self.wild = None;
        }
    }

    /// The topic stream part (empty when there is none).
    pub(super) fn wild(&self) -> &StreamState {
        self.wild.as_deref().unwrap_or(&NO_STREAMS)
    }

    /// The topic stream part, made if there is none.
    pub(super) fn wild_mut(&mut self) -> &mut StreamState {
        self.wild.get_or_insert_with(Box::default)
    }

    /// The durable part of the session (subscriptions, room positions,
    /// inbound QoS 2 awaiting PUBREL, outbound packet ids, where the session
    /// began and what it acknowledged, expiry) in a versioned binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + 32 * (self.subs.len() + self.rooms.len() + self.inbound.len())
                + 10 * self.out_pids.len()
                + 8 * self.done.len()
                + 40 * self.sub_ids.len(),
        );
        out.push(STATE_VERSION);
        out.extend_from_slice(&(self.subs.len() as u32).to_le_bytes());
        for s in &self.subs {
            let f = s.filter.as_bytes();
            out.extend_from_slice(&(f.len() as u16).to_le_bytes());
            out.extend_from_slice(f);
            out.push(options_byte(&s.options));
        }
        out.extend_from_slice(&(self.rooms.len() as u32).to_le_bytes());
        for (&n, r) in &self.rooms {
            r.encode(n, &mut out);
        }
        out.extend_from_slice(&(self.inbound.len() as u32).to_le_bytes());
        for (&pid, i) in &self.inbound {
            out.extend_from_slice(&pid.to_le_bytes());
            out.extend_from_slice(&i.client_msg_id.to_le_bytes());
            out.extend_from_slice(&i.to.0.to_le_bytes());
            out.push(u8::from(i.stored));
        }
        out.extend_from_slice(&self.next_msg_id.to_le_bytes());
        out.extend_from_slice(&self.inbox_start.0.to_le_bytes());
        out.extend_from_slice(&(self.out_pids.len() as u32).to_le_bytes());
        for (&seq, &pid) in &self.out_pids {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&pid.to_le_bytes());
        }
        out.extend_from_slice(&(self.rel_pending.len() as u32).to_le_bytes());
        for &pid in &self.rel_pending {
            out.extend_from_slice(&pid.to_le_bytes());
        }
        out.extend_from_slice(&self.expiry_s.to_le_bytes());
        out.extend_from_slice(&self.ended_ms.to_le_bytes());
        out.extend_from_slice(&self.inbox_acked.0.to_le_bytes());
        out.extend_from_slice(&(self.done.len() as u32).to_le_bytes());
        for &seq in &self.done {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        out.extend_from_slice(&(self.sub_ids.len() as u32).to_le_bytes());
        for (filter, id) in &self.sub_ids {
            out.extend_from_slice(&(filter.len() as u16).to_le_bytes());
            out.extend_from_slice(filter.as_bytes());
            out.extend_from_slice(&id.get().to_le_bytes());
        }
        let w = self.wild();
        out.extend_from_slice(&(w.streams.len() as u32).to_le_bytes());
        for (&n, names) in &w.streams {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(names.len() as u32).to_le_bytes());
            for name in names {
                out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.extend_from_slice(&(w.room_pids.len() as u32).to_le_bytes());
        for (&(n, seq), &pid) in &w.room_pids {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&pid.to_le_bytes());
        }
        out.extend_from_slice(&(w.room_done.len() as u32).to_le_bytes());
        for &(n, seq) in &w.room_done {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        out.extend_from_slice(&(w.filter_since.len() as u32).to_le_bytes());
        for (f, &since) in &w.filter_since {
            out.extend_from_slice(&(f.len() as u16).to_le_bytes());
            out.extend_from_slice(f.as_bytes());
            out.extend_from_slice(&since.to_le_bytes());
        }
        for map in [&w.shared_pids, &w.shared_done] {
            out.extend_from_slice(&(map.len() as u32).to_le_bytes());
            for (&(group, stream, seq), &pid) in map {
                out.extend_from_slice(&group.to_le_bytes());
                out.extend_from_slice(&stream.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
        }
        out.extend_from_slice(&(w.shared_completed.len() as u32).to_le_bytes());
        for &(group, stream, seq) in &w.shared_completed {
            out.extend_from_slice(&group.to_le_bytes());
            out.extend_from_slice(&stream.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        // The core keeps the newest record of every session in memory for
        // as long as the session lives (`Shard::state`): a `Bytes` made of
        // a vector with spare room holds the room too, and a header of its
        // own (issue #17 goal 4).
        out.shrink_to_fit();
        out
    }

    /// A session as its log record holds it, found by a process that
    /// started at `opened_ms`: a record written while its connection was
    /// open (a crash or a stop ended that connection) ends then. `None`:
    /// not a session record.
    pub fn from_record(bytes: &[u8], opened_ms: u64) -> Option<SessionState> {
        let mut state = SessionState::decode(bytes);
        match &mut state {
            Some(s) => s.mark_ended(opened_ms),
            None => tracing::warn!("unreadable MQTT session record ignored"),
        }
        state
    }

    /// Records `at_ms` as the end of the last connection, unless one is
    /// recorded already.
    pub fn mark_ended(&mut self, at_ms: u64) {
        if self.ended_ms == 0 {
            self.ended_ms = at_ms.max(1);
        }
    }

    /// Whether the session has expired by `now_ms` (ms since the epoch).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.ended_ms > 0
            && self.expiry_s != u32::MAX
            && now_ms >= self.ended_ms + u64::from(self.expiry_s) * 1000
    }

    /// Parses [`SessionState::encode`]'s output; `None` if it is not that.
    pub fn decode(bytes: &[u8]) -> Option<SessionState> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if !(1..=STATE_VERSION).contains(&version) {
            return None;
        }
        let mut state = SessionState::default();
        for _ in 0..r.u32()? {
            let len = usize::from(r.u16()?);
            let filter = MqttString::from_utf8(Bytes::copy_from_slice(r.take(len)?)).ok()?;
            mqtt::validate_topic_filter(filter.as_str(), false).ok()?;
            let options = options_from_byte(r.u8()?)?;
            state.subs.push(Subscription { filter, options });
        }
        for _ in 0..r.u32()? {
            let (n, sub) = RoomSub::decode(&mut r, version)?;
            state.rooms.insert(n, sub);
        }
        for _ in 0..r.u32()? {
            let pid = r.u16()?;
            PacketId::new(pid)?;
            let client_msg_id = r.u64()?;
            let to = UserId(r.u64()?);
            let stored = r.u8()? != 0;
            state.inbound.insert(
                pid,
                Inbound {
                    client_msg_id,
                    to,
                    stored,
                },
            );
        }
        state.next_msg_id = r.u64()?;
        state.inbox_start = Seq(r.u64()?);
        for _ in 0..r.u32()? {
            let seq = r.u64()?;
            let pid = r.u16()?;
            PacketId::new(pid)?;
            state.out_pids.insert(seq, pid);
        }
        for _ in 0..r.u32()? {
            let pid = r.u16()?;
            PacketId::new(pid)?;
            state.rel_pending.insert(pid);
        }
        state.expiry_s = r.u32()?;
        state.ended_ms = r.u64()?;
        if version >= 3 {
            state.inbox_acked = Seq(r.u64()?);
            for _ in 0..r.u32()? {
                state.done.insert(r.u64()?);
            }
        }
        if version >= 4 {
            for _ in 0..r.u32()? {
                let len = usize::from(r.u16()?);
                let filter = std::str::from_utf8(r.take(len)?).ok()?;
                mqtt::validate_topic_filter(filter, false).ok()?;
                let id = NonZeroU32::new(r.u32()?)?;
                state.sub_ids.insert(filter.to_string(), id);
            }
            let mut w = StreamState::default();
            for _ in 0..r.u32()? {
                let n = r.u64()?;
                let mut names = Vec::new();
                for _ in 0..r.u32()? {
                    let len = usize::from(r.u16()?);
                    names.push(std::str::from_utf8(r.take(len)?).ok()?.to_owned());
                }
                w.streams.insert(n, names);
            }
            for _ in 0..r.u32()? {
                let (n, seq, pid) = (r.u64()?, r.u64()?, r.u16()?);
                PacketId::new(pid)?;
                w.room_pids.insert((n, seq), pid);
            }
            for _ in 0..r.u32()? {
                w.room_done.insert((r.u64()?, r.u64()?));
            }
            for _ in 0..r.u32()? {
                let len = usize::from(r.u16()?);
                let f = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
                w.filter_since.insert(f, r.u64()?);
            }
            if version >= 5 {
                for map in [&mut w.shared_pids, &mut w.shared_done] {
                    for _ in 0..r.u32()? {
                        let key = (r.u64()?, r.u64()?, r.u64()?);
                        let pid = r.u16()?;
                        PacketId::new(pid)?;
                        map.insert(key, pid);
                    }
                }
                for _ in 0..r.u32()? {
                    w.shared_completed.push_back((r.u64()?, r.u64()?, r.u64()?));
                }
            }
            state.wild = (!w.is_empty()).then(|| Box::new(w));
        }
        r.0.is_empty().then_some(state)
    }

    /// A new session; `msg_id_base` must exceed every `client_msg_id` this
    /// (user, device) used before (wall-clock µs does).
    pub fn new(msg_id_base: u64) -> SessionState {
        SessionState {
            next_msg_id: msg_id_base,
            ..SessionState::default()
        }
    }
}

/// A room's retained message (MQTT RETAIN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    /// Publisher.
    pub from: UserId,
    /// QoS it was published with.
    pub qos: QoS,
    /// Body (never empty: an empty retained PUBLISH clears).
    pub payload: Bytes,
}

impl Retained {
    /// The value of its keyed state record: `[qos u8][from u64][payload]`
    /// (the layout of the retained files of earlier builds).
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(9 + self.payload.len());
        out.push(self.qos as u8);
        out.extend_from_slice(&self.from.0.to_le_bytes());
        out.extend_from_slice(&self.payload);
        Bytes::from(out)
    }

    /// Parses [`Retained::encode`]'s output; `None` if it is not that.
    pub fn decode(b: &[u8]) -> Option<Retained> {
        let qos = QoS::from_u8(*b.first()?)?;
        let from = UserId(u64::from_le_bytes(b.get(1..9)?.try_into().ok()?));
        let payload = Bytes::copy_from_slice(&b[9..]);
        (!payload.is_empty()).then_some(Retained { from, qos, payload })
    }
}

/// An inbound QoS 2 PUBLISH awaiting PUBREL.
#[derive(Clone, Copy, Debug)]
pub(super) struct Inbound {
    /// The native id its SEND carries (the same on every retry).
    pub(super) client_msg_id: u64,
    /// Addressee.
    pub(super) to: UserId,
    /// Its SENDACK said stored (a hint: a PUBREL proves it too).
    pub(super) stored: bool,
}

/// The SUBSCRIBE options byte (MQTT 5 layout).
fn options_byte(o: &mqtt::SubscriptionOptions) -> u8 {
    o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options_from_byte(b: u8) -> Option<mqtt::SubscriptionOptions> {
    let retain_handling = match b >> 4 {
        0 => mqtt::RetainHandling::SendAtSubscribe,
        1 => mqtt::RetainHandling::SendIfNewSubscription,
        2 => mqtt::RetainHandling::DoNotSend,
        _ => return None,
    };
    let mut o = mqtt::SubscriptionOptions::qos(QoS::from_u8(b & 3)?);
    o.no_local = b & 4 != 0;
    o.retain_as_published = b & 8 != 0;
    o.retain_handling = retain_handling;
    Some(o)
}

/// Little-endian reader over a byte slice.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// A byte string with its u32 length in front ([`put_bytes32`]).
    pub(super) fn bytes32(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.u32()?).ok()?;
        Some(Bytes::copy_from_slice(self.take(len)?))
    }
}

/// Writes `b` with its u32 length in front ([`Reader::bytes32`]).
pub(super) fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("a byte string of a packet fits");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}
