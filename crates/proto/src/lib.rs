//! Wire format of the surepush protocol; `docs/PROTOCOL.md` is the contract.
//!
//! Ground rules:
//! - No I/O and no clock: this module turns bytes into [`Frame`]s and back.
//! - Every frame is an 8-byte [`FrameHeader`] (read in place with zerocopy)
//!   followed by a body whose fixed part is also read in place; payloads are
//!   `bytes::Bytes` slices of the receive buffer, never copied.
//! - Every malformed input is a typed [`ProtoError`] with a wire
//!   [`ErrorCode`]; nothing here panics on peer input.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod attrs;
mod codec;
mod error;
mod filter;
mod frame;
mod header;
mod presence;
mod room;
mod share;
mod state_key;
pub mod topic;
pub mod topic_stream;
mod types;

pub use attrs::{encoded_len as attrs_encoded_len, ATTRS_LEN_SIZE, QOS_HAS_ATTRS};
pub use codec::{decode_shared, Decoder};
pub use error::{ErrorCode, ProtoError};
pub use filter::{FilterReq, TopicSeen, FILTER_REMOVE, MAX_FILTER_LEN, TOPIC_NODES_ANSWERED};
pub use frame::{
    ConnAck, Connect, Disconnect, ErrorFrame, Frame, FrameKind, Push, Send, SendAck, SendResult,
    Sync, SyncDirection, SyncPage, CONNACK_CURSOR_KNOWN, CONNECT_HAS_CURSOR, KEEPALIVE_OFF,
    PUSH_ECHO, PUSH_RETRANSMIT, SEND_CONFIRM, SYNCPAGE_END, SYNC_READ_AHEAD,
};
pub use frame::{
    ConvFetch, ConvList, ConvMsgs, ConvPage, ConvSummary, CONVLIST_UNREAD_ONLY, CONVMSGS_FIXED_LEN,
    CONVMSGS_TRUNCATED, CONVPAGE_FIXED_LEN, CONV_END, MSG_ITEM_FIXED_LEN, SUMMARY_FIXED_LEN,
    SUMMARY_UNREAD_AT_LEAST,
};
pub use header::{FrameHeader, DEFAULT_MAX_FRAME, HEADER_LEN, MAGIC, VERSION};
pub use presence::{OnlineDevice, Presence, Watch, WatchAck, MAX_TRANSPORT_LEN};
pub use room::{is_room, RoomPush, SubAck, SubResult, Subscribe, SubscribeFrom, ROOM_BIT};
pub use share::{
    share_key, ShareAck, SharePush, ShareReq, MAX_SHARE_NAME_LEN, SHARE_EXPIRES, SHARE_LEAVE,
    SHARE_PERSISTENT,
};
pub use state_key::StateKey;
pub use types::{DeviceId, Qos, Seq, UserId};

#[cfg(test)]
mod tests;
