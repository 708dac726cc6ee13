//! Offline log tools for an operator, run with the gateway stopped (they
//! take the data dir's lock, so a running gateway refuses them):
//! `surepush log verify` (read-only) and `surepush log salvage`.
//!
//! Both work on every `shard-NNN` directory of the data dir, with the log
//! settings the gateway would use ([`Config::log_config`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::config::Config;
use super::data_dir::DataDirLock;
use super::layout;
use super::node::ServeError;
use surepush_log::{RecoveryMode, SegmentLog};

/// The shard directories of a data dir: `shard-NNN` names, by index.
pub fn shard_dirs(data_dir: &Path) -> Result<Vec<(u16, PathBuf)>, ServeError> {
    let io = |e| ServeError::Io {
        context: format!("list {}", data_dir.display()),
        source: e,
    };
    let mut out: Vec<(u16, PathBuf)> = std::fs::read_dir(data_dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let n = name.strip_prefix("shard-")?;
            (n.len() == 3).then_some(())?;
            Some((n.parse().ok()?, p))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Checks every shard's log (and the layout file); returns the report
/// and whether durable records are damaged.
pub fn verify(config: &Config) -> Result<(String, bool), ServeError> {
    // A running gateway writes as we read: its unsynced tail would look torn.
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let mut out = String::new();
    let mut damaged = false;
    let layout_path = config.data_dir.join(layout::LAYOUT_FILE);
    match std::fs::read_to_string(&layout_path) {
        Ok(text) => match layout::parse(&text) {
            Some(n) => {
                let _ = writeln!(out, "{}: ok (shards={n})", layout_path.display());
            }
            None => {
                damaged = true;
                let _ = writeln!(
                    out,
                    "{}: DAMAGED ({:?})",
                    layout_path.display(),
                    text.trim()
                );
            }
        },
        Err(e) => {
            let _ = writeln!(out, "{}: {e}", layout_path.display());
        }
    }
    for (_, dir) in shard_dirs(&config.data_dir)? {
        let report =
            surepush_log::verify::verify(&dir, &config.core.dedup).map_err(|e| ServeError::Io {
                context: format!("verify {}", dir.display()),
                source: e,
            })?;
        damaged |= report.is_damaged();
        out.push_str(&report.to_string());
    }
    Ok((out, damaged))
}

/// Opens every shard's log in salvage mode and closes it again; returns
/// what each salvage did.
pub fn salvage(config: &Config) -> Result<String, ServeError> {
    // Never under a running gateway: it would go on writing into the files
    // salvage rewrites.
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let mut out = String::new();
    for (id, _) in shard_dirs(&config.data_dir)? {
        let log_config = surepush_log::LogConfig {
            recovery: RecoveryMode::Salvage,
            ..config.log_config(id)
        };
        let opened = glommio::LocalExecutorBuilder::default()
            // The smallest registered I/O memory glommio accepts: one log,
            // no sockets.
            .io_memory(512 << 10)
            .name("salvage")
            .spawn(move || async move {
                let (log, _, report) = SegmentLog::open(log_config).await?;
                log.close().await?;
                Ok::<_, surepush_log::LogError>(report)
            })
            .map_err(|e| ServeError::Shard {
                shard: id as usize,
                message: format!("start an executor: {e}"),
            })?
            .join()
            .map_err(|e| ServeError::Shard {
                shard: id as usize,
                message: format!("executor failed: {e}"),
            })?;
        let report = opened.map_err(|e| ServeError::Shard {
            shard: id as usize,
            message: e.to_string(),
        })?;
        match &report.salvage {
            Some(s) => {
                let _ = write!(
                    out,
                    "shard {id}: salvaged, {} records kept, {} lost\n{s}",
                    report.records,
                    s.lost.len()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "shard {id}: no damage ({} records){}",
                    report.records,
                    report
                        .truncated
                        .map(|(lsn, why)| format!("; a torn tail was cut at lsn {lsn} ({why})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(out)
}
