//! `surepush cluster ...`: the cluster's state in NATS (docs/CLUSTER.md).

use std::time::Duration;

use clap::{Args, Subcommand};
use surepush::cluster::admin::{self, InitOutcome};
use surepush::cluster::runtime::connect::NatsConfig;
use surepush::cluster::{NodeId, PartitionCount};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Create the cluster: its KV buckets and its partition count (fixed
    /// for its lifetime). With `--nodes`, the partitions are spread over
    /// those nodes round-robin; without, the first node to join owns every
    /// partition. Running it again with the same count changes nothing.
    Init {
        #[command(flatten)]
        nats: NatsArgs,
        /// Number of partitions (1..=65536); users, groups and rooms map to
        /// them by hash, and whole partitions move between nodes.
        #[arg(long)]
        partitions: u64,
        /// Node ids to spread the partitions over (comma-separated), for a
        /// new cluster whose nodes are known.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Seconds a node stays registered after its last heartbeat.
        #[arg(long, default_value_t = admin::DEFAULT_REGISTRY_TTL.as_secs())]
        registry_ttl_s: u64,
        /// KV replicas (3 on a NATS cluster).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// Show the live nodes, the partitions each owns, and the KV revisions.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout_s: u64,
}

impl NatsArgs {
    fn config(&self) -> (NatsConfig, Duration) {
        let timeout = Duration::from_secs(self.timeout_s.max(1));
        let mut config = NatsConfig::new(self.nats.clone());
        config.request_timeout = timeout;
        (config, timeout)
    }
}

pub fn run(command: ClusterCommand) -> Result<(), String> {
    match command {
        ClusterCommand::Init {
            nats,
            partitions,
            nodes,
            registry_ttl_s,
            replicas,
        } => {
            let nodes = nodes
                .iter()
                .map(|n| NodeId::parse(n).map_err(|e| format!("--nodes {n:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let (mut config, timeout) = nats.config();
            config.kv_replicas = replicas.max(1);
            let partitions = PartitionCount::new(partitions).map_err(|e| e.to_string())?;
            let ttl = Duration::from_secs(registry_ttl_s.max(1));
            match admin::init(&config, partitions, &nodes, ttl, timeout)
                .map_err(|e| e.to_string())?
            {
                InitOutcome::Created(m) => {
                    println!("created a cluster with {} partitions", m.partitions.get())
                }
                InitOutcome::Existed(m) => println!(
                    "the cluster exists already, with {} partitions",
                    m.partitions.get()
                ),
            }
            Ok(())
        }
        ClusterCommand::Status { nats } => {
            let (config, timeout) = nats.config();
            let status = admin::status(&config, timeout).map_err(|e| e.to_string())?;
            print!("{status}");
            Ok(())
        }
    }
}
