//! The atomic small-file write under faults at each of its steps
//! (issue #18 item 4).

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::fault::{Fault, Faults, FaultyStorage, Op};

const OLD: &[u8] = b"old contents, whole";
const NEW: &[u8] = b"the new contents, longer than the old ones";

fn faulty() -> (FaultyStorage, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    (
        FaultyStorage {
            faults: faults.clone(),
        },
        faults,
    )
}

fn write(storage: &dyn Storage, path: &Path, bytes: &[u8], replace: bool) -> io::Result<()> {
    let contents = |out: &mut dyn Write| out.write_all(bytes);
    let file = NewFile::new(&contents);
    let file = if replace { file } else { file.keep_existing() };
    write_atomically(storage, path, &file)
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Where the process dies, and what the name must hold afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Holds {
    Old,
    New,
}

/// A moment to crash at: its name, the faults that stop the write there,
/// what the file's name holds afterwards.
type CrashAt = (&'static str, Vec<(Op, Fault)>, Holds);

/// A crash (the process stops: nothing after it reaches the disk) at each
/// step of the write, with and without an old file: the name holds the
/// old file (or nothing) until the rename and the new one after it, never
/// a part of either; the next write goes through, leftovers and all.
#[test]
fn a_crash_at_any_step_leaves_the_old_file_or_the_new_one_whole() {
    let steps: Vec<CrashAt> = vec![
        (
            "before the temporary file",
            vec![(Op::Create, Fault::Crash)],
            Holds::Old,
        ),
        (
            "while writing it (1 byte)",
            vec![(Op::Create, Fault::Tear(1)), (Op::Remove, Fault::Crash)],
            Holds::Old,
        ),
        (
            "while writing it (half)",
            vec![
                (Op::Create, Fault::Tear(NEW.len() / 2)),
                (Op::Remove, Fault::Crash),
            ],
            Holds::Old,
        ),
        (
            "before the rename",
            vec![(Op::Rename, Fault::Crash)],
            Holds::Old,
        ),
        (
            "before the directory sync",
            vec![(Op::SyncDir, Fault::Crash)],
            Holds::New,
        ),
        ("after every step", vec![], Holds::New),
    ];
    for had_old in [false, true] {
        for (when, faults_at, holds) in &steps {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("pointer");
            if had_old {
                write(&StdStorage, &path, OLD, true).unwrap();
            }
            let (storage, faults) = faulty();
            // Every operation of the write touches the directory.
            let here = dir.path().to_str().unwrap();
            for (op, fault) in faults_at {
                faults.set(*op, here, *fault);
            }
            let written = write(&storage, &path, NEW, true);
            assert_eq!(written.is_ok(), faults_at.is_empty(), "{when}: {written:?}");
            let found = std::fs::read(&path).ok();
            let want = match (holds, had_old) {
                (Holds::New, _) => Some(NEW.to_vec()),
                (Holds::Old, true) => Some(OLD.to_vec()),
                (Holds::Old, false) => None,
            };
            assert_eq!(found, want, "crash {when}, old file: {had_old}");
            // The next process writes it again over whatever was left.
            faults.clear();
            write(&storage, &path, OLD, true).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), OLD, "{when}");
            assert_eq!(names(dir.path()), ["pointer"], "{when}: no leftovers");
        }
    }
}

/// A write that fails (no crash) at any step before the rename leaves the
/// old file and no temporary one; a failed directory sync is reported with
/// the new file in place.
#[test]
fn a_failed_step_reports_the_error_and_leaves_no_temporary_file() {
    for (op, fault, holds) in [
        (Op::Create, Fault::Fail, Holds::Old),
        (Op::Create, Fault::Tear(3), Holds::Old),
        (Op::Rename, Fault::Fail, Holds::Old),
        (Op::SyncDir, Fault::Fail, Holds::New),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout");
        write(&StdStorage, &path, OLD, true).unwrap();
        let (storage, faults) = faulty();
        faults.set(op, dir.path().to_str().unwrap(), fault);
        assert!(
            write(&storage, &path, NEW, true).is_err(),
            "{op:?} {fault:?}"
        );
        let want = if holds == Holds::Old { OLD } else { NEW };
        assert_eq!(std::fs::read(&path).unwrap(), want, "{op:?} {fault:?}");
        assert_eq!(names(dir.path()), ["layout"], "{op:?} {fault:?}");
    }
}

/// A file that must not replace another (segments, secrets) is refused
/// with `AlreadyExists` when the name is taken, also by a writer that got
/// there between the check and the publish (link(2) decides), and a crash
/// between publishing and dropping the temporary name leaves the new file
/// whole.
#[test]
fn keep_existing_never_replaces_and_a_crash_after_the_link_keeps_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000000000000000000.seg");
    write(&StdStorage, &path, OLD, false).unwrap();
    let e = write(&StdStorage, &path, NEW, false).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), OLD);
    assert_eq!(names(dir.path()), ["00000000000000000000.seg"]);

    let fresh = dir.path().join("00000000000000004096.seg");
    let (storage, faults) = faulty();
    faults.set(Op::Link, "4096", Fault::Crash);
    assert!(write(&storage, &fresh, NEW, false).is_err());
    assert!(!fresh.exists(), "a crash before the link: no segment");
    faults.clear();
    faults.set(Op::Remove, "4096.seg.tmp", Fault::Crash);
    assert!(write(&storage, &fresh, NEW, false).is_err());
    assert_eq!(std::fs::read(&fresh).unwrap(), NEW, "linked: whole");
    // What recovery removes as half built is only a second name.
    std::fs::remove_file(crate::io::temporary_name(&fresh)).unwrap();
    assert_eq!(std::fs::read(&fresh).unwrap(), NEW);
}

/// Secrets keep their mode; a stale temporary file of another mode does
/// not lend it to the new file.
#[test]
fn the_mode_is_the_new_files_own() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    std::fs::write(temp_path(&path, TempName::Beside), b"stale").unwrap();
    std::fs::set_permissions(
        temp_path(&path, TempName::Beside),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let contents = |out: &mut dyn Write| out.write_all(b"secret");
    write_atomically(&StdStorage, &path, &NewFile::new(&contents).mode(0o600)).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read(&path).unwrap(), b"secret");
}

#[test]
fn temporary_names_sit_beside_the_file_and_unique_ones_differ() {
    let path = Path::new("/d/00000000000000000000.idx");
    assert_eq!(
        temp_path(path, TempName::Beside),
        Path::new("/d/00000000000000000000.idx.tmp")
    );
    let (a, b) = (
        temp_path(path, TempName::Unique),
        temp_path(path, TempName::Unique),
    );
    assert_ne!(a, b);
    for t in [a, b] {
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("00000000000000000000.idx.") && name.ends_with(".tmp"),
            "{name}"
        );
    }
}

/// A file extended to a length holds its contents, then zeros.
#[test]
fn a_file_with_a_length_is_its_contents_then_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let contents = |out: &mut dyn Write| out.write_all(b"header");
    write_atomically(&StdStorage, &path, &NewFile::new(&contents).len(4096)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[..6], b"header");
    assert!(bytes[6..].iter().all(|b| *b == 0));
    assert_eq!(StdStorage.read_at(&path, 4090, 100).unwrap().len(), 6);
}
