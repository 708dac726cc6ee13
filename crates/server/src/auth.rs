//! The node's token keys and revocations: loaded at start, kept current
//! off the shards, shared to every shard through one [`TokenVerifier`].
//!
//! - Keys: the HS256 `token_secret`, the `[auth]` PEM public keys and
//!   policy (`iss`, `aud`, leeway), and the JWKS document, which a thread
//!   of its own fetches ([`jwks`]). SIGHUP applies a changed `[auth]`
//!   table and reads the PEM files and the document again ([`AuthPart`]).
//! - Revocations: the file `<data_dir>/revocations.json`, written
//!   atomically through the storage seam before a revocation is put in
//!   force, so an acknowledged revocation survives a crash; read at start.
//!   A damaged file stops the start (revocations silently dropped would
//!   let withdrawn tokens in).
//!
//! Shards only load the current values (an atomic pointer read); every
//! write happens here, on the JWKS thread, the reload thread or a blocking
//! task of the admin shard.

pub(crate) mod jwks;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::config::{AuthSettings, Config};
use super::reload::LivePart;
use surepush_core::auth::{KeyError, Policy, PublicKey, Revocation, Revocations, RevokeError};
use surepush_core::TokenVerifier;
use surepush_log::storage::{write_atomically, NewFile, StdStorage};

/// The revocations file in the data directory.
pub const REVOCATIONS_FILE: &str = "revocations.json";

/// Why the node's auth could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    /// A configured public key file cannot be read or is not a key.
    #[error("auth.public_keys {path}: {why}")]
    PublicKey {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The revocations file cannot be read or is damaged.
    #[error("{path}: {why}")]
    Revocations {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The JWKS thread could not be started.
    #[error("start the JWKS thread: {0}")]
    Thread(std::io::Error),
}

/// Why a revocation was not taken.
#[derive(Debug, thiserror::Error)]
pub enum RevokeFailure {
    /// Refused as asked (bad `jti`, too many held).
    #[error(transparent)]
    Refused(#[from] RevokeError),
    /// Not stored: the file could not be written (nothing changed).
    #[error("cannot store the revocation: {0}")]
    Storage(std::io::Error),
}

/// Keys and revocations of a running node.
pub struct NodeAuth {
    verifier: TokenVerifier,
    jwks: jwks::JwksFetcher,
    revocations_file: PathBuf,
    /// Held from reading the current set to swapping in the stored next
    /// one, so two revocations never overwrite each other.
    revoking: Mutex<()>,
}

impl NodeAuth {
    /// Loads keys and revocations for `config` and starts the JWKS thread
    /// (its first fetch is done before this returns, so tokens of the
    /// document are accepted from the first connection).
    pub fn start(config: &Config, secret: &[u8]) -> Result<Arc<NodeAuth>, AuthStartError> {
        let verifier = TokenVerifier::new(secret);
        let (keys, policy) = configured_keys(&config.auth)?;
        verifier.update_keys(|k| k.with_configured(keys.clone(), policy.clone()));
        let revocations_file = config.data_dir.join(REVOCATIONS_FILE);
        verifier.set_revocations(read_revocations(&revocations_file)?);
        let jwks = jwks::JwksFetcher::start(verifier.clone(), jwks::JwksSettings::of(&config.auth))
            .map_err(AuthStartError::Thread)?;
        Ok(Arc::new(NodeAuth {
            verifier,
            jwks,
            revocations_file,
            revoking: Mutex::new(()),
        }))
    }

    /// The verifier every shard clones.
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// A token named a `kid` no key has: fetch the JWKS document again
    /// (rate limited by the JWKS thread; never blocks).
    pub fn key_missing(&self) {
        self.jwks.refetch();
    }

    /// Stores `r` with the revocations in force, then puts them in force
    /// on every shard; blocking (file write and sync): call it off the
    /// shard's event loop. Returns the number of revocations held.
    pub fn revoke(&self, r: Revocation, now_s: u64) -> Result<usize, RevokeFailure> {
        let _one_at_a_time = self.revoking.lock().expect("no panic while held");
        let next = self.verifier.revocations().with(r, now_s)?;
        let bytes = next.encode();
        let contents = |out: &mut dyn std::io::Write| out.write_all(&bytes);
        write_atomically(
            &StdStorage,
            &self.revocations_file,
            &NewFile::new(&contents).mode(0o600),
        )
        .map_err(RevokeFailure::Storage)?;
        let held = next.len();
        self.verifier.set_revocations(next);
        Ok(held)
    }

    /// Applies `[auth]` from a reloaded configuration.
    fn apply(&self, settings: &AuthSettings) -> Result<Option<String>, String> {
        let (keys, policy) = configured_keys(settings).map_err(|e| e.to_string())?;
        let count = keys.len();
        self.verifier
            .update_keys(|k| k.with_configured(keys.clone(), policy.clone()));
        self.jwks.configure(jwks::JwksSettings::of(settings));
        Ok(Some(format!(
            "auth: {count} public key file(s) loaded{}",
            match settings.jwks_url.is_empty() {
                true => "",
                false => ", JWKS refetch requested",
            }
        )))
    }
}

/// Reloads `[auth]` on SIGHUP.
pub struct AuthPart(pub Arc<NodeAuth>);

impl LivePart for AuthPart {
    fn settings(&self) -> &'static [&'static str] {
        &["auth"]
    }

    fn apply(&self, config: &Config) -> Result<Option<String>, String> {
        self.0.apply(&config.auth)
    }
}

/// The PEM keys and the policy of `[auth]`.
fn configured_keys(a: &AuthSettings) -> Result<(Vec<PublicKey>, Policy), AuthStartError> {
    let keys = a
        .public_keys
        .iter()
        .map(|path| {
            let err = |why: String| AuthStartError::PublicKey {
                path: path.clone(),
                why,
            };
            let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            PublicKey::from_pem(&pem).map_err(|e: KeyError| err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let policy = Policy {
        issuer: Some(a.issuer.clone()).filter(|s| !s.is_empty()),
        audience: Some(a.audience.clone()).filter(|s| !s.is_empty()),
        leeway_s: a.leeway_s,
    };
    Ok((keys, policy))
}

/// The stored revocations; none when the file does not exist.
fn read_revocations(path: &Path) -> Result<Revocations, AuthStartError> {
    let err = |why: String| AuthStartError::Revocations {
        path: path.to_owned(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => Revocations::decode(&bytes).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Revocations::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
