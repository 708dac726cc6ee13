//! Storage requests: the appends and reads this shard asked its driver
//! for, and why.
//!
//! Owns: the append tokens in flight (in log order) with their
//! [`AppendPurpose`], the reads in flight with their [`ReadPurpose`], and
//! the shard's one-way "the log failed" flag.
//!
//! Invariants: tokens and read ids only grow; appends complete in token
//! order (the log is ordered, so a durable token makes every earlier one
//! durable); each purpose is handed back exactly once.
//!
//! Called by the dispatcher (`shard.rs`): `Shard::append` and `Shard::read`
//! start requests, `handle_appended` and `handle_read` complete them and
//! route each purpose to the part that issued it.

use std::collections::VecDeque;

use crate::action::{AppendToken, ConnId, ReadId};
use crate::hashing::FastHashMap;
use crate::router::ShardId;
use crate::SendKey;
use surepush_proto::{Seq, UserId};

/// The appends and reads in flight.
#[derive(Debug, Default)]
pub(super) struct Storage {
    appends: VecDeque<(AppendToken, AppendPurpose)>,
    next_token: AppendToken,
    reads: FastHashMap<ReadId, ReadPurpose>,
    next_read: ReadId,
    failed: bool,
}

impl Storage {
    /// Registers an append; returns the token its `Action::Append` carries.
    pub(super) fn start_append(&mut self, purpose: AppendPurpose) -> AppendToken {
        self.next_token += 1;
        self.appends.push_back((self.next_token, purpose));
        self.next_token
    }

    /// The purpose of the oldest append at or before `durable` (the driver
    /// reported `durable` done), until none is left.
    pub(super) fn complete_append(&mut self, durable: AppendToken) -> Option<AppendPurpose> {
        if self.appends.front()?.0 > durable {
            return None;
        }
        self.appends.pop_front().map(|(_, purpose)| purpose)
    }

    /// The token of the newest append issued (0: none yet).
    pub(super) fn last_token(&self) -> AppendToken {
        self.next_token
    }

    /// True once every append up to `token` has completed.
    pub(super) fn durable_through(&self, token: AppendToken) -> bool {
        self.appends.front().is_none_or(|(t, _)| *t > token)
    }

    /// Registers a read; returns the id its `Action::Read` carries.
    pub(super) fn start_read(&mut self, purpose: ReadPurpose) -> ReadId {
        self.next_read += 1;
        self.reads.insert(self.next_read, purpose);
        self.next_read
    }

    /// The purpose of read `id` (`None`: not ours, or answered before).
    pub(super) fn complete_read(&mut self, id: ReadId) -> Option<ReadPurpose> {
        self.reads.remove(&id)
    }

    /// True once an append failed: nothing durable is promised any more.
    pub(super) fn failed(&self) -> bool {
        self.failed
    }

    /// Records a failed append; true the first time.
    pub(super) fn mark_failed(&mut self) -> bool {
        !std::mem::replace(&mut self.failed, true)
    }
}

/// Why an append was issued.
#[derive(Debug)]
pub(super) enum AppendPurpose {
    /// A message copy: completes the in-flight copy `(key, inbox)`.
    Copy { key: SendKey, inbox: UserId },
    /// Cursor or release bookkeeping.
    Bookkeeping,
    /// A device's cursor beyond the inbox head (CONNECT `last_seq`): once
    /// durable, the head is raised to it and the CONNACK goes out.
    Raise {
        conn: ConnId,
        user: UserId,
        seq: Seq,
    },
    /// The last record of a membership change: answer `origin`.
    Membership {
        origin: ShardId,
        request: u64,
        members: Vec<UserId>,
    },
    /// Keyed state (`keyed.rs`): tell whoever asked, if anyone.
    State(Option<crate::keyed::StateReport>),
    /// Webhook event `id` (`webhook/`): hand it out once durable.
    Webhook(u64),
    /// A share group's state recording QoS 2 hand-outs: the messages go
    /// to their members' shards once it is durable (`share_groups.rs`).
    ShareHandout(Vec<(crate::router::ShardId, crate::peer::ShareDeliver)>),
}

/// Why a read was issued.
#[derive(Debug)]
pub(super) enum ReadPurpose {
    /// `head`: the durable head when the read was issued; every record up
    /// to it is in the result (up to the limit), so what is missing below
    /// it is gone.
    Sync {
        conn: ConnId,
        request: surepush_proto::Sync,
        head: Seq,
    },
    Refill {
        conn: ConnId,
        head: Seq,
    },
    RoomReplay(crate::room::ReplayTarget),
    /// The stored original of a retried SEND, read back before routing it.
    Retry(crate::retry::RetryCheck),
    /// A stored copy, read back before a retry is called a duplicate.
    Copy(crate::retry::CopyCheck),
    /// A page of one conversation (CONVFETCH).
    Conversation(crate::conversation::FetchRead),
    /// Part of an inbox exported for a partition move (`moving.rs`).
    Move(crate::moving::Serving),
    /// The newest message of a topic stream homed here, for its name
    /// (`topic_filters.rs`, after a restart).
    TopicName,
    /// A page of a share group's backlog: a stream's messages the group
    /// had no room for in memory, or all after its cursor after a restart
    /// (`share_groups/backlog.rs`).
    ShareReplay {
        /// The group's key.
        key: u64,
        /// The stream.
        stream: u64,
    },
}
