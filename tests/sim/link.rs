//! One client's link as the network and the gateway's driver see it: when
//! each frame arrives, what a slow reader has not read yet, and whether the
//! room stream on it is still whole.
//!
//! Rooms rely on the stream: TCP loses, repeats and reorders nothing inside
//! a connection, and a loss breaks the connection. The simulated network
//! does all three to every frame in the fault phase; a link on which a room
//! frame was lost, repeated or reordered is marked broken (the world resets
//! it when the network heals), and after healing room frames keep their
//! order on a link.

use surepush::proto::{Decoder, Frame};

/// Which way a frame goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToServer = 0,
    ToClient = 1,
}

/// The state of one connection (a new one for every connect).
#[derive(Default)]
pub struct Link {
    /// How long the client takes to read one byte (ns; 0: at once).
    read_ns_per_byte: u64,
    /// Bytes sent to a slow reader that it has not read yet (the runtime's
    /// `queued()`; a fast reader's stays 0).
    unread: usize,
    /// When a slow reader will have read everything sent so far.
    busy_until: u64,
    /// When the last room frame in each direction arrives.
    last_room_arrival: [u64; 2],
    /// A room frame on this link was lost, repeated or reordered.
    room_stream_broken: bool,
}

impl Link {
    pub fn new(read_ns_per_byte: u64) -> Link {
        Link {
            read_ns_per_byte,
            ..Link::default()
        }
    }

    /// When one copy of `frame` that the network delivers at `delayed`
    /// arrives: a slow reader reads its frames one after the other, each
    /// as long as its size needs; room frames keep their order after
    /// healing (`faults_on` false) and mark the stream broken if they
    /// overtake one another before.
    pub fn arrival(&mut self, frame: &Frame, dir: Direction, delayed: u64, faults_on: bool) -> u64 {
        let mut t = delayed;
        if dir == Direction::ToClient && self.read_ns_per_byte > 0 {
            let len = frame.encoded_len();
            t = t.max(self.busy_until) + len as u64 * self.read_ns_per_byte;
            self.busy_until = t;
            self.unread += len;
        }
        if is_room_frame(frame) {
            let last = &mut self.last_room_arrival[dir as usize];
            if faults_on && t < *last {
                self.room_stream_broken = true;
            }
            if !faults_on {
                t = t.max(*last);
            }
            *last = (*last).max(t);
        }
        t
    }

    /// The network lost or repeated `frame`.
    pub fn lost_or_repeated(&mut self, frame: &Frame) {
        if is_room_frame(frame) {
            self.room_stream_broken = true;
        }
    }

    /// The client read `frame` (one copy that `arrival` timed).
    pub fn read(&mut self, frame: &Frame) {
        if self.read_ns_per_byte > 0 {
            self.unread -= frame.encoded_len();
        }
    }

    /// Bytes sent that the client has not read (what the runtime's
    /// `room_lag_bytes` rule compares).
    pub fn unread(&self) -> usize {
        self.unread
    }

    pub fn room_stream_broken(&self) -> bool {
        self.room_stream_broken
    }
}

/// One decoded frame from the bytes the core encoded once for a room.
pub fn decode_shared(bytes: &[u8]) -> Frame {
    let mut decoder = Decoder::new(u32::MAX);
    decoder.feed(bytes);
    match decoder.decode() {
        Ok(Some(frame)) if decoder.buffered() == 0 => frame,
        other => panic!("shared room bytes are not one frame: {other:?}"),
    }
}

fn is_room_frame(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::Subscribe(_)
            | Frame::SubAck(_)
            | Frame::Unsubscribe { .. }
            | Frame::RoomPush(_)
            | Frame::RoomAck { .. }
            | Frame::RoomLag { .. }
    )
}
