//! Session tokens: JWT (RFC 7519) compact form, signed with HS256 (the
//! shared secret) or with a public-key algorithm (RS256, ES256, EdDSA;
//! keys from PEM files or a JWKS document).
//!
//! A token names one user and one device and expires; it may grant rooms
//! (the `acl` claim, `acl.rs`), name its issuer, audience, issue time and id
//! (`iss`, `aud`, `iat`, `jti`). The application backend mints them (any
//! JWT library works); the gateway verifies the signature before it
//! creates any state for the connection. Secrets and tokens are never
//! logged.
//!
//! Parts: `claims.rs` (the JSON), `keys.rs` (key set, policy and the pure
//! verification), `jwks.rs` (JWKS parser), `revoke.rs` (revocations),
//! `sign.rs` (minting with a private key). [`TokenVerifier`] ties the key
//! set and the revocations together as shared cells: every shard holds a
//! clone and loads the current values without a lock; the JWKS thread,
//! SIGHUP and the admin API swap new values in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

mod acl;
mod claims;
mod jwks;
mod keys;
mod revoke;
mod sign;

pub use acl::{Acl, AclAction, AclError, MAX_ACL_FILTERS, MAX_ACL_FILTER_LEN};
use claims::{JwtClaims, NumericDate};
pub use jwks::{parse_jwks, JwksKeys, MAX_JWKS_BYTES, MAX_JWKS_KEYS};
pub use keys::{Alg, KeyError, KeySet, Policy, PublicKey, TokenId, MAX_KEYS_TRIED};
pub use revoke::{Revocation, Revocations, RevokeError, MAX_JTI_LEN, MAX_REVOCATIONS};
pub use sign::{Registered, TokenSigner};
use surepush_proto::{DeviceId, ErrorCode, UserId};

/// Longest token accepted; bounds the work an unauthenticated peer causes.
pub const MAX_TOKEN_LEN: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user the connection acts as.
    pub user: UserId,
    /// The device the connection is.
    pub device: DeviceId,
    /// Expiry, whole seconds since the Unix epoch. A fractional `exp` is
    /// rounded up here, so a token re-minted from these claims is valid
    /// whenever the original is; validity itself is decided on the exact
    /// `exp` (see [`KeySet::verify`]).
    pub expires_s: u64,
    /// What the token grants (`acl` claim; empty when absent).
    pub acl: Acl,
}

/// Why a token was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Not three base64url parts, bad JSON, unsupported algorithm, or too long.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// No key of the token's algorithm (and `kid`) is known: maybe a key
    /// the cached JWKS does not have yet (the server refetches it).
    #[error("no key for the token's alg/kid")]
    UnknownKey,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer (iss) not accepted")]
    WrongIssuer,
    /// `aud` does not name the configured audience.
    #[error("token audience (aud) not accepted")]
    WrongAudience,
    /// Revoked by the backend (`POST /revoke`).
    #[error("token revoked")]
    Revoked,
    /// The `acl` claim is too big or holds an invalid filter.
    #[error("token {0}")]
    BadAcl(#[from] AclError),
}

impl AuthError {
    /// Wire code for the ERROR frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::AuthFailed,
        }
    }
}

/// Verifies tokens against the node's current key set and revocations
/// (shared cells: clones see every swap), and mints HS256 tokens with the
/// shared secret.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<ArcSwap<KeySet>>,
    revoked: Arc<ArcSwap<Revocations>>,
    mint_key: HmacSha256,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier { key: <redacted> }")
    }
}

impl TokenVerifier {
    /// A verifier for the HS256 `secret` (any length; 32+ random bytes
    /// recommended) and no other key, no revocation.
    pub fn new(secret: &[u8]) -> TokenVerifier {
        TokenVerifier {
            keys: Arc::new(ArcSwap::from_pointee(KeySet::hs256(secret))),
            revoked: Arc::default(),
            mint_key: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// Checks `token` at wall-clock time `now_ms` (milliseconds since the
    /// epoch) with the current keys ([`KeySet::verify`]), then against the
    /// current revocations.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Claims, AuthError> {
        let (claims, id) = self.keys.load().verify(token, now_ms)?;
        self.revoked.load().check(&claims, &id, now_ms)?;
        Ok(claims)
    }

    /// The key set in force.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Replaces part of the key set (`change` may run more than once when
    /// two updates race; each sees the other's result).
    pub fn update_keys(&self, change: impl Fn(&KeySet) -> KeySet) {
        self.keys.rcu(|current| change(current));
    }

    /// The revocations in force.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revoked.load_full()
    }

    /// Puts `revocations` in force on every clone.
    pub fn set_revocations(&self, revocations: Revocations) {
        self.revoked.store(Arc::new(revocations));
    }

    /// Mints an HS256 token (for backends written in Rust, tests and the
    /// load generator).
    pub fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = serde_json::to_vec(&JwtClaims {
            sub: claims.user.0.to_string(),
            dev: claims.device.0,
            exp: NumericDate(claims.expires_s.into()),
            acl: claims.acl.to_claim(),
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            jti: None,
        })
        .expect("claims serialise");
        let body = URL_SAFE_NO_PAD.encode(body);
        let mut mac = self.mint_key.clone();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{body}.{sig}")
    }
}

#[cfg(test)]
mod tests;
