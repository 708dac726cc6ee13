use std::sync::Mutex;

use super::*;

/// A part that records what it was given.
struct Recorder {
    settings: &'static [&'static str],
    seen: Arc<Mutex<Vec<Config>>>,
}

impl LivePart for Recorder {
    fn settings(&self) -> &'static [&'static str] {
        self.settings
    }
    fn apply(&self, config: &Config) -> Result<Option<String>, String> {
        self.seen.lock().unwrap().push(config.clone());
        Ok(None)
    }
}

fn reloader(
    file: &std::path::Path,
    settings: &'static [&'static str],
) -> (Reloader, Arc<Mutex<Vec<Config>>>) {
    let sources = ConfigSources {
        file: Some(file.to_owned()),
        ..ConfigSources::default()
    };
    let running = sources.load().unwrap().config;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let part = Recorder {
        settings,
        seen: seen.clone(),
    };
    (Reloader::new(sources, running).with(Box::new(part)), seen)
}

/// Issue 22 item 6: what a part owns is applied, every other changed
/// setting is named as needing a restart and keeps its running value.
#[test]
fn owned_settings_apply_and_the_others_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "shards = 2\n[logging]\nlevel = \"info\"\n").unwrap();
    let (mut r, seen) = reloader(&file, &["logging.level", "core"]);
    std::fs::write(
        &file,
        "shards = 4\nadmin_token = \"new\"\n[logging]\nlevel = \"debug\"\n[core]\nmax_frames_per_sec = 5\n[core.dedup]\nmax_age_ms = \"1m\"\n",
    )
    .unwrap();
    let report = r.reload().unwrap();
    assert_eq!(
        report.applied,
        [
            "core.dedup.max_age_ms",
            "core.max_frames_per_sec",
            "logging.level"
        ]
    );
    assert_eq!(report.needs_restart, ["admin_token", "shards"]);
    let running = r.running();
    assert_eq!(running.logging.level, "debug");
    assert_eq!(running.core.max_frames_per_sec, 5);
    assert_eq!(running.core.dedup.max_age_ms, 60_000);
    assert_eq!((running.shards, running.admin_token.as_str()), (2, ""));
    assert_eq!(seen.lock().unwrap().last(), Some(running));
    // The same file again: nothing new applies, the restart list stands,
    // and parts are called anyway (a part may reload files).
    let again = r.reload().unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.needs_restart, ["admin_token", "shards"]);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn an_invalid_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[logging]\nlevel = \"info\"\n").unwrap();
    let (mut r, seen) = reloader(&file, &["logging.level"]);
    for bad in [
        "[logging]\nlevel = \"debug\"\nshardz = 1\n",
        "[logging]\nlevel = \"debug\"\n[core]\npush_window = 0\n",
        "[logging]\nlevel = \"info=loud\"\n",
    ] {
        std::fs::write(&file, bad).unwrap();
        assert!(r.reload().is_err(), "{bad}");
    }
    assert_eq!(r.running().logging.level, "info");
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn a_table_setting_covers_its_fields_only() {
    assert!(covers("core", "core.push_window"));
    assert!(covers("core.push_window", "core.push_window"));
    assert!(!covers("core", "core_extra"));
    assert!(!covers("core.push", "core.push_window"));
}

#[test]
fn live_limits_reach_the_shared_state_with_a_new_generation() {
    let shared = NodeShared::new(1);
    let before = shared.live_generation();
    let mut config = Config::default();
    config.core.max_connections_per_user = 1;
    LimitsPart(shared.clone()).apply(&config).unwrap();
    let (limits, generation) = shared.live_limits();
    assert_eq!(limits.max_connections_per_user, 1);
    assert!(generation > before);
}
