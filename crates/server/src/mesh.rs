//! What shards send each other, and the batching forwarder per peer.
//!
//! Messages to one peer are queued locally during a loop turn and sent as
//! one batch through the bounded glommio channel mesh. A full channel makes
//! the forwarder wait (backpressure), it never drops; connection readers
//! pause while the queued backlog is above a limit, which pushes the
//! backpressure out to the clients' TCP windows.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::transport::Handoff;
use surepush_core::PeerMsg;

/// A message between shards.
#[derive(Debug)]
pub enum MeshMsg {
    /// Delivery-core messages, in order.
    Batch(Vec<PeerMsg>),
    /// A client connection whose user this shard owns, whatever its
    /// protocol (`transport/handoff.rs`); boxed, so core batches stay small.
    Handoff(Box<Handoff>),
    /// Close a user's (or one device's) sessions on their owner shard.
    Kick(Kick),
    /// The admin's presence read, for the owner shard of the users.
    Presence(PresenceQuery),
    /// The admin's conversation read, for the owner shard of the user.
    Conversations(ConversationQuery),
}

/// The admin's read of `user`'s conversations, owned by the receiving
/// shard.
#[derive(Debug)]
pub struct ConversationQuery {
    /// Whose conversations.
    pub user: surepush_proto::UserId,
    /// Which page.
    pub read: crate::admin_api::ConversationRead,
    /// Gets the page.
    pub reply: flume::Sender<crate::admin_api::ConversationAnswer>,
}

/// The admin's presence read of `users`, all owned by the receiving shard.
#[derive(Debug)]
pub struct PresenceQuery {
    /// Whose presence.
    pub users: Vec<surepush_proto::UserId>,
    /// Gets each user with its online devices.
    pub reply: flume::Sender<Vec<(surepush_proto::UserId, Vec<surepush_proto::OnlineDevice>)>>,
}

/// The admin's disconnect call, for the owner shard of `user`.
#[derive(Debug)]
pub struct Kick {
    /// Whose sessions.
    pub user: surepush_proto::UserId,
    /// Only this device's, if given.
    pub device: Option<surepush_proto::DeviceId>,
    /// Gets the number of sessions closed.
    pub reply: flume::Sender<usize>,
}

/// Messages queued for one peer shard.
pub(crate) struct PeerQueue {
    pending: RefCell<Vec<MeshMsg>>,
    batch: RefCell<Vec<PeerMsg>>,
    wake: LocalSender<()>,
    /// Messages queued and not yet handed to the mesh.
    pub(crate) backlog: Cell<usize>,
}

impl PeerQueue {
    pub(crate) fn new() -> (Rc<PeerQueue>, LocalReceiver<()>) {
        let (wake, rx) = local_channel::new_bounded(1);
        let q = Rc::new(PeerQueue {
            pending: RefCell::new(Vec::new()),
            batch: RefCell::new(Vec::new()),
            wake,
            backlog: Cell::new(0),
        });
        (q, rx)
    }

    /// Queues a core message (batched with the others of this turn).
    pub(crate) fn push(&self, msg: PeerMsg) {
        self.batch.borrow_mut().push(msg);
        self.backlog.set(self.backlog.get() + 1);
        let _ = self.wake.try_send(());
    }

    /// Queues a connection handoff.
    pub(crate) fn handoff(&self, msg: MeshMsg) {
        self.seal();
        self.pending.borrow_mut().push(msg);
        self.backlog.set(self.backlog.get() + 1);
        let _ = self.wake.try_send(());
    }

    /// Closes the current batch so later messages go after it.
    fn seal(&self) {
        let batch = std::mem::take(&mut *self.batch.borrow_mut());
        if !batch.is_empty() {
            self.pending.borrow_mut().push(MeshMsg::Batch(batch));
        }
    }

    /// Forwards queued messages to `peer` until the mesh closes.
    pub(crate) async fn forward(
        self: Rc<Self>,
        senders: Rc<Senders<MeshMsg>>,
        peer: usize,
        wake: LocalReceiver<()>,
    ) {
        while wake.recv().await.is_some() {
            loop {
                self.seal();
                let msgs = std::mem::take(&mut *self.pending.borrow_mut());
                if msgs.is_empty() {
                    break;
                }
                for msg in msgs {
                    let n = match &msg {
                        MeshMsg::Batch(b) => b.len(),
                        MeshMsg::Handoff(_)
                        | MeshMsg::Kick(_)
                        | MeshMsg::Presence(_)
                        | MeshMsg::Conversations(_) => 1,
                    };
                    if let Err(lost) = senders.send_to(peer, msg).await {
                        tracing::error!(peer, ?lost, "mesh channel closed; message to peer lost");
                        return;
                    }
                    self.backlog.set(self.backlog.get().saturating_sub(n));
                }
            }
        }
    }
}
