//! The durable state of a share group ([`DurableShare`]) and its byte
//! form, written to the log of the shard that owns the group.
//!
//! Format (little-endian), version [`VERSION`]:
//! `[version u8][streams u32]` then per stream
//! `[stream u64][done_through u64][done u32][seq u64]*[sent u32]([seq u64][user u64][device u64])*`,
//! then (version 2 on) the sessions of the members holding a QoS 2
//! message: `[members u32]([user u64][device u64][has u8][expiry_s u32][gone_ms u64])*`,
//! `has` bit 0: `expiry_s` is set, bit 1: `gone_ms` is set (an unset one
//! is written as 0). Version 1 (no member sessions) still reads: its
//! members never expire, as before.
//! Decoding bytes from the log never panics: anything short, long or of
//! another version is a [`ShareStateError`].

use surepush_proto::{DeviceId, Seq, UserId};

use super::{MemberId, MemberSession};

/// The version byte this build writes.
pub const VERSION: u8 = 2;

/// The first version, without member sessions: still read.
const VERSION_1: u8 = 1;

/// `has` bits of a member session.
const HAS_EXPIRY: u8 = 1;
const HAS_GONE: u8 = 2;

/// Bytes of one sequence, id or count field.
const U64: usize = size_of::<u64>();
const U32: usize = size_of::<u32>();

/// The durable part of a share group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableShare {
    /// Per stream: the cursor, the messages finished above it, and the QoS
    /// 2 messages sent to a member and not yet finished.
    pub streams: Vec<DurableStream>,
    /// The sessions of the members holding a QoS 2 message above.
    pub members: Vec<DurableMember>,
}

/// A member's session in [`DurableShare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableMember {
    /// The member.
    pub id: MemberId,
    /// Its session's expiry and, if it is away, since when.
    pub session: MemberSession,
}

/// One stream of [`DurableShare`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableStream {
    /// The topic stream.
    pub stream: u64,
    /// Every message at or below it is finished for the group.
    pub done_through: Seq,
    /// Finished above the cursor.
    pub done: Vec<Seq>,
    /// QoS 2 messages handed to a member, unfinished.
    pub sent_qos2: Vec<(Seq, MemberId)>,
}

/// Why stored share group bytes were not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareStateError {
    /// The bytes end inside a field.
    #[error("share group state truncated")]
    Truncated,
    /// Bytes are left after the last stream.
    #[error("share group state has {0} trailing bytes")]
    Trailing(usize),
    /// Written by a version this build does not read.
    #[error("share group state version {0} unknown")]
    Version(u8),
    /// A member session's `has` byte with unknown bits.
    #[error("share group member flags {0:#04x} unknown")]
    Flags(u8),
}

impl DurableShare {
    /// The bytes to store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put32(&mut out, self.streams.len());
        for s in &self.streams {
            out.extend_from_slice(&s.stream.to_le_bytes());
            out.extend_from_slice(&s.done_through.0.to_le_bytes());
            put32(&mut out, s.done.len());
            for seq in &s.done {
                out.extend_from_slice(&seq.0.to_le_bytes());
            }
            put32(&mut out, s.sent_qos2.len());
            for (seq, m) in &s.sent_qos2 {
                out.extend_from_slice(&seq.0.to_le_bytes());
                out.extend_from_slice(&m.user.0.to_le_bytes());
                out.extend_from_slice(&m.device.0.to_le_bytes());
            }
        }
        put32(&mut out, self.members.len());
        for m in &self.members {
            out.extend_from_slice(&m.id.user.0.to_le_bytes());
            out.extend_from_slice(&m.id.device.0.to_le_bytes());
            let MemberSession { expiry_s, gone_ms } = m.session;
            let has = if expiry_s.is_some() { HAS_EXPIRY } else { 0 }
                | if gone_ms.is_some() { HAS_GONE } else { 0 };
            out.push(has);
            out.extend_from_slice(&expiry_s.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&gone_ms.unwrap_or(0).to_le_bytes());
        }
        out
    }

    /// Reads what [`DurableShare::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<DurableShare, ShareStateError> {
        let mut r = Reader(bytes);
        let version = r.take(1)?[0];
        if version != VERSION && version != VERSION_1 {
            return Err(ShareStateError::Version(version));
        }
        let n = r.u32()?;
        // Counts come from disk: grow as fields are read, never by a count.
        let mut streams = Vec::new();
        for _ in 0..n {
            let stream = r.u64()?;
            let done_through = Seq(r.u64()?);
            let mut done = Vec::new();
            for _ in 0..r.u32()? {
                done.push(Seq(r.u64()?));
            }
            let mut sent_qos2 = Vec::new();
            for _ in 0..r.u32()? {
                let seq = Seq(r.u64()?);
                let member = MemberId {
                    user: UserId(r.u64()?),
                    device: DeviceId(r.u64()?),
                };
                sent_qos2.push((seq, member));
            }
            streams.push(DurableStream {
                stream,
                done_through,
                done,
                sent_qos2,
            });
        }
        let mut members = Vec::new();
        if version != VERSION_1 {
            for _ in 0..r.u32()? {
                let id = MemberId {
                    user: UserId(r.u64()?),
                    device: DeviceId(r.u64()?),
                };
                let has = r.take(1)?[0];
                if has & !(HAS_EXPIRY | HAS_GONE) != 0 {
                    return Err(ShareStateError::Flags(has));
                }
                let expiry_s = r.u32()?;
                let gone_ms = r.u64()?;
                let session = MemberSession {
                    expiry_s: (has & HAS_EXPIRY != 0).then_some(expiry_s),
                    gone_ms: (has & HAS_GONE != 0).then_some(gone_ms),
                };
                members.push(DurableMember { id, session });
            }
        }
        match r.0.len() {
            0 => Ok(DurableShare { streams, members }),
            left => Err(ShareStateError::Trailing(left)),
        }
    }
}

fn put32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("a group holds far fewer than 2^32 entries");
    out.extend_from_slice(&n.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ShareStateError> {
        if self.0.len() < n {
            return Err(ShareStateError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, ShareStateError> {
        let b = self.take(U64)?;
        Ok(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }

    fn u32(&mut self) -> Result<u32, ShareStateError> {
        let b = self.take(U32)?;
        Ok(u32::from_le_bytes(b.try_into().expect("took 4 bytes")))
    }
}
