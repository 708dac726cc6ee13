//! Operations (issue 22 item 6) against the real binary: the metrics
//! exposition read by a real OpenMetrics parser, build and process series.
//!
//! Needs `/usr/bin/python3` with prometheus_client (Debian:
//! python3-prometheus-client; `.ci/run` installs it).

mod common;
#[path = "ops/grafana.rs"]
mod grafana;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_exchange, TestServer};
use serde_json::Value;

/// One parsed metric family.
#[derive(Debug)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/metrics` of `server`, checked for the OpenMetrics content type and
/// parsed by prometheus_client's strict OpenMetrics parser.
fn scrape(server: &TestServer) -> BTreeMap<String, Family> {
    let resp = http_exchange(
        server.admin,
        "GET",
        "/metrics",
        "",
        None,
        Duration::from_secs(10),
    )
    .expect("admin HTTP");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    parse_openmetrics(&resp.body)
}

fn parse_openmetrics(text: &str) -> BTreeMap<String, Family> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ops/openmetrics_parse.py"
    );
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (apt-get install python3-prometheus-client)");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("write to the parser");
    let out = child.wait_with_output().expect("parser output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "prometheus_client missing: apt-get install python3-prometheus-client"
    );
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {stderr}\n{text}"
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser JSON");
    families
        .into_iter()
        .map(|f| {
            let samples = f["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| Sample {
                    name: s["name"].as_str().expect("name").to_string(),
                    labels: serde_json::from_value(s["labels"].clone()).expect("labels"),
                    value: s["value"].as_f64().unwrap_or(f64::NAN),
                })
                .collect();
            let family = Family {
                kind: f["type"].as_str().expect("type").to_string(),
                samples,
            };
            (f["name"].as_str().expect("name").to_string(), family)
        })
        .collect()
}

fn single_value(families: &BTreeMap<String, Family>, name: &str) -> f64 {
    let family = families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name}"));
    assert_eq!(family.samples.len(), 1, "{name}: {family:?}");
    family.samples[0].value
}

/// Issue 22 item 6: `/metrics` said `text/plain; version=0.0.4` over an
/// OpenMetrics body, so Prometheus's classic parser read `# TYPE x counter`
/// then `x_total` as two metrics of unknown type. It is now served as
/// OpenMetrics, which prometheus_client's strict OpenMetrics parser reads
/// whole (it refuses a body without `# EOF` or a counter sample without
/// `_total`).
#[test]
fn metrics_are_openmetrics_that_a_real_parser_reads() {
    let server = TestServer::start(2, "");
    let families = scrape(&server);

    let sends = &families["surepush_sends"];
    assert_eq!(sends.kind, "counter");
    let shards: BTreeSet<&str> = sends
        .samples
        .iter()
        .filter(|s| s.name == "surepush_sends_total")
        .map(|s| s.labels["shard"].as_str())
        .collect();
    assert_eq!(shards, BTreeSet::from(["0", "1"]), "{sends:?}");
    assert_eq!(families["surepush_log_fsync_seconds"].kind, "histogram");
    assert_eq!(families["surepush_connections"].kind, "gauge");
    // A single node has no cluster link to report.
    assert!(!families.contains_key("surepush_cluster_tickets_in_use"));

    let build = &families["surepush_build"];
    assert_eq!(build.kind, "info");
    let labels = &build.samples[0].labels;
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(labels["rustc"].starts_with("rustc 1."), "{labels:?}");
    assert!(!labels["git_sha"].is_empty(), "{labels:?}");

    // The process series describe the gateway process, not this test.
    assert_eq!(families["process_cpu_seconds"].kind, "counter");
    let rss = single_value(&families, "process_resident_memory_bytes");
    assert!(rss > 1e6, "{rss}");
    let fds = single_value(&families, "process_open_fds");
    // Two shards each hold at least a listener, a log segment and an
    // io_uring: well beyond stdin, stdout and stderr.
    assert!(fds > 8.0, "{fds}");
    assert!(single_value(&families, "process_max_fds") >= fds);
    let started = single_value(&families, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 120.0,
        "{started} vs {now}"
    );
}

/// Issue 22 item 6: `surepush config defaults` prints a TOML file that
/// reads back as exactly the defaults.
#[test]
fn config_defaults_prints_a_file_that_reads_back_as_the_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_surepush"))
        .args(["config", "defaults"])
        .output()
        .expect("run surepush");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defaults.toml");
    std::fs::write(&path, &text).unwrap();
    let read = surepush::server::Config::from_file(&path).expect("the printed file reads");
    assert_eq!(read, surepush::server::Config::default(), "{text}");
    assert!(text.contains("\n[core.dedup]\n"), "{text}");
}

/// Issue 21 item 5: the gateway turns transparent huge pages off for its
/// process unless `transparent_huge_pages = true` (the kernel's own view,
/// `THP_enabled` in /proc/PID/status, set by `PR_SET_THP_DISABLE`).
#[test]
fn transparent_huge_pages_are_off_unless_configured() {
    let thp_enabled = |server: &TestServer| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"));
        line.expect("a THP_enabled line").split_whitespace().nth(1) == Some("1")
    };
    let default = TestServer::start(1, "");
    assert!(!thp_enabled(&default));
    let allowed = TestServer::start_full(1, "transparent_huge_pages = true\n", "", |_| {});
    assert!(thp_enabled(&allowed));
}

/// Issue 22 item 6: `--log-format json` writes one JSON object per line.
#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = TestServer::unstarted(1, "", "");
    server.extra_args = vec!["--log-format".into(), "json".into()];
    server.spawn();
    let log = server.log.lock().unwrap().clone();
    let serving = log
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|v| v["fields"]["message"] == "serving")
        .expect("a serving line");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["fields"]["shard"], 0);
    assert!(serving["target"]
        .as_str()
        .unwrap()
        .starts_with("surepush_server"));
}

/// Issue 22 item 6: SIGHUP applies the log level and the per-connection
/// limits, and names the changed settings it cannot apply.
#[test]
fn sighup_reloads_the_level_and_limits_and_names_the_rest() {
    use surepush::client::{BlockingClient, Event};
    use surepush::proto::ErrorCode;

    let mut server = TestServer::unstarted(
        2,
        "[logging]\nlevel = \"info\"\n[core]\nmax_connections_per_user = 8\n",
        "retention_interval_s = 1\n",
    );
    // RUST_LOG would pin the filter (as documented): leave it unset.
    server.rust_log = String::new();
    server.spawn();
    let (_a1, _) = server.connect(5, 1, None);
    let (_a2, _) = server.connect(5, 2, None);

    let path = server.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text
        .replace("level = \"info\"", "level = \"info,surepush_server=debug\"")
        .replace(
            "max_connections_per_user = 8",
            "max_connections_per_user = 1",
        )
        .replace("shutdown_grace_ms = 2000", "shutdown_grace_ms = \"2500ms\"");
    assert_ne!(text, changed);
    std::fs::write(&path, changed).unwrap();
    let before = server.log.lock().unwrap().len();
    assert!(
        !server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("DEBUG")),
        "no DEBUG line at level info"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };

    let restart = server.wait_for_line(before, |l| l.contains("need a restart"));
    let line = server.log.lock().unwrap()[restart].clone();
    assert!(line.contains("shutdown_grace_ms"), "{line}");
    assert!(!line.contains("logging.level"), "{line}");
    let reloaded = server.wait_for_line(before, |l| l.contains("configuration reloaded"));
    let line = server.log.lock().unwrap()[reloaded].clone();
    assert!(
        line.contains("core.max_connections_per_user") && line.contains("logging.level"),
        "{line}"
    );
    // The new filter: the shards' debug lines (retention, every second).
    server.wait_for_line(reloaded, |l| l.contains("DEBUG") && l.contains("retention"));
    // Each shard applied the limit (its signal, not a sleep).
    for shard in 0..2 {
        server.wait_for_line(before, |l| {
            l.contains("live limits applied") && l.contains(&format!("shard={shard}"))
        });
    }
    // Connected devices stay; a second device of a new user is refused.
    let (_b1, _) = server.connect(6, 1, None);
    let mut b2 = BlockingClient::connect(
        server.addr,
        server.client_config(6, 2),
        None,
        Duration::from_secs(5),
    )
    .expect("connect");
    let refused = b2
        .wait_for(Duration::from_secs(10), |e| matches!(e, Event::Error(_)))
        .expect("io");
    match refused {
        Some(Event::Error(e)) => assert_eq!(e.code, ErrorCode::TooManyConnections as u16),
        other => panic!("expected TooManyConnections, got {other:?}"),
    }
}

/// Issue 22 item 6: `/readyz` says no, with the reason, until every shard
/// has recovered its log and serves; `/healthz` (liveness) says yes
/// meanwhile. The admin port answers from before recovery.
#[test]
fn readiness_follows_recovery() {
    let mut server = TestServer::unstarted(2, "", "recovery = \"salvage\"\n");
    server.spawn();
    // A log to recover: salvage mode scans every segment, which keeps the
    // shards recovering long enough to be asked.
    let (mut sender, _) = server.connect(1, 1, None);
    let payload = bytes::Bytes::from(vec![7u8; 60_000]);
    // In windows below the pending-send limit.
    for window in 0..8u64 {
        for to in 0..50u64 {
            let to = surepush::proto::UserId(100 + (window * 50 + to) % 8);
            sender
                .send(to, surepush::proto::Qos::AtLeastOnce, payload.clone())
                .expect("send");
        }
        let mut acked = 0;
        while acked < 50 {
            match sender.next_event(Duration::from_secs(10)).expect("io") {
                Some(surepush::client::Event::SendAcked(_)) => acked += 1,
                Some(_) => {}
                None => panic!("no SENDACK; {acked} so far"),
            }
        }
    }
    drop(sender);
    server.terminate();

    let asking = {
        let admin = server.admin;
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < until {
                let ready =
                    http_exchange(admin, "GET", "/readyz", "", None, Duration::from_secs(10));
                let Ok(ready) = ready else { continue }; // not listening yet
                let live =
                    http_exchange(admin, "GET", "/healthz", "", None, Duration::from_secs(10))
                        .map(|r| r.status)
                        .unwrap_or(0);
                answers.push((ready.status, ready.body, live));
                if ready.status == 200 {
                    break;
                }
            }
            answers
        })
    };
    server.spawn();
    let answers = asking.join().unwrap();
    let (last_status, last_body, _) = answers.last().expect("answers");
    assert_eq!((*last_status, last_body.as_str()), (200, "ready\n"));
    let waiting: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        !waiting.is_empty(),
        "never saw the node not ready: {answers:?}"
    );
    for (_, body, live) in &waiting {
        assert!(body.contains("not serving yet"), "{body}");
        assert_eq!(*live, 200, "liveness during recovery");
    }
}
