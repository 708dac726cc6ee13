//! CI smoke runs: a real gateway on loopback, short runs of every scenario
//! (one-to-one at QoS 1 and 2, closed and open loop; room; group; the raw
//! relay; MQTT; backlog replay; reconnect storm; idle connections), and
//! each checker's verdict.

mod support;

use std::time::Duration;

use support::{gateway_binary, Gateway};
use surepush_loadgen::{
    fresh_user_base, procfs, run, run_backlog, run_group, run_idle, run_mqtt, run_raw, run_room,
    run_room_with_frozen, run_storm, start_relay, BacklogScenario, DropMode, GroupScenario,
    IdleScenario, MqttTarget, PairLoad, RoomScenario, Scenario, StormScenario,
};
use surepush_proto::Qos;

#[test]
fn one_to_one_smoke_passes_the_checker() {
    let gw = Gateway::start();
    let (port, admin_port, mqtt_port) = (gw.port, gw.admin_port, gw.mqtt_port);
    for (qos, rate) in [
        (Qos::AtLeastOnce, 0),
        (Qos::ExactlyOnce, 0),
        (Qos::AtLeastOnce, 500),
    ] {
        let s = Scenario {
            pairs: 3,
            messages: 150,
            qos,
            rate,
            payload: 64,
            timeout: Duration::from_secs(30),
            first_user: fresh_user_base() + u64::from(rate) * 10_000 + qos as u64 * 100_000,
            ..Scenario::new(
                format!("127.0.0.1:{port}").parse().unwrap(),
                b"smoke".to_vec(),
            )
        };
        let r = run(&s).unwrap();
        assert!(r.passed(qos), "{qos:?}/{rate}: {}", r.to_text());
        assert_eq!(
            (r.sent, r.acked, r.delivered),
            (450, 450, 450),
            "{}",
            r.to_text()
        );
        assert!(r.ack_latency.p50_ms > 0.0 && r.deliver_latency.p99_ms >= r.deliver_latency.p50_ms);
    }
    // The room scenario: every subscriber gets every message in order,
    // native, MQTT and WebSocket (issue #19 item 6) subscribers alike.
    let mqtt_addr: std::net::SocketAddr = format!("127.0.0.1:{mqtt_port}").parse().unwrap();
    let ws: std::net::SocketAddr = format!("127.0.0.1:{}", gw.ws_port).parse().unwrap();
    for (sub_qos, mqtt, over_ws) in [
        (Qos::AtMostOnce, None, None),
        (Qos::AtLeastOnce, None, None),
        (Qos::AtMostOnce, Some(mqtt_addr), None),
        (Qos::AtLeastOnce, Some(mqtt_addr), None),
        (Qos::AtMostOnce, None, Some(ws)),
        (Qos::AtLeastOnce, None, Some(ws)),
    ] {
        let s = RoomScenario {
            server: format!("127.0.0.1:{port}").parse().unwrap(),
            secret: b"smoke".to_vec(),
            subscribers: 100,
            messages: 200,
            payload: 64,
            sub_qos,
            threads: 2,
            timeout: Duration::from_secs(30),
            first_user: fresh_user_base()
                + 1_000_000
                + sub_qos as u64 * 100_000
                + u64::from(mqtt.is_some()) * 10_000
                + u64::from(over_ws.is_some()) * 20_000,
            frozen: 0,
            mqtt,
            mqtt_broker: false,
            mqtt_publish: false,
            mqtt_topic: false,
            mqtt_wildcard: false,
            server_pid: None,
            ws: over_ws,
            servers: Vec::new(),
        };
        let r = run_room(&s).unwrap();
        assert!(r.passed(), "{}", r.to_text());
        assert_eq!((r.subscribers, r.published, r.pushes), (100, 200, 20_000));
        // Both sides of the machine are metered (issue #17 goal 6): the
        // load generator's receive work is not free.
        assert!(r.server_cpu_us_per_push.is_some(), "{}", r.to_text());
        assert!(r.client_cpu_us_per_push.unwrap() > 0.0, "{}", r.to_text());
    }
    // Issue #19 item 6: one-to-one over the WebSocket listener (native
    // protocol in binary messages), the same checker.
    let s = Scenario {
        pairs: 3,
        messages: 150,
        qos: Qos::AtLeastOnce,
        payload: 64,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base() + 3_000_000,
        ws: Some(ws),
        ..Scenario::new(
            format!("127.0.0.1:{port}").parse().unwrap(),
            b"smoke".to_vec(),
        )
    };
    let r = run(&s).unwrap();
    assert!(
        r.passed(Qos::AtLeastOnce),
        "over WebSocket: {}",
        r.to_text()
    );
    assert_eq!(
        (r.sent, r.acked, r.delivered),
        (450, 450, 450),
        "{}",
        r.to_text()
    );
    // With a subscriber that stops reading: run twice, compared.
    let s = RoomScenario {
        server: format!("127.0.0.1:{port}").parse().unwrap(),
        secret: b"smoke".to_vec(),
        subscribers: 20,
        messages: 100,
        payload: 64,
        sub_qos: Qos::AtLeastOnce,
        threads: 2,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base() + 3_000_000,
        frozen: 1,
        mqtt: None,
        mqtt_broker: false,
        mqtt_publish: false,
        mqtt_topic: false,
        mqtt_wildcard: false,
        server_pid: None,
        ws: None,
        servers: Vec::new(),
    };
    let r = run_room_with_frozen(&s).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert_eq!((r.baseline.frozen, r.baseline.pushes), (0, 2_000));
    assert_eq!((r.with_frozen.frozen, r.with_frozen.pushes), (1, 1_900));
    assert_eq!(
        (r.baseline_again.frozen, r.baseline_again.pushes),
        (0, 2_000)
    );
    assert!(r.ratio > 0.0, "{}", r.to_text());
    // The raw relay baseline runs the same workload and checks it.
    let relay = start_relay().unwrap();
    let load = PairLoad {
        pairs: 3,
        messages: 150,
        payload: 64,
        rate: 0,
        run: fresh_user_base() + 7_000_000,
        server_pid: None,
    };
    let raw = run_raw(&relay, &load).unwrap();
    assert_eq!((raw.acked, raw.delivered), (450, 450));
    assert!(raw.acked_per_sec > 0.0);
    // The group scenario: 20 members, each gets every message once, in order.
    let admin_token = std::fs::read_to_string(gw.dir.path().join("data/admin.token")).unwrap();
    let s = GroupScenario {
        server: format!("127.0.0.1:{port}").parse().unwrap(),
        admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
        admin_token: admin_token.trim().to_string(),
        secret: b"smoke".to_vec(),
        members: 20,
        messages: 100,
        payload: 64,
        threads: 2,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base() + 5_000_000,
    };
    let r = run_group(&s).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert_eq!((r.members, r.published, r.pushes), (19, 100, 1_900));
    // The same one-to-one workload over the gateway's MQTT listener.
    let target = MqttTarget::Surepush {
        secret: b"smoke".to_vec(),
    };
    let addr = format!("127.0.0.1:{mqtt_port}").parse().unwrap();
    let m = run_mqtt(addr, &target, &load).unwrap();
    assert_eq!((m.acked, m.delivered), (450, 450));
}

#[test]
fn backlog_storm_and_idle_smoke_pass_their_checkers() {
    let gw = Gateway::start();
    // Idle first, on a fresh gateway: its RSS growth is the connections'
    // (a small run may fit in memory the allocator already holds, so only
    // the bounds are checked, not the exact growth).
    assert_eq!(procfs::listener_pid(gw.port).unwrap(), gw.child.id());
    let s = IdleScenario {
        server: gw.addr(),
        secret: b"smoke".to_vec(),
        connections: 1000,
        server_pid: gw.child.id(),
        hold: Duration::from_secs(2),
        threads: 2,
        connecting: 64,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base() + 1_000_000,
        mqtt: false,
        mqtt_broker: false,
        watch: 0,
    };
    let r = run_idle(&s).unwrap();
    eprint!("{}", r.to_text());
    assert!(r.passed(), "{}", r.to_text());
    assert_eq!((r.live, r.closed), (1000, 0), "{}", r.to_text());
    // Connections cost memory: RSS grows. This failed now and then (the
    // growth came out negative) until the gateway here was started with
    // MIMALLOC_PURGE_DELAY=0 (see support::Gateway::start).
    assert!(
        r.rss_before_kib > 1024 && r.rss_live_kib > r.rss_before_kib,
        "{}",
        r.to_text()
    );
    assert!(r.kib_per_connection < 256.0, "{}", r.to_text());
    assert!(r.hold_seconds >= 2.0 && r.loadgen_kib_per_connection > 0.0);

    // The same over MQTT (issue #21 item 5): persistent sessions, each
    // subscribed to its own inbox, held open.
    let mqtt = IdleScenario {
        server: format!("127.0.0.1:{}", gw.mqtt_port).parse().unwrap(),
        connections: 200,
        first_user: fresh_user_base() + 3_000_000,
        mqtt: true,
        ..s
    };
    let r = run_idle(&mqtt).unwrap();
    eprint!("{}", r.to_text());
    assert_eq!((r.live, r.closed), (200, 0), "{}", r.to_text());
    assert!(r.passed(), "{}", r.to_text());

    // Backlog: 50 offline receivers x 40 messages, replayed in pages of 16.
    let s = BacklogScenario {
        server: gw.addr(),
        secret: b"smoke".to_vec(),
        receivers: 50,
        messages: 40,
        senders: 3,
        payload: 64,
        page: 16,
        threads: 2,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base() + 2_000_000,
    };
    let r = run_backlog(&s).unwrap();
    assert!(r.passed(), "{}", r.to_text());
    assert_eq!(
        (r.stored, r.check.delivered, r.caught_up, r.closed),
        (2_000, 2_000, 50, 0),
        "{}",
        r.to_text()
    );
    assert!(r.send_msgs_per_s > 0.0 && r.replay_msgs_per_s > 0.0);
    assert!(r.catch_up.p50_ms > 0.0 && r.catch_up.p50_ms <= r.catch_up.max_ms);
    assert!(r.replay_seconds * 1000.0 >= r.catch_up.max_ms * 0.99);

    // Storm: every client dropped each round (reset, close), then half of
    // them going silent; one message per client per round, each once.
    for (k, mode, rate, rounds) in [
        (0, DropMode::Reset, 1.0, 3),
        (1, DropMode::Close, 1.0, 2),
        (2, DropMode::Silent, 0.5, 3),
    ] {
        let s = StormScenario {
            server: gw.addr(),
            secret: b"smoke".to_vec(),
            clients: 80,
            rounds,
            drop_rate: rate,
            drop_mode: mode,
            senders: 2,
            payload: 64,
            threads: 2,
            timeout: Duration::from_secs(40),
            seed: 7,
            first_user: fresh_user_base() + 3_000_000 + k * 100_000,
        };
        let r = run_storm(&s).unwrap();
        assert!(r.passed(), "{}", r.to_text());
        assert_eq!(r.rounds.len(), rounds as usize, "{}", r.to_text());
        assert_eq!(r.check.delivered, 80 * u64::from(rounds), "{}", r.to_text());
        for round in &r.rounds {
            assert_eq!(round.reconnected, round.dropped, "{}", r.to_text());
            if rate == 1.0 {
                assert_eq!(round.dropped, 80, "{}", r.to_text());
            } else {
                assert!(round.dropped > 10 && round.dropped < 70, "{}", r.to_text());
            }
            assert!(round.reconnects_per_s > 0.0 && round.live_seconds >= round.reconnect_seconds);
            assert!(round.connack.p50_ms > 0.0 && round.connack.p99_ms >= round.connack.p50_ms);
        }
    }
}

#[test]
fn one_to_one_survives_a_kill_9_and_restart_of_the_gateway_midway() {
    let gw = Gateway::start();
    let pid_file = gw.dir.path().join("gateway.pid");
    std::fs::write(&pid_file, gw.child.id().to_string()).unwrap();
    // The fault: SIGKILL the gateway, wait until it is dead, start it again
    // on the same config and data, wait for its port.
    let script = gw.dir.path().join("restart.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nold=$(cat {pid})\nkill -9 $old\n\
             while [ -e /proc/$old ] && ! grep -q '^State:.*Z' /proc/$old/status; do sleep 0.01; done\n\
             {bin} serve --config {cfg} >/dev/null 2>&1 &\necho $! > {pid}\n\
             for i in $(seq 1 500); do (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.02; done\nexit 1\n",
            pid = pid_file.display(),
            bin = gateway_binary().display(),
            cfg = gw.dir.path().join("c.toml").display(),
            port = gw.port,
        ),
    )
    .unwrap();
    let s = Scenario {
        pairs: 3,
        messages: 300,
        qos: Qos::ExactlyOnce,
        payload: 64,
        timeout: Duration::from_secs(60),
        first_user: fresh_user_base() + 9_000_000,
        restart_cmd: Some(format!("bash {}", script.display())),
        ..Scenario::new(gw.addr(), b"smoke".to_vec())
    };
    let r = run(&s);
    // Whatever happened, stop the restarted gateway.
    let restarted: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(
        restarted as u32,
        gw.child.id(),
        "the fault ran and restarted the gateway"
    );
    // SAFETY: plain kill(2) of the process the script started.
    unsafe { libc::kill(restarted, libc::SIGKILL) };
    let r = r.unwrap();
    assert!(r.passed(Qos::ExactlyOnce), "{}", r.to_text());
    assert_eq!(
        (r.sent, r.acked, r.delivered, r.duplicates),
        (900, 900, 900, 0),
        "{}",
        r.to_text()
    );
}
