//! What a node needs to carry a [`PeerMsg`] to another node and its
//! answers back (issue #20).
//!
//! Across nodes a message is a request on the sending shard's lane; the
//! receiving node hands it to the owning shard as if from the mesh, and the
//! lane's reply carries every answer that shard sends back (a [`Stored`]
//! once the copy is durable, one [`super::GroupStored`] per member inbox, ...).
//! So a request is acknowledged only when its answers exist, and a
//! receiver that dies before answering gets the request again from the
//! sender's link when it returns (its log's dedup window covers a repeat).
//!
//! For that the receiving driver must know, per message, which field names
//! the shard awaiting the answers (it substitutes its own return ticket)
//! and how many answers the receiving shard sends there
//! ([`PeerMsg::answers`]): a count, or for a room subscription the stream
//! of its replay pages up to the last ([`PeerMsg::ends_answers`]). Keyed
//! state crosses too: a read is answered with one [`super::StateValue`],
//! a write with its [`super::StateStored`] when it asked for one.

use bytes::{BufMut, Bytes, BytesMut};

use super::{PeerMsg, PeerWireError};
use crate::router::ShardId;
use surepush_proto::Qos;

impl PeerMsg {
    /// The field naming the shard that awaits this message's answers, if
    /// the message has one.
    pub fn return_address_mut(&mut self) -> Option<&mut ShardId> {
        match self {
            PeerMsg::StoreCopy(m) => Some(&mut m.origin),
            PeerMsg::RoomPublish(m) => Some(&mut m.origin),
            PeerMsg::GroupStore(m) => Some(&mut m.origin),
            PeerMsg::StoreMany(m) => Some(&mut m.home),
            PeerMsg::GroupEphemeral(m) => m.confirm_to.as_mut(),
            PeerMsg::MembersUpdate(m) => Some(&mut m.origin),
            PeerMsg::RoomSubscribe(m) => Some(&mut m.shard),
            PeerMsg::RoomLeave(m) => Some(&mut m.shard),
            PeerMsg::QueryState(m) => Some(&mut m.origin),
            PeerMsg::StoreState(m) => m.report.as_mut().map(|r| &mut r.origin),
            PeerMsg::PresenceWatch(m) => Some(&mut m.shard),
            PeerMsg::PresenceUnwatch(m) => Some(&mut m.shard),
            PeerMsg::MoveFetch(m) => Some(&mut m.origin),
            PeerMsg::MoveRoundFetch(m) => Some(&mut m.origin),
            PeerMsg::PresenceNodeWatch(m) => Some(&mut m.origin),
            PeerMsg::Stored(_)
            | PeerMsg::Ephemeral(_)
            | PeerMsg::Release(_)
            | PeerMsg::GroupStored(_)
            | PeerMsg::ReleaseMany(_)
            | PeerMsg::MembersUpdated(_)
            | PeerMsg::RoomRefused(_)
            | PeerMsg::RoomRevoke(_)
            | PeerMsg::RoomPage(_)
            | PeerMsg::RoomFanout(_)
            | PeerMsg::StateStored(_)
            | PeerMsg::StateValue(_)
            | PeerMsg::PresenceChanged(_)
            | PeerMsg::MovePage(_)
            | PeerMsg::PresenceNodeUnwatch(_)
            | PeerMsg::PresenceUpdate(_)
            // Notices between nodes, answered at once (`topic_nodes.rs`).
            | PeerMsg::NodeFilters(_)
            | PeerMsg::FilterQuery(_)
            | PeerMsg::TopicRelay(_)
            | PeerMsg::StreamsAnswered(_)
            // A node's own shards register their filters among themselves.
            | PeerMsg::FilterJoin(_)
            | PeerMsg::FilterLeave(_)
            | PeerMsg::TopicNotice(_)
            | PeerMsg::FilterJoined(_)
            // Share groups stay on one node too (`share_groups.rs`).
            | PeerMsg::ShareJoin(_)
            | PeerMsg::ShareJoined(_)
            | PeerMsg::ShareDeliver(_)
            | PeerMsg::ShareDone(_)
            | PeerMsg::ShareAway(_) => None,
        }
    }

    /// How many answers the owner sends to the return address for this
    /// message; `None` if the message cannot cross nodes (a room's
    /// pushes take its subject instead, and a room leave is the
    /// subscriber node's own business).
    pub fn answers(&self) -> Option<Answers> {
        match self {
            PeerMsg::StoreCopy(_)
            | PeerMsg::GroupStore(_)
            | PeerMsg::MembersUpdate(_)
            | PeerMsg::MoveFetch(_)
            | PeerMsg::MoveRoundFetch(_)
            | PeerMsg::PresenceNodeWatch(_)
            // A keyed read (a retained message): its value.
            | PeerMsg::QueryState(_) => Some(Answers::Count(1)),
            // A keyed write: its StateStored when asked for.
            PeerMsg::StoreState(m) => Some(Answers::Count(usize::from(m.report.is_some()))),
            PeerMsg::StoreMany(m) => Some(Answers::Count(m.inboxes.len())),
            PeerMsg::GroupEphemeral(m) => Some(Answers::Count(usize::from(m.confirm_to.is_some()))),
            PeerMsg::RoomPublish(m) => Some(Answers::Count(usize::from(
                m.qos != Qos::AtMostOnce || m.confirm,
            ))),
            PeerMsg::RoomSubscribe(_) => Some(Answers::Stream),
            PeerMsg::Ephemeral(_)
            | PeerMsg::Release(_)
            | PeerMsg::ReleaseMany(_)
            | PeerMsg::NodeFilters(_)
            | PeerMsg::FilterQuery(_)
            | PeerMsg::TopicRelay(_)
            | PeerMsg::StreamsAnswered(_)
            | PeerMsg::PresenceNodeUnwatch(_) => Some(Answers::Count(0)),
            // Answers travel inside replies, never as requests.
            PeerMsg::Stored(_)
            | PeerMsg::GroupStored(_)
            | PeerMsg::MembersUpdated(_)
            | PeerMsg::MovePage(_)
            | PeerMsg::PresenceUpdate(_) => Some(Answers::Count(0)),
            PeerMsg::RoomRefused(_)
            | PeerMsg::RoomRevoke(_)
            | PeerMsg::RoomLeave(_)
            | PeerMsg::RoomPage(_)
            | PeerMsg::RoomFanout(_)
            | PeerMsg::StateStored(_)
            | PeerMsg::StateValue(_)
            // Between nodes presence takes its own messages (52-54).
            | PeerMsg::PresenceWatch(_)
            | PeerMsg::PresenceUnwatch(_)
            | PeerMsg::PresenceChanged(_)
            | PeerMsg::FilterJoin(_)
            | PeerMsg::FilterLeave(_)
            | PeerMsg::TopicNotice(_)
            | PeerMsg::FilterJoined(_)
            | PeerMsg::ShareJoin(_)
            | PeerMsg::ShareJoined(_)
            | PeerMsg::ShareDeliver(_)
            | PeerMsg::ShareDone(_)
            | PeerMsg::ShareAway(_) => None,
        }
    }

    /// Whether this answer is the last of an [`Answers::Stream`]: a replay
    /// page that is `done`, a page that failed (no frames, not done, no
    /// skip: the subscriber re-subscribes), or a refusal.
    pub fn ends_answers(&self) -> bool {
        match self {
            PeerMsg::RoomPage(p) => p.done || (p.frames.is_empty() && p.skip_to.0 == 0),
            PeerMsg::RoomRefused(_) => true,
            _ => false,
        }
    }
}

/// How a request's answers end (see [`PeerMsg::answers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// Exactly this many.
    Count(usize),
    /// A stream that ends with the answer for which
    /// [`PeerMsg::ends_answers`] is true: a room subscription's replay
    /// pages (the last one `done`, or an empty one that failed) or its
    /// refusal.
    Stream,
}

/// The answers to one request, as one reply body:
/// `(len u32 LE, PeerMsg encoding)*`.
pub fn encode_answers(answers: &[PeerMsg]) -> Bytes {
    let mut out = BytesMut::new();
    encode_answers_into(answers, &mut out);
    out.freeze()
}

/// [`encode_answers`], appended to `out` (a caller's reused buffer, so a
/// reply costs no allocation of its own).
pub fn encode_answers_into(answers: &[PeerMsg], out: &mut BytesMut) {
    for a in answers {
        let start = out.len();
        out.put_u32_le(0); // patched below
        a.encode(out);
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Reads a reply body written by [`encode_answers`]; payloads share
/// `body`'s buffer.
pub fn decode_answers(body: &Bytes) -> Result<Vec<PeerMsg>, PeerWireError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let len_bytes = body
            .get(at..at + 4)
            .ok_or(PeerWireError::Truncated)?
            .try_into()
            .map_err(|_| PeerWireError::Truncated)?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        at += 4;
        let end = at.checked_add(len).ok_or(PeerWireError::Truncated)?;
        if end > body.len() {
            return Err(PeerWireError::Truncated);
        }
        out.push(PeerMsg::decode(&body.slice(at..end))?);
        at = end;
    }
    Ok(out)
}
