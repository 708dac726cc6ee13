//! `cluster`: node-local against cross-node pairs on a running cluster.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::{finish, SecretArgs};
use crate::{run_cluster, Scenario};

#[derive(Args)]
pub(super) struct ClusterArgs {
    /// The one-to-one workload each class runs (`--servers` names the
    /// nodes, at least two; `--pairs` is per class).
    #[command(flatten)]
    scenario: Scenario,
    #[command(flatten)]
    secret: SecretArgs,
    /// The nats-server's client address (e.g. 127.0.0.1:4222): its CPU
    /// per message is reported too (the process listening there).
    #[arg(long)]
    nats: Option<SocketAddr>,
    /// After the two classes, run a third (`moving`: fresh cross-node
    /// pairs) and, when half its messages are acknowledged, this shell
    /// command, timed; `{receiver}` in it becomes the first pair's
    /// receiver and `{receiver_node}` the node address it is on, e.g.
    /// `surepush cluster move --nats URL --user {receiver} --to n1` moves
    /// that user's partition while its sender sends. The
    /// report gives the command's time and that pair's longest wait for a
    /// SENDACK; the checker covers every message.
    #[arg(long)]
    move_cmd: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: ClusterArgs) -> Result<ExitCode, String> {
    let ClusterArgs {
        mut scenario,
        secret,
        nats,
        move_cmd,
        json,
    } = args;
    scenario.secret = secret.load()?;
    let report = run_cluster(&scenario, nats, move_cmd.as_deref())?;
    Ok(finish(
        report,
        json,
        |r| r.to_text(),
        |r| r.passed(&scenario),
        "a class lost, repeated or reordered messages",
    ))
}
