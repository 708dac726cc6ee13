//! Frame types (the header's kind byte) and the flag bits each may carry.

/// Frame type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client opens a session.
    Connect = 0x01,
    /// Gateway accepts a session.
    ConnAck = 0x02,
    /// Client sends a message.
    Send = 0x03,
    /// Gateway confirms a SEND is stored (QoS 1/2) or refused.
    SendAck = 0x04,
    /// Gateway delivers one inbox message.
    Push = 0x05,
    /// Client acknowledges its inbox up to a sequence (cumulative).
    Ack = 0x06,
    /// Client asks for a page of its inbox.
    Sync = 0x07,
    /// Gateway answers a SYNC.
    SyncPage = 0x08,
    /// Client releases a QoS 2 send (like MQTT PUBREL).
    Rel = 0x09,
    /// Gateway confirms the release (like MQTT PUBCOMP).
    Comp = 0x0A,
    /// Keepalive probe (either side).
    Ping = 0x0B,
    /// Keepalive answer.
    Pong = 0x0C,
    /// A typed error; the sender may close afterwards.
    Error = 0x0D,
    /// Orderly close with a reason and an optional redirect.
    Disconnect = 0x0E,
    /// Client follows a room.
    Subscribe = 0x0F,
    /// Gateway confirms a SUBSCRIBE.
    SubAck = 0x10,
    /// Client stops following a room.
    Unsubscribe = 0x11,
    /// Gateway delivers one room message.
    RoomPush = 0x12,
    /// Client acknowledges a room up to a sequence (QoS 1 subscriptions).
    RoomAck = 0x13,
    /// Gateway dropped a slow subscription from live delivery.
    RoomLag = 0x14,
    /// Client asks for its conversations' summaries (a page).
    ConvList = 0x15,
    /// Gateway answers a CONVLIST.
    ConvPage = 0x16,
    /// Client asks for a page of one conversation.
    ConvFetch = 0x17,
    /// Gateway answers a CONVFETCH.
    ConvMsgs = 0x18,
    /// Client starts watching users' presence.
    Watch = 0x19,
    /// Gateway answers a WATCH.
    WatchAck = 0x1A,
    /// Client stops watching users' presence.
    Unwatch = 0x1B,
    /// Gateway reports a watched user's online devices.
    Presence = 0x1C,
    /// Client registers or drops a wildcard topic filter.
    Filter = 0x1D,
    /// Gateway names a topic stream matching a registered filter.
    Topic = 0x1E,
    /// Client joins or leaves a share group.
    Share = 0x1F,
    /// Gateway delivers one message of a share group to this member.
    SharePush = 0x20,
    /// Client finished a message of a share group.
    ShareAck = 0x21,
}

impl FrameKind {
    /// Parses a type byte.
    pub fn from_u8(v: u8) -> Option<FrameKind> {
        use FrameKind::*;
        Some(match v {
            0x01 => Connect,
            0x02 => ConnAck,
            0x03 => Send,
            0x04 => SendAck,
            0x05 => Push,
            0x06 => Ack,
            0x07 => Sync,
            0x08 => SyncPage,
            0x09 => Rel,
            0x0A => Comp,
            0x0B => Ping,
            0x0C => Pong,
            0x0D => Error,
            0x0E => Disconnect,
            0x0F => Subscribe,
            0x10 => SubAck,
            0x11 => Unsubscribe,
            0x12 => RoomPush,
            0x13 => RoomAck,
            0x14 => RoomLag,
            0x15 => ConvList,
            0x16 => ConvPage,
            0x17 => ConvFetch,
            0x18 => ConvMsgs,
            0x19 => Watch,
            0x1A => WatchAck,
            0x1B => Unwatch,
            0x1C => Presence,
            0x1D => Filter,
            0x1E => Topic,
            0x1F => Share,
            0x20 => SharePush,
            0x21 => ShareAck,
            _ => return None,
        })
    }

    /// Name used in errors and logs.
    pub fn name(self) -> &'static str {
        use FrameKind::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Send => "SEND",
            SendAck => "SENDACK",
            Push => "PUSH",
            Ack => "ACK",
            Sync => "SYNC",
            SyncPage => "SYNCPAGE",
            Rel => "REL",
            Comp => "COMP",
            Ping => "PING",
            Pong => "PONG",
            Error => "ERROR",
            Disconnect => "DISCONNECT",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            RoomPush => "ROOMPUSH",
            RoomAck => "ROOMACK",
            RoomLag => "ROOMLAG",
            ConvList => "CONVLIST",
            ConvPage => "CONVPAGE",
            ConvFetch => "CONVFETCH",
            ConvMsgs => "CONVMSGS",
            Watch => "WATCH",
            WatchAck => "WATCHACK",
            Unwatch => "UNWATCH",
            Presence => "PRESENCE",
            Filter => "FILTER",
            Topic => "TOPIC",
            Share => "SHARE",
            SharePush => "SHAREPUSH",
            ShareAck => "SHAREACK",
        }
    }
}

/// CONNECT flag: `last_seq` is meaningful (the device holds a cursor).
pub const CONNECT_HAS_CURSOR: u8 = 0x01;
/// CONNACK flag: the gateway knows a cursor for this device.
pub const CONNACK_CURSOR_KNOWN: u8 = 0x01;
/// SEND flag: answer this QoS 0 SEND with a SENDACK too (`Stored` with
/// seq 0 once it is handed to delivery, or `Forbidden`); QoS 1/2 SENDs are
/// always answered.
pub const SEND_CONFIRM: u8 = 0x01;
/// PUSH flag: this device sent the message itself; payload omitted.
pub const PUSH_ECHO: u8 = 0x01;
/// PUSH flag: a retransmission of an unacknowledged push.
pub const PUSH_RETRANSMIT: u8 = 0x02;
/// SYNCPAGE flag: nothing further exists in the requested direction.
pub const SYNCPAGE_END: u8 = 0x01;
/// SYNCPAGE flag: sequences are missing (gone: lost to damage or removed
/// by retention) between the anchor and the first item, between items,
/// or, for an empty `After` page, between the anchor and `head`.
pub const SYNCPAGE_GAP: u8 = 0x02;
/// SYNC flag: read ahead. An `After` page is read without acknowledging
/// its anchor; the client acknowledges with ACK as its application takes
/// the items (issue #24: reading ahead is not acknowledging).
pub const SYNC_READ_AHEAD: u8 = 0x01;
