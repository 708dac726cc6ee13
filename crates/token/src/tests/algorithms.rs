//! Issue 22 item 4: RS256, ES256 and EdDSA tokens, the time, issuer and
//! audience rules, and no algorithm confusion. Keys are fixed test keys in
//! `testdata/` (made with openssl genpkey; never used anywhere else).

use super::*;

pub(super) const RSA_PRIVATE: &[u8] = include_bytes!("../../testdata/rsa_private.pem");
pub(super) const RSA_PUBLIC: &[u8] = include_bytes!("../../testdata/rsa_public.pem");
pub(super) const RSA2_PRIVATE: &[u8] = include_bytes!("../../testdata/rsa2_private.pem");
pub(super) const RSA2_PUBLIC: &[u8] = include_bytes!("../../testdata/rsa2_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../testdata/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../testdata/ec_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../../testdata/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../../testdata/ed_public.pem");

const NOW_MS: u64 = 1_000_000;

fn public(pem: &[u8]) -> PublicKey {
    PublicKey::from_pem(pem).expect("test key loads")
}

fn signer(pem: &[u8]) -> TokenSigner {
    TokenSigner::from_pem(pem, None).expect("test key loads")
}

/// A key set with the HS256 secret `secret` and these public keys.
fn set(keys: &[&[u8]], policy: Policy) -> KeySet {
    KeySet::hs256(b"secret").with_configured(keys.iter().map(|k| public(k)).collect(), policy)
}

#[test]
fn each_algorithm_verifies_with_its_public_key_only() {
    for (private, public_pem, alg) in [
        (RSA_PRIVATE, RSA_PUBLIC, Alg::Rs256),
        (EC_PRIVATE, EC_PUBLIC, Alg::Es256),
        (ED_PRIVATE, ED_PUBLIC, Alg::EdDsa),
    ] {
        assert_eq!(public(public_pem).alg(), alg);
        let s = signer(private);
        assert_eq!(s.alg(), alg);
        let token = s.mint(&claims(), &Registered::default());
        let keys = set(&[public_pem], Policy::default());
        assert_eq!(
            keys.verify(&token, NOW_MS).map(|(c, _)| c),
            Ok(claims()),
            "{alg:?}"
        );
        // Another key of the same algorithm does not verify it.
        if alg == Alg::Rs256 {
            let other = set(&[RSA2_PUBLIC], Policy::default());
            assert_eq!(other.verify(&token, NOW_MS), Err(AuthError::BadSignature));
        }
        // Without a key of that algorithm the token is refused: no key.
        let none = KeySet::hs256(b"secret");
        assert_eq!(
            none.verify(&token, NOW_MS),
            Err(AuthError::UnknownKey),
            "{alg:?}"
        );
        // A flipped signature byte is a bad signature.
        let mut forged = token.clone().into_bytes();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(
            keys.verify(&forged, NOW_MS),
            Err(AuthError::BadSignature),
            "{alg:?}"
        );
    }
}

/// The classic confusion: an HS256 token whose HMAC key is the RSA public
/// key's PEM text. A verifier that fed the public key to HMAC would accept
/// it; here HS256 only ever uses the HS256 secret.
#[test]
fn an_hs256_token_signed_with_the_public_key_bytes_is_refused() {
    let forged = TokenSigner::hs256(RSA_PUBLIC, None).mint(&claims(), &Registered::default());
    let keys = set(&[RSA_PUBLIC], Policy::default());
    assert_eq!(keys.verify(&forged, NOW_MS), Err(AuthError::BadSignature));
    // With no HS256 secret at all, HS256 has no key.
    let rsa_only = KeySet::default().with_configured(vec![public(RSA_PUBLIC)], Policy::default());
    assert_eq!(rsa_only.verify(&forged, NOW_MS), Err(AuthError::UnknownKey));
    // And the same HMAC relabelled RS256 is no RSA signature.
    let relabelled = relabel(&forged, "RS256");
    assert_eq!(
        keys.verify(&relabelled, NOW_MS),
        Err(AuthError::BadSignature)
    );
}

/// An ES256 signature presented as RS256 (or the reverse) never reaches a
/// key of the other family.
#[test]
fn a_signature_relabelled_to_another_algorithm_is_refused() {
    let keys = set(&[RSA_PUBLIC, EC_PUBLIC, ED_PUBLIC], Policy::default());
    let es = signer(EC_PRIVATE).mint(&claims(), &Registered::default());
    let ed = signer(ED_PRIVATE).mint(&claims(), &Registered::default());
    for (token, alg) in [
        (&es, "RS256"),
        (&es, "EdDSA"),
        (&ed, "ES256"),
        (&ed, "HS256"),
    ] {
        assert_eq!(
            keys.verify(&relabel(token, alg), NOW_MS),
            Err(AuthError::BadSignature),
            "{alg}"
        );
    }
    for alg in ["none", "RS512", "PS256", "HS512", "ES384"] {
        assert!(
            matches!(
                keys.verify(&relabel(&es, alg), NOW_MS),
                Err(AuthError::Malformed(_))
            ),
            "{alg}"
        );
    }
}

/// `token` with its header replaced by `{"alg": alg}` (signature kept).
fn relabel(token: &str, alg: &str) -> String {
    let rest = token.split_once('.').expect("three parts").1;
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    format!("{header}.{rest}")
}

#[test]
fn exp_and_nbf_are_checked_with_the_leeway() {
    let s = signer(ED_PRIVATE);
    let registered = Registered {
        not_before_s: Some(1_000),
        ..Registered::default()
    };
    let token = s.mint(&claims(), &registered); // valid [1000 s, 2000 s)
    for (leeway_s, now_ms, want) in [
        (0, 999_999, Err(AuthError::NotYetValid)),
        (0, 1_000_000, Ok(())),
        (0, 1_999_999, Ok(())),
        (0, 2_000_000, Err(AuthError::Expired)),
        (30, 970_000, Ok(())),
        (30, 969_999, Err(AuthError::NotYetValid)),
        (30, 2_029_999, Ok(())),
        (30, 2_030_000, Err(AuthError::Expired)),
    ] {
        let keys = set(
            &[ED_PUBLIC],
            Policy {
                leeway_s,
                ..Policy::default()
            },
        );
        assert_eq!(
            keys.verify(&token, now_ms).map(|_| ()),
            want,
            "leeway {leeway_s} s at {now_ms} ms"
        );
    }
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let s = signer(EC_PRIVATE);
    let policy = Policy {
        issuer: Some("https://id.example".into()),
        audience: Some("surepush".into()),
        leeway_s: 0,
    };
    let keys = set(&[EC_PUBLIC], policy);
    let with = |issuer: Option<&str>, audience: Option<&str>| {
        s.mint(
            &claims(),
            &Registered {
                issuer: issuer.map(String::from),
                audience: audience.map(String::from),
                ..Registered::default()
            },
        )
    };
    let ok = with(Some("https://id.example"), Some("surepush"));
    assert!(keys.verify(&ok, NOW_MS).is_ok());
    for (token, want) in [
        (with(None, Some("surepush")), AuthError::WrongIssuer),
        (
            with(Some("https://evil"), Some("surepush")),
            AuthError::WrongIssuer,
        ),
        (
            with(Some("https://id.example"), None),
            AuthError::WrongAudience,
        ),
        (
            with(Some("https://id.example"), Some("other")),
            AuthError::WrongAudience,
        ),
    ] {
        assert_eq!(keys.verify(&token, NOW_MS), Err(want.clone()), "{want}");
        assert_eq!(want.code(), ErrorCode::AuthFailed);
    }
    // `aud` as an array naming the audience among others.
    let signed = sign_es(
        &s,
        r#"{"sub":"42","dev":7,"exp":2000,"iss":"https://id.example","aud":["a","surepush"]}"#,
    );
    assert!(keys.verify(&signed, NOW_MS).is_ok());
    // Unconfigured, neither is looked at.
    let open = set(&[EC_PUBLIC], Policy::default());
    assert!(open.verify(&with(None, Some("other")), NOW_MS).is_ok());
    // HS256 tokens are the gateway's own (its secret, `POST /v1/tokens`):
    // no iss/aud required of them.
    let own = TokenVerifier::new(b"secret").mint(&claims());
    assert!(keys.verify(&own, NOW_MS).is_ok());
}

/// A token of `signer` whose claims part is `claims_json`.
fn sign_es(signer: &TokenSigner, claims_json: &str) -> String {
    // Mint once to get a header of this signer, then re-sign other claims
    // through the same crate call.
    let token = signer.mint(&claims(), &Registered::default());
    let header = token.split('.').next().expect("header");
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims_json));
    let key = jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE).expect("key");
    let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, jsonwebtoken::Algorithm::ES256)
        .expect("signs");
    format!("{signed}.{sig}")
}

#[test]
fn the_kid_picks_the_key_and_an_unknown_kid_says_so() {
    let mut a = public(RSA_PUBLIC);
    a.kid = Some("a".into());
    let mut b = public(RSA2_PUBLIC);
    b.kid = Some("b".into());
    let keys = KeySet::hs256(b"secret").with_fetched(vec![a, b]);
    let by_b = TokenSigner::from_pem(RSA2_PRIVATE, Some("b".into()))
        .expect("key")
        .mint(&claims(), &Registered::default());
    assert!(keys.verify(&by_b, NOW_MS).is_ok());
    // Signed by b's key but naming a: a's key is tried and fails.
    let lies = TokenSigner::from_pem(RSA2_PRIVATE, Some("a".into()))
        .expect("key")
        .mint(&claims(), &Registered::default());
    assert_eq!(keys.verify(&lies, NOW_MS), Err(AuthError::BadSignature));
    // A kid the set does not have: unknown (the server refetches JWKS).
    let rotated = TokenSigner::from_pem(RSA_PRIVATE, Some("c".into()))
        .expect("key")
        .mint(&claims(), &Registered::default());
    assert_eq!(keys.verify(&rotated, NOW_MS), Err(AuthError::UnknownKey));
}

#[test]
fn jti_and_iat_are_read_for_revocation() {
    let token = signer(RSA_PRIVATE).mint(
        &claims(),
        &Registered {
            jti: Some("t-1".into()),
            issued_at_s: Some(900),
            ..Registered::default()
        },
    );
    let (_, id) = set(&[RSA_PUBLIC], Policy::default())
        .verify(&token, NOW_MS)
        .expect("valid");
    assert_eq!(
        id,
        TokenId {
            jti: Some("t-1".into()),
            issued_at_s: Some(900)
        }
    );
}

#[test]
fn private_and_garbage_pem_are_not_public_keys() {
    for pem in [
        RSA_PRIVATE,
        b"".as_slice(),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ] {
        assert_eq!(
            PublicKey::from_pem(pem).map(|k| k.alg()),
            Err(KeyError::NotAPublicKey)
        );
    }
}
