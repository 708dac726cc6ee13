//! Presence: which devices of a user are online, and watches that report
//! changes (issue #22 item 2; docs/PROTOCOL.md section 6c).
//!
//! Who owns what:
//! - a user's sessions live on its owner shard, so the owner alone knows
//!   its online devices ([`Shard::online_devices`], read from the
//!   sessions; nothing is stored for presence, in memory or in the log);
//! - a connection's watches live on its own shard ([`Watches`]); the first
//!   watcher of a user on a shard sends the owner a [`PresenceWatch`], the
//!   last one to go a [`PresenceUnwatch`]; the owner answers each watch
//!   with the current state and sends every watching shard a
//!   [`PresenceChanged`] after changes; the watcher's shard hands each of
//!   its watching connections a PRESENCE frame;
//! - across nodes (`nodes.rs`, docs/CLUSTER.md "Presence across nodes"):
//!   a watcher's shard registers its node with the owner
//!   ([`PresenceNodeWatch`], answered with a stamped [`PresenceUpdate`]),
//!   and the owner publishes each change once on the user's subject for
//!   every watching node.
//!
//! Rules:
//! - permission: a session may watch its own user, and a user `u` its
//!   token's `acl` claim grants as the resource `presence/{u}` in the `sub`
//!   list (a contact list in the token, or `presence/+`); nothing else;
//! - changes are coalesced per user: the first change of a watched user
//!   arms a flush `presence_debounce_ms` later; the flush sends the state
//!   then, and nothing if it equals the state last sent (a disconnect and
//!   reconnect within the window with the same `since` cannot happen: a
//!   reconnect is a new session, so a flap shows as one PRESENCE with the
//!   device online and a new `since_ms`);
//! - a connection watches at most `max_watches_per_conn` users; a WATCH
//!   that would exceed it, or names a user it may not watch, changes
//!   nothing and is answered WATCHACK with the error code;
//! - presence is soft state: after a restart everyone is offline until
//!   they reconnect, and watches are re-made by the clients that
//!   reconnect.

mod nodes;
mod table;

pub(crate) use table::Watches;

use std::hash::BuildHasher;

use super::action::ConnId;
use super::shard::{Shard, TimerEvent, NS_PER_MS};
use crate::peer::{PresenceChanged, PresenceUnwatch, PresenceWatch};
#[cfg(doc)]
use crate::peer::{PresenceNodeWatch, PresenceUpdate};
use crate::router::ShardId;
use surepush_proto::{is_room, ErrorCode, Frame, OnlineDevice, Presence, UserId, Watch, WatchAck};
use surepush_token::AclAction;
use table::Added;

/// The resource name a token's `acl` `sub` list grants to watch `user`.
pub fn presence_resource(user: UserId) -> String {
    format!("presence/{}", user.0)
}

impl Shard {
    /// The online devices of `user` (owned by this shard), by device id;
    /// empty if none (or the user lives elsewhere).
    pub fn online_devices(&self, user: UserId) -> Vec<OnlineDevice> {
        let Some(inbox) = self.sessions.inbox(user) else {
            return Vec::new();
        };
        let mut out: Vec<OnlineDevice> = inbox
            .devices
            .iter()
            .filter_map(|d| {
                let c = self.conn(d.conn?)?;
                Some(OnlineDevice {
                    device: d.id,
                    since_ms: c.since_ms,
                    shard: self.params.id.0,
                    transport: c.transport.to_owned(),
                })
            })
            .collect();
        out.sort_by_key(|d| d.device.0);
        out
    }

    /// Watched users owned here, users watched from here, and watches of
    /// this shard's connections (metrics, tests).
    pub fn presence_sizes(&self) -> (usize, usize, usize) {
        self.presence.sizes()
    }

    /// WATCH from `conn`, a session of `me`.
    pub(super) fn on_watch(&mut self, conn: ConnId, me: UserId, w: Watch) {
        let Some(c) = self.conn(conn) else { return };
        let refused = w.users.iter().copied().find(|u| !may_watch(&c.acl, me, *u));
        let have = self.presence.count(conn);
        let mut new: Vec<UserId> = w
            .users
            .iter()
            .copied()
            .filter(|u| !self.presence.watches(conn, *u))
            .collect();
        new.sort_unstable();
        new.dedup();
        let (code, watching) = match refused {
            Some(_) => (ErrorCode::Forbidden as u16, have),
            None if have + new.len() > self.config.max_watches_per_conn as usize => {
                (ErrorCode::TooManyWatches as u16, have)
            }
            None => (0, have + new.len()),
        };
        let ack = WatchAck {
            request: w.request,
            code,
            watching: watching as u32,
            refused: refused.unwrap_or(UserId(0)),
        };
        self.send_frame(conn, Frame::WatchAck(ack));
        if code != 0 {
            return;
        }
        for user in new {
            match self.presence.add(conn, user) {
                Added::First => self.watch_owner(user),
                Added::Known(Some(devices)) => {
                    self.send_frame(conn, Frame::Presence(Presence { user, devices }))
                }
                Added::Known(None) => {} // the owner's answer reaches every watcher here
            }
        }
    }

    /// UNWATCH from `conn`: users it does not watch are ignored.
    pub(super) fn on_unwatch(&mut self, conn: ConnId, users: Vec<UserId>) {
        let gone = self.presence.remove(conn, &users);
        self.tell_owners_unwatched(gone);
    }

    /// `conn` is closing: its watches end, and if it was a session, its
    /// user's presence changed.
    pub(super) fn presence_on_close(&mut self, conn: ConnId, session: Option<UserId>) {
        let gone = self.presence.remove_conn(conn);
        self.tell_owners_unwatched(gone);
        if let Some(user) = session {
            self.presence_changed(user);
        }
    }

    fn tell_owners_unwatched(&mut self, users: Vec<UserId>) {
        for user in users {
            if self.owned_elsewhere(user) {
                self.unwatch_node_owner(user);
            } else {
                let shard = self.params.id;
                self.route_to_owner(user, PresenceUnwatch { user, shard });
            }
        }
    }

    /// The first watcher of `user` here: ask its owner, on this node or
    /// another.
    fn watch_owner(&mut self, user: UserId) {
        if self.owned_elsewhere(user) {
            self.watch_node_owner(user);
        } else {
            let shard = self.params.id;
            self.route_to_owner(user, PresenceWatch { user, shard });
        }
    }

    /// A session of `user` (owned here) opened or closed.
    pub(super) fn presence_changed(&mut self, user: UserId) {
        if self.presence.changed(user) {
            let at = self.now_ns + self.config.presence_debounce_ms * NS_PER_MS;
            self.timers.insert(at, TimerEvent::PresenceFlush);
        }
    }

    /// The coalescing window ended: each changed user's state goes to the
    /// shards watching it, unless it is what they last got.
    pub(super) fn flush_presence(&mut self) {
        for user in self.presence.take_dirty() {
            let devices = self.online_devices(user);
            let (shards, nodes) = self.presence.recipients(user, fingerprint(&devices));
            let shards = shards.to_vec();
            self.stats.presence_events += shards.len() as u64 + u64::from(nodes);
            for shard in shards {
                let devices = devices.clone();
                self.route_to(shard, PresenceChanged { user, devices });
            }
            if nodes {
                // Once for every watching node: the user's subject.
                let update = self.presence_update(user, devices);
                self.route_to(ShardId::ROOM_SUBJECTS, update);
            }
        }
    }

    /// On the owner: a shard watches `m.user` from now on; it gets the
    /// current state at once.
    pub(super) fn on_presence_watch(&mut self, m: PresenceWatch) {
        let devices = self.online_devices(m.user);
        self.presence
            .watch_from(m.user, m.shard, fingerprint(&devices));
        let user = m.user;
        self.route_to(m.shard, PresenceChanged { user, devices });
    }

    /// On the owner: a shard has no watchers of `m.user` left.
    pub(super) fn on_presence_unwatch(&mut self, m: PresenceUnwatch) {
        self.presence.unwatch_from(m.user, m.shard);
    }

    /// On a watcher's shard: the owner's state of `m.user` for its
    /// watching connections.
    pub(super) fn on_presence_changed(&mut self, m: PresenceChanged) {
        let conns = self.presence.received(m.user, &m.devices).to_vec();
        for conn in conns {
            let frame = Frame::Presence(Presence {
                user: m.user,
                devices: m.devices.clone(),
            });
            self.send_frame(conn, frame);
        }
    }
}

/// Whether a session of `me` with `acl` may watch `user` (module docs).
fn may_watch(acl: &surepush_token::Acl, me: UserId, user: UserId) -> bool {
    if user == me {
        return true;
    }
    !user.is_group()
        && !is_room(user.0)
        && acl.grants(AclAction::Subscribe, &presence_resource(user))
}

/// A fingerprint of a state, to recognise one already sent. Fixed seed:
/// compared on the owner shard only, never across processes.
fn fingerprint(devices: &[OnlineDevice]) -> u64 {
    foldhash::fast::FixedState::default().hash_one(devices)
}
