//! A nats-server with JetStream that the load generator starts itself, so
//! the JetStream baselines run with exactly the settings their names say:
//! its store in a fresh temporary directory, a free loopback port, and
//! either the file store's default sync (every 2 minutes: acknowledged
//! from memory) or `sync_interval: always` (an fsync before every PubAck,
//! as surepush syncs before its SENDACK; nats-server 2.10 and later).
//! Killed and its store removed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// When the JetStream file store syncs to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JetStreamSync {
    /// nats-server's default: every 2 minutes, not per message.
    Default,
    /// `sync_interval: always`: before every acknowledgement.
    Always,
}

impl JetStreamSync {
    /// The name `compare` reports the mode under.
    pub fn label(self) -> &'static str {
        match self {
            JetStreamSync::Default => "JetStream (default sync)",
            JetStreamSync::Always => "JetStream (sync always)",
        }
    }
}

/// A running nats-server with JetStream.
pub struct NatsServer {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `bin` (a nats-server executable) and waits until it says it
    /// is ready.
    pub fn start(bin: &Path, sync: JetStreamSync) -> Result<NatsServer, String> {
        let store = tempfile::tempdir().map_err(|e| format!("store dir: {e}"))?;
        let port =
            surepush_host::limits::free_loopback_port().map_err(|e| format!("a free port: {e}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let sync_line = match sync {
            JetStreamSync::Default => "",
            JetStreamSync::Always => "sync_interval: always",
        };
        let config = store.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"{addr}\"\njetstream {{\n  store_dir: \"{}\"\n  {sync_line}\n}}\n",
                store.path().join("js").display()
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let server = NatsServer {
            child,
            addr,
            _store: store,
        };
        // Its log goes to stderr; "Server is ready" is the signal.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = ready_tx.send(Ok(()));
                } else if said.len() < 20 {
                    said.push(line);
                }
            }
            let _ = ready_tx.send(Err(said.join("\n")));
        });
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(log)) => Err(format!("{} exited:\n{log}", bin.display())),
            Err(_) => Err(format!("{} not ready after 20 s", bin.display())),
        }
    }

    /// The server's pid (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nats-server to use: `SUREPUSH_NATS_SERVER`, else the one `.ci/run`
/// installs from PyPI (`target/nats-venv/bin/nats-server` of the
/// workspace), else `nats-server` on the PATH; `None` if none runs.
pub fn find_nats_server() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nats-venv/bin/nats-server");
    let candidates = std::env::var_os("SUREPUSH_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv, PathBuf::from("nats-server")]);
    candidates.into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}
