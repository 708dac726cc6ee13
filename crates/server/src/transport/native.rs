//! The native protocol (docs/PROTOCOL.md) as a transport adapter: frames
//! in, frames out, with no state of its own beyond the decoder.

use bytes::{Bytes, BytesMut};

use super::{ConnIo, Handshake, Hello, Inbound, Listener, Session, ShardPort, Step};
use surepush_core::{AuthError, Claims, ConnId};
use surepush_proto::{Connect, Decoder, ErrorCode, Frame, ProtoError};

/// The accepting side: the first frame must be CONNECT.
pub(crate) struct NativeHandshake {
    decoder: Decoder,
}

impl Handshake for NativeHandshake {
    type Hello = Connect;

    fn new(rt: &dyn ShardPort) -> Option<Self> {
        Some(NativeHandshake {
            decoder: Decoder::new(rt.config().core.max_frame),
        })
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.decoder.feed(bytes);
    }

    fn poll_hello(&mut self) -> Step<Connect> {
        match self.decoder.decode() {
            Ok(None) => Step::More,
            Ok(Some(Frame::Connect(c))) => Step::Hello(c),
            Ok(Some(_)) => refuse(ErrorCode::NotConnected, "CONNECT must come first"),
            Err(e) => refuse_frame(Frame::error(e.code(), e.to_string())),
        }
    }

    fn timed_out(&self) -> Vec<u8> {
        frame_bytes(Frame::error(
            ErrorCode::IdleTimeout,
            "no CONNECT within the connect timeout",
        ))
    }

    fn token(hello: &Connect) -> &str {
        &hello.token
    }

    fn refuse_auth(_: &Connect, e: &AuthError) -> Vec<u8> {
        frame_bytes(Frame::error(e.code(), e.to_string()))
    }

    fn refuse_unavailable(_: &Connect) -> Vec<u8> {
        frame_bytes(Frame::error(ErrorCode::Internal, "handoff failed"))
    }

    const LISTENER: Listener = Listener::Native;

    fn redirect(_: &Connect, to: &str) -> Vec<u8> {
        frame_bytes(Frame::disconnect(ErrorCode::WrongNode, to))
    }

    fn rest(mut self) -> Bytes {
        self.decoder.buffer_mut().split().freeze()
    }

    fn into_hello(hello: Connect, _: Claims) -> Hello {
        Hello::Native(hello)
    }
}

fn refuse<H>(code: ErrorCode, why: &str) -> Step<H> {
    refuse_frame(Frame::error(code, why))
}

fn refuse_frame<H>(frame: Frame) -> Step<H> {
    Step::Refuse(frame_bytes(frame))
}

fn frame_bytes(frame: Frame) -> Vec<u8> {
    frame.to_bytes().to_vec()
}

/// A native connection on its owner shard: its session and its decoder.
pub(super) fn open(
    rt: &dyn ShardPort,
    connect: Connect,
    rest: Bytes,
) -> (Box<dyn Session>, NativeInbound) {
    let mut decoder = Decoder::new(rt.config().core.max_frame);
    decoder.feed(&rest);
    // `rest` is a slice of the accepting side's buffer and would pin it
    // (4 KiB per idle connection, found with a counting allocator): copied
    // into the decoder, it is dropped here.
    drop(rest);
    let inbound = NativeInbound {
        connect: Some(connect),
        decoder,
    };
    (Box::new(NativeSession), inbound)
}

/// The read side: frames decoded in place, straight to the core.
pub(crate) struct NativeInbound {
    /// The authenticated CONNECT, handed to the core before any input.
    connect: Option<Connect>,
    decoder: Decoder,
}

impl Inbound for NativeInbound {
    fn buffer(&mut self) -> &mut BytesMut {
        self.decoder.buffer_mut()
    }

    fn missing(&self) -> usize {
        self.decoder.missing()
    }

    fn on_input(&mut self, rt: &dyn ShardPort, conn: ConnId, _: &ConnIo) -> Result<(), ProtoError> {
        if let Some(c) = self.connect.take() {
            rt.frame(conn, Frame::Connect(c));
        }
        while let Some(frame) = self.decoder.decode()? {
            rt.frame(conn, frame);
        }
        Ok(())
    }
}

/// The write side: frames encoded into the connection's queue; shared room
/// frames queued as the core encoded them.
struct NativeSession;

impl Session for NativeSession {
    fn send(&mut self, rt: &dyn ShardPort, conn: ConnId, io: &ConnIo, frame: Frame) {
        frame.encode(&mut io.out.borrow_mut());
        rt.check_budget(conn, io);
    }

    fn send_shared(&mut self, _: &dyn ShardPort, _: ConnId, io: &ConnIo, bytes: Bytes) {
        io.push_shared(bytes);
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
