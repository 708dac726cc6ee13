//! The `surepush-loadgen` command line: one subcommand per scenario. Each
//! scenario's options are its config struct itself (`#[command(flatten)]`),
//! so nothing is copied field by field between parsed arguments and what
//! runs; a command adds only what is not a scenario option (where the
//! secret comes from, JSON output, a chart).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use surepush_proto::Qos;

mod cluster;
mod compare;
mod mixed;
mod mqtt_backlog;
mod one_to_one;
mod scenarios;

/// The command line.
#[derive(Parser)]
#[command(
    name = "surepush-loadgen",
    version,
    about = "Load generator and delivery checker for surepush"
)]
pub struct Cli {
    #[command(subcommand)]
    scenario: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N senders each send to their own receiver; checks loss, duplicates and order.
    OneToOne(one_to_one::OneToOneArgs),
    /// One publisher, many subscribers of one room; checks every subscriber
    /// got every message in order and reports room pushes per second.
    Room(scenarios::RoomArgs),
    /// The same closed-loop one-to-one workload through a minimal relay (no
    /// durability, the machine's limit), surepush at QoS 1 and every peer
    /// asked for (MQTT brokers, JetStream); prints each and the ratios.
    Compare(compare::CompareArgs),
    /// One publisher sends to a group; every member (an SDK session driven
    /// from an epoll loop) must get every message once, in order.
    Group(scenarios::GroupArgs),
    /// Receivers get messages while offline, then all connect at once and
    /// replay them in SYNC pages; checks every message once, in order.
    Backlog(scenarios::BacklogArgs),
    /// MQTT persistent sessions (surepush or a broker, same client code)
    /// get messages while offline, then all reconnect at once and drain;
    /// reports the aggregate drain rate and the server's CPU per message.
    MqttBacklog(mqtt_backlog::MqttBacklogArgs),
    /// Clients drop their connections at once and reconnect, round after
    /// round, while messages are sent to them; checks nothing is lost or
    /// duplicated.
    Storm(scenarios::StormArgs),
    /// Holds idle authenticated connections and reports the gateway's
    /// memory per connection.
    Idle(scenarios::IdleArgs),
    /// One-to-one (open loop), a room and a group at the same time, each
    /// with its own checker.
    Mixed(mixed::MixedArgs),
    /// A running cluster (`--servers`): the one-to-one workload on pairs
    /// whose users live on one node, then on pairs across nodes; prints
    /// each class and what a cross-node message costs over a local one.
    Cluster(cluster::ClusterArgs),
}

impl Cli {
    /// Runs the scenario asked for; the exit code is its checker's verdict.
    pub fn run(self) -> ExitCode {
        let result = match self.scenario {
            Command::OneToOne(args) => one_to_one::run_one_to_one(args),
            Command::Room(args) => scenarios::room(args),
            Command::Group(args) => scenarios::group(args),
            Command::Compare(args) => compare::run(args),
            Command::Backlog(args) => scenarios::backlog(args),
            Command::MqttBacklog(args) => mqtt_backlog::run(args),
            Command::Storm(args) => scenarios::storm(args),
            Command::Idle(args) => scenarios::idle(args),
            Command::Mixed(args) => mixed::run_mixed(args),
            Command::Cluster(args) => cluster::run(args),
        };
        result.unwrap_or_else(|e| {
            eprintln!("surepush-loadgen: {e}");
            ExitCode::FAILURE
        })
    }
}

/// Where the gateway's token secret comes from.
#[derive(Args, Clone, Debug)]
pub struct SecretArgs {
    /// The gateway's data dir (for token.secret) ...
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// ... or the secret itself.
    #[arg(long, env = "SUREPUSH_SECRET")]
    secret: Option<String>,
}

impl SecretArgs {
    /// The secret given, else `<data_dir>/token.secret`.
    fn load(&self) -> Result<Vec<u8>, String> {
        match &self.secret {
            Some(s) => Ok(s.clone().into_bytes()),
            None => read_data_file(&self.data_dir, "token.secret")
                .map(String::into_bytes)
                .map_err(|e| format!("no --secret and {e}")),
        }
    }
}

/// Reads `<data_dir>/<name>`, trimmed.
fn read_data_file(data_dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(data_dir.join(name))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}/{name}: {e}", data_dir.display()))
}

/// Prints a report (JSON or a table) and turns its verdict into the exit code.
fn finish<R: serde::Serialize>(
    report: R,
    json: bool,
    text: impl Fn(&R) -> String,
    passed: impl Fn(&R) -> bool,
    failure: &str,
) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        print!("{}", text(&report));
    }
    verdict(passed(&report), failure)
}

/// The exit code of a run whose checks `passed` (or not, saying `failure`).
fn verdict(passed: bool, failure: &str) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("surepush-loadgen: FAILED: {failure}");
        ExitCode::FAILURE
    }
}

/// `--timeout-s 30`: whole seconds.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s}: {e}"))
}

/// `--ack-delay-ms 5`: whole milliseconds.
pub fn parse_millis(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{s}: {e}"))
}

/// `--qos 0`, `1` or `2`.
pub fn parse_qos(s: &str) -> Result<Qos, String> {
    s.parse()
        .ok()
        .and_then(Qos::from_u8)
        .ok_or_else(|| "expected 0, 1 or 2".into())
}

/// `--sub-qos 0` or `1` (rooms have no QoS 2).
pub fn parse_sub_qos(s: &str) -> Result<Qos, String> {
    match parse_qos(s)? {
        Qos::ExactlyOnce => Err("expected 0 or 1".into()),
        q => Ok(q),
    }
}

/// `NAME=ADDR` or `ADDR` (named "MQTT broker").
pub fn parse_broker(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s.split_once('=').unwrap_or(("MQTT broker", s));
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok((name.to_string(), addr))
}
