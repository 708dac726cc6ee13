//! `surepush-loadgen`: runs a scenario against a gateway and checks it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use surepush::proto::Qos;
use surepush_loadgen::{
    fresh_user_base, run, run_group, run_mqtt, run_raw, run_room, start_relay, GroupScenario,
    RoomScenario, Scenario,
};

#[derive(Parser)]
#[command(
    name = "surepush-loadgen",
    version,
    about = "Load generator and delivery checker for surepush"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N senders each send to their own receiver; checks loss, duplicates and order.
    OneToOne {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        server: SocketAddr,
        /// The gateway's data dir (for token.secret) ...
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// ... or the secret itself.
        #[arg(long, env = "SUREPUSH_SECRET")]
        secret: Option<String>,
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 4)]
        pairs: u32,
        /// Messages per sender.
        #[arg(long, default_value_t = 1000)]
        messages: u32,
        /// QoS 1 or 2.
        #[arg(long, default_value_t = 1)]
        qos: u8,
        /// Messages per second per sender; 0 = closed loop.
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Payload bytes (>= 16).
        #[arg(long, default_value_t = 256)]
        payload: usize,
        /// Seconds to wait for stragglers.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One publisher, many subscribers of one room; checks every subscriber
    /// got every message in order and reports room pushes per second.
    Room {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        server: SocketAddr,
        /// The gateway's data dir (for token.secret) ...
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// ... or the secret itself.
        #[arg(long, env = "SUREPUSH_SECRET")]
        secret: Option<String>,
        /// Subscriber connections (each needs a file descriptor here and
        /// one in the gateway).
        #[arg(long, default_value_t = 1000)]
        subscribers: u32,
        /// Messages published.
        #[arg(long, default_value_t = 1000)]
        messages: u32,
        /// Subscription QoS: 0, or 1 (ROOMACK every 32 messages).
        #[arg(long, default_value_t = 0)]
        sub_qos: u8,
        /// Payload bytes (>= 16).
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Subscriber threads (one epoll loop each).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The same closed-loop one-to-one workload through a minimal relay (no
    /// durability, the machine's limit) and through surepush at QoS 1;
    /// prints both and the ratio.
    Compare {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        server: SocketAddr,
        /// The gateway's data dir (for token.secret).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 8)]
        pairs: u32,
        /// Messages per sender.
        #[arg(long, default_value_t = 2000)]
        messages: u32,
        /// Payload bytes (>= 16).
        #[arg(long, default_value_t = 256)]
        payload: usize,
        /// Also run the workload against this MQTT 3.1.1 broker (QoS 1,
        /// persistent sessions), e.g. a local mosquitto.
        #[arg(long)]
        mqtt: Option<SocketAddr>,
    },
    /// One publisher sends to a group; every member (an SDK session driven
    /// from an epoll loop) must get every message once, in order.
    Group {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        server: SocketAddr,
        /// Admin HTTP address (the group is created there).
        #[arg(long, default_value = "127.0.0.1:7401")]
        admin: SocketAddr,
        /// The gateway's data dir (token.secret and admin.token).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Group members.
        #[arg(long, default_value_t = 10)]
        members: u32,
        /// Messages published.
        #[arg(long, default_value_t = 1000)]
        messages: u32,
        /// Payload bytes (>= 16).
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Member threads (one epoll loop each).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn compare(cli: Command) -> ExitCode {
    let Command::Compare {
        server,
        data_dir,
        pairs,
        messages,
        payload,
        mqtt,
    } = cli
    else {
        unreachable!("called for compare")
    };
    let secret = match load_secret(None, &data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("surepush-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let raw = match start_relay().and_then(|relay| {
        let r = run_raw(relay.addr, pairs, messages, payload);
        drop(relay);
        r
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("surepush-loadgen: raw relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scenario = Scenario {
        server,
        secret,
        pairs,
        messages,
        qos: Qos::AtLeastOnce,
        rate: 0,
        payload,
        timeout: Duration::from_secs(60),
        first_user: fresh_user_base(),
    };
    let ours = match run(&scenario) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("surepush-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "one-to-one, {pairs} pairs x {messages} messages of {payload} B, closed loop, same run:"
    );
    println!(
        "  raw relay (no durability):    {:>9.0} msgs/s  ack p50 {:.3} ms  deliver p50 {:.3} ms",
        raw.acked_per_sec, raw.ack_latency.p50_ms, raw.deliver_latency.p50_ms
    );
    println!(
        "  surepush QoS 1 (durable):     {:>9.0} msgs/s  ack p50 {:.3} ms  deliver p50 {:.3} ms",
        ours.acked_per_sec, ours.ack_latency.p50_ms, ours.deliver_latency.p50_ms
    );
    println!(
        "  surepush / raw:               {:>9.2}",
        ours.acked_per_sec / raw.acked_per_sec.max(1.0)
    );
    if let Some(broker) = mqtt {
        match run_mqtt(broker, pairs, messages, payload, fresh_user_base()) {
            Ok(m) => {
                println!(
                    "  MQTT broker at {broker} QoS 1: {:>9.0} msgs/s  ack p50 {:.3} ms  deliver p50 {:.3} ms  (delivered {} of {})",
                    m.acked_per_sec, m.ack_latency.p50_ms, m.deliver_latency.p50_ms, m.delivered, m.acked
                );
                println!(
                    "  surepush / MQTT broker:       {:>9.2}",
                    ours.acked_per_sec / m.acked_per_sec.max(1.0)
                );
            }
            Err(e) => eprintln!("surepush-loadgen: MQTT broker {broker}: {e}"),
        }
    }
    if ours.passed(Qos::AtLeastOnce) && raw.delivered == raw.acked {
        ExitCode::SUCCESS
    } else {
        eprintln!("surepush-loadgen: FAILED: a delivery check failed");
        ExitCode::FAILURE
    }
}

fn group(cli: Command) -> ExitCode {
    let Command::Group {
        server,
        admin,
        data_dir,
        members,
        messages,
        payload,
        threads,
        timeout_s,
        json,
    } = cli
    else {
        unreachable!("called for the group scenario")
    };
    let read = |name: &str| {
        std::fs::read_to_string(data_dir.join(name))
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {}/{name}: {e}", data_dir.display()))
    };
    let (secret, admin_token) = match (read("token.secret"), read("admin.token")) {
        (Ok(s), Ok(a)) => (s.into_bytes(), a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("surepush-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scenario = GroupScenario {
        server,
        admin,
        admin_token,
        secret,
        members,
        messages,
        payload,
        threads,
        timeout: Duration::from_secs(timeout_s),
        first_user: fresh_user_base(),
    };
    finish(
        run_group(&scenario),
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "group delivery incomplete or out of order",
    )
}

/// Prints a report (JSON or a table) and turns its verdict into the exit code.
fn finish<R: serde::Serialize>(
    result: Result<R, String>,
    json: bool,
    text: impl Fn(&R) -> String,
    passed: impl Fn(&R) -> bool,
    failure: &str,
) -> ExitCode {
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serialisable")
                );
            } else {
                print!("{}", text(&report));
            }
            if passed(&report) {
                ExitCode::SUCCESS
            } else {
                eprintln!("surepush-loadgen: FAILED: {failure}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("surepush-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_secret(secret: Option<String>, data_dir: &std::path::Path) -> Result<Vec<u8>, String> {
    match secret {
        Some(s) => Ok(s.into_bytes()),
        None => std::fs::read_to_string(data_dir.join("token.secret"))
            .map(|s| s.trim().as_bytes().to_vec())
            .map_err(|e| {
                format!(
                    "no --secret and cannot read {}/token.secret: {e}",
                    data_dir.display()
                )
            }),
    }
}

fn room(cli: Command) -> ExitCode {
    let Command::Room {
        server,
        data_dir,
        secret,
        subscribers,
        messages,
        sub_qos,
        payload,
        threads,
        timeout_s,
        json,
    } = cli
    else {
        unreachable!("called for the room scenario")
    };
    let secret = match load_secret(secret, &data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("surepush-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(sub_qos) = Qos::from_u8(sub_qos).filter(|q| *q != Qos::ExactlyOnce) else {
        eprintln!("surepush-loadgen: --sub-qos must be 0 or 1");
        return ExitCode::FAILURE;
    };
    let scenario = RoomScenario {
        server,
        secret,
        subscribers,
        messages,
        payload,
        sub_qos,
        threads,
        timeout: Duration::from_secs(timeout_s),
        first_user: fresh_user_base(),
    };
    finish(
        run_room(&scenario),
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "room delivery incomplete or out of order",
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse().scenario;
    match cli {
        Command::Room { .. } => return room(cli),
        Command::Group { .. } => return group(cli),
        Command::Compare { .. } => return compare(cli),
        Command::OneToOne { .. } => {}
    }
    let Command::OneToOne {
        server,
        data_dir,
        secret,
        pairs,
        messages,
        qos,
        rate,
        payload,
        timeout_s,
        json,
    } = cli
    else {
        unreachable!("the other scenarios returned above")
    };
    let secret = match load_secret(secret, &data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("surepush-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(qos) = Qos::from_u8(qos).filter(|q| *q != Qos::AtMostOnce) else {
        eprintln!("surepush-loadgen: --qos must be 1 or 2");
        return ExitCode::FAILURE;
    };
    let scenario = Scenario {
        server,
        secret,
        pairs,
        messages,
        qos,
        rate,
        payload,
        timeout: Duration::from_secs(timeout_s),
        first_user: fresh_user_base(),
    };
    finish(
        run(&scenario),
        json,
        |r| r.to_text(),
        |r| r.passed(qos),
        "delivery guarantees violated",
    )
}
