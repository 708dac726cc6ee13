//! Test harness: runs the real `surepush` binary on loopback with a temp
//! data dir, and talks to it with the SDK and raw HTTP.
#![allow(dead_code)]

pub mod mosquitto;
pub mod traffic;
pub mod ws_wire;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use surepush::client::{BlockingClient, ClientConfig, Event};
use surepush::core::{Acl, Claims, TokenVerifier};
use surepush::proto::{DeviceId, Seq, UserId};

pub const SECRET: &str = "integration-test-secret";
pub const ADMIN_TOKEN: &str = "integration-admin-token";

/// A running gateway process.
pub struct TestServer {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// MQTT listener.
    pub mqtt: SocketAddr,
    pub dir: PathBuf,
    pub shards: u16,
    _tmp: Option<tempfile::TempDir>,
    extra_config: String,
    top_config: String,
    /// `RUST_LOG` of the process (default `info`).
    pub rust_log: String,
    /// Every line the process wrote to stderr, across restarts.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// ERROR lines containing one of these do not fail a start (a test
    /// that expects the server to report something at ERROR and serve).
    pub tolerated_errors: Vec<&'static str>,
    /// Arguments after `serve --config FILE`.
    pub extra_args: Vec<String>,
    /// Settings appended to the `[mqtt]` table (`key = value` lines).
    pub mqtt_config: String,
    /// Environment variables of the process (test hooks).
    pub envs: Vec<(String, String)>,
}

fn free_port() -> u16 {
    surepush::server::limits::free_loopback_port().expect("a free port")
}

impl TestServer {
    /// Starts a server with `shards` shards and extra TOML appended to the config.
    pub fn start(shards: u16, extra_config: &str) -> TestServer {
        Self::start_with(shards, extra_config, |_| {})
    }

    /// As [`TestServer::start`], calling `prepare` with the data dir path
    /// (not yet created) before the first start, e.g. to mount a filesystem.
    pub fn start_with(shards: u16, extra_config: &str, prepare: impl FnOnce(&Path)) -> TestServer {
        Self::start_full(shards, "", extra_config, prepare)
    }

    /// As [`TestServer::start_with`], with top-level settings `top` (the
    /// extra config lands in the `[log]` table and what follows it).
    pub fn start_full(
        shards: u16,
        top: &str,
        extra_config: &str,
        prepare: impl FnOnce(&Path),
    ) -> TestServer {
        let mut s = Self::unstarted(shards, top, extra_config);
        prepare(&s.dir.join("data"));
        s.spawn();
        s
    }

    /// As [`TestServer::start_full`], not started: set fields, then
    /// [`TestServer::spawn`].
    pub fn unstarted(shards: u16, top: &str, extra_config: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        TestServer {
            child: None,
            addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            admin: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            mqtt: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            dir,
            shards,
            _tmp: Some(tmp),
            extra_config: extra_config.to_string(),
            top_config: top.to_string(),
            rust_log: std::env::var("TEST_SERVER_RUST_LOG").unwrap_or_else(|_| "info".into()),
            log: Default::default(),
            tolerated_errors: Vec::new(),
            extra_args: Vec::new(),
            mqtt_config: String::new(),
            envs: Vec::new(),
        }
    }

    /// A second server with this one's config (same ports; the same data
    /// dir when `same_data_dir`, else a fresh one), not started.
    pub fn twin(&self, same_data_dir: bool) -> TestServer {
        let tmp = (!same_data_dir).then(|| tempfile::tempdir().unwrap());
        TestServer {
            child: None,
            addr: self.addr,
            admin: self.admin,
            mqtt: self.mqtt,
            dir: tmp
                .as_ref()
                .map_or_else(|| self.dir.clone(), |t| t.path().to_owned()),
            shards: self.shards,
            _tmp: tmp,
            extra_config: self.extra_config.clone(),
            top_config: self.top_config.clone(),
            rust_log: self.rust_log.clone(),
            log: Default::default(),
            tolerated_errors: self.tolerated_errors.clone(),
            extra_args: self.extra_args.clone(),
            mqtt_config: self.mqtt_config.clone(),
            envs: self.envs.clone(),
        }
    }

    /// The running process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The config file of the last start.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("test.toml")
    }

    /// Replaces the extra config (the `[log]` table's content) of the next start.
    pub fn set_extra_config(&mut self, extra: &str) {
        self.extra_config = extra.to_string();
    }

    fn write_config(&self) -> PathBuf {
        let path = self.dir.join("test.toml");
        let mut text = format!(
            "listen = \"{}\"\nadmin_listen = \"{}\"\ndata_dir = \"{}\"\nshards = {}\npin_cores = false\n\
             io_memory_kib = 1024\ntoken_secret = \"{SECRET}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             shutdown_grace_ms = 2000\n",
            self.addr,
            self.admin,
            self.dir.join("data").display(),
            self.shards
        );
        text.push_str(&self.top_config);
        if !self.top_config.contains("[mqtt]") {
            text.push_str(&format!("[mqtt]\nlisten = \"{}\"\n", self.mqtt));
            text.push_str(&self.mqtt_config);
        }
        // Extra config lands in the [log] table; it may set its own size.
        text.push_str("[log]\n");
        if !self.extra_config.contains("segment_mib") {
            text.push_str("segment_mib = 8\n");
        }
        text.push_str(&self.extra_config);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `surepush serve` on a freshly written config, stderr piped.
    fn serve_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_surepush"));
        command
            .args(["serve", "--config"])
            .arg(self.write_config())
            .args(&self.extra_args)
            .env("RUST_LOG", &self.rust_log)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            // The test harness's own variable (which nats-server binary the
            // cluster tests run) is not a gateway setting: the gateway
            // would warn about it, and several tests forbid warnings.
            .env_remove("SUREPUSH_NATS_SERVER")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// (Re)starts the process and waits until every shard reports "serving".
    pub fn spawn(&mut self) {
        let mut child = self.serve_command().spawn().expect("start surepush");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("TEST_SERVER_LOG").is_ok() {
                    eprintln!("[server] {line}");
                }
                log.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on stderr.
                }
            }
        });
        let mut serving = 0;
        while serving < self.shards {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!(
                        "server did not report ready ({serving}/{} shards serving)",
                        self.shards
                    )
                });
            let tolerated = self.tolerated_errors.iter().any(|t| line.contains(t));
            assert!(
                !line.contains("ERROR") || tolerated,
                "server failed to start: {line}"
            );
            if line.contains("serving") {
                serving += 1;
            }
        }
        self.child = Some(child);
    }

    /// Starts the process expecting it to fail: waits (up to 30 s) for it to
    /// exit by itself and returns its status and what it wrote to stderr.
    /// Panics if it is still running then (killing it first).
    pub fn start_expecting_failure(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.serve_command().spawn().expect("start surepush");
        let mut stderr = child.stderr.take().unwrap();
        // stderr closes when the process exits: that is the signal.
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
            text
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("the server did not exit: {}", reader.join().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50)); // polling an exit status
        };
        (status, reader.join().unwrap())
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    pub fn token(&self, user: u64, device: u64) -> String {
        self.token_granting(user, device, Acl::default())
    }

    /// A token whose `acl` claim grants `acl` (docs/PROTOCOL.md section 4).
    pub fn token_granting(&self, user: u64, device: u64, acl: Acl) -> String {
        TokenVerifier::new(SECRET.as_bytes()).mint(&Claims {
            user: UserId(user),
            device: DeviceId(device),
            expires_s: 4_000_000_000,
            acl,
        })
    }

    pub fn client_config(&self, user: u64, device: u64) -> ClientConfig {
        let mut c = ClientConfig::new(self.token(user, device), DeviceId(device));
        c.page = 10;
        c
    }

    /// Connects and waits until replay is done (the session is live).
    pub fn connect(
        &self,
        user: u64,
        device: u64,
        delivered: Option<Seq>,
    ) -> (BlockingClient, Vec<Event>) {
        self.connect_with(self.client_config(user, device), delivered)
    }

    /// [`TestServer::connect`] with a token granting `acl`.
    pub fn connect_granted(&self, user: u64, device: u64, acl: Acl) -> BlockingClient {
        let mut config = self.client_config(user, device);
        config.token = self.token_granting(user, device, acl);
        self.connect_with(config, None).0
    }

    fn connect_with(
        &self,
        config: ClientConfig,
        delivered: Option<Seq>,
    ) -> (BlockingClient, Vec<Event>) {
        let mut c = BlockingClient::connect(self.addr, config, delivered, Duration::from_secs(5))
            .expect("connect");
        let mut seen = Vec::new();
        loop {
            let e = c
                .next_event(Duration::from_secs(10))
                .expect("io")
                .expect("event before timeout");
            match e {
                Event::CaughtUp => return (c, seen),
                Event::Error(e) => panic!("gateway error while connecting: {e:?}"),
                other => seen.push(other),
            }
        }
    }

    /// One HTTP/1.1 request to the admin port; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str, auth: bool) -> (u16, String) {
        http(self.admin, method, path, body, auth.then_some(ADMIN_TOKEN))
    }

    /// The sum of the samples of `series` in `/metrics`: a metric name
    /// (every label set) or a name with its labels as the exposition writes
    /// them (`name{shard="0"}`). Only that series: `surepush_connections`
    /// does not match `surepush_connections_adopted_total`.
    pub fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.http("GET", "/metrics", "", true);
        assert_eq!(status, 200, "{text}");
        metric_sum(&text, series)
    }

    /// A counter or gauge that must be in `/metrics` (its samples summed,
    /// matched as [`TestServer::metric`] does), as an integer.
    pub fn counter(&self, series: &str) -> u64 {
        let (status, text) = self.http("GET", "/metrics", "", true);
        assert_eq!(status, 200, "{text}");
        assert!(
            metric_samples(&text, series).next().is_some(),
            "{series} not in /metrics"
        );
        metric_sum(&text, series) as u64
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Waits (up to 20 s) for a log line from index `from` on that
    /// satisfies `want`; its index.
    pub fn wait_for_line(&self, from: usize, want: impl Fn(&str) -> bool) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(i) = log.iter().skip(from).position(|l| want(l)) {
                    return from + i;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no such line; the log:\n{}",
                    log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20)); // polling a log file
        }
    }

    /// SIGHUP: reload the configuration.
    pub fn sighup(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The sum of the samples of `series` in an OpenMetrics text (see
/// [`TestServer::metric`]).
pub fn metric_sum(text: &str, series: &str) -> f64 {
    metric_samples(text, series).sum()
}

/// The samples of `series` in an OpenMetrics text (see
/// [`TestServer::metric`]).
fn metric_samples<'a>(text: &'a str, series: &'a str) -> impl Iterator<Item = f64> + 'a {
    let labelled = series.contains('{');
    text.lines()
        .filter(move |l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' ') || (!labelled && rest.starts_with('{')))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let r = http_exchange(addr, method, path, body, token, Duration::from_secs(10)).unwrap();
    (r.status, r.body)
}

/// An admin HTTP answer.
pub struct HttpResponse {
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (JSON body, optional bearer token); the whole
/// answer, or the I/O error (e.g. while the node restarts).
pub fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// The inbox messages among `events`, in order.
pub fn messages(events: Vec<Event>) -> Vec<surepush::proto::Push> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Waits for the next `Message` event, skipping others.
pub fn next_message(c: &mut BlockingClient) -> surepush::proto::Push {
    match c
        .wait_for(Duration::from_secs(10), |e| matches!(e, Event::Message(_)))
        .expect("io")
    {
        Some(Event::Message(p)) => p,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Reads raw frames until the server closes; returns the decoded frames.
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<surepush::proto::Frame> {
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut d = surepush::proto::Decoder::default();
    let mut buf = [0u8; 4096];
    let mut frames = Vec::new();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return frames,
            Ok(n) => {
                d.feed(&buf[..n]);
                while let Ok(Some(f)) = d.decode() {
                    frames.push(f);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return frames,
            Err(e) => panic!("no close within the timeout: {e}"),
        }
    }
}

/// Runs a scenario of tests/mqtt/paho_check.py (paho-mqtt, a real MQTT
/// client) against `port` as users 4001 and 4002; `extra`: more flags
/// (`--transport websockets` for the WebSocket listener).
pub fn paho_check(
    server: &TestServer,
    port: u16,
    scenario: &str,
    extra: &[&str],
) -> std::process::Output {
    let (a, b) = (4001, 4002);
    let out = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/mqtt/paho_check.py"
        ))
        .args(["--port", &port.to_string()])
        .args(["--scenario", scenario])
        .args([
            "--token-a",
            &server.token(a, 1),
            "--token-b",
            &server.token(b, 1),
        ])
        .args(["--user-a", &a.to_string(), "--user-b", &b.to_string()])
        .args(extra)
        .output()
        .expect("run /usr/bin/python3 (install python3-paho-mqtt)");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("No module named 'paho'"),
        "paho-mqtt missing: apt-get install python3-paho-mqtt"
    );
    out
}

/// Asserts a checker script exited 0, showing its output otherwise.
pub fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hand-written MQTT 3.1.1 CONNECT (clean session, keep alive
/// `keepalive` seconds) with the token as the password.
pub fn mqtt311_connect(client_id: &str, token: &str, keepalive: u16) -> Vec<u8> {
    let field = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    };
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0xC2]); // level 4, user+password+clean
    body.extend_from_slice(&keepalive.to_be_bytes());
    field(&mut body, client_id.as_bytes());
    field(&mut body, b"x");
    field(&mut body, token.as_bytes());
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}

/// The CONNECT frame of `user` (device 1), encoded, for tests that write
/// it by hand (inside a WebSocket frame, after a TLS handshake).
pub fn connect_frame(server: &TestServer, user: u64) -> Vec<u8> {
    let mut session = surepush::client::ClientSession::new(server.client_config(user, 1), None);
    session.connect(0);
    let mut out = bytes::BytesMut::new();
    session.poll_transmit().expect("CONNECT").encode(&mut out);
    out.to_vec()
}

/// A started 2-shard node `name` of the cluster on the NATS at `nats_url`
/// (`top`: more top-level configuration, before `[cluster]`).
pub fn cluster_node(nats_url: &str, name: &str, partitions: u64, top: &str) -> TestServer {
    let mut node = cluster_node_unstarted(nats_url, name, partitions, 2, top, "");
    node.spawn();
    node
}

/// Node `name` of `shards` shards of the cluster on the NATS at
/// `nats_url`, not started yet (set its environment or MQTT options, then
/// `spawn`): `top` is more top-level configuration (and tables) before
/// `[cluster]`, `cluster` more lines inside it.
pub fn cluster_node_unstarted(
    nats_url: &str,
    name: &str,
    partitions: u64,
    shards: u16,
    top: &str,
    cluster: &str,
) -> TestServer {
    let top = format!(
        "{top}[cluster]\nnats = \"{nats_url}\"\nnode_id = \"{name}\"\npartitions = {partitions}\n{cluster}"
    );
    TestServer::unstarted(shards, &top, "")
}

/// `surepush cluster init` on the NATS server at `nats_url`: `partitions`
/// spread over `nodes` (partition `p` to the `p mod n`-th node).
pub fn cluster_init<S: AsRef<str>>(nats_url: &str, partitions: u64, nodes: &[S]) {
    let names: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_surepush"))
        .args(["cluster", "init", "--nats", nats_url])
        .args(["--partitions", &partitions.to_string()])
        .args(["--nodes", &names.join(",")])
        .output()
        .expect("run surepush cluster init");
    assert_ok(&out, "cluster init");
}

/// The partition of `id` (a user, group or room) among `partitions`.
pub fn partition_of(partitions: u64, id: u64) -> u32 {
    surepush::cluster::PartitionCount::new(partitions)
        .expect("valid")
        .partition_of_wire_id(id)
        .0
}

/// The node (index in the list given to [`cluster_init`]) that owns `id`
/// in a cluster of `nodes` nodes just made by [`cluster_init`].
pub fn node_of(partitions: u64, nodes: usize, id: u64) -> usize {
    partition_of(partitions, id) as usize % nodes
}

/// `count` ids from `from` up whose partition among `partitions` `keep`
/// accepts.
pub fn ids_where(partitions: u64, from: u64, count: usize, keep: impl Fn(u32) -> bool) -> Vec<u64> {
    (from..)
        .filter(|id| keep(partition_of(partitions, *id)))
        .take(count)
        .collect()
}

/// A move benchmark's probe: sends to `to` one message at a time (QoS 1),
/// each after the last one's SENDACK, until `stop`; the longest wait for a
/// SENDACK and how many were sent.
pub fn probe_sends(
    c: &mut BlockingClient,
    to: u64,
    stop: &std::sync::atomic::AtomicBool,
    wait: Duration,
) -> (Duration, u64) {
    let (mut worst, mut sent) = (Duration::ZERO, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let t = std::time::Instant::now();
        let id = c
            .send(
                UserId(to),
                surepush::proto::Qos::AtLeastOnce,
                bytes::Bytes::from_static(b"probe"),
            )
            .expect("send");
        loop {
            match c.next_event(wait).expect("io") {
                Some(Event::SendAcked(a)) if a.client_msg_id == id => break,
                Some(_) => {}
                None => panic!("probe: no SENDACK within {wait:?}"),
            }
        }
        worst = worst.max(t.elapsed());
        sent += 1;
    }
    (worst, sent)
}

/// Runs the paho-mqtt script `tests/mqtt/<script>` with `args`, asserts it
/// exited 0 and printed `passed`, and returns what it printed (stdout,
/// then stderr).
pub fn run_paho_script(script: &str, args: &[&str], passed: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mqtt")
        .join(script);
    let out = Command::new("/usr/bin/python3")
        .arg(path)
        .args(args)
        .output()
        .expect("python3 (apt-get install python3-paho-mqtt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(passed), "{text}");
    text
}

/// Sends `count` copies of `body` to `to` (QoS 1) with up to `window` in
/// flight, until every one is acknowledged (each event within `wait`): how
/// the move benchmarks fill an inbox.
pub fn send_pipelined(
    c: &mut BlockingClient,
    to: u64,
    count: usize,
    body: bytes::Bytes,
    window: usize,
    wait: Duration,
) {
    let (mut queued, mut acked) = (0, 0);
    while acked < count {
        while queued < count && queued - acked < window {
            c.send(UserId(to), surepush::proto::Qos::AtLeastOnce, body.clone())
                .expect("send");
            queued += 1;
        }
        if let Some(Event::SendAcked(_)) = c.next_event(wait).expect("io") {
            acked += 1;
        }
    }
}
