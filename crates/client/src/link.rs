//! The byte link under [`BlockingClient`](crate::BlockingClient): a
//! non-blocking TCP socket, plain or with TLS (rustls) over it.
//!
//! Both behave as a non-blocking socket: `read` and `write` return
//! `WouldBlock` when they cannot go on now, and the driver waits on the TCP
//! socket ([`Link::tcp`]). For TLS the handshake needs no step of its own:
//! rustls buffers what is written before it completes, the driver's reads
//! and writes drive it ([`Link::read`] answers what the handshake needs).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConnection;

/// Where the gateway listens: an address, and TLS if its listener speaks
/// it. A plain `SocketAddr` converts into one.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// The listener's address.
    pub addr: SocketAddr,
    /// TLS settings, for a TLS listener.
    pub tls: Option<TlsGateway>,
}

impl From<SocketAddr> for Gateway {
    fn from(addr: SocketAddr) -> Gateway {
        Gateway { addr, tls: None }
    }
}

/// How to verify a TLS listener: the CA that signed its certificate and
/// the name the certificate must carry.
#[derive(Clone, Debug)]
pub struct TlsGateway {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

impl TlsGateway {
    /// Trusts the CA certificates in the PEM file `ca` and expects the
    /// gateway's certificate to name `name` (a DNS name or an IP address).
    pub fn with_ca_file(ca: &Path, name: &str) -> io::Result<TlsGateway> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
            roots
                .add(cert.map_err(io::Error::other)?)
                .map_err(io::Error::other)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsGateway {
            config: Arc::new(config),
            name: ServerName::try_from(name.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        })
    }
}

/// ring, as the gateway uses (see its `tls.rs` for why; rustls marks it
/// deprecated for lacking post-quantum key exchange).
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A connected non-blocking link.
#[derive(Debug)]
pub(crate) enum Link {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsLink>),
    /// WebSocket over TCP or TLS ([`crate::Transport::WebSocket`]).
    Ws(Box<crate::wire::WsLink>),
}

/// A rustls client session over its socket.
#[derive(Debug)]
pub(crate) struct TlsLink {
    tcp: TcpStream,
    conn: ClientConnection,
    /// Plaintext decrypted and not yet read.
    buffered: usize,
}

impl Link {
    /// Wraps the connected non-blocking socket `tcp` for `gateway`.
    pub(crate) fn new(tcp: TcpStream, gateway: &Gateway) -> io::Result<Link> {
        Ok(match &gateway.tls {
            None => Link::Plain(tcp),
            Some(tls) => {
                let mut conn = ClientConnection::new(tls.config.clone(), tls.name.clone())
                    .map_err(io::Error::other)?;
                // The driver writes whole frames and waits for the socket,
                // not for rustls's buffer.
                conn.set_buffer_limit(None);
                Link::Tls(Box::new(TlsLink {
                    tcp,
                    conn,
                    buffered: 0,
                }))
            }
        })
    }

    /// The TCP socket (to wait on, and for its addresses).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Link::Plain(tcp) => tcp,
            Link::Tls(tls) => &tls.tcp,
            Link::Ws(ws) => ws.tcp(),
        }
    }

    /// The certificate the gateway presented (DER), over TLS once the
    /// handshake is done.
    pub(crate) fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Link::Plain(_) => None,
            Link::Ws(ws) => ws.peer_certificate(),
            Link::Tls(tls) => tls.conn.peer_certificates()?.first().map(|c| c.as_ref()),
        }
    }

    /// Whether bytes can be read without waiting on the socket.
    pub(crate) fn has_buffered(&self) -> bool {
        match self {
            Link::Plain(_) => false,
            Link::Tls(tls) => tls.buffered > 0,
            Link::Ws(ws) => ws.has_buffered(),
        }
    }

    /// Reads what is there: 0 at the end of the stream, `WouldBlock` when
    /// nothing is.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(tcp) => tcp.read(buf),
            Link::Tls(tls) => tls.read(buf),
            Link::Ws(ws) => ws.read(buf),
        }
    }

    /// Writes all of `bytes` or fails; `wait_writable` waits for room in
    /// the socket.
    pub(crate) fn write_all(
        &mut self,
        bytes: &[u8],
        wait_writable: impl Fn(&TcpStream) -> io::Result<()>,
    ) -> io::Result<()> {
        match self {
            Link::Plain(tcp) => {
                let mut written = 0;
                while written < bytes.len() {
                    match tcp.write(&bytes[written..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(tcp)?,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Link::Ws(ws) => ws.write_all(bytes),
            Link::Tls(tls) => {
                tls.conn.writer().write_all(bytes)?;
                while tls.conn.wants_write() {
                    match tls.conn.write_tls(&mut tls.tcp) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(&tls.tcp)?,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }
}

impl TlsLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    self.buffered = self.buffered.saturating_sub(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket closed without close_notify: the gateway
                // shuts connections down that way too.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            self.conn.read_tls(&mut self.tcp)?;
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.buffered = state.plaintext_bytes_to_read();
            // What the handshake (or a key update) owes the gateway: sent
            // now if the socket takes it, else with the next write.
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
