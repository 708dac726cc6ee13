//! Which keys verify tokens, and the pure verification against them.
//!
//! A [`KeySet`] is a value: the HS256 secret, the public keys from the
//! configuration (PEM files) and from the JWKS document, and the [`Policy`]
//! (`iss`, `aud`, clock leeway). [`KeySet::verify`] is a function of
//! (token, key set, now): no clock read, no I/O, so the core and the fuzz
//! target call it as they would any parser.
//!
//! Algorithm rules (no algorithm confusion): the header's `alg` picks the
//! family, and only keys of that algorithm are tried. An HS256 token is
//! checked with the HS256 secret only, never with a public key's bytes; a
//! public key is only ever used with the one algorithm it was loaded for.
//! `none` and every other algorithm are refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::sync::Arc;
use thiserror::Error;

use crate::claims::{JwtClaims, JwtHeader};
use crate::{Acl, AuthError, Claims, MAX_TOKEN_LEN};
use surepush_proto::{DeviceId, UserId};

/// The signature algorithms the gateway accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC SHA-256 with the shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// The JOSE name (`alg` header value).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    fn from_name(name: &str) -> Option<Alg> {
        [Alg::Hs256, Alg::Rs256, Alg::Es256, Alg::EdDsa]
            .into_iter()
            .find(|a| a.name() == name)
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            Alg::Hs256 => Algorithm::HS256,
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
            Alg::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// A key that could not be loaded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a PEM public key of RSA, EC P-256 or Ed25519.
    #[error("not a PEM public key (RSA, EC P-256 or Ed25519)")]
    NotAPublicKey,
    /// Not a PKCS#8 PEM private key of RSA, EC P-256 or Ed25519.
    #[error("not a PKCS#8 PEM private key (RSA, EC P-256 or Ed25519)")]
    NotAPrivateKey,
    /// A JWK the gateway cannot use (reason given).
    #[error("JWK {kid:?}: {reason}")]
    UnusableJwk {
        /// Its `kid`, if any.
        kid: Option<String>,
        /// Why.
        reason: String,
    },
    /// The JWKS document is not a JSON object with a `keys` array, or too big.
    #[error("JWKS document: {0}")]
    BadJwks(String),
}

/// A public key bound to one algorithm (and maybe a `kid`).
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Alg,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} {:?})", self.alg.name(), self.kid)
    }
}

impl PublicKey {
    /// A public key from PEM (`-----BEGIN PUBLIC KEY-----` or `RSA PUBLIC
    /// KEY`); its type decides the algorithm: RSA -> RS256, EC P-256 ->
    /// ES256, Ed25519 -> EdDSA. PEM keys have no `kid` and verify tokens
    /// of their algorithm whatever `kid` those name.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
        // The JWT crate also takes a private key here (and would verify
        // with it); a private key has no place in the gateway's config.
        let public_label = |label: &[u8]| pem.windows(label.len()).any(|w| w == label);
        if !public_label(b"-----BEGIN PUBLIC KEY-----")
            && !public_label(b"-----BEGIN RSA PUBLIC KEY-----")
        {
            return Err(KeyError::NotAPublicKey);
        }
        let loaded = [
            (Alg::Rs256, DecodingKey::from_rsa_pem(pem)),
            (Alg::Es256, DecodingKey::from_ec_pem(pem)),
            (Alg::EdDsa, DecodingKey::from_ed_pem(pem)),
        ];
        loaded
            .into_iter()
            .find_map(|(alg, key)| {
                key.ok().map(|key| PublicKey {
                    kid: None,
                    alg,
                    key,
                })
            })
            .ok_or(KeyError::NotAPublicKey)
    }

    /// Its `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm it verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }
}

/// What a token must say besides a good signature (`[auth]` settings).
/// The leeway applies to every token, `iss` and `aud` to tokens signed
/// with a public key (the identity provider's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required member of `aud`, if set (unset: `aud` is not checked).
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// Most public keys tried for one token without a `kid` match: bounds what
/// an unauthenticated peer makes the shard compute.
pub const MAX_KEYS_TRIED: usize = 8;

/// Every key the gateway verifies with, and the policy; a value shared
/// read-only (see [`crate::TokenVerifier`]).
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    hs256: Option<HsKey>,
    configured: Arc<[PublicKey]>,
    fetched: Arc<[PublicKey]>,
    policy: Policy,
}

/// The HS256 secret (redacted in Debug).
#[derive(Clone)]
struct HsKey(DecodingKey);

impl std::fmt::Debug for HsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a valid token says beyond [`Claims`]: what revocation looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenId {
    /// `jti`, if any.
    pub jti: Option<String>,
    /// `iat` in whole seconds, if any.
    pub issued_at_s: Option<u64>,
}

impl KeySet {
    /// Only the HS256 `secret`, default policy.
    pub fn hs256(secret: &[u8]) -> KeySet {
        KeySet {
            hs256: Some(HsKey(DecodingKey::from_secret(secret))),
            ..KeySet::default()
        }
    }

    /// The same set with the configured public keys and policy replaced.
    pub fn with_configured(&self, keys: Vec<PublicKey>, policy: Policy) -> KeySet {
        KeySet {
            configured: keys.into(),
            policy,
            ..self.clone()
        }
    }

    /// The same set with the JWKS keys replaced (a key rotated out of the
    /// document is gone from here too).
    pub fn with_fetched(&self, keys: Vec<PublicKey>) -> KeySet {
        KeySet {
            fetched: keys.into(),
            ..self.clone()
        }
    }

    /// The JWKS keys in force.
    pub fn fetched(&self) -> &[PublicKey] {
        &self.fetched
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks `token` at wall-clock time `now_ms` (ms since the epoch):
    /// signature, then `exp` (valid while after `now` minus the leeway),
    /// `nbf` (at most `now` plus the leeway), `iss` and `aud` (tokens of a
    /// public key only), `sub`, `acl`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<(Claims, TokenId), AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts"));
        };
        if URL_SAFE_NO_PAD.decode(s).is_err() {
            return Err(AuthError::Malformed("signature is not base64url"));
        }
        let header: JwtHeader = decode_json(h)?;
        let alg = Alg::from_name(&header.alg).ok_or(AuthError::Malformed(
            "alg must be HS256, RS256, ES256 or EdDSA",
        ))?;
        let signed = &token[..h.len() + 1 + c.len()];
        self.check_signature(alg, header.kid.as_deref(), signed.as_bytes(), s)?;
        let claims: JwtClaims = decode_json(c)?;
        self.check_claims(claims, alg != Alg::Hs256, now_ms)
    }

    fn check_signature(
        &self,
        alg: Alg,
        kid: Option<&str>,
        signed: &[u8],
        signature: &str,
    ) -> Result<(), AuthError> {
        let verifies = |key: &DecodingKey| {
            // An error is a key the algorithm cannot use: not a match.
            jsonwebtoken::crypto::verify(signature, signed, key, alg.jwt()).unwrap_or(false)
        };
        if alg == Alg::Hs256 {
            let key = self.hs256.as_ref().ok_or(AuthError::UnknownKey)?;
            return verifies(&key.0)
                .then_some(())
                .ok_or(AuthError::BadSignature);
        }
        let candidates = self
            .configured
            .iter()
            .chain(self.fetched.iter())
            .filter(|k| k.alg == alg)
            .filter(|k| match (kid, k.kid.as_deref()) {
                (Some(wanted), Some(has)) => wanted == has,
                _ => true,
            })
            .take(MAX_KEYS_TRIED);
        let mut tried = false;
        for key in candidates {
            tried = true;
            if verifies(&key.key) {
                return Ok(());
            }
        }
        // A `kid` no key has (a rotation the cached JWKS does not know
        // yet) is told apart, so the caller can refetch the document.
        let kid_known = kid.is_none_or(|wanted| {
            self.fetched
                .iter()
                .chain(self.configured.iter())
                .any(|k| k.kid.as_deref() == Some(wanted))
        });
        if !tried || !kid_known {
            return Err(AuthError::UnknownKey);
        }
        Err(AuthError::BadSignature)
    }

    /// `from_issuer`: signed with a public key, so `iss`/`aud` apply (an
    /// HS256 token is the gateway's own: minted with its secret by the
    /// backend or `POST /v1/tokens`, which set neither).
    fn check_claims(
        &self,
        claims: JwtClaims,
        from_issuer: bool,
        now_ms: u64,
    ) -> Result<(Claims, TokenId), AuthError> {
        let leeway_ms = self.policy.leeway_s.saturating_mul(1000);
        let user = claims
            .sub
            .parse::<u64>()
            .map_err(|_| AuthError::Malformed("sub must be a decimal user id"))?;
        if UserId(user).is_group() || surepush_proto::is_room(user) {
            return Err(AuthError::Malformed(
                "sub must be below 2^62 (higher ids name groups and rooms)",
            ));
        }
        if !claims.exp.is_after_ms(now_ms.saturating_sub(leeway_ms)) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = &claims.nbf {
            if nbf.is_after_ms(now_ms.saturating_add(leeway_ms)) {
                return Err(AuthError::NotYetValid);
            }
        }
        let policy = Policy::default();
        let policy = if from_issuer { &self.policy } else { &policy };
        if let Some(wanted) = &policy.issuer {
            if claims.iss.as_deref() != Some(wanted.as_str()) {
                return Err(AuthError::WrongIssuer);
            }
        }
        if let Some(wanted) = &policy.audience {
            if !claims.aud.as_ref().is_some_and(|a| a.contains(wanted)) {
                return Err(AuthError::WrongAudience);
            }
        }
        let acl = claims.acl.map(Acl::from_claim).transpose()?;
        let id = TokenId {
            jti: claims.jti,
            issued_at_s: claims.iat.map(|d| d.floor_seconds()),
        };
        let claims = Claims {
            user: UserId(user),
            device: DeviceId(claims.dev),
            expires_s: claims.exp.ceil_seconds(),
            acl: acl.unwrap_or_default(),
        };
        Ok((claims, id))
    }
}

pub(crate) fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, AuthError> {
    let raw = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed("part is not base64url"))?;
    serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed("part is not the expected JSON"))
}
