//! Issue 22 item 4: the JWKS document fetched from a real HTTP server
//! (rotation, unknown `kid`, a failing server), revocations stored before
//! they count and read back at start, and `[auth]` reloaded.
//!
//! The JWKS server here is the peer, not the thing tested: a std
//! `TcpListener` answering every request with the current document.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use surepush_core::auth::{AuthError, Registered, TokenSigner};
use surepush_core::Claims;
use surepush_proto::{DeviceId, UserId};

const RSA_PRIVATE: &[u8] = include_bytes!("../../../token/testdata/rsa_private.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("../../../token/testdata/rsa2_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../../token/testdata/ec_private.pem");
const EC_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../token/testdata/ec_public.pem"
);

/// Whole seconds now (tokens must be valid by the verifier's clock).
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn now_ms() -> u64 {
    now_s() * 1000
}

fn claims() -> Claims {
    Claims {
        user: UserId(42),
        device: DeviceId(7),
        expires_s: now_s() + 3600,
        acl: Default::default(),
    }
}

fn signer(pem: &[u8], kid: &str) -> TokenSigner {
    TokenSigner::from_pem(pem, Some(kid.into())).expect("test key")
}

fn token(pem: &[u8], kid: &str) -> String {
    signer(pem, kid).mint(&claims(), &Registered::default())
}

/// `{"keys": [...]}` of these (private key, kid) pairs' public halves.
fn jwks(keys: &[(&[u8], &str)]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(pem, kid)| signer(pem, kid).public_jwk().expect("RSA/EC JWK"))
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// A JWKS server: answers each request with the current document, or 500
/// when it is `None`; counts requests.
struct JwksPeer {
    url: String,
    doc: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksPeer {
    fn start(doc: String) -> JwksPeer {
        let port = crate::limits::free_loopback_port().expect("a free port");
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        let doc = Arc::new(Mutex::new(Some(doc)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counter) = (doc.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = match served.lock().expect("not poisoned").clone() {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        JwksPeer {
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
            doc,
            hits,
        }
    }

    fn serve(&self, doc: Option<String>) {
        *self.doc.lock().expect("not poisoned") = doc;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn config(dir: &Path, jwks_url: &str) -> Config {
    let mut c = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    c.auth.jwks_url = jwks_url.into();
    c.auth.jwks_refresh_s = 3600;
    c.auth.jwks_min_refetch_s = 1;
    c
}

/// Asks for refetches (as a shard does on an unknown `kid`) until `done`,
/// failing after 10 s.
fn until(auth: &NodeAuth, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        auth.key_missing();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn jwks_keys_are_fetched_rotated_by_kid_and_kept_when_the_server_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = JwksPeer::start(jwks(&[(RSA_PRIVATE, "k1")]));
    let auth = NodeAuth::start(&config(dir.path(), &peer.url), b"secret").expect("starts");
    let verify = |t: &str| auth.verifier().verify(t, now_ms()).map(|_| ());
    let (k1, k2) = (token(RSA_PRIVATE, "k1"), token(RSA2_PRIVATE, "k2"));
    // Fetched before start returned.
    assert_eq!(verify(&k1), Ok(()));
    assert_eq!(peer.hits(), 1);
    // A new key in the document: its kid is unknown until a refetch, and
    // the many requests of the waiting time make one fetch.
    peer.serve(Some(jwks(&[(RSA_PRIVATE, "k1"), (RSA2_PRIVATE, "k2")])));
    assert_eq!(verify(&k2), Err(AuthError::UnknownKey));
    until(&auth, "k2 verifies", || verify(&k2).is_ok());
    assert_eq!(
        peer.hits(),
        2,
        "requests within jwks_min_refetch_s were merged"
    );
    assert_eq!(verify(&k1), Ok(()), "the old key stays while listed");
    // k1 leaves the document: its tokens no longer verify.
    peer.serve(Some(jwks(&[(RSA2_PRIVATE, "k2")])));
    until(&auth, "k1 is gone", || {
        verify(&k1) == Err(AuthError::UnknownKey)
    });
    assert_eq!(verify(&k2), Ok(()));
    // The server fails: the keys in force stay.
    peer.serve(None);
    let before = peer.hits();
    until(&auth, "a failed fetch", || peer.hits() > before);
    assert_eq!(verify(&k2), Ok(()));
    // So does an invalid document.
    peer.serve(Some("{\"keys\": 7}".into()));
    let before = peer.hits();
    until(&auth, "an invalid document fetched", || {
        peer.hits() > before
    });
    assert_eq!(verify(&k2), Ok(()));
}

#[test]
fn a_revocation_is_stored_then_in_force_and_read_back_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "");
    let auth = NodeAuth::start(&config, b"secret").expect("starts");
    let with_jti = |jti: &str| {
        TokenSigner::hs256(b"secret", None).mint(
            &claims(),
            &Registered {
                jti: Some(jti.into()),
                issued_at_s: Some(now_s()),
                ..Registered::default()
            },
        )
    };
    let (t1, t2) = (with_jti("t-1"), with_jti("t-2"));
    let shard = auth.verifier().clone();
    assert!(shard.verify(&t1, now_ms()).is_ok());
    let held = auth
        .revoke(
            Revocation::Token {
                jti: "t-1".into(),
                expires_s: now_s() + 3600,
            },
            now_s(),
        )
        .expect("stored");
    assert_eq!(held, 1);
    assert_eq!(shard.verify(&t1, now_ms()), Err(AuthError::Revoked));
    assert!(shard.verify(&t2, now_ms()).is_ok());
    // A new start (a restart) reads it back.
    drop(auth);
    let again = NodeAuth::start(&config, b"secret").expect("starts");
    assert_eq!(
        again.verifier().verify(&t1, now_ms()),
        Err(AuthError::Revoked)
    );
    assert!(again.verifier().verify(&t2, now_ms()).is_ok());
    // A damaged file stops the start rather than forgetting revocations.
    std::fs::write(dir.path().join(REVOCATIONS_FILE), b"{\"vers").expect("write");
    assert!(matches!(
        NodeAuth::start(&config, b"secret"),
        Err(AuthStartError::Revocations { .. })
    ));
}

#[test]
fn a_revocation_that_cannot_be_stored_is_not_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = NodeAuth::start(&config(dir.path(), ""), b"secret").expect("starts");
    // The data directory is gone: the write fails.
    drop(dir);
    let user = Revocation::Subject {
        user: UserId(42),
        device: None,
        issued_before_s: now_s() + 10,
    };
    assert!(matches!(
        auth.revoke(user, now_s()),
        Err(RevokeFailure::Storage(_))
    ));
    let token = auth.verifier().mint(&claims());
    assert!(auth.verifier().verify(&token, now_ms()).is_ok());
}

#[test]
fn sighup_applies_new_public_keys_and_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), "");
    let auth = NodeAuth::start(&config, b"secret").expect("starts");
    let es = |iss: Option<&str>| {
        TokenSigner::from_pem(EC_PRIVATE, None).expect("key").mint(
            &claims(),
            &Registered {
                issuer: iss.map(String::from),
                ..Registered::default()
            },
        )
    };
    assert_eq!(
        auth.verifier().verify(&es(None), now_ms()),
        Err(AuthError::UnknownKey)
    );
    config.auth.public_keys = vec![EC_PUBLIC.into()];
    config.auth.issuer = "https://id.example".into();
    let part = AuthPart(auth.clone());
    assert!(part.apply(&config).is_ok());
    assert_eq!(
        auth.verifier().verify(&es(None), now_ms()),
        Err(AuthError::WrongIssuer)
    );
    assert!(auth
        .verifier()
        .verify(&es(Some("https://id.example")), now_ms())
        .is_ok());
    // A key file that is not a key: the reload says so, keys stay.
    config.auth.public_keys = vec![dir.path().join("missing.pem")];
    assert!(part.apply(&config).is_err());
    assert!(auth
        .verifier()
        .verify(&es(Some("https://id.example")), now_ms())
        .is_ok());
}
