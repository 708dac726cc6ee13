//! `one-to-one`: one run, a step ramp of rates, or the same workload over
//! MQTT (the gateway's MQTT listener or a broker such as mosquitto).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{finish, verdict, SecretArgs};
use crate::floor::{FLOOR_ROUND_TRIPS, FLOOR_SYNCS};
use crate::{fresh_user_base, latency_chart_svg, procfs, run, run_mqtt, MqttTarget, PairLoad};
use crate::{measure_floor, Floor, Latency, RawReport, Scenario};

#[derive(Args)]
pub(super) struct OneToOneArgs {
    #[command(flatten)]
    scenario: Scenario,
    #[command(flatten)]
    secret: SecretArgs,
    /// Run the workload over MQTT 3.1.1 QoS 1 at this address instead of
    /// the native protocol: the gateway's MQTT listener (`user/{id}`
    /// topics, tokens as passwords), or with `--mqtt-broker` any MQTT
    /// broker. Senders keep `--rate` on a timetable (or a closed loop at 0).
    #[arg(long)]
    mqtt: Option<SocketAddr>,
    /// `--mqtt` is a plain MQTT broker (e.g. mosquitto): no tokens, topics
    /// of this run's own.
    #[arg(long, requires = "mqtt")]
    mqtt_broker: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write an SVG chart of latency by percentile to this file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// A step ramp instead of one run: comma-separated rates per sender
    /// (open loop), each held for `--step-s` seconds, e.g. 250,500,1000.
    #[arg(long, value_delimiter = ',')]
    ramp: Vec<u32>,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 5)]
    step_s: u32,
    /// Measure the durable floor (`fdatasync` of a small append in this
    /// directory, e.g. the gateway's data dir, plus a loopback round trip)
    /// before the run, and read the run's latencies against it (issue #17
    /// goal 2). Printed to stderr with `--json`.
    #[arg(long)]
    floor_dir: Option<PathBuf>,
}

pub(super) fn run_one_to_one(args: OneToOneArgs) -> Result<ExitCode, String> {
    let OneToOneArgs {
        mut scenario,
        secret,
        mqtt,
        mqtt_broker,
        json,
        chart,
        ramp,
        step_s,
        floor_dir,
    } = args;
    let floor = match &floor_dir {
        Some(dir) => {
            let f = measure_floor(dir, FLOOR_SYNCS, FLOOR_ROUND_TRIPS)?;
            say(json, &f.to_text());
            Some(f)
        }
        None => None,
    };
    if let Some(addr) = mqtt {
        let target = if mqtt_broker {
            MqttTarget::Broker
        } else {
            MqttTarget::Surepush {
                secret: secret.load()?,
            }
        };
        return over_mqtt(&scenario, addr, &target, json, floor.as_ref());
    }
    scenario.secret = secret.load()?;
    if !ramp.is_empty() {
        return ramp_steps(&scenario, &ramp, step_s, json, floor.as_ref());
    }
    scenario.progress = !json;
    let report = run(&scenario)?;
    if let Some(f) = &floor {
        say(
            json,
            &against_floor(f, &report.ack_latency, &report.deliver_latency),
        );
    }
    if let Some(path) = chart {
        let title = format!(
            "one-to-one, {} pairs x {} msgs, QoS {}, {}",
            scenario.pairs,
            scenario.messages,
            scenario.qos as u8,
            if scenario.rate == 0 {
                "closed loop".to_string()
            } else {
                format!("{} msgs/s per sender", scenario.rate)
            }
        );
        let svg = latency_chart_svg(
            &title,
            &[
                ("send -> SENDACK", &report.ack_histogram),
                ("send -> deliver", &report.deliver_histogram),
            ],
        );
        std::fs::write(&path, svg).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    let qos = scenario.qos;
    Ok(finish(
        report,
        json,
        |r| r.to_text(),
        |r| r.passed(qos),
        "delivery guarantees violated",
    ))
}

/// A step ramp: one open-loop run per rate, fresh users each.
fn ramp_steps(
    base: &Scenario,
    ramp: &[u32],
    step_s: u32,
    json: bool,
    floor: Option<&Floor>,
) -> Result<ExitCode, String> {
    let mut steps = Vec::new();
    for &rate in ramp {
        let step = Scenario {
            messages: rate.saturating_mul(step_s).max(1),
            rate,
            first_user: fresh_user_base(),
            restart_cmd: None,
            ..base.clone()
        };
        let r = run(&step)?;
        if !json {
            println!(
                "{:>6} msgs/s per sender x {}: delivered {}/{}  deliver p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  CPU {}/msg  {}",
                rate,
                step.pairs,
                r.delivered,
                r.sent,
                r.deliver_latency.p50_ms,
                r.deliver_latency.p99_ms,
                r.deliver_latency.p999_ms,
                procfs::format_cpu(r.server_cpu_us_per_msg),
                if r.passed(step.qos) { "PASS" } else { "FAIL" }
            );
        }
        if let Some(f) = floor {
            say(
                json,
                &format!("  {}", against_floor(f, &r.ack_latency, &r.deliver_latency)),
            );
        }
        steps.push((rate, r));
    }
    let passed = steps.iter().all(|(_, r)| r.passed(base.qos));
    if json {
        let all: Vec<_> = steps
            .iter()
            .map(|(rate, r)| serde_json::json!({ "rate_per_sender": rate, "report": r }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("serialisable")
        );
    }
    Ok(verdict(passed, "delivery guarantees violated at a step"))
}

/// A line to stdout, or to stderr when stdout carries JSON.
fn say(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// A run's medians and tails read against the durable floor.
fn against_floor(f: &Floor, ack: &Latency, deliver: &Latency) -> String {
    format!(
        "against the durable floor: ack p50 {:.2}x its p50; deliver p99 {:.3} ms vs its p99 {:.3} ms ({:.2}x)",
        f.ratio(ack.p50_ms),
        deliver.p99_ms,
        f.p99_ms,
        deliver.p99_ms / f.p99_ms.max(f64::MIN_POSITIVE),
    )
}

/// The scenario's workload over MQTT QoS 1 (our codec), at its rate.
fn over_mqtt(
    s: &Scenario,
    addr: SocketAddr,
    target: &MqttTarget,
    json: bool,
    floor: Option<&Floor>,
) -> Result<ExitCode, String> {
    let load = PairLoad {
        pairs: s.pairs,
        messages: s.messages,
        payload: s.payload,
        rate: s.rate,
        run: s.first_user,
        server_pid: s
            .server_pid
            .or_else(|| procfs::listener_pid(addr.port()).ok()),
    };
    let report = run_mqtt(addr, target, &load)?;
    if let Some(f) = floor {
        say(
            json,
            &against_floor(f, &report.ack_latency, &report.deliver_latency),
        );
    }
    Ok(finish(
        report,
        json,
        RawReport::to_text,
        |r| r.passed(&load),
        "an acknowledged message was not delivered in order",
    ))
}
