//! `surepush-loadgen`: runs a scenario against a gateway and checks it
//! (the command line is `surepush_loadgen::cli`).

use std::process::ExitCode;

use clap::Parser;
use surepush_loadgen::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
