//! What a [`BlockingClient`](crate::BlockingClient) speaks over: plain TCP,
//! or WebSocket (subprotocol `surepush.v1`, docs/PROTOCOL.md "WebSocket
//! mapping"), where the payloads of binary messages carry the same byte
//! stream as TCP.
//!
//! The socket is non-blocking either way; waiting is the caller's (ppoll
//! on [`Wire::socket`]). tungstenite frames and masks the client's
//! messages and answers the gateway's pings by itself.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use surepush_host::poll::Readiness;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// The WebSocket subprotocol of the native protocol.
pub const WEBSOCKET_SUBPROTOCOL: &str = "surepush.v1";

/// How to reach the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// The native listener, plain TCP.
    #[default]
    Tcp,
    /// The WebSocket listener, upgrading on this path (such as `/`).
    WebSocket {
        /// The request path of the upgrade.
        path: String,
    },
}

/// A connected socket of either kind.
#[derive(Debug)]
pub(crate) enum Wire {
    Tcp(TcpStream),
    Ws(Box<WebSocket<TcpStream>>),
}

impl Wire {
    /// Connects (and upgrades) within `timeout`, then turns non-blocking.
    pub(crate) fn open(
        addr: SocketAddr,
        transport: &Transport,
        timeout: Duration,
    ) -> io::Result<Wire> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let wire = match transport {
            Transport::Tcp => Wire::Tcp(stream),
            Transport::WebSocket { path } => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                let ws = upgrade(stream, addr, path)?;
                ws.get_ref().set_read_timeout(None)?;
                ws.get_ref().set_write_timeout(None)?;
                Wire::Ws(Box::new(ws))
            }
        };
        wire.socket().set_nonblocking(true)?;
        Ok(wire)
    }

    /// The TCP socket under it (to wait on, for its addresses).
    pub(crate) fn socket(&self) -> &TcpStream {
        match self {
            Wire::Tcp(s) => s,
            Wire::Ws(ws) => ws.get_ref(),
        }
    }

    /// Appends what has arrived to `into`. `Ok(0)`: the gateway closed;
    /// `WouldBlock`: nothing yet.
    pub(crate) fn read_into(&mut self, into: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Wire::Tcp(s) => {
                let mut buf = [0u8; 16 * 1024];
                let n = s.read(&mut buf)?;
                into.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Wire::Ws(ws) => {
                // Everything tungstenite holds or the socket has: a message
                // left in its buffer would not wake a later ppoll.
                let mut n = 0;
                loop {
                    match ws.read() {
                        Ok(Message::Binary(b)) => {
                            into.extend_from_slice(&b);
                            n += b.len();
                        }
                        Ok(Message::Text(_)) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "text message from the gateway",
                            ))
                        }
                        Ok(Message::Close(_)) => return Ok(0),
                        Ok(_) => {} // ping (answered by tungstenite), pong
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                            return if n > 0 { Ok(n) } else { Err(e) };
                        }
                        Err(
                            tungstenite::Error::ConnectionClosed
                            | tungstenite::Error::AlreadyClosed,
                        ) => return Ok(0),
                        Err(tungstenite::Error::Io(e)) => return Err(e),
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
            }
        }
    }

    /// Writes all of `bytes` (one binary message over WebSocket), waiting
    /// for room as needed.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Wire::Tcp(s) => {
                let mut written = 0;
                while written < bytes.len() {
                    match s.write(&bytes[written..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(s)?,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Wire::Ws(ws) => {
                let mut result = ws.send(Message::Binary(bytes.to_vec().into()));
                loop {
                    match result {
                        Ok(()) => return Ok(()),
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                            // The message is queued in tungstenite: flush it.
                            wait_writable(ws.get_ref())?;
                            result = ws.flush();
                        }
                        Err(tungstenite::Error::Io(e)) => return Err(e),
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
            }
        }
    }
}

/// The opening handshake, blocking: asks for `surepush.v1` and insists on
/// getting it.
fn upgrade(stream: TcpStream, addr: SocketAddr, path: &str) -> io::Result<WebSocket<TcpStream>> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .map_err(io::Error::other)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static(WEBSOCKET_SUBPROTOCOL),
    );
    let (ws, response) = tungstenite::client::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("upgrade refused: HTTP {}", r.status()),
        ),
        other => io::Error::other(other.to_string()),
    })?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .is_some_and(|p| p == WEBSOCKET_SUBPROTOCOL);
    if !agreed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the gateway did not agree to surepush.v1",
        ));
    }
    Ok(ws)
}

/// Waits until `stream` can take more bytes.
pub(crate) fn wait_writable(stream: &TcpStream) -> io::Result<()> {
    surepush_host::poll::wait(stream, Readiness::Writable, None)
}
