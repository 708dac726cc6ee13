//! The JetStream baseline against a real `nats-server -js` (Debian package
//! nats-server; `.ci/run` installs it).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use surepush_loadgen::{fresh_user_base, run_jetstream};

/// A `nats-server` with JetStream on a free loopback port, its store in a
/// temporary directory; killed when dropped.
struct NatsServer {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nats() -> NatsServer {
    let installed = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "nats-server missing: apt-get install nats-server"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = surepush_host::limits::free_loopback_port().expect("a free port");
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = NatsServer {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn jetstream_baseline_delivers_every_message_in_order() {
    let nats = start_nats();
    let r = run_jetstream(nats.addr, 3, 200, 64, fresh_user_base()).unwrap();
    assert_eq!(r.acked, 600, "{r:?}");
    assert_eq!(r.delivered, 600, "{r:?}");
    // A second run on the same server gets its own stream and consumers.
    let r = run_jetstream(nats.addr, 2, 50, 16, fresh_user_base()).unwrap();
    assert_eq!((r.acked, r.delivered), (100, 100), "{r:?}");
}
