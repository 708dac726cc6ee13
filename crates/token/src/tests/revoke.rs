//! Issue 22 item 4: revocation by `jti` until the token's `exp`, and of a
//! user or one device for tokens issued before a time.

use super::*;

fn id(jti: Option<&str>, iat: Option<u64>) -> TokenId {
    TokenId {
        jti: jti.map(String::from),
        issued_at_s: iat,
    }
}

#[test]
fn a_revoked_jti_is_refused_until_its_exp_then_pruned() {
    let r = Revocations::default()
        .with(
            Revocation::Token {
                jti: "t-1".into(),
                expires_s: 2_000,
            },
            1_000,
        )
        .expect("taken");
    let c = claims();
    assert_eq!(
        r.check(&c, &id(Some("t-1"), None), 1_999_999),
        Err(AuthError::Revoked)
    );
    assert_eq!(r.check(&c, &id(Some("t-2"), None), 1_000_000), Ok(()));
    assert_eq!(r.check(&c, &id(None, None), 1_000_000), Ok(()));
    assert_eq!(r.check(&c, &id(Some("t-1"), None), 2_000_000), Ok(()));
    // The next change after its exp drops it.
    let later = r
        .with(
            Revocation::Token {
                jti: "t-2".into(),
                expires_s: 3_000,
            },
            2_000,
        )
        .expect("taken");
    assert_eq!(later.len(), 1);
}

#[test]
fn a_user_or_device_revocation_refuses_older_tokens_and_those_without_iat() {
    let device = Revocations::default()
        .with(
            Revocation::Subject {
                user: UserId(42),
                device: Some(DeviceId(7)),
                issued_before_s: 500,
            },
            0,
        )
        .expect("taken");
    let c = claims(); // user 42, device 7
    let other_device = Claims {
        device: DeviceId(8),
        ..claims()
    };
    let other_user = Claims {
        user: UserId(43),
        ..claims()
    };
    for (claims, token, want) in [
        (&c, id(None, Some(499)), Err(AuthError::Revoked)),
        (&c, id(None, None), Err(AuthError::Revoked)),
        (&c, id(None, Some(500)), Ok(())),
        (&other_device, id(None, Some(1)), Ok(())),
        (&other_user, id(None, None), Ok(())),
    ] {
        assert_eq!(
            device.check(claims, &token, 0),
            want,
            "{claims:?} {token:?}"
        );
    }
    let user = device
        .with(
            Revocation::Subject {
                user: UserId(42),
                device: None,
                issued_before_s: 600,
            },
            0,
        )
        .expect("taken");
    assert_eq!(
        user.check(&other_device, &id(None, Some(599)), 0),
        Err(AuthError::Revoked)
    );
    assert_eq!(user.check(&other_device, &id(None, Some(600)), 0), Ok(()));
    assert_eq!(user.check(&other_user, &id(None, None), 0), Ok(()));
}

#[test]
fn the_stored_form_reads_back_and_bad_bytes_are_an_error() {
    let r = Revocations::default()
        .with(
            Revocation::Token {
                jti: "a".into(),
                expires_s: 9,
            },
            0,
        )
        .and_then(|r| {
            r.with(
                Revocation::Subject {
                    user: UserId(1),
                    device: None,
                    issued_before_s: 5,
                },
                0,
            )
        })
        .expect("taken");
    assert_eq!(Revocations::decode(&r.encode()), Ok(r.clone()));
    for bad in [
        &b""[..],
        b"{}",
        br#"{"version":2,"tokens":[],"subjects":[]}"#,
    ] {
        assert!(matches!(
            Revocations::decode(bad),
            Err(RevokeError::Corrupt(_))
        ));
    }
}

#[test]
fn bad_jti_and_a_full_set_are_refused() {
    let r = Revocations::default();
    for jti in [String::new(), "x".repeat(MAX_JTI_LEN + 1)] {
        assert_eq!(
            r.with(Revocation::Token { jti, expires_s: 9 }, 0),
            Err(RevokeError::BadJti)
        );
    }
    let full = Revocations::filled(MAX_REVOCATIONS);
    let subject = Revocation::Subject {
        user: UserId(1),
        device: None,
        issued_before_s: 5,
    };
    assert_eq!(full.with(subject, 0), Err(RevokeError::Full));
    let token = |jti: &str| Revocation::Token {
        jti: jti.into(),
        expires_s: 9,
    };
    assert_eq!(full.with(token("new"), 0), Err(RevokeError::Full));
    // Revoking a held jti again is no new entry.
    assert_eq!(
        full.with(token("7"), 0).map(|r| r.len()),
        Ok(MAX_REVOCATIONS)
    );
}

/// The verifier applies revocations swapped in on any clone.
#[test]
fn every_clone_of_the_verifier_sees_a_new_revocation() {
    let v = TokenVerifier::new(b"secret");
    let shard = v.clone();
    let token = v.mint(&claims());
    assert!(shard.verify(&token, 1_000_000).is_ok());
    let r = v
        .revocations()
        .with(
            Revocation::Subject {
                user: UserId(42),
                device: None,
                issued_before_s: 10,
            },
            0,
        )
        .expect("taken");
    v.set_revocations(r);
    assert_eq!(shard.verify(&token, 1_000_000), Err(AuthError::Revoked));
}
