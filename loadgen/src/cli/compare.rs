//! `compare`: every system side by side (see `crate::compare`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{finish, read_data_file};
use crate::compare::{run_compare, CompareScenario};

#[derive(Args)]
pub(super) struct CompareArgs {
    #[command(flatten)]
    scenario: CompareScenario,
    /// The gateway's data dir (for token.secret; the durable floor's
    /// `fdatasync`s are timed in it too).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Print JSON (every system's row) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: CompareArgs) -> Result<ExitCode, String> {
    let mut s = args.scenario;
    s.secret = read_data_file(&args.data_dir, "token.secret")?.into_bytes();
    s.floor_dir = Some(args.data_dir.clone());
    Ok(finish(
        run_compare(&s)?,
        args.json,
        |r| r.to_text(),
        |r| r.passed(),
        "a system failed its run or its delivery check",
    ))
}
