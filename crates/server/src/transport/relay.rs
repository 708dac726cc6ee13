//! Relaying a connection to its user's node, byte for byte (issue #20,
//! docs/CLUSTER.md "Connections land anywhere").
//!
//! A protocol that cannot send its client elsewhere (MQTT 3.1.1 has no
//! redirect) is relayed instead: after this node authenticated the hello
//! and found the user's owner on another node, [`relay`] opens a TCP
//! connection to that node's listener for the protocol, writes the hello's
//! bytes as the client sent them (and whatever followed), then copies both
//! ways until either side ends. The owner node sees an ordinary client and
//! does everything (authentication again, sessions, delivery); this node
//! only moves bytes.
//!
//! Ground rules:
//! - It runs on the accepting shard, as a task of its own; each direction
//!   reads into one fixed buffer of [`RELAY_BUFFER`] bytes and writes it
//!   out before reading again, so a relayed connection holds at most two
//!   buffers whatever the traffic (a slow side slows the other through
//!   TCP, never through memory here).
//! - The client's side is any opened stream (plain TCP, TLS, a WebSocket's
//!   messages): what is relayed is the protocol's byte stream, so the owner
//!   node's plain listener serves a TLS or WebSocket client unchanged.
//! - Either side ending or failing ends both: its writer is ended (a TLS
//!   close_notify, a WebSocket close), then both sockets close. An owner
//!   node that dies closes its relayed clients with it.
//! - The owner not answering within the connect timeout: the client gets
//!   the protocol's "unavailable" refusal, as for a node not registered.
//! - Relayed once, never again: the relayed stream opens with
//!   [`RELAY_PREAMBLE`], and a connection that arrived with it for a user
//!   this node does not own is refused with "unavailable" (the client
//!   retries) instead of relayed on. Two nodes that disagree on an owner
//!   (a placement change half seen) thus cannot relay a client to each
//!   other in a loop. The preamble grants nothing: a client that sends it
//!   itself is only never relayed.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::stream::{self, StreamReader, StreamWriter};
use super::{refuse_with, Opened, ShardLoop};

/// Bytes one direction of a relayed connection reads at a time (and so
/// the most it holds).
pub(crate) const RELAY_BUFFER: usize = 16 * 1024;

/// What a relayed stream opens with, before the client's bytes: a PROXY
/// protocol v2 header (signature, PROXY command, address family
/// unspecified, no addresses) carrying one application TLV (type 0xE5,
/// `surepush-relay`). docs/CLUSTER.md documents it; no MQTT stream starts
/// with 0x0D, so the owner's MQTT listener tells it apart at once.
pub(crate) const RELAY_PREAMBLE: &[u8] =
    b"\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x11\xE5\x00\x0Esurepush-relay";

/// Whether a stream's first bytes are [`RELAY_PREAMBLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preamble {
    /// Too few bytes yet to tell.
    Incomplete,
    /// It opens the stream (and is this long).
    Found,
    /// The stream does not start with it.
    Absent,
}

impl Preamble {
    /// What `bytes`, the start of a stream, open with.
    pub(crate) fn of(bytes: &[u8]) -> Preamble {
        let n = bytes.len().min(RELAY_PREAMBLE.len());
        if bytes[..n] != RELAY_PREAMBLE[..n] {
            Preamble::Absent
        } else if n == RELAY_PREAMBLE.len() {
            Preamble::Found
        } else {
            Preamble::Incomplete
        }
    }
}

/// What happened to a relayed connection (counted in /metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayEvent {
    /// Relayed to its user's node: open now.
    Opened,
    /// Closed.
    Closed,
    /// It arrived relayed for a user not owned here: refused.
    Refused,
}

/// What the accept path hands over to relay a connection.
pub(crate) struct RelayTo {
    /// The owner node's address for the protocol (`host:port`).
    pub(crate) to: String,
    /// The hello as the client sent it, then the bytes that followed it.
    pub(crate) replay: [Bytes; 2],
    /// What to write to the client if the owner cannot be reached.
    pub(crate) unavailable: Vec<u8>,
}

/// Relays `client` to the owner node (see the module doc); returns when
/// both sides are closed.
pub(crate) async fn relay<S: ShardLoop, R: StreamReader, W: StreamWriter>(
    rt: Rc<S>,
    client: Opened<R, W>,
    target: RelayTo,
) {
    let Opened {
        fd: _,
        reader: mut client_reader,
        writer: mut client_writer,
    } = client;
    let timeout = Duration::from_millis(rt.config().core.connect_timeout_ms.max(1));
    let upstream = match open(&target.to, &target.replay, timeout).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::debug!(to = %target.to, %error, "cannot relay a connection to its node");
            return refuse_with(client_writer, &target.unavailable).await;
        }
    };
    let _open = Relayed::count(rt.clone());
    let upstream_fd = std::os::fd::AsRawFd::as_raw_fd(&upstream);
    let (mut upstream_reader, mut upstream_writer) = futures_lite::io::split(upstream);
    let to_owner = async {
        let mut buf = vec![0u8; RELAY_BUFFER];
        loop {
            match client_reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if upstream_writer.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let to_client = async {
        let mut buf = vec![0u8; RELAY_BUFFER];
        let mut chunks = VecDeque::with_capacity(1);
        loop {
            match AsyncReadExt::read(&mut upstream_reader, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    chunks.push_back(Bytes::copy_from_slice(&buf[..n]));
                    if client_writer.write_chunks(&mut chunks).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    future::or(to_owner, to_client).await;
    // Whichever side ended, both go: what was read is written already.
    let _ = client_writer.end().await;
    let _ = upstream_writer.flush().await;
    stream::shutdown(upstream_fd, std::net::Shutdown::Both);
}

/// Connects to `to` and writes `replay` (the hello and what followed).
async fn open(to: &str, replay: &[Bytes; 2], timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = resolve(to)?;
    let mut upstream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(std::io::Error::from)?;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(RELAY_PREAMBLE).await?;
    for bytes in replay.iter().filter(|b| !b.is_empty()) {
        upstream.write_all(bytes).await?;
    }
    Ok(upstream)
}

/// The first address `to` names (glommio's own lookup panics on none).
fn resolve(to: &str) -> std::io::Result<SocketAddr> {
    to.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {to}"))
    })
}

/// Counts a relayed connection open while it lives.
struct Relayed<S: ShardLoop> {
    rt: Rc<S>,
}

impl<S: ShardLoop> Relayed<S> {
    fn count(rt: Rc<S>) -> Relayed<S> {
        rt.count_relay(RelayEvent::Opened);
        Relayed { rt }
    }
}

impl<S: ShardLoop> Drop for Relayed<S> {
    fn drop(&mut self) {
        self.rt.count_relay(RelayEvent::Closed);
    }
}
