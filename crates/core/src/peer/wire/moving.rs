//! Encoding of the partition move messages (`peer/moving.rs`): the records
//! a page carries, field by field as in the log (the log's own format is
//! not reachable from the core).

use bytes::{BufMut, Bytes, BytesMut};

use super::{PeerWireError, Reader, Wire};
use crate::peer::moving::{MoveCursor, MoveFetch, MovePage, MoveRoundFetch, MoveStatus};
use crate::record::{MessageRecord, Record};

impl Wire for MoveStatus {
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(*self as u8);
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(MoveStatus::Page),
            1 => Ok(MoveStatus::NotOwner),
            2 => Ok(MoveStatus::Failed),
            _ => Err(PeerWireError::Invalid("move status")),
        }
    }
}

impl Wire for Record {
    fn put(&self, out: &mut BytesMut) {
        match self {
            Record::Message(m) => {
                out.put_u8(0);
                m.inbox.put(out);
                m.seq.put(out);
                m.from.put(out);
                m.from_device.put(out);
                m.to.put(out);
                m.client_msg_id.put(out);
                m.qos.put(out);
                m.ts_ms.put(out);
                m.attrs.put(out);
                m.payload.put(out);
            }
            Record::Cursor { user, device, seq } => {
                out.put_u8(1);
                user.put(out);
                device.put(out);
                seq.put(out);
            }
            Record::Release {
                from,
                from_device,
                client_msg_id,
                to,
            } => {
                out.put_u8(2);
                from.put(out);
                from_device.put(out);
                client_msg_id.put(out);
                to.put(out);
            }
            Record::Member {
                group,
                user,
                joined,
            } => {
                out.put_u8(3);
                group.put(out);
                user.put(out);
                joined.put(out);
            }
            Record::State { key, value } => {
                out.put_u8(4);
                key.put(out);
                value.put(out);
            }
            Record::Checkpoint(_) => {
                debug_assert!(false, "a checkpoint never travels in a move");
                // Encoded as an empty tombstone-free marker the reader refuses.
                out.put_u8(255);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, PeerWireError> {
        match u8::get(r)? {
            0 => Ok(Record::Message(MessageRecord {
                inbox: Wire::get(r)?,
                seq: Wire::get(r)?,
                from: Wire::get(r)?,
                from_device: Wire::get(r)?,
                to: Wire::get(r)?,
                client_msg_id: Wire::get(r)?,
                qos: Wire::get(r)?,
                ts_ms: Wire::get(r)?,
                attrs: Bytes::get(r)?,
                payload: Bytes::get(r)?,
            })),
            1 => Ok(Record::Cursor {
                user: Wire::get(r)?,
                device: Wire::get(r)?,
                seq: Wire::get(r)?,
            }),
            2 => Ok(Record::Release {
                from: Wire::get(r)?,
                from_device: Wire::get(r)?,
                client_msg_id: Wire::get(r)?,
                to: Wire::get(r)?,
            }),
            3 => Ok(Record::Member {
                group: Wire::get(r)?,
                user: Wire::get(r)?,
                joined: Wire::get(r)?,
            }),
            4 => Ok(Record::State {
                key: Wire::get(r)?,
                value: Wire::get(r)?,
            }),
            _ => Err(PeerWireError::Invalid("moved record")),
        }
    }
}

super::wire_struct!(MoveCursor { position, after });
super::wire_struct!(MoveFetch {
    origin,
    partition,
    from
});
super::wire_struct!(MoveRoundFetch {
    origin,
    partition,
    round,
    fence,
    from
});
super::wire_struct!(MovePage {
    partition,
    status,
    records,
    next
});

/// Bytes a record takes in a [`MovePage`] (for the source's page budget).
pub(crate) fn encoded_len(record: &Record) -> usize {
    match record {
        // tag, 8 fixed u64-sized fields, qos, two length prefixes
        Record::Message(m) => 1 + 8 * 7 + 1 + 8 + m.attrs.len() + m.payload.len(),
        Record::State { value, .. } => 32 + value.as_ref().map_or(0, Bytes::len),
        _ => 32,
    }
}
