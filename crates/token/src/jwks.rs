//! A JWKS document (RFC 7517 `{"keys": [...]}`) into public keys.
//!
//! Fetching is the server's job (off the shards); this is the parser. A
//! document is bounded ([`MAX_JWKS_BYTES`], [`MAX_JWKS_KEYS`]); keys the
//! gateway cannot use (encryption keys, HMAC keys, other curves or
//! algorithms) are skipped and named, never an error for the whole set, so
//! an identity provider that adds a new key type does not lock everyone out.
//! A key's algorithm is its `alg`, else follows from its type: RSA ->
//! RS256, EC P-256 -> ES256, OKP Ed25519 -> EdDSA.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::DecodingKey;

use crate::keys::{Alg, KeyError, PublicKey};

/// Largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one document.
pub const MAX_JWKS_KEYS: usize = 64;

/// The usable keys of a JWKS document, and why the others were skipped.
#[derive(Debug)]
pub struct JwksKeys {
    /// Keys to verify with.
    pub keys: Vec<PublicKey>,
    /// One entry per skipped key.
    pub skipped: Vec<KeyError>,
}

/// Parses a JWKS document.
pub fn parse_jwks(doc: &[u8]) -> Result<JwksKeys, KeyError> {
    if doc.len() > MAX_JWKS_BYTES {
        return Err(KeyError::BadJwks(format!(
            "larger than {MAX_JWKS_BYTES} bytes"
        )));
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(doc)
        .map_err(|e| KeyError::BadJwks(format!("not {{\"keys\": [...]}}: {e}")))?;
    let mut out = JwksKeys {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for value in doc.keys {
        if out.keys.len() == MAX_JWKS_KEYS {
            out.skipped.push(KeyError::UnusableJwk {
                kid: None,
                reason: format!("more than {MAX_JWKS_KEYS} keys"),
            });
            break;
        }
        let kid = value.get("kid").and_then(|k| k.as_str()).map(String::from);
        let unusable = |reason: String| KeyError::UnusableJwk {
            kid: kid.clone(),
            reason,
        };
        match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => match usable(&jwk) {
                Ok(key) => out.keys.push(key),
                Err(reason) => out.skipped.push(unusable(reason)),
            },
            Err(e) => out.skipped.push(unusable(e.to_string())),
        }
    }
    Ok(out)
}

fn usable(jwk: &Jwk) -> Result<PublicKey, String> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Err("not a signature key (use)".into());
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Alg::Rs256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Alg::Es256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Alg::EdDsa,
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not taken".into()),
        _ => return Err("curve not supported".into()),
    };
    let stated = jwk.common.key_algorithm.map(|a| match a {
        KeyAlgorithm::RS256 => Some(Alg::Rs256),
        KeyAlgorithm::ES256 => Some(Alg::Es256),
        KeyAlgorithm::EdDSA => Some(Alg::EdDsa),
        _ => None,
    });
    match stated {
        None => {}
        Some(Some(alg)) if alg == by_type => {}
        Some(_) => return Err("alg not supported for this key type".into()),
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(PublicKey {
        kid: jwk.common.key_id.clone(),
        alg: by_type,
        key,
    })
}
