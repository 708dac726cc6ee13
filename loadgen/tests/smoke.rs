//! CI smoke run: a real gateway on loopback, a short one-to-one scenario at
//! QoS 1 and 2 (closed and open loop), and the checker's verdict.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use surepush::proto::Qos;
use surepush_loadgen::{
    fresh_user_base, run, run_group, run_mqtt, run_raw, run_room, start_relay, GroupScenario,
    MqttTarget, RoomScenario, Scenario,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary built next to this test (`target/<profile>/surepush`).
fn gateway_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("surepush");
    assert!(
        bin.exists(),
        "{} missing: build the workspace first (cargo build)",
        bin.display()
    );
    bin
}

struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn one_to_one_smoke_passes_the_checker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin_port = free_port();
    let mqtt_port = free_port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nshards = 2\n\
             pin_cores = false\nio_memory_kib = 1024\ntoken_secret = \"smoke\"\n[log]\nsegment_mib = 8\n\
             [mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n",
            admin_port,
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(gateway_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _gateway = Gateway(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut serving = 0;
    while serving < 2 {
        let line = lines.next().expect("gateway exited").unwrap();
        serving += usize::from(line.contains("serving"));
    }
    std::thread::spawn(move || for _ in lines {});
    for (qos, rate) in [
        (Qos::AtLeastOnce, 0),
        (Qos::ExactlyOnce, 0),
        (Qos::AtLeastOnce, 500),
    ] {
        let s = Scenario {
            server: format!("127.0.0.1:{port}").parse().unwrap(),
            secret: b"smoke".to_vec(),
            pairs: 3,
            messages: 150,
            qos,
            rate,
            payload: 64,
            timeout: Duration::from_secs(30),
            first_user: fresh_user_base() + u64::from(rate) * 10_000 + qos as u64 * 100_000,
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
    // The room scenario: every subscriber gets every message in order.
    for sub_qos in [Qos::AtMostOnce, Qos::AtLeastOnce] {
        let s = RoomScenario {
            server: format!("127.0.0.1:{port}").parse().unwrap(),
            secret: b"smoke".to_vec(),
            subscribers: 100,
            messages: 200,
            payload: 64,
            sub_qos,
            threads: 2,
            timeout: Duration::from_secs(30),
            first_user: fresh_user_base() + 1_000_000 + sub_qos as u64 * 100_000,
        };
        let r = run_room(&s).unwrap();
        assert!(r.passed(), "{}", r.to_text());
        assert_eq!((r.subscribers, r.published, r.pushes), (100, 200, 20_000));
    }
    // The raw relay baseline runs the same workload and checks it.
    let relay = start_relay().unwrap();
    let raw = run_raw(relay.addr, 3, 150, 64).unwrap();
    assert_eq!((raw.acked, raw.delivered), (450, 450));
    assert!(raw.acked_per_sec > 0.0);
    // The group scenario: 20 members, each gets every message once, in order.
    let admin_token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
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
    let m = run_mqtt(addr, &target, 3, 150, 64, fresh_user_base() + 7_000_000).unwrap();
    assert_eq!((m.acked, m.delivered), (450, 450));
}
