//! Presence watches across nodes (issue #20; docs/CLUSTER.md "Presence
//! across nodes").
//!
//! - **Watcher's shard.** The first watcher here of a user placed on
//!   another node sends the owner a [`PresenceNodeWatch`] naming this node
//!   and its incarnation (the driver subscribes this shard's lane to the
//!   user's subject first); the answer is a [`PresenceUpdate`] with the
//!   state now. Each later update arrives from the subject. Updates carry
//!   a stamp `(placement epoch, version)`; one not newer than the last
//!   taken is ignored (a reply overtaken by a publish, a publish of an
//!   owner that lost the partition). The last watcher here leaving sends
//!   a [`PresenceNodeUnwatch`].
//! - **Owner's shard.** It keeps the watching nodes per user (each once,
//!   whatever their watcher count) next to its watching shards, and on a
//!   change publishes one [`PresenceUpdate`] to
//!   [`ShardId::ROOM_SUBJECTS`] (the user's subject) if any node watches.
//! - **Placement, registry and NATS changes** arrive as new routes
//!   ([`Shard::set_cluster_routes`]): a watcher re-registers every user
//!   whose owner changed (a move), whose owner's incarnation changed (a
//!   restart: its registrations were in memory), after NATS reconnected
//!   (a publish may have been lost) or after this node's own registry
//!   entry came back (owners dropped it), and the answer re-reads the state; a
//!   user whose owner left the registry (dead) shows offline to its
//!   watchers until the owner is back. An owner drops the registrations of
//!   a node incarnation once the registry shows a newer one, and of users
//!   no longer placed on it.

use surepush_proto::{Frame, Presence, UserId};

use super::fingerprint;
use crate::peer::{PresenceNodeUnwatch, PresenceNodeWatch, PresenceUpdate};
use crate::router::{Address, ClusterRoutes};
use crate::shard::Shard;

impl Shard {
    /// Whether `user`'s sessions live on another node (or on a partition
    /// not placed yet): its watches go through [`PresenceNodeWatch`].
    pub(super) fn owned_elsewhere(&self, user: UserId) -> bool {
        !matches!(self.router.address(user), Address::Shard(_))
    }

    /// Registers this node with `user`'s owner node. If that node is down
    /// (not in the registry), the watchers here see the user offline now;
    /// the registration waits in the link for the owner's return.
    pub(super) fn watch_node_owner(&mut self, user: UserId) {
        let Some(routes) = self.router.cluster().cloned() else {
            return;
        };
        if let Address::Node(owner, _) = self.router.address(user) {
            if routes.incarnation_of(&owner).is_none() {
                self.presence_offline(user);
            }
        }
        let watch = PresenceNodeWatch {
            user,
            node: routes.me().clone(),
            incarnation: routes.my_incarnation(),
            origin: self.params.id,
        };
        self.route_to_owner(user, watch);
    }

    /// Nobody here watches `user` (owned by another node) any more.
    pub(super) fn unwatch_node_owner(&mut self, user: UserId) {
        let Some(routes) = self.router.cluster().cloned() else {
            return;
        };
        let unwatch = PresenceNodeUnwatch {
            user,
            node: routes.me().clone(),
            incarnation: routes.my_incarnation(),
        };
        self.route_to_owner(user, unwatch);
    }

    /// `user`'s state stamped for other nodes.
    pub(super) fn presence_update(
        &mut self,
        user: UserId,
        devices: Vec<surepush_proto::OnlineDevice>,
    ) -> PresenceUpdate {
        let epoch = self
            .router
            .cluster()
            .map_or(0, |r| r.epoch(r.partition_of(user)));
        PresenceUpdate {
            user,
            epoch,
            version: self.presence.next_version(),
            devices,
        }
    }

    /// On the owner: another node watches `m.user` from now on; it gets
    /// the state now. An owner that does not hold the user (a placement
    /// change under way, its routes lagging the watcher's) registers it
    /// all the same and answers with the empty stamp `(0, 0)`, which the
    /// watcher ignores; once this shard's routes catch up, its changes
    /// reach the watcher.
    pub(crate) fn on_presence_node_watch(&mut self, m: PresenceNodeWatch) {
        let user = m.user;
        let devices = self.online_devices(user);
        let sent = fingerprint(&devices);
        // Registered even when the routes here do not (yet) name this
        // shard the owner: they may lag the watcher's, which sends no
        // second registration when they catch up.
        self.presence
            .watch_from_node(user, m.node, m.incarnation, sent);
        let update = if self.router.is_mine(user) {
            self.presence_update(user, devices)
        } else {
            PresenceUpdate {
                user,
                epoch: 0,
                version: 0,
                devices: Vec::new(),
            }
        };
        self.route_to(m.origin, update);
    }

    /// On the owner: a node has no watchers of `m.user` left.
    pub(crate) fn on_presence_node_unwatch(&mut self, m: PresenceNodeUnwatch) {
        self.presence
            .unwatch_from_node(m.user, &m.node, m.incarnation);
    }

    /// On a watcher's shard: an update from the owner's node, taken if it
    /// is newer than the last.
    pub(crate) fn on_presence_update(&mut self, m: PresenceUpdate) {
        // An owner on this node now speaks through the mesh; a late
        // publish of the node that had the user must not overtake it.
        if m.stamp() == (0, 0)
            || !self.owned_elsewhere(m.user)
            || !self.presence.take_stamp(m.user, m.stamp())
        {
            return;
        }
        self.tell_watchers(m.user, m.devices);
    }

    /// The watchers here see `user` offline (its owner node is down).
    fn presence_offline(&mut self, user: UserId) {
        self.tell_watchers(user, Vec::new());
    }

    fn tell_watchers(&mut self, user: UserId, devices: Vec<surepush_proto::OnlineDevice>) {
        let conns = self.presence.received(user, &devices).to_vec();
        for conn in conns {
            let frame = Frame::Presence(Presence {
                user,
                devices: devices.clone(),
            });
            self.send_frame(conn, frame);
        }
    }

    /// New routes are in force (`old`: the ones before, if any): watches
    /// follow moves, owner restarts and NATS reconnects, and registrations
    /// of nodes gone are dropped (module doc).
    pub(crate) fn presence_routes_changed(&mut self, old: Option<&ClusterRoutes>) {
        let Some(new) = self.router.cluster().cloned() else {
            return;
        };
        // After a NATS reconnect a publish may have been lost; after this
        // node's own registry entry expired and came back, the owners
        // dropped its registrations.
        let me_back = old.is_some_and(|o| o.incarnation_of(o.me()).is_none())
            && new.incarnation_of(new.me()).is_some();
        let reconnected = me_back || old.is_none_or(|o| o.reconnects() != new.reconnects());
        for user in self.presence.watched() {
            let p = new.partition_of(user);
            let owner = new.owner(p);
            let old_owner = old.and_then(|o| o.owner(o.partition_of(user)));
            let was_local = old_owner == Some(new.me());
            match owner {
                None => {}
                // Moved here: watch the local owner shard.
                Some(n) if n == new.me() && !was_local => self.watch_owner(user),
                Some(n) if n == new.me() => {}
                Some(n) => {
                    let live = new.incarnation_of(n);
                    let was_live = old.and_then(|o| o.incarnation_of(n));
                    let same_owner = old_owner == Some(n);
                    if live.is_none() {
                        if !same_owner || was_live.is_some() {
                            self.presence_offline(user);
                        }
                    } else if !same_owner || live != was_live || reconnected {
                        self.watch_node_owner(user);
                    }
                }
            }
        }
        // A registration ends with its node's incarnation: when the node
        // registers a new one. Not when its entry merely expires: the same
        // incarnation may come back (NATS restarted, a slow heartbeat)
        // with no reason to register again while this shard's view of it
        // lags.
        self.presence.retain_owned(
            |node, incarnation| {
                new.incarnation_of(node)
                    .is_none_or(|live| live == incarnation)
            },
            // Dropped for users placed on another node now (a move away);
            // kept while the placement names no owner (a KV resync after
            // NATS restarted shows that for a moment).
            |user| {
                new.owner(new.partition_of(user))
                    .is_none_or(|n| n == new.me())
            },
        );
    }
}
