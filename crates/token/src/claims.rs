//! The JSON inside a token: header and claims, and the time and audience
//! rules on them.
//!
//! Parsed only after the signature verified (`keys.rs`); unknown claims are
//! ignored (identity providers add their own). Times are RFC 7519
//! NumericDates: any JSON number of seconds, compared with the caller's
//! `now` in milliseconds, never with a clock read here.

use serde::{Deserialize, Serialize};

use crate::acl::AclClaim;

/// The JOSE header fields the gateway reads.
#[derive(Deserialize)]
pub(crate) struct JwtHeader {
    pub(crate) alg: String,
    /// Which key signed the token (JWKS keys are found by it).
    #[serde(default)]
    pub(crate) kid: Option<String>,
}

/// JSON claims; `sub` is the user id as a decimal string (JWT convention),
/// `dev` the device id, `exp` the expiry, `acl` the optional grants; the
/// registered `nbf`, `iat`, `iss`, `aud` and `jti` are optional.
#[derive(Serialize, Deserialize)]
pub(crate) struct JwtClaims {
    pub(crate) sub: String,
    pub(crate) dev: u64,
    pub(crate) exp: NumericDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) acl: Option<AclClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<NumericDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iat: Option<NumericDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jti: Option<String>,
}

/// RFC 7519 `aud`: one string or an array of strings.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

/// RFC 7519 NumericDate: seconds since the epoch, "possibly non-integer".
/// Any JSON number is accepted (`1700000000`, `1700000000.25`, `1.7e9`,
/// negative ones, which are simply in the past).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct NumericDate(pub(crate) serde_json::Number);

impl NumericDate {
    /// True when the date lies after `now_ms` (ms since the epoch).
    pub(crate) fn is_after_ms(&self, now_ms: u64) -> bool {
        match self.0.as_u64() {
            Some(s) => u128::from(s) * 1000 > u128::from(now_ms),
            // A fraction, an exponent, a negative or a huge number: f64 holds
            // every ms timestamp of this era exactly (below 2^53).
            None => self.0.as_f64().is_some_and(|s| s * 1000.0 > now_ms as f64),
        }
    }

    /// Whole seconds, rounded up; negative dates give 0, huge ones u64::MAX.
    pub(crate) fn ceil_seconds(&self) -> u64 {
        match self.0.as_u64() {
            Some(s) => s,
            // `as` saturates (and maps NaN to 0), which is the wanted clamp.
            None => self.0.as_f64().map_or(0, |s| s.ceil() as u64),
        }
    }

    /// Whole seconds, rounded down (for `iat`: a token issued at 10.5 was
    /// issued before 11, not before 10).
    pub(crate) fn floor_seconds(&self) -> u64 {
        match self.0.as_u64() {
            Some(s) => s,
            None => self.0.as_f64().map_or(0, |s| s.floor() as u64),
        }
    }
}
