//! Conversation summaries and pages of a [`ClientSession`] (issue #22,
//! docs/PROTOCOL.md section 7a): CONVLIST → [`Event::Conversations`],
//! CONVFETCH → [`Event::ConversationPage`].
//!
//! Both are reads the gateway answers once; they acknowledge nothing and
//! do not touch the replay. They are not resent after a reconnect: a
//! request lost with its connection gets no answer, and the application
//! asks again (the request id tells answers apart).

use super::session::ClientSession;
use surepush_proto::{ConvFetch, ConvList, Frame, Seq, SyncDirection, UserId};

impl ClientSession {
    /// Asks for up to `limit` conversation summaries whose last message
    /// is below `before` (`Seq::ZERO`: from the newest), newest first;
    /// with `unread_only`, only conversations with unread messages.
    /// Returns the request id the [`Event::Conversations`](super::Event)
    /// answer carries, or `None` when not connected.
    pub fn list_conversations(
        &mut self,
        before: Seq,
        limit: u32,
        unread_only: bool,
        now: u64,
    ) -> Option<u32> {
        let request_id = self.conversation_request(now)?;
        self.queue(Frame::ConvList(ConvList {
            request_id,
            before,
            limit,
            unread_only,
        }));
        Some(request_id)
    }

    /// Asks for a page of the conversation with `peer` (a user or a
    /// group): `Latest`, `Before(oldest held)` or `After(newest held)`.
    /// Returns the request id the [`Event::ConversationPage`](super::Event)
    /// answer carries, or `None` when not connected.
    pub fn fetch_conversation(
        &mut self,
        peer: UserId,
        direction: SyncDirection,
        limit: u32,
        now: u64,
    ) -> Option<u32> {
        let request_id = self.conversation_request(now)?;
        self.queue(Frame::ConvFetch(ConvFetch {
            request_id,
            peer,
            direction,
            limit,
        }));
        Some(request_id)
    }
}
