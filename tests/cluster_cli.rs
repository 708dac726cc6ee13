//! `surepush cluster init` and `surepush cluster status` against a real
//! nats-server 2.15 (issue #20).

#[path = "../crates/cluster/tests/support/mod.rs"]
mod support;

use std::process::Command;

use support::*;

fn surepush(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_surepush"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run surepush");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_and_status_from_the_command_line() {
    let nats = NatsServer::start();
    let url = nats.url();
    let (ok, _, err) = surepush(&["cluster", "status", "--nats", &url, "--timeout-s", "5"]);
    assert!(!ok, "status before init must fail");
    assert!(err.contains("cluster init"), "{err}");

    let (ok, out, err) = surepush(&["cluster", "init", "--nats", &url, "--partitions", "32"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("created a cluster with 32 partitions"),
        "{out}"
    );
    let (ok, out, _) = surepush(&["cluster", "init", "--nats", &url, "--partitions", "32"]);
    assert!(ok && out.contains("exists already"), "{out}");
    let (ok, _, err) = surepush(&["cluster", "init", "--nats", &url, "--partitions", "64"]);
    assert!(!ok && err.contains("32 partitions"), "{err}");

    let a = join(node_config(&nats, "node-a", 32, 1));
    a.placement().wait_until(WAIT, |t| t.is_complete()).unwrap();
    let (ok, out, err) = surepush(&["cluster", "status", "--nats", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("32 partitions, initial node node-a"), "{out}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("node-a"))
        .unwrap_or_else(|| panic!("no row for node-a in\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "32", "{row}");
    assert!(
        out.contains(&format!("placement revision {}", a.placement().revision())),
        "{out}"
    );
}

#[test]
fn a_bad_partition_count_is_refused_before_touching_nats() {
    let (ok, _, err) = surepush(&[
        "cluster",
        "init",
        "--nats",
        "nats://127.0.0.1:1",
        "--partitions",
        "0",
    ]);
    assert!(!ok);
    assert!(err.contains("1 to 65536 partitions"), "{err}");
}
