//! The server's configuration: one struct, documented defaults.
//!
//! Where values come from, each overriding the one before
//! ([`ConfigSources`]): the defaults, the TOML file (`--config`),
//! `SUREPUSH_*` environment variables (`SUREPUSH_LOG__SEGMENT_MIB=64` sets
//! `log.segment_mib`), then command-line flags. Durations are numbers in
//! the unit their name ends in, or strings such as `"30s"`
//! ([`surepush_core::durations`]). `surepush config defaults` prints every
//! setting with its default and its doc comment ([`annotated`]).
//!
//! The defaults run on a laptop: loopback listeners, a `./data` directory,
//! one shard per core, secrets generated into the data directory on first
//! start.

pub mod annotated;
mod cluster;
mod sources;

pub use cluster::ClusterSettings;
pub use sources::{ConfigSources, Loaded};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use surepush_core::durations;
use surepush_core::CoreConfig;
use surepush_log::{LogConfig, RecoveryMode};

/// Storage settings of each shard's segment log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Maximum segment file size (MiB); segments are preallocated.
    pub segment_mib: u64,
    /// Group commit: sync once this many bytes are pending (KiB)...
    pub sync_kib: u64,
    /// ...or this long after the first pending append (µs). 0: commit as
    /// soon as the previous commit is done (appends arriving during a sync
    /// form the next batch), the lowest latency on fast disks.
    #[serde(deserialize_with = "durations::micros")]
    pub sync_interval_us: u64,
    /// Write a recovery checkpoint every this many MiB of log.
    pub checkpoint_mib: u64,
    /// Delete acknowledged segments once the send dedup window no longer
    /// reaches them (it is rebuilt from the log on restart), and any
    /// segment older than this (hours).
    #[serde(deserialize_with = "durations::hours")]
    pub retention_hours: u64,
    /// How often each shard looks for segments retention may delete
    /// (seconds; at least 1). Until then acknowledged segments stay on disk
    /// and their messages in the in-memory index.
    #[serde(deserialize_with = "durations::secs")]
    pub retention_interval_s: u64,
    /// Cache of recent records for replay (MiB per shard).
    pub cache_mib: u64,
    /// Hand full blocks to the disk in pieces of this size while the shard
    /// goes on appending (KiB; 0: write only at commit). The pieces are
    /// written by glommio's blocking thread, so the disk works while the
    /// shard encodes; the commit's fdatasync covers them.
    pub write_behind_kib: u64,
    /// Each commit's marker (a record saying how far the log is durable,
    /// which lets recovery tell a torn tail from damage) rides with the
    /// next commit; with nothing else to commit for this long (ms), it is
    /// committed alone. 0: only with the next commit.
    #[serde(deserialize_with = "durations::millis")]
    pub marker_delay_ms: u64,
    /// What recovery does with damage to durable records:
    /// `"tolerate-tail-corruption"` (default: cut a torn tail, refuse to
    /// start on damage), `"salvage"` (keep every valid record, move the
    /// damaged bytes aside, report what was lost; scans every segment), or
    /// `"absolute-consistency"` (refuse on any damage, a torn tail too).
    pub recovery: RecoveryMode,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            segment_mib: 64,
            sync_kib: 256,
            sync_interval_us: 0,
            checkpoint_mib: 256,
            retention_hours: 24 * 7,
            retention_interval_s: 60,
            cache_mib: 16,
            write_behind_kib: 1024,
            marker_delay_ms: 10,
            recovery: RecoveryMode::default(),
        }
    }
}

/// Everything `surepush serve` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Client listener (every shard binds it with SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Admin HTTP listener (metrics, health, publish API). Keep it private.
    pub admin_listen: SocketAddr,
    /// Where logs and generated secrets live.
    pub data_dir: PathBuf,
    /// Number of shards (one thread each); 0 = one per available core.
    pub shards: u16,
    /// Pin each shard to its own core.
    pub pin_cores: bool,
    /// How long a shard with nothing to do keeps polling for work before
    /// it sleeps (µs; 0 = sleep at once). Each sleep costs a membarrier
    /// (an interrupt to every core) and a wake-up; spinning saves both when
    /// work returns within this time, but burns the core meanwhile. Only
    /// pinned shards spin (`pin_cores`). Measured in BENCHMARKS.md (#17).
    #[serde(deserialize_with = "durations::micros")]
    pub spin_before_park_us: u64,
    /// io_uring registered buffer memory per shard (KiB); 0 = automatic
    /// (fits the locked-memory limit, see `surepush check-host`).
    pub io_memory_kib: u64,
    /// Let the kernel back the gateway's heap with transparent huge pages
    /// (where /sys/kernel/mm/transparent_hugepage allows them). Off: the
    /// allocator asks for them on its arenas, and a 2 MiB page stays
    /// resident while any block in it lives, which about doubled what an
    /// idle connection costs (BENCHMARKS.md "Idle connections and huge
    /// pages"). On trades that memory for fewer TLB misses.
    pub transparent_huge_pages: bool,
    /// HMAC secret for client tokens; empty = read or create
    /// `<data_dir>/token.secret`.
    pub token_secret: String,
    /// Bearer token for the admin publish/token API; empty = read or create
    /// `<data_dir>/admin.token`.
    pub admin_token: String,
    /// Unsent bytes for one client before it is dropped as too slow (its
    /// unread output is discarded; what it would deliver stays stored).
    pub max_write_buffer_bytes: usize,
    /// Unsent bytes for one client above which room messages are no longer
    /// queued for it: its subscriptions get ROOMLAG and resume from the
    /// log (below `max_write_buffer_bytes`, so the session survives). What
    /// is queued before a room frame counts, so one frame larger than this
    /// still goes out.
    pub room_lag_bytes: usize,
    /// How long a closing connection may take to read its last frames (an
    /// ERROR, an MQTT 5 DISCONNECT) before its socket is shut down (ms): a
    /// client that does not read cannot hold a closed connection open.
    #[serde(deserialize_with = "durations::millis")]
    pub close_grace_ms: u64,
    /// A plain TCP connection with nothing read or written for this long
    /// (a sweep every period: parked after one to two) parks: its tasks
    /// end and its socket waits in the shard's epoll set until input or
    /// output resumes it, so an idle connection costs less memory (ms;
    /// 0 = never park).
    #[serde(deserialize_with = "durations::millis")]
    pub park_idle_ms: u64,
    /// Capacity of each shard-to-shard channel (batches).
    pub mesh_channel_size: usize,
    /// On shutdown, wait this long for clients to receive DISCONNECT (ms).
    #[serde(deserialize_with = "durations::millis")]
    pub shutdown_grace_ms: u64,
    /// Redirect sent in DISCONNECT on shutdown (`host:port`, or empty).
    pub shutdown_redirect: String,
    /// Delivery limits and timings.
    pub core: CoreConfig,
    /// Segment log settings.
    pub log: LogSettings,
    /// The MQTT front end (docs/MQTT.md).
    pub mqtt: MqttSettings,
    /// TLS listeners next to the plain ones, and HTTPS for the admin port.
    pub tls: TlsSettings,
    /// The WebSocket listener (docs/PROTOCOL.md "WebSocket mapping").
    pub websocket: WebSocketSettings,
    /// The gateway's own log lines.
    pub logging: LoggingSettings,
    /// Membership of a cluster on NATS (docs/CLUSTER.md); off by default.
    pub cluster: ClusterSettings,
    /// Events for the backend (docs/WEBHOOKS.md).
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Token verification beyond the HS256 `token_secret`.
    pub auth: AuthSettings,
    /// Extras of the admin HTTP server: static files, demo tokens.
    pub admin: AdminSettings,
}

/// `[auth]`: which tokens are accepted (docs/PROTOCOL.md section 4).
/// HS256 tokens are always checked with `token_secret`; these settings add
/// public keys (RS256, ES256, EdDSA) and claim checks. SIGHUP applies
/// every one of them (the PEM files and the JWKS document are read again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Required `iss` claim; empty: not checked.
    pub issuer: String,
    /// A value the `aud` claim must hold; empty: not checked.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf` (seconds).
    #[serde(deserialize_with = "durations::secs")]
    pub leeway_s: u64,
    /// PEM public keys (RSA -> RS256, EC P-256 -> ES256, Ed25519 ->
    /// EdDSA), tried for tokens of their algorithm whatever their `kid`.
    pub public_keys: Vec<PathBuf>,
    /// A JWKS document (`https://...` or `http://...`) fetched off the
    /// shards; its keys are found by the token's `kid`. Empty: none.
    pub jwks_url: String,
    /// Fetch the JWKS document again this often (seconds).
    #[serde(deserialize_with = "durations::secs")]
    pub jwks_refresh_s: u64,
    /// A token naming a `kid` the cached document lacks makes the
    /// document be fetched again, at most once per this interval
    /// (seconds); also the retry interval after a failed fetch.
    #[serde(deserialize_with = "durations::secs")]
    pub jwks_min_refetch_s: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: String::new(),
            audience: String::new(),
            leeway_s: 0,
            public_keys: Vec::new(),
            jwks_url: String::new(),
            jwks_refresh_s: 300,
            jwks_min_refetch_s: 10,
        }
    }
}

/// `[admin]`: what the admin HTTP server (`admin_listen`) serves besides
/// the API. Both are off by default. Changes need a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Serve the files of this directory (e.g. `examples/web-chat`) under
    /// `static_path`, without authentication; empty = off.
    pub static_dir: PathBuf,
    /// The URL path the files appear under: starts and ends with `/`, is
    /// not `/` and is outside the API's `/v1/` and `/demo/`.
    pub static_path: String,
    /// DEMOS ONLY: `POST /demo/token {user, device}` mints a client token
    /// for ANY user and device WITHOUT authentication, so anyone who can
    /// reach the admin port can act as any user. Never turn it on where
    /// someone else can reach the port.
    pub demo_tokens: bool,
    /// Lifetime of a demo token (seconds, 1 ..= 86400; clients fetch a new
    /// one for every connection).
    #[serde(deserialize_with = "durations::secs")]
    pub demo_token_ttl_s: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            static_dir: PathBuf::new(),
            static_path: "/web/".into(),
            demo_tokens: false,
            demo_token_ttl_s: 600,
        }
    }
}

/// `[logging]`: the gateway's own log lines (on stderr).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    /// Which lines are written: a tracing filter, such as `"info"` or
    /// `"warn,surepush_log=debug"`. SIGHUP applies a changed value. The
    /// `RUST_LOG` variable, when set, replaces this setting and pins it
    /// (SIGHUP then leaves the level alone).
    pub level: String,
    /// `"text"` (lines for people) or `"json"` (one JSON object per line,
    /// for log collectors). Also the `--log-format` flag. Needs a restart.
    pub format: LogFormat,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

impl LogFormat {
    /// Its name in the config file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: the log format is \"text\" or \"json\"")),
        }
    }
}

/// `[mqtt]`: the MQTT 3.1.1/5.0 listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// Serve MQTT at all.
    pub enabled: bool,
    /// MQTT listener (every shard binds it with SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Inbox messages per replay page when a session resumes.
    pub page: u32,
    /// The replay window: replayed messages a session holds unacknowledged
    /// at most (sent to the client, or read and waiting for the next
    /// PUBACK). Up to a page of it (at most half) waits in the server, the
    /// rest is on the wire; the next page is read while PUBACKs of earlier
    /// ones are outstanding (issue #24, docs/MQTT.md).
    pub inflight: u32,
    /// The replay window in payload bytes: a session stops reading ahead
    /// once the replayed messages it holds carry this much (the page read
    /// last may pass it by up to `core.max_frame`). At most half of
    /// `max_write_buffer_bytes` is used, so a replay alone never makes a
    /// reading client a slow consumer.
    pub inflight_bytes: usize,
    /// Largest MQTT packet accepted, in bytes (advertised to v5 clients).
    pub max_packet: u32,
    /// Free-form topics (every name outside `user/`, `group/`, `room/`
    /// and `$`) may be published and subscribed by every user. When false
    /// (the default) only what a token's `acl` claim grants is allowed
    /// (docs/MQTT.md 2.2).
    pub topics_open: bool,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            enabled: true,
            listen: "127.0.0.1:1883".parse().expect("valid literal"),
            page: 64,
            // Four pages: a stream stays busy while a client's PUBACKs of
            // the oldest ones are on their way (the core's `room_window`
            // plays the same part for rooms and has the same default).
            inflight: 256,
            // With `core.max_frame` (1 MiB) at most 2 MiB of replay per
            // session, a quarter of the default `max_write_buffer_bytes`.
            inflight_bytes: 1 << 20,
            max_packet: 1 << 20,
            topics_open: false,
        }
    }
}

/// `[tls]`: TLS 1.2/1.3 (rustls) on listeners of their own, so plain and
/// TLS clients connect side by side; and HTTPS for the admin port. One
/// certificate serves every TLS listener; SIGHUP reads the files again
/// (new handshakes use the new certificate, open sessions keep theirs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain, PEM, the server's certificate first.
    pub cert: PathBuf,
    /// Private key of the certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The native protocol over TLS on this address (every shard binds
    /// it), next to the plain `listen`. Unset: off.
    pub listen: Option<SocketAddr>,
    /// MQTT over TLS on this address (the 8883 of other brokers), next to
    /// the plain `mqtt.listen`. Unset: off.
    pub mqtt_listen: Option<SocketAddr>,
    /// WebSocket over TLS (`wss://`) on this address, next to the plain
    /// `websocket.listen`, with the same `[websocket]` settings (path,
    /// origins, sizes, pings). Needs `websocket.enabled`. Unset: off.
    pub ws_listen: Option<SocketAddr>,
    /// The admin port (`admin_listen`) speaks HTTPS only.
    pub admin: bool,
    /// With `admin`: CA certificates (PEM) that admin clients must present
    /// a certificate from (mutual TLS). Empty: no client certificate asked.
    pub admin_client_ca: PathBuf,
}

impl TlsSettings {
    /// Whether any listener speaks TLS (then `cert` and `key` are needed).
    pub fn used(&self) -> bool {
        self.listen.is_some()
            || self.mqtt_listen.is_some()
            || self.ws_listen.is_some()
            || self.admin
    }
}

/// `[websocket]`: native protocol (subprotocol `surepush.v1`) and MQTT
/// (subprotocol `mqtt`) over WebSocket (RFC 6455), for browsers and
/// anything else that can only speak WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Serve WebSocket at all.
    pub enabled: bool,
    /// WebSocket listener (every shard binds it with SO_REUSEPORT).
    pub listen: SocketAddr,
    /// The request path upgrades are accepted on (others get 404).
    pub path: String,
    /// `Origin` values allowed to connect, compared exactly (such as
    /// `"https://chat.example.com"`); empty: any origin, and requests
    /// without one. Otherwise a request whose `Origin` is missing or not
    /// listed gets 403.
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message a client may send, in bytes (the payloads
    /// of all its fragments); a larger one closes the connection with 1009.
    pub max_message_size: usize,
    /// Send a WebSocket ping after this long without input (ms; 0: never),
    /// so proxies keep an idle connection open and a dead peer is found.
    #[serde(deserialize_with = "durations::millis")]
    pub ping_interval_ms: u64,
    /// Close a connection (1008) that sent nothing, not even a pong, for
    /// this long (ms; 0: never).
    #[serde(deserialize_with = "durations::millis")]
    pub idle_timeout_ms: u64,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            enabled: false,
            listen: "127.0.0.1:7402".parse().expect("valid literal"),
            path: "/".into(),
            allowed_origins: Vec::new(),
            max_message_size: 1 << 20,
            ping_interval_ms: 30_000,
            idle_timeout_ms: 90_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7400".parse().expect("valid literal"),
            admin_listen: "127.0.0.1:7401".parse().expect("valid literal"),
            data_dir: PathBuf::from("data"),
            shards: 0,
            pin_cores: true,
            spin_before_park_us: 0,
            io_memory_kib: 0,
            transparent_huge_pages: false,
            token_secret: String::new(),
            admin_token: String::new(),
            max_write_buffer_bytes: 8 << 20,
            room_lag_bytes: 1 << 20,
            close_grace_ms: 1_000,
            park_idle_ms: 5_000,
            mesh_channel_size: 1024,
            shutdown_grace_ms: 2_000,
            shutdown_redirect: String::new(),
            core: CoreConfig::default(),
            log: LogSettings::default(),
            mqtt: MqttSettings::default(),
            tls: TlsSettings::default(),
            websocket: WebSocketSettings::default(),
            logging: LoggingSettings::default(),
            cluster: ClusterSettings::default(),
            webhooks: Default::default(),
            auth: AuthSettings::default(),
            admin: AdminSettings::default(),
        }
    }
}

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        source: toml::de::Error,
    },
    /// A `SUREPUSH_*` environment variable could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// A command-line flag could not be applied.
    #[error("flag for {setting}: {message}")]
    Flag {
        /// The setting the flag sets.
        setting: String,
        /// What is wrong with it.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// A secret file could not be read or created.
    #[error("secret file {path}: {source}")]
    Secret {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl Config {
    /// Reads a TOML file alone (missing keys take their defaults; no
    /// environment, no flags: [`ConfigSources`] layers those).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let sources = ConfigSources {
            file: Some(path.to_owned()),
            ..ConfigSources::default()
        };
        sources.load().map(|loaded| loaded.config)
    }

    /// Shards to run: the setting, or one per available core.
    pub fn shard_count(&self) -> u16 {
        match self.shards {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get().min(u16::MAX as usize) as u16),
            n => n,
        }
    }

    /// The segment log settings of shard `id` (the one place they are
    /// derived from the config: serving and the offline tools agree).
    pub fn log_config(&self, id: u16) -> LogConfig {
        LogConfig {
            dir: self.data_dir.join(format!("shard-{id:03}")),
            segment_bytes: self.log.segment_mib << 20,
            sync_bytes: (self.log.sync_kib << 10) as usize,
            sync_interval: std::time::Duration::from_micros(self.log.sync_interval_us),
            checkpoint_bytes: self.log.checkpoint_mib << 20,
            retention_max_age: std::time::Duration::from_secs(self.log.retention_hours * 3600),
            dedup: self.core.dedup,
            conversations: self.core.conversations,
            recovery: self.log.recovery,
            cache_bytes: (self.log.cache_mib << 20) as usize,
            write_behind_bytes: self.log.write_behind_kib << 10,
            marker_delay: std::time::Duration::from_millis(self.log.marker_delay_ms),
        }
    }

    /// Checks ranges that would otherwise fail later and obscurely.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.core;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if c.max_frame < 1024 || c.max_frame > 64 << 20 {
            return bad("core.max_frame must be within 1 KiB ..= 64 MiB");
        }
        if c.push_window == 0 || c.max_pending_sends == 0 || c.max_sync_limit == 0 {
            return bad(
                "core.push_window, core.max_pending_sends and core.max_sync_limit must be > 0",
            );
        }
        if c.ack_timeout_ms == 0 || c.keepalive_ms == 0 || c.timer_tick_us == 0 {
            return bad(
                "core.ack_timeout_ms, core.keepalive_ms and core.timer_tick_us must be > 0",
            );
        }
        if self.log.segment_mib == 0 || self.log.segment_mib > 4096 {
            return bad("log.segment_mib must be within 1 ..= 4096");
        }
        if u64::from(c.max_frame) > self.log.segment_mib << 20 {
            return bad("log.segment_mib must hold at least one maximum-size frame");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            return bad(&format!("logging.level {:?}: {e}", self.logging.level));
        }
        if let Some(problem) = self.cluster.problem() {
            return bad(&problem);
        }
        let m = &self.mqtt;
        if m.enabled && (m.page == 0 || m.page > c.max_sync_limit) {
            return bad("mqtt.page must be within 1 ..= core.max_sync_limit");
        }
        if m.enabled && (m.inflight == 0 || m.inflight > u32::from(u16::MAX)) {
            return bad("mqtt.inflight must be within 1 ..= 65535");
        }
        if m.enabled && m.inflight_bytes == 0 {
            return bad("mqtt.inflight_bytes must be > 0");
        }
        if m.enabled && (m.max_packet < 1024 || m.max_packet > c.max_frame) {
            return bad("mqtt.max_packet must be within 1 KiB ..= core.max_frame");
        }
        self.webhooks.check(c).map_err(ConfigError::Invalid)?;
        let t = &self.tls;
        if t.used() && (t.cert.as_os_str().is_empty() || t.key.as_os_str().is_empty()) {
            return bad("tls.cert and tls.key are needed by a TLS listener (tls.listen, tls.mqtt_listen, tls.ws_listen or tls.admin)");
        }
        if !t.admin && !t.admin_client_ca.as_os_str().is_empty() {
            return bad("tls.admin_client_ca needs tls.admin = true");
        }
        if t.mqtt_listen.is_some() && !m.enabled {
            return bad("tls.mqtt_listen needs mqtt.enabled = true");
        }
        if t.ws_listen.is_some() && !self.websocket.enabled {
            return bad("tls.ws_listen needs websocket.enabled = true");
        }
        let a = &self.auth;
        let url = &a.jwks_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return bad("auth.jwks_url must start with https:// or http://");
        }
        if a.jwks_refresh_s == 0 || a.jwks_min_refetch_s == 0 {
            return bad("auth.jwks_refresh_s and auth.jwks_min_refetch_s must be > 0");
        }
        let a = &self.admin;
        let api_path = ["/v1/", "/demo/"]
            .iter()
            .any(|api| a.static_path.starts_with(api));
        if a.static_path.len() < 3
            || !a.static_path.starts_with('/')
            || !a.static_path.ends_with('/')
            || api_path
        {
            return bad(
                "admin.static_path must start and end with / (not just /), outside /v1/ and /demo/",
            );
        }
        if a.demo_token_ttl_s == 0 || a.demo_token_ttl_s > 86_400 {
            return bad("admin.demo_token_ttl_s must be within 1 ..= 86400");
        }
        let w = &self.websocket;
        if w.enabled && !w.path.starts_with('/') {
            return bad("websocket.path must start with '/'");
        }
        if w.enabled && w.max_message_size < 125 {
            return bad("websocket.max_message_size must be at least 125 bytes");
        }
        Ok(())
    }

    /// The token secret: configured, or read/created in the data dir.
    pub fn load_token_secret(&self) -> Result<Vec<u8>, ConfigError> {
        if !self.token_secret.is_empty() {
            return Ok(self.token_secret.as_bytes().to_vec());
        }
        read_or_create_secret(&self.data_dir.join("token.secret")).map(String::into_bytes)
    }

    /// The admin bearer token: configured, or read/created in the data dir.
    pub fn load_admin_token(&self) -> Result<String, ConfigError> {
        if !self.admin_token.is_empty() {
            return Ok(self.admin_token.clone());
        }
        read_or_create_secret(&self.data_dir.join("admin.token"))
    }
}

/// Reads a secret file, or creates it (mode 0600) with 32 random bytes in
/// hex, atomically (the log's storage seam): a crash never leaves a part
/// of one, and of two processes creating it at once, both end up with the
/// one that took the name.
fn read_or_create_secret(path: &Path) -> Result<String, ConfigError> {
    use surepush_log::storage::{write_atomically, NewFile, StdStorage};
    let err = |source| ConfigError::Secret {
        path: path.to_owned(),
        source,
    };
    // An empty file is what a crash in an older build's plain write left:
    // never used, so replaced.
    let replace = match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(err(e)),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut raw = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(err)?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let contents = |out: &mut dyn std::io::Write| out.write_all(hex.as_bytes());
    let file = NewFile::new(&contents).mode(0o600);
    let file = if replace { file } else { file.keep_existing() };
    match write_atomically(&StdStorage, path, &file) {
        Ok(()) => Ok(hex),
        // Another process created it meanwhile: theirs is the secret.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let s = std::fs::read_to_string(path).map_err(err)?;
            Ok(s.trim().to_string())
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
    }

    #[test]
    fn partial_file_keeps_defaults_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str("shards = 3\n[core]\npush_window = 7\n").unwrap();
        assert_eq!(c.shards, 3);
        assert_eq!(c.core.push_window, 7);
        assert_eq!(c.core.ack_timeout_ms, CoreConfig::default().ack_timeout_ms);
        assert!(toml::from_str::<Config>("shardz = 3\n").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut c = Config::default();
        c.core.push_window = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.core.max_frame = 8 << 20;
        c.log.segment_mib = 4;
        assert!(c.validate().is_err());
    }

    /// Issue #19 item 4: the demo token route is never on unless asked
    /// for, and static files cannot shadow the API.
    #[test]
    fn demo_tokens_are_off_by_default_and_static_files_stay_off_the_api() {
        assert!(!Config::default().admin.demo_tokens);
        let on: Config = toml::from_str("[admin]\ndemo_tokens = true\n").unwrap();
        assert!(on.admin.demo_tokens);
        on.validate().unwrap();
        for bad in ["/", "web/", "/web", "/v1/", "/v1/web/", "/demo/"] {
            let mut c = Config::default();
            c.admin.static_path = bad.into();
            assert!(c.validate().is_err(), "{bad}");
        }
        let mut c = Config::default();
        c.admin.static_path = "/chat/".into();
        c.validate().unwrap();
        c.admin.demo_token_ttl_s = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn secrets_are_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let a = c.load_admin_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(c.load_admin_token().unwrap(), a);
        assert_ne!(c.load_token_secret().unwrap(), a.as_bytes());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Issue #18 item 4: secrets are written atomically. An empty secret
    /// file (what a crash in the old plain write left) refused every later
    /// start with "File exists"; it is replaced, with mode 0600.
    #[test]
    fn an_empty_secret_file_left_by_a_crash_is_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "").unwrap();
        let c = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let token = c.load_admin_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(c.load_admin_token().unwrap(), token);
    }
}
