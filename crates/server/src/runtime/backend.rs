//! What the admin API and the backend ask of a shard: publishes on a
//! user's behalf, member changes, disconnects (the futures behind
//! [`crate::admin_api`]).

use std::rc::Rc;

use glommio::channels::local_channel;

use super::ShardRuntime;
use crate::admin_api::OwnerError;
use crate::mesh::MeshMsg;
use surepush_cluster::admin_calls::AdminCall;
use surepush_core::{Address, MembersOutcome, Publish, StoreOutcome};
use surepush_proto::UserId;

impl ShardRuntime {
    /// Starts a publish by the backend or on a gone session's behalf
    /// (`Publish::by`, see `Shard::handle_publish`); resolves with its
    /// outcome. Its `request` is numbered here.
    pub(crate) async fn publish(self: &Rc<Self>, mut publish: Publish) -> StoreOutcome {
        let request = self.next_publish.get() + 1;
        self.next_publish.set(request);
        publish.request = request;
        let (tx, rx) = local_channel::new_bounded(1);
        self.publishes.borrow_mut().insert(request, tx);
        let now = self.now();
        self.core.borrow_mut().handle_publish(publish, now);
        self.drive();
        rx.recv().await.unwrap_or(StoreOutcome::Failed)
    }

    /// Closes the sessions of `user` (or of one device) wherever its
    /// owner shard is, on this node or another; resolves with how many
    /// were closed.
    pub(crate) async fn disconnect_user(
        self: &Rc<Self>,
        user: UserId,
        device: Option<surepush_proto::DeviceId>,
    ) -> Result<usize, OwnerError> {
        let address = self.core.borrow().router().address(user);
        match (address, &self.cluster) {
            (Address::Node(node, _), Some(link)) => {
                let call = AdminCall::Disconnect { user, device };
                crate::cluster::disconnect_answer(link.call(node, call).await)
            }
            _ => self.disconnect_on_node(user, device).await,
        }
    }

    /// [`ShardRuntime::disconnect_user`] for a user of this node only.
    pub(crate) async fn disconnect_on_node(
        self: &Rc<Self>,
        user: UserId,
        device: Option<surepush_proto::DeviceId>,
    ) -> Result<usize, OwnerError> {
        let owner = match self.core.borrow().router().address(user) {
            Address::Shard(shard) => shard.0,
            Address::Node(..) => return Err(OwnerError::OtherNode),
            Address::Unplaced(_) => return Err(OwnerError::Unavailable),
        };
        if owner == self.id {
            return Ok(self.kick_here(user, device));
        }
        let (reply, closed) = flume::bounded(1);
        self.handoff(
            owner,
            MeshMsg::Kick(crate::mesh::Kick {
                user,
                device,
                reply,
            }),
        );
        // A shard that stops first drops the sender: nothing was closed.
        Ok(closed.recv_async().await.unwrap_or(0))
    }

    /// [`ShardRuntime::disconnect_user`] on the owner shard.
    pub(crate) fn kick_here(
        self: &Rc<Self>,
        user: UserId,
        device: Option<surepush_proto::DeviceId>,
    ) -> usize {
        let now = self.now();
        let closed = self.core.borrow_mut().disconnect_user(user, device, now);
        self.drive();
        closed
    }

    /// Changes a group's or room's members (see
    /// `Shard::handle_members_update`); resolves with the outcome.
    pub(crate) async fn update_members(
        self: &Rc<Self>,
        id: UserId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
    ) -> MembersOutcome {
        let request = self.next_publish.get() + 1;
        self.next_publish.set(request);
        let (tx, rx) = local_channel::new_bounded(1);
        self.member_updates.borrow_mut().insert(request, tx);
        let now = self.now();
        self.core
            .borrow_mut()
            .handle_members_update(request, id, add, remove, now);
        self.drive();
        rx.recv().await.unwrap_or(MembersOutcome::Failed)
    }
}
