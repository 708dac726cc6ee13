//! Issue #18 item 4: every whole-file write and delete of the log goes
//! through the storage seam, so each can fail, tear or crash here; each
//! leads to its documented outcome and no acknowledged record is lost
//! (identity checked: inbox, seq, sender, payload).

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use super::damage_tests::{flip, salvage_config, snapshot, write_acknowledged};
use super::fault::{Fault, Faults, FaultyFs, Op};
use super::tests::{config, msg, read_from_start, retention_config, run};
use super::*;
use surepush_proto::{DeviceId, Seq, UserId};

/// The messages `msg(inbox, 1..=last, len)` wrote.
fn expected(inbox: u64, last: u64, len: usize) -> Vec<MessageRecord> {
    (1..=last)
        .map(|s| match msg(inbox, s, len) {
            Record::Message(m) => m,
            _ => unreachable!("msg makes messages"),
        })
        .collect()
}

/// A log on a fault-injecting file layer, and its fault rules.
async fn open_faulty(c: LogConfig) -> (SegmentLog, Arc<Faults>) {
    let fs = Rc::new(FaultyFs::new());
    let faults = fs.faults.clone();
    let (log, _, _) = SegmentLog::open_with(c, fs).await.unwrap();
    (log, faults)
}

/// What a rule for `op` must name: the directory for its sync (which
/// names no file), else `file` (a part of the file's name).
fn target(op: Op, dir: &Path, file: &str) -> String {
    match op {
        Op::SyncDir => dir.to_str().unwrap().to_owned(),
        _ => file.to_owned(),
    }
}

/// Names in `dir` ending in `.tmp` (leftovers of atomic writes).
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// A sidecar that cannot be written (fails, or is torn on its way) is only
/// a lost shortcut: the log goes on acknowledging, no sidecar appears
/// under its name, the next start scans those segments and reads every
/// record back, and writes the sidecars then.
#[test]
fn a_failed_or_torn_sidecar_write_costs_only_a_scan_on_the_next_start() {
    for fault in [Fault::Fail, Fault::Tear(40)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        run(move || async move {
            let (log, faults) = open_faulty(config(&path)).await;
            faults.set(Op::Create, ".idx", fault);
            let mut end = 0;
            for s in 1..=300 {
                end = log.append(&msg(7, s, 10_000)).unwrap();
            }
            log.wait_durable(end).await.unwrap();
            log.checkpoint().await.unwrap();
            log.flush().await.unwrap();
            assert!(log.stats().segments > 2, "segments were sealed");
            let idx = |p: &Path| segment::list(&storage::StdStorage, p).unwrap();
            for (base, seg) in idx(&path) {
                assert!(
                    !segment::sidecar_path(&seg).exists(),
                    "{fault:?}: no sidecar at {base}"
                );
            }
            assert_eq!(temporaries(&path), Vec::<String>::new(), "{fault:?}");
            drop(log);
            let (log, state, report) = SegmentLog::open(config(&path)).await.unwrap();
            assert_eq!(report.sidecars, 0, "{fault:?}: every segment scanned");
            assert_eq!(state.heads[&UserId(7)], Seq(300));
            assert_eq!(
                read_from_start(&log, 7, 1000).await,
                expected(7, 300, 10_000)
            );
            log.flush().await.unwrap();
            drop(log);
            let (_, _, report) = SegmentLog::open(config(&path)).await.unwrap();
            assert!(report.sidecars > 0, "{fault:?}: written by the scan");
        });
    }
}

/// The checkpoint pointer cannot be written, or the process dies at a step
/// of its atomic write: the commit that made the checkpoint durable fails,
/// so the log stops acknowledging (poisoned, as for a failed sync); the
/// pointer file is the old one, whole; the next start recovers every
/// acknowledged record and the same heads and cursors.
#[test]
fn a_failed_or_crashed_pointer_write_stops_acknowledging_and_loses_nothing() {
    let faults = [
        (Op::Create, Fault::Fail),
        (Op::Create, Fault::Tear(10)),
        (Op::Rename, Fault::Crash),
        (Op::SyncDir, Fault::Crash),
    ];
    for (op, fault) in faults {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        run(move || async move {
            let (log, faults) = open_faulty(config(&path)).await;
            for s in 1..=50 {
                log.append(&msg(1, s, 100)).unwrap();
            }
            log.checkpoint().await.unwrap();
            let pointer_path = path.join(format::CHECKPOINT_POINTER);
            let old_pointer = std::fs::read(&pointer_path).unwrap();
            let mut end = 0;
            for s in 51..=100 {
                end = log.append(&msg(1, s, 100)).unwrap();
            }
            end = end.max(
                log.append(&Record::Cursor {
                    user: UserId(1),
                    device: DeviceId(3),
                    seq: Seq(60),
                })
                .unwrap(),
            );
            log.wait_durable(end).await.unwrap(); // acknowledged
            faults.set(op, &target(op, &path, format::CHECKPOINT_POINTER), fault);
            assert!(log.checkpoint().await.is_err(), "{op:?} {fault:?}");
            assert!(
                matches!(log.append(&msg(1, 101, 1)), Err(LogError::Poisoned(_))),
                "{op:?} {fault:?}: nothing more is acknowledged"
            );
            let pointer = std::fs::read(&pointer_path).unwrap();
            if op == Op::SyncDir {
                // Renamed before the crash: the new pointer, whole.
                let text = String::from_utf8(pointer).unwrap();
                assert!(format::parse_pointer(&text).is_some(), "{text:?}");
            } else {
                assert_eq!(pointer, old_pointer, "{op:?} {fault:?}: the old pointer");
            }
            drop(log);
            let (log, state, _) = SegmentLog::open(config(&path)).await.unwrap();
            assert_eq!(state.heads[&UserId(1)], Seq(100), "{op:?} {fault:?}");
            assert_eq!(state.cursors[&(UserId(1), DeviceId(3))], Seq(60));
            assert_eq!(read_from_start(&log, 1, 1000).await, expected(1, 100, 100));
        });
    }
}

/// Retention's delete of a segment or its sidecar fails: retention reports
/// the error, every message stays readable (the segment stays in the log
/// until it is really gone), a later run deletes it, and a restart keeps
/// the heads and cursors. Regression: the segment left the log's state
/// before its file was removed, so after a failed removal its messages
/// failed to read ("no segment holds position 0").
#[test]
fn a_failed_retention_delete_keeps_every_message_readable() {
    for victim in [".seg", ".idx"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        run(move || async move {
            let config = |path: &Path| LogConfig {
                // Reads come from the files, not the committed tail.
                cache_bytes: 0,
                ..retention_config(path)
            };
            let (log, faults) = open_faulty(config(&path)).await;
            for s in 1..=240 {
                log.append(&msg(1, s, 10_000)).unwrap();
            }
            let end = log
                .append(&Record::Cursor {
                    user: UserId(1),
                    device: DeviceId(1),
                    seq: Seq(200),
                })
                .unwrap();
            log.wait_durable(end).await.unwrap();
            log.flush().await.unwrap();
            // The oldest segment's file (or its sidecar) cannot be removed.
            let oldest = segment::file_name(&path, 0);
            let name = oldest.with_extension(&victim[1..]);
            let name = name.file_name().unwrap().to_str().unwrap();
            faults.set(Op::Remove, name, Fault::Fail);
            let now = 1_700_000_000_000 + 1000;
            let e = log.enforce_retention(now).await.unwrap_err();
            assert!(matches!(e, LogError::Io { op: "remove", .. }), "{e}");
            assert_eq!(
                read_from_start(&log, 1, 1000).await,
                expected(1, 240, 10_000),
                "{victim}: every message still reads back"
            );
            faults.clear();
            let report = log.enforce_retention(now).await.unwrap();
            assert!(report.segments_deleted >= 1, "{victim}: {report:?}");
            assert!(!oldest.exists());
            let kept = read_from_start(&log, 1, 1000).await;
            assert_eq!(kept.last().map(|m| m.seq), Some(Seq(240)));
            drop(log);
            let (log, state, _) = SegmentLog::open(config(&path)).await.unwrap();
            assert_eq!(state.heads[&UserId(1)], Seq(240));
            assert_eq!(state.cursors[&(UserId(1), DeviceId(1))], Seq(200));
            assert_eq!(read_from_start(&log, 1, 1000).await, kept);
        });
    }
}

/// A new segment cannot be created at a roll (fails, torn, or the process
/// dies at a step of its atomic write): the commit fails and the log stops
/// acknowledging; the next start finds no half-built segment under a
/// segment's name and every acknowledged record, identical.
#[test]
fn a_failed_or_crashed_segment_creation_loses_no_acknowledged_record() {
    let faults = [
        (Op::Create, Fault::Fail),
        (Op::Create, Fault::Tear(100)),
        (Op::Link, Fault::Crash),
        (Op::Remove, Fault::Crash),
        (Op::SyncDir, Fault::Crash),
    ];
    for (op, fault) in faults {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        run(move || async move {
            let (log, faults) = open_faulty(config(&path)).await;
            let mut acked = 0;
            for s in 1..=90 {
                let end = log.append(&msg(4, s, 10_000)).unwrap();
                log.wait_durable(end).await.unwrap();
                acked = s;
            }
            assert_eq!(log.stats().segments, 1, "no roll yet");
            // The temporary name is what is removed after the link.
            let file = if op == Op::Remove { ".seg.tmp" } else { ".seg" };
            faults.set(op, &target(op, &path, file), fault);
            let mut failed = false;
            for s in 91..=200 {
                let Ok(end) = log.append(&msg(4, s, 10_000)) else {
                    failed = true;
                    break;
                };
                if log.wait_durable(end).await.is_err() {
                    failed = true;
                    break;
                }
                acked = s;
            }
            assert!(failed, "{op:?} {fault:?}: the roll must fail");
            drop(log);
            let (log, state, report) = SegmentLog::open(config(&path)).await.unwrap();
            assert_eq!(report.truncated, None, "{op:?} {fault:?}");
            assert!(state.heads[&UserId(4)] >= Seq(acked));
            let got = read_from_start(&log, 4, 1000).await;
            assert_eq!(got[..acked as usize], expected(4, acked, 10_000)[..]);
            assert_eq!(temporaries(&path), Vec::<String>::new(), "{op:?} {fault:?}");
        });
    }
}

/// Salvage cannot keep the damaged bytes aside (the side file fails or is
/// torn): it refuses the open and changes nothing (the damage is not
/// filled in before its bytes are kept); a later salvage goes through.
#[test]
fn a_failed_salvage_side_file_refuses_the_open_and_changes_nothing() {
    for fault in [Fault::Fail, Fault::Tear(7)] {
        let dir = tempfile::tempdir().unwrap();
        let written = write_acknowledged(dir.path(), 40, config(dir.path()));
        let victim = written[19].clone();
        flip(dir.path(), victim.offset() + 40);
        let before = snapshot(dir.path());
        let c = salvage_config(dir.path());
        let (tx, rx) = std::sync::mpsc::channel();
        run(move || async move {
            let fs = Rc::new(FaultyFs::new());
            fs.faults.set(Op::Create, ".damaged-", fault);
            tx.send(SegmentLog::open_with(c, fs).await.err()).unwrap();
        });
        let e = rx.recv().unwrap().expect("the open must fail");
        assert!(matches!(e, LogError::Io { op: "write", .. }), "{e}");
        assert_eq!(snapshot(dir.path()), before, "{fault:?}: nothing changed");
        let path = dir.path().to_owned();
        run(move || async move {
            let (log, _, report) = SegmentLog::open(salvage_config(&path)).await.unwrap();
            let salvage = report.salvage.expect("salvaged");
            assert_eq!(salvage.lost, vec![(victim.record.inbox, victim.record.seq)]);
            assert!(salvage.skipped[0].moved_to.exists());
            for inbox in [1u64, 2] {
                let want: Vec<MessageRecord> = written
                    .iter()
                    .map(|w| w.record.clone())
                    .filter(|m| m.inbox == UserId(inbox))
                    .filter(|m| (m.inbox, m.seq) != (victim.record.inbox, victim.record.seq))
                    .collect();
                assert_eq!(read_from_start(&log, inbox, 100).await, want);
            }
        });
    }
}
