//! [`Watches`]: who watches whose presence, on both ends of the mesh.
//!
//! A shard plays two roles, each with its own map:
//! - **owner** of users (their sessions live here): for each user some
//!   shard watches, the shards watching it, the fingerprint of the last
//!   state it sent them, and whether a change waits for the next flush;
//! - **watcher**, for its own connections: for each user one of them
//!   watches, those connections and the last state received (so a new
//!   watcher here is answered at once, and a repeated state is not sent
//!   twice), plus each connection's list (for its limit and its close).
//!
//! Memory: an owner entry per watched user (shards + a `u64`), a watcher
//! entry per watched user per shard, and one `ConnId` plus one `UserId`
//! per watch. Nothing is kept for a user nobody watches: the online
//! devices themselves are read from the sessions when needed.

use crate::action::ConnId;
use crate::hashing::FastHashMap;
use crate::router::ShardId;
use surepush_cluster::NodeId;
use surepush_proto::{OnlineDevice, UserId};

/// Watched users owned here.
#[derive(Debug, Default)]
struct Watched {
    /// Shards with watchers, each once.
    shards: Vec<ShardId>,
    /// Other nodes with watchers (incarnations), each once: they hear
    /// every change from one publish on the user's subject.
    nodes: Vec<(NodeId, u64)>,
    /// Fingerprint of the last state sent to them.
    sent: u64,
    /// A change waits for the next flush.
    dirty: bool,
}

/// A user watched by connections of this shard.
#[derive(Debug, Default)]
struct Local {
    conns: Vec<ConnId>,
    /// The last state received from the owner (`None`: not yet).
    last: Option<Vec<OnlineDevice>>,
    /// The `(epoch, version)` of the last update from an owner on another
    /// node (older or repeated ones are ignored).
    stamp: Option<(u64, u64)>,
}

/// The presence watches of one shard (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Watches {
    owned: FastHashMap<UserId, Watched>,
    dirty: Vec<UserId>,
    local: FastHashMap<UserId, Local>,
    by_conn: FastHashMap<ConnId, Vec<UserId>>,
    /// Counter of the updates this shard sent to other nodes.
    version: u64,
}

/// What adding a connection's watch of a user asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// The first watcher of the user here: ask its owner.
    First,
    /// Already watched here; the last known state, if any, for the
    /// new watcher.
    Known(Option<Vec<OnlineDevice>>),
}

impl Watches {
    // ----- watcher side ------------------------------------------------------

    /// How many users `conn` watches.
    pub(crate) fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, Vec::len)
    }

    /// Whether `conn` watches `user`.
    pub(crate) fn watches(&self, conn: ConnId, user: UserId) -> bool {
        self.by_conn.get(&conn).is_some_and(|u| u.contains(&user))
    }

    /// `conn` watches `user` from now on (it did not before).
    pub(crate) fn add(&mut self, conn: ConnId, user: UserId) -> Added {
        self.by_conn.entry(conn).or_default().push(user);
        let local = self.local.entry(user).or_default();
        local.conns.push(conn);
        if local.conns.len() == 1 {
            Added::First
        } else {
            Added::Known(local.last.clone())
        }
    }

    /// `conn` stops watching `users`; returns those nobody here watches
    /// any more (their owners are told).
    pub(crate) fn remove(&mut self, conn: ConnId, users: &[UserId]) -> Vec<UserId> {
        let mut gone = Vec::new();
        if let Some(list) = self.by_conn.get_mut(&conn) {
            list.retain(|u| !users.contains(u));
            if list.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        for &user in users {
            let Some(local) = self.local.get_mut(&user) else {
                continue;
            };
            let before = local.conns.len();
            local.conns.retain(|c| *c != conn);
            if local.conns.is_empty() && before > 0 {
                self.local.remove(&user);
                gone.push(user);
            }
        }
        gone
    }

    /// `conn` closed: stops all its watches (as [`Watches::remove`]).
    pub(crate) fn remove_conn(&mut self, conn: ConnId) -> Vec<UserId> {
        match self.by_conn.get(&conn).cloned() {
            Some(users) => self.remove(conn, &users),
            None => Vec::new(),
        }
    }

    /// The owner reports `devices` for `user`: the connections here to
    /// tell, or none when nothing changed for them (or nobody watches).
    pub(crate) fn received(&mut self, user: UserId, devices: &[OnlineDevice]) -> &[ConnId] {
        let Some(local) = self.local.get_mut(&user) else {
            return &[];
        };
        if local.last.as_deref() == Some(devices) {
            return &[];
        }
        local.last = Some(devices.to_vec());
        &local.conns
    }

    /// An update stamped `stamp` from an owner on another node: true if it
    /// is newer than the last one taken for `user` (and is taken now).
    pub(crate) fn take_stamp(&mut self, user: UserId, stamp: (u64, u64)) -> bool {
        match self.local.get_mut(&user) {
            Some(local) if local.stamp.is_none_or(|s| s < stamp) => {
                local.stamp = Some(stamp);
                true
            }
            _ => false,
        }
    }

    /// The users connections of this shard watch.
    pub(crate) fn watched(&self) -> Vec<UserId> {
        self.local.keys().copied().collect()
    }

    // ----- owner side --------------------------------------------------------

    /// `shard` watches `user` (owned here); `sent` fingerprints the state
    /// it is about to be sent.
    pub(crate) fn watch_from(&mut self, user: UserId, shard: ShardId, sent: u64) {
        let w = self.owned_entry(user, sent);
        if !w.shards.contains(&shard) {
            w.shards.push(shard);
        }
    }

    /// Node `node` (incarnation `incarnation`) watches `user` (owned here);
    /// `sent` as for [`Watches::watch_from`]. An older incarnation of the
    /// node is replaced.
    pub(crate) fn watch_from_node(
        &mut self,
        user: UserId,
        node: NodeId,
        incarnation: u64,
        sent: u64,
    ) {
        let w = self.owned_entry(user, sent);
        match w.nodes.iter_mut().find(|(n, _)| *n == node) {
            Some(entry) => entry.1 = entry.1.max(incarnation),
            None => w.nodes.push((node, incarnation)),
        }
    }

    /// `user`'s entry, made with `sent` as the last state sent if new.
    fn owned_entry(&mut self, user: UserId, sent: u64) -> &mut Watched {
        self.owned.entry(user).or_insert_with(|| Watched {
            sent,
            ..Watched::default()
        })
    }

    /// Node `node` (incarnation `incarnation`) no longer watches `user`.
    pub(crate) fn unwatch_from_node(&mut self, user: UserId, node: &NodeId, incarnation: u64) {
        if let Some(w) = self.owned.get_mut(&user) {
            w.nodes.retain(|(n, i)| !(n == node && *i == incarnation));
            if w.shards.is_empty() && w.nodes.is_empty() {
                self.owned.remove(&user);
            }
        }
    }

    /// Keeps only the watching nodes `keep` accepts and the users `mine`
    /// accepts (after a placement or registry change).
    pub(crate) fn retain_owned(
        &mut self,
        keep: impl Fn(&NodeId, u64) -> bool,
        mine: impl Fn(UserId) -> bool,
    ) {
        self.owned.retain(|user, w| {
            w.nodes.retain(|(n, i)| keep(n, *i));
            mine(*user) && !(w.shards.is_empty() && w.nodes.is_empty())
        });
    }

    /// The next version of an update this shard sends to other nodes.
    pub(crate) fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// `shard` no longer watches `user`.
    pub(crate) fn unwatch_from(&mut self, user: UserId, shard: ShardId) {
        if let Some(w) = self.owned.get_mut(&user) {
            w.shards.retain(|s| *s != shard);
            if w.shards.is_empty() && w.nodes.is_empty() {
                self.owned.remove(&user);
            }
        }
    }

    /// `user`'s sessions changed; true if this is the first change waiting
    /// for a flush (arm the flush timer). Free for an unwatched user.
    pub(crate) fn changed(&mut self, user: UserId) -> bool {
        let Some(w) = self.owned.get_mut(&user) else {
            return false;
        };
        if w.dirty {
            return false;
        }
        w.dirty = true;
        self.dirty.push(user);
        self.dirty.len() == 1
    }

    /// The users whose change waits, cleared.
    pub(crate) fn take_dirty(&mut self) -> Vec<UserId> {
        let users = std::mem::take(&mut self.dirty);
        for u in &users {
            if let Some(w) = self.owned.get_mut(u) {
                w.dirty = false;
            }
        }
        users
    }

    /// The shards to send `user`'s state fingerprinted `fingerprint` to,
    /// and whether other nodes watch it (one publish on its subject):
    /// nothing if it equals the last one sent (a flap within the window).
    pub(crate) fn recipients(&mut self, user: UserId, fingerprint: u64) -> (&[ShardId], bool) {
        match self.owned.get_mut(&user) {
            Some(w) if w.sent != fingerprint => {
                w.sent = fingerprint;
                (&w.shards, !w.nodes.is_empty())
            }
            _ => (&[], false),
        }
    }

    /// Watched users owned here, watcher users here, watches here (for
    /// metrics and tests).
    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (
            self.owned.len(),
            self.local.len(),
            self.by_conn.values().map(Vec::len).sum(),
        )
    }
}
