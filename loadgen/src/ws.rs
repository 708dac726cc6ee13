//! WebSocket for the load generator's own event loops (room subscribers):
//! the upgrade on a blocking socket, client frames out, server frames in.
//!
//! The one-to-one scenarios use the SDK's `Transport::WebSocket`; room
//! subscribers poll thousands of raw sockets themselves, so they unframe
//! here. The handshake and frame headers are tungstenite's; the gateway's
//! frames are unmasked, so reading them is a header and a slice.

use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::{Buf, BytesMut};
use tungstenite::handshake::client::{generate_key, Response};
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

/// The native protocol's subprotocol.
const SUBPROTOCOL: &str = surepush_client::WEBSOCKET_SUBPROTOCOL;

/// Upgrades `stream` (blocking) to a WebSocket speaking `surepush.v1` on
/// path `/`; returns frame bytes that came with the response.
pub(crate) fn upgrade(stream: &mut TcpStream, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let key = generate_key();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("upgrade: {e}"))?;
    let mut input = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).map_err(|e| format!("upgrade: {e}"))?;
        if n == 0 {
            return Err("upgrade: closed".into());
        }
        input.extend_from_slice(&buf[..n]);
        let parsed = Response::try_parse(&input).map_err(|e| format!("upgrade: {e}"))?;
        let Some((used, response)) = parsed else {
            continue;
        };
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        if response.status() != 101
            || header("Sec-WebSocket-Accept") != Some(derive_accept_key(key.as_bytes()).as_str())
            || header("Sec-WebSocket-Protocol") != Some(SUBPROTOCOL)
        {
            return Err(format!("upgrade refused: {}", response.status()));
        }
        return Ok(input.split_off(used));
    }
}

/// `payload` as one masked binary client frame.
pub(crate) fn binary(payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Data(Data::Binary), payload)
}

fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut frame = Frame::message(payload.to_vec(), opcode, true);
    // Any mask will do for a load generator (RFC 6455 wants it
    // unpredictable to protect proxies, not the endpoints).
    frame.header_mut().mask = Some([0x5a, 0xc3, 0x0f, 0x96]);
    let mut out = Vec::with_capacity(payload.len() + 14);
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// The gateway's frames → the byte stream inside them.
#[derive(Default)]
pub(crate) struct Unframer {
    raw: BytesMut,
    /// Pongs to write back.
    pub(crate) replies: Vec<u8>,
    /// The gateway sent its close frame.
    pub(crate) closed: bool,
}

impl Unframer {
    /// Feeds frame bytes; hands each message payload to `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut out: impl FnMut(&[u8])) {
        self.raw.extend_from_slice(bytes);
        loop {
            let mut cursor = Cursor::new(&self.raw[..]);
            let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) else {
                return;
            };
            let start = cursor.position() as usize;
            let end = start + len as usize;
            if self.raw.len() < end {
                return;
            }
            let payload = &self.raw[start..end];
            match header.opcode {
                OpCode::Data(_) => out(payload),
                OpCode::Control(Control::Ping) => {
                    let pong = client_frame(OpCode::Control(Control::Pong), payload);
                    self.replies.extend_from_slice(&pong);
                }
                OpCode::Control(Control::Close) => self.closed = true,
                OpCode::Control(_) => {}
            }
            self.raw.advance(end);
        }
    }
}
