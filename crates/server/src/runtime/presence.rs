//! The admin API's presence reads (`GET /v1/users/{n}/presence`,
//! `POST /v1/presence`): each user's online devices come from its owner
//! shard ([`surepush_core::Shard::online_devices`]), asked once per shard
//! over the mesh ([`MeshMsg::Presence`]), all shards at once; in a
//! cluster, users placed on other nodes are asked of those nodes, one
//! call per node, all at once (`cluster/admin_calls.rs`).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::ShardRuntime;
use crate::admin_api::{OwnerError, UserPresences};
use crate::mesh::{MeshMsg, PresenceQuery};
use surepush_cluster::admin_calls::AdminCall;
use surepush_cluster::NodeId;
use surepush_core::Address;
use surepush_proto::{OnlineDevice, UserId};

type Found = HashMap<UserId, Result<Vec<OnlineDevice>, OwnerError>>;

impl ShardRuntime {
    /// Each of `users` (in that order) with its online devices, wherever
    /// it is placed.
    pub(crate) async fn presence_of(self: &Rc<Self>, users: Vec<UserId>) -> UserPresences {
        self.presence(users, true).await
    }

    /// [`ShardRuntime::presence_of`] for users of this node only (another
    /// node's call: users placed elsewhere are `OtherNode`, never asked
    /// further).
    pub(crate) async fn presence_on_node(self: &Rc<Self>, users: Vec<UserId>) -> UserPresences {
        self.presence(users, false).await
    }

    async fn presence(self: &Rc<Self>, users: Vec<UserId>, forward: bool) -> UserPresences {
        let mut by_owner: BTreeMap<u16, Vec<UserId>> = BTreeMap::new();
        let mut by_node: BTreeMap<NodeId, Vec<UserId>> = BTreeMap::new();
        let mut found: Found = HashMap::new();
        for &user in &users {
            match self.core.borrow().router().address(user) {
                Address::Shard(shard) => by_owner.entry(shard.0).or_default().push(user),
                Address::Node(node, _) if forward && self.cluster.is_some() => {
                    by_node.entry(node).or_default().push(user)
                }
                Address::Node(..) => drop(found.insert(user, Err(OwnerError::OtherNode))),
                Address::Unplaced(_) => drop(found.insert(user, Err(OwnerError::Unavailable))),
            }
        }
        let mut calls = Vec::new();
        if let Some(link) = &self.cluster {
            for (node, asked) in by_node {
                let link = link.clone();
                calls.push(glommio::spawn_local(async move {
                    let call = AdminCall::Presence {
                        users: asked.clone(),
                    };
                    let answer = link.call(node, call).await;
                    crate::cluster::presence_answer(&asked, answer)
                }));
            }
        }
        let mut waiting = Vec::new();
        for (owner, asked) in by_owner {
            if owner == self.id {
                found.extend(ok(self.presence_here(asked)));
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
            found.extend(ok(answer.recv_async().await.unwrap_or_default()));
        }
        for call in calls {
            found.extend(call.await);
        }
        users
            .into_iter()
            .map(|u| {
                let devices = found.get(&u).cloned().unwrap_or(Ok(Vec::new()));
                (u, devices)
            })
            .collect()
    }

    /// The online devices of users owned by this shard.
    pub(crate) fn presence_here(&self, users: Vec<UserId>) -> Vec<(UserId, Vec<OnlineDevice>)> {
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

fn ok(
    found: Vec<(UserId, Vec<OnlineDevice>)>,
) -> impl Iterator<Item = (UserId, Result<Vec<OnlineDevice>, OwnerError>)> {
    found.into_iter().map(|(u, d)| (u, Ok(d)))
}
