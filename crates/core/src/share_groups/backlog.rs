//! A share group's backlog: the messages of its streams it has no room
//! for in memory stay in the log and are read back in pages (issue #21,
//! docs/MQTT.md 2.3a "Nobody connected").
//!
//! - A group holds at most [`Shard::share_cap`] messages waiting for a
//!   member (`core.room_history`). A stream message that finds it full is
//!   not kept: the stream goes **behind** ([`Behind`]) and from then on the
//!   group keeps only the stream's position, every later message of it
//!   staying in the log. So memory is bounded by the cap, the members'
//!   Receive Maximums and one page per stream being read, whatever the
//!   members do: positions, not copies.
//! - When what the group holds falls to half the cap, the next page of a
//!   behind stream is read (`room_page` messages, at most the cap) and
//!   offered in order; a short page that reaches the stream's durable head
//!   puts the stream back on live offers. Live messages of a behind stream
//!   are never offered directly, so a stream's messages reach the group in
//!   order, each once.
//! - How far back a page reaches is a room subscriber's (`room.rs`):
//!   `core.room_resume_limit` messages behind the head (if set),
//!   `core.room_max_age_ms`, the log's retention. Older messages the group
//!   has not seen are dropped for it (`share_dropped`); one it handed to a
//!   member (a QoS 2 message restored after a restart) is offered anyway,
//!   so that member completes it.
//! - After a restart every stream of a restored group starts behind, at
//!   its cursor; the group answers joins once its reads have passed every
//!   message it counts as a member's (`share_groups.rs`, `joined_later`).

use super::Homed;
use crate::shard::Shard;
use crate::share_group::MessageKey;
use crate::storage::ReadPurpose;
use crate::{InboxQuery, MessageRecord, StateKey};
use bytes::Bytes;
use surepush_proto::topic::topic_matches;
use surepush_proto::topic_stream::split_payload;
use surepush_proto::{Seq, UserId};

/// A stream of a group whose newer messages wait in the log.
#[derive(Clone, Copy, Debug)]
pub(super) struct Behind {
    /// Every message of the stream up to here was offered to the group
    /// (or dropped for it); the next page starts after it.
    after: Seq,
    /// A page is being read: the stream's durable head when it was asked.
    reading: Option<Seq>,
}

impl Behind {
    /// Behind from `after` on, nothing being read.
    pub(super) fn after(after: Seq) -> Behind {
        Behind {
            after,
            reading: None,
        }
    }
}

impl Shard {
    /// Messages a group holds waiting for a member, in memory.
    pub(super) fn share_cap(&self) -> usize {
        self.config.room_history.max(1) as usize
    }

    /// Messages group `key` holds in memory (waiting or handed out), and
    /// its streams that are behind: what the bound is about.
    #[cfg(test)]
    pub(crate) fn share_held(&self, key: u64) -> (usize, usize) {
        self.shares
            .groups
            .get(&key)
            .map_or((0, 0), |h| (h.held.len(), h.behind.len()))
    }

    /// Messages per backlog page.
    fn share_page(&self) -> u32 {
        self.config
            .room_page
            .clamp(1, self.config.room_history.max(1))
    }

    /// Reads the next page of group `key`'s behind streams while what it
    /// holds waiting, with the pages under way, stays within half its cap.
    pub(super) fn share_refill(&mut self, key: u64) {
        let (cap, page) = (self.share_cap(), self.share_page());
        let Some(h) = self.shares.groups.get_mut(&key) else {
            return;
        };
        let under_way = h.behind.values().filter(|b| b.reading.is_some()).count();
        let mut held = h.state.waiting() + under_way * page as usize;
        let mut asks = Vec::new();
        for (&stream, b) in h.behind.iter_mut() {
            if held > cap / 2 {
                break;
            }
            if b.reading.is_some() {
                continue;
            }
            b.reading = Some(self.sessions.durable_head(UserId(stream)));
            held += page as usize;
            asks.push((stream, b.after));
        }
        for (stream, after) in asks {
            let query = InboxQuery::After { after, limit: page };
            self.read(
                UserId(stream),
                query,
                ReadPurpose::ShareReplay { key, stream },
            );
        }
    }

    /// A page of a behind stream of group `key`.
    pub(crate) fn on_share_replay(
        &mut self,
        key: u64,
        stream: u64,
        result: Result<Vec<MessageRecord>, ()>,
    ) {
        let page = self.share_page() as usize;
        let head = self.sessions.durable_head(UserId(stream));
        // A subscriber's bounds (room.rs `on_room_subscribe`, `on_room_read`).
        let oldest = match self.config.room_resume_limit {
            0 => Seq(1),
            limit => Seq(head.0.saturating_sub(u64::from(limit)).saturating_add(1)),
        };
        let cutoff = match self.config.room_max_age_ms {
            0 => 0,
            age => self.wall_ms().saturating_sub(age),
        };
        let Some(h) = self.shares.groups.get_mut(&key) else {
            return;
        };
        let Some(b) = h.behind.get_mut(&stream) else {
            return;
        };
        let Some(head_then) = b.reading.take() else {
            return;
        };
        let Ok(records) = result else {
            // Read again at the group's next event.
            tracing::warn!(key, stream, "share group backlog read failed");
            return;
        };
        let mut after = records.last().map_or(b.after, |r| r.seq.max(b.after));
        if records.is_empty() {
            // Nothing after `after` up to the head of the read's time: the
            // log's retention took it.
            after = after.max(head_then);
        }
        let live = records.len() < page && after >= head;
        if live {
            h.behind.remove(&stream);
        } else {
            b.after = after;
        }
        for record in records {
            self.share_offer_read(key, stream, record, oldest, cutoff);
        }
        // What the page gives again leaves before any join answer below.
        self.share_drain(key);
        let Some(h) = self.shares.groups.get_mut(&key) else {
            return;
        };
        if live {
            // Read to the end and not found: not in the log any more.
            h.unread.retain(|k| k.stream != stream);
        }
        if live || !h.state.handed_after(stream, after) {
            h.replaying.remove(&stream);
        }
        if h.replaying.is_empty() {
            for (shard, yes) in std::mem::take(&mut h.joined_later) {
                self.route_to(shard, yes);
            }
        }
    }

    /// Offers one message read back from the log to group `key`.
    fn share_offer_read(
        &mut self,
        key: u64,
        stream: u64,
        record: MessageRecord,
        oldest: Seq,
        cutoff: u64,
    ) {
        let Some(h) = self.shares.groups.get_mut(&key) else {
            return;
        };
        let name = split_payload(&record.payload).map(|(n, _)| n.to_string());
        if !name.is_some_and(|n| topic_matches(&h.filter, &n)) {
            return; // another name with the same stream id
        }
        let mk = MessageKey {
            stream,
            seq: record.seq,
        };
        if !h.state.knows(mk) && (record.seq < oldest || record.ts_ms < cutoff) {
            // Further back than a subscriber could resume: lost for the
            // group. The cursor passes it with the next finished message.
            self.stats.share_dropped += 1;
            return;
        }
        let qos = record.qos;
        h.held.insert(mk, record);
        if !h.state.offer(mk, qos) {
            h.held.remove(&mk); // finished before the restart
        } else if let Some(i) = h.unread.iter().position(|k| *k == mk) {
            h.unread.swap_remove(i);
            h.state.resend(mk);
        }
    }

    /// Restores the share groups of this shard's log (part of
    /// [`Shard::load_topic_names`]): each without members, every stream
    /// behind at its cursor.
    pub(crate) fn load_share_groups(&mut self) {
        let stored: Vec<(u64, Bytes)> = self
            .keyed
            .values()
            .filter_map(|(k, v)| match k {
                StateKey::ShareGroup { key } => Some((*key, v.clone())),
                _ => None,
            })
            .collect();
        for (key, value) in stored {
            let Some(mut h) = Homed::from_value(&value) else {
                tracing::warn!(key, "share group state unreadable: the group starts afresh");
                continue;
            };
            for s in h.state.durable().streams {
                h.behind.insert(s.stream, Behind::after(s.done_through));
                h.replaying.insert(s.stream);
            }
            self.shares.trie.insert(&h.filter, key);
            self.shares.groups.insert(key, h);
            self.share_expire_restored(key);
            self.share_refill(key);
        }
    }
}
