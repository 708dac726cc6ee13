//! `cluster`: what a message costs when it stays on one node and when it
//! crosses nodes, measured on a running cluster in one sitting (issue
//! #20, docs/CLUSTER.md "Cross-node cost").
//!
//! The placement decides which node owns a user, and the load generator
//! does not read it: it asks the gateway. Each candidate user connects to
//! a node of `--servers` and follows the redirect to its own node
//! (`client`), so where it lands is where it lives. Pairs whose sender
//! and receiver live on the same node make the *local* class (spread
//! over the nodes), pairs on two different nodes the *cross* class
//! (every ordered pair of nodes in turn). The two classes then run the
//! one-to-one workload one after the other, with the same checker, and
//! the gateways' CPU (every node's process, from /proc) and, with
//! `--nats`, the nats-server's are measured over each.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use crate::{client, fresh_user_base, landed, procfs, run, Report, Scenario};

/// A (sender, receiver) pair of users.
type Pair = (u64, u64);

/// One class of pairs and what its run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterClass {
    /// `local` or `cross`.
    pub name: &'static str,
    /// The (sender, receiver) users of its pairs.
    pub pairs: Vec<(u64, u64)>,
    /// The one-to-one run over those pairs (all nodes' CPU per message).
    pub report: Report,
    /// nats-server CPU per acknowledged message (µs), with `--nats`.
    pub nats_cpu_us_per_msg: Option<f64>,
}

impl ClusterClass {
    /// Gateways' and nats-server's CPU per message together (µs); the
    /// gateways' alone without `--nats`.
    pub fn total_cpu_us_per_msg(&self) -> Option<f64> {
        let gateways = self.report.server_cpu_us_per_msg?;
        Some(gateways + self.nats_cpu_us_per_msg.unwrap_or(0.0))
    }
}

/// Both classes, measured in the same sitting.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    /// Nodes the users were found on.
    pub nodes: Vec<SocketAddr>,
    /// Sender and receiver on the same node.
    pub local: ClusterClass,
    /// Sender and receiver on different nodes.
    pub cross: ClusterClass,
    /// With a move command: more cross-node pairs, during whose run the
    /// partition of the first pair's receiver moves (its report's `fault`
    /// has the command's time).
    pub moving: Option<ClusterClass>,
    /// Cross over local: gateways' CPU per message.
    pub gateway_cpu_ratio: Option<f64>,
    /// Cross over local: gateways' plus nats-server's CPU per message.
    pub total_cpu_ratio: Option<f64>,
    /// Cross over local: acknowledged messages per second.
    pub throughput_ratio: f64,
}

impl ClusterReport {
    /// Every message of every class delivered as the QoS promises.
    pub fn passed(&self, s: &Scenario) -> bool {
        [&self.local, &self.cross]
            .into_iter()
            .chain(&self.moving)
            .all(|c| c.report.passed(s.qos))
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        let ms = |v: f64| format!("{v:.2} ms");
        let mut out = format!(
            "cluster: {} nodes\n{:<6} {:>6} {:>9} {:>10} {:>10} {:>12} {:>10} {:>10}  checker\n",
            self.nodes.len(),
            "class",
            "pairs",
            "acked/s",
            "ack p50",
            "ack p99",
            "deliver p99",
            "gateways",
            "nats",
        );
        for c in [&self.local, &self.cross].into_iter().chain(&self.moving) {
            let r = &c.report;
            out += &format!(
                "{:<6} {:>6} {:>9.0} {:>10} {:>10} {:>12} {:>10} {:>10}  sent {} acked {} delivered {} lost {} dup {} out-of-order {}\n",
                c.name,
                c.pairs.len(),
                r.acked_per_sec,
                ms(r.ack_latency.p50_ms),
                ms(r.ack_latency.p99_ms),
                ms(r.deliver_latency.p99_ms),
                procfs::format_cpu(r.server_cpu_us_per_msg),
                procfs::format_cpu(c.nats_cpu_us_per_msg),
                r.sent,
                r.acked,
                r.delivered,
                r.lost,
                r.duplicates,
                r.out_of_order,
            );
        }
        let ratio = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.2}x"));
        out += &format!(
            "cross / local: gateways' CPU per message {}, with nats-server {}, acked/s {:.2}x\n",
            ratio(self.gateway_cpu_ratio),
            ratio(self.total_cpu_ratio),
            self.throughput_ratio,
        );
        if let Some(m) = &self.moving {
            out += &m.report.fault_text();
        }
        out
    }
}

/// Finds where users live and runs the local class, then the cross
/// class, `s.pairs` pairs each (the rest of `s` as for `one-to-one`).
/// `nats`: the nats-server's client address, for its CPU. With
/// `move_cmd`, a third class of fresh cross-node pairs runs with it as
/// its `--restart-cmd` (`{receiver}`: the first pair's receiver).
pub fn run_cluster(
    s: &Scenario,
    nats: Option<SocketAddr>,
    move_cmd: Option<&str>,
) -> Result<ClusterReport, String> {
    if s.servers.len() < 2 {
        return Err("cluster needs --servers with at least two nodes".into());
    }
    if s.pairs == 0 {
        return Err("cluster needs --pairs above 0".into());
    }
    let want = s.pairs as usize;
    // Twice the pairs when moving: the second half of the cross pairs.
    let pick = want * (1 + usize::from(move_cmd.is_some()));
    let homes = find_homes(s, pick)?;
    let nodes: Vec<SocketAddr> = homes.keys().copied().collect();
    let (mut local, mut cross) = choose_pairs(&homes, pick).ok_or_else(|| {
        format!(
            "users of {} nodes found ({:?}): at least two are needed, with a few users each",
            nodes.len(),
            nodes
        )
    })?;
    local.truncate(want);
    let moving_pairs = cross.split_off(want);
    let local = run_class(s, "local", local, nats)?;
    let cross = run_class(s, "cross", cross, nats)?;
    let moving = match move_cmd {
        Some(cmd) => {
            let with_move = Scenario {
                restart_cmd: Some(cmd.to_string()),
                ..s.clone()
            };
            Some(run_class(&with_move, "moving", moving_pairs, nats)?)
        }
        None => None,
    };
    let over = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    Ok(ClusterReport {
        nodes,
        gateway_cpu_ratio: over(
            cross.report.server_cpu_us_per_msg,
            local.report.server_cpu_us_per_msg,
        ),
        total_cpu_ratio: over(cross.total_cpu_us_per_msg(), local.total_cpu_us_per_msg()),
        throughput_ratio: cross.report.acked_per_sec
            / local.report.acked_per_sec.max(f64::MIN_POSITIVE),
        local,
        cross,
        moving,
    })
}

/// Connects fresh users one at a time until every class can be filled,
/// and groups them by the node they landed on.
fn find_homes(s: &Scenario, want: usize) -> Result<BTreeMap<SocketAddr, Vec<u64>>, String> {
    let first = fresh_user_base();
    let mut homes: BTreeMap<SocketAddr, Vec<u64>> = BTreeMap::new();
    for user in first..first + 8 * want as u64 + 64 {
        let c = client(s, user)?;
        homes.entry(landed(&c, s)).or_default().push(user);
        drop(c);
        if homes.len() >= 2 && choose_pairs(&homes, want).is_some() {
            break;
        }
    }
    Ok(homes)
}

/// `want` node-local pairs (round robin over the nodes) and `want`
/// cross-node pairs (round robin over ordered pairs of nodes), no user
/// twice; `None` while the users found cannot fill both.
fn choose_pairs(
    homes: &BTreeMap<SocketAddr, Vec<u64>>,
    want: usize,
) -> Option<(Vec<Pair>, Vec<Pair>)> {
    if homes.len() < 2 {
        return None;
    }
    let mut left: Vec<std::collections::VecDeque<u64>> = homes
        .values()
        .map(|u| u.iter().copied().collect())
        .collect();
    let n = left.len();
    let mut local = Vec::with_capacity(want);
    let mut stuck = 0;
    let mut node = 0;
    while local.len() < want && stuck < n {
        let q = &mut left[node % n];
        if q.len() >= 2 {
            let (a, b) = (q.pop_front()?, q.pop_front()?);
            local.push((a, b));
            stuck = 0;
        } else {
            stuck += 1;
        }
        node += 1;
    }
    let routes: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let mut cross = Vec::with_capacity(want);
    let mut stuck = 0;
    let mut route = 0;
    while cross.len() < want && stuck < routes.len() {
        let (a, b) = routes[route % routes.len()];
        if !left[a].is_empty() && !left[b].is_empty() {
            let from = left[a].pop_front()?;
            let to = left[b].pop_front()?;
            cross.push((from, to));
            stuck = 0;
        } else {
            stuck += 1;
        }
        route += 1;
    }
    (local.len() == want && cross.len() == want).then_some((local, cross))
}

/// One class's run, with the nats-server's CPU around it.
fn run_class(
    s: &Scenario,
    name: &'static str,
    pairs: Vec<(u64, u64)>,
    nats: Option<SocketAddr>,
) -> Result<ClusterClass, String> {
    let class = Scenario {
        pairs: pairs.len() as u32,
        pair_users: pairs.clone(),
        ..s.clone()
    };
    let meter = nats.and_then(|a| procfs::CpuMeter::start(procfs::listener_pid(a.port()).ok()));
    let report = run(&class)?;
    Ok(ClusterClass {
        name,
        pairs,
        nats_cpu_us_per_msg: meter.and_then(|m| m.per_message(report.acked)),
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn local_pairs_stay_on_a_node_and_cross_pairs_leave_it() {
        let homes: BTreeMap<SocketAddr, Vec<u64>> = [
            (addr(1), vec![1, 2, 3, 4, 5]),
            (addr(2), vec![6, 7, 8, 9]),
            (addr(3), vec![10, 11, 12]),
        ]
        .into_iter()
        .collect();
        let node_of = |u: u64| *homes.iter().find(|(_, us)| us.contains(&u)).unwrap().0;
        let (local, cross) = choose_pairs(&homes, 3).expect("enough users");
        assert_eq!(local, vec![(1, 2), (6, 7), (10, 11)]);
        assert!(local.iter().all(|&(a, b)| node_of(a) == node_of(b)));
        assert_eq!(cross.len(), 3);
        assert!(cross.iter().all(|&(a, b)| node_of(a) != node_of(b)));
        let mut users: Vec<u64> = local
            .iter()
            .chain(&cross)
            .flat_map(|&(a, b)| [a, b])
            .collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), 12, "no user twice");
    }

    #[test]
    fn too_few_users_or_one_node_fill_nothing() {
        let one: BTreeMap<SocketAddr, Vec<u64>> =
            [(addr(1), (1..100).collect())].into_iter().collect();
        assert!(choose_pairs(&one, 2).is_none());
        let few: BTreeMap<SocketAddr, Vec<u64>> = [(addr(1), vec![1, 2]), (addr(2), vec![3])]
            .into_iter()
            .collect();
        assert!(choose_pairs(&few, 2).is_none());
        assert!(
            choose_pairs(&few, 1).is_none(),
            "the local pair takes node 1's users"
        );
    }
}
