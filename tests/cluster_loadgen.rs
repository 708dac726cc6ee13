//! `surepush-loadgen cluster` against two real nodes and a real
//! nats-server 2.15 (issue #20): it finds where users live by where the
//! gateway redirects them, runs node-local and cross-node pairs with the
//! delivery checker, and reports each class's cost and the ratio; with
//! `--move-cmd`, a third class runs while a receiver's partition moves
//! (`surepush cluster move --user`), and the report times the move.

#[path = "../crates/cluster/tests/support/mod.rs"]
mod support;

mod common;

use std::path::PathBuf;
use std::process::Command;

use support::NatsServer;
use surepush::cluster::PartitionCount;

const PARTITIONS: u64 = 16;

/// The load generator built next to the gateway by the workspace build.
fn loadgen() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_surepush")).with_file_name("surepush-loadgen");
    assert!(
        bin.exists(),
        "{} missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

#[test]
fn the_cluster_report_runs_local_and_cross_node_pairs_and_checks_both() {
    let nats = NatsServer::start();
    common::cluster_init(&nats.url(), PARTITIONS, &["n0", "n1"]);
    let nodes: Vec<common::TestServer> = ["n0", "n1"]
        .iter()
        .map(|name| common::cluster_node(&nats.url(), name, PARTITIONS, ""))
        .collect();
    let servers: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    // The moving class: the first receiver's partition moves to the node
    // it is not on, while its sender sends.
    let move_to = |target: &str| {
        format!(
            "{} cluster move --nats {} --user {{receiver}} --to {target}",
            env!("CARGO_BIN_EXE_surepush"),
            nats.url()
        )
    };
    let move_cmd = format!(
        "if [ {{receiver_node}} = {} ]; then {}; else {}; fi",
        servers[0],
        move_to("n1"),
        move_to("n0")
    );
    let out = Command::new(loadgen())
        .arg("cluster")
        .args(["--servers", &servers.join(",")])
        .args(["--secret", common::SECRET])
        .args(["--pairs", "3", "--messages", "40", "--payload", "64"])
        .args(["--nats", &format!("127.0.0.1:{}", nats.port)])
        .args(["--move-cmd", &move_cmd])
        .arg("--json")
        .output()
        .expect("run surepush-loadgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    // Where each user lives, from the placement `init --nodes` wrote
    // (partition p on node p mod 2), not from the load generator.
    let count = PartitionCount::new(PARTITIONS).expect("valid");
    let node_of = |user: u64| count.partition_of_wire_id(user).0 % 2;
    for (class, same) in [("local", true), ("cross", false), ("moving", false)] {
        let c = &report[class];
        let pairs = c["pairs"].as_array().expect("pairs");
        assert_eq!(pairs.len(), 3, "{class}: {c}");
        for p in pairs {
            let (from, to) = (p[0].as_u64().unwrap(), p[1].as_u64().unwrap());
            assert_ne!(from, to);
            assert_eq!(
                node_of(from) == node_of(to),
                same,
                "{class} pair {from} -> {to}"
            );
        }
        let r = &c["report"];
        for field in ["sent", "acked", "delivered"] {
            assert_eq!(r[field], 120, "{class} {field}: {r}");
        }
        for field in ["lost", "duplicates", "out_of_order"] {
            assert_eq!(r[field], 0, "{class} {field}: {r}");
        }
        assert!(
            r["server_cpu_us_per_msg"].as_f64().is_some(),
            "{class}: {r}"
        );
        assert!(c["nats_cpu_us_per_msg"].as_f64().is_some(), "{class}: {c}");
    }
    // The move happened, to the other node, with records, and the checker
    // above saw every message of the moving class exactly once.
    let moving = &report["moving"];
    let receiver = moving["pairs"][0][1].as_u64().expect("a receiver");
    let p = count.partition_of_wire_id(receiver).0;
    let fault = &moving["report"]["fault"];
    let output = fault["output"].as_str().expect("the move's output");
    let target = format!("n{}", 1 - node_of(receiver));
    assert!(
        output.contains(&format!("partition {p} moved to {target}: ")),
        "{fault}"
    );
    assert!(!output.contains(" 0 records"), "{fault}");
    assert!(
        fault["wall_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{fault}"
    );
    assert_eq!(
        moving["report"]["ack_max_ms_by_pair"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // Each shard's link queues are in /metrics, and empty once the
    // traffic is over (sampled every second).
    for node in &nodes {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let queued: Vec<u64> = [
                "surepush_cluster_tickets_in_use",
                "surepush_cluster_backlog",
                "surepush_cluster_lane_events",
            ]
            .iter()
            .map(|series| node.counter(series))
            .collect();
            if queued == [0, 0, 0] {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{queued:?}");
            std::thread::sleep(std::time::Duration::from_millis(100)); // the gauges' sampling period is 1 s
        }
    }
    assert!(report["gateway_cpu_ratio"]
        .as_f64()
        .is_some_and(|r| r > 0.0));
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(2));
}
