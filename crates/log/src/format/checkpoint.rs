//! The checkpoint: the pointer file that says where the newest durable
//! checkpoint record is, and the snapshot body that record carries (the
//! recovered state as of its position; older body versions still load).
#![forbid(unsafe_code)]

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::{FromBytes, IntoBytes};

use super::{StateKeyBody, STATE_KEY_LEN};
use std::collections::VecDeque;

use crate::state::{DedupConfig, DedupEntry, RecoveredState, SendKey};
use crate::window::WindowStart;
use surepush_core::conversation::{Conversation, LastMessage};
use surepush_proto::{DeviceId, Qos, Seq, UserId};

/// Name of the file that says where the newest durable checkpoint is.
pub const CHECKPOINT_POINTER: &str = "checkpoint";

/// What the pointer file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// Position of the checkpoint record.
    pub lsn: u64,
    /// Where the QoS 1 dedup window began then; `None` for a version 1
    /// pointer, whose checkpoint holds the whole window.
    pub window: Option<WindowStart>,
}

/// Text of the pointer file:
/// `surepush-checkpoint v2 <lsn> <window lsn> <window clock ms> <crc32c hex>`,
/// the CRC over the three numbers as written, space-separated.
pub fn encode_pointer(lsn: u64, window: WindowStart) -> String {
    let numbers = format!("{lsn} {} {}", window.lsn, window.newest_ts_ms);
    format!(
        "surepush-checkpoint v2 {numbers} {:08x}\n",
        crc32c::crc32c(numbers.as_bytes())
    )
}

/// The pointer in a pointer file (version 1 or 2), `None` if it is damaged.
pub fn parse_pointer(text: &str) -> Option<Pointer> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (numbers, crc) = match parts.as_slice() {
        ["surepush-checkpoint", "v1", lsn, crc] => (vec![*lsn], crc),
        ["surepush-checkpoint", "v2", lsn, wlsn, wts, crc] => (vec![*lsn, *wlsn, *wts], crc),
        _ => return None,
    };
    let crc = u32::from_str_radix(crc, 16).ok()?;
    if crc32c::crc32c(numbers.join(" ").as_bytes()) != crc {
        return None;
    }
    let n: Vec<u64> = numbers
        .iter()
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    Some(Pointer {
        lsn: n[0],
        window: (n.len() == 3).then(|| WindowStart {
            lsn: n[1],
            newest_ts_ms: n[2],
        }),
    })
}

/// First word of a version 2 checkpoint body (a version 1 body starts
/// with its head count, which is never this).
const CHECKPOINT_MARK: u32 = u32::MAX;
/// Checkpoint body version written by this build (4: with conversation
/// summaries; 3: with keyed state; versions 2 and 3 still load, with no
/// summaries: they are tracked from the checkpoint on).
const CHECKPOINT_VERSION: u32 = 4;

/// A decoded checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The state as of the checkpoint.
    pub state: RecoveredState,
    /// Version 1: `state.dedup` is the whole window. Version 2 holds the
    /// QoS 2 part only (recovery rebuilds the rest from the log).
    pub whole_window: bool,
}

/// Encodes the log's [`RecoveredState`] (its `dedup` the QoS 2 part of the
/// window) as a checkpoint body, version 3:
/// `[0xFFFFFFFF u32][3 u32][newest message ms u64]
///  [n_heads u32][(user u64, seq u64)]* [n_cursors u32][(user, device, seq)]*
///  [n_dedup u32][(from, device, cmid, inbox, seq, ts u64; qos u8; released u8)]*
///  [n_groups u32][(group u64, n u32, members u64 * n)]*
///  [n_keyed u32][(key: tag u8, a u64, b u64; len u32; value)]*
///  [n_users u32][(user u64, older u64, n u32,
///     [(peer u64, total u64, trimmed u8, last seq u64, from u64, device u64,
///       ts u64, len u32, preview_len u16, preview, n_seqs u32, seq u64 * n_seqs,
///       n_own u32, seq u64 * n_own)]*)]*`
/// (version 4; the last section is the conversation summaries).
/// Version 2 (still read) has no keyed section. Version 1 (still read) is
/// version 2 without the first three fields, with the whole window in the
/// dedup section, and the groups section optional.
pub fn encode_checkpoint(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::with_capacity(
        28 + state.heads.len() * 16 + state.cursors.len() * 24 + state.dedup.len() * 50,
    );
    out.put_u32_le(CHECKPOINT_MARK);
    out.put_u32_le(CHECKPOINT_VERSION);
    out.put_u64_le(state.dedup.newest_ts_ms());
    encode_state(state, &mut out);
    encode_keyed(state, &mut out);
    encode_conversations(state, &mut out);
    out.freeze()
}

/// The conversations section of a version 4 checkpoint.
fn encode_conversations(state: &RecoveredState, out: &mut BytesMut) {
    let users: Vec<_> = state.conversations.users().collect();
    out.put_u32_le(users.len() as u32);
    for (user, u) in users {
        out.put_u64_le(user.0);
        out.put_u64_le(u.older);
        out.put_u32_le(u.peers.len() as u32);
        for (peer, c) in &u.peers {
            out.put_u64_le(peer.0);
            out.put_u64_le(c.total);
            out.put_u8(u8::from(c.trimmed));
            out.put_u64_le(c.last.seq.0);
            out.put_u64_le(c.last.from.0);
            out.put_u64_le(c.last.from_device.0);
            out.put_u64_le(c.last.ts_ms);
            out.put_u32_le(c.last.len);
            let preview = &c.last.preview[..c.last.preview.len().min(usize::from(u16::MAX))];
            out.put_u16_le(preview.len() as u16);
            out.put_slice(preview);
            for list in [&c.seqs, &c.own] {
                out.put_u32_le(list.len() as u32);
                for s in list {
                    out.put_u64_le(s.0);
                }
            }
        }
    }
}

/// A list of ascending sequences: `[n u32][seq u64 * n]`.
fn read_seqs(r: &mut Reader<'_>) -> Option<VecDeque<Seq>> {
    let n = r.u32()? as usize;
    let mut seqs = VecDeque::with_capacity(n.min(r.0.len() / 8));
    for _ in 0..n {
        let s = Seq(r.u64()?);
        if seqs.back().is_some_and(|b| *b >= s) {
            return None;
        }
        seqs.push_back(s);
    }
    Some(seqs)
}

/// Reads the conversations section into `state`; `None` if malformed.
fn decode_conversations(r: &mut Reader<'_>, state: &mut RecoveredState) -> Option<()> {
    for _ in 0..r.u32()? {
        let user = UserId(r.u64()?);
        state.conversations.restore_older(user, r.u64()?);
        for _ in 0..r.u32()? {
            let peer = UserId(r.u64()?);
            let total = r.u64()?;
            let trimmed = r.u8()? != 0;
            let last = LastMessage {
                seq: Seq(r.u64()?),
                from: UserId(r.u64()?),
                from_device: DeviceId(r.u64()?),
                ts_ms: r.u64()?,
                len: r.u32()?,
                preview: {
                    let n = usize::from(r.u16()?);
                    Bytes::copy_from_slice(r.bytes(n)?)
                },
            };
            let seqs = read_seqs(r)?;
            let own = read_seqs(r)?;
            if seqs.back().is_some_and(|s| *s != last.seq)
                || own.iter().any(|s| seqs.binary_search(s).is_err())
            {
                return None; // ending at the last message; own ones among them
            }
            let c = Conversation {
                last,
                total,
                seqs,
                own,
                trimmed,
            };
            if !state.conversations.restore(user, peer, c) {
                return None;
            }
        }
    }
    Some(())
}

fn encode_state(state: &RecoveredState, out: &mut BytesMut) {
    out.put_u32_le(state.heads.len() as u32);
    for (u, s) in &state.heads {
        out.put_u64_le(u.0);
        out.put_u64_le(s.0);
    }
    out.put_u32_le(state.cursors.len() as u32);
    for ((u, d), s) in &state.cursors {
        out.put_u64_le(u.0);
        out.put_u64_le(d.0);
        out.put_u64_le(s.0);
    }
    out.put_u32_le(state.dedup.len() as u32);
    for e in state.dedup.entries() {
        out.put_u64_le(e.key.from.0);
        out.put_u64_le(e.key.from_device.0);
        out.put_u64_le(e.key.client_msg_id);
        out.put_u64_le(e.inbox.0);
        out.put_u64_le(e.seq.0);
        out.put_u64_le(e.ts_ms);
        out.put_u8(e.qos as u8);
        out.put_u8(u8::from(e.released));
    }
    out.put_u32_le(state.groups.len() as u32);
    for (group, members) in &state.groups {
        out.put_u64_le(group.0);
        out.put_u32_le(members.len() as u32);
        for m in members {
            out.put_u64_le(m.0);
        }
    }
}

/// The keyed section of a version 3 checkpoint.
fn encode_keyed(state: &RecoveredState, out: &mut BytesMut) {
    out.put_u32_le(state.keyed.len() as u32);
    for (key, value) in &state.keyed {
        out.put_slice(StateKeyBody::of(*key).as_bytes());
        out.put_u32_le(value.len() as u32);
        out.put_slice(value);
    }
}

/// Decodes a checkpoint body of either version; `None` if malformed.
pub fn decode_checkpoint(body: &[u8], config: &DedupConfig) -> Option<Checkpoint> {
    let mut r = Reader(body);
    let v2 = body.get(..4) == Some(&CHECKPOINT_MARK.to_le_bytes()[..]);
    let mut version = 1;
    let newest = if v2 {
        r.u32()?;
        version = r.u32()?;
        if !(2..=CHECKPOINT_VERSION).contains(&version) {
            return None;
        }
        Some(r.u64()?)
    } else {
        None
    };
    let mut state = RecoveredState::default();
    for _ in 0..r.u32()? {
        state.heads.insert(UserId(r.u64()?), Seq(r.u64()?));
    }
    for _ in 0..r.u32()? {
        state
            .cursors
            .insert((UserId(r.u64()?), DeviceId(r.u64()?)), Seq(r.u64()?));
    }
    let mut entries = Vec::new();
    for _ in 0..r.u32()? {
        let key = SendKey {
            from: UserId(r.u64()?),
            from_device: DeviceId(r.u64()?),
            client_msg_id: r.u64()?,
        };
        entries.push(DedupEntry {
            key,
            inbox: UserId(r.u64()?),
            seq: Seq(r.u64()?),
            ts_ms: r.u64()?,
            qos: Qos::from_u8(r.u8()?)?,
            released: r.u8()? != 0,
        });
    }
    // Version 1 checkpoints written before groups existed have no section.
    if v2 || !r.0.is_empty() {
        for _ in 0..r.u32()? {
            let group = UserId(r.u64()?);
            let n = r.u32()? as usize;
            let mut members = Vec::with_capacity(n.min(r.0.len() / 8));
            for _ in 0..n {
                members.push(UserId(r.u64()?));
            }
            if !members.windows(2).all(|w| w[0] < w[1]) {
                return None; // members are kept sorted and unique
            }
            state.groups.insert(group, members);
        }
    }
    if version >= 3 {
        for _ in 0..r.u32()? {
            let key = StateKeyBody::read_from_bytes(&r.take::<STATE_KEY_LEN>()?)
                .ok()?
                .key()?;
            let len = r.u32()? as usize;
            let value = r.bytes(len)?;
            if state
                .keyed
                .insert(key, Bytes::copy_from_slice(value))
                .is_some()
            {
                return None; // each key once
            }
        }
    }
    if version >= 4 {
        decode_conversations(&mut r, &mut state)?;
    }
    if !r.0.is_empty() {
        return None;
    }
    // Re-insert oldest first so the window's eviction order is preserved.
    entries.sort_by_key(|e| (e.ts_ms, e.inbox, e.seq));
    for e in entries {
        state.dedup.restore(e, config);
    }
    if let Some(newest) = newest {
        state.dedup.observe(newest);
    }
    Some(Checkpoint {
        state,
        whole_window: !v2,
    })
}

/// Version 3 encoding (no conversations section), kept for the tests
/// that check old checkpoints still load.
#[cfg(test)]
pub fn encode_checkpoint_v3(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32_le(CHECKPOINT_MARK);
    out.put_u32_le(3);
    out.put_u64_le(state.dedup.newest_ts_ms());
    encode_state(state, &mut out);
    encode_keyed(state, &mut out);
    out.freeze()
}

/// Version 2 encoding (no keyed section), kept for the tests that check
/// old checkpoints still load.
#[cfg(test)]
pub fn encode_checkpoint_v2(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32_le(CHECKPOINT_MARK);
    out.put_u32_le(2);
    out.put_u64_le(state.dedup.newest_ts_ms());
    encode_state(state, &mut out);
    out.freeze()
}

/// Version 1 encoding, kept for the tests that check old checkpoints still load.
#[cfg(test)]
pub fn encode_checkpoint_v1(state: &RecoveredState) -> Bytes {
    let mut out = BytesMut::new();
    encode_state(state, &mut out);
    out.freeze()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_first_chunk::<N>()?;
        self.0 = b;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
}
