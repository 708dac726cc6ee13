//! Presence watches across nodes (issue #20, docs/CLUSTER.md "Presence
//! across nodes"): three surepush processes and a real nats-server 2.15
//! on 127.0.0.1. Native clients on two nodes watch a user of the third:
//! they get its state at WATCH time and every change after, in order, with
//! the right user and devices; each change crosses NATS once per watching
//! node, whatever its watcher count. The owner killed with SIGKILL shows
//! the user offline once its registry entry expires, and online again
//! after its restart; a change made while NATS is down reaches watchers
//! once NATS is back; a partition move of the watched user is followed.

#[path = "../crates/cluster/tests/support/mod.rs"]
mod support;

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestServer;
use support::NatsServer;
use surepush::client::{BlockingClient, Event};
use surepush::core::Acl;
use surepush::proto::{Presence, UserId};

const PARTITIONS: u64 = 64;
const WAIT: Duration = Duration::from_secs(30);

/// A nats-server and three nodes, partition `p` on node `p % 3`.
struct Cluster {
    nodes: Vec<TestServer>,
    nats: NatsServer,
}

impl Cluster {
    fn start() -> Cluster {
        let nats = NatsServer::start();
        let names = ["n0", "n1", "n2"];
        common::cluster_init(&nats.url(), PARTITIONS, &names);
        let nodes = names
            .iter()
            .map(|name| {
                // A short coalescing window and registry TTL, so each step
                // and a dead owner show quickly.
                let top = "[core]\npresence_debounce_ms = 20\n";
                let cluster = "registry_ttl_ms = 3000\n";
                let url = nats.url();
                let mut node =
                    common::cluster_node_unstarted(&url, name, PARTITIONS, 2, top, cluster);
                node.spawn();
                node
            })
            .collect();
        Cluster { nodes, nats }
    }

    fn partition_of(user: u64) -> u32 {
        common::partition_of(PARTITIONS, user)
    }

    /// `count` users from `from` up placed on node `node`.
    fn users_on(node: usize, from: u64, count: usize) -> Vec<u64> {
        common::ids_where(PARTITIONS, from, count, |p| p as usize % 3 == node)
    }

    /// `count` watchers of `watched` on node `node`, each past its first
    /// PRESENCE (which must show `first`).
    fn watchers(
        &self,
        node: usize,
        from: u64,
        count: usize,
        watched: u64,
        first: &[u64],
    ) -> Vec<BlockingClient> {
        Self::users_on(node, from, count)
            .into_iter()
            .map(|u| {
                let mut c = self.nodes[node].connect_granted(u, 1, contacts(&[watched]));
                c.watch(&[UserId(watched)]).expect("watch");
                match c
                    .wait_for(WAIT, |e| matches!(e, Event::Watched(_)))
                    .expect("io")
                {
                    Some(Event::Watched(a)) => assert_eq!((a.code, a.watching), (0, 1), "{a:?}"),
                    other => panic!("no WATCHACK: {other:?}"),
                }
                assert_eq!(
                    next_devices(&mut c, watched),
                    first,
                    "the state at WATCH time"
                );
                c
            })
            .collect()
    }

    /// Sum of `series` on node `node`.
    fn counter(&self, node: usize, series: &str) -> u64 {
        self.nodes[node].counter(series)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_surepush"))
            .arg("cluster")
            .args(args)
            .args(["--nats", &self.nats.url()])
            .output()
            .expect("run surepush cluster")
    }
}

fn contacts(users: &[u64]) -> Acl {
    let names: Vec<String> = users.iter().map(|u| format!("presence/{u}")).collect();
    Acl::new(&names, &[]).expect("valid filters")
}

/// A device session of `user` on `node`, live; retried while the node
/// does not serve the user yet (it has not seen a move's new placement).
fn device(node: &TestServer, user: u64, device: u64) -> BlockingClient {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(c) = try_device(node, user, device) {
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "{user} never served");
        std::thread::sleep(Duration::from_millis(100)); // pacing retries
    }
}

fn try_device(node: &TestServer, user: u64, device: u64) -> Option<BlockingClient> {
    let config = node.client_config(user, device);
    let mut c = BlockingClient::connect(node.addr, config, None, WAIT).ok()?;
    loop {
        match c.next_event(WAIT).ok()?? {
            Event::CaughtUp => return Some(c),
            Event::Error(_) | Event::Disconnected(..) => return None,
            _ => {}
        }
    }
}

/// The next PRESENCE: checked to be about `user`; its device ids.
fn next_devices(c: &mut BlockingClient, user: u64) -> Vec<u64> {
    match c
        .wait_for(WAIT, |e| matches!(e, Event::Presence(_)))
        .expect("io")
    {
        Some(Event::Presence(p)) => devices_of(&p, user),
        other => panic!("no PRESENCE: {other:?}"),
    }
}

fn devices_of(p: &Presence, user: u64) -> Vec<u64> {
    assert_eq!(p.user, UserId(user), "{p:?}");
    p.devices.iter().map(|d| d.device.0).collect()
}

/// PRESENCEs until one shows `want`; every one before it must be one of
/// `between` (states a recovery may pass through).
fn until_devices(c: &mut BlockingClient, user: u64, want: &[u64], between: &[&[u64]]) {
    loop {
        let got = next_devices(c, user);
        if got == want {
            return;
        }
        assert!(
            between.contains(&got.as_slice()),
            "{got:?} on the way to {want:?}"
        );
    }
}

/// Every watcher sees `want` next.
fn all_see(watchers: &mut [BlockingClient], user: u64, want: &[u64]) {
    for (i, w) in watchers.iter_mut().enumerate() {
        assert_eq!(next_devices(w, user), want, "watcher {i}");
    }
}

/// Issue #20: watchers on two other nodes see the watched user's devices
/// come and go, in order, with the right ids; each change is published
/// once by the owner and received once by each watching node (10
/// watchers there each).
#[test]
fn watchers_on_other_nodes_see_every_change_once_per_node() {
    let cluster = Cluster::start();
    let watched = Cluster::users_on(0, 1, 1)[0];
    let mut watchers = cluster.watchers(1, 1_000, 10, watched, &[]);
    watchers.extend(cluster.watchers(2, 1_000, 10, watched, &[]));
    let published =
        |c: &Cluster| c.counter(0, "surepush_cluster_presence_messages_published_total");
    let received =
        |c: &Cluster, n| c.counter(n, "surepush_cluster_presence_messages_received_total");
    let before = (
        published(&cluster),
        received(&cluster, 1),
        received(&cluster, 2),
    );

    let phone = device(&cluster.nodes[0], watched, 10);
    all_see(&mut watchers, watched, &[10]);
    let laptop = device(&cluster.nodes[0], watched, 11);
    all_see(&mut watchers, watched, &[10, 11]);
    drop(phone);
    all_see(&mut watchers, watched, &[11]);
    drop(laptop);
    all_see(&mut watchers, watched, &[]);

    // Four changes: four publishes, four deliveries per watching node.
    let after = (
        published(&cluster),
        received(&cluster, 1),
        received(&cluster, 2),
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (4, 4, 4),
        "NATS messages per presence change: once per node, not per watcher"
    );
}

/// Issue #20: the owner killed with SIGKILL shows the user offline to its
/// watchers (once its registry entry expires) and online again once it is
/// back and the device reconnected, and changes after that flow again.
#[test]
fn watches_survive_kill9_of_the_owner() {
    let mut cluster = Cluster::start();
    let watched = Cluster::users_on(0, 1, 1)[0];
    let mut watchers = cluster.watchers(1, 1_000, 2, watched, &[]);
    let phone = device(&cluster.nodes[0], watched, 10);
    all_see(&mut watchers, watched, &[10]);
    cluster.nodes[0].kill9();
    drop(phone);
    all_see(&mut watchers, watched, &[]);
    cluster.nodes[0].spawn();
    let phone = device(&cluster.nodes[0], watched, 10);
    for w in &mut watchers {
        until_devices(w, watched, &[10], &[&[]]);
    }
    let laptop = device(&cluster.nodes[0], watched, 11);
    all_see(&mut watchers, watched, &[10, 11]);
    drop(laptop);
    all_see(&mut watchers, watched, &[10]);
    drop(phone);
    all_see(&mut watchers, watched, &[]);
}

/// Issue #20: a change made while NATS is down reaches the watchers when
/// NATS is back, and changes after that flow again. NATS comes back
/// within tens of ms here, quicker than the nodes' reconnect poll: the
/// watching node must still see the reconnect and re-read (it once
/// sampled the connection state and missed it, and the watchers then
/// waited for a change that the owner's queued publish had delivered to
/// no one: the watching node had not resubscribed yet).
#[test]
fn watches_recover_after_a_nats_restart() {
    let mut cluster = Cluster::start();
    let watched = Cluster::users_on(0, 1, 1)[0];
    let mut watchers = cluster.watchers(1, 1_000, 2, watched, &[]);
    let phone = device(&cluster.nodes[0], watched, 10);
    all_see(&mut watchers, watched, &[10]);

    // NATS down: the owner's node still serves its own users, but the
    // change it publishes waits in its NATS client and reaches only the
    // nodes resubscribed by then; NATS back: the watchers re-read.
    cluster.nats.kill();
    let laptop = device(&cluster.nodes[0], watched, 11);
    cluster.nats.restart();
    for w in &mut watchers {
        // The owner may look dead for a moment (registry entries expire
        // while NATS is down): offline on the way is allowed.
        until_devices(w, watched, &[10, 11], &[&[], &[10]]);
    }
    drop(laptop);
    all_see(&mut watchers, watched, &[10]);
    drop(phone);
    all_see(&mut watchers, watched, &[]);
}

/// Issue #20: the watched user's partition moves to another node (`surepush
/// cluster move`): watchers on the third node and on the new owner follow
/// it (offline while its device is moved, online once it reconnected to
/// the new owner, then every change there).
#[test]
fn watches_follow_a_partition_move() {
    let cluster = Cluster::start();
    let watched = Cluster::users_on(0, 1, 1)[0];
    let partition = Cluster::partition_of(watched);
    let mut watchers = cluster.watchers(1, 1_000, 2, watched, &[]);
    watchers.extend(cluster.watchers(2, 1_000, 2, watched, &[]));
    let phone = device(&cluster.nodes[0], watched, 10);
    all_see(&mut watchers, watched, &[10]);

    let out = cluster.cli(&["move", "--partition", &partition.to_string(), "--to", "n2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(phone); // the old owner closed it for the move
    let phone = device(&cluster.nodes[2], watched, 10);
    for w in &mut watchers {
        until_devices(w, watched, &[10], &[&[]]);
    }
    let laptop = device(&cluster.nodes[2], watched, 11);
    all_see(&mut watchers, watched, &[10, 11]);
    drop(phone);
    drop(laptop);
    for w in &mut watchers {
        until_devices(w, watched, &[], &[&[11]]);
    }
}
