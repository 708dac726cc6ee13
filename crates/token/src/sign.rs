//! Minting tokens with a private key (RS256, ES256, EdDSA), for backends
//! written in Rust, the tests and the load generator. The gateway itself
//! only verifies; HS256 tokens are minted by [`crate::TokenVerifier::mint`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use serde::Serialize;

use crate::claims::{Audience, JwtClaims, NumericDate};
use crate::keys::{Alg, KeyError};
use crate::Claims;

/// The registered claims a token may carry besides the gateway's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud` (one value).
    pub audience: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// `iat` (seconds).
    pub issued_at_s: Option<u64>,
    /// `nbf` (seconds).
    pub not_before_s: Option<u64>,
}

/// A private key and the algorithm it signs with.
pub struct TokenSigner {
    alg: Alg,
    kid: Option<String>,
    key: EncodingKey,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

impl TokenSigner {
    /// A signer from a PKCS#8 PEM private key; the key type decides the
    /// algorithm (RSA -> RS256, EC P-256 -> ES256, Ed25519 -> EdDSA).
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<TokenSigner, KeyError> {
        let loaded = [
            (Alg::Rs256, EncodingKey::from_rsa_pem(pem)),
            (Alg::Es256, EncodingKey::from_ec_pem(pem)),
            (Alg::EdDsa, EncodingKey::from_ed_pem(pem)),
        ];
        loaded
            .into_iter()
            .find_map(|(alg, key)| key.ok().map(|key| (alg, key)))
            .map(|(alg, key)| TokenSigner { alg, kid, key })
            .ok_or(KeyError::NotAPrivateKey)
    }

    /// A signer that signs HS256 with `secret` (to build tokens the
    /// gateway must refuse, such as one signed with a public key's bytes).
    pub fn hs256(secret: &[u8], kid: Option<String>) -> TokenSigner {
        TokenSigner {
            alg: Alg::Hs256,
            kid,
            key: EncodingKey::from_secret(secret),
        }
    }

    /// Its algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The public half as a JWK (with `kid` and `alg`), for a backend
    /// that serves its own JWKS; `None` for EdDSA, whose public key the
    /// JWT crate cannot derive from the private one.
    pub fn public_jwk(&self) -> Option<serde_json::Value> {
        if self.alg == Alg::EdDsa {
            return None;
        }
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.key, self.alg.jwt()).ok()?;
        jwk.common.key_id = self.kid.clone();
        Some(serde_json::to_value(jwk).expect("a JWK serialises"))
    }

    /// Mints a token for `claims` with the `registered` claims.
    pub fn mint(&self, claims: &Claims, registered: &Registered) -> String {
        let header = serde_json::to_vec(&Header {
            alg: self.alg.name(),
            typ: "JWT",
            kid: self.kid.as_deref(),
        })
        .expect("header serialises");
        let date = |s: u64| NumericDate(s.into());
        let body = serde_json::to_vec(&JwtClaims {
            sub: claims.user.0.to_string(),
            dev: claims.device.0,
            exp: date(claims.expires_s),
            acl: claims.acl.to_claim(),
            nbf: registered.not_before_s.map(date),
            iat: registered.issued_at_s.map(date),
            iss: registered.issuer.clone(),
            aud: registered.audience.clone().map(Audience::One),
            jti: registered.jti.clone(),
        })
        .expect("claims serialise");
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(body)
        );
        let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &self.key, self.alg.jwt())
            .expect("a loaded key signs with its own algorithm");
        format!("{signed}.{signature}")
    }
}
