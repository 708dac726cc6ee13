//! Share groups: the consumer behind an MQTT 5 shared subscription
//! (`$share/{group}/{filter}`, issue #21, docs/MQTT.md 2.3a).
//!
//! A [`ShareGroup`] is one group name + filter on one node. It reads the
//! topic streams its filter matches (each a room with its own sequence and
//! bounded history) and gives **each message to one member** among the
//! group's connected sessions. It is sans IO and owns no clock: the caller
//! offers messages once they are durable ([`ShareGroup::offer`]), reports
//! what members did with them, and drains [`ShareGroup::poll_action`] after
//! every call, in order.
//!
//! Owns, privately: per stream the durable group cursor (`done_through`:
//! every message at or below it is finished for the group) and the messages
//! above it (waiting, handed to a member, or finished out of order); the
//! members (connected or not, Receive Maximum, in flight); the queue of
//! messages waiting for a member.
//!
//! Rules (each the answer to one question of [MQTT-4.8.2-*]):
//! - **Choice of member: least in flight, ties by round robin.** A member
//!   gets a message only below its Receive Maximum; among those, the one
//!   with the fewest unacknowledged messages, so a slow member does not
//!   collect a backlog while others idle; equal ones take turns, so members
//!   that keep up share evenly. Plain round robin would keep handing work
//!   to a member that stopped acknowledging until its window is full.
//! - **Finished** means acknowledged by the member (QoS 1 PUBACK, QoS 2
//!   PUBREC: from then on the member's own session owns the QoS 2
//!   exchange), or refused by it with a reason code ≥ 0x80, which is not
//!   re-sent to another member ([MQTT-4.8.2-6]).
//! - **A member's connection is lost** ([`ShareGroup::disconnect`]; its
//!   session may come back): every message it has not yet finished goes to
//!   another connected member, or waits for the first one that connects;
//!   except a QoS 2 message handed to it that its shard did not give back
//!   unsent ([`ShareGroup::returned`]): the member may hold it, so only
//!   that member completes it, when it reconnects ([MQTT-4.8.2-4]). QoS 1 is not kept for the same session:
//!   a member that may never come back would hold it, and at least once
//!   allows the duplicate if it does come back.
//! - **A member's session ends** ([`ShareGroup::leave`]: UNSUBSCRIBE, clean
//!   start, expiry): as above, and a QoS 2 message it was sent is dropped
//!   ([`DropReason::Abandoned`]), never sent to another member
//!   ([MQTT-4.8.2-5]): exactly once wins over delivery where both cannot
//!   hold.
//! - **No member connected**: messages wait, in order. The caller bounds
//!   how many it offers (the rest stay in its log, [`ShareGroup::track`]
//!   keeps such a stream's cursor) and how far back they reach: older
//!   ones are lost for the group ([`ShareGroup::trim`],
//!   [`DropReason::TooOld`]).
//! - **Durability**: [`ShareGroup::durable`] is what survives a restart
//!   (the cursor, messages finished above it, the QoS 2 messages handed
//!   to a member, and those members' sessions: [`MemberSession`], so the
//!   caller can end one that does not come back, [`ShareGroup::away`]).
//!   A [`ShareAction::Persist`] says it changed; a QoS 2
//!   [`ShareAction::Deliver`] always comes after the `Persist` that records
//!   it, and the caller lets it leave only once that write is durable, so a
//!   restarted group never gives a QoS 2 message sent to one member to
//!   another. After [`ShareGroup::restore`] the caller offers again every
//!   stored message above each cursor: those finished are skipped.
//! - QoS 0 messages are not tracked: one member gets each, or nobody if
//!   none is connected.

use std::collections::{BTreeMap, VecDeque};

use surepush_proto::{DeviceId, Qos, Seq, UserId};

mod durable;
pub use durable::{DurableMember, DurableShare, DurableStream, ShareStateError};

/// A session that is a member of a share group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    /// The member's user (its session lives on that user's shard).
    pub user: UserId,
    /// The member's device (session).
    pub device: DeviceId,
}

/// One message of one matched stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey {
    /// The topic stream (a room id).
    pub stream: u64,
    /// The message's sequence in that stream.
    pub seq: Seq,
}

/// Why a message leaves the group without being delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// It waited for a member further back than a subscriber may resume.
    TooOld,
    /// QoS 2, sent to a member whose session ended before PUBREC: it may
    /// hold it, so no other member gets it ([MQTT-4.8.2-5]).
    Abandoned,
    /// QoS 0 with no member connected.
    NoMember,
}

/// What the caller does next, in order ([`ShareGroup::poll_action`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareAction {
    /// Hand `key` to `member`'s shard to send at `qos`; `dup` when that
    /// member was sent it before (a reconnect completing its QoS 2).
    Deliver {
        /// The member chosen.
        member: MemberId,
        /// The message.
        key: MessageKey,
        /// The message's QoS.
        qos: Qos,
        /// Sent to this member before.
        dup: bool,
    },
    /// The durable state ([`ShareGroup::durable`]) changed: write it.
    Persist,
    /// `key` leaves the group undelivered (a counter).
    Dropped {
        /// The message.
        key: MessageKey,
        /// Why.
        reason: DropReason,
    },
}

/// Where a message above its stream's cursor stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// In the waiting queue.
    Waiting(Qos),
    /// Handed to a member: counted as sent to it until its shard gives it
    /// back unsent ([`ShareGroup::returned`]).
    With { member: MemberId, qos: Qos },
    /// Finished out of order: the cursor passes it when it gets there.
    Done,
}

#[derive(Debug, Default)]
struct Stream {
    done_through: Seq,
    above: BTreeMap<Seq, Held>,
}

impl Stream {
    /// Moves the cursor over the finished prefix; whether it moved.
    fn advance(&mut self) -> bool {
        let before = self.done_through;
        while let Some((&seq, &held)) = self.above.first_key_value() {
            if held != Held::Done {
                break;
            }
            self.above.pop_first();
            self.done_through = seq;
        }
        // Offers come in stream order, so a sequence between two offers
        // that was never offered (QoS 0, or not for this group) never will
        // be: the cursor counts offers only and skips such holes.
        before != self.done_through
    }
}

/// How long a member's session outlives its connection, as the group
/// knows it: durable along with the QoS 2 messages handed to the member,
/// so a restarted group can end a session that never comes back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberSession {
    /// Its Session Expiry Interval in seconds (0: the session ends with
    /// its connection); `None`: it never expires, or it is not known (a
    /// state written before version 2).
    pub expiry_s: Option<u32>,
    /// When its connection closed (wall clock, ms since the epoch), if the
    /// group heard of it since the member last joined.
    pub gone_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    id: MemberId,
    connected: bool,
    capacity: u16,
    in_flight: u16,
    session: MemberSession,
}

/// One share group (group name + filter) on one node: see the module doc.
#[derive(Debug, Default)]
pub struct ShareGroup {
    streams: BTreeMap<u64, Stream>,
    members: Vec<Member>,
    /// Round robin: where the next tie-break starts in `members`.
    turn: usize,
    waiting: VecDeque<MessageKey>,
    actions: VecDeque<ShareAction>,
}

impl ShareGroup {
    /// An empty group.
    pub fn new() -> ShareGroup {
        ShareGroup::default()
    }

    /// A group as it was written ([`ShareGroup::durable`]). Its QoS 2
    /// messages sent to a member wait for that member; the caller then
    /// offers every stored message above each cursor again.
    pub fn restore(state: &DurableShare) -> ShareGroup {
        let mut group = ShareGroup::new();
        for s in &state.streams {
            let mut stream = Stream {
                done_through: s.done_through,
                above: s.done.iter().map(|&seq| (seq, Held::Done)).collect(),
            };
            for &(seq, member) in &s.sent_qos2 {
                let held = Held::With {
                    member,
                    qos: Qos::ExactlyOnce,
                };
                stream.above.insert(seq, held);
                match group.member_mut(member) {
                    Some(m) => m.in_flight += 1,
                    None => group.members.push(Member {
                        id: member,
                        connected: false,
                        capacity: 0,
                        in_flight: 1,
                        session: MemberSession::default(),
                    }),
                }
            }
            group.streams.insert(s.stream, stream);
        }
        for d in &state.members {
            if let Some(m) = group.member_mut(d.id) {
                m.session = d.session;
            }
        }
        group
    }

    /// What survives a restart.
    pub fn durable(&self) -> DurableShare {
        let streams = self
            .streams
            .iter()
            .map(|(&stream, s)| DurableStream {
                stream,
                done_through: s.done_through,
                done: s
                    .above
                    .iter()
                    .filter(|(_, h)| **h == Held::Done)
                    .map(|(&seq, _)| seq)
                    .collect(),
                sent_qos2: s
                    .above
                    .iter()
                    .filter_map(|(&seq, h)| match *h {
                        Held::With {
                            member,
                            qos: Qos::ExactlyOnce,
                        } => Some((seq, member)),
                        _ => None,
                    })
                    .collect(),
            })
            .collect();
        // The sessions of the members the group waits for: those holding
        // a QoS 2 message (a member holding none is not waited for).
        let members = self
            .members
            .iter()
            .filter(|m| self.holds_qos2(m.id))
            .map(|m| DurableMember {
                id: m.id,
                session: m.session,
            })
            .collect();
        DurableShare { streams, members }
    }

    /// Whether a QoS 2 message sent to `member` waits for it to finish.
    fn holds_qos2(&self, member: MemberId) -> bool {
        self.streams.values().any(|s| {
            s.above.values().any(
                |h| matches!(h, Held::With { member: m, qos: Qos::ExactlyOnce } if *m == member),
            )
        })
    }

    /// Members not connected whose session expires (restored after a
    /// restart: the caller ends each one's session at its deadline unless
    /// it joins again, [`ShareGroup::leave`]).
    pub fn away(&self) -> impl Iterator<Item = (MemberId, MemberSession)> + '_ {
        self.members
            .iter()
            .filter(|m| !m.connected && m.session.expiry_s.is_some())
            .map(|m| (m.id, m.session))
    }

    /// The next thing to do, if any. Drain after every other call.
    pub fn poll_action(&mut self) -> Option<ShareAction> {
        self.actions.pop_front()
    }

    /// Messages waiting for a member.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The cursor of `stream`: every message at or below it is finished.
    pub fn done_through(&self, stream: u64) -> Seq {
        self.streams
            .get(&stream)
            .map_or(Seq::ZERO, |s| s.done_through)
    }

    /// A stored (or, at QoS 0, fanned-out) message of a matched stream.
    /// Offers at or below the cursor, or of a message already held, are
    /// ignored, so re-reading a stream after a restart is harmless.
    /// Whether the group holds it (QoS 0: never; a QoS 2 message restored
    /// as sent to a member: yes), so the caller keeps the message for a
    /// redelivery.
    pub fn offer(&mut self, key: MessageKey, qos: Qos) -> bool {
        if qos == Qos::AtMostOnce {
            match self.choose() {
                Some(member) => self.actions.push_back(ShareAction::Deliver {
                    member,
                    key,
                    qos,
                    dup: false,
                }),
                None => self.actions.push_back(ShareAction::Dropped {
                    key,
                    reason: DropReason::NoMember,
                }),
            }
            return false;
        }
        let new_stream = !self.streams.contains_key(&key.stream);
        let stream = self.streams.entry(key.stream).or_default();
        if key.seq <= stream.done_through {
            return false;
        }
        match stream.above.get(&key.seq).copied() {
            None => {}
            Some(Held::Done) => return false,
            Some(_) => return true,
        }
        if new_stream {
            // Durable from its first message: after a restart the stream
            // is read again from here (module doc).
            stream.done_through = Seq(key.seq.0 - 1);
            self.actions.push_back(ShareAction::Persist);
        }
        stream.above.insert(key.seq, Held::Waiting(qos));
        self.waiting.push_back(key);
        self.assign();
        true
    }

    /// Makes `stream` part of the group's durable state from `first` on
    /// (its cursor just below it), if it is not yet: the caller keeps its
    /// messages in the log and offers them later (a group with more
    /// waiting than it holds in memory).
    pub fn track(&mut self, stream: u64, first: Seq) {
        if self.streams.contains_key(&stream) {
            return;
        }
        let s = Stream {
            done_through: Seq(first.0.saturating_sub(1)),
            above: BTreeMap::new(),
        };
        self.streams.insert(stream, s);
        self.actions.push_back(ShareAction::Persist);
    }

    /// Whether the group has seen `key` (finished, or offered and held):
    /// an offer of it would change nothing but a resend.
    pub fn knows(&self, key: MessageKey) -> bool {
        self.streams
            .get(&key.stream)
            .is_some_and(|s| key.seq <= s.done_through || s.above.contains_key(&key.seq))
    }

    /// Whether a message of `stream` after `seq` is handed to a member.
    pub fn handed_after(&self, stream: u64, seq: Seq) -> bool {
        self.streams.get(&stream).is_some_and(|s| {
            s.above
                .range(Seq(seq.0.saturating_add(1))..)
                .any(|(_, h)| matches!(h, Held::With { .. }))
        })
    }

    /// `member` connected (or reconnected) with this Receive Maximum, its
    /// session expiring `expiry_s` after its connection closes (`None`:
    /// never). Its QoS 2 messages already sent go to it again first
    /// ([MQTT-4.8.2-4]).
    pub fn join(&mut self, member: MemberId, receive_max: u16, expiry_s: Option<u32>) {
        let capacity = receive_max.max(1);
        let session = MemberSession {
            expiry_s,
            gone_ms: None,
        };
        match self.member_mut(member) {
            Some(m) => {
                m.connected = true;
                m.capacity = capacity;
                m.session = session;
            }
            None => self.members.push(Member {
                id: member,
                connected: true,
                capacity,
                in_flight: 0,
                session,
            }),
        }
        let mine: Vec<(MessageKey, Qos)> = self
            .streams
            .iter()
            .flat_map(|(&stream, s)| {
                s.above.iter().filter_map(move |(&seq, h)| match *h {
                    Held::With { member: m, qos, .. } if m == member => {
                        Some((MessageKey { stream, seq }, qos))
                    }
                    _ => None,
                })
            })
            .collect();
        for (key, qos) in mine {
            self.actions.push_back(ShareAction::Deliver {
                member,
                key,
                qos,
                dup: true,
            });
        }
        self.assign();
    }

    /// Sends `key` again to the member it is with, if that member is
    /// connected: the caller could not send it when the member joined
    /// (after a restart, before reading the message again).
    pub fn resend(&mut self, key: MessageKey) {
        let Some(&mut Held::With { member, qos }) = self.held_mut(key) else {
            return;
        };
        if self.members.iter().any(|m| m.id == member && m.connected) {
            self.actions.push_back(ShareAction::Deliver {
                member,
                key,
                qos,
                dup: true,
            });
        }
    }

    /// `member` finished `key`: acknowledged it (PUBACK, PUBREC), or
    /// refused it with a reason code ≥ 0x80 — either way no other member
    /// gets it ([MQTT-4.8.2-6]). Whether it was `member`'s to finish (an
    /// answer for a message handed to another member since is ignored).
    pub fn finished(&mut self, member: MemberId, key: MessageKey) -> bool {
        let Some(held) = self.held_mut(key) else {
            return false;
        };
        match *held {
            Held::With { member: m, .. } if m == member => *held = Held::Done,
            _ => return false,
        }
        if let Some(m) = self.member_mut(member) {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
        // Finished is durable state, cursor moved or not: a QoS 2 message
        // re-offered after a restart must not find a member again.
        self.streams
            .get_mut(&key.stream)
            .expect("held above")
            .advance();
        self.actions.push_back(ShareAction::Persist);
        self.assign();
        true
    }

    /// `member`'s shard gives `key` back unsent (its connection closed
    /// before the PUBLISH left): it goes to another member. The member
    /// counts as disconnected until it joins again.
    pub fn returned(&mut self, member: MemberId, key: MessageKey) {
        let Some(held) = self.held_mut(key) else {
            return;
        };
        let Held::With { member: m, qos, .. } = *held else {
            return;
        };
        if m != member {
            return;
        }
        *held = Held::Waiting(qos);
        if let Some(m) = self.member_mut(member) {
            m.in_flight = m.in_flight.saturating_sub(1);
            m.connected = false;
        }
        if qos == Qos::ExactlyOnce {
            // No longer recorded as sent to `member`.
            self.actions.push_back(ShareAction::Persist);
        }
        self.requeue(key);
        self.assign();
    }

    /// `member`'s connection is gone (at `now_ms`, wall clock); its
    /// session may come back. When the member holds QoS 2 messages, the
    /// time is durable state: a restart counts its session's expiry from
    /// it.
    pub fn disconnect(&mut self, member: MemberId, now_ms: u64) {
        if let Some(m) = self.member_mut(member) {
            m.connected = false;
            m.session.gone_ms = Some(now_ms);
        }
        self.release(member, false);
        if self.holds_qos2(member) {
            self.actions.push_back(ShareAction::Persist);
        }
        self.assign();
    }

    /// `member`'s session ended or unsubscribed: it is no member any more.
    pub fn leave(&mut self, member: MemberId) {
        self.release(member, true);
        self.members.retain(|m| m.id != member);
        if self.turn >= self.members.len() {
            self.turn = 0;
        }
        self.assign();
    }

    /// `stream` keeps messages from `oldest_kept` on: waiting ones below it
    /// are lost for the group, and the cursor passes them.
    pub fn trim(&mut self, stream: u64, oldest_kept: Seq) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let mut dropped = Vec::new();
        for (&seq, held) in s.above.range_mut(..oldest_kept) {
            if let Held::Waiting(_) = *held {
                *held = Held::Done;
                dropped.push(MessageKey { stream, seq });
            }
        }
        let moved = s.advance() || !dropped.is_empty();
        self.waiting.retain(|k| !dropped.contains(k));
        for key in dropped {
            self.actions.push_back(ShareAction::Dropped {
                key,
                reason: DropReason::TooOld,
            });
        }
        if moved {
            self.actions.push_back(ShareAction::Persist);
        }
    }

    // ----- internals --------------------------------------------------------

    fn member_mut(&mut self, id: MemberId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn held_mut(&mut self, key: MessageKey) -> Option<&mut Held> {
        self.streams.get_mut(&key.stream)?.above.get_mut(&key.seq)
    }

    /// The connected member with room and the fewest in flight; ties go
    /// round robin from `turn`.
    fn choose(&mut self) -> Option<MemberId> {
        let n = self.members.len();
        let mut best: Option<usize> = None;
        for step in 0..n {
            let i = (self.turn + step) % n;
            let m = &self.members[i];
            if !m.connected || m.in_flight >= m.capacity {
                continue;
            }
            if best.is_none_or(|b| m.in_flight < self.members[b].in_flight) {
                best = Some(i);
            }
        }
        let i = best?;
        self.turn = (i + 1) % n;
        Some(self.members[i].id)
    }

    /// Hands waiting messages to members while one has room.
    fn assign(&mut self) {
        while let Some(&key) = self.waiting.front() {
            let Some(member) = self.choose() else {
                return;
            };
            self.waiting.pop_front();
            let held = self.held_mut(key).expect("a waiting key is held");
            let Held::Waiting(qos) = *held else {
                unreachable!("the queue holds only waiting messages")
            };
            *held = Held::With { member, qos };
            self.member_mut(member).expect("chosen").in_flight += 1;
            if qos == Qos::ExactlyOnce {
                // Recorded durably before it may leave (module doc).
                self.actions.push_back(ShareAction::Persist);
            }
            self.actions.push_back(ShareAction::Deliver {
                member,
                key,
                qos,
                dup: false,
            });
        }
    }

    /// Puts `key` back in the queue in its stream order among the waiting.
    fn requeue(&mut self, key: MessageKey) {
        let at = self
            .waiting
            .iter()
            .position(|k| k.stream == key.stream && k.seq > key.seq)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, key);
    }

    /// Takes back what `member` holds: all of it to the queue, except QoS
    /// 2, which stays (`ended` false) or is dropped (`ended`).
    fn release(&mut self, member: MemberId, ended: bool) {
        let mut back = Vec::new();
        let mut abandoned = Vec::new();
        for (&stream, s) in self.streams.iter_mut() {
            for (&seq, held) in s.above.iter_mut() {
                let Held::With { member: m, qos } = *held else {
                    continue;
                };
                if m != member {
                    continue;
                }
                let key = MessageKey { stream, seq };
                if qos == Qos::ExactlyOnce {
                    if ended {
                        *held = Held::Done;
                        abandoned.push(key);
                    }
                } else {
                    *held = Held::Waiting(qos);
                    back.push(key);
                }
            }
        }
        if let Some(m) = self.member_mut(member) {
            m.in_flight = m.in_flight.saturating_sub(back.len() as u16);
            m.in_flight = m.in_flight.saturating_sub(abandoned.len() as u16);
        }
        for key in back {
            self.requeue(key);
        }
        let mut moved = false;
        for &key in &abandoned {
            self.actions.push_back(ShareAction::Dropped {
                key,
                reason: DropReason::Abandoned,
            });
            moved |= self
                .streams
                .get_mut(&key.stream)
                .expect("held above")
                .advance();
        }
        if moved || !abandoned.is_empty() {
            self.actions.push_back(ShareAction::Persist);
        }
    }
}

#[cfg(test)]
mod tests;
