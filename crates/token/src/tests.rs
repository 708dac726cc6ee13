//! The HS256 rules, claims and ACL; the other algorithms, JWKS and
//! revocation in `tests/`.

mod algorithms;
mod jwks;
mod revoke;

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
    let mut mac = v.mint_key.clone();
    mac.update(format!("{h}.{c}").as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    assert_eq!(
        v.verify(&format!("{h}.{c}.{s}"), 1_000_000),
        Err(AuthError::Malformed(
            "alg must be HS256, RS256, ES256 or EdDSA"
        ))
    );
}

/// Signs `claims_json` as the gateway would, with the standard header.
fn sign(v: &TokenVerifier, claims_json: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims_json);
    let mut mac = v.mint_key.clone();
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
