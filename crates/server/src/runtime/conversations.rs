//! The admin API's conversation and inbox reads (`GET
//! /v1/users/{n}/conversations`, `.../conversations/{kind}/{peer}/messages`
//! and `/v1/users/{n}/messages`): a user's summaries and pages live on its
//! owner shard, asked over the mesh
//! ([`MeshMsg::Conversations`]) when that is another shard, as presence
//! is. The owner serves them with the same core code as the CONVLIST and
//! CONVFETCH frames ([`surepush_core::Shard::conversation_summaries`],
//! [`surepush_core::Shard::handle_conversation_fetch`]); a page of
//! messages is one log read there. In a cluster, a user placed on another
//! node is asked of that node (`cluster/admin_calls.rs`).

use std::rc::Rc;

use glommio::channels::local_channel;

use super::ShardRuntime;
use crate::admin_api::{
    ConversationAnswer, ConversationError, ConversationPage, ConversationRead, OwnerError,
};
use crate::mesh::{ConversationQuery, MeshMsg};
use surepush_core::Address;
use surepush_proto::UserId;

impl ShardRuntime {
    /// Carries out `read` of `user`'s conversations on the user's owner
    /// shard, this one or another, or on its node.
    pub(crate) async fn conversations_of(
        self: &Rc<Self>,
        user: UserId,
        read: ConversationRead,
    ) -> ConversationAnswer {
        let address = self.core.borrow().router().address(user);
        match (address, &self.cluster) {
            (Address::Node(node, _), Some(link)) => {
                let call = crate::cluster::conversation_call(user, read);
                crate::cluster::conversation_answer(link.call(node, call).await)
            }
            _ => self.conversations_on_node(user, read).await,
        }
    }

    /// [`ShardRuntime::conversations_of`] for a user of this node only
    /// (another node's call: never asked further).
    pub(crate) async fn conversations_on_node(
        self: &Rc<Self>,
        user: UserId,
        read: ConversationRead,
    ) -> ConversationAnswer {
        let owner = match self.core.borrow().router().address(user) {
            Address::Shard(shard) => shard.0,
            Address::Node(..) => return Err(OwnerError::OtherNode.into()),
            Address::Unplaced(_) => return Err(OwnerError::Unavailable.into()),
        };
        if owner == self.id {
            return self.conversations_here(user, read).await;
        }
        let (reply, answer) = flume::bounded(1);
        self.handoff(
            owner,
            MeshMsg::Conversations(ConversationQuery { user, read, reply }),
        );
        // A shard that stops first drops the sender.
        answer
            .recv_async()
            .await
            .unwrap_or(Err(ConversationError::Unavailable))
    }

    /// Answers another shard's [`ConversationQuery`] (a page of messages
    /// waits for its log read, so in a task of its own).
    pub(crate) fn answer_conversations(self: &Rc<Self>, q: ConversationQuery) {
        let rt = self.clone();
        glommio::spawn_local(async move {
            let answer = rt.conversations_here(q.user, q.read).await;
            let _ = q.reply.send_async(answer).await;
        })
        .detach();
    }

    /// [`ShardRuntime::conversations_of`] for a user this shard owns.
    async fn conversations_here(
        self: &Rc<Self>,
        user: UserId,
        read: ConversationRead,
    ) -> ConversationAnswer {
        let (fetch, whole_inbox) = match read {
            ConversationRead::Summaries { from, list } => {
                let page = self
                    .core
                    .borrow_mut()
                    .conversation_summaries(user, from, &list)?;
                return Ok(ConversationPage::Summaries(page));
            }
            ConversationRead::Messages(fetch) => (fetch, false),
            ConversationRead::Inbox(fetch) => (fetch, true),
        };
        let request = self.next_publish.get() + 1;
        self.next_publish.set(request);
        let (tx, rx) = local_channel::new_bounded(1);
        self.conversation_reads.borrow_mut().insert(request, tx);
        let now = self.now();
        let started = if whole_inbox {
            self.core
                .borrow_mut()
                .handle_inbox_fetch(request, user, fetch, now)
        } else {
            self.core
                .borrow_mut()
                .handle_conversation_fetch(request, user, fetch, now)
        };
        if let Err(refused) = started {
            self.conversation_reads.borrow_mut().remove(&request);
            return Err(refused.into());
        }
        self.drive();
        match rx.recv().await.flatten() {
            Some(page) => Ok(ConversationPage::Messages(page)),
            None => Err(ConversationError::Unavailable),
        }
    }
}
