//! Presence frames: WATCH, WATCHACK, UNWATCH, PRESENCE (docs/PROTOCOL.md
//! section 6c). A session watches users; the gateway answers each WATCH
//! with one WATCHACK and then sends a PRESENCE (the user's online devices,
//! whole) for each watched user at once and after each change.
//!
//! Every list is bounded by the body it arrives in (a forged count is
//! `Malformed`, nothing is allocated for it).

use bytes::{BufMut, BytesMut};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{ErrorCode, ProtoError};
use super::types::{DeviceId, UserId};

/// WATCH: start watching these users' presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Echoed in the WATCHACK.
    pub request: u32,
    /// Users to watch (already watched ones are kept, not counted twice).
    pub users: Vec<UserId>,
}

/// WATCHACK: the outcome of a WATCH, all or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchAck {
    /// The WATCH's request id.
    pub request: u32,
    /// 0: every user is watched now; otherwise an [`ErrorCode`]
    /// (`Forbidden`, `TooManyWatches`) and none of the WATCH's users was
    /// added.
    pub code: u16,
    /// How many users the session watches after this WATCH.
    pub watching: u32,
    /// With `Forbidden`: the first user the session may not watch; else 0.
    pub refused: UserId,
}

impl WatchAck {
    /// The refusal as a typed code (`None`: accepted, or a code this build
    /// does not know).
    pub fn error(&self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.code)
    }
}

/// One online device of a user, as PRESENCE and the admin API report it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OnlineDevice {
    /// The device.
    pub device: DeviceId,
    /// When its session opened (ms since the Unix epoch).
    pub since_ms: u64,
    /// The shard holding its session (the user's owner shard).
    pub shard: u16,
    /// How it connected: `native`, `mqtt` (the session webhooks' names).
    pub transport: String,
}

/// PRESENCE: the online devices of a watched user (all of them; empty:
/// offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// The watched user.
    pub user: UserId,
    /// Its online devices, by device id.
    pub devices: Vec<OnlineDevice>,
}

/// Longest transport name in a PRESENCE entry.
pub const MAX_TRANSPORT_LEN: usize = u8::MAX as usize;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct WatchFixed {
    request: U32,
    count: U16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct WatchAckFixed {
    request: U32,
    code: U16,
    watching: U32,
    refused: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct PresenceFixed {
    user: U64,
    count: U16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct DeviceFixed {
    device: U64,
    since_ms: U64,
    shard: U16,
    transport_len: u8,
}

const USER_LEN: usize = std::mem::size_of::<u64>();
const COUNT_LEN: usize = std::mem::size_of::<u16>();
pub(crate) const WATCHACK_LEN: usize = std::mem::size_of::<WatchAckFixed>();
const DEVICE_FIXED_LEN: usize = std::mem::size_of::<DeviceFixed>();

pub(crate) fn watch_len(w: &Watch) -> usize {
    std::mem::size_of::<WatchFixed>() + w.users.len() * USER_LEN
}

pub(crate) fn unwatch_len(users: &[UserId]) -> usize {
    COUNT_LEN + users.len() * USER_LEN
}

pub(crate) fn presence_len(p: &Presence) -> usize {
    std::mem::size_of::<PresenceFixed>()
        + p.devices
            .iter()
            .map(|d| DEVICE_FIXED_LEN + transport_bytes(&d.transport).len())
            .sum::<usize>()
}

/// The transport name as sent: cut to [`MAX_TRANSPORT_LEN`] bytes (the
/// gateway's names are short ASCII).
fn transport_bytes(name: &str) -> &[u8] {
    &name.as_bytes()[..name.len().min(MAX_TRANSPORT_LEN)]
}

fn count_of(len: usize) -> u16 {
    u16::try_from(len).expect("a presence list holds at most 65535 items (the sender bounds it)")
}

pub(crate) fn encode_watch(w: &Watch, dst: &mut BytesMut) {
    let f = WatchFixed {
        request: w.request.into(),
        count: count_of(w.users.len()).into(),
    };
    dst.put_slice(f.as_bytes());
    put_users(&w.users, dst);
}

pub(crate) fn encode_watch_ack(a: &WatchAck, dst: &mut BytesMut) {
    let f = WatchAckFixed {
        request: a.request.into(),
        code: a.code.into(),
        watching: a.watching.into(),
        refused: a.refused.0.into(),
    };
    dst.put_slice(f.as_bytes());
}

pub(crate) fn encode_unwatch(users: &[UserId], dst: &mut BytesMut) {
    dst.put_u16_le(count_of(users.len()));
    put_users(users, dst);
}

pub(crate) fn encode_presence(p: &Presence, dst: &mut BytesMut) {
    let f = PresenceFixed {
        user: p.user.0.into(),
        count: count_of(p.devices.len()).into(),
    };
    dst.put_slice(f.as_bytes());
    for d in &p.devices {
        let name = transport_bytes(&d.transport);
        let f = DeviceFixed {
            device: d.device.0.into(),
            since_ms: d.since_ms.into(),
            shard: d.shard.into(),
            transport_len: name.len() as u8,
        };
        dst.put_slice(f.as_bytes());
        dst.put_slice(name);
    }
}

fn put_users(users: &[UserId], dst: &mut BytesMut) {
    for u in users {
        dst.put_u64_le(u.0);
    }
}

fn malformed(frame: &'static str, what: &'static str) -> ProtoError {
    ProtoError::Malformed { frame, what }
}

/// `count` user ids filling `rest` exactly.
fn users(rest: &[u8], count: usize, frame: &'static str) -> Result<Vec<UserId>, ProtoError> {
    if rest.len() != count * USER_LEN {
        return Err(malformed(frame, "user count differs from the body"));
    }
    Ok(rest
        .chunks_exact(USER_LEN)
        .map(|c| UserId(u64::from_le_bytes(c.try_into().expect("chunks of 8"))))
        .collect())
}

pub(crate) fn decode_watch(body: &[u8]) -> Result<Watch, ProtoError> {
    let (f, rest) = WatchFixed::ref_from_prefix(body)
        .map_err(|_| malformed("WATCH", "body shorter than its fixed part"))?;
    Ok(Watch {
        request: f.request.get(),
        users: users(rest, usize::from(f.count.get()), "WATCH")?,
    })
}

pub(crate) fn decode_watch_ack(body: &[u8]) -> Result<WatchAck, ProtoError> {
    let f = WatchAckFixed::ref_from_bytes(body)
        .map_err(|_| malformed("WATCHACK", "body length differs from its fixed size"))?;
    Ok(WatchAck {
        request: f.request.get(),
        code: f.code.get(),
        watching: f.watching.get(),
        refused: UserId(f.refused.get()),
    })
}

pub(crate) fn decode_unwatch(body: &[u8]) -> Result<Vec<UserId>, ProtoError> {
    let (count, rest) = U16::ref_from_prefix(body)
        .map_err(|_| malformed("UNWATCH", "body shorter than its count"))?;
    users(rest, usize::from(count.get()), "UNWATCH")
}

pub(crate) fn decode_presence(body: &[u8]) -> Result<Presence, ProtoError> {
    let (f, mut rest) = PresenceFixed::ref_from_prefix(body)
        .map_err(|_| malformed("PRESENCE", "body shorter than its fixed part"))?;
    let count = usize::from(f.count.get());
    if count > rest.len() / DEVICE_FIXED_LEN {
        return Err(malformed("PRESENCE", "count exceeds body"));
    }
    let mut devices = Vec::with_capacity(count);
    for _ in 0..count {
        let (d, after) = DeviceFixed::ref_from_prefix(rest)
            .map_err(|_| malformed("PRESENCE", "truncated device"))?;
        let len = usize::from(d.transport_len);
        if len > after.len() {
            return Err(malformed("PRESENCE", "transport name exceeds body"));
        }
        let transport = std::str::from_utf8(&after[..len])
            .map_err(|_| ProtoError::InvalidUtf8 {
                field: "PRESENCE transport",
            })?
            .to_owned();
        devices.push(OnlineDevice {
            device: DeviceId(d.device.get()),
            since_ms: d.since_ms.get(),
            shard: d.shard.get(),
            transport,
        });
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err(malformed("PRESENCE", "trailing bytes"));
    }
    Ok(Presence {
        user: UserId(f.user.get()),
        devices,
    })
}
