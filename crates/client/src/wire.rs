//! What a [`BlockingClient`](crate::BlockingClient) speaks over: plain TCP,
//! or WebSocket (subprotocol `surepush.v1`, docs/PROTOCOL.md "WebSocket
//! mapping"), where the payloads of binary messages carry the same byte
//! stream as TCP.
//!
//! The socket is non-blocking either way; waiting is the caller's (ppoll
//! on its TCP socket). tungstenite frames and masks the client's
//! messages and answers the gateway's pings by itself.

use std::io;
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

/// A WebSocket to the gateway's WebSocket listener: the payloads of binary
/// messages are the protocol's byte stream.
#[derive(Debug)]
pub(crate) struct WsLink {
    ws: WebSocket<TcpStream>,
    /// Bytes of received messages not read yet.
    input: Vec<u8>,
    /// How much of `input` was read.
    read: usize,
}

impl WsLink {
    /// Connects and upgrades within `timeout`, then turns non-blocking.
    pub(crate) fn open(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<WsLink> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let ws = upgrade(stream, addr, path)?;
        ws.get_ref().set_read_timeout(None)?;
        ws.get_ref().set_write_timeout(None)?;
        ws.get_ref().set_nonblocking(true)?;
        Ok(WsLink {
            ws,
            input: Vec::new(),
            read: 0,
        })
    }

    /// The TCP socket under it (to wait on, for its addresses).
    pub(crate) fn tcp(&self) -> &TcpStream {
        self.ws.get_ref()
    }

    /// Whether received bytes wait to be read.
    pub(crate) fn has_buffered(&self) -> bool {
        self.read < self.input.len()
    }

    /// Reads what has arrived: 0 when the gateway closed, `WouldBlock`
    /// when nothing has.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.has_buffered() {
            self.input.clear();
            self.read = 0;
            if self.receive()? == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.input.len() - self.read);
        buf[..n].copy_from_slice(&self.input[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }

    /// Appends every message tungstenite holds or the socket has to
    /// `input` (a message left in its buffer would not wake a later poll).
    fn receive(&mut self) -> io::Result<usize> {
        let mut n = 0;
        loop {
            match self.ws.read() {
                Ok(Message::Binary(b)) => {
                    self.input.extend_from_slice(&b);
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
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(0)
                }
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }

    /// Writes all of `bytes` as one binary message, waiting for room.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut result = self.ws.send(Message::Binary(bytes.to_vec().into()));
        loop {
            match result {
                Ok(()) => return Ok(()),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The message is queued in tungstenite: flush it.
                    wait_writable(self.ws.get_ref())?;
                    result = self.ws.flush();
                }
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(e)),
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
