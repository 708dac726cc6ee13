//! The JWKS fetcher: a thread of its own with a blocking HTTP client
//! (ureq), so no shard ever waits on the identity provider.
//!
//! It fetches the document at start (before the node serves), then every
//! `jwks_refresh_s`; a token naming an unknown `kid` asks for an early
//! fetch ([`JwksFetcher::refetch`], a non-blocking `try_send`): at most
//! one fetch per `jwks_min_refetch_s` (requests meanwhile wait for the end
//! of that interval and are served by one fetch), which is also the retry
//! interval after a failure. A fetched document replaces the JWKS keys whole: a key
//! stays usable exactly as long as the document lists it (rotation). A
//! failed fetch or an invalid document keeps the keys in force.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::config::AuthSettings;
use surepush_core::auth::{parse_jwks, MAX_JWKS_BYTES};
use surepush_core::TokenVerifier;

/// Longest a fetch may take (connect, TLS, the whole body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the fetcher needs from `[auth]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JwksSettings {
    url: String,
    refresh: Duration,
    min_refetch: Duration,
}

impl JwksSettings {
    pub(crate) fn of(a: &AuthSettings) -> JwksSettings {
        JwksSettings {
            url: a.jwks_url.clone(),
            refresh: Duration::from_secs(a.jwks_refresh_s),
            min_refetch: Duration::from_secs(a.jwks_min_refetch_s),
        }
    }
}

enum Command {
    /// A token named an unknown `kid`.
    Refetch,
    /// New settings (SIGHUP): fetch now.
    Configure(JwksSettings),
}

/// Handle to the fetcher thread; the thread ends when this is dropped.
pub(crate) struct JwksFetcher {
    commands: SyncSender<Command>,
    settings: SyncSender<Command>,
}

impl JwksFetcher {
    /// Fetches once (if a URL is set), then starts the thread.
    pub(crate) fn start(
        verifier: TokenVerifier,
        settings: JwksSettings,
    ) -> std::io::Result<JwksFetcher> {
        let mut fetcher = Fetcher {
            verifier,
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(FETCH_TIMEOUT))
                .build()
                .into(),
            settings,
            last_attempt: None,
            last_ok: false,
            deferred: false,
        };
        fetcher.fetch();
        // One slot each: a pending refetch absorbs the next ones; a
        // settings change is never dropped behind a refetch.
        let (commands, rx) = mpsc::sync_channel(1);
        let (settings, settings_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("surepush-jwks".into())
            .spawn(move || fetcher.run(rx, settings_rx))?;
        Ok(JwksFetcher { commands, settings })
    }

    /// Asks for an early fetch; never blocks.
    pub(crate) fn refetch(&self) {
        match self.commands.try_send(Command::Refetch) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// New settings (applied and fetched at once).
    pub(crate) fn configure(&self, settings: JwksSettings) {
        // The reload thread may wait for the fetcher to take the slot.
        let _ = self.settings.send(Command::Configure(settings));
        self.refetch();
    }
}

struct Fetcher {
    verifier: TokenVerifier,
    agent: ureq::Agent,
    settings: JwksSettings,
    last_attempt: Option<Instant>,
    last_ok: bool,
    /// A refetch was asked for within `min_refetch` of the last fetch.
    deferred: bool,
}

impl Fetcher {
    fn run(mut self, commands: Receiver<Command>, settings: Receiver<Command>) {
        loop {
            let wait = self.until_next_fetch();
            let command = commands.recv_timeout(wait);
            if let Ok(Command::Configure(s)) = settings.try_recv() {
                self.settings = s;
                self.last_attempt = None;
            }
            match command {
                Ok(Command::Refetch) if !self.may_refetch() => self.deferred = true,
                Ok(_) => self.fetch(),
                Err(RecvTimeoutError::Timeout) if self.until_next_fetch().is_zero() => self.fetch(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Time until the next fetch: `refresh` after a good one,
    /// `min_refetch` after a failure or when a refetch waits.
    fn until_next_fetch(&self) -> Duration {
        let Some(at) = self.last_attempt else {
            return Duration::ZERO;
        };
        let every = match self.last_ok && !self.deferred {
            true => self.settings.refresh,
            false => self.settings.min_refetch,
        };
        every.saturating_sub(at.elapsed())
    }

    fn may_refetch(&self) -> bool {
        self.last_attempt
            .is_none_or(|at| at.elapsed() >= self.settings.min_refetch)
    }

    fn fetch(&mut self) {
        self.deferred = false;
        if self.settings.url.is_empty() {
            self.verifier.update_keys(|k| k.with_fetched(Vec::new()));
            self.last_attempt = Some(Instant::now());
            self.last_ok = true;
            return;
        }
        self.last_attempt = Some(Instant::now());
        self.last_ok = match self.download() {
            Ok(doc) => self.install(&doc),
            Err(why) => {
                tracing::warn!(url = %self.settings.url, %why, "JWKS fetch failed; keeping the keys in force");
                false
            }
        };
    }

    fn download(&self) -> Result<Vec<u8>, String> {
        let mut answer = self
            .agent
            .get(&self.settings.url)
            .call()
            .map_err(|e| e.to_string())?;
        answer
            .body_mut()
            .with_config()
            .limit(MAX_JWKS_BYTES as u64)
            .read_to_vec()
            .map_err(|e| e.to_string())
    }

    fn install(&self, doc: &[u8]) -> bool {
        match parse_jwks(doc) {
            Ok(parsed) => {
                for skipped in &parsed.skipped {
                    tracing::warn!(url = %self.settings.url, %skipped, "JWKS key skipped");
                }
                let kids: Vec<&str> = parsed.keys.iter().filter_map(|k| k.kid()).collect();
                tracing::info!(url = %self.settings.url, keys = parsed.keys.len(), ?kids, "JWKS keys in force");
                self.verifier
                    .update_keys(|k| k.with_fetched(parsed.keys.clone()));
                true
            }
            Err(e) => {
                tracing::warn!(url = %self.settings.url, error = %e, "JWKS document refused; keeping the keys in force");
                false
            }
        }
    }
}
