//! Session tokens: JWT (RFC 7519) compact form signed with HS256.
//!
//! A token names one user and one device and expires. The application
//! backend mints them with the shared secret (any JWT library works); the
//! gateway verifies the signature in constant time before it creates any
//! state for the connection. Secrets and tokens are never logged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use crate::proto::{DeviceId, ErrorCode, UserId};

/// Longest token accepted; bounds the work an unauthenticated peer causes.
pub const MAX_TOKEN_LEN: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// What a valid token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user the connection acts as.
    pub user: UserId,
    /// The device the connection is.
    pub device: DeviceId,
    /// Expiry, seconds since the Unix epoch.
    pub expires_s: u64,
}

/// Why a token was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Not three base64url parts, bad JSON, wrong algorithm, or too long.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
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

#[derive(Serialize, Deserialize)]
struct JwtHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// JSON claims; `sub` is the user id as a decimal string (JWT convention),
/// `dev` the device id, `exp` the expiry.
#[derive(Serialize, Deserialize)]
struct JwtClaims {
    sub: String,
    dev: u64,
    exp: u64,
}

/// Verifies and mints tokens with one shared secret.
#[derive(Clone)]
pub struct TokenVerifier {
    key: HmacSha256,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier { key: <redacted> }")
    }
}

impl TokenVerifier {
    /// A verifier for `secret` (any length; 32+ random bytes recommended).
    pub fn new(secret: &[u8]) -> TokenVerifier {
        TokenVerifier {
            key: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// Checks `token` at wall-clock time `now_s` (seconds since the epoch).
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts"));
        };
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        let mut mac = self.key.clone();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(c.as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        let header: JwtHeader = decode_json(h)?;
        if header.alg != "HS256" {
            return Err(AuthError::Malformed("alg must be HS256"));
        }
        let claims: JwtClaims = decode_json(c)?;
        let user = claims
            .sub
            .parse::<u64>()
            .map_err(|_| AuthError::Malformed("sub must be a decimal user id"))?;
        if UserId(user).is_group() || crate::proto::is_room(user) {
            return Err(AuthError::Malformed(
                "sub must be below 2^62 (higher ids name groups and rooms)",
            ));
        }
        if claims.exp <= now_s {
            return Err(AuthError::Expired);
        }
        Ok(Claims {
            user: UserId(user),
            device: DeviceId(claims.dev),
            expires_s: claims.exp,
        })
    }

    /// Mints a token (for backends written in Rust, tests and the load generator).
    pub fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = serde_json::to_vec(&JwtClaims {
            sub: claims.user.0.to_string(),
            dev: claims.device.0,
            exp: claims.expires_s,
        })
        .expect("claims serialise");
        let body = URL_SAFE_NO_PAD.encode(body);
        let mut mac = self.key.clone();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{body}.{sig}")
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, AuthError> {
    let raw = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed("part is not base64url"))?;
    serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed("part is not the expected JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            user: UserId(42),
            device: DeviceId(7),
            expires_s: 2_000,
        }
    }

    #[test]
    fn minted_token_verifies() {
        let v = TokenVerifier::new(b"secret");
        assert_eq!(v.verify(&v.mint(&claims()), 1_000), Ok(claims()));
    }

    #[test]
    fn token_from_another_secret_is_refused() {
        let token = TokenVerifier::new(b"other").mint(&claims());
        assert_eq!(
            TokenVerifier::new(b"secret").verify(&token, 1_000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn tokens_for_group_or_room_ids_are_refused() {
        let v = TokenVerifier::new(b"secret");
        for user in [UserId::GROUP_BIT | 1, crate::proto::ROOM_BIT | 1] {
            let token = v.mint(&Claims {
                user: UserId(user),
                ..claims()
            });
            let e = v.verify(&token, 1_000).unwrap_err();
            assert_eq!(e.code(), ErrorCode::AuthFailed, "{e}");
        }
    }

    #[test]
    fn expired_token_is_refused_with_its_own_code() {
        let v = TokenVerifier::new(b"secret");
        let e = v.verify(&v.mint(&claims()), 2_000).unwrap_err();
        assert_eq!(e, AuthError::Expired);
        assert_eq!(e.code(), ErrorCode::TokenExpired);
    }

    #[test]
    fn tampered_claims_are_refused() {
        let v = TokenVerifier::new(b"secret");
        let token = v.mint(&claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"1","dev":7,"exp":9999999999}"#);
        parts[1] = &forged;
        assert_eq!(
            v.verify(&parts.join("."), 1_000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let v = TokenVerifier::new(b"secret");
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "...",
            "x.y.!!!",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(
                matches!(v.verify(t, 0), Err(AuthError::Malformed(_))),
                "{t:?}"
            );
        }
    }

    #[test]
    fn alg_none_is_refused() {
        // A token whose header says "none" but which is signed with the key
        // must still be refused: only HS256 is accepted.
        let v = TokenVerifier::new(b"secret");
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let c = URL_SAFE_NO_PAD.encode(br#"{"sub":"42","dev":7,"exp":2000}"#);
        let mut mac = v.key.clone();
        mac.update(format!("{h}.{c}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            v.verify(&format!("{h}.{c}.{s}"), 1_000),
            Err(AuthError::Malformed("alg must be HS256"))
        );
    }
}
