//! The admin API's presence reads (`GET /v1/users/{n}/presence`,
//! `POST /v1/presence`): each user's online devices come from its owner
//! shard ([`surepush_core::Shard::online_devices`]), asked once per shard
//! over the mesh ([`MeshMsg::Presence`]), all shards at once.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::ShardRuntime;
use crate::admin_api::UserPresences;
use crate::mesh::{MeshMsg, PresenceQuery};
use surepush_core::Address;
use surepush_proto::UserId;

impl ShardRuntime {
    /// Each of `users` (in that order) with its online devices; users of
    /// another cluster node have none here.
    pub(crate) async fn presence_of(self: &Rc<Self>, users: Vec<UserId>) -> UserPresences {
        let mut by_owner: BTreeMap<u16, Vec<UserId>> = BTreeMap::new();
        for &user in &users {
            if let Address::Shard(shard) = self.core.borrow().router().address(user) {
                by_owner.entry(shard.0).or_default().push(user);
            }
        }
        let mut found: HashMap<UserId, Vec<surepush_proto::OnlineDevice>> = HashMap::new();
        let mut waiting = Vec::new();
        for (owner, asked) in by_owner {
            if owner == self.id {
                found.extend(self.presence_here(asked));
                continue;
            }
            let (reply, answer) = flume::bounded(1);
            self.handoff(
                owner,
                MeshMsg::Presence(PresenceQuery {
                    users: asked,
                    reply,
                }),
            );
            waiting.push(answer);
        }
        for answer in waiting {
            // A shard that stops first drops the sender: nobody online there.
            found.extend(answer.recv_async().await.unwrap_or_default());
        }
        users
            .into_iter()
            .map(|u| (u, found.get(&u).cloned().unwrap_or_default()))
            .collect()
    }

    /// [`ShardRuntime::presence_of`] for users owned by this shard.
    pub(crate) fn presence_here(&self, users: Vec<UserId>) -> UserPresences {
        let core = self.core.borrow();
        users
            .into_iter()
            .map(|u| {
                let devices = core.online_devices(u);
                (u, devices)
            })
            .collect()
    }
}
