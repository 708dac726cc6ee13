//! `one-to-one`: one run, a step ramp of rates, or the same workload over
//! MQTT (the gateway's MQTT listener or a broker such as mosquitto).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{finish, verdict, SecretArgs};
use crate::{fresh_user_base, latency_chart_svg, procfs, run, run_mqtt, MqttTarget, PairLoad};
use crate::{RawReport, Scenario};

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
    } = args;
    if let Some(addr) = mqtt {
        let target = if mqtt_broker {
            MqttTarget::Broker
        } else {
            MqttTarget::Surepush {
                secret: secret.load()?,
            }
        };
        return over_mqtt(&scenario, addr, &target, json);
    }
    scenario.secret = secret.load()?;
    if !ramp.is_empty() {
        return ramp_steps(&scenario, &ramp, step_s, json);
    }
    scenario.progress = !json;
    let report = run(&scenario)?;
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
fn ramp_steps(base: &Scenario, ramp: &[u32], step_s: u32, json: bool) -> Result<ExitCode, String> {
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

/// The scenario's workload over MQTT QoS 1 (our codec), at its rate.
fn over_mqtt(
    s: &Scenario,
    addr: SocketAddr,
    target: &MqttTarget,
    json: bool,
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
    Ok(finish(
        report,
        json,
        RawReport::to_text,
        |r| r.passed(&load),
        "an acknowledged message was not delivered in order",
    ))
}
