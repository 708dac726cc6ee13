//! `surepush-loadgen`: runs a scenario against a gateway and checks it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use surepush_loadgen::{
    fresh_user_base, latency_chart_svg, procfs, run, run_backlog, run_group, run_idle,
    run_jetstream, run_mqtt, run_raw, run_room, run_room_with_frozen, run_storm, start_relay,
    BacklogScenario, DropMode, GroupScenario, IdleScenario, MqttTarget, RoomScenario, Scenario,
    StormScenario,
};
use surepush_proto::Qos;

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
    OneToOne(OneToOneArgs),
    /// One publisher, many subscribers of one room; checks every subscriber
    /// got every message in order and reports room pushes per second.
    Room(RoomArgs),
    /// The same closed-loop one-to-one workload through a minimal relay (no
    /// durability, the machine's limit) and through surepush at QoS 1;
    /// prints both and the ratio.
    Compare(CompareArgs),
    /// One publisher sends to a group; every member (an SDK session driven
    /// from an epoll loop) must get every message once, in order.
    Group(GroupArgs),
    /// Receivers get messages while offline, then all connect at once and
    /// replay them in SYNC pages; checks every message once, in order.
    Backlog(BacklogArgs),
    /// Clients drop their connections at once and reconnect, round after
    /// round, while messages are sent to them; checks nothing is lost or
    /// duplicated.
    Storm(StormArgs),
    /// Holds idle authenticated connections and reports the gateway's
    /// memory per connection.
    Idle(IdleArgs),
    /// One-to-one (open loop), a room and a group at the same time, each
    /// with its own checker.
    Mixed(MixedArgs),
}

#[derive(Args)]
struct MixedArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// Admin HTTP address (the group is created there).
    #[arg(long, default_value = "127.0.0.1:7401")]
    admin: SocketAddr,
    /// The gateway's data dir (token.secret and admin.token).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// One-to-one sender/receiver pairs.
    #[arg(long, default_value_t = 8)]
    pairs: u32,
    /// Messages per one-to-one sender, and published to the room and to the group.
    #[arg(long, default_value_t = 2000)]
    messages: u32,
    /// One-to-one messages per second per sender.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Room subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: u32,
    /// Group members.
    #[arg(long, default_value_t = 50)]
    members: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct OneToOneArgs {
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
    /// QoS 0, 1 or 2 (QoS 0: no SENDACK; losses are counted, not failed).
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
    /// Also write an SVG chart of latency by percentile to this file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Fault: when half the messages are acknowledged, run this shell
    /// command (e.g. kill the gateway with SIGKILL and start it again);
    /// clients reconnect and resume, and the checker still applies.
    #[arg(long)]
    restart_cmd: Option<String>,
    /// Fault: receivers pause this long after every event, so their ACKs
    /// are late (past the gateway's ack timeout it retransmits).
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
    /// A step ramp instead of one run: comma-separated rates per sender
    /// (open loop), each held for `--step-s` seconds, e.g. 250,500,1000.
    #[arg(long, value_delimiter = ',')]
    ramp: Vec<u32>,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 5)]
    step_s: u32,
}

#[derive(Args)]
struct RoomArgs {
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
    /// Share of the subscribers (0..1; any share above 0 is at least one)
    /// that stop reading after their SUBACK, like a stopped process. Runs
    /// the room three times (without, with, without; rooms 1, 2, 3) and
    /// reports the throughput with them over the mean without.
    #[arg(long, default_value_t = 0.0)]
    freeze_share: f64,
    /// Subscribe over MQTT 3.1.1 at this address (the gateway's MQTT
    /// listener, same node as `--server`) instead of the native protocol;
    /// the publisher stays native.
    #[arg(long)]
    mqtt: Option<SocketAddr>,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompareArgs {
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
    /// Also run the workload against an MQTT 3.1.1 broker (QoS 1,
    /// persistent sessions): `NAME=ADDR` or just `ADDR`, repeatable, e.g.
    /// `--mqtt mosquitto=127.0.0.1:1884 --mqtt nats=127.0.0.1:1885`.
    #[arg(long, value_parser = parse_broker)]
    mqtt: Vec<(String, SocketAddr)>,
    /// Also run it over MQTT against the gateway's own MQTT listener
    /// (same node as `--server`), e.g. 127.0.0.1:1883.
    #[arg(long)]
    surepush_mqtt: Option<SocketAddr>,
    /// Also run it against a NATS server with JetStream, in its own
    /// protocol: a file-storage stream, a durable push consumer with
    /// explicit acks per receiver, PubAcks as acknowledgements, e.g.
    /// 127.0.0.1:4222.
    #[arg(long)]
    jetstream: Option<SocketAddr>,
}

#[derive(Args)]
struct GroupArgs {
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
}

#[derive(Args)]
struct BacklogArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// The gateway's data dir (for token.secret) ...
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// ... or the secret itself.
    #[arg(long, env = "SUREPUSH_SECRET")]
    secret: Option<String>,
    /// Offline receivers (each one connection when replaying).
    #[arg(long, default_value_t = 1000)]
    receivers: u32,
    /// Messages stored for each receiver while it is offline.
    #[arg(long, default_value_t = 100)]
    messages: u32,
    /// Sender connections (pipelined QoS 1). Each sender's SENDs and the
    /// ACKs of its own echoes count against the gateway's
    /// `max_frames_per_sec` (10,000 by default): with 8 senders at about
    /// 75,000 msgs/s one was cut off (RateLimited), hence 32.
    #[arg(long, default_value_t = 32)]
    senders: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// SYNC page size the receivers ask for (the gateway caps it).
    #[arg(long, default_value_t = 200)]
    page: u32,
    /// Receiver threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds before giving up (each phase).
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StormArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// The gateway's data dir (for token.secret) ...
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// ... or the secret itself.
    #[arg(long, env = "SUREPUSH_SECRET")]
    secret: Option<String>,
    /// Client connections.
    #[arg(long, default_value_t = 1000)]
    clients: u32,
    /// Rounds of drop-and-reconnect (one message to every client each).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Share of the clients dropped each round, chosen at random.
    #[arg(long, default_value_t = 1.0)]
    drop_rate: f64,
    /// How connections are dropped: reset (RST), close (FIN) or silent
    /// (left open and unread until the device's new connection replaces it).
    #[arg(long, default_value = "reset", value_parser = parse_drop_mode)]
    drop_mode: DropMode,
    /// Sender connections (pipelined QoS 1).
    #[arg(long, default_value_t = 4)]
    senders: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Client threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the random choice of dropped clients.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds before giving up (whole run).
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct IdleArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// The gateway's data dir (for token.secret) ...
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// ... or the secret itself.
    #[arg(long, env = "SUREPUSH_SECRET")]
    secret: Option<String>,
    /// Idle connections to hold (each one open file here and one in the
    /// gateway; the limit is per process, see `ulimit -n`).
    #[arg(long, default_value_t = 1000)]
    connections: u32,
    /// The gateway's pid (its RSS is sampled); default: the process
    /// listening on the `--server` port, found through /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to hold them once all are live.
    #[arg(long, default_value_t = 10)]
    hold_s: u64,
    /// Handshakes in flight at once (keeps the accept queues from overflowing).
    #[arg(long, default_value_t = 512)]
    connecting: usize,
    /// Client threads (one epoll loop each).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds to get every connection live before giving up.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_drop_mode(s: &str) -> Result<DropMode, String> {
    match s {
        "reset" => Ok(DropMode::Reset),
        "close" => Ok(DropMode::Close),
        "silent" => Ok(DropMode::Silent),
        _ => Err("expected reset, close or silent".into()),
    }
}

/// `NAME=ADDR` or `ADDR` (named "MQTT broker").
fn parse_broker(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s.split_once('=').unwrap_or(("MQTT broker", s));
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok((name.to_string(), addr))
}

fn compare(args: CompareArgs) -> Result<ExitCode, String> {
    let CompareArgs {
        server,
        data_dir,
        pairs,
        messages,
        payload,
        mqtt,
        surepush_mqtt,
        jetstream,
    } = args;
    let secret = load_secret(None, &data_dir)?;
    let mqtt_target = MqttTarget::Surepush {
        secret: secret.clone(),
    };
    let raw = start_relay()
        .and_then(|relay| run_raw(relay.addr, pairs, messages, payload))
        .map_err(|e| format!("raw relay: {e}"))?;
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
        progress: false,
        restart_cmd: None,
        ack_delay: Duration::ZERO,
    };
    let ours = run(&scenario)?;
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
    let report = |label: &str, addr: SocketAddr, r: Result<surepush_loadgen::RawReport, String>| {
        match &r {
            Ok(m) => println!(
                "  {label:<29} {:>9.0} msgs/s  ack p50 {:.3} ms  deliver p50 {:.3} ms  (delivered {} of {})",
                m.acked_per_sec, m.ack_latency.p50_ms, m.deliver_latency.p50_ms, m.delivered, m.acked
            ),
            Err(e) => eprintln!("surepush-loadgen: {label} {addr}: {e}"),
        }
        r.ok()
    };
    let run_over_mqtt = |label: &str, addr: SocketAddr, target: &MqttTarget| {
        let r = run_mqtt(addr, target, pairs, messages, payload, fresh_user_base());
        report(label, addr, r)
    };
    let ours_mqtt = surepush_mqtt
        .and_then(|addr| run_over_mqtt("surepush over MQTT QoS 1:", addr, &mqtt_target));
    let mut brokers: Vec<(String, surepush_loadgen::RawReport)> = mqtt
        .iter()
        .filter_map(|(name, addr)| {
            let label = format!("{name} (MQTT) QoS 1:");
            run_over_mqtt(&label, *addr, &MqttTarget::Broker).map(|r| (name.clone(), r))
        })
        .collect();
    brokers.extend(jetstream.and_then(|addr| {
        let r = run_jetstream(addr, pairs, messages, payload, fresh_user_base());
        report("JetStream (NATS, file):", addr, r).map(|r| ("JetStream".to_string(), r))
    }));
    let ratio = |label: &str, a: f64, b: f64| println!("  {label:<29} {:>9.2}", a / b.max(1.0));
    if let Some(m) = &ours_mqtt {
        ratio(
            "surepush MQTT / native:",
            m.acked_per_sec,
            ours.acked_per_sec,
        );
    }
    for (name, b) in &brokers {
        ratio(
            &format!("surepush / {name}:"),
            ours.acked_per_sec,
            b.acked_per_sec,
        );
        if let Some(m) = &ours_mqtt {
            let label = format!("surepush MQTT / {name}:");
            ratio(&label, m.acked_per_sec, b.acked_per_sec);
        }
    }
    let mqtt_ok = ours_mqtt.as_ref().is_none_or(|m| m.delivered == m.acked)
        && surepush_mqtt.is_none() == ours_mqtt.is_none();
    Ok(verdict(
        ours.passed(Qos::AtLeastOnce) && raw.delivered == raw.acked && mqtt_ok,
        "a delivery check failed",
    ))
}

/// Reads `<data_dir>/<name>`, trimmed.
fn read_data_file(data_dir: &std::path::Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(data_dir.join(name))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}/{name}: {e}", data_dir.display()))
}

fn mixed(args: MixedArgs) -> Result<ExitCode, String> {
    let MixedArgs {
        server,
        admin,
        data_dir,
        pairs,
        messages,
        rate,
        subscribers,
        members,
        payload,
        timeout_s,
        json,
    } = args;
    let secret = read_data_file(&data_dir, "token.secret")?.into_bytes();
    let admin_token = read_data_file(&data_dir, "admin.token")?;
    let timeout = Duration::from_secs(timeout_s);
    let base = fresh_user_base();
    let one = Scenario {
        server,
        secret: secret.clone(),
        pairs,
        messages,
        qos: Qos::AtLeastOnce,
        rate,
        payload,
        timeout,
        first_user: base,
        progress: false,
        restart_cmd: None,
        ack_delay: Duration::ZERO,
    };
    let room = RoomScenario {
        server,
        secret: secret.clone(),
        subscribers,
        messages,
        payload,
        sub_qos: Qos::AtLeastOnce,
        threads: 1,
        timeout,
        first_user: base + 1_000_000,
        frozen: 0,
        mqtt: None,
    };
    let group = GroupScenario {
        server,
        admin,
        admin_token,
        secret,
        members,
        messages,
        payload,
        threads: 1,
        timeout,
        first_user: base + 2_000_000,
    };
    let (one, room, group) = std::thread::scope(|s| {
        let one = s.spawn(|| run(&one));
        let room = s.spawn(|| run_room(&room));
        let group = s.spawn(|| run_group(&group));
        let panicked = "a scenario thread panicked".to_string();
        (
            one.join().unwrap_or_else(|_| Err(panicked.clone())),
            room.join().unwrap_or_else(|_| Err(panicked.clone())),
            group.join().unwrap_or(Err(panicked)),
        )
    });
    let (one, room, group) = (one?, room?, group?);
    let passed = one.passed(Qos::AtLeastOnce) && room.passed() && group.passed();
    if json {
        let all = serde_json::json!({ "one_to_one": one, "room": room, "group": group });
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("serialisable")
        );
    } else {
        print!(
            "one-to-one ({pairs} pairs at {rate} msgs/s each):\n{}\nroom:\n{}\ngroup:\n{}",
            one.to_text(),
            room.to_text(),
            group.to_text()
        );
    }
    Ok(verdict(passed, "a scenario's checker failed"))
}

fn group(args: GroupArgs) -> Result<ExitCode, String> {
    let GroupArgs {
        server,
        admin,
        data_dir,
        members,
        messages,
        payload,
        threads,
        timeout_s,
        json,
    } = args;
    let secret = read_data_file(&data_dir, "token.secret")?.into_bytes();
    let admin_token = read_data_file(&data_dir, "admin.token")?;
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
    Ok(finish(
        run_group(&scenario)?,
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "group delivery incomplete or out of order",
    ))
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

fn room(args: RoomArgs) -> Result<ExitCode, String> {
    let RoomArgs {
        server,
        data_dir,
        secret,
        subscribers,
        messages,
        sub_qos,
        payload,
        threads,
        freeze_share,
        mqtt,
        timeout_s,
        json,
    } = args;
    if !(0.0..=1.0).contains(&freeze_share) {
        return Err("--freeze-share must be between 0 and 1".into());
    }
    let secret = load_secret(secret, &data_dir)?;
    let sub_qos = Qos::from_u8(sub_qos)
        .filter(|q| *q != Qos::ExactlyOnce)
        .ok_or("--sub-qos must be 0 or 1")?;
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
        frozen: (f64::from(subscribers) * freeze_share).ceil() as u32,
        mqtt,
    };
    if scenario.frozen > 0 {
        return Ok(finish(
            run_room_with_frozen(&scenario)?,
            json,
            |r| r.to_text(),
            |r| r.passed(),
            "room delivery to the reading subscribers incomplete or out of order",
        ));
    }
    Ok(finish(
        run_room(&scenario)?,
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "room delivery incomplete or out of order",
    ))
}

fn main() -> ExitCode {
    let result = match Cli::parse().scenario {
        Command::OneToOne(args) => one_to_one(args),
        Command::Room(args) => room(args),
        Command::Group(args) => group(args),
        Command::Compare(args) => compare(args),
        Command::Backlog(args) => backlog(args),
        Command::Storm(args) => storm(args),
        Command::Idle(args) => idle(args),
        Command::Mixed(args) => mixed(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("surepush-loadgen: {e}");
        ExitCode::FAILURE
    })
}

fn one_to_one(args: OneToOneArgs) -> Result<ExitCode, String> {
    let OneToOneArgs {
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
        chart,
        restart_cmd,
        ack_delay_ms,
        ramp,
        step_s,
    } = args;
    let secret = load_secret(secret, &data_dir)?;
    let qos = Qos::from_u8(qos).ok_or("--qos must be 0, 1 or 2")?;
    if !ramp.is_empty() {
        // A step ramp: one open-loop run per rate, fresh users each.
        let mut steps = Vec::new();
        for &rate in &ramp {
            let step = Scenario {
                server,
                secret: secret.clone(),
                pairs,
                messages: rate.saturating_mul(step_s).max(1),
                qos,
                rate,
                payload,
                timeout: Duration::from_secs(timeout_s),
                first_user: fresh_user_base(),
                progress: false,
                restart_cmd: None,
                ack_delay: Duration::from_millis(ack_delay_ms),
            };
            let r = run(&step)?;
            if !json {
                println!(
                    "{:>6} msgs/s per sender x {pairs}: delivered {}/{}  deliver p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {}",
                    rate,
                    r.delivered,
                    r.sent,
                    r.deliver_latency.p50_ms,
                    r.deliver_latency.p99_ms,
                    r.deliver_latency.p999_ms,
                    if r.passed(qos) { "PASS" } else { "FAIL" }
                );
            }
            steps.push((rate, r));
        }
        let passed = steps.iter().all(|(_, r)| r.passed(qos));
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
        return Ok(verdict(passed, "delivery guarantees violated at a step"));
    }
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
        progress: !json,
        restart_cmd,
        ack_delay: Duration::from_millis(ack_delay_ms),
    };
    let report = run(&scenario)?;
    if let Some(path) = chart {
        let title = format!(
            "one-to-one, {pairs} pairs x {messages} msgs, QoS {}, {}",
            qos as u8,
            if rate == 0 {
                "closed loop".to_string()
            } else {
                format!("{rate} msgs/s per sender")
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
    Ok(finish(
        report,
        json,
        |r| r.to_text(),
        |r| r.passed(qos),
        "delivery guarantees violated",
    ))
}

fn backlog(args: BacklogArgs) -> Result<ExitCode, String> {
    let BacklogArgs {
        server,
        data_dir,
        secret,
        receivers,
        messages,
        senders,
        payload,
        page,
        threads,
        timeout_s,
        json,
    } = args;
    let scenario = BacklogScenario {
        server,
        secret: load_secret(secret, &data_dir)?,
        receivers,
        messages,
        senders,
        payload,
        page,
        threads,
        timeout: Duration::from_secs(timeout_s),
        first_user: fresh_user_base(),
    };
    Ok(finish(
        run_backlog(&scenario)?,
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "backlog replay incomplete, repeated or out of order",
    ))
}

fn storm(args: StormArgs) -> Result<ExitCode, String> {
    let StormArgs {
        server,
        data_dir,
        secret,
        clients,
        rounds,
        drop_rate,
        drop_mode,
        senders,
        payload,
        threads,
        seed,
        timeout_s,
        json,
    } = args;
    let scenario = StormScenario {
        server,
        secret: load_secret(secret, &data_dir)?,
        clients,
        rounds,
        drop_rate,
        drop_mode,
        senders,
        payload,
        threads,
        timeout: Duration::from_secs(timeout_s),
        seed,
        first_user: fresh_user_base(),
    };
    Ok(finish(
        run_storm(&scenario)?,
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "a message was lost, repeated or reordered across the drops, or a round did not finish",
    ))
}

fn idle(args: IdleArgs) -> Result<ExitCode, String> {
    let IdleArgs {
        server,
        data_dir,
        secret,
        connections,
        server_pid,
        hold_s,
        connecting,
        threads,
        timeout_s,
        json,
    } = args;
    let server_pid = match server_pid {
        Some(pid) => pid,
        None => procfs::listener_pid(server.port())?,
    };
    let scenario = IdleScenario {
        server,
        secret: load_secret(secret, &data_dir)?,
        connections,
        server_pid,
        hold: Duration::from_secs(hold_s),
        threads,
        connecting,
        timeout: Duration::from_secs(timeout_s),
        first_user: fresh_user_base(),
    };
    Ok(finish(
        run_idle(&scenario)?,
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "not every connection went live, or the gateway closed some",
    ))
}
