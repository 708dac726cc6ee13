//! The side-by-side modes against real servers started here: a surepush
//! gateway (native and its MQTT listener), a mosquitto broker (Debian
//! package; skipped with a message if missing) and nats-server 2.15
//! (JetStream, both sync modes). Issue #17 item 5: `compare` reports
//! p50/p99/p99.9 and the server's CPU per message for every system, MQTT
//! systems are also driven by an independent client (rumqttc), and
//! `one-to-one --rate` and `room` run against MQTT brokers.

mod support;

use std::time::Duration;

use support::{Gateway, Mosquitto};
use surepush_loadgen::compare::{run_compare, CompareScenario, MqttClients};
use surepush_loadgen::nats_server::find_nats_server;
use surepush_loadgen::{fresh_user_base, procfs, run_mqtt, run_room, MqttTarget, PairLoad};
use surepush_loadgen::{RoomScenario, Scenario};

#[test]
fn compare_reports_every_system_with_percentiles_and_server_cpu() {
    let gw = Gateway::start();
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    assert_eq!(
        procfs::listener_pid(mosquitto.addr.port()).unwrap(),
        mosquitto.pid()
    );
    let nats = find_nats_server();
    if nats.is_none() {
        eprintln!("note: no nats-server 2.15 (target/nats-venv): JetStream rows not run");
    }
    let s = CompareScenario {
        server: gw.addr(),
        secret: b"smoke".to_vec(),
        server_pid: None,
        pairs: 2,
        messages: 150,
        payload: 64,
        mqtt: vec![("mosquitto".into(), mosquitto.addr)],
        surepush_mqtt: Some(format!("127.0.0.1:{}", gw.mqtt_port).parse().unwrap()),
        surepush_ws: Some(format!("127.0.0.1:{}", gw.ws_port).parse().unwrap()),
        surepush_wss: Some(format!("127.0.0.1:{}", gw.wss_port).parse().unwrap()),
        mqtt_client: MqttClients::Both,
        jetstream: None,
        nats_server_bin: nats.clone(),
        surepush_tls: Some(gw.tls_addr()),
        ca: Some(gw.ca()),
        connects: 20,
        floor_dir: Some(gw.dir.path().to_path_buf()),
    };
    let r = run_compare(&s).unwrap();
    // Issue #17 goal 2: the durable floor beside the run, and every
    // surepush row read against it.
    let floor = r.floor.as_ref().expect("the floor was asked for");
    assert!(floor.fdatasync.p50_ms > 0.0 && floor.round_trip.p50_ms > 0.0);
    assert!(r.to_text().contains("durable floor: fdatasync p50"));
    assert!(
        r.to_text().contains("surepush native QoS 1: ack p50 = "),
        "{}",
        r.to_text()
    );
    let mut expected = vec![
        "raw relay",
        "surepush native QoS 1",
        "surepush native over WebSocket QoS 1",
        "surepush native QoS 1 over TLS",
        "surepush native over WSS QoS 1",
        "surepush MQTT QoS 1 (own codec)",
        "surepush MQTT QoS 1 (rumqttc)",
        "mosquitto (MQTT) QoS 1 (own codec)",
        "mosquitto (MQTT) QoS 1 (rumqttc)",
    ];
    if nats.is_some() {
        expected.extend(["JetStream (default sync)", "JetStream (sync always)"]);
    }
    let names: Vec<&str> = r.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, expected, "{}", r.to_text());
    assert!(r.passed(), "{}", r.to_text());
    // Issue #19 item 6: TCP and TLS connection set-up side by side.
    let connects: Vec<&str> = r.connects.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        connects,
        [
            "surepush native connect (TCP)",
            "surepush native connect (TLS)"
        ]
    );
    assert!(r.connects.iter().all(|c| c.per_s > 0.0), "{}", r.to_text());
    for layered in ["WebSocket", "TLS", "WSS"] {
        assert!(
            r.to_text()
                .contains(&format!("{layered} / TCP (native QoS 1)")),
            "{}",
            r.to_text()
        );
    }
    for system in &r.systems {
        assert_eq!(
            (system.acked, system.delivered),
            (300, 300),
            "{}",
            r.to_text()
        );
        assert!(
            system.msgs_per_s > 0.0 && system.ack_p50_ms > 0.0,
            "{}",
            r.to_text()
        );
        assert!(system.ack_p99_ms >= system.ack_p50_ms, "{}", r.to_text());
        assert!(system.ack_p999_ms >= system.ack_p99_ms, "{}", r.to_text());
        assert!(
            system.deliver_p999_ms >= system.deliver_p50_ms,
            "{}",
            r.to_text()
        );
        // Measured for every system (ticks of 10 ms: a short run may read 0).
        assert!(system.server_cpu_us_per_msg.is_some(), "{}", r.to_text());
    }
    // The relay's own threads are timed in µs: it did use some CPU.
    assert!(r.systems[0].server_cpu_us_per_msg.unwrap() > 0.0);
    // What --json prints: a row per system with the fields issue 17 names.
    let json = serde_json::to_value(&r).unwrap();
    for row in json["systems"].as_array().unwrap() {
        for field in [
            "name",
            "msgs_per_s",
            "ack_p50_ms",
            "ack_p99_ms",
            "ack_p999_ms",
            "server_cpu_us_per_msg",
        ] {
            assert!(row.get(field).is_some(), "{field} missing in {row}");
        }
    }
}

#[test]
fn one_to_one_over_mqtt_keeps_its_rate_against_surepush_and_mosquitto() {
    let gw = Gateway::start();
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let surepush_mqtt = format!("127.0.0.1:{}", gw.mqtt_port).parse().unwrap();
    let surepush = MqttTarget::Surepush {
        secret: b"smoke".to_vec(),
    };
    for (addr, target) in [
        (surepush_mqtt, surepush),
        (mosquitto.addr, MqttTarget::Broker),
    ] {
        let load = PairLoad {
            pairs: 2,
            messages: 100,
            payload: 64,
            rate: 200,
            run: fresh_user_base(),
            server_pid: procfs::listener_pid(addr.port()).ok(),
        };
        let r = run_mqtt(addr, &target, &load).unwrap();
        assert!(r.passed(&load), "{target:?}: {}", r.to_text());
        assert_eq!((r.acked, r.delivered), (200, 200), "{}", r.to_text());
        // Open loop: 100 messages at 200/s take at least 0.495 s (a closed
        // loop on loopback would be done in a fraction of that).
        assert!(r.seconds >= 0.49, "{target:?}: not paced: {}", r.to_text());
        assert!(r.server_cpu_us_per_msg.is_some(), "{}", r.to_text());
        assert!(r.deliver_latency.p999_ms >= r.deliver_latency.p50_ms);
    }
}

fn room(server: std::net::SocketAddr, mqtt: std::net::SocketAddr) -> RoomScenario {
    RoomScenario {
        server,
        secret: b"smoke".to_vec(),
        subscribers: 20,
        messages: 100,
        payload: 64,
        sub_qos: surepush_proto::Qos::AtLeastOnce,
        threads: 2,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base(),
        frozen: 0,
        mqtt: Some(mqtt),
        mqtt_broker: false,
        mqtt_publish: false,
        mqtt_topic: false,
        mqtt_wildcard: false,
        server_pid: None,
        ws: None,
        servers: Vec::new(),
    }
}

#[test]
fn room_over_mqtt_fans_out_through_surepush_and_mosquitto() {
    let gw = Gateway::start();
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let surepush_mqtt = format!("127.0.0.1:{}", gw.mqtt_port).parse().unwrap();
    // surepush: MQTT subscribers, native publisher, then an MQTT
    // publisher, then a free-form topic (issue #21) over MQTT, subscribed
    // by name and by a wildcard filter.
    let runs = [
        (false, false, false),
        (true, false, false),
        (true, true, false),
        (true, true, true),
    ];
    for (mqtt_publish, mqtt_topic, mqtt_wildcard) in runs {
        let s = RoomScenario {
            mqtt_publish,
            mqtt_topic,
            mqtt_wildcard,
            ..room(gw.addr(), surepush_mqtt)
        };
        let r = run_room(&s).unwrap();
        assert!(r.passed(), "{}", r.to_text());
        assert_eq!((r.subscribers, r.published, r.pushes), (20, 100, 2_000));
        assert!(r.server_cpu_us_per_push.is_some(), "{}", r.to_text());
    }
    // mosquitto: a topic of the run's own, publisher over MQTT; by name
    // and by a wildcard filter.
    for mqtt_wildcard in [false, true] {
        let s = RoomScenario {
            mqtt_broker: true,
            mqtt_wildcard,
            secret: Vec::new(),
            ..room(gw.addr(), mosquitto.addr)
        };
        let r = run_room(&s).unwrap();
        assert!(r.passed(), "{}", r.to_text());
        assert_eq!((r.subscribers, r.published, r.pushes), (20, 100, 2_000));
        assert!(r.server_cpu_us_per_push.is_some(), "{}", r.to_text());
    }
}

#[test]
fn one_to_one_reports_the_gateways_cpu_per_message() {
    let gw = Gateway::start();
    let s = Scenario {
        pairs: 2,
        messages: 300,
        qos: surepush_proto::Qos::AtLeastOnce,
        payload: 64,
        timeout: Duration::from_secs(30),
        first_user: fresh_user_base(),
        ..Scenario::new(gw.addr(), b"smoke".to_vec())
    };
    let r = surepush_loadgen::run(&s).unwrap();
    assert!(r.passed(s.qos), "{}", r.to_text());
    // 600 durable messages cost the gateway well over one 10 ms tick.
    assert!(r.server_cpu_us_per_msg.unwrap() > 0.0, "{}", r.to_text());
}
