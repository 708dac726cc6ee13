//! What travels between shards when a connection's user lives elsewhere.
//!
//! The accepting shard authenticated the connection; the owner serves it.
//! The hand-off names the protocol through its hello and is otherwise the
//! same for every protocol (the mesh does not know any of them).

use std::os::fd::OwnedFd;

use bytes::Bytes;
use surepush_proto::Connect;

/// An authenticated connection on its way to the shard that owns its user.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// The socket (a duplicate of the accepting shard's descriptor, which
    /// that shard closed).
    pub(crate) fd: OwnedFd,
    /// The stream layer's state over the socket (a TLS session).
    pub(crate) layer: super::Layer,
    /// The protocol's first message, authenticated.
    pub(crate) hello: Hello,
    /// Bytes received after the hello (the protocol's, unframed).
    pub(crate) rest: Bytes,
    /// The layers between the socket and the protocol, with their state.
    pub(crate) framing: Framing,
}

/// What wraps the socket of a handed-off connection.
#[derive(Debug)]
pub(crate) enum Framing {
    /// None: the protocol's bytes are the stream's (plain TCP or TLS).
    Tcp,
    /// WebSocket over the stream (plain TCP or TLS, as `layer` says):
    /// frame bytes read and not decoded yet, a frame or a fragmented
    /// message begun, control frames (pongs) not sent yet.
    Ws(Box<super::ws::WsState>),
}

/// An authenticated first message, per protocol (the variant is the
/// protocol the connection speaks).
#[derive(Debug)]
pub(crate) enum Hello {
    /// A native CONNECT (the core checks its token again when it opens
    /// the session).
    Native(Connect),
    /// An MQTT CONNECT with the claims of the token in its password.
    Mqtt(Box<super::mqtt::MqttHello>),
}
