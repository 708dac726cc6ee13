//! WebSocket (RFC 6455) as a framing layer under any protocol: the native
//! protocol in subprotocol `surepush.v1`, MQTT in subprotocol `mqtt`.
//!
//! The layer is a reader and a writer wrapping another stream's halves
//! ([`WsReader`], [`WsWriter`], generic over the inner halves, so WSS is
//! the same layer over TLS halves), and an opening step ([`open`]: the
//! HTTP upgrade, run by `accept_ws` before the protocol's handshake).
//!
//! Ground rules:
//! - Message boundaries mean nothing: the payloads of the client's binary
//!   messages, in order, are the protocol's byte stream, exactly as over
//!   TCP; the gateway's messages likewise (docs/PROTOCOL.md "WebSocket
//!   mapping").
//! - The writer sends each gathered write of the connection as one binary
//!   message: one unmasked header in front of the queued chunks, which
//!   stay the same `Bytes` (a room payload shared by every subscriber is
//!   not copied).
//! - Control frames the layer itself answers or sends (pong, ping, close)
//!   wait in [`Shared`] for the writer, which sends them before its next
//!   message; the reader wakes it through the hook the connection set
//!   ([`StreamWriter::set_wake`]).
//! - A client that breaks the RFC gets the close code the RFC gives
//!   ([`codec::WsError::close_code`]), then the connection ends; the
//!   protocol above sees the end of its input.

mod codec;
mod upgrade;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::stream::{Framing, StreamReader, StreamWriter};
use super::Layer;
use crate::config::Config;
use codec::{CloseCode, Decoded, Decoder, DecoderState};
pub(crate) use upgrade::Subprotocol;

/// The layer's settings, from `[websocket]` and `close_grace_ms`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WsParams {
    max_message: usize,
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
    close_grace: Duration,
}

impl WsParams {
    pub(crate) fn new(config: &Config) -> WsParams {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        let w = &config.websocket;
        WsParams {
            max_message: w.max_message_size,
            ping_interval: ms(w.ping_interval_ms),
            idle_timeout: ms(w.idle_timeout_ms),
            close_grace: Duration::from_millis(config.close_grace_ms),
        }
    }
}

/// Why the opening step did not upgrade.
pub(crate) enum NotOpened {
    /// Write this HTTP response, then close.
    Refuse(Vec<u8>),
    /// The peer left, or the socket failed.
    Gone,
}

/// The opening step: reads the upgrade request from `reader`, answers it
/// on `writer`. `Ok`: the subprotocol and the bytes that followed the
/// request (frames already). The caller bounds it in time
/// ([`upgrade::timed_out`] is the answer then).
pub(crate) async fn open<R: StreamReader, W: StreamWriter>(
    reader: &mut R,
    writer: &mut W,
    config: &Config,
    mqtt: bool,
) -> Result<(Subprotocol, Bytes), NotOpened> {
    let mut input = BytesMut::with_capacity(1024);
    loop {
        match upgrade::upgrade(&input, &config.websocket, mqtt) {
            upgrade::Upgrade::More => {}
            upgrade::Upgrade::Refuse(response) => return Err(NotOpened::Refuse(response)),
            upgrade::Upgrade::Accept {
                response,
                subprotocol,
                used,
            } => {
                let mut out = VecDeque::from([Bytes::from(response)]);
                writer
                    .write_chunks(&mut out)
                    .await
                    .map_err(|_| NotOpened::Gone)?;
                let rest = input.split_off(used).freeze();
                return Ok((subprotocol, rest));
            }
        }
        let old = input.len();
        input.resize(upgrade::MAX_REQUEST, 0);
        match reader.read(&mut input[old..]).await {
            Ok(n) if n > 0 => input.truncate(old + n),
            _ => return Err(NotOpened::Gone),
        }
    }
}

/// What an upgrade that did not finish in time gets (408).
pub(crate) fn timed_out() -> Vec<u8> {
    upgrade::timed_out()
}

/// Wraps an upgraded connection's halves (`fd`: its socket); `rest`: what
/// came after the upgrade request.
pub(crate) fn wrap<R: StreamReader, W: StreamWriter>(
    fd: RawFd,
    reader: R,
    writer: W,
    rest: &[u8],
    params: WsParams,
) -> (WsReader<R>, WsWriter<W>) {
    let decoder = Decoder::new(params.max_message, rest);
    halves(fd, reader, writer, decoder, params)
}

/// The layer's state as it travels between shards in a hand-off.
#[derive(Debug)]
pub(crate) struct WsState {
    /// Frame bytes read and not decoded, a frame or message begun.
    decoder: DecoderState,
    /// Control frames queued and not sent yet (pongs to pings that came
    /// before the hello): the owner's writer sends them first.
    control: Vec<Bytes>,
}

/// As [`wrap`], continuing a connection handed off from another shard.
pub(crate) fn resume<R: StreamReader, W: StreamWriter>(
    fd: RawFd,
    reader: R,
    writer: W,
    state: WsState,
    params: WsParams,
) -> (WsReader<R>, WsWriter<W>) {
    let decoder = Decoder::resume(params.max_message, state.decoder);
    let (reader, writer) = halves(fd, reader, writer, decoder, params);
    *reader.shared.control.borrow_mut() = state.control;
    (reader, writer)
}

fn halves<R: StreamReader, W: StreamWriter>(
    fd: RawFd,
    reader: R,
    writer: W,
    decoder: Decoder,
    params: WsParams,
) -> (WsReader<R>, WsWriter<W>) {
    let (close_sent_tx, close_sent) = local_channel::new_bounded(1);
    let shared = Rc::new(Shared {
        control: RefCell::new(Vec::new()),
        close_queued: Cell::new(false),
        close_sent: Cell::new(false),
        close_sent_tx,
        close_sent_rx: close_sent,
        wake: RefCell::new(None),
        last_input: Cell::new(Instant::now()),
    });
    if params.ping_interval.is_some() || params.idle_timeout.is_some() {
        glommio::spawn_local(keepalive(Rc::downgrade(&shared), fd, params)).detach();
    }
    let reader = WsReader {
        inner: reader,
        decoder,
        shared: shared.clone(),
        params,
        ended: false,
    };
    let writer = WsWriter {
        inner: writer,
        shared,
        headers: BytesMut::new(),
    };
    (reader, writer)
}

/// What the two halves of a WebSocket connection share.
struct Shared {
    /// Control frames for the writer to send, in order.
    control: RefCell<Vec<Bytes>>,
    /// A close frame is queued (nothing is queued after it).
    close_queued: Cell<bool>,
    /// Our close frame is written: no data frame may follow (§5.5.1).
    close_sent: Cell<bool>,
    close_sent_tx: LocalSender<()>,
    close_sent_rx: LocalReceiver<()>,
    /// Wakes the connection's writer (set once it runs).
    wake: RefCell<Option<Box<dyn Fn()>>>,
    /// When the client last sent anything.
    last_input: Cell<Instant>,
}

impl Shared {
    /// Queues a control frame for the writer and wakes it.
    fn queue(&self, frame: Bytes, is_close: bool) {
        if self.close_queued.get() {
            return;
        }
        self.close_queued.set(is_close);
        self.control.borrow_mut().push(frame);
        if let Some(wake) = &*self.wake.borrow() {
            wake();
        }
    }

    fn queue_close(&self, code: CloseCode) {
        self.queue(codec::close_frame(code), true);
    }

    /// Waits (at most `grace`) until our close frame is written, when a
    /// writer runs.
    async fn close_written(&self, grace: Duration) {
        if self.close_sent.get() || self.wake.borrow().is_none() {
            return;
        }
        future::or(
            async {
                let _ = self.close_sent_rx.recv().await;
            },
            glommio::timer::sleep(grace),
        )
        .await;
    }
}

/// Pings a quiet client every `ping_interval`, and closes (1008) one that
/// sent nothing for `idle_timeout`: its socket is shut down `close_grace`
/// later if it does not answer the close. Ends with the connection.
async fn keepalive(shared: Weak<Shared>, fd: RawFd, params: WsParams) {
    let tick = match (params.ping_interval, params.idle_timeout) {
        (Some(p), Some(i)) => p.min(i),
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => return,
    };
    let mut pinged_at = None;
    loop {
        glommio::timer::sleep(tick).await;
        let Some(live) = shared.upgrade() else {
            return;
        };
        let quiet = live.last_input.get().elapsed();
        if params.idle_timeout.is_some_and(|t| quiet >= t) {
            live.queue_close(CloseCode::Policy);
            drop(live);
            glommio::timer::sleep(params.close_grace).await;
            // Only while the connection lives is `fd` still its socket.
            if shared.upgrade().is_some() {
                shut(fd);
            }
            return;
        }
        let last = live.last_input.get();
        if params.ping_interval.is_some_and(|p| quiet >= p) && pinged_at != Some(last) {
            pinged_at = Some(last);
            live.queue(codec::control_frame(Control::Ping, b""), false);
        }
    }
}

/// The reading half: client frames in, the protocol's bytes out.
pub(crate) struct WsReader<R> {
    inner: R,
    decoder: Decoder,
    shared: Rc<Shared>,
    params: WsParams,
    /// The WebSocket ended (a close, or an error): reads only drain.
    ended: bool,
}

impl<R: StreamReader> StreamReader for WsReader<R> {
    /// Bytes read past the hello, a partial frame, a message begun, and
    /// the control frames the writer has not sent; the layer under it
    /// (TLS) travels next to them.
    fn suspend(self) -> Option<(Layer, Framing)> {
        let control = std::mem::take(&mut *self.shared.control.borrow_mut());
        let (layer, _) = self.inner.suspend()?;
        let state = WsState {
            decoder: self.decoder.suspend(),
            control,
        };
        Some((layer, Framing::Ws(Box::new(state))))
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ended || buf.is_empty() {
            // Draining a closed connection: whatever comes is discarded.
            return self.inner.read(buf).await;
        }
        loop {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data(n)) => return Ok(n),
                Ok(Decoded::Ping(payload)) => {
                    self.shared
                        .queue(codec::control_frame(Control::Pong, &payload), false);
                }
                Ok(Decoded::Pong) => {}
                Ok(Decoded::Close(code)) => {
                    // Echo the code (§5.5.1), unless we closed first.
                    let echo = code.map_or(CloseCode::Normal, CloseCode::Echo);
                    self.shared.queue_close(echo);
                    self.ended = true;
                    self.shared.close_written(self.params.close_grace).await;
                    return Ok(0);
                }
                Ok(Decoded::More) => {
                    let raw = self.decoder.raw();
                    let old = raw.len();
                    let want = buf.len().max(codec::MAX_HEADER);
                    raw.resize(old + want, 0);
                    let n = self.inner.read(&mut raw[old..]).await;
                    let raw = self.decoder.raw();
                    match n {
                        Ok(n) if n > 0 => {
                            raw.truncate(old + n);
                            self.shared.last_input.set(Instant::now());
                        }
                        other => {
                            raw.truncate(old);
                            return other;
                        }
                    }
                }
                Err(e) => {
                    self.shared.queue_close(e.close_code());
                    self.ended = true;
                    self.shared.close_written(self.params.close_grace).await;
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
    }
}

/// Frame headers cut from one allocation of the writer's header buffer.
const HEADERS_PER_ALLOCATION: usize = 64;

/// The writing half: each gathered write becomes one binary message.
pub(crate) struct WsWriter<W> {
    inner: W,
    shared: Rc<Shared>,
    /// Frame headers are cut from here (one allocation for many).
    headers: BytesMut,
}

impl<W: StreamWriter> WsWriter<W> {
    /// Puts the queued control frames in front of `chunks`.
    fn take_control(&mut self, chunks: &mut VecDeque<Bytes>) {
        let control = std::mem::take(&mut *self.shared.control.borrow_mut());
        for frame in control.into_iter().rev() {
            chunks.push_front(frame);
        }
    }

    /// Writes `chunks`, then notes a close frame among them as sent.
    async fn write_out(&mut self, chunks: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        let closing = self.shared.close_queued.get() && !self.shared.close_sent.get();
        self.inner.write_chunks(chunks).await?;
        if closing {
            self.shared.close_sent.set(true);
            let _ = self.shared.close_sent_tx.try_send(());
        }
        Ok(())
    }
}

impl<W: StreamWriter> StreamWriter for WsWriter<W> {
    async fn write_chunks(&mut self, chunks: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        if self.shared.close_sent.get() || self.shared.close_queued.get() {
            // After a close frame nothing more (§5.5.1).
            chunks.clear();
        }
        let len: usize = chunks.iter().map(Bytes::len).sum();
        if len > 0 {
            if self.headers.capacity() < codec::MAX_HEADER {
                // Room for many headers at once: one allocation per
                // `HEADERS_PER_ALLOCATION` messages, not one each.
                self.headers
                    .reserve(codec::MAX_HEADER * HEADERS_PER_ALLOCATION);
            }
            codec::put_header(&mut self.headers, OpCode::Data(Data::Binary), len as u64);
            chunks.push_front(self.headers.split().freeze());
        }
        self.take_control(chunks);
        self.write_out(chunks).await
    }

    async fn end(&mut self) -> std::io::Result<()> {
        self.shared.queue_close(CloseCode::Normal);
        let mut chunks = VecDeque::new();
        self.take_control(&mut chunks);
        if !self.shared.close_sent.get() {
            self.write_out(&mut chunks).await?;
        }
        self.inner.end().await
    }

    fn set_wake(&mut self, wake: Box<dyn Fn()>) {
        *self.shared.wake.borrow_mut() = Some(wake);
    }

    fn has_own_output(&self) -> bool {
        !self.shared.control.borrow().is_empty()
    }
}

/// Shuts the socket down (an idle client that did not answer our close).
fn shut(fd: RawFd) {
    super::stream::shutdown(fd, std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket's side of the writer: records what it is given.
    #[derive(Default)]
    struct Recorder {
        written: Rc<RefCell<Vec<Bytes>>>,
    }

    impl StreamWriter for Recorder {
        async fn write_chunks(&mut self, chunks: &mut VecDeque<Bytes>) -> std::io::Result<()> {
            self.written.borrow_mut().extend(chunks.drain(..));
            Ok(())
        }
        async fn end(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct NoInput;

    impl StreamReader for NoInput {
        async fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
            Ok(0)
        }
        fn suspend(self) -> Option<(Layer, Framing)> {
            Some((Layer::Plain, Framing::Tcp))
        }
    }

    fn writer() -> (WsWriter<Recorder>, Rc<RefCell<Vec<Bytes>>>) {
        let params = WsParams {
            max_message: 1 << 20,
            ping_interval: None,
            idle_timeout: None,
            close_grace: Duration::ZERO,
        };
        let recorder = Recorder::default();
        let written = recorder.written.clone();
        let (_, writer) = wrap(-1, NoInput, recorder, &[], params);
        (writer, written)
    }

    // Issue #19 item 1: a room payload shared by every subscriber is
    // written as the same buffer, behind one header per gathered write.
    #[test]
    fn a_gathered_write_is_one_message_around_the_same_shared_buffers() {
        let (mut w, written) = writer();
        let shared = Bytes::from(vec![7u8; 300]);
        let own = Bytes::from_static(b"own frame");
        let mut chunks = VecDeque::from([own.clone(), shared.clone()]);
        future::block_on(w.write_chunks(&mut chunks)).unwrap();
        let written = written.borrow();
        assert_eq!(written.len(), 3, "a header, then the two chunks");
        assert_eq!(
            &written[0][..],
            &[0x82, 126, 0x01, 0x35],
            "binary, 309 bytes"
        );
        assert_eq!(written[2].as_ptr(), shared.as_ptr(), "not copied");
        assert_eq!(written[1].as_ptr(), own.as_ptr());
    }

    #[test]
    fn control_frames_go_first_and_nothing_follows_a_close() {
        let (mut w, written) = writer();
        w.shared
            .queue(codec::control_frame(Control::Pong, b"p"), false);
        assert!(
            w.has_own_output(),
            "the write loop must call even with nothing queued"
        );
        future::block_on(w.write_chunks(&mut VecDeque::from([Bytes::from_static(b"x")]))).unwrap();
        future::block_on(w.end()).unwrap();
        future::block_on(w.write_chunks(&mut VecDeque::from([Bytes::from_static(b"late")])))
            .unwrap();
        let written: Vec<Vec<u8>> = written.borrow().iter().map(|b| b.to_vec()).collect();
        assert_eq!(
            written,
            vec![
                vec![0x8a, 1, b'p'],
                vec![0x82, 1],
                b"x".to_vec(),
                vec![0x88, 2, 0x03, 0xe8],
            ]
        );
    }
}
