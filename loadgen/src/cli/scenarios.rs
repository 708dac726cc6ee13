//! `room`, `group`, `backlog`, `storm` and `idle`: each parses into its
//! scenario config, gets its secret (and what else comes from the data
//! dir or /proc) and runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{finish, read_data_file, SecretArgs};
use crate::{procfs, run_backlog, run_group, run_idle, run_room, run_room_with_frozen, run_storm};
use crate::{BacklogScenario, GroupScenario, IdleScenario, RoomScenario, StormScenario};

#[derive(Args)]
pub(super) struct RoomArgs {
    #[command(flatten)]
    scenario: RoomScenario,
    #[command(flatten)]
    secret: SecretArgs,
    /// Share of the subscribers (0..1; any share above 0 is at least one)
    /// that stop reading after their SUBACK, like a stopped process. Runs
    /// the room three times (without, with, without; rooms 1, 2, 3) and
    /// reports the throughput with them over the mean without.
    #[arg(long, default_value_t = 0.0)]
    freeze_share: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn room(args: RoomArgs) -> Result<ExitCode, String> {
    let RoomArgs {
        mut scenario,
        secret,
        freeze_share,
        json,
    } = args;
    if !(0.0..=1.0).contains(&freeze_share) {
        return Err("--freeze-share must be between 0 and 1".into());
    }
    if !scenario.mqtt_broker {
        scenario.secret = secret.load()?;
    }
    scenario.frozen = (f64::from(scenario.subscribers) * freeze_share).ceil() as u32;
    if scenario.frozen > 0 {
        return Ok(finish(
            run_room_with_frozen(&scenario)?,
            json,
            |r| r.to_text(),
            |r| r.passed(),
            "room delivery to the reading subscribers incomplete or out of order",
        ));
    }
    Ok(finish(
        run_room(&scenario)?,
        json,
        |r| r.to_text(),
        |r| r.passed(),
        "room delivery incomplete or out of order",
    ))
}

#[derive(Args)]
pub(super) struct GroupArgs {
    #[command(flatten)]
    scenario: GroupScenario,
    /// The gateway's data dir (token.secret and admin.token).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn group(args: GroupArgs) -> Result<ExitCode, String> {
    let mut s = args.scenario;
    s.secret = read_data_file(&args.data_dir, "token.secret")?.into_bytes();
    s.admin_token = read_data_file(&args.data_dir, "admin.token")?;
    Ok(finish(
        run_group(&s)?,
        args.json,
        |r| r.to_text(),
        |r| r.passed(),
        "group delivery incomplete or out of order",
    ))
}

#[derive(Args)]
pub(super) struct BacklogArgs {
    #[command(flatten)]
    scenario: BacklogScenario,
    #[command(flatten)]
    secret: SecretArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn backlog(args: BacklogArgs) -> Result<ExitCode, String> {
    let mut s = args.scenario;
    s.secret = args.secret.load()?;
    Ok(finish(
        run_backlog(&s)?,
        args.json,
        |r| r.to_text(),
        |r| r.passed(),
        "backlog replay incomplete, repeated or out of order",
    ))
}

#[derive(Args)]
pub(super) struct StormArgs {
    #[command(flatten)]
    scenario: StormScenario,
    #[command(flatten)]
    secret: SecretArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn storm(args: StormArgs) -> Result<ExitCode, String> {
    let mut s = args.scenario;
    s.secret = args.secret.load()?;
    Ok(finish(
        run_storm(&s)?,
        args.json,
        |r| r.to_text(),
        |r| r.passed(),
        "a message was lost, repeated or reordered across the drops, or a round did not finish",
    ))
}

#[derive(Args)]
pub(super) struct IdleArgs {
    #[command(flatten)]
    scenario: IdleScenario,
    #[command(flatten)]
    secret: SecretArgs,
    /// The gateway's pid (its RSS is sampled); default: the process
    /// listening on the `--server` port, found through /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn idle(args: IdleArgs) -> Result<ExitCode, String> {
    let mut s = args.scenario;
    if !s.mqtt_broker {
        s.secret = args.secret.load()?;
    }
    s.server_pid = match args.server_pid {
        Some(pid) => pid,
        None => procfs::listener_pid(s.server.port())?,
    };
    Ok(finish(
        run_idle(&s)?,
        args.json,
        |r| r.to_text(),
        |r| r.passed(),
        "not every connection went live, or the gateway closed some",
    ))
}
