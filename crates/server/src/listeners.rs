//! Listening sockets: SO_REUSEPORT among this node's shards, never with
//! another process.
//!
//! Every shard accepts on its own socket bound to the same address
//! (SO_REUSEPORT), so accepts spread over the cores. But SO_REUSEPORT lets
//! any process of the same user join the group, and then the kernel splits
//! new connections between two gateways (issue #16 item 1). So the first
//! socket of each address is bound *without* SO_REUSEPORT, which fails with
//! EADDRINUSE while anybody else holds the address; only then is
//! SO_REUSEPORT switched on (before `listen`, when the kernel forms the
//! group) and the other shards' sockets join. A later process's exclusive
//! first bind fails against ours in turn.
//!
//! Every socket sets SO_REUSEADDR, so an address held only by TIME_WAIT
//! connections of a previous run can be bound at once after a restart.
//!
//! Sockets are made here, on the node's main thread, before any shard
//! runs, and handed to the shards as descriptors.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::node::ServeError;

/// Pending connections the kernel queues per socket (capped by
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// One listening address, bound for every shard that accepts on it.
#[derive(Debug)]
pub(crate) struct BoundListeners {
    /// What the address serves (for errors and logs).
    what: &'static str,
    /// One listening socket per shard, taken by the shards as they start.
    sockets: Mutex<Vec<OwnedFd>>,
}

impl BoundListeners {
    /// Binds `addr` once per shard (`count` sockets); `what` names the
    /// listener in errors ("client", "MQTT", "admin").
    pub(crate) fn bind(
        what: &'static str,
        addr: SocketAddr,
        count: usize,
    ) -> Result<BoundListeners, ServeError> {
        let err = |source| ServeError::Bind { what, addr, source };
        let mut sockets = Vec::with_capacity(count);
        sockets.push(listen_first(addr).map_err(err)?);
        for _ in 1..count {
            sockets.push(listen(addr, false).map_err(err)?);
        }
        Ok(BoundListeners {
            what,
            sockets: Mutex::new(sockets),
        })
    }

    /// Takes one socket for the calling shard and makes it a glommio
    /// listener there. Must run on the shard's executor.
    pub(crate) fn take(&self) -> Result<glommio::net::TcpListener, String> {
        let fd = self
            .sockets
            .lock()
            .map_err(|_| format!("{} listener sockets poisoned", self.what))?
            .pop()
            .ok_or_else(|| format!("no {} listener socket left for this shard", self.what))?;
        // SAFETY: `fd` is a bound, listening TCP socket this process owns
        // exclusively (taken out of the list); ownership moves into the listener.
        Ok(unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) })
    }
}

/// How long the first bind waits for a listener of a process that has
/// already exited: glommio's io_uring instance is torn down by the kernel
/// after the process is reaped, and until then the ring holds the old
/// listening sockets (seen here: a restart right after a clean exit found
/// the port taken in 3 of 8 tries). A live process holds it past this.
const EXITED_LISTENER_GRACE: Duration = Duration::from_secs(2);

/// The exclusive first socket of an address, waiting out a listener that
/// only a dead process's ring still holds.
fn listen_first(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let deadline = Instant::now() + EXITED_LISTENER_GRACE;
    loop {
        match listen(addr, true) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                // Polling: nothing signals the end of another process's ring.
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// A listening socket on `addr`; `first` binds it exclusively (see the
/// module docs) and opens the SO_REUSEPORT group for the following ones.
fn listen(addr: SocketAddr, first: bool) -> std::io::Result<OwnedFd> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if !first {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    if first {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    // Issue #16 item 1: a second gateway's listener must not join ours.
    #[test]
    fn a_second_node_on_the_same_address_is_refused_and_our_shards_share_it() {
        let addr = free_addr();
        let ours = BoundListeners::bind("client", addr, 3).unwrap();
        assert_eq!(ours.sockets.lock().unwrap().len(), 3);
        match BoundListeners::bind("client", addr, 2) {
            Err(ServeError::Bind {
                what,
                addr: a,
                source,
            }) => {
                assert_eq!((what, a), ("client", addr));
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("expected a bind error, got {other:?}"),
        }
        drop(ours);
        BoundListeners::bind("client", addr, 2).expect("free again once ours are closed");
    }

    #[test]
    fn an_address_held_by_another_plain_listener_is_refused() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let err = BoundListeners::bind("MQTT", addr, 1).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(err.to_string().contains("MQTT"), "{err}");
    }
}
