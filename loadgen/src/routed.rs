//! A native connection that lands on any node of a cluster and follows
//! the gateway's redirect to the node of its user (issue #20).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::BytesMut;
use surepush_proto::{Decoder, Frame};

/// Connects with `connect` to `addr` and follows the gateway's
/// DISCONNECT `WrongNode` to the user's node (at most 3 times); returns
/// the connection after its CONNACK and the decoder holding what followed.
pub(crate) fn connect_routed(
    addr: SocketAddr,
    connect: &Frame,
) -> Result<(TcpStream, Decoder), String> {
    let mut out = BytesMut::new();
    connect.encode(&mut out);
    let mut to = addr;
    for _ in 0..4 {
        let mut stream = TcpStream::connect(to).map_err(|e| format!("connect {to}: {e}"))?;
        stream.write_all(&out).map_err(|e| format!("write: {e}"))?;
        let mut decoder = Decoder::new(1 << 20);
        let mut buf = [0u8; 4096];
        let first = loop {
            if let Some(frame) = decoder.decode().map_err(|e| format!("decode: {e}"))? {
                break frame;
            }
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!("{to} closed before CONNACK"));
            }
            decoder.feed(&buf[..n]);
        };
        match first {
            Frame::ConnAck(_) => return Ok((stream, decoder)),
            Frame::Disconnect(d) if !d.redirect.is_empty() => {
                to = d
                    .redirect
                    .parse()
                    .map_err(|e| format!("redirect {}: {e}", d.redirect))?;
            }
            other => return Err(format!("{to} answered CONNECT with {other:?}")),
        }
    }
    Err(format!("more than 3 redirects from {addr}"))
}
