//! The inbox frames: session (CONNECT, CONNACK, ERROR, DISCONNECT), send
//! (SEND, SENDACK), delivery (PUSH) and replay (SYNC, SYNCPAGE).

use bytes::Bytes;

use crate::types::{DeviceId, Qos, Seq, UserId};

/// CONNECT: open a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// This device; must match the token's device claim.
    pub device: DeviceId,
    /// Highest inbox sequence the device holds, `None` for a new device.
    pub last_seq: Option<Seq>,
    /// Keepalive the client intends (ms); the gateway may lower it. 0: the
    /// gateway's default; [`KEEPALIVE_OFF`]: none (MQTT keep alive 0).
    pub keepalive_ms: u32,
    /// Signed token (JWT HS256 compact form).
    pub token: String,
}

/// `Connect::keepalive_ms` (and `ConnAck::keepalive_ms`) asking for (and
/// granting) no keepalive at all: the gateway never closes the session for
/// silence. MQTT's keep alive 0 (3.1.1 and 5.0 section 3.1.2.10); granted
/// unless the gateway's `max_keepalive_ms` is below its default, which then
/// applies as to any request above it.
pub const KEEPALIVE_OFF: u32 = u32::MAX;

/// CONNACK: the session is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Authenticated user.
    pub user: UserId,
    /// Authenticated device.
    pub device: DeviceId,
    /// Highest durable sequence in the user's inbox.
    pub head: Seq,
    /// The gateway's cursor for this device, if it has one.
    pub cursor: Option<Seq>,
    /// Largest frame the gateway accepts (header included).
    pub max_frame: u32,
    /// Unacknowledged pushes the gateway keeps in flight.
    pub push_window: u32,
    /// SENDs the client may have awaiting SENDACK.
    pub max_pending_sends: u32,
    /// Keepalive in force (ms); [`KEEPALIVE_OFF`]: none.
    pub keepalive_ms: u32,
    /// Largest SYNC `limit` accepted.
    pub max_sync_limit: u32,
}

/// SEND: a message to another user (or to oneself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Send {
    /// Sender-chosen id, unique per (user, device); the dedup key.
    pub client_msg_id: u64,
    /// Addressee.
    pub to: UserId,
    /// Delivery guarantee.
    pub qos: Qos,
    /// QoS 0: answer with a SENDACK all the same ([`SEND_CONFIRM`]).
    pub confirm: bool,
    /// Message attributes stored and delivered with the payload (empty:
    /// none; `attrs.rs`, e.g. MQTT 5 message properties).
    pub attrs: Bytes,
    /// Opaque payload.
    pub payload: Bytes,
}

/// Outcome of a SEND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SendResult {
    /// Stored durably now.
    Stored = 0,
    /// Stored earlier (a retry); `seq` is the original.
    Duplicate = 1,
    /// Not stored: storage unavailable; retry later.
    StorageUnavailable = 2,
    /// Not stored: not allowed.
    Forbidden = 3,
    /// Not stored: this client_msg_id was used before for a different
    /// message (another addressee, QoS or payload). Never retry it.
    Conflict = 4,
}

impl SendResult {
    pub(super) fn from_u8(v: u8) -> Option<SendResult> {
        Some(match v {
            0 => SendResult::Stored,
            1 => SendResult::Duplicate,
            2 => SendResult::StorageUnavailable,
            3 => SendResult::Forbidden,
            4 => SendResult::Conflict,
            _ => return None,
        })
    }

    /// True when the message is stored (now or before).
    pub fn is_stored(self) -> bool {
        matches!(self, SendResult::Stored | SendResult::Duplicate)
    }
}

/// SENDACK: the outcome of one SEND.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendAck {
    /// Echo of SEND.client_msg_id.
    pub client_msg_id: u64,
    /// Sequence in the addressee's inbox (0 if not stored).
    pub seq: Seq,
    /// Sequence of the copy in the sender's own inbox (0 if none).
    pub own_seq: Seq,
    /// Outcome.
    pub result: SendResult,
}

/// PUSH: one inbox message (also the item type of SYNCPAGE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Position in the receiving user's inbox (0 for QoS 0).
    pub seq: Seq,
    /// The previous position in the same inbox (`seq - 1` for stored messages).
    pub prev_seq: Seq,
    /// Sending user.
    pub from: UserId,
    /// Sending device.
    pub from_device: DeviceId,
    /// Addressee of the original send.
    pub to: UserId,
    /// Sender's id for the send.
    pub client_msg_id: u64,
    /// Gateway receive time (ms since the Unix epoch).
    pub ts_ms: u64,
    /// QoS of the send.
    pub qos: Qos,
    /// This device sent it; the payload is omitted.
    pub echo: bool,
    /// A retransmission.
    pub retransmit: bool,
    /// Message attributes the sender gave (empty: none; empty when `echo`).
    pub attrs: Bytes,
    /// Opaque payload (empty when `echo`).
    pub payload: Bytes,
}

/// Which part of the inbox a SYNC asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDirection {
    /// Messages with `seq > anchor`, oldest first. Also acknowledges
    /// `anchor`, unless the SYNC reads ahead ([`Sync::read_ahead`]).
    After(Seq),
    /// The newest messages.
    Latest,
    /// Messages with `seq < anchor`, the newest of those.
    Before(Seq),
}

/// SYNC: ask for a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sync {
    /// Echoed in the SYNCPAGE.
    pub request_id: u32,
    /// Which messages.
    pub direction: SyncDirection,
    /// Page size (1..=gateway maximum).
    pub limit: u32,
    /// Read only: an `After` SYNC does not acknowledge its anchor
    /// ([`SYNC_READ_AHEAD`](super::SYNC_READ_AHEAD)); no effect on `Latest`
    /// and `Before`.
    pub read_ahead: bool,
}

/// SYNCPAGE: one page of the inbox, ascending by seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncPage {
    /// The SYNC this answers.
    pub request_id: u32,
    /// Highest durable sequence of the inbox when the page was read.
    pub head: Seq,
    /// Nothing further exists in the requested direction.
    pub end: bool,
    /// Sequences are missing before or among the items (see [`SYNCPAGE_GAP`]).
    pub gap: bool,
    /// The messages (flags `echo`/`retransmit` are always false here).
    pub items: Vec<Push>,
}

/// ERROR: a typed error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// Raw wire code (see [`ErrorCode`]); unknown codes are kept.
    pub code: u16,
    /// Human-readable context.
    pub message: String,
}

/// DISCONNECT: orderly close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Raw wire reason (see [`ErrorCode`]).
    pub reason: u16,
    /// Where to reconnect (host:port), empty for "anywhere".
    pub redirect: String,
}
