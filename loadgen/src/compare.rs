//! Scenario `compare`: the same closed-loop one-to-one workload, back to
//! back in one invocation, through every system asked for — the raw relay
//! (the machine's limit, no durability), surepush's native protocol at QoS
//! 1, surepush's MQTT listener, MQTT brokers (each driven both with
//! surepush's codec and with the independent rumqttc client), and NATS
//! JetStream in its own protocol, both with its default sync and with
//! `sync_interval: always` when the load generator is given a nats-server
//! to start. Every system gets the same report: msgs/s, ack p50/p99/p99.9,
//! deliver p50/p99/p99.9, and the server's CPU time per message from /proc
//! (the process listening on the system's port; for the relay, its own
//! threads), and every delivery is checked for loss and order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use surepush_proto::Qos;

use crate::floor::{measure_floor, Floor, FLOOR_ROUND_TRIPS, FLOOR_SYNCS};
use crate::nats_server::{JetStreamSync, NatsServer};
use crate::{cli, procfs, Latency, PairLoad, RawReport, Scenario};
use crate::{connect_rate, ConnectRate, MqttTarget, Report, TlsOptions};
use crate::{fresh_user_base, run, run_jetstream, run_mqtt, run_raw, run_rumqttc, start_relay};

/// Which MQTT client drives the MQTT systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MqttClients {
    /// surepush's own MQTT codec (`mqtt_peer`).
    Own,
    /// rumqttc, an independent client.
    Rumqttc,
    /// Both, one after the other.
    Both,
}

/// `compare`'s options (the secret is filled in by the command).
#[derive(Clone, Debug, clap::Args)]
pub struct CompareScenario {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub server: SocketAddr,
    /// The gateway's token secret.
    #[arg(skip)]
    pub secret: Vec<u8>,
    /// The gateway's pid, for its CPU time per message; default: the
    /// process listening on the `--server` port.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 8)]
    pub pairs: u32,
    /// Messages per sender.
    #[arg(long, default_value_t = 2000)]
    pub messages: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Also run the workload against an MQTT 3.1.1 broker (QoS 1,
    /// persistent sessions): `NAME=ADDR` or just `ADDR`, repeatable, e.g.
    /// `--mqtt mosquitto=127.0.0.1:1884 --mqtt nats=127.0.0.1:1885`.
    #[arg(long, value_parser = cli::parse_broker)]
    pub mqtt: Vec<(String, SocketAddr)>,
    /// Also run it over MQTT against the gateway's own MQTT listener
    /// (same node as `--server`), e.g. 127.0.0.1:1883.
    #[arg(long)]
    pub surepush_mqtt: Option<SocketAddr>,
    /// Also run the native workload over TLS against the same gateway's
    /// TLS listener (`tls.listen`), e.g. 127.0.0.1:7443, verified with
    /// `--ca`; and time connections plain and over TLS (`--connects`).
    #[arg(long, requires = "ca")]
    pub surepush_tls: Option<SocketAddr>,
    /// The CA certificate (PEM) that signed the gateway's certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// With `--surepush-tls`: connections opened one after another
    /// (connect, CONNECT, CONNACK, replay done, close), plain and TLS.
    #[arg(long, default_value_t = 200)]
    pub connects: u32,
    /// Also run the native workload over the gateway's WebSocket listener
    /// (same node as `--server`), e.g. 127.0.0.1:7402: the row right
    /// after native TCP.
    #[arg(long)]
    pub surepush_ws: Option<SocketAddr>,
    /// Also run the native workload over WebSocket over TLS against the
    /// gateway's `tls.ws_listen` (same node), e.g. 127.0.0.1:7403,
    /// verified with `--ca`.
    #[arg(long, requires = "ca")]
    pub surepush_wss: Option<SocketAddr>,
    /// Which MQTT client drives the MQTT systems.
    #[arg(long, value_enum, default_value = "both")]
    pub mqtt_client: MqttClients,
    /// Also run it against a running NATS server with JetStream, in its
    /// own protocol (a file-storage stream, a durable push consumer with
    /// explicit acks per receiver, PubAcks as acknowledgements), synced as
    /// that server is configured, e.g. 127.0.0.1:4222.
    #[arg(long)]
    pub jetstream: Option<SocketAddr>,
    /// Start this nats-server (2.10 or later) twice, each on a free
    /// loopback port with its store in a temporary directory, and run the
    /// workload against both: JetStream with its default sync (every 2
    /// minutes) and with `sync_interval: always` (fsync before each
    /// PubAck, as surepush before its SENDACK).
    #[arg(long)]
    pub nats_server_bin: Option<PathBuf>,
    /// Measure the durable floor (`fdatasync` + loopback round trip) in
    /// this directory before the systems run (the command sets it to the
    /// gateway's data dir).
    #[arg(skip)]
    pub floor_dir: Option<PathBuf>,
}

/// One system's row.
#[derive(Clone, Debug, Serialize)]
pub struct SystemResult {
    /// What ran (and with which client).
    pub name: String,
    /// When it acknowledges: what its ack means.
    pub durability: String,
    /// Acknowledged messages per second.
    pub msgs_per_s: f64,
    /// Send to acknowledgement, median (ms).
    pub ack_p50_ms: f64,
    /// Send to acknowledgement, 99th percentile (ms).
    pub ack_p99_ms: f64,
    /// Send to acknowledgement, 99.9th percentile (ms).
    pub ack_p999_ms: f64,
    /// Send to delivery, median (ms).
    pub deliver_p50_ms: f64,
    /// Send to delivery, 99th percentile (ms).
    pub deliver_p99_ms: f64,
    /// Send to delivery, 99.9th percentile (ms).
    pub deliver_p999_ms: f64,
    /// Server CPU time (user + system, all threads) per acknowledged
    /// message (µs); none when its process could not be read.
    pub server_cpu_us_per_msg: Option<f64>,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages delivered in order.
    pub delivered: u64,
    /// Everything acknowledged and delivered in order.
    pub passed: bool,
    /// Why the run did not complete, if it did not.
    pub error: Option<String>,
}

impl SystemResult {
    fn from_parts(
        name: String,
        durability: &str,
        msgs_per_s: f64,
        ack: &Latency,
        deliver: &Latency,
        counts: (u64, u64, bool),
        server_cpu_us_per_msg: Option<f64>,
    ) -> SystemResult {
        SystemResult {
            name,
            durability: durability.to_string(),
            msgs_per_s,
            ack_p50_ms: ack.p50_ms,
            ack_p99_ms: ack.p99_ms,
            ack_p999_ms: ack.p999_ms,
            deliver_p50_ms: deliver.p50_ms,
            deliver_p99_ms: deliver.p99_ms,
            deliver_p999_ms: deliver.p999_ms,
            server_cpu_us_per_msg,
            acked: counts.0,
            delivered: counts.1,
            passed: counts.2,
            error: None,
        }
    }

    fn from_peer(name: String, durability: &str, load: &PairLoad, r: &RawReport) -> Self {
        let counts = (r.acked, r.delivered, r.passed(load));
        let (ack, deliver) = (&r.ack_latency, &r.deliver_latency);
        let cpu = r.server_cpu_us_per_msg;
        Self::from_parts(name, durability, r.acked_per_sec, ack, deliver, counts, cpu)
    }

    fn from_native(name: &str, durability: &str, r: &Report) -> Self {
        let counts = (r.acked, r.delivered, r.passed(Qos::AtLeastOnce));
        let (ack, deliver) = (&r.ack_latency, &r.deliver_latency);
        let name = name.to_string();
        let cpu = r.server_cpu_us_per_msg;
        Self::from_parts(name, durability, r.acked_per_sec, ack, deliver, counts, cpu)
    }

    fn failed(name: String, durability: &str, error: String) -> Self {
        let zero = Latency {
            p50_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
        };
        let mut r = Self::from_parts(name, durability, 0.0, &zero, &zero, (0, 0, false), None);
        r.error = Some(error);
        r
    }
}

/// Every system's row, in run order.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Sender/receiver pairs.
    pub pairs: u32,
    /// Messages per sender.
    pub messages: u32,
    /// Payload bytes.
    pub payload: usize,
    /// One row per system.
    pub systems: Vec<SystemResult>,
    /// Connection set-up, plain and TLS (with `--surepush-tls`).
    pub connects: Vec<ConnectRate>,
    /// The durable floor measured before the systems ran, if asked.
    pub floor: Option<Floor>,
}

const NATIVE: &str = "surepush native QoS 1";
const NATIVE_TLS: &str = "surepush native QoS 1 over TLS";
const NATIVE_WS: &str = "surepush native over WebSocket QoS 1";
const NATIVE_WSS: &str = "surepush native over WSS QoS 1";

const NO_SYNC: &str = "acknowledged from memory (no fsync)";
const SUREPUSH: &str = "acknowledged after fdatasync (both copies)";

impl CompareReport {
    /// Every system ran and passed its check.
    pub fn passed(&self) -> bool {
        !self.systems.is_empty() && self.systems.iter().all(|s| s.passed)
    }

    /// The row named `name`.
    pub fn system(&self, name: &str) -> Option<&SystemResult> {
        self.systems.iter().find(|s| s.name == name)
    }

    /// A table for people, then each surepush row's ratios to every
    /// system that is not surepush.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "one-to-one, {} pairs x {} messages of {} B, closed loop, same run:\n\
             {:<36} {:>9} {:>26} {:>26} {:>12}  check\n",
            self.pairs,
            self.messages,
            self.payload,
            "system",
            "msgs/s",
            "ack p50/p99/p99.9 ms",
            "deliver p50/p99/p99.9 ms",
            "CPU/msg",
        );
        for s in &self.systems {
            if let Some(e) = &s.error {
                out += &format!("{:<36} FAILED: {e}\n", s.name);
                continue;
            }
            out += &format!(
                "{:<36} {:>9.0} {:>8.3}/{:>7.3}/{:>8.3} {:>8.3}/{:>7.3}/{:>8.3} {:>12}  {} ({} of {} delivered)\n",
                s.name,
                s.msgs_per_s,
                s.ack_p50_ms,
                s.ack_p99_ms,
                s.ack_p999_ms,
                s.deliver_p50_ms,
                s.deliver_p99_ms,
                s.deliver_p999_ms,
                procfs::format_cpu(s.server_cpu_us_per_msg),
                if s.passed { "PASS" } else { "FAIL" },
                s.delivered,
                s.acked,
            );
        }
        if let Some(f) = &self.floor {
            out += &format!("{}\n", f.to_text());
        }
        for c in &self.connects {
            out += &format!(
                "{:<36} {:>9.0} connections/s, {} server CPU per connection\n",
                c.name,
                c.per_s,
                procfs::format_cpu(c.server_cpu_us_per_connect),
            );
        }
        for (label, layered) in [
            ("WebSocket", NATIVE_WS),
            ("TLS", NATIVE_TLS),
            ("WSS", NATIVE_WSS),
        ] {
            let (Some(tcp), Some(other)) = (self.system(NATIVE), self.system(layered)) else {
                continue;
            };
            let cpu = match (tcp.server_cpu_us_per_msg, other.server_cpu_us_per_msg) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
                _ => "n/a".into(),
            };
            out += &format!(
                "  {label} / TCP (native QoS 1): msgs/s {:.2}, CPU per message {cpu}\n",
                other.msgs_per_s / tcp.msgs_per_s.max(1.0),
            );
        }
        let ours: Vec<&SystemResult> = self
            .systems
            .iter()
            .filter(|s| s.name.starts_with("surepush") && s.error.is_none())
            .collect();
        for o in &ours {
            if let Some(f) = &self.floor {
                out += &format!(
                    "  {}: ack p50 = {:.2}x the durable floor\n",
                    o.name,
                    f.ratio(o.ack_p50_ms)
                );
            }
            let others = self
                .systems
                .iter()
                .filter(|s| s.error.is_none() && !s.name.starts_with("surepush"));
            for other in others {
                let cpu = match (o.server_cpu_us_per_msg, other.server_cpu_us_per_msg) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "n/a".into(),
                };
                out += &format!(
                    "  {} / {}: msgs/s {:.2}, CPU per message {cpu}\n",
                    o.name,
                    other.name,
                    o.msgs_per_s / other.msgs_per_s.max(1.0),
                );
            }
        }
        out
    }
}

impl CompareScenario {
    fn load(&self, server_pid: Option<u32>) -> PairLoad {
        PairLoad {
            pairs: self.pairs,
            messages: self.messages,
            payload: self.payload,
            rate: 0,
            run: fresh_user_base(),
            server_pid,
        }
    }

    /// The MQTT clients to drive each MQTT system with.
    fn clients(&self) -> Vec<&'static str> {
        match self.mqtt_client {
            MqttClients::Own => vec!["own codec"],
            MqttClients::Rumqttc => vec!["rumqttc"],
            MqttClients::Both => vec!["own codec", "rumqttc"],
        }
    }
}

/// Runs one peer and turns its outcome into a row.
fn peer_row(
    name: String,
    durability: &str,
    load: &PairLoad,
    r: Result<RawReport, String>,
) -> SystemResult {
    match r {
        Ok(r) => SystemResult::from_peer(name, durability, load, &r),
        Err(e) => SystemResult::failed(name, durability, e),
    }
}

/// One MQTT system with each client asked for.
fn mqtt_rows(
    s: &CompareScenario,
    label: &str,
    durability: &str,
    addr: SocketAddr,
    target: &MqttTarget,
) -> Vec<SystemResult> {
    let pid = procfs::listener_pid(addr.port()).ok();
    s.clients()
        .into_iter()
        .map(|client| {
            let load = s.load(pid);
            let r = if client == "rumqttc" {
                run_rumqttc(addr, target, &load)
            } else {
                run_mqtt(addr, target, &load)
            };
            peer_row(format!("{label} ({client})"), durability, &load, r)
        })
        .collect()
}

/// Runs every system asked for.
pub fn run_compare(s: &CompareScenario) -> Result<CompareReport, String> {
    let floor = match &s.floor_dir {
        Some(dir) => Some(measure_floor(dir, FLOOR_SYNCS, FLOOR_ROUND_TRIPS)?),
        None => None,
    };
    let mut systems = Vec::new();
    let load = s.load(None);
    let raw = start_relay()
        .map_err(|e| format!("raw relay: {e}"))
        .and_then(|relay| run_raw(&relay, &load));
    systems.push(peer_row(
        "raw relay".into(),
        "no durability (the machine's limit)",
        &load,
        raw,
    ));
    let native = Scenario {
        pairs: s.pairs,
        messages: s.messages,
        qos: Qos::AtLeastOnce,
        payload: s.payload,
        timeout: Duration::from_secs(60),
        first_user: fresh_user_base(),
        server_pid: s.server_pid,
        ..Scenario::new(s.server, s.secret.clone())
    };
    systems.push(match run(&native) {
        Ok(r) => SystemResult::from_native(NATIVE, SUREPUSH, &r),
        Err(e) => SystemResult::failed(NATIVE.into(), SUREPUSH, e),
    });
    if let Some(ws) = s.surepush_ws {
        let over_ws = Scenario {
            ws: Some(ws),
            first_user: fresh_user_base(),
            ..native.clone()
        };
        systems.push(match run(&over_ws) {
            Ok(r) => SystemResult::from_native(NATIVE_WS, SUREPUSH, &r),
            Err(e) => SystemResult::failed(NATIVE_WS.into(), SUREPUSH, e),
        });
    }
    let tls = TlsOptions {
        tls: true,
        ca: s.ca.clone(),
        tls_name: "localhost".into(),
    };
    let mut connects = Vec::new();
    if let Some(addr) = s.surepush_tls {
        let over_tls = Scenario {
            server: addr,
            first_user: fresh_user_base(),
            tls: tls.clone(),
            ..native.clone()
        };
        systems.push(match run(&over_tls) {
            Ok(r) => SystemResult::from_native(NATIVE_TLS, SUREPUSH, &r),
            Err(e) => SystemResult::failed(NATIVE_TLS.into(), SUREPUSH, e),
        });
        for (name, gateway) in [
            (
                "surepush native connect (TCP)",
                TlsOptions::default().gateway(s.server)?,
            ),
            ("surepush native connect (TLS)", tls.gateway(addr)?),
        ] {
            connects.push(connect_rate(name, &gateway, &s.secret, s.connects)?);
        }
    }
    if let Some(wss) = s.surepush_wss {
        let over_wss = Scenario {
            ws: Some(wss),
            tls: tls.clone(),
            first_user: fresh_user_base(),
            ..native.clone()
        };
        systems.push(match run(&over_wss) {
            Ok(r) => SystemResult::from_native(NATIVE_WSS, SUREPUSH, &r),
            Err(e) => SystemResult::failed(NATIVE_WSS.into(), SUREPUSH, e),
        });
    }
    if let Some(addr) = s.surepush_mqtt {
        let target = MqttTarget::Surepush {
            secret: s.secret.clone(),
        };
        systems.extend(mqtt_rows(s, "surepush MQTT QoS 1", SUREPUSH, addr, &target));
    }
    for (name, addr) in &s.mqtt {
        let label = format!("{name} (MQTT) QoS 1");
        systems.extend(mqtt_rows(s, &label, NO_SYNC, *addr, &MqttTarget::Broker));
    }
    if let Some(bin) = &s.nats_server_bin {
        for sync in [JetStreamSync::Default, JetStreamSync::Always] {
            let durability = match sync {
                JetStreamSync::Default => "file store, synced every 2 min (no fsync per message)",
                JetStreamSync::Always => "file store, sync_interval always (fsync before PubAck)",
            };
            let row = match NatsServer::start(bin, sync) {
                Ok(nats) => {
                    let load = s.load(Some(nats.pid()));
                    peer_row(
                        sync.label().into(),
                        durability,
                        &load,
                        run_jetstream(nats.addr, &load),
                    )
                }
                Err(e) => SystemResult::failed(sync.label().into(), durability, e),
            };
            systems.push(row);
        }
    }
    if let Some(addr) = s.jetstream {
        let load = s.load(procfs::listener_pid(addr.port()).ok());
        let r = run_jetstream(addr, &load);
        let durability = "file store, synced as that server is configured";
        systems.push(peer_row(
            "JetStream (external)".into(),
            durability,
            &load,
            r,
        ));
    }
    Ok(CompareReport {
        pairs: s.pairs,
        messages: s.messages,
        payload: s.payload,
        systems,
        connects,
        floor,
    })
}
