//! `mixed`: one-to-one (open loop), a room and a group at the same time,
//! each with its own checker. Its options describe the mix, not one
//! scenario, so the three configs are built from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use surepush_proto::Qos;

use super::{read_data_file, verdict};
use crate::{fresh_user_base, run, run_group, run_room};
use crate::{GroupScenario, RoomScenario, Scenario};

#[derive(Args)]
pub(super) struct MixedArgs {
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    server: SocketAddr,
    /// Admin HTTP address (the group is created there).
    #[arg(long, default_value = "127.0.0.1:7401")]
    admin: SocketAddr,
    /// The gateway's data dir (token.secret and admin.token).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// One-to-one sender/receiver pairs.
    #[arg(long, default_value_t = 8)]
    pairs: u32,
    /// Messages per one-to-one sender, and published to the room and to the group.
    #[arg(long, default_value_t = 2000)]
    messages: u32,
    /// One-to-one messages per second per sender.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Room subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: u32,
    /// Group members.
    #[arg(long, default_value_t = 50)]
    members: u32,
    /// Payload bytes (>= 16).
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(super) fn run_mixed(args: MixedArgs) -> Result<ExitCode, String> {
    let MixedArgs {
        server,
        admin,
        data_dir,
        pairs,
        messages,
        rate,
        subscribers,
        members,
        payload,
        timeout_s,
        json,
    } = args;
    let secret = read_data_file(&data_dir, "token.secret")?.into_bytes();
    let admin_token = read_data_file(&data_dir, "admin.token")?;
    let timeout = Duration::from_secs(timeout_s);
    let base = fresh_user_base();
    let one = Scenario {
        pairs,
        messages,
        qos: Qos::AtLeastOnce,
        rate,
        payload,
        timeout,
        first_user: base,
        ..Scenario::new(server, secret.clone())
    };
    let room = RoomScenario {
        server,
        secret: secret.clone(),
        subscribers,
        messages,
        payload,
        sub_qos: Qos::AtLeastOnce,
        threads: 1,
        timeout,
        first_user: base + 1_000_000,
        frozen: 0,
        mqtt: None,
        mqtt_broker: false,
        mqtt_publish: false,
        mqtt_topic: false,
        mqtt_wildcard: false,
        server_pid: None,
        ws: None,
        servers: Vec::new(),
    };
    let group = GroupScenario {
        server,
        admin,
        admin_token,
        secret,
        members,
        messages,
        payload,
        threads: 1,
        timeout,
        first_user: base + 2_000_000,
    };
    let (one, room, group) = std::thread::scope(|s| {
        let one = s.spawn(|| run(&one));
        let room = s.spawn(|| run_room(&room));
        let group = s.spawn(|| run_group(&group));
        let panicked = "a scenario thread panicked".to_string();
        (
            one.join().unwrap_or_else(|_| Err(panicked.clone())),
            room.join().unwrap_or_else(|_| Err(panicked.clone())),
            group.join().unwrap_or(Err(panicked)),
        )
    });
    let (one, room, group) = (one?, room?, group?);
    let passed = one.passed(Qos::AtLeastOnce) && room.passed() && group.passed();
    if json {
        let all = serde_json::json!({ "one_to_one": one, "room": room, "group": group });
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("serialisable")
        );
    } else {
        print!(
            "one-to-one ({pairs} pairs at {rate} msgs/s each):\n{}\nroom:\n{}\ngroup:\n{}",
            one.to_text(),
            room.to_text(),
            group.to_text()
        );
    }
    Ok(verdict(passed, "a scenario's checker failed"))
}
