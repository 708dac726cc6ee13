//! Conversation frames (issue #22): CONVLIST asks for the inbox grouped by
//! conversation, CONVPAGE answers with one page of summaries; CONVFETCH
//! asks for one conversation's messages, CONVMSGS answers with a page.
//!
//! A conversation of a user's inbox is keyed by its `peer`: the group id
//! for a group message, else the other user of a 1:1 message (the
//! addressee for the user's own sends, the sender otherwise; the user
//! itself for a note to self). Every decoder here bounds its allocations
//! by what the body can hold, so a forged count is a typed error.

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::decode::decode_items;
use super::{Push, SyncDirection};
use crate::error::ProtoError;
use crate::header::{fixed_len, PushFixed};
use crate::types::{DeviceId, Seq, UserId};

/// CONVLIST flag: list only conversations with unread messages.
pub const CONVLIST_UNREAD_ONLY: u8 = 0x01;
/// CONVPAGE / CONVMSGS flag: nothing further exists in the requested direction.
pub const CONV_END: u8 = 0x01;
/// CONVMSGS flag: the conversation has older messages than the gateway's
/// per-conversation index reaches; page further back with SYNC `Before`.
pub const CONVMSGS_TRUNCATED: u8 = 0x02;
/// Summary item flag: `unread` is a lower bound (more unread messages
/// than the gateway indexes for this conversation).
pub const SUMMARY_UNREAD_AT_LEAST: u8 = 0x01;

/// CONVLIST: one page of the asking device's conversations, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvList {
    /// Echoed in the CONVPAGE.
    pub request_id: u32,
    /// Conversations whose last message has a sequence below this one
    /// (the last `last_seq` of the previous page); `Seq::ZERO`: from the newest.
    pub before: Seq,
    /// Page size (1..=gateway maximum).
    pub limit: u32,
    /// Only conversations with unread messages ([`CONVLIST_UNREAD_ONLY`]).
    pub unread_only: bool,
}

/// One conversation in a CONVPAGE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvSummary {
    /// The conversation: the peer user, or the group.
    pub peer: UserId,
    /// Messages after the asking device's cursor.
    pub unread: u32,
    /// `unread` is a lower bound ([`SUMMARY_UNREAD_AT_LEAST`]).
    pub unread_at_least: bool,
    /// Messages stored in the conversation since the gateway tracks it.
    pub total: u64,
    /// Sequence of the last message (in the asking user's inbox).
    pub last_seq: Seq,
    /// Sender of the last message.
    pub last_from: UserId,
    /// Sending device of the last message.
    pub last_from_device: DeviceId,
    /// Gateway receive time of the last message (ms since the Unix epoch).
    pub last_ts_ms: u64,
    /// Length of the last message's whole payload.
    pub last_len: u32,
    /// The first bytes of the last message's payload (at most the
    /// gateway's preview size; cut at a byte, not a character).
    pub preview: Bytes,
}

/// CONVPAGE: one page of conversation summaries, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvPage {
    /// The CONVLIST this answers.
    pub request_id: u32,
    /// The asking device's cursor, which `unread` counts from.
    pub cursor: Seq,
    /// Highest durable sequence of the inbox.
    pub head: Seq,
    /// Conversations the gateway stopped tracking (the least recent ones,
    /// beyond its per-user limit): their messages stay in the inbox.
    pub older: u64,
    /// Nothing further exists in the requested direction ([`CONV_END`]).
    pub end: bool,
    /// The summaries, by `last_seq` descending.
    pub items: Vec<ConvSummary>,
}

/// CONVFETCH: a page of one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvFetch {
    /// Echoed in the CONVMSGS.
    pub request_id: u32,
    /// The conversation.
    pub peer: UserId,
    /// Which messages: the newest, those before a sequence, or those after one.
    pub direction: SyncDirection,
    /// Page size (1..=gateway maximum).
    pub limit: u32,
}

/// CONVMSGS: a page of one conversation, ascending by seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvMsgs {
    /// The CONVFETCH this answers.
    pub request_id: u32,
    /// The conversation.
    pub peer: UserId,
    /// Highest durable sequence of the inbox when the page was read.
    pub head: Seq,
    /// Nothing further exists in the requested direction ([`CONV_END`]).
    pub end: bool,
    /// Older messages exist beyond the gateway's index ([`CONVMSGS_TRUNCATED`]).
    pub truncated: bool,
    /// The messages (`prev_seq` is the previous message of the
    /// conversation in this page, or `seq - 1` for the first).
    pub items: Vec<Push>,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct ConvListFixed {
    request_id: U32,
    before: U64,
    limit: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct ConvPageFixed {
    request_id: U32,
    cursor: U64,
    head: U64,
    older: U64,
    count: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct SummaryFixed {
    peer: U64,
    unread: U32,
    total: U64,
    last_seq: U64,
    last_from: U64,
    last_from_device: U64,
    last_ts_ms: U64,
    last_len: U32,
    flags: u8,
    preview_len: U16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct ConvFetchFixed {
    request_id: U32,
    peer: U64,
    anchor: U64,
    limit: U32,
    direction: u8,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct ConvMsgsFixed {
    request_id: U32,
    peer: U64,
    head: U64,
    count: U32,
}

/// Bytes of a CONVLIST body.
pub(crate) const CONVLIST_LEN: usize = fixed_len::<ConvListFixed>();
/// Bytes of a CONVFETCH body.
pub(crate) const CONVFETCH_LEN: usize = fixed_len::<ConvFetchFixed>();
/// Bytes of a CONVPAGE before its items.
pub const CONVPAGE_FIXED_LEN: usize = fixed_len::<ConvPageFixed>();
/// Bytes of one CONVPAGE item before its preview.
pub const SUMMARY_FIXED_LEN: usize = fixed_len::<SummaryFixed>();
/// Bytes of a CONVMSGS before its items.
pub const CONVMSGS_FIXED_LEN: usize = fixed_len::<ConvMsgsFixed>();
/// Bytes of one CONVMSGS (or SYNCPAGE) item before its payload.
pub const MSG_ITEM_FIXED_LEN: usize = fixed_len::<PushFixed>() + 4;

fn malformed(frame: &'static str, what: &'static str) -> ProtoError {
    ProtoError::Malformed { frame, what }
}

pub(crate) fn convpage_len(p: &ConvPage) -> usize {
    CONVPAGE_FIXED_LEN
        + p.items
            .iter()
            .map(|i| SUMMARY_FIXED_LEN + i.preview.len())
            .sum::<usize>()
}

pub(crate) fn convmsgs_len(p: &ConvMsgs) -> usize {
    CONVMSGS_FIXED_LEN + p.items.iter().map(super::encode::item_len).sum::<usize>()
}

pub(crate) fn encode_convlist(l: &ConvList, dst: &mut BytesMut) {
    let f = ConvListFixed {
        request_id: l.request_id.into(),
        before: l.before.0.into(),
        limit: l.limit.into(),
    };
    dst.put_slice(f.as_bytes());
}

pub(crate) fn decode_convlist(flags: u8, body: &[u8]) -> Result<ConvList, ProtoError> {
    let f = ConvListFixed::ref_from_bytes(body)
        .map_err(|_| malformed("CONVLIST", "body length differs from its fixed size"))?;
    Ok(ConvList {
        request_id: f.request_id.get(),
        before: Seq(f.before.get()),
        limit: f.limit.get(),
        unread_only: flags & CONVLIST_UNREAD_ONLY != 0,
    })
}

pub(crate) fn encode_convpage(p: &ConvPage, dst: &mut BytesMut) {
    let f = ConvPageFixed {
        request_id: p.request_id.into(),
        cursor: p.cursor.0.into(),
        head: p.head.0.into(),
        older: p.older.into(),
        count: (p.items.len() as u32).into(),
    };
    dst.put_slice(f.as_bytes());
    for i in &p.items {
        // The gateway cuts previews far below u16::MAX; a larger one is
        // cut here rather than written with a lying length.
        let preview = &i.preview[..i.preview.len().min(usize::from(u16::MAX))];
        let s = SummaryFixed {
            peer: i.peer.0.into(),
            unread: i.unread.into(),
            total: i.total.into(),
            last_seq: i.last_seq.0.into(),
            last_from: i.last_from.0.into(),
            last_from_device: i.last_from_device.0.into(),
            last_ts_ms: i.last_ts_ms.into(),
            last_len: i.last_len.into(),
            flags: if i.unread_at_least {
                SUMMARY_UNREAD_AT_LEAST
            } else {
                0
            },
            preview_len: (preview.len() as u16).into(),
        };
        dst.put_slice(s.as_bytes());
        dst.put_slice(preview);
    }
}

pub(crate) fn decode_convpage(flags: u8, body: Bytes) -> Result<ConvPage, ProtoError> {
    let name = "CONVPAGE";
    let (f, mut rest) =
        ConvPageFixed::ref_from_prefix(&body).map_err(|_| malformed(name, "truncated"))?;
    let count = f.count.get() as usize;
    if count > rest.len() / SUMMARY_FIXED_LEN {
        return Err(malformed(name, "count exceeds body"));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let (s, after) =
            SummaryFixed::ref_from_prefix(rest).map_err(|_| malformed(name, "truncated item"))?;
        if s.flags & !SUMMARY_UNREAD_AT_LEAST != 0 {
            return Err(malformed(name, "unknown item flag bits set"));
        }
        let len = usize::from(s.preview_len.get());
        if len > after.len() {
            return Err(malformed(name, "preview exceeds body"));
        }
        let start = body.len() - after.len();
        items.push(ConvSummary {
            peer: UserId(s.peer.get()),
            unread: s.unread.get(),
            unread_at_least: s.flags & SUMMARY_UNREAD_AT_LEAST != 0,
            total: s.total.get(),
            last_seq: Seq(s.last_seq.get()),
            last_from: UserId(s.last_from.get()),
            last_from_device: DeviceId(s.last_from_device.get()),
            last_ts_ms: s.last_ts_ms.get(),
            last_len: s.last_len.get(),
            preview: body.slice(start..start + len),
        });
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err(malformed(name, "trailing bytes"));
    }
    Ok(ConvPage {
        request_id: f.request_id.get(),
        cursor: Seq(f.cursor.get()),
        head: Seq(f.head.get()),
        older: f.older.get(),
        end: flags & CONV_END != 0,
        items,
    })
}

pub(crate) fn encode_convfetch(c: &ConvFetch, dst: &mut BytesMut) {
    let (direction, anchor) = match c.direction {
        SyncDirection::After(a) => (0u8, a),
        SyncDirection::Latest => (1, Seq::ZERO),
        SyncDirection::Before(a) => (2, a),
    };
    let f = ConvFetchFixed {
        request_id: c.request_id.into(),
        peer: c.peer.0.into(),
        anchor: anchor.0.into(),
        limit: c.limit.into(),
        direction,
    };
    dst.put_slice(f.as_bytes());
}

pub(crate) fn decode_convfetch(body: &[u8]) -> Result<ConvFetch, ProtoError> {
    let name = "CONVFETCH";
    let f = ConvFetchFixed::ref_from_bytes(body)
        .map_err(|_| malformed(name, "body length differs from its fixed size"))?;
    let anchor = Seq(f.anchor.get());
    let direction = match f.direction {
        0 => SyncDirection::After(anchor),
        1 => SyncDirection::Latest,
        2 => SyncDirection::Before(anchor),
        _ => return Err(malformed(name, "unknown direction")),
    };
    Ok(ConvFetch {
        request_id: f.request_id.get(),
        peer: UserId(f.peer.get()),
        direction,
        limit: f.limit.get(),
    })
}

pub(crate) fn encode_convmsgs(p: &ConvMsgs, dst: &mut BytesMut) {
    let f = ConvMsgsFixed {
        request_id: p.request_id.into(),
        peer: p.peer.0.into(),
        head: p.head.0.into(),
        count: (p.items.len() as u32).into(),
    };
    dst.put_slice(f.as_bytes());
    for item in &p.items {
        super::encode::encode_item(item, dst);
    }
}

pub(crate) fn decode_convmsgs(flags: u8, body: Bytes) -> Result<ConvMsgs, ProtoError> {
    let name = "CONVMSGS";
    let (f, rest) =
        ConvMsgsFixed::ref_from_prefix(&body).map_err(|_| malformed(name, "truncated"))?;
    let items = decode_items(name, f.count.get() as usize, &body, rest)?;
    Ok(ConvMsgs {
        request_id: f.request_id.get(),
        peer: UserId(f.peer.get()),
        head: Seq(f.head.get()),
        end: flags & CONV_END != 0,
        truncated: flags & CONVMSGS_TRUNCATED != 0,
        items,
    })
}
