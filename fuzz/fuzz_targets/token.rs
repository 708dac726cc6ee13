//! Arbitrary text as a session token: verified or refused, never a panic,
//! and never accepted without the key. The same text is also signed with
//! the key as a token's claims, so the claims' parser (`exp`, the `acl`
//! claim and its limits) is reached too: what it accepts must mint back
//! into a token that verifies to the same claims. A key set that also
//! holds RS256, ES256 and EdDSA public keys (whose private keys the fuzzer
//! does not have) must accept nothing the HS256 secret alone does not.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use surepush::core::TokenVerifier;
use surepush::token::{KeySet, Policy, PublicKey};

const SECRET: &[u8] = b"fuzz secret";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let v = TokenVerifier::new(SECRET);
        round_trips(&v, text);
        round_trips(&v, &signed(text));
        no_public_key_forgery(text);
    }
});

/// Public keys add no way in for a peer without their private keys.
fn no_public_key_forgery(token: &str) {
    let pem = [
        &include_bytes!("../../crates/token/testdata/rsa_public.pem")[..],
        include_bytes!("../../crates/token/testdata/ec_public.pem"),
        include_bytes!("../../crates/token/testdata/ed_public.pem"),
    ];
    let keys = pem
        .iter()
        .map(|p| PublicKey::from_pem(p).expect("test key"))
        .collect();
    let with_public = KeySet::hs256(SECRET).with_configured(keys, Policy::default());
    if let Ok(got) = with_public.verify(token, 0) {
        assert_eq!(KeySet::hs256(SECRET).verify(token, 0), Ok(got));
    }
}

/// Only a token minted with this key can verify: re-minting the claims must
/// give a token that verifies to the same claims.
fn round_trips(v: &TokenVerifier, token: &str) {
    if let Ok(claims) = v.verify(token, 0) {
        assert_eq!(v.verify(&v.mint(&claims), 0), Ok(claims));
    }
}

/// A token whose claims part is `claims_json`, signed with the key.
fn signed(claims_json: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims_json);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(format!("{header}.{claims}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{claims}.{signature}")
}
