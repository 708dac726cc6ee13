//! Typed protocol errors and their wire codes.
//!
//! Every error a peer can cause has a stable `u16` code that travels in an
//! ERROR or DISCONNECT frame; `docs/PROTOCOL.md` lists them. Codes are never
//! reused: add new ones at the end.

use thiserror::Error;

/// Wire error codes (ERROR.code, DISCONNECT.reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame body does not match its type's layout.
    Malformed = 1,
    /// Header magic or version is not this protocol's.
    UnsupportedVersion = 2,
    /// Unknown frame type byte.
    UnknownFrameType = 3,
    /// Header length exceeds the negotiated maximum frame size.
    FrameTooLarge = 4,
    /// A text field is not valid UTF-8.
    InvalidUtf8 = 5,
    /// A frame other than CONNECT arrived before the session was established.
    NotConnected = 6,
    /// A second CONNECT on an established session.
    AlreadyConnected = 7,
    /// Token signature or format invalid.
    AuthFailed = 8,
    /// Token expired.
    TokenExpired = 9,
    /// CONNECT device id differs from the token's.
    DeviceMismatch = 10,
    /// The request touches another user's data.
    Forbidden = 11,
    /// ACK or SYNC acknowledges a sequence the gateway never sent or stored.
    AckBeyondSent = 12,
    /// SYNC with a zero or absurd limit or an unknown direction.
    BadSyncRequest = 13,
    /// QoS byte other than 0, 1, 2.
    InvalidQos = 14,
    /// Too many frames or bytes per second.
    RateLimited = 15,
    /// Too many concurrent connections for this user.
    TooManyConnections = 16,
    /// No frame within the idle timeout.
    IdleTimeout = 17,
    /// Pushes went unacknowledged after the maximum retries: connection dead.
    AckTimeout = 18,
    /// The gateway cannot store messages right now (disk full, sync failure).
    StorageUnavailable = 19,
    /// Another connection of the same device took over.
    Replaced = 20,
    /// The gateway is shutting down; reconnect (maybe elsewhere).
    ShuttingDown = 21,
    /// Too many SENDs awaiting SENDACK on this connection.
    InflightExceeded = 22,
    /// A bug on the gateway side; the connection is closed.
    Internal = 23,
    /// Client closed the session normally.
    Normal = 24,
    /// The backend disconnected this user or device (admin
    /// `POST /v1/users/{n}/disconnect`).
    Kicked = 25,
    /// (DISCONNECT) the user lives on another node of the cluster: connect
    /// to the redirect (issue #20).
    WrongNode = 26,
    /// A CONVLIST or CONVFETCH asked for a page size outside
    /// `1..=max_sync_limit` (issue #22).
    BadConversationRequest = 27,
    /// (WATCHACK) the WATCH would take the session above
    /// `max_watches_per_conn` watched users.
    TooManyWatches = 29,
}

impl ErrorCode {
    /// Every code, for docs and tests.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownFrameType,
        ErrorCode::FrameTooLarge,
        ErrorCode::InvalidUtf8,
        ErrorCode::NotConnected,
        ErrorCode::AlreadyConnected,
        ErrorCode::AuthFailed,
        ErrorCode::TokenExpired,
        ErrorCode::DeviceMismatch,
        ErrorCode::Forbidden,
        ErrorCode::AckBeyondSent,
        ErrorCode::BadSyncRequest,
        ErrorCode::InvalidQos,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::IdleTimeout,
        ErrorCode::AckTimeout,
        ErrorCode::StorageUnavailable,
        ErrorCode::Replaced,
        ErrorCode::ShuttingDown,
        ErrorCode::InflightExceeded,
        ErrorCode::Internal,
        ErrorCode::Normal,
        ErrorCode::Kicked,
        ErrorCode::WrongNode,
        ErrorCode::BadConversationRequest,
        ErrorCode::TooManyWatches,
    ];

    /// Parses a wire code; unknown codes map to `None` (a newer peer).
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == v)
    }
}

/// A decoding failure. Each maps to one [`ErrorCode`]; after any of them the
/// byte stream cannot be trusted and the connection is closed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Magic or version mismatch.
    #[error("unsupported protocol: magic {magic:#04x} version {version}")]
    UnsupportedVersion {
        /// Received magic byte.
        magic: u8,
        /// Received version byte.
        version: u8,
    },
    /// Unknown frame type.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// Declared length above the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared frame length (header included).
        len: u64,
        /// Limit in force.
        max: u32,
    },
    /// Body shorter/longer than its layout or a length field points outside.
    #[error("malformed {frame} frame: {what}")]
    Malformed {
        /// Frame type name.
        frame: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// Text field not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Field name.
        field: &'static str,
    },
    /// Bad QoS byte.
    #[error("invalid QoS {0}")]
    InvalidQos(u8),
}

impl ProtoError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ProtoError::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            ProtoError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtoError::Malformed { .. } => ErrorCode::Malformed,
            ProtoError::InvalidUtf8 { .. } => ErrorCode::InvalidUtf8,
            ProtoError::InvalidQos(_) => ErrorCode::InvalidQos,
        }
    }
}
