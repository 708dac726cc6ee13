//! The fault a one-to-one run injects (`--restart-cmd`): a shell command
//! run once half the messages are acknowledged — kill the gateway and
//! start it again, move a partition — timed, with its output kept for the
//! report. `{receiver}` in the command becomes the first pair's receiver
//! and `{receiver_node}` the address it is connected to, so the command
//! can name that user (`surepush cluster move --user {receiver} --to n1`
//! moves the partition holding it) and pick a node it is not on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Progress, Report};

/// What the fault command did.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaultRun {
    /// The command as run (`{receiver}` filled in).
    pub command: String,
    /// Messages acknowledged when it started.
    pub after_acked: u64,
    /// Its wall time, start to exit (ms).
    pub wall_ms: f64,
    /// What it printed on stdout (trimmed).
    pub output: String,
}

/// The command with `{receiver}` and `{receiver_node}` filled in.
pub(crate) fn fill(template: &str, receiver: u64, node: SocketAddr) -> String {
    template
        .replace("{receiver_node}", &node.to_string())
        .replace("{receiver}", &receiver.to_string())
}

/// Runs `cmd` with `sh -c` once `progress` has `at` acknowledged messages;
/// an error if the senders finish first or the command fails.
pub(crate) fn run_at(
    progress: &Progress,
    at: u64,
    senders_done: &AtomicBool,
    cmd: String,
) -> Result<FaultRun, String> {
    while progress.acked.load(Ordering::Relaxed) < at {
        if senders_done.load(Ordering::Relaxed) {
            return Err("the run ended before the restart point".into());
        }
        // Polls counters the scenario threads bump (no signal to wait on).
        std::thread::sleep(Duration::from_millis(5));
    }
    let after_acked = progress.acked.load(Ordering::Relaxed);
    eprintln!("surepush-loadgen: fault: running {cmd:?}");
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("restart command: {e}"))?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!("restart command failed: {}", out.status));
    }
    let output = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("surepush-loadgen: fault: done in {wall_ms:.0} ms: {output}");
    Ok(FaultRun {
        command: cmd,
        after_acked,
        wall_ms,
        output,
    })
}

impl Report {
    /// What the fault command did, and the longest SENDACK wait of the
    /// first pair (whose receiver `{receiver}` named); empty without one.
    pub fn fault_text(&self) -> String {
        let Some(f) = &self.fault else {
            return String::new();
        };
        format!(
            "fault: {:?} started after {} acked, took {:.0} ms{}
               longest send->ack: first pair {:.1} ms, any pair {:.1} ms
",
            f.command,
            f.after_acked,
            f.wall_ms,
            match f.output.is_empty() {
                true => String::new(),
                false => format!(" ({})", f.output.replace('\n', "; ")),
            },
            self.ack_max_ms_by_pair.first().copied().unwrap_or(0.0),
            self.ack_latency.max_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_and_its_node_are_filled_in_everywhere() {
        let node: SocketAddr = "127.0.0.1:7400".parse().unwrap();
        assert_eq!(
            fill(
                "move --user {receiver} # {receiver} on {receiver_node}",
                42,
                node
            ),
            "move --user 42 # 42 on 127.0.0.1:7400"
        );
        assert_eq!(fill("kill -9 1234", 42, node), "kill -9 1234");
    }
}
