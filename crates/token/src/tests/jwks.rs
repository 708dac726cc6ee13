//! Issue 22 item 4: JWKS documents into keys; unusable keys skipped, not
//! fatal; bounds.

use super::algorithms::{RSA2_PRIVATE, RSA_PRIVATE};
use super::*;

fn jwk(private: &[u8], kid: &str) -> serde_json::Value {
    TokenSigner::from_pem(private, Some(kid.into()))
        .expect("key")
        .public_jwk()
        .expect("RSA and EC keys have a JWK")
}

/// The Ed25519 test key as a JWK: the SPKI DER ends with the 32 key bytes.
fn ed_jwk(kid: &str) -> serde_json::Value {
    let pem = include_str!("../../testdata/ed_public.pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM body");
    let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid})
}

#[test]
fn keys_of_each_type_are_read_with_their_kid_and_algorithm() {
    let ec = TokenSigner::from_pem(include_bytes!("../../testdata/ec_private.pem"), None)
        .expect("key")
        .public_jwk()
        .expect("jwk");
    let mut ec = ec;
    ec["kid"] = "e".into();
    ec.as_object_mut().expect("object").remove("alg"); // inferred
    let doc = serde_json::json!({"keys": [jwk(RSA_PRIVATE, "r"), ec, ed_jwk("d")]});
    let got = parse_jwks(doc.to_string().as_bytes()).expect("valid");
    assert!(got.skipped.is_empty(), "{:?}", got.skipped);
    let summary: Vec<(Option<&str>, Alg)> = got.keys.iter().map(|k| (k.kid(), k.alg())).collect();
    assert_eq!(
        summary,
        [
            (Some("r"), Alg::Rs256),
            (Some("e"), Alg::Es256),
            (Some("d"), Alg::EdDsa)
        ]
    );
    // The Ed25519 JWK verifies an EdDSA token of the matching private key.
    let token = TokenSigner::from_pem(
        include_bytes!("../../testdata/ed_private.pem"),
        Some("d".into()),
    )
    .expect("key")
    .mint(&claims(), &Registered::default());
    let keys = KeySet::default().with_fetched(got.keys);
    assert_eq!(keys.verify(&token, 1_000_000).map(|(c, _)| c), Ok(claims()));
}

#[test]
fn unusable_keys_are_skipped_and_named() {
    let mut enc = jwk(RSA2_PRIVATE, "enc");
    enc["use"] = "enc".into();
    let mut wrong_alg = jwk(RSA2_PRIVATE, "ps");
    wrong_alg["alg"] = "PS256".into();
    let doc = serde_json::json!({"keys": [
        jwk(RSA_PRIVATE, "good"),
        enc,
        wrong_alg,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
        {"kty": "future-type", "kid": "new"},
        "not even an object",
    ]});
    let got = parse_jwks(doc.to_string().as_bytes()).expect("valid document");
    assert_eq!(got.keys.len(), 1);
    assert_eq!(got.keys[0].kid(), Some("good"));
    let kids: Vec<Option<String>> = got
        .skipped
        .iter()
        .map(|e| match e {
            KeyError::UnusableJwk { kid, .. } => kid.clone(),
            other => panic!("{other}"),
        })
        .collect();
    let want = ["enc", "ps", "hmac", "p384", "new"].map(|k| Some(k.to_string()));
    assert_eq!(kids[..5], want);
    assert_eq!(kids[5], None);
}

#[test]
fn a_document_that_is_not_a_key_set_or_too_big_is_an_error() {
    for doc in [
        b"".to_vec(),
        b"[]".to_vec(),
        br#"{"keys": {}}"#.to_vec(),
        vec![b' '; MAX_JWKS_BYTES + 1],
    ] {
        assert!(matches!(parse_jwks(&doc), Err(KeyError::BadJwks(_))));
    }
    let many: Vec<serde_json::Value> = (0..MAX_JWKS_KEYS + 3)
        .map(|i| jwk(RSA_PRIVATE, &i.to_string()))
        .collect();
    let got =
        parse_jwks(serde_json::json!({ "keys": many }).to_string().as_bytes()).expect("valid");
    assert_eq!(got.keys.len(), MAX_JWKS_KEYS);
    assert_eq!(got.skipped.len(), 1);
}
