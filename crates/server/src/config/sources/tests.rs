use super::*;
use crate::config::LogFormat;

fn sources(file: Option<&str>, env: &[(&str, &str)]) -> (ConfigSources, Option<tempfile::TempDir>) {
    let dir = file.map(|text| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.toml"), text).unwrap();
        dir
    });
    let s = ConfigSources {
        file: dir.as_ref().map(|d| d.path().join("c.toml")),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        flags: Vec::new(),
    };
    (s, dir)
}

fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let (s, _dir) = sources(file, env);
    s.load()
}

/// Issue 22 item 6: defaults < TOML < environment < flags.
#[test]
fn each_layer_overrides_the_ones_before() {
    assert_eq!(load(None, &[]).unwrap().config, Config::default());
    let file = Some("shards = 3\n");
    assert_eq!(load(file, &[]).unwrap().config.shards, 3);
    let env = [("SUREPUSH_SHARDS", "5")];
    assert_eq!(load(file, &env).unwrap().config.shards, 5);
    let (s, _dir) = sources(file, &env);
    let s = s.flag("shards", 7);
    assert_eq!(s.load().unwrap().config.shards, 7);
    // A flag for one setting leaves the others to the lower layers.
    let (s, _dir) = sources(Some("shards = 3\npin_cores = false\n"), &env);
    let c = s.flag("data_dir", "/srv/x").load().unwrap().config;
    assert_eq!((c.shards, c.pin_cores), (5, false));
    assert_eq!(c.data_dir, PathBuf::from("/srv/x"));
}

#[test]
fn nested_settings_are_named_with_double_underscores() {
    let c = load(
        Some("[log]\nsegment_mib = 16\ncache_mib = 4\n"),
        &[
            ("SUREPUSH_LOG__SEGMENT_MIB", "32"),
            ("SUREPUSH_CORE__DEDUP__MAX_AGE_MS", "10m"),
            ("SUREPUSH_MQTT__ENABLED", "false"),
            ("SUREPUSH_LOGGING__FORMAT", "json"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.log.segment_mib, 32);
    assert_eq!(c.log.cache_mib, 4, "the file's other [log] keys stay");
    assert_eq!(c.core.dedup.max_age_ms, 600_000);
    assert!(!c.mqtt.enabled);
    assert_eq!(c.logging.format, LogFormat::Json);
}

/// A string setting takes the variable's text as it stands: a token of
/// digits stays a string, an address is not TOML.
#[test]
fn string_settings_take_the_text_as_it_stands() {
    let c = load(
        None,
        &[
            ("SUREPUSH_ADMIN_TOKEN", "123"),
            ("SUREPUSH_LISTEN", "0.0.0.0:9000"),
            ("SUREPUSH_LOG__RECOVERY", "salvage"),
            ("SUREPUSH_SHUTDOWN_REDIRECT", "true"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.admin_token, "123");
    assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(c.log.recovery, surepush_log::RecoveryMode::Salvage);
    assert_eq!(c.shutdown_redirect, "true");
}

/// Issue 22 item 6: durations as strings, in the file and the environment,
/// next to the old whole numbers.
#[test]
fn durations_are_numbers_in_their_unit_or_strings() {
    let c = load(
        Some("close_grace_ms = \"2s\"\n[core]\nack_timeout_ms = 1500\nkeepalive_ms = \"1m\"\n[log]\nretention_hours = \"14d\"\n"),
        &[("SUREPUSH_LOG__SYNC_INTERVAL_US", "250us"), ("SUREPUSH_CORE__MAX_BACKOFF_MS", "20000")],
    )
    .unwrap()
    .config;
    assert_eq!(c.close_grace_ms, 2_000);
    assert_eq!(c.core.ack_timeout_ms, 1_500);
    assert_eq!(c.core.keepalive_ms, 60_000);
    assert_eq!(c.log.retention_hours, 14 * 24);
    assert_eq!(c.log.sync_interval_us, 250);
    assert_eq!(c.core.max_backoff_ms, 20_000);
    let e = load(Some("[log]\nretention_hours = \"90m\"\n"), &[]).unwrap_err();
    assert!(e.to_string().contains("not a whole number of hours"), "{e}");
}

#[test]
fn a_bad_variable_is_refused_by_name() {
    for (var, value, why) in [
        ("SUREPUSH_SHARDS", "lots", "invalid type"),
        ("SUREPUSH_CORE", "1", "names a table"),
        ("SUREPUSH_LOG____SEGMENT_MIB", "1", "empty level"),
        ("SUREPUSH_CORE__ACK_TIMEOUT_MS", "soon", "not a duration"),
        ("SUREPUSH_LISTEN", "nowhere", "invalid socket address"),
    ] {
        match load(None, &[(var, value)]) {
            Err(ConfigError::Env {
                var: named,
                message,
            }) => {
                assert_eq!(named, var);
                assert!(message.contains(why), "{var}={value}: {message}");
            }
            other => panic!("{var}={value}: {other:?}"),
        }
    }
}

/// Other tools share the prefix (the load generator reads
/// `SUREPUSH_SECRET`): such variables are reported, not fatal.
#[test]
fn variables_that_name_no_setting_are_noted_and_ignored() {
    let loaded = load(
        None,
        &[
            ("SUREPUSH_SECRET", "x"),
            ("SUREPUSH_CORE__NOPE", "1"),
            ("PATH", "/bin"),
        ],
    )
    .unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.notes.len(), 2, "{:?}", loaded.notes);
    assert!(loaded.notes.iter().any(|n| n.contains("SUREPUSH_SECRET")));
    assert!(loaded
        .notes
        .iter()
        .any(|n| n.contains("SUREPUSH_CORE__NOPE")));
}

#[test]
fn file_errors_name_the_file_and_unknown_keys_stay_errors() {
    let e = load(Some("shardz = 3\n"), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("c.toml"), "{e}");
    let e = load(Some("shards = \n"), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}
