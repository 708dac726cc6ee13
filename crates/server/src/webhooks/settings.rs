//! `[webhooks]`: where events go, how they are signed and retried, and
//! the core's half (which events, how many are kept).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use surepush_core::durations;
use surepush_core::{CoreConfig, WebhookKind, WebhookRules};

/// `[webhooks]`: events for the backend (docs/WEBHOOKS.md). Off while
/// `url` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// The endpoint every event is POSTed to (`http://` or `https://`);
    /// empty: webhooks off. One endpoint: a backend that needs several
    /// fans out behind it (the gateway keeps one delivery cursor per
    /// shard, not one per receiver).
    pub url: String,
    /// The events sent, by name (`message.offline`, `message.unacked`,
    /// `session.connected`, `session.disconnected`); empty: all. Events
    /// not listed are not stored either.
    pub events: Vec<String>,
    /// HMAC-SHA256 key for `X-Surepush-Signature` (over
    /// `<timestamp>.<body>`); empty: requests are not signed (a warning
    /// at start). Prefer the `SUREPUSH_WEBHOOKS__SECRET` variable.
    pub secret: String,
    /// Time for one request, connect to response (ms).
    #[serde(deserialize_with = "durations::millis")]
    pub timeout_ms: u64,
    /// First retry after this long (ms); doubles per failed attempt, with
    /// random jitter of up to half the delay.
    #[serde(deserialize_with = "durations::millis")]
    pub retry_initial_ms: u64,
    /// Longest delay between retries (ms).
    #[serde(deserialize_with = "durations::millis")]
    pub retry_max_ms: u64,
    /// An event still failing this long after its first attempt in this
    /// process is dropped (counted and logged) (s).
    #[serde(deserialize_with = "durations::secs")]
    pub give_up_after_s: u64,
    /// Requests in flight to the endpoint at once (one thread each).
    pub concurrency: u32,
    /// Events each shard hands to the dispatcher and has not heard back
    /// about; the rest wait in the shard's log.
    pub window: u32,
    /// Events kept per shard (stored, not delivered); beyond, the oldest
    /// is dropped (`surepush_webhook_deliveries_total{result="dropped"}`,
    /// a warning): a backend down for long costs the oldest events,
    /// never memory.
    pub max_pending: u32,
    /// Payload bytes copied (base64) into `message.offline`; 0: none.
    pub preview_bytes: u32,
    /// `message.unacked` fires once a push is unacknowledged after this
    /// many retransmissions; unset: `core.max_retries` (when the
    /// connection is declared dead). At most `core.max_retries`.
    pub after_retransmits: Option<u32>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: String::new(),
            events: Vec::new(),
            secret: String::new(),
            timeout_ms: 5_000,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            give_up_after_s: 24 * 3600,
            concurrency: 4,
            window: 64,
            max_pending: 100_000,
            preview_bytes: 0,
            after_retransmits: None,
        }
    }
}

/// The largest payload preview (bytes).
pub const MAX_PREVIEW_BYTES: u32 = 4096;

impl WebhookSettings {
    /// True when events are sent at all.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// What is wrong with these settings, if anything (checked at start).
    pub fn check(&self, core: &CoreConfig) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        check_url(&self.url)?;
        for name in &self.events {
            if WebhookKind::from_name(name).is_none() {
                let known: Vec<&str> = WebhookKind::ALL.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "webhooks.events: unknown event {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        if self.timeout_ms == 0 || self.retry_initial_ms == 0 || self.give_up_after_s == 0 {
            return Err(
                "webhooks.timeout_ms, retry_initial_ms and give_up_after_s must be > 0".into(),
            );
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err("webhooks.retry_max_ms must be at least retry_initial_ms".into());
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err("webhooks.concurrency must be within 1 ..= 256".into());
        }
        if self.window == 0 || self.max_pending == 0 {
            return Err("webhooks.window and webhooks.max_pending must be > 0".into());
        }
        if self.preview_bytes > MAX_PREVIEW_BYTES {
            return Err(format!(
                "webhooks.preview_bytes must be at most {MAX_PREVIEW_BYTES}"
            ));
        }
        if self.after_retransmits.is_some_and(|n| n > core.max_retries) {
            return Err(
                "webhooks.after_retransmits must be at most core.max_retries (the connection is closed then)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The core's half of these settings (no events when off).
    pub fn rules(&self, core: &CoreConfig) -> WebhookRules {
        let mut rules = WebhookRules::default();
        rules.preview_bytes = self.preview_bytes;
        rules.after_retransmits = self.after_retransmits.unwrap_or(core.max_retries);
        rules.max_pending = self.max_pending;
        rules.window = self.window;
        if !self.enabled() {
            return rules;
        }
        for kind in WebhookKind::ALL {
            if self.events.is_empty() || self.events.iter().any(|e| e == kind.name()) {
                rules = rules.with(kind);
            }
        }
        rules
    }
}

/// An endpoint URL the dispatcher can use: `http://` or `https://`, a
/// host, and nothing it would silently ignore.
fn check_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("webhooks.url {url:?}: {why}"));
    let uri: ureq::http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return bad(&e.to_string()),
    };
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return bad("must start with http:// or https://"),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => return bad("has no host"),
    }
    if url.contains('@') {
        return bad("credentials in the URL are not supported (use webhooks.secret)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> WebhookSettings {
        WebhookSettings {
            url: url.into(),
            ..WebhookSettings::default()
        }
    }

    #[test]
    fn urls_without_http_scheme_or_host_are_refused_with_the_setting_named() {
        let core = CoreConfig::default();
        for url in [
            "ftp://x/",
            "localhost:80/hook",
            "http://",
            "not a url",
            "http://u:p@h/",
        ] {
            let err = with_url(url).check(&core).expect_err(url);
            assert!(err.starts_with("webhooks.url"), "{url}: {err}");
        }
        with_url("http://127.0.0.1:9000/hook")
            .check(&core)
            .expect("valid");
        with_url("https://push.example.com/hook")
            .check(&core)
            .expect("valid");
    }

    #[test]
    fn the_events_filter_selects_the_core_rules_and_unknown_names_are_refused() {
        let core = CoreConfig::default();
        let mut s = with_url("http://h/");
        s.events = vec!["message.offline".into()];
        let rules = s.rules(&core);
        assert!(rules.emits(WebhookKind::MessageOffline));
        assert!(!rules.emits(WebhookKind::SessionConnected));
        assert_eq!(rules.after_retransmits, core.max_retries);
        s.events = vec!["message.offlin".into()];
        assert!(s.check(&core).is_err());
        let off = WebhookSettings::default().rules(&core);
        assert!(WebhookKind::ALL.iter().all(|k| !off.emits(*k)));
    }
}
