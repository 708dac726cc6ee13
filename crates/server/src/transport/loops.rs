//! The read loop and the write loop of every connection, whatever its
//! protocol ([`Inbound`]) and whatever stream carries it ([`ByteStream`]
//! halves).
//!
//! The read loop reads into the protocol's receive buffer, hands what is
//! decodable to the core and drives; the write loop sends what the runtime
//! queued in [`ConnIo`], coalesced into one gathered write per wake-up.
//!
//! [`ByteStream`]: super::stream::ByteStream

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future;

use super::signal::Signal;
use super::stream::{StreamReader, StreamWriter};
use super::{ConnIo, Inbound, ShardLoop};
use surepush_core::ConnId;

/// Read size per `read` call while data keeps coming.
const READ_CHUNK: usize = 16 * 1024;
/// Read size of a connection with nothing buffered whose last read was
/// small: an idle connection waits on at most this much memory, not
/// `READ_CHUNK` (thousands of idle subscribers were 32 KiB each); on plain
/// TCP it waits on none (`StreamReader::read_appending`).
const IDLE_READ: usize = 512;
/// Largest read size a message in progress can ask for.
const MAX_READ: usize = 1 << 20;

/// Reads the connection's input until it ends, the connection closes or
/// it parks (idle for `park_idle_ms`: `park.rs`).
pub(crate) async fn read_loop<S: ShardLoop, R: StreamReader, I: Inbound>(
    rt: Rc<S>,
    conn: ConnId,
    io: Rc<ConnIo>,
    mut reader: R,
    mut inbound: I,
) {
    let parks = rt.parker().is_some() && reader.parks();
    io.set_parkable(parks);
    let mut busy = false;
    loop {
        if let Err(e) = inbound.on_input(rt.as_ref(), conn, &io) {
            rt.decode_error(conn, &e);
            return drain_until_closed(reader, &io).await;
        }
        rt.drive();
        if io.closing.get() {
            return drain_until_closed(reader, &io).await;
        }
        while rt.mesh_congested() {
            // Polling: the mesh forwarders do not signal each send.
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        if let Some(pause) = rt.read_pause(conn) {
            // Over its frames per second: read nothing more this second;
            // the client's socket buffer fills and TCP slows it down.
            glommio::timer::sleep(pause).await;
        }
        // Read straight into the decoder's buffer: a message's payload is
        // copied once, from the kernel, and sliced out of it afterwards.
        let missing = inbound.missing();
        let buf = inbound.buffer();
        let idle = buf.is_empty() && !busy;
        if idle && buf.capacity() > IDLE_READ {
            // Let the big buffer go (messages sliced from it keep their part).
            *buf = BytesMut::new();
        }
        if idle {
            io.with_session(|s| s.release_idle_memory());
        }
        let want = if idle {
            IDLE_READ
        } else {
            READ_CHUNK.max(missing.min(MAX_READ))
        };
        let read = match parks {
            true if idle => {
                let read = future::or(
                    async { Some(reader.read_appending(buf, want).await) },
                    async {
                        io.park_asked.take().await;
                        None
                    },
                );
                match read.await {
                    Some(read) => read,
                    None => {
                        // Nothing read or written for `park_idle_ms`
                        // (`park::sweep_idle`).
                        if io.can_park() {
                            match super::park::park(&rt, conn, &io, reader, inbound) {
                                Ok(()) => return io.stop_writer(),
                                Err(back) => (reader, inbound) = back,
                            }
                        }
                        continue;
                    }
                }
            }
            _ => reader.read_appending(buf, want).await,
        };
        match read {
            Ok(n) if n > 0 => {
                // A full read means more is waiting: read big next time.
                busy = n == want;
                io.mark_active();
            }
            _ => {
                rt.transport_closed(conn);
                io.shutdown();
                return io.reader_done();
            }
        }
    }
}

/// The reader of a closing connection: reads and discards until the peer
/// closes (or the writer shuts the socket after the close grace). A socket
/// closed with unread input makes the kernel send a reset, and a reset can
/// destroy the last bytes queued for the peer before it reads them (an
/// ERROR, an MQTT 5 DISCONNECT 0x97).
async fn drain_until_closed<R: StreamReader>(mut reader: R, io: &ConnIo) {
    let mut discard = vec![0u8; IDLE_READ];
    while matches!(reader.read(&mut discard).await, Ok(n) if n > 0) {}
    io.reader_done();
}

/// Writes what is queued for the connection until it closes.
pub(crate) async fn write_loop<S: ShardLoop, W: StreamWriter>(
    rt: Rc<S>,
    conn: ConnId,
    io: Rc<ConnIo>,
    mut writer: W,
) {
    let grace = CloseGrace::new(&io.closed, rt.config().close_grace_ms);
    let writer_id = io.writer_id();
    loop {
        if !io.writer_wait(writer_id).await {
            return; // the connection parked (`park.rs`)
        }
        loop {
            let mut chunks = io.take_queued();
            if chunks.is_empty() && !writer.has_own_output() {
                break;
            }
            // Most writes complete at once; waiting for room is the rare
            // path, and its state is boxed so the loop's own future (held
            // by every connection for its life) stays small.
            let written = match writer.write_now(&mut chunks) {
                Ok(true) => Some(Ok(())),
                Ok(false) => Box::pin(write_within_grace(&mut writer, &mut chunks, &grace)).await,
                Err(e) => Some(Err(e)),
            };
            match written {
                Some(Ok(())) => io.mark_active(),
                Some(Err(_)) => {
                    rt.transport_closed(conn);
                    io.shutdown();
                    return;
                }
                None => {
                    // Closing, and the peer did not read in time.
                    io.shutdown();
                    return;
                }
            }
        }
        if io.closing.get() {
            return Box::pin(end_and_close(&mut writer, &io, &grace)).await;
        }
        rt.output_drained(conn, &io);
        io.release_written();
    }
}

/// Writes `chunks`, waiting for room; `None` if the connection is closing
/// and the close grace ran out first. A write is never abandoned half way
/// (the stream would lose its message boundaries), only when the grace is
/// over.
async fn write_within_grace<W: StreamWriter>(
    writer: &mut W,
    chunks: &mut std::collections::VecDeque<bytes::Bytes>,
    grace: &CloseGrace<'_>,
) -> Option<std::io::Result<()>> {
    future::or(async { Some(writer.write_chunks(chunks).await) }, async {
        grace.expired().await;
        None
    })
    .await
}

/// Everything is written and the connection closes: end our side, and
/// close once the peer has ended its own (see `drain_until_closed`) or the
/// grace is over.
async fn end_and_close<W: StreamWriter>(writer: &mut W, io: &ConnIo, grace: &CloseGrace<'_>) {
    let _ = writer.end().await;
    future::or(io.reader_gone.raised(), grace.expired()).await;
    io.shutdown();
}

/// The writer's view of `close_grace_ms`: from the close signal on, what
/// is still queued has that long to be written.
struct CloseGrace<'a> {
    closed: &'a Signal,
    grace: Duration,
    since: Cell<Option<std::time::Instant>>,
}

impl<'a> CloseGrace<'a> {
    fn new(closed: &'a Signal, grace_ms: u64) -> CloseGrace<'a> {
        CloseGrace {
            closed,
            grace: Duration::from_millis(grace_ms),
            since: Cell::new(None),
        }
    }

    /// Resolves once the connection is closing and the grace is over.
    async fn expired(&self) {
        let since = match self.since.get() {
            Some(since) => since,
            None => {
                // The signal comes once; a write racing it may finish first.
                self.closed.raised().await;
                let now = std::time::Instant::now();
                self.since.set(Some(now));
                now
            }
        };
        glommio::timer::sleep(self.grace.saturating_sub(since.elapsed())).await;
    }
}
