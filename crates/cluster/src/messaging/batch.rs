//! What travels between nodes: envelopes, batched per peer.
//!
//! One NATS message from node A to node B is a [`BatchRequest`]: A's
//! identity, a per-link sequence number and many [`Envelope`]s (each an
//! application message: its kind, version, a route key and its encoded
//! body). B answers each batch with one [`BatchReply`] carrying one reply
//! body per envelope, in order. Room pushes travel as [`RoomPublish`] on
//! the room's subject instead.

use bytes::{BufMut, Bytes, BytesMut};

use crate::node_id::NodeId;
use crate::wire::{self, kinds, put_blob, put_str, MessageKind, Reader, Wire, WireError};

/// One application message inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The message's struct.
    pub kind: MessageKind,
    /// Its body layout.
    pub version: u8,
    /// Chosen by the sender to tell the receiver where the message goes
    /// (for surepush: the partition, which the receiver maps to a shard).
    pub route: u32,
    /// The encoded struct.
    pub body: Bytes,
}

/// Encoded size of an envelope's fields other than the body.
pub const ENVELOPE_HEADER: usize = 2 + 1 + 4 + 4;

impl Envelope {
    /// `msg` encoded for `route`.
    pub fn of<T: Wire>(route: u32, msg: &T) -> Envelope {
        let mut body = BytesMut::new();
        msg.encode_body(&mut body);
        Envelope {
            kind: T::KIND,
            version: T::VERSION,
            route,
            body: body.freeze(),
        }
    }

    /// The body decoded as `T` (kind and version checked).
    pub fn decode<T: Wire>(&self) -> Result<T, WireError> {
        wire::decode_body::<T>(self.kind, self.version, &self.body)
    }

    /// Bytes this envelope adds to a batch.
    pub fn encoded_len(&self) -> usize {
        ENVELOPE_HEADER + self.body.len()
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(self.kind.0);
        out.put_u8(self.version);
        out.put_u32_le(self.route);
        put_blob(out, &self.body);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Envelope, WireError> {
        Ok(Envelope {
            kind: MessageKind(r.u16()?),
            version: r.u8()?,
            route: r.u32()?,
            body: r.blob()?,
        })
    }
}

/// Messages from one node to another, sent as one NATS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// The sender.
    pub from: NodeId,
    /// The sender's incarnation (see `NodeRecord::incarnation`).
    pub incarnation: u64,
    /// This batch's number on the link from `from` to the receiver: 1, 2,
    /// ... per sender incarnation. A retry repeats the number.
    pub seq: u64,
    /// The sender's oldest batch still waiting for a reply: a receiver
    /// without state for this link (it restarted) starts expecting there.
    pub first_unacked: u64,
    /// The messages, in the order the receiver must hand them on.
    pub items: Vec<Envelope>,
}

impl Wire for BatchRequest {
    const KIND: MessageKind = kinds::BATCH_REQUEST;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.from.as_str());
        out.put_u64_le(self.incarnation);
        out.put_u64_le(self.seq);
        out.put_u64_le(self.first_unacked);
        out.put_u32_le(self.items.len() as u32);
        for item in &self.items {
            item.encode(out);
        }
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        let from = body.node_id()?;
        let incarnation = body.u64()?;
        let seq = body.u64()?;
        let first_unacked = body.u64()?;
        // No link numbers 2^64 - 1 batches; refusing the last number keeps
        // the receiver's next expected number from overflowing.
        if seq == u64::MAX {
            return Err(WireError::Invalid {
                field: "seq",
                reason: "u64::MAX is not a batch number".into(),
            });
        }
        if first_unacked > seq || first_unacked == 0 {
            return Err(WireError::Invalid {
                field: "first_unacked",
                reason: format!("{first_unacked} is not in 1..={seq}"),
            });
        }
        let n = body.count(ENVELOPE_HEADER)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(Envelope::decode_from(body)?);
        }
        Ok(BatchRequest {
            from,
            incarnation,
            seq,
            first_unacked,
            items,
        })
    }
}

/// How a receiver handled a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every envelope was handled; one reply body each, in order.
    Done(Vec<Bytes>),
    /// The batch came before an earlier one; nothing was handled. The
    /// sender resends from `expected`.
    OutOfOrder {
        /// The batch the receiver waits for.
        expected: u64,
    },
    /// The receiver has seen a newer incarnation of the sender's node id:
    /// this sender is an old process that must stop.
    Stale,
    /// A retry of a batch whose reply the receiver no longer keeps (cannot
    /// happen while the sender keeps its window within
    /// `MAX_WINDOW`; reported rather than guessed).
    Forgotten,
}

/// The answer to one [`BatchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReply {
    /// The node that handled the batch.
    pub from: NodeId,
    /// The requester's incarnation, echoed.
    pub incarnation: u64,
    /// The batch answered.
    pub seq: u64,
    /// What happened.
    pub outcome: BatchOutcome,
}

impl Wire for BatchReply {
    const KIND: MessageKind = kinds::BATCH_REPLY;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.from.as_str());
        out.put_u64_le(self.incarnation);
        out.put_u64_le(self.seq);
        match &self.outcome {
            BatchOutcome::Done(bodies) => {
                out.put_u8(0);
                out.put_u32_le(bodies.len() as u32);
                for b in bodies {
                    put_blob(out, b);
                }
            }
            BatchOutcome::OutOfOrder { expected } => {
                out.put_u8(1);
                out.put_u64_le(*expected);
            }
            BatchOutcome::Stale => out.put_u8(2),
            BatchOutcome::Forgotten => out.put_u8(3),
        }
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        let from = body.node_id()?;
        let incarnation = body.u64()?;
        let seq = body.u64()?;
        let outcome = match body.u8()? {
            0 => {
                let n = body.count(4)?;
                let mut bodies = Vec::with_capacity(n);
                for _ in 0..n {
                    bodies.push(body.blob()?);
                }
                BatchOutcome::Done(bodies)
            }
            1 => BatchOutcome::OutOfOrder {
                expected: body.u64()?,
            },
            2 => BatchOutcome::Stale,
            3 => BatchOutcome::Forgotten,
            tag => {
                return Err(WireError::Invalid {
                    field: "batch outcome",
                    reason: format!("unknown tag {tag}"),
                })
            }
        };
        Ok(BatchReply {
            from,
            incarnation,
            seq,
            outcome,
        })
    }
}

/// One room push, published once on the room's subject for every node
/// with subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPublish {
    /// The publishing node (its own subscribers are served locally, so it
    /// skips its own publishes).
    pub origin: NodeId,
    /// The room.
    pub room: u64,
    /// The encoded push, as subscribers' connections receive it.
    pub payload: Bytes,
}

impl Wire for RoomPublish {
    const KIND: MessageKind = kinds::ROOM_PUBLISH;
    const VERSION: u8 = 1;

    fn encode_body(&self, out: &mut BytesMut) {
        put_str(out, self.origin.as_str());
        out.put_u64_le(self.room);
        put_blob(out, &self.payload);
    }

    fn decode_body(_version: u8, body: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(RoomPublish {
            origin: body.node_id()?,
            room: body.u64()?,
            payload: body.blob()?,
        })
    }
}
