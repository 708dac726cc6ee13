//! The `surepush` binary: the gateway (`serve`), a host checker
//! (`check-host`), offline log tools (`log verify`, `log salvage`), the
//! default configuration (`config defaults`), the cluster's state in NATS
//! (`cluster init`, `cluster status`), and a small example client (`token`,
//! `send`, `recv`).
//!
//! Settings come from the defaults, the `--config` TOML file, `SUREPUSH_*`
//! environment variables and the flags, each overriding the ones before
//! (`surepush::server::ConfigSources`).

#[cfg(feature = "cluster")]
mod cluster_cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};

use surepush::client::{BlockingClient, ClientConfig, Event};
use surepush::core::{Acl, Claims, TokenVerifier};
use surepush::proto::{DeviceId, Qos, Seq, UserId};
use surepush::server::config::{annotated, LogFormat, LoggingSettings};
use surepush::server::{logging, Config, ConfigSources};

// mimalloc: thread-per-core shards allocate and free on their own thread;
// mimalloc's per-thread heaps keep that free of cross-core contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "surepush",
    version,
    about = "Thread-per-core push gateway with durable, acknowledged delivery"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (defaults: 127.0.0.1:7400 for clients, 127.0.0.1:7401
    /// for admin HTTP, ./data for logs and secrets, one shard per core).
    Serve(ServeArgs),
    /// Offline log tools; run them with the gateway stopped.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// The configuration file's settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The cluster's state in NATS JetStream KV (docs/CLUSTER.md).
    #[cfg(feature = "cluster")]
    Cluster {
        #[command(subcommand)]
        command: cluster_cli::ClusterCommand,
    },
    /// Report the host limits that cap connections and throughput.
    CheckHost {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mint a client token with the node's secret (read from the data dir).
    Token {
        #[command(flatten)]
        node: NodeArgs,
        /// User id.
        #[arg(long)]
        user: u64,
        /// Device id.
        #[arg(long, default_value_t = 1)]
        device: u64,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_s: u64,
        /// Grant subscribing to resources matching this filter (the `acl`
        /// claim's `sub` list, e.g. `room/+`); repeatable.
        #[arg(long = "sub", value_name = "FILTER")]
        subscribe: Vec<String>,
        /// Grant publishing to resources matching this filter (`acl.pub`,
        /// e.g. `room/42`); repeatable.
        #[arg(long = "pub", value_name = "FILTER")]
        publish: Vec<String>,
    },
    /// Example client: send one message and wait for its SENDACK.
    Send {
        #[command(flatten)]
        client: ClientArgs,
        /// Addressee user id.
        #[arg(long)]
        to: u64,
        /// QoS 0, 1 or 2.
        #[arg(long, default_value_t = 1)]
        qos: u8,
        /// Message text.
        message: String,
    },
    /// Example client: print messages as they arrive (replaying what is stored).
    Recv {
        #[command(flatten)]
        client: ClientArgs,
        /// Exit after this many messages (0 = run until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Resume after this sequence (default: the newest messages).
        #[arg(long)]
        after: Option<u64>,
        /// Give up after this many seconds without a message (0 = never).
        #[arg(long, default_value_t = 0)]
        timeout_s: u64,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Check every segment, sidecar, checkpoint and pointer of every shard,
    /// read-only; exits non-zero if durable records are damaged.
    Verify(NodeArgs),
    /// Open every shard's log in salvage mode: keep every valid record,
    /// move damaged bytes aside (`<segment>.damaged-<offset>`) and report
    /// which inbox sequences were lost (they are never numbered again).
    Salvage(NodeArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting with its default and its description, as TOML.
    Defaults,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (see README); flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Client listener address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin HTTP listener address (keep it private).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Data directory (logs, generated secrets).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shards (threads); 0 = one per core.
    #[arg(long)]
    shards: Option<u16>,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, value_parser = clap::value_parser!(LogFormat))]
    log_format: Option<LogFormat>,
}

#[derive(Args)]
struct NodeArgs {
    /// TOML config file of the node (for its data dir and secret).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory of the node (holds token.secret).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// Act as this user (a token is minted from the node's secret).
    #[arg(long)]
    user: u64,
    /// Act as this device.
    #[arg(long, default_value_t = 1)]
    device: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets logging up from its configuration; the tools log text.
    if !matches!(cli.command, Command::Serve(_)) {
        if let Err(e) = logging::init(&LoggingSettings::default()) {
            eprintln!("surepush: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Config {
            command: ConfigCommand::Defaults,
        } => {
            print!("{}", annotated::defaults_toml());
            Ok(())
        }
        Command::Log { command } => log_tool(command),
        #[cfg(feature = "cluster")]
        Command::Cluster { command } => cluster_cli::run(command),
        Command::CheckHost { json } => surepush::hostcheck::run(json)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Command::Token {
            node,
            user,
            device,
            ttl_s,
            subscribe,
            publish,
        } => Acl::new(&subscribe, &publish)
            .map_err(|e| e.to_string())
            .and_then(|acl| mint(&node, user, device, ttl_s, acl))
            .map(|t| println!("{t}")),
        Command::Send {
            client,
            to,
            qos,
            message,
        } => send(&client, to, qos, message),
        Command::Recv {
            client,
            count,
            after,
            timeout_s,
        } => recv(&client, count, after, timeout_s),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surepush: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut sources = ConfigSources::from_process(args.config);
    if let Some(v) = args.listen {
        sources = sources.flag("listen", v.to_string());
    }
    if let Some(v) = args.admin_listen {
        sources = sources.flag("admin_listen", v.to_string());
    }
    if let Some(v) = args.data_dir {
        sources = sources.flag("data_dir", v.display().to_string());
    }
    if let Some(v) = args.shards {
        sources = sources.flag("shards", i64::from(v));
    }
    if args.no_pin {
        sources = sources.flag("pin_cores", false);
    }
    if let Some(format) = args.log_format {
        sources = sources.flag("logging.format", format.name());
    }
    let loaded = sources.load().map_err(|e| e.to_string())?;
    let log = logging::init(&loaded.config.logging).map_err(|e| e.to_string())?;
    for note in &loaded.notes {
        tracing::warn!("{note}");
    }
    let reload = surepush::server::Reload {
        sources,
        log: Some(log),
    };
    surepush::server::serve(loaded.config, reload).map_err(|e| e.to_string())
}

/// The node's config (file, environment), with `--data-dir` over it.
fn node_config(node: &NodeArgs) -> Result<Config, String> {
    let mut sources = ConfigSources::from_process(node.config.clone());
    if let Some(d) = &node.data_dir {
        sources = sources.flag("data_dir", d.display().to_string());
    }
    let loaded = sources.load().map_err(|e| e.to_string())?;
    for note in &loaded.notes {
        tracing::warn!("{note}");
    }
    Ok(loaded.config)
}

fn log_tool(command: LogCommand) -> Result<(), String> {
    match command {
        LogCommand::Verify(node) => {
            let (report, damaged) = surepush::server::offline::verify(&node_config(&node)?)
                .map_err(|e| e.to_string())?;
            print!("{report}");
            if damaged {
                return Err("damaged: see above".into());
            }
            Ok(())
        }
        LogCommand::Salvage(node) => {
            let report = surepush::server::offline::salvage(&node_config(&node)?)
                .map_err(|e| e.to_string())?;
            print!("{report}");
            Ok(())
        }
    }
}

fn mint(node: &NodeArgs, user: u64, device: u64, ttl_s: u64, acl: Acl) -> Result<String, String> {
    let config = node_config(node)?;
    let secret = config.load_token_secret().map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    Ok(TokenVerifier::new(&secret).mint(&Claims {
        user: UserId(user),
        device: DeviceId(device),
        expires_s: now + ttl_s,
        acl,
    }))
}

fn connect(args: &ClientArgs, delivered: Option<Seq>) -> Result<BlockingClient, String> {
    let token = mint(&args.node, args.user, args.device, 3_600, Acl::default())?;
    let config = ClientConfig::new(token, DeviceId(args.device));
    BlockingClient::connect(args.server, config, delivered, Duration::from_secs(5))
        .map_err(|e| format!("connect {}: {e}", args.server))
}

fn send(args: &ClientArgs, to: u64, qos: u8, message: String) -> Result<(), String> {
    let qos = Qos::from_u8(qos).ok_or("qos must be 0, 1 or 2")?;
    let mut client = connect(args, None)?;
    let id = client
        .send(UserId(to), qos, Bytes::from(message))
        .map_err(|e| e.to_string())?;
    if qos == Qos::AtMostOnce {
        println!("sent (QoS 0, not acknowledged)");
        return Ok(());
    }
    let done = client
        .wait_for(Duration::from_secs(10), |e| match e {
            Event::SendAcked(a) => a.client_msg_id == id && qos == Qos::AtLeastOnce,
            Event::SendCompleted(c) => *c == id,
            Event::SendFailed(_) | Event::Error(_) => true,
            _ => false,
        })
        .map_err(|e| e.to_string())?;
    match done {
        Some(Event::SendAcked(a)) => println!(
            "stored: seq {} in user {to}'s inbox ({:?})",
            a.seq.0, a.result
        ),
        Some(Event::SendCompleted(_)) => println!("stored and released (QoS 2)"),
        Some(other) => return Err(format!("send failed: {other:?}")),
        None => return Err("no SENDACK within 10 s".into()),
    }
    Ok(())
}

fn recv(args: &ClientArgs, count: u64, after: Option<u64>, timeout_s: u64) -> Result<(), String> {
    let mut client = connect(args, after.map(Seq))?;
    let mut seen = 0;
    let wait = if timeout_s == 0 {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(timeout_s)
    };
    loop {
        match client.next_event(wait).map_err(|e| e.to_string())? {
            Some(Event::Message(p)) => {
                let text = String::from_utf8_lossy(&p.payload);
                println!(
                    "#{} from {} ({:?}): {}",
                    p.seq.0,
                    p.from.0,
                    p.qos,
                    if p.echo { "<own message>" } else { &text }
                );
                seen += 1;
            }
            Some(Event::Ephemeral(p)) => {
                println!(
                    "(QoS 0) from {}: {}",
                    p.from.0,
                    String::from_utf8_lossy(&p.payload)
                );
                seen += 1;
            }
            Some(Event::Lost { first, last }) => {
                println!(
                    "(#{}..#{} are gone: expired or lost by the gateway)",
                    first.0, last.0
                );
            }
            Some(Event::Error(e)) => {
                return Err(format!("gateway error {}: {}", e.code, e.message))
            }
            Some(Event::Disconnected(code, redirect)) => {
                return Err(format!("disconnected ({code}) {redirect}"))
            }
            Some(_) => {}
            None if timeout_s > 0 => return Err(format!("no message within {timeout_s} s")),
            None => {}
        }
        if count > 0 && seen >= count {
            return Ok(());
        }
    }
}
