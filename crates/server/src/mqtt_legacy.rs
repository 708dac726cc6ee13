//! The one-time move of the MQTT state files of earlier builds into the
//! segment log (issue #16 item 4).
//!
//! Earlier builds kept MQTT sessions and retained messages in files under
//! `<data_dir>/mqtt/` (`sessions/{user}-{device}`, `retained/room-{n}`,
//! each `SPMQ` + CRC32C + body, or a bare body before the checksum
//! existed). On the first start of this build every file is read and
//! checked once; each shard appends the records of the keys it owns and
//! makes them durable; when every shard has, the directory is renamed to
//! `mqtt.migrated` (and its parent synced), and only then does any shard
//! serve. A crash before the rename repeats the move on the next start:
//! appending the same values again is harmless, since nothing was served
//! in between that could have changed them.
//!
//! A damaged file refuses the start (naming it), or with
//! `log.recovery = "salvage"` is left out (logged at ERROR; the file stays
//! in the renamed directory).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use surepush_core::{Router, ShardId};
use surepush_log::storage::{StdStorage, Storage};
use surepush_log::{Record, RecoveredState, SegmentLog, StateKey};
use surepush_mqtt::bridge::{Retained, SessionState};
use surepush_proto::{DeviceId, UserId, ROOM_BIT};

/// Name of the legacy directory under the data dir.
const LEGACY_DIR: &str = "mqtt";
/// What it is renamed to once moved into the logs.
const MIGRATED_DIR: &str = "mqtt.migrated";
/// First bytes of a state file written with its checksum.
const STATE_MAGIC: [u8; 4] = *b"SPMQ";

/// The legacy files' contents, on their way into the shards' logs.
#[derive(Debug)]
pub(crate) struct LegacyMqttState {
    dir: PathBuf,
    records: Vec<(StateKey, Bytes)>,
    shards: usize,
    /// Shards whose records are durable.
    appended: AtomicUsize,
    /// The directory is renamed: the shards may serve.
    moved: AtomicBool,
}

impl LegacyMqttState {
    /// Reads and checks `<data_dir>/mqtt`, if there is one. A damaged file
    /// is an error, or with `salvage` is left out.
    pub(crate) fn read(
        data_dir: &Path,
        salvage: bool,
        shards: usize,
    ) -> std::io::Result<Option<LegacyMqttState>> {
        let dir = data_dir.join(LEGACY_DIR);
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut records = Vec::new();
        for (path, name) in files(&dir.join("retained"))? {
            let Some(room) = name
                .strip_prefix("room-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue; // a temp file of an interrupted write, or foreign
            };
            let bytes = std::fs::read(&path)?;
            match unframe(&bytes).and_then(Retained::decode) {
                Some(msg) if room < ROOM_BIT => records.push((
                    StateKey::Retained {
                        room: UserId(room | ROOM_BIT),
                    },
                    msg.encode(),
                )),
                _ => damaged(&path, salvage)?,
            }
        }
        for (path, name) in files(&dir.join("sessions"))? {
            let parsed = name
                .split_once('-')
                .and_then(|(u, d)| Some((u.parse().ok()?, d.parse().ok()?)));
            let Some((user, device)) = parsed else {
                continue; // a temp file, one moved aside, or foreign
            };
            let bytes = std::fs::read(&path)?;
            match unframe(&bytes).and_then(SessionState::decode) {
                Some(state) => records.push((
                    StateKey::MqttSession {
                        user: UserId(user),
                        device: DeviceId(device),
                    },
                    Bytes::from(state.encode()),
                )),
                None => damaged(&path, salvage)?,
            }
        }
        tracing::info!(dir = %dir.display(), records = records.len(), "moving MQTT state files into the log");
        Ok(Some(LegacyMqttState {
            dir,
            records,
            shards,
            appended: AtomicUsize::new(0),
            moved: AtomicBool::new(false),
        }))
    }

    /// Appends the records shard `shard` owns to its log and to what it
    /// recovered, makes them durable, then waits until every shard has and
    /// the directory is renamed (the last shard renames it). Gives up if
    /// the node stops meanwhile (`stopping`).
    pub(crate) async fn move_into(
        &self,
        shard: u16,
        log: &SegmentLog,
        recovered: &mut RecoveredState,
        stopping: &AtomicBool,
    ) -> Result<(), String> {
        let shards = u16::try_from(self.shards).map_err(|e| e.to_string())?;
        let router = Router::new(ShardId(shard), shards);
        for (key, value) in &self.records {
            if key.owner().is_none_or(|owner| !router.is_mine(owner)) {
                continue;
            }
            let record = Record::State {
                key: *key,
                value: Some(value.clone()),
            };
            log.append(&record)
                .map_err(|e| format!("moving MQTT state into the log: {e}"))?;
            recovered.keyed.insert(*key, value.clone());
        }
        log.flush()
            .await
            .map_err(|e| format!("moving MQTT state into the log: {e}"))?;
        if self.appended.fetch_add(1, Ordering::AcqRel) + 1 == self.shards {
            let to = self.dir.with_file_name(MIGRATED_DIR);
            let data_dir = self.dir.parent().expect("the data dir holds it");
            StdStorage
                .rename(&self.dir, &to)
                .and_then(|()| StdStorage.sync_dir(data_dir))
                .map_err(|e| format!("renaming {} to {}: {e}", self.dir.display(), to.display()))?;
            tracing::info!(moved_to = %to.display(), "MQTT state files moved into the log");
            self.moved.store(true, Ordering::Release);
        }
        while !self.moved.load(Ordering::Acquire) {
            if stopping.load(Ordering::Relaxed) {
                return Err("stopped while moving MQTT state into the log".into());
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// The regular files of `dir` with their names (none if it is missing).
fn files(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains('.') && path.is_file() {
            let name = name.to_string();
            out.push((path, name));
        }
    }
    out.sort();
    Ok(out)
}

/// The content of a state file, verified; a file written before the
/// checksum existed is returned as it is (its decoder still checks its
/// shape). `None`: damaged.
fn unframe(file: &[u8]) -> Option<&[u8]> {
    let Some(rest) = file.strip_prefix(&STATE_MAGIC) else {
        return Some(file);
    };
    let (crc, body) = rest.split_first_chunk::<4>()?;
    (crc32c::crc32c(body) == u32::from_le_bytes(*crc)).then_some(body)
}

/// A state file that does not verify: refuse to start, or (salvage) leave
/// it out.
fn damaged(path: &Path, salvage: bool) -> std::io::Result<()> {
    if !salvage {
        return Err(std::io::Error::other(format!(
            "{} is damaged (checksum or layout); nothing was changed. Start once with \
             log.recovery = \"salvage\" to go on without it",
            path.display()
        )));
    }
    tracing::error!(file = %path.display(), "salvage: a damaged MQTT state file left out of the move into the log (that session or retained message is lost)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use surepush_mqtt::QoS;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn legacy_dir(root: &Path) -> PathBuf {
        let dir = root.join(LEGACY_DIR);
        std::fs::create_dir_all(dir.join("sessions")).unwrap();
        std::fs::create_dir_all(dir.join("retained")).unwrap();
        let msg = Retained {
            from: UserId(1),
            qos: QoS::AtLeastOnce,
            payload: Bytes::from_static(b"status"),
        };
        std::fs::write(dir.join("retained/room-4"), frame(&msg.encode())).unwrap();
        // Written before the checksum existed: still read.
        std::fs::write(dir.join("retained/room-5"), msg.encode()).unwrap();
        std::fs::write(
            dir.join("sessions/3-2"),
            frame(&SessionState::new(77).encode()),
        )
        .unwrap();
        std::fs::write(dir.join("sessions/3-2.tmp"), b"half written").unwrap();
        dir
    }

    /// Every file of an earlier build becomes a keyed record; temp files
    /// are ignored.
    #[test]
    fn the_files_of_earlier_builds_become_keyed_records() {
        let root = tempfile::tempdir().unwrap();
        legacy_dir(root.path());
        let legacy = LegacyMqttState::read(root.path(), false, 2)
            .unwrap()
            .expect("a legacy dir");
        let mut keys: Vec<StateKey> = legacy.records.iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                StateKey::MqttSession {
                    user: UserId(3),
                    device: DeviceId(2)
                },
                StateKey::Retained {
                    room: UserId(4 | ROOM_BIT)
                },
                StateKey::Retained {
                    room: UserId(5 | ROOM_BIT)
                },
            ]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(LegacyMqttState::read(empty.path(), false, 2)
            .unwrap()
            .is_none());
    }

    /// Issue 23 item 4, kept for the move: a flipped byte in a legacy file
    /// refuses the start (naming it, nothing changed); salvage leaves that
    /// file out and moves the rest.
    #[test]
    fn a_damaged_legacy_file_refuses_the_start_and_salvage_leaves_it_out() {
        let root = tempfile::tempdir().unwrap();
        let dir = legacy_dir(root.path());
        let path = dir.join("sessions/3-2");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let e = LegacyMqttState::read(root.path(), false, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sessions/3-2") && e.contains("damaged"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing changed");
        let salvaged = LegacyMqttState::read(root.path(), true, 1)
            .unwrap()
            .expect("a legacy dir");
        assert_eq!(salvaged.records.len(), 2, "the two retained messages");
    }
}
