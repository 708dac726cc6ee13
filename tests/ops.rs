//! Operations (issue 22 item 6) against the real binary: the metrics
//! exposition read by a real OpenMetrics parser, build and process series.
//!
//! Needs `/usr/bin/python3` with prometheus_client (Debian:
//! python3-prometheus-client; `.ci/run` installs it).

mod common;

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
