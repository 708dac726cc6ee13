//! Typed frames: what a decoded frame means, and how each is encoded.
//!
//! Decoding takes the whole frame as one `Bytes` (header included) and
//! slices payloads out of it, so a payload is never copied between the
//! receive buffer and the delivery core.
//!
//! By concern: `kind.rs` (frame types and flag bits), `inbox.rs` (the
//! inbox frames' structs: session, send, push, sync), `../room.rs` (room
//! frames), `conversation.rs` (conversation summaries and pages), `encode.rs` and `decode.rs` (the two directions, each one
//! `impl Frame` block over every kind).

mod conversation;
mod decode;
mod encode;
mod inbox;
mod kind;

pub use conversation::{
    ConvFetch, ConvList, ConvMsgs, ConvPage, ConvSummary, CONVLIST_UNREAD_ONLY, CONVMSGS_FIXED_LEN,
    CONVMSGS_TRUNCATED, CONVPAGE_FIXED_LEN, CONV_END, MSG_ITEM_FIXED_LEN, SUMMARY_FIXED_LEN,
    SUMMARY_UNREAD_AT_LEAST,
};
pub use inbox::{
    ConnAck, Connect, Disconnect, ErrorFrame, Push, Send, SendAck, SendResult, Sync, SyncDirection,
    SyncPage, KEEPALIVE_OFF,
};
pub use kind::{
    FrameKind, CONNACK_CURSOR_KNOWN, CONNECT_HAS_CURSOR, PUSH_ECHO, PUSH_RETRANSMIT, SEND_CONFIRM,
    SYNCPAGE_END, SYNCPAGE_GAP, SYNC_READ_AHEAD,
};

use super::error::ErrorCode;
use super::presence::{Presence, Watch, WatchAck};
use super::room::{RoomPush, SubAck, Subscribe};
use super::types::{Seq, UserId};

/// A decoded frame (see [`FrameKind`] for who sends which).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Open a session.
    Connect(Connect),
    /// Session open.
    ConnAck(ConnAck),
    /// Send a message.
    Send(Send),
    /// Outcome of a SEND.
    SendAck(SendAck),
    /// One inbox message.
    Push(Push),
    /// Cumulative acknowledgement of the inbox up to this sequence.
    Ack(Seq),
    /// Request a page of the inbox.
    Sync(Sync),
    /// One page of the inbox.
    SyncPage(SyncPage),
    /// QoS 2 release of a stored send.
    Rel {
        /// The released send.
        client_msg_id: u64,
        /// Its addressee.
        to: UserId,
    },
    /// QoS 2 release confirmed.
    Comp {
        /// The released send.
        client_msg_id: u64,
    },
    /// Keepalive probe with a nonce.
    Ping(u64),
    /// Keepalive answer with the probe's nonce.
    Pong(u64),
    /// Typed error.
    Error(ErrorFrame),
    /// Orderly close.
    Disconnect(Disconnect),
    /// Follow a room.
    Subscribe(Subscribe),
    /// Subscription in place.
    SubAck(SubAck),
    /// Stop following a room.
    Unsubscribe {
        /// The room.
        room: u64,
    },
    /// One room message.
    RoomPush(RoomPush),
    /// Cumulative acknowledgement of a room up to `seq`.
    RoomAck {
        /// The room.
        room: u64,
        /// Highest sequence processed.
        seq: Seq,
    },
    /// The subscription was dropped from live delivery: re-SUBSCRIBE after
    /// the last sequence processed (the next expected one was `next`).
    RoomLag {
        /// The room.
        room: u64,
        /// The next sequence the subscriber would have received.
        next: Seq,
    },
    /// Ask for a page of conversation summaries.
    ConvList(ConvList),
    /// A page of conversation summaries.
    ConvPage(ConvPage),
    /// Ask for a page of one conversation.
    ConvFetch(ConvFetch),
    /// A page of one conversation.
    ConvMsgs(ConvMsgs),
    /// Watch users' presence.
    Watch(Watch),
    /// Outcome of a WATCH.
    WatchAck(WatchAck),
    /// Stop watching these users.
    Unwatch(Vec<UserId>),
    /// A watched user's online devices.
    Presence(Presence),
    /// Register or drop a wildcard topic filter.
    Filter(crate::FilterReq),
    /// A topic stream matching a registered filter.
    Topic(crate::TopicSeen),
    /// Join or leave a share group.
    Share(crate::ShareReq),
    /// One message of a share group for this member.
    SharePush(crate::SharePush),
    /// A message of a share group finished by this member.
    ShareAck(crate::ShareAck),
}

impl Frame {
    /// An ERROR frame for `code` with context.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Frame {
        Frame::Error(ErrorFrame {
            code: code as u16,
            message: message.into(),
        })
    }

    /// A DISCONNECT frame.
    pub fn disconnect(reason: ErrorCode, redirect: impl Into<String>) -> Frame {
        Frame::Disconnect(Disconnect {
            reason: reason as u16,
            redirect: redirect.into(),
        })
    }

    /// The frame's type.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Connect(_) => FrameKind::Connect,
            Frame::ConnAck(_) => FrameKind::ConnAck,
            Frame::Send(_) => FrameKind::Send,
            Frame::SendAck(_) => FrameKind::SendAck,
            Frame::Push(_) => FrameKind::Push,
            Frame::Ack(_) => FrameKind::Ack,
            Frame::Sync(_) => FrameKind::Sync,
            Frame::SyncPage(_) => FrameKind::SyncPage,
            Frame::Rel { .. } => FrameKind::Rel,
            Frame::Comp { .. } => FrameKind::Comp,
            Frame::Ping(_) => FrameKind::Ping,
            Frame::Pong(_) => FrameKind::Pong,
            Frame::Error(_) => FrameKind::Error,
            Frame::Disconnect(_) => FrameKind::Disconnect,
            Frame::Subscribe(_) => FrameKind::Subscribe,
            Frame::SubAck(_) => FrameKind::SubAck,
            Frame::Unsubscribe { .. } => FrameKind::Unsubscribe,
            Frame::RoomPush(_) => FrameKind::RoomPush,
            Frame::RoomAck { .. } => FrameKind::RoomAck,
            Frame::RoomLag { .. } => FrameKind::RoomLag,
            Frame::ConvList(_) => FrameKind::ConvList,
            Frame::ConvPage(_) => FrameKind::ConvPage,
            Frame::ConvFetch(_) => FrameKind::ConvFetch,
            Frame::ConvMsgs(_) => FrameKind::ConvMsgs,
            Frame::Watch(_) => FrameKind::Watch,
            Frame::WatchAck(_) => FrameKind::WatchAck,
            Frame::Unwatch(_) => FrameKind::Unwatch,
            Frame::Presence(_) => FrameKind::Presence,
            Frame::Filter(_) => FrameKind::Filter,
            Frame::Topic(_) => FrameKind::Topic,
            Frame::Share(_) => FrameKind::Share,
            Frame::SharePush(_) => FrameKind::SharePush,
            Frame::ShareAck(_) => FrameKind::ShareAck,
        }
    }
}
