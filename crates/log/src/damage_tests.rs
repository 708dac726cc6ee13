//! Issue 23: recovery never destroys acknowledged records or reuses a
//! sequence. Damage with acknowledged records after it refuses the open
//! without changing a byte; salvage keeps every other record (identity
//! checked) and keeps every head; a torn tail is still cut.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::damage::Claim;
use super::scan::{Found, Scanner, Step};
use super::tests::{config, msg, read_from_start, run, seqs};
use super::*;
use surepush_proto::{DeviceId, Seq, UserId};

/// Every file of a log directory, by name.
pub(super) fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// A record the test wrote, and where it went.
#[derive(Clone, Debug)]
pub(super) struct Written {
    pub(super) lsn: u64,
    pub(super) record: MessageRecord,
}

impl Written {
    pub(super) fn offset(&self) -> usize {
        (format::SEGMENT_HEADER_LEN + self.lsn) as usize
    }
}

/// Appends `n` messages (inboxes 1 and 2 alternating), each waited for
/// like an acknowledged send, then drops the log without closing it (a
/// crash right after the last sync).
pub(super) fn write_acknowledged(path: &Path, n: u64, config: LogConfig) -> Vec<Written> {
    let path = path.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let (log, _, _) = SegmentLog::open(LogConfig {
            dir: path.clone(),
            ..config
        })
        .await
        .unwrap();
        let mut out = Vec::new();
        for s in 1..=n {
            let record = msg(1 + s % 2, s.div_ceil(2), 30 + (s as usize % 7));
            let end = log.append(&record).unwrap();
            log.wait_durable(end).await.unwrap();
            let Record::Message(m) = record else {
                unreachable!()
            };
            out.push(Written {
                lsn: end - format::encoded_len(&Record::Message(m.clone())) as u64,
                record: m,
            });
        }
        tx.send(out).unwrap();
    });
    rx.recv().unwrap()
}

pub(super) fn flip(path: &Path, offset: usize) {
    let seg = segment::file_name(path, 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(&seg, bytes).unwrap();
}

fn open_err(c: LogConfig) -> LogError {
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        tx.send(SegmentLog::open(c).await.err()).unwrap();
    });
    rx.recv().unwrap().expect("the open must fail")
}

#[test]
fn a_flipped_byte_in_the_newest_segment_with_acknowledged_records_after_it_refuses_and_changes_nothing(
) {
    let dir = tempfile::tempdir().unwrap();
    let written = write_acknowledged(dir.path(), 40, config(dir.path()));
    let victim = &written[19];
    flip(dir.path(), victim.offset() + 40); // inside its body
    let before = snapshot(dir.path());
    let e = open_err(config(dir.path()));
    let LogError::Damaged(report) = &e else {
        panic!("expected a refusal, got {e}");
    };
    let first = &report.damaged[0];
    assert_eq!(
        (first.lsn, first.offset()),
        (victim.lsn, victim.offset() as u64)
    );
    let victim_len = format::encoded_len(&Record::Message(victim.record.clone())) as u64;
    assert_eq!(
        first.resume,
        victim.lsn + victim_len,
        "exactly the one record"
    );
    assert!(
        matches!(first.claimed, Some((_, Claim::Marker { .. }))),
        "{first:?}"
    );
    assert!(report.records_after >= 20, "{report:?}");
    let text = e.to_string();
    for needed in [
        "00000000000000000000.seg",
        "crc mismatch",
        "valid records",
        "salvage",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused log is left as it was"
    );
    // The strict mode refuses too.
    let strict = LogConfig {
        recovery: RecoveryMode::AbsoluteConsistency,
        ..config(dir.path())
    };
    assert!(matches!(open_err(strict), LogError::Corrupt(_)));
    assert_eq!(snapshot(dir.path()), before);
}

pub(super) fn salvage_config(dir: &Path) -> LogConfig {
    LogConfig {
        recovery: RecoveryMode::Salvage,
        ..config(dir)
    }
}

/// Opens `c`, checks every written record except `lost` reads back
/// identical, and returns the heads and the report.
fn open_and_check(
    c: LogConfig,
    written: Vec<Written>,
    lost: Vec<(u64, u64)>,
) -> (RecoveredState, RecoveryReport) {
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let (log, state, report) = SegmentLog::open(c).await.unwrap();
        for inbox in [1u64, 2] {
            let got = read_from_start(&log, inbox, 1000).await;
            let want: Vec<MessageRecord> = written
                .iter()
                .map(|w| w.record.clone())
                .filter(|m| m.inbox == UserId(inbox) && !lost.contains(&(inbox, m.seq.0)))
                .collect();
            assert_eq!(got, want, "inbox {inbox}: every other record, identical");
        }
        log.close().await.unwrap();
        tx.send((state, report)).unwrap();
    });
    rx.recv().unwrap()
}

#[test]
fn salvage_keeps_every_other_record_moves_the_damage_aside_and_keeps_the_heads() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_acknowledged(dir.path(), 40, config(dir.path()));
    let victim = written[19].clone();
    flip(dir.path(), victim.offset() + 40);
    let original = std::fs::read(segment::file_name(dir.path(), 0)).unwrap();
    let lost = (victim.record.inbox.0, victim.record.seq.0);
    let (state, report) = open_and_check(salvage_config(dir.path()), written.clone(), vec![lost]);
    let salvage = report.salvage.expect("salvaged");
    assert_eq!(salvage.lost, vec![(victim.record.inbox, victim.record.seq)]);
    assert_eq!(salvage.skipped.len(), 1);
    let skipped = &salvage.skipped[0];
    let len = format::encoded_len(&Record::Message(victim.record.clone()));
    assert_eq!(
        (skipped.offset, skipped.len),
        (victim.offset() as u64, len as u64)
    );
    assert_eq!(
        std::fs::read(&skipped.moved_to).unwrap(),
        original[victim.offset()..victim.offset() + len],
        "the damaged bytes are kept, unchanged"
    );
    for inbox in [1u64, 2] {
        assert_eq!(state.heads[&UserId(inbox)], Seq(20), "heads do not go back");
    }
    // The next start finds a clean log (the damage was filled in).
    let (state, report) = open_and_check(config(dir.path()), written, vec![lost]);
    assert_eq!((report.truncated, report.salvage), (None, None));
    assert_eq!(state.heads[&UserId(victim.record.inbox.0)], Seq(20));
}

/// The lost record is its inbox's newest: nothing after it in that inbox
/// shows its sequence, so the head comes from reading the damaged bytes.
#[test]
fn salvage_of_an_inbox_newest_record_does_not_number_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = write_acknowledged(dir.path(), 30, config(dir.path()));
    // Inbox 1's newest is the last odd write; more inbox 2 records follow.
    let path = dir.path().to_owned();
    let more = {
        let (tx, rx) = std::sync::mpsc::channel();
        run(move || async move {
            let (log, _, _) = SegmentLog::open(config(&path)).await.unwrap();
            let mut out = Vec::new();
            for s in 16..=25 {
                let record = msg(2, s, 20);
                let end = log.append(&record).unwrap();
                log.wait_durable(end).await.unwrap();
                let Record::Message(m) = record else {
                    unreachable!()
                };
                let lsn = end - format::encoded_len(&Record::Message(m.clone())) as u64;
                out.push(Written { lsn, record: m });
            }
            tx.send(out).unwrap();
        });
        rx.recv().unwrap()
    };
    written.extend(more);
    let victim = written
        .iter()
        .rfind(|w| w.record.inbox == UserId(1))
        .unwrap()
        .clone();
    assert_eq!(victim.record.seq, Seq(15));
    flip(dir.path(), victim.offset() + 60); // its payload
    let lost = vec![(1, 15)];
    let (state, report) = open_and_check(salvage_config(dir.path()), written.clone(), lost.clone());
    assert_eq!(report.salvage.unwrap().lost, vec![(UserId(1), Seq(15))]);
    assert_eq!(
        state.heads[&UserId(1)],
        Seq(15),
        "seq 15 is not handed out again"
    );
    let (state, _) = open_and_check(config(dir.path()), written, lost);
    assert_eq!(
        state.heads[&UserId(1)],
        Seq(15),
        "kept by the checkpoint salvage wrote"
    );
}

/// A power loss can leave the last, unacknowledged commit torn with valid
/// records after the torn block: no marker claims them, so it is a tail,
/// cut as before; its valid records are kept in a file for inspection.
#[test]
fn a_torn_unacknowledged_commit_with_valid_records_after_the_torn_block_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    // Markers only with the next commit: none claims the last one.
    let c = LogConfig {
        marker_delay: Duration::ZERO,
        ..config(dir.path())
    };
    let acked = write_acknowledged(dir.path(), 10, c.clone());
    let path = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let c2 = c.clone();
    run(move || async move {
        let (log, _, _) = SegmentLog::open(LogConfig { dir: path, ..c2 })
            .await
            .unwrap();
        let mut starts = Vec::new();
        let mut end = 0;
        for s in 11..=40 {
            let r = msg(3, s, 200);
            end = log.append(&r).unwrap();
            starts.push(end - format::encoded_len(&r) as u64);
        }
        log.wait_durable(end).await.unwrap(); // one commit for all of them
        tx.send(starts).unwrap();
    });
    let starts = rx.recv().unwrap();
    let seg = segment::file_name(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let torn = (format::SEGMENT_HEADER_LEN + starts[3]) as usize;
    bytes[torn..torn + 4096].fill(0); // a block that never reached the disk
    std::fs::write(&seg, &bytes).unwrap();
    let (state, report) = open_and_check(c, acked, vec![]);
    assert_eq!(report.truncated.map(|t| t.0), Some(starts[3]), "{report:?}");
    assert_eq!(state.heads.get(&UserId(3)), Some(&Seq(13)));
    let cut = report
        .cut_file
        .expect("the valid records after the torn block are kept");
    let kept = std::fs::read(&cut).unwrap();
    assert!(kept.len() > 4096 && kept[4096..].iter().any(|b| *b != 0));
    assert_eq!(kept[..], bytes[torn..torn + kept.len()]);
}

#[test]
fn damage_in_a_sealed_segment_refuses_and_salvage_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_acknowledged(
        dir.path(),
        400,
        LogConfig {
            segment_bytes: 32 << 10,
            ..config(dir.path())
        },
    );
    let c = |recovery| LogConfig {
        segment_bytes: 32 << 10,
        recovery,
        ..config(dir.path())
    };
    let victim = written[100].clone();
    let capacity = (32 << 10) - format::SEGMENT_HEADER_LEN;
    let base = victim.lsn / capacity * capacity;
    assert!(
        written.last().unwrap().lsn > base + capacity,
        "a sealed segment"
    );
    let seg = segment::file_name(dir.path(), base);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[(format::SEGMENT_HEADER_LEN + victim.lsn - base) as usize + 50] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let before = snapshot(dir.path());
    assert!(matches!(
        open_err(c(RecoveryMode::TolerateTailCorruption)),
        LogError::Damaged(_)
    ));
    assert_eq!(snapshot(dir.path()), before);
    let lost = vec![(victim.record.inbox.0, victim.record.seq.0)];
    let (state, report) = open_and_check(c(RecoveryMode::Salvage), written.clone(), lost.clone());
    assert_eq!(
        report.salvage.unwrap().lost,
        vec![(victim.record.inbox, victim.record.seq)]
    );
    assert_eq!(state.heads[&UserId(1)], Seq(200));
    assert_eq!(state.heads[&UserId(2)], Seq(200));
    open_and_check(c(RecoveryMode::TolerateTailCorruption), written, lost);
}

/// The checkpoint record is damaged: refused by default; salvage folds the
/// whole log instead (nothing else lost) and writes a new checkpoint.
#[test]
fn a_damaged_checkpoint_refuses_and_salvage_refolds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let (log, _, _) = SegmentLog::open(config(&path)).await.unwrap();
        let mut written = Vec::new();
        for s in 1..=30u64 {
            let r = msg(1, s, 40);
            let end = log.append(&r).unwrap();
            if s == 10 {
                let end = log
                    .append(&Record::Cursor {
                        user: UserId(1),
                        device: DeviceId(4),
                        seq: Seq(10),
                    })
                    .unwrap();
                log.wait_durable(end).await.unwrap();
            }
            if s == 15 {
                let at = log.durable_lsn();
                log.checkpoint().await.unwrap();
                tx.send(at).unwrap();
            }
            log.wait_durable(end).await.unwrap();
            let Record::Message(m) = r else {
                unreachable!()
            };
            written.push(m);
        }
        tx.send(0).unwrap();
    });
    let checkpoint_at = rx.recv().unwrap();
    rx.recv().unwrap();
    let pointer = std::fs::read_to_string(dir.path().join(format::CHECKPOINT_POINTER)).unwrap();
    let cp = format::parse_pointer(&pointer).unwrap().lsn;
    assert!(cp >= checkpoint_at);
    flip(dir.path(), (format::SEGMENT_HEADER_LEN + cp) as usize + 20);
    let before = snapshot(dir.path());
    assert!(matches!(open_err(config(dir.path())), LogError::Damaged(_)));
    assert_eq!(snapshot(dir.path()), before);
    let path = dir.path().to_owned();
    run(move || async move {
        let (log, state, report) = SegmentLog::open(salvage_config(&path)).await.unwrap();
        let salvage = report.salvage.expect("salvaged");
        assert!(
            salvage.lost.is_empty(),
            "a checkpoint holds no message: {salvage:?}"
        );
        assert_eq!(state.heads[&UserId(1)], Seq(30));
        assert_eq!(state.cursors[&(UserId(1), DeviceId(4))], Seq(10));
        assert_eq!(
            seqs(&read_from_start(&log, 1, 100).await),
            (1..=30).collect::<Vec<_>>()
        );
        drop(log);
        let (_, again, report) = SegmentLog::open(config(&path)).await.unwrap();
        assert!(
            report.checkpoint.is_some(),
            "salvage wrote a new checkpoint"
        );
        assert_eq!(again.heads, state.heads);
        assert_eq!(again.cursors, state.cursors);
    });
}

/// The pointer is only an index to a checkpoint: a damaged one is
/// ignored (every segment folded) and the state is the same.
#[test]
fn a_damaged_pointer_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let (log, _, _) = SegmentLog::open(config(&path)).await.unwrap();
        for s in 1..=20 {
            log.append(&msg(1, s, 40)).unwrap();
        }
        log.checkpoint().await.unwrap();
        let end = log.append(&msg(1, 21, 40)).unwrap();
        log.wait_durable(end).await.unwrap();
        drop(log);
        let (_, state, report) = SegmentLog::open(config(&path)).await.unwrap();
        assert!(report.checkpoint.is_some());
        tx.send(state).unwrap();
    });
    let good = rx.recv().unwrap();
    let pointer = dir.path().join(format::CHECKPOINT_POINTER);
    let mut text = std::fs::read(&pointer).unwrap();
    text[25] ^= 0x01;
    std::fs::write(&pointer, &text).unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let (_, state, report) = SegmentLog::open(config(&path)).await.unwrap();
        assert_eq!(state, good);
        assert_eq!(report.truncated, None);
    });
}

/// The commit markers a log wrote, in its first segment: (position, up_to).
fn markers(dir: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(segment::file_name(dir, 0)).unwrap();
    let mut scanner = Scanner::new(format::SEGMENT_HEADER_LEN, bytes.len() as u64);
    scanner.feed(bytes::Bytes::copy_from_slice(
        &bytes[format::SEGMENT_HEADER_LEN as usize..],
    ));
    let mut out = Vec::new();
    while let Step::Found(found) = scanner.step() {
        if let Found::Internal {
            at,
            what: format::Internal::Durable { up_to },
            ..
        } = found
        {
            out.push((at - format::SEGMENT_HEADER_LEN, up_to));
        }
    }
    out
}

#[test]
fn a_commit_marker_rides_with_the_next_commit_and_an_idle_log_writes_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let c = LogConfig {
            marker_delay: Duration::from_millis(20),
            ..config(&path)
        };
        let (log, _, _) = SegmentLog::open(c).await.unwrap();
        let first = log.append(&msg(1, 1, 10)).unwrap();
        log.wait_durable(first).await.unwrap();
        let second = log.append(&msg(1, 2, 10)).unwrap();
        log.wait_durable(second).await.unwrap();
        assert!(log.stats().syncs >= 2);
        // The second commit carried the marker for the first, after its record.
        let m = format::MARKER_LEN as u64;
        assert_eq!(markers(&path), vec![(second, first)]);
        // Nothing else to commit: a marker alone follows within the delay,
        // claiming the second commit (marker included).
        log.wait_durable(second + 2 * m).await.unwrap();
        assert_eq!(
            markers(&path),
            vec![(second, first), (second + m, second + m)]
        );
        let syncs = log.stats().syncs;
        // And no more: a marker claims nothing new.
        glommio::timer::sleep(Duration::from_millis(100)).await;
        assert_eq!(log.stats().syncs, syncs, "an idle log stays idle");
    });
}

/// Found by the TypeScript SDK's end-to-end tests: a flipped bit in the
/// newest acknowledged message, kill -9 right after, and its sequence was
/// numbered again. The evidence that its commit was durable (the marker)
/// had not reached the disk, so recovery cannot tell the damage from a
/// torn tail and cuts it; but all its bytes were written, so its sequence
/// is treated as handed out.
#[test]
fn damage_to_the_last_commit_before_its_marker_is_cut_but_its_sequence_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let c = LogConfig {
        marker_delay: Duration::from_secs(3600), // no idle marker: the last commit has none
        ..config(dir.path())
    };
    let written = write_acknowledged(dir.path(), 30, c.clone());
    let victim = written[29].clone();
    flip(dir.path(), victim.offset() + 40); // inside its body
    let keep: Vec<Written> = written[..29].to_vec();
    let lost = vec![(victim.record.inbox.0, victim.record.seq.0)];
    let (state, report) = open_and_check(c, keep, lost);
    assert_eq!(
        report.truncated.map(|t| t.0),
        Some(victim.lsn),
        "{report:?}"
    );
    assert_eq!(
        state.heads.get(&victim.record.inbox),
        Some(&victim.record.seq),
        "the cut message's sequence stays taken"
    );
}

/// The other side of the rule above: a record a crash cut short (a sector
/// of it never written) was never acknowledged, and an ordinary crash must
/// not leave a gap in the inbox.
#[test]
fn a_record_a_crash_cut_short_raises_no_head() {
    let dir = tempfile::tempdir().unwrap();
    let c = LogConfig {
        marker_delay: Duration::from_secs(3600),
        ..config(dir.path())
    };
    let path = dir.path().to_owned();
    let c2 = c.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let (log, _, _) = SegmentLog::open(LogConfig { dir: path, ..c2 })
            .await
            .unwrap();
        let mut starts = Vec::new();
        for s in 1..=5 {
            let r = msg(1, s, 1500); // spans sectors
            let end = log.append(&r).unwrap();
            log.wait_durable(end).await.unwrap();
            starts.push(end - format::encoded_len(&r) as u64);
        }
        tx.send(starts).unwrap();
    });
    let starts = rx.recv().unwrap();
    let seg = segment::file_name(dir.path(), 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = (format::SEGMENT_HEADER_LEN + starts[4]) as usize;
    let unwritten = (last / 512 + 1) * 512; // its second sector on
    bytes[unwritten..].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let (_, state, report) = SegmentLog::open(config(&path)).await.unwrap();
        assert!(report.truncated.is_some(), "{report:?}");
        assert_eq!(state.heads.get(&UserId(1)), Some(&Seq(4)), "no gap");
    });
}
