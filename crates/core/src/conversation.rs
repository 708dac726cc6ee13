//! Conversation summaries (issue #22): each inbox grouped by conversation,
//! maintained as messages become durable, so a summary request reads a
//! few small maps and never the inbox.
//!
//! Owns, per user of this shard: for each tracked conversation (keyed by
//! its peer, see [`conversation_of`]) the last message's summary (seq,
//! sender, time, length and a preview of at most `preview_bytes`), how
//! many messages it received, and the newest `index_per_conversation`
//! sequences of its messages (the index a conversation page is read by);
//! and the conversations ordered by their last sequence (the summary
//! list's order and paging key: a sequence belongs to one message, so two
//! conversations never share one).
//!
//! Bounds (memory, docs/PROTOCOL.md "Conversations"): at most
//! `max_per_user` conversations per user; a new one beyond that evicts the
//! least recent (its messages stay in the inbox; it is counted in
//! `older` and tracked again from its next message). At most
//! `index_per_conversation` sequences per conversation: the oldest fall
//! out of the index (`trimmed`), after which an unread count that reaches
//! the index's start is a lower bound and a page that reaches it says
//! `truncated`.
//!
//! Unread is per device and computed at request time: the indexed
//! sequences above the asking device's cursor (a binary search per
//! conversation), so an ACK changes the summary with no bookkeeping here.
//!
//! Folded by [`crate::RecoveredState::apply`] from message records, the
//! same fold for the core (as copies become durable), the log's tracked
//! state (checkpoints carry it) and recovery; a pure function of the
//! records in log order.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::hashing::FastHashMap;
use crate::record::MessageRecord;
use surepush_proto::{DeviceId, Seq, SyncDirection, UserId};

/// Limits of the conversation summaries (TOML: `[core.conversations]`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct ConversationConfig {
    /// Conversations tracked per user; a new one beyond this evicts the
    /// least recent (0: no summaries are kept).
    pub max_per_user: u32,
    /// Sequences indexed per conversation (the newest): the depth of
    /// CONVFETCH paging and the largest exact unread count.
    pub index_per_conversation: u32,
    /// Bytes of the last message's payload kept as its preview.
    pub preview_bytes: u32,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        ConversationConfig {
            max_per_user: 1_024,
            index_per_conversation: 256,
            preview_bytes: 64,
        }
    }
}

/// The conversation a message of `inbox` belongs to: the group for a
/// group message, else the other user (the addressee of the inbox
/// owner's own send, the sender of anything received; the owner itself
/// for a note to self).
pub fn conversation_of(inbox: UserId, m: &MessageRecord) -> UserId {
    if m.to.is_group() || m.from == inbox {
        m.to
    } else {
        m.from
    }
}

/// The last message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastMessage {
    /// Its sequence in the inbox.
    pub seq: Seq,
    /// Sender.
    pub from: UserId,
    /// Sending device.
    pub from_device: DeviceId,
    /// Gateway receive time (ms since the Unix epoch).
    pub ts_ms: u64,
    /// Length of the whole payload.
    pub len: u32,
    /// The payload's first bytes (a copy: the payload itself is not kept).
    pub preview: Bytes,
}

/// One tracked conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// Its last message.
    pub last: LastMessage,
    /// Messages received since it is tracked.
    pub total: u64,
    /// The newest sequences of its messages, ascending.
    pub seqs: VecDeque<Seq>,
    /// Those of `seqs` the inbox owner sent (own-inbox copies), ascending:
    /// never unread.
    pub own: VecDeque<Seq>,
    /// Older sequences fell out of `seqs` (or were never indexed).
    pub trimmed: bool,
}

impl Conversation {
    /// Unread for a device at `cursor` (messages from others after it),
    /// and whether that is a lower bound. Two binary searches.
    pub fn unread(&self, cursor: Seq) -> (u32, bool) {
        let read = self.seqs.partition_point(|s| *s <= cursor);
        let own_read = self.own.partition_point(|s| *s <= cursor);
        let unread = (self.seqs.len() - read).saturating_sub(self.own.len() - own_read);
        (unread as u32, self.trimmed && read == 0)
    }

    fn push(&mut self, seq: Seq, own: bool, max_index: usize) {
        self.seqs.push_back(seq);
        if own {
            self.own.push_back(seq);
        }
        self.trim(max_index);
    }

    /// Drops the oldest sequences beyond `max_index`.
    fn trim(&mut self, max_index: usize) {
        while self.seqs.len() > max_index {
            self.seqs.pop_front();
            self.trimmed = true;
        }
        while self
            .own
            .front()
            .is_some_and(|s| self.seqs.front().is_none_or(|f| s < f))
        {
            self.own.pop_front();
        }
    }
}

/// One user's conversations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserConversations {
    /// By peer.
    pub peers: FastHashMap<UserId, Conversation>,
    /// Peer by last sequence (newest last).
    pub recent: BTreeMap<Seq, UserId>,
    /// Conversations evicted beyond the per-user limit.
    pub older: u64,
}

/// The conversation summaries of every user whose inbox is on this shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversations {
    limits: ConversationConfig,
    users: FastHashMap<UserId, UserConversations>,
}

/// What a summary page holds (the core builds the CONVPAGE from it).
#[derive(Debug, PartialEq, Eq)]
pub struct SummaryPage<'a> {
    /// The conversations, newest first, with their unread counts.
    pub items: Vec<(UserId, &'a Conversation, u32, bool)>,
    /// Nothing further in this direction.
    pub end: bool,
    /// Conversations no longer tracked.
    pub older: u64,
}

/// Which sequences a conversation page reads.
#[derive(Debug, PartialEq, Eq)]
pub struct PagePlan {
    /// Sequences to read, ascending.
    pub seqs: Vec<Seq>,
    /// The indexed sequence before the first one (0: none).
    pub first_prev: Seq,
    /// Nothing further in this direction.
    pub end: bool,
    /// The page reaches the index's start and older messages fell out of it.
    pub truncated: bool,
}

impl Conversations {
    /// Empty, with these limits.
    pub fn new(limits: ConversationConfig) -> Conversations {
        Conversations {
            limits,
            users: FastHashMap::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ConversationConfig {
        self.limits
    }

    /// Applies new limits (a recovered state folded under other ones):
    /// what is beyond them is evicted or trimmed now.
    pub fn set_limits(&mut self, limits: ConversationConfig) {
        self.limits = limits;
        let max_index = limits.index_per_conversation as usize;
        let preview = limits.preview_bytes as usize;
        for user in self.users.values_mut() {
            while user.peers.len() > limits.max_per_user as usize {
                evict_least_recent(user);
            }
            for c in user.peers.values_mut() {
                c.trim(max_index);
                if c.last.preview.len() > preview {
                    c.last.preview.truncate(preview);
                }
            }
        }
        self.users.retain(|_, u| !u.peers.is_empty() || u.older > 0);
    }

    /// A message became durable in `m.inbox` (rooms are not inboxes: the
    /// caller leaves them out). Sequences only grow per inbox; an older
    /// or repeated one changes nothing.
    pub fn note(&mut self, m: &MessageRecord) {
        if self.limits.max_per_user == 0 {
            return;
        }
        let peer = conversation_of(m.inbox, m);
        let user = self.users.entry(m.inbox).or_default();
        let preview_len = m.payload.len().min(self.limits.preview_bytes as usize);
        let last = LastMessage {
            seq: m.seq,
            from: m.from,
            from_device: m.from_device,
            ts_ms: m.ts_ms,
            len: m.payload.len().min(u32::MAX as usize) as u32,
            // A copy, so the preview does not hold the whole payload's buffer.
            preview: Bytes::copy_from_slice(&m.payload[..preview_len]),
        };
        if !user.peers.contains_key(&peer) && user.peers.len() >= self.limits.max_per_user as usize
        {
            evict_least_recent(user);
        }
        let max_index = self.limits.index_per_conversation as usize;
        let own = m.from == m.inbox;
        match user.peers.get_mut(&peer) {
            Some(c) => {
                if m.seq <= c.last.seq {
                    return;
                }
                user.recent.remove(&c.last.seq);
                c.last = last;
                c.total += 1;
                c.push(m.seq, own, max_index);
            }
            None => {
                let mut c = Conversation {
                    last,
                    total: 1,
                    seqs: VecDeque::new(),
                    own: VecDeque::new(),
                    trimmed: false,
                };
                c.push(m.seq, own, max_index);
                user.peers.insert(peer, c);
            }
        }
        user.recent.insert(m.seq, peer);
    }

    /// `user`'s conversations, if any is tracked.
    pub fn of(&self, user: UserId) -> Option<&UserConversations> {
        self.users.get(&user)
    }

    /// Every user's conversations (checkpoints).
    pub fn users(&self) -> impl Iterator<Item = (&UserId, &UserConversations)> {
        self.users.iter()
    }

    /// Restores one conversation as a checkpoint holds it (any order);
    /// false, changing nothing, if the user already has this peer or a
    /// conversation ending at the same sequence (a malformed checkpoint).
    pub fn restore(&mut self, user: UserId, peer: UserId, c: Conversation) -> bool {
        let u = self.users.entry(user).or_default();
        if u.peers.contains_key(&peer) || u.recent.contains_key(&c.last.seq) {
            return false;
        }
        u.recent.insert(c.last.seq, peer);
        u.peers.insert(peer, c);
        true
    }

    /// Restores a user's count of evicted conversations (checkpoints).
    pub fn restore_older(&mut self, user: UserId, older: u64) {
        if older > 0 {
            self.users.entry(user).or_default().older = older;
        }
    }

    /// Number of conversations tracked on this shard.
    pub fn tracked(&self) -> usize {
        self.users.values().map(|u| u.peers.len()).sum()
    }

    /// One page of `user`'s summaries for a device at `cursor`: up to
    /// `limit` conversations whose last sequence is below `before` (all
    /// when `before` is 0), newest first; with `unread_only`, those with
    /// unread messages only. Costs O(page · log n), plus the read
    /// conversations skipped when `unread_only`.
    pub fn summaries(
        &self,
        user: UserId,
        cursor: Seq,
        before: Seq,
        limit: u32,
        unread_only: bool,
    ) -> SummaryPage<'_> {
        let Some(u) = self.users.get(&user) else {
            return SummaryPage {
                items: Vec::new(),
                end: true,
                older: 0,
            };
        };
        let upper = if before == Seq::ZERO {
            Seq(u64::MAX)
        } else {
            before
        };
        let mut items = Vec::new();
        let mut end = true;
        for (_, peer) in u.recent.range(..upper).rev() {
            let Some(c) = u.peers.get(peer) else {
                debug_assert!(false, "{peer} is recent but not tracked");
                continue;
            };
            let (unread, at_least) = c.unread(cursor);
            if unread_only && unread == 0 {
                continue;
            }
            if items.len() as u32 == limit {
                end = false;
                break;
            }
            items.push((*peer, c, unread, at_least));
        }
        SummaryPage {
            items,
            end,
            older: u.older,
        }
    }

    /// Which sequences of conversation `peer` of `user` a page reads
    /// (`limit` ≥ 1): `Latest` the newest, `Before(a)` the newest below
    /// `a`, `After(a)` the oldest above `a`. `None`: not tracked.
    pub fn plan(
        &self,
        user: UserId,
        peer: UserId,
        direction: SyncDirection,
        limit: u32,
    ) -> Option<PagePlan> {
        let c = self.users.get(&user)?.peers.get(&peer)?;
        let limit = limit as usize;
        let n = c.seqs.len();
        let (lo, hi) = match direction {
            SyncDirection::Latest => (n.saturating_sub(limit), n),
            SyncDirection::Before(a) => {
                let hi = c.seqs.partition_point(|s| *s < a);
                (hi.saturating_sub(limit), hi)
            }
            SyncDirection::After(a) => {
                let lo = c.seqs.partition_point(|s| *s <= a);
                (lo, (lo + limit).min(n))
            }
        };
        let backward = !matches!(direction, SyncDirection::After(_));
        Some(PagePlan {
            seqs: c.seqs.range(lo..hi).copied().collect(),
            first_prev: lo.checked_sub(1).map_or(Seq::ZERO, |i| c.seqs[i]),
            end: if backward {
                lo == 0 && !c.trimmed
            } else {
                hi == n
            },
            truncated: backward && lo == 0 && c.trimmed,
        })
    }
}

fn evict_least_recent(user: &mut UserConversations) {
    if let Some((_, peer)) = user.recent.pop_first() {
        user.peers.remove(&peer);
        user.older += 1;
    }
}

mod serve;
pub(crate) use serve::FetchRead;
pub use serve::{BadConversationLimit, UnreadFrom};

#[cfg(test)]
mod tests;
