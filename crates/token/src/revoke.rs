//! Token revocation: what the backend withdrew before tokens expire.
//!
//! Two kinds ([`Revocation`]): one token by its `jti` (kept until that
//! token's `exp`, then pruned), and every token of a user, or of one of its
//! devices, issued before a time (`iat` below it; a token without `iat`
//! cannot show it is newer and is refused too). A later subject revocation
//! replaces an earlier one of the same subject. The set is a value: the
//! admin builds a new one ([`Revocations::with`]), stores it durably (the
//! server's job, through the storage seam) and swaps it in for every shard.
//! Its size is bounded ([`MAX_REVOCATIONS`]).
//!
//! The stored form is JSON ([`Revocations::encode`] / [`Revocations::decode`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::TokenId;
use crate::{AuthError, Claims};
use surepush_proto::{DeviceId, UserId};

/// Most revocations held (tokens and subjects together).
pub const MAX_REVOCATIONS: usize = 100_000;
/// Longest `jti` accepted for revocation, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// One withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// The token with this `jti`; kept until `expires_s` (its `exp`).
    Token {
        /// The token's `jti`.
        jti: String,
        /// The token's `exp` (seconds): after it the entry is dropped.
        expires_s: u64,
    },
    /// Every token of `user` (or only of `device`) with `iat` before
    /// `issued_before_s`.
    Subject {
        /// The user.
        user: UserId,
        /// One device, or every device of the user.
        device: Option<DeviceId>,
        /// Tokens issued before this (seconds since the epoch) are refused.
        issued_before_s: u64,
    },
}

/// Why a revocation was not taken.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RevokeError {
    /// [`MAX_REVOCATIONS`] are held already.
    #[error("too many revocations held ({MAX_REVOCATIONS})")]
    Full,
    /// The `jti` is empty or longer than [`MAX_JTI_LEN`].
    #[error("jti must be 1 to {MAX_JTI_LEN} bytes")]
    BadJti,
    /// The stored form could not be read.
    #[error("revocation file: {0}")]
    Corrupt(String),
}

/// The revocations in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    tokens: HashMap<String, u64>,
    subjects: HashMap<(UserId, Option<DeviceId>), u64>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    tokens: Vec<StoredToken>,
    subjects: Vec<StoredSubject>,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    jti: String,
    exp: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredSubject {
    user: u64,
    #[serde(default)]
    device: Option<u64>,
    issued_before: u64,
}

const STORED_VERSION: u32 = 1;

impl Revocations {
    /// Refuses a token that a revocation covers.
    pub fn check(&self, claims: &Claims, id: &TokenId, now_ms: u64) -> Result<(), AuthError> {
        if let Some(jti) = &id.jti {
            if self
                .tokens
                .get(jti)
                .is_some_and(|&exp| u128::from(exp) * 1000 > u128::from(now_ms))
            {
                return Err(AuthError::Revoked);
            }
        }
        for subject in [(claims.user, Some(claims.device)), (claims.user, None)] {
            if let Some(&before) = self.subjects.get(&subject) {
                if id.issued_at_s.is_none_or(|iat| iat < before) {
                    return Err(AuthError::Revoked);
                }
            }
        }
        Ok(())
    }

    /// This set with `r` added and token entries expired at `now_s` dropped.
    pub fn with(&self, r: Revocation, now_s: u64) -> Result<Revocations, RevokeError> {
        let mut next = self.clone();
        next.tokens.retain(|_, exp| *exp > now_s);
        match r {
            Revocation::Token { jti, expires_s } => {
                if jti.is_empty() || jti.len() > MAX_JTI_LEN {
                    return Err(RevokeError::BadJti);
                }
                if !next.tokens.contains_key(&jti) && next.len() >= MAX_REVOCATIONS {
                    return Err(RevokeError::Full);
                }
                let exp = next.tokens.entry(jti).or_insert(0);
                *exp = (*exp).max(expires_s);
            }
            Revocation::Subject {
                user,
                device,
                issued_before_s,
            } => {
                let key = (user, device);
                if !next.subjects.contains_key(&key) && next.len() >= MAX_REVOCATIONS {
                    return Err(RevokeError::Full);
                }
                next.subjects.insert(key, issued_before_s);
            }
        }
        Ok(next)
    }

    /// A set of `n` token entries (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn filled(n: usize) -> Revocations {
        Revocations {
            tokens: (0..n).map(|i| (i.to_string(), u64::MAX)).collect(),
            subjects: HashMap::new(),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored form (JSON, sorted so equal sets store equal bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut tokens: Vec<StoredToken> = self
            .tokens
            .iter()
            .map(|(jti, &exp)| StoredToken {
                jti: jti.clone(),
                exp,
            })
            .collect();
        tokens.sort_by(|a, b| a.jti.cmp(&b.jti));
        let mut subjects: Vec<StoredSubject> = self
            .subjects
            .iter()
            .map(|(&(user, device), &before)| StoredSubject {
                user: user.0,
                device: device.map(|d| d.0),
                issued_before: before,
            })
            .collect();
        subjects.sort_by_key(|s| (s.user, s.device));
        serde_json::to_vec(&Stored {
            version: STORED_VERSION,
            tokens,
            subjects,
        })
        .expect("revocations serialise")
    }

    /// Reads the stored form back.
    pub fn decode(bytes: &[u8]) -> Result<Revocations, RevokeError> {
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| RevokeError::Corrupt(e.to_string()))?;
        if stored.version != STORED_VERSION {
            return Err(RevokeError::Corrupt(format!(
                "version {} (this build reads {STORED_VERSION})",
                stored.version
            )));
        }
        Ok(Revocations {
            tokens: stored.tokens.into_iter().map(|t| (t.jti, t.exp)).collect(),
            subjects: stored
                .subjects
                .into_iter()
                .map(|s| ((UserId(s.user), s.device.map(DeviceId)), s.issued_before))
                .collect(),
        })
    }
}
