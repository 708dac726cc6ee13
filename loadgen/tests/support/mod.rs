//! What the load generator's integration tests start: a real gateway, a
//! real mosquitto and a real nats-server, each on free loopback ports
//! with its data in a temporary directory, killed when dropped.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn free_port() -> u16 {
    surepush_host::limits::free_loopback_port().expect("a free port")
}

/// The gateway binary built next to this test (`target/<profile>/surepush`).
pub fn gateway_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("surepush");
    assert!(
        bin.exists(),
        "{} missing: build the workspace first (cargo build)",
        bin.display()
    );
    bin
}

/// A gateway on free loopback ports, its data in a temporary directory,
/// token secret "smoke"; killed when dropped.
pub struct Gateway {
    pub child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub mqtt_port: u16,
    /// The native protocol over TLS (a certificate for `localhost` signed
    /// by the CA in [`Gateway::ca`]).
    pub tls_port: u16,
    /// The WebSocket listener.
    pub ws_port: u16,
    /// The WebSocket listener over TLS (`wss://`, same certificate).
    pub wss_port: u16,
}

/// A CA (`ca.pem`) and a certificate for `localhost` it signed
/// (`cert.pem`, `key.pem`) in `dir`.
fn write_test_certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

impl Gateway {
    pub fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin_port, mqtt_port) = (free_port(), free_port(), free_port());
        let tls_port = free_port();
        write_test_certificates(dir.path());
        let (ws_port, wss_port) = (free_port(), free_port());
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\ndata_dir = \"{}\"\n\
                 shards = 2\npin_cores = false\nio_memory_kib = 1024\ntoken_secret = \"smoke\"\n[log]\n\
                 segment_mib = 8\n[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\ntopics_open = true\n\
                 [tls]\ncert = \"{dir}/cert.pem\"\nkey = \"{dir}/key.pem\"\nlisten = \"127.0.0.1:{tls_port}\"\n\
                 ws_listen = \"127.0.0.1:{wss_port}\"\n[websocket]\nenabled = true\nlisten = \"127.0.0.1:{ws_port}\"\n",
                dir.path().join("data").display(),
                dir = dir.path().display(),
            ),
        )
        .unwrap();
        // mimalloc returns freed memory to the system 10 ms after the
        // free, but only when that thread allocates again: a fresh
        // gateway's RSS then drops by megabytes once connections arrive,
        // which made the idle smoke test's RSS growth negative now and
        // then. Purging at once keeps RSS close to live memory.
        let mut child = Command::new(gateway_binary())
            .env("MIMALLOC_PURGE_DELAY", "0")
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let gateway = Gateway {
            child,
            dir,
            port,
            admin_port,
            mqtt_port,
            tls_port,
            ws_port,
            wss_port,
        };
        let mut serving = 0;
        while serving < 2 {
            let line = lines.next().expect("gateway exited").unwrap();
            serving += usize::from(line.contains("serving"));
        }
        std::thread::spawn(move || for _ in lines {});
        gateway
    }

    /// The CA file that verifies the TLS listener.
    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn tls_addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.tls_port).parse().unwrap()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mosquitto broker (Debian package `mosquitto`) on a free loopback
/// port, anonymous, without QoS 1 queue or in-flight limits (its defaults
/// drop or throttle a busy subscriber's messages); killed when dropped.
pub struct Mosquitto {
    child: std::process::Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts it; `None` (after saying why) when the binary is missing.
    pub fn start() -> Option<Mosquitto> {
        let bin = ["mosquitto", "/usr/sbin/mosquitto"].into_iter().find(|b| {
            Command::new(b)
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        });
        let Some(bin) = bin else {
            eprintln!(
                "SKIPPED: mosquitto missing (apt-get install mosquitto; .ci/run installs it)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
                 max_queued_messages 0\nmax_inflight_messages 0\n\
                 persistence true\npersistence_location {}/\nlog_dest stderr\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "mosquitto version X running" on stderr is the signal.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" running") {
                    let _ = tx.send(());
                }
            }
        });
        let broker = Mosquitto {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            _dir: dir,
        };
        rx.recv_timeout(Duration::from_secs(10))
            .expect("mosquitto did not say it is running");
        Some(broker)
    }

    /// The broker's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
