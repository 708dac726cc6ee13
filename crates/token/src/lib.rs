//! Session tokens: JWT (RFC 7519) compact form signed with HS256.
//!
//! A token names one user and one device and expires; it may grant rooms
//! (the `acl` claim, `acl.rs`). The application backend mints them with the
//! shared secret (any JWT library works); the gateway verifies the
//! signature in constant time before it creates any state for the
//! connection. Secrets and tokens are never logged.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

mod acl;
use acl::AclClaim;
pub use acl::{Acl, AclAction, AclError, MAX_ACL_FILTERS, MAX_ACL_FILTER_LEN};
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
    /// `exp` (see [`TokenVerifier::verify`]).
    pub expires_s: u64,
    /// What the token grants (`acl` claim; empty when absent).
    pub acl: Acl,
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

#[derive(Serialize, Deserialize)]
struct JwtHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// JSON claims; `sub` is the user id as a decimal string (JWT convention),
/// `dev` the device id, `exp` the expiry, `acl` the optional grants.
#[derive(Serialize, Deserialize)]
struct JwtClaims {
    sub: String,
    dev: u64,
    exp: NumericDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acl: Option<AclClaim>,
}

/// RFC 7519 NumericDate: seconds since the epoch, "possibly non-integer".
/// Any JSON number is accepted (`1700000000`, `1700000000.25`, `1.7e9`,
/// negative ones, which are simply in the past).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct NumericDate(serde_json::Number);

impl NumericDate {
    /// True when the date lies after `now_ms` (ms since the epoch).
    fn is_after_ms(&self, now_ms: u64) -> bool {
        match self.0.as_u64() {
            Some(s) => u128::from(s) * 1000 > u128::from(now_ms),
            // A fraction, an exponent, a negative or a huge number: f64 holds
            // every ms timestamp of this era exactly (below 2^53).
            None => self.0.as_f64().is_some_and(|s| s * 1000.0 > now_ms as f64),
        }
    }

    /// Whole seconds, rounded up; negative dates give 0, huge ones u64::MAX.
    fn ceil_seconds(&self) -> u64 {
        match self.0.as_u64() {
            Some(s) => s,
            // `as` saturates (and maps NaN to 0), which is the wanted clamp.
            None => self.0.as_f64().map_or(0, |s| s.ceil() as u64),
        }
    }
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

    /// Checks `token` at wall-clock time `now_ms` (milliseconds since the
    /// epoch): the token is valid while `exp` (seconds, any JSON number) is
    /// after `now_ms / 1000` exactly.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Claims, AuthError> {
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
        if UserId(user).is_group() || surepush_proto::is_room(user) {
            return Err(AuthError::Malformed(
                "sub must be below 2^62 (higher ids name groups and rooms)",
            ));
        }
        if !claims.exp.is_after_ms(now_ms) {
            return Err(AuthError::Expired);
        }
        let acl = claims.acl.map(Acl::from_claim).transpose()?;
        Ok(Claims {
            user: UserId(user),
            device: DeviceId(claims.dev),
            expires_s: claims.exp.ceil_seconds(),
            acl: acl.unwrap_or_default(),
        })
    }

    /// Mints a token (for backends written in Rust, tests and the load generator).
    pub fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = serde_json::to_vec(&JwtClaims {
            sub: claims.user.0.to_string(),
            dev: claims.device.0,
            exp: NumericDate(claims.expires_s.into()),
            acl: claims.acl.to_claim(),
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
            acl: Acl::default(),
        }
    }

    #[test]
    fn minted_token_verifies() {
        let v = TokenVerifier::new(b"secret");
        assert_eq!(v.verify(&v.mint(&claims()), 1_000_000), Ok(claims()));
    }

    #[test]
    fn token_from_another_secret_is_refused() {
        let token = TokenVerifier::new(b"other").mint(&claims());
        assert_eq!(
            TokenVerifier::new(b"secret").verify(&token, 1_000_000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn tokens_for_group_or_room_ids_are_refused() {
        let v = TokenVerifier::new(b"secret");
        for user in [UserId::GROUP_BIT | 1, surepush_proto::ROOM_BIT | 1] {
            let token = v.mint(&Claims {
                user: UserId(user),
                ..claims()
            });
            let e = v.verify(&token, 1_000_000).unwrap_err();
            assert_eq!(e.code(), ErrorCode::AuthFailed, "{e}");
        }
    }

    #[test]
    fn expired_token_is_refused_with_its_own_code() {
        let v = TokenVerifier::new(b"secret");
        let e = v.verify(&v.mint(&claims()), 2_000_000).unwrap_err();
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
            v.verify(&parts.join("."), 1_000_000),
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
            v.verify(&format!("{h}.{c}.{s}"), 1_000_000),
            Err(AuthError::Malformed("alg must be HS256"))
        );
    }

    /// Signs `claims_json` as the gateway would, with the standard header.
    fn sign(v: &TokenVerifier, claims_json: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims_json);
        let mut mac = v.key.clone();
        mac.update(format!("{h}.{c}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }

    /// Issue 16 item 8: RFC 7519's NumericDate "can represent any number of
    /// seconds"; backends in other languages mint `exp` as 1.7e9 or with a
    /// fraction, and such tokens were refused as malformed.
    #[test]
    fn exp_may_be_any_json_number() {
        let v = TokenVerifier::new(b"secret");
        for (exp, valid_until_ms, expires_s) in [
            ("2000.5", 2_000_500, 2_001),
            ("2e3", 2_000_000, 2_000),
            ("2000.0", 2_000_000, 2_000),
            ("1.9999999e3", 2_000_000, 2_000),
        ] {
            let token = sign(&v, &format!(r#"{{"sub":"42","dev":7,"exp":{exp}}}"#));
            let claims = v.verify(&token, valid_until_ms - 1);
            assert_eq!(claims, Ok(claims_at(expires_s)), "exp {exp}");
            assert_eq!(
                v.verify(&token, valid_until_ms),
                Err(AuthError::Expired),
                "exp {exp}"
            );
            // The claims re-mint into a token valid at least as long.
            let again = v.mint(&claims.expect("valid"));
            assert!(v.verify(&again, valid_until_ms - 1).is_ok(), "exp {exp}");
        }
        for past in ["-1", "-1.5e300", "0", "0.0"] {
            let token = sign(&v, &format!(r#"{{"sub":"42","dev":7,"exp":{past}}}"#));
            assert_eq!(v.verify(&token, 0), Err(AuthError::Expired), "exp {past}");
        }
        // Far beyond u64 seconds: valid (and clamped when re-minted).
        let token = sign(&v, r#"{"sub":"42","dev":7,"exp":1e300}"#);
        assert_eq!(v.verify(&token, 1).map(|c| c.expires_s), Ok(u64::MAX));
        // Not a number at all stays malformed.
        for bad in [r#""2000""#, "null", "true", "[2000]"] {
            let token = sign(&v, &format!(r#"{{"sub":"42","dev":7,"exp":{bad}}}"#));
            assert!(
                matches!(v.verify(&token, 0), Err(AuthError::Malformed(_))),
                "exp {bad}"
            );
        }
    }

    fn claims_at(expires_s: u64) -> Claims {
        Claims {
            expires_s,
            ..claims()
        }
    }

    /// The worked example of docs/PROTOCOL.md section 4 (issue 16 item 8:
    /// the HMAC key is the secret's text, not its hex-decoded bytes). The
    /// doc must show exactly what the gateway computes.
    #[test]
    fn the_documented_token_example_is_what_the_gateway_mints_and_accepts() {
        const SECRET: &str = "5f0c2a9e8b7d41c3a6e9f2b0d8c4e1a7b3f6d9c2e5a8b1f4d7c0e3a6b9f2c5d8";
        const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJzdWIiOiI0MiIsImRldiI6NywiZXhwIjo0MTAyNDQ0ODAwfQ.\
             bz6ApusyngzO7V9gAhMHRwzVho3LFerXQIxHBfqjh7I";
        const SIGNED_WITH_DECODED_BYTES: &str = "7XjYS4w5qEWwDLDk7eCH6kbErrLkbFRCWKOpL3-U0t4";
        let doc = include_str!("../../../docs/PROTOCOL.md");
        for shown in [SECRET, TOKEN, SIGNED_WITH_DECODED_BYTES] {
            assert!(doc.contains(shown), "PROTOCOL.md no longer shows {shown}");
        }
        let v = TokenVerifier::new(SECRET.as_bytes());
        let claims = Claims {
            user: UserId(42),
            device: DeviceId(7),
            expires_s: 4_102_444_800,
            acl: Acl::default(),
        };
        assert_eq!(v.mint(&claims), TOKEN);
        assert_eq!(v.verify(TOKEN, 1_000), Ok(claims.clone()));
        // A client that hex-decodes the secret signs with other key bytes.
        let decoded: Vec<u8> = (0..SECRET.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&SECRET[i..i + 2], 16).expect("hex"))
            .collect();
        let wrong = TokenVerifier::new(&decoded).mint(&claims);
        assert!(wrong.ends_with(SIGNED_WITH_DECODED_BYTES));
        assert_eq!(v.verify(&wrong, 1_000), Err(AuthError::BadSignature));
    }

    /// Issue 16 item 6: the `acl` claim grants rooms by filter; it is
    /// parsed once, here, and survives minting.
    #[test]
    fn the_acl_claim_is_parsed_and_minted_back() {
        let v = TokenVerifier::new(b"secret");
        let token = sign(
            &v,
            r#"{"sub":"42","dev":7,"exp":2000,"acl":{"sub":["room/+"],"pub":["room/42"]}}"#,
        );
        let got = v.verify(&token, 1_000_000).expect("valid");
        let want = Acl::new(&["room/+"], &["room/42"]).expect("valid");
        assert_eq!(got.acl, want);
        assert_eq!(v.verify(&v.mint(&got), 1_000_000), Ok(got));
        // Absent, null, empty object and empty lists all grant nothing.
        for acl in [
            "",
            r#","acl":null"#,
            r#","acl":{}"#,
            r#","acl":{"sub":[],"pub":[]}"#,
        ] {
            let token = sign(&v, &format!(r#"{{"sub":"42","dev":7,"exp":2000{acl}}}"#));
            assert_eq!(v.verify(&token, 1_000_000), Ok(claims()), "{acl}");
        }
    }

    /// Issue 16 item 6: an ACL beyond the limits, or malformed, refuses the
    /// token with AuthFailed and says why; it never becomes "no grants".
    #[test]
    fn an_oversized_or_malformed_acl_refuses_the_token() {
        use crate::acl::{MAX_ACL_FILTERS, MAX_ACL_FILTER_LEN};
        let v = TokenVerifier::new(b"secret");
        let with = |acl: &str| {
            sign(
                &v,
                &format!(r#"{{"sub":"42","dev":7,"exp":2000,"acl":{acl}}}"#),
            )
        };
        let many: Vec<String> = (0..=MAX_ACL_FILTERS)
            .map(|n| format!("\"room/{n}\""))
            .collect();
        let long = format!("\"room/{}\"", "1".repeat(MAX_ACL_FILTER_LEN));
        for (acl, says) in [
            (
                format!(r#"{{"pub":[{}]}}"#, many.join(",")),
                "acl.pub: more than 64 filters",
            ),
            (
                format!(r#"{{"sub":[{long}]}}"#),
                "acl.sub: a filter is longer than 256 bytes",
            ),
            (
                r#"{"sub":["room/#/x"]}"#.to_string(),
                "acl.sub: invalid filter",
            ),
        ] {
            let e = v.verify(&with(&acl), 1_000_000).expect_err(&acl);
            assert_eq!(e.code(), ErrorCode::AuthFailed, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        for malformed in [
            r#"{"subscribe":["room/1"]}"#,
            r#"["room/1"]"#,
            r#"{"sub":"room/1"}"#,
            r#"{"sub":[1]}"#,
        ] {
            let e = v.verify(&with(malformed), 1_000_000).expect_err(malformed);
            assert!(matches!(e, AuthError::Malformed(_)), "{malformed}: {e}");
            assert_eq!(e.code(), ErrorCode::AuthFailed);
        }
    }
}
