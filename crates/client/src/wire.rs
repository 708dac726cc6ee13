//! What a [`BlockingClient`](crate::BlockingClient) speaks over: plain TCP,
//! or WebSocket (subprotocol `surepush.v1`, docs/PROTOCOL.md "WebSocket
//! mapping"), where the payloads of binary messages carry the same byte
//! stream as TCP; WebSocket over TLS (`wss://`) when the [`Gateway`] has
//! TLS settings.
//!
//! The socket is non-blocking either way; waiting is the caller's (ppoll
//! on its TCP socket). tungstenite frames and masks the client's
//! messages and answers the gateway's pings by itself.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use surepush_host::poll::Readiness;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::link::Gateway;

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
    ws: WebSocket<WsStream>,
    /// Bytes of received messages not read yet.
    input: Vec<u8>,
    /// How much of `input` was read.
    read: usize,
}

impl WsLink {
    /// Connects (and opens TLS if `gateway` says so) and upgrades within
    /// `timeout`, then turns non-blocking.
    pub(crate) fn open(gateway: &Gateway, path: &str, timeout: Duration) -> io::Result<WsLink> {
        let tcp = TcpStream::connect_timeout(&gateway.addr, timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let stream = match &gateway.tls {
            None => WsStream::Plain(tcp),
            Some(tls) => {
                let conn = ClientConnection::new(tls.config.clone(), tls.name.clone())
                    .map_err(io::Error::other)?;
                WsStream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        };
        let scheme = if gateway.tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{}{path}", gateway.addr);
        let ws = upgrade(stream, &url)?;
        let tcp = ws.get_ref().tcp();
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        tcp.set_nonblocking(true)?;
        Ok(WsLink {
            ws,
            input: Vec::new(),
            read: 0,
        })
    }

    /// The TCP socket under it (to wait on, for its addresses).
    pub(crate) fn tcp(&self) -> &TcpStream {
        self.ws.get_ref().tcp()
    }

    /// The certificate the gateway presented (DER), over TLS.
    pub(crate) fn peer_certificate(&self) -> Option<&[u8]> {
        match self.ws.get_ref() {
            WsStream::Plain(_) => None,
            WsStream::Tls(tls) => tls.conn.peer_certificates()?.first().map(|c| c.as_ref()),
        }
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
                    // The message is queued in tungstenite (or rustls):
                    // flush it.
                    wait_writable(self.ws.get_ref().tcp())?;
                    result = self.ws.flush();
                }
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

/// The socket under a WebSocket: plain TCP, or a rustls session over it
/// (its reads and writes drive the TLS handshake, and return
/// `WouldBlock` when the non-blocking socket does).
#[derive(Debug)]
pub(crate) enum WsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl WsStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            WsStream::Plain(tcp) => tcp,
            WsStream::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WsStream::Plain(tcp) => tcp.read(buf),
            // The socket closed without close_notify: the gateway shuts
            // connections down that way too.
            WsStream::Tls(tls) => match tls.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WsStream::Plain(tcp) => tcp.write(buf),
            WsStream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WsStream::Plain(tcp) => tcp.flush(),
            WsStream::Tls(tls) => tls.flush(),
        }
    }
}

/// The opening handshake to `url`, blocking: asks for `surepush.v1` and
/// insists on getting it.
fn upgrade(stream: WsStream, url: &str) -> io::Result<WebSocket<WsStream>> {
    let mut request = url.into_client_request().map_err(io::Error::other)?;
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
