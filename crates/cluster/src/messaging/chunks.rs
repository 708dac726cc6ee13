//! Replies larger than one NATS message, cut into chunks and put back
//! together (sans-IO).
//!
//! A [`BatchReply`](super::batch::BatchReply) carries one reply body per
//! message of its batch, and a request batch is cut by its own bytes, not
//! by its replies': a batch of many room subscriptions (hundreds of
//! subscribers resuming together) is small, while each of its replies may
//! carry up to a page of room history. So a reply may outgrow the NATS
//! server's `max_payload`. The replying node then publishes the encoded
//! reply as consecutive [`ReplyChunk`]s, each within the limit
//! ([`reply_chunks`]); the requester's [`ReplyAssembly`] appends them and
//! decodes the reply once whole.
//!
//! Loss needs no repair of its own: the chunks of one reply are queued
//! together on the node's one publisher and travel on one NATS connection
//! in order, so the requester sees them in order or with holes. A hole (a
//! chunk dropped by a full publish queue) discards the partial reply; the
//! requester's retry timer resends the batch and the receiver answers it
//! again from its reply cache, chunked again.

use bytes::{BufMut, Bytes, BytesMut};

use crate::node_id::NodeId;
use crate::wire::{self, kinds, put_blob, put_str, MessageKind, Reader, Wire, WireError};

/// Bytes a chunk adds around its slice of the reply (frame header, the
/// longest node id, offset, total and the slice's length).
pub const CHUNK_OVERHEAD: usize = wire::FRAME_HEADER + 2 + NodeId::MAX_LEN + 4 + 4 + 4;

/// Largest reply a requester puts back together (far above what a batch
/// of at most `max_batch_bytes` of requests is answered with; a bound on
/// the memory a peer can make this node hold).
pub const MAX_ASSEMBLED: usize = 256 * 1024 * 1024;

/// A slice of one encoded [`BatchReply`](super::batch::BatchReply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyChunk {
    /// The replying node.
    pub from: NodeId,
    /// Length of the whole encoded reply.
    pub total: u32,
    /// Where this slice starts in it.
    pub offset: u32,
    /// The slice.
    pub bytes: Bytes,
}

impl Wire for ReplyChunk {
    const KIND: MessageKind = kinds::REPLY_CHUNK;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.from.as_str());
        out.put_u32_le(self.total);
        out.put_u32_le(self.offset);
        put_blob(out, &self.bytes);
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        let chunk = ReplyChunk {
            from: body.node_id()?,
            total: body.u32()?,
            offset: body.u32()?,
            bytes: body.blob()?,
        };
        let end = u64::from(chunk.offset) + chunk.bytes.len() as u64;
        if chunk.bytes.is_empty() || end > u64::from(chunk.total) {
            return Err(WireError::Invalid {
                field: "reply chunk",
                reason: format!(
                    "{} bytes at {} of {}",
                    chunk.bytes.len(),
                    chunk.offset,
                    chunk.total
                ),
            });
        }
        Ok(chunk)
    }
}

/// The NATS payloads that carry `reply` (an encoded batch reply) from
/// `from` within `max_payload` bytes each: the reply itself if it fits,
/// else its chunks in order.
pub fn reply_chunks(from: &NodeId, reply: Bytes, max_payload: usize) -> Vec<Bytes> {
    if reply.len() <= max_payload || reply.len() > u32::MAX as usize {
        return vec![reply];
    }
    let slice = max_payload.saturating_sub(CHUNK_OVERHEAD).max(1);
    let total = reply.len() as u32;
    (0..reply.len())
        .step_by(slice)
        .map(|offset| {
            let end = (offset + slice).min(reply.len());
            wire::to_bytes(&ReplyChunk {
                from: from.clone(),
                total,
                offset: offset as u32,
                bytes: reply.slice(offset..end),
            })
        })
        .collect()
}

/// Puts chunked replies back together, one reply at a time per peer.
#[derive(Debug, Default)]
pub struct ReplyAssembly {
    partial: std::collections::HashMap<NodeId, BytesMut>,
}

impl ReplyAssembly {
    /// Takes one chunk; returns the whole encoded reply once its last chunk
    /// is in. A chunk that does not continue the reply being assembled
    /// from its peer (a hole) drops that reply; one at offset 0 starts a
    /// new one.
    pub fn push(&mut self, chunk: ReplyChunk) -> Option<Bytes> {
        let total = chunk.total as usize;
        if total > MAX_ASSEMBLED {
            return None;
        }
        if chunk.offset == 0 {
            self.partial
                .insert(chunk.from.clone(), BytesMut::with_capacity(total));
        }
        let buf = self.partial.get_mut(&chunk.from)?;
        if buf.len() != chunk.offset as usize || buf.capacity() < total {
            self.partial.remove(&chunk.from);
            return None;
        }
        buf.extend_from_slice(&chunk.bytes);
        if buf.len() < total {
            return None;
        }
        self.partial.remove(&chunk.from).map(BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::batch::{BatchOutcome, BatchReply};

    fn reply(bodies: usize, size: usize) -> BatchReply {
        BatchReply {
            from: NodeId::parse("b").expect("valid"),
            incarnation: 7,
            seq: 3,
            outcome: BatchOutcome::Done(
                (0..bodies)
                    .map(|i| Bytes::from(vec![i as u8; size]))
                    .collect(),
            ),
        }
    }

    fn chunks_of(encoded: &Bytes, max: usize) -> Vec<ReplyChunk> {
        let from = NodeId::parse("b").expect("valid");
        reply_chunks(&from, encoded.clone(), max)
            .iter()
            .map(|p| {
                assert!(p.len() <= max, "{} > {max}", p.len());
                wire::decode::<ReplyChunk>(p).expect("a chunk")
            })
            .collect()
    }

    #[test]
    fn a_reply_within_the_limit_goes_whole() {
        let encoded = wire::to_bytes(&reply(3, 10));
        let from = NodeId::parse("b").expect("valid");
        assert_eq!(reply_chunks(&from, encoded.clone(), 1024), vec![encoded]);
    }

    #[test]
    fn a_large_reply_is_cut_within_the_limit_and_put_back_together() {
        let original = reply(40, 1000);
        let encoded = wire::to_bytes(&original);
        for max in [CHUNK_OVERHEAD + 1, 512, 4096, encoded.len() - 1] {
            let chunks = chunks_of(&encoded, max);
            assert!(chunks.len() > 1);
            let mut assembly = ReplyAssembly::default();
            let n = chunks.len();
            let mut whole = None;
            for (i, chunk) in chunks.into_iter().enumerate() {
                whole = assembly.push(chunk);
                assert_eq!(whole.is_some(), i + 1 == n);
            }
            let got = wire::decode::<BatchReply>(&whole.expect("whole")).expect("decodes");
            assert_eq!(got, original);
        }
    }

    #[test]
    fn a_hole_drops_the_reply_and_the_next_one_still_assembles() {
        let encoded = wire::to_bytes(&reply(20, 500));
        let chunks = chunks_of(&encoded, 1024);
        let mut assembly = ReplyAssembly::default();
        // The second chunk is lost: nothing comes out of the rest.
        for (i, chunk) in chunks.iter().cloned().enumerate() {
            if i != 1 {
                assert_eq!(assembly.push(chunk), None);
            }
        }
        // The resent reply assembles.
        let mut whole = None;
        for chunk in chunks {
            whole = assembly.push(chunk);
        }
        assert_eq!(whole, Some(encoded));
    }

    #[test]
    fn chunks_that_overrun_their_total_do_not_decode() {
        let chunk = ReplyChunk {
            from: NodeId::parse("b").expect("valid"),
            total: 10,
            offset: 8,
            bytes: Bytes::from_static(b"abc"),
        };
        let bytes = wire::to_bytes(&chunk);
        assert!(wire::decode::<ReplyChunk>(&bytes).is_err());
    }
}
