//! `surepush cluster ...`: the cluster's state in NATS (docs/CLUSTER.md).

use std::time::Duration;

use clap::{Args, Subcommand};
use surepush::cluster::admin::{self, InitOutcome};
use surepush::cluster::runtime::connect::NatsConfig;
use surepush::cluster::{EntityKind, NodeId, PartitionCount, PartitionId};

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
    /// Move one partition to a node: the node copies the partition's
    /// messages, cursors, dedup entries, members and keyed state from its
    /// owner, then flips the placement entry (docs/CLUSTER.md "Moving a
    /// partition"). Writes to the partition pause while it moves.
    Move {
        #[command(flatten)]
        nats: NatsArgs,
        /// The partition.
        #[arg(long, required_unless_present = "user", conflicts_with = "user")]
        partition: Option<u32>,
        /// ... or the partition that holds this user (its inbox, cursors
        /// and sessions).
        #[arg(long)]
        user: Option<u64>,
        /// The node that takes it (must be running).
        #[arg(long)]
        to: String,
    },
    /// Move one partition between the shards of the node holding it: the
    /// new shard copies the partition's records from the old one (snapshot
    /// and tail rounds, then a short fence), and the node's shard map flips
    /// (docs/CLUSTER.md "Moving a partition between shards").
    MoveShard {
        #[command(flatten)]
        nats: NatsArgs,
        /// The partition.
        #[arg(long)]
        partition: u32,
        /// The node holding it (must be running).
        #[arg(long)]
        node: String,
        /// The shard of that node that takes it.
        #[arg(long)]
        shard: u16,
    },
    /// Spread the partitions evenly over the live nodes (e.g. after a node
    /// joined), one move at a time.
    Rebalance {
        #[command(flatten)]
        nats: NatsArgs,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move every partition of a node to the other live nodes (before
    /// taking it out of the cluster).
    Leave {
        #[command(flatten)]
        nats: NatsArgs,
        /// The node that leaves.
        node: String,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
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
    /// Give up on one partition move after this many seconds.
    #[arg(long, default_value_t = 300)]
    move_timeout_s: u64,
}

impl NatsArgs {
    fn config(&self) -> (NatsConfig, Duration) {
        let timeout = Duration::from_secs(self.timeout_s.max(1));
        let mut config = NatsConfig::new(self.nats.clone());
        config.request_timeout = timeout;
        (config, timeout)
    }

    fn move_config(&self) -> (NatsConfig, Duration) {
        let (config, _) = self.config();
        (config, Duration::from_secs(self.move_timeout_s.max(1)))
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
        ClusterCommand::Move {
            nats,
            partition,
            user,
            to,
        } => {
            let to = NodeId::parse(&to).map_err(|e| format!("--to {to:?}: {e}"))?;
            let p = match (partition, user) {
                (Some(p), _) => PartitionId(p),
                (None, Some(user)) => {
                    let (config, timeout) = nats.config();
                    let status = admin::status(&config, timeout).map_err(|e| e.to_string())?;
                    let p = status.meta.partitions.partition_of(EntityKind::User, user);
                    println!("user {user} is in partition {}", p.0);
                    p
                }
                (None, None) => return Err("--partition or --user is required".into()),
            };
            let (config, timeout) = nats.move_config();
            move_one(&config, p, &to, timeout)
        }
        ClusterCommand::MoveShard {
            nats,
            partition,
            node,
            shard,
        } => {
            let node = NodeId::parse(&node).map_err(|e| format!("--node {node:?}: {e}"))?;
            let (config, timeout) = nats.move_config();
            let p = PartitionId(partition);
            let r = admin::move_partition_to_shard(&config, p, &node, shard, timeout)
                .map_err(|e| e.to_string())?;
            if !r.moved {
                return Err(format!(
                    "partition {partition} not moved to shard {shard} of {node}: {}",
                    r.message
                ));
            }
            println!(
                "partition {partition} moved to shard {shard} of {node}: {} records in {} ms{}",
                r.records,
                r.elapsed_ms,
                if r.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.message)
                }
            );
            Ok(())
        }
        ClusterCommand::Rebalance { nats, dry_run } => run_plan(&nats, None, dry_run),
        ClusterCommand::Leave {
            nats,
            node,
            dry_run,
        } => {
            let node = NodeId::parse(&node).map_err(|e| format!("{node:?}: {e}"))?;
            run_plan(&nats, Some(&node), dry_run)
        }
    }
}

fn move_one(
    config: &NatsConfig,
    p: PartitionId,
    to: &NodeId,
    timeout: Duration,
) -> Result<(), String> {
    let r = admin::move_partition(config, p, to, timeout).map_err(|e| e.to_string())?;
    if !r.moved {
        return Err(format!(
            "partition {} not moved to {to}: {}",
            p.0, r.message
        ));
    }
    println!(
        "partition {} moved to {to}: {} records in {} ms, placement revision {}{}",
        p.0,
        r.records,
        r.elapsed_ms,
        r.revision,
        if r.message.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.message)
        }
    );
    Ok(())
}

fn run_plan(nats: &NatsArgs, leaving: Option<&NodeId>, dry_run: bool) -> Result<(), String> {
    let (config, timeout) = nats.config();
    let plan = admin::plan(&config, leaving, timeout).map_err(|e| e.to_string())?;
    if plan.is_empty() {
        println!("nothing to move");
        return Ok(());
    }
    let (move_config, move_timeout) = nats.move_config();
    for m in &plan {
        println!("partition {}: {} -> {}", m.partition.0, m.from, m.to);
        if !dry_run {
            move_one(&move_config, m.partition, &m.to, move_timeout)?;
        }
    }
    Ok(())
}
