//! Standard auth end to end with the real binary (issue 22 item 4): an
//! RS256 token from a configured PEM key connects; the admin's disconnect
//! closes exactly the named sessions with DISCONNECT `Kicked`, across
//! shards; a revoked `jti` and a revoked device are refused at CONNECT,
//! and still after kill -9 and a restart.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{read_until_closed, TestServer};
use surepush::client::{BlockingClient, ClientConfig, Event};
use surepush::core::{Claims, Router};
use surepush::proto::{Connect, DeviceId, ErrorCode, Frame, UserId};
use surepush::token::{Registered, TokenSigner};

const RSA_PRIVATE: &[u8] = include_bytes!("../crates/token/testdata/rsa_private.pem");
const RSA_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/token/testdata/rsa_public.pem"
);

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An RS256 token for (user, device) with this `jti`, issued now.
fn rs256(user: u64, device: u64, jti: &str) -> String {
    TokenSigner::from_pem(RSA_PRIVATE, None)
        .expect("test key")
        .mint(
            &Claims {
                user: UserId(user),
                device: DeviceId(device),
                expires_s: now_s() + 3600,
                acl: Default::default(),
            },
            &Registered {
                jti: Some(jti.into()),
                issued_at_s: Some(now_s()),
                issuer: Some("https://id.example".into()),
                ..Registered::default()
            },
        )
}

fn server() -> TestServer {
    let auth = format!(
        "[auth]\npublic_keys = [\"{RSA_PUBLIC}\"]\nissuer = \"https://id.example\"\nleeway_s = 5\n"
    );
    TestServer::start_full(2, &auth, "", |_| {})
}

/// Connects with `token` and waits until the session is live.
fn connect(server: &TestServer, device: u64, token: String) -> BlockingClient {
    let config = ClientConfig::new(token, DeviceId(device));
    let mut c = BlockingClient::connect(server.addr, config, None, Duration::from_secs(5))
        .expect("connect");
    match c
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::CaughtUp | Event::Error(_))
        })
        .expect("io")
    {
        Some(Event::CaughtUp) => c,
        other => panic!("not connected: {other:?}"),
    }
}

/// The ERROR a raw CONNECT with `token` gets (code, message).
fn refused(server: &TestServer, device: u64, token: String) -> (u16, String) {
    let mut s = TcpStream::connect(server.addr).expect("tcp");
    let connect = Frame::Connect(Connect {
        device: DeviceId(device),
        last_seq: None,
        keepalive_ms: 0,
        token,
    });
    s.write_all(&connect.to_bytes()).expect("write");
    let frames = read_until_closed(&mut s);
    frames
        .iter()
        .find_map(|f| match f {
            Frame::Error(e) => Some((e.code, e.message.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ERROR: {frames:?}"))
}

/// A user owned by shard 1 of 2: the admin (on shard 0) reaches it over
/// the mesh.
fn user_on_shard_1() -> u64 {
    (1..)
        .find(|u| Router::of_node(2).owner(UserId(*u)).0 == 1)
        .expect("some user")
}

fn kicked(c: &mut BlockingClient) -> bool {
    let got = c
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::Disconnected(..))
        })
        .expect("io");
    matches!(got, Some(Event::Disconnected(code, _)) if code == ErrorCode::Kicked as u16)
}

#[test]
fn disconnect_closes_the_named_sessions_with_kicked() {
    let server = server();
    let user = user_on_shard_1();
    let mut phone = connect(&server, 1, rs256(user, 1, "p"));
    let mut laptop = connect(&server, 2, rs256(user, 2, "l"));
    let path = format!("/v1/users/{user}/disconnect");
    let (status, body) = server.http("POST", &path, r#"{"device": 2}"#, true);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
        serde_json::json!({"user": user.to_string(), "disconnected": 1})
    );
    assert!(kicked(&mut laptop), "the laptop gets DISCONNECT Kicked");
    // The phone is still connected: a ping-like round trip works.
    let (status, body) = server.http("POST", &path, "", true);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""disconnected":1"#), "{body}");
    assert!(kicked(&mut phone), "then the phone");
    // Kicked is not revoked: the device connects again.
    connect(&server, 1, rs256(user, 1, "p"));
}

#[test]
fn revoked_tokens_are_refused_also_after_kill_9() {
    let mut server = server();
    let (revoked, other) = (rs256(42, 7, "jti-1"), rs256(42, 7, "jti-2"));
    drop(connect(&server, 7, revoked.clone()));
    let exp = now_s() + 3600;
    let (status, body) = server.http(
        "POST",
        "/v1/revoke",
        &format!(r#"{{"jti": "jti-1", "exp": {exp}}}"#),
        true,
    );
    assert_eq!(status, 200, "{body}");
    let revoked_answer = (ErrorCode::AuthFailed as u16, "token revoked".to_string());
    assert_eq!(refused(&server, 7, revoked.clone()), revoked_answer);
    drop(connect(&server, 7, other.clone()));
    // A device revocation: every token of device 8 issued until now.
    let device8 = rs256(43, 8, "d8");
    let (status, body) = server.http(
        "POST",
        "/v1/revoke",
        &format!(
            r#"{{"user": 43, "device": 8, "issued_before": {}}}"#,
            now_s() + 1
        ),
        true,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(refused(&server, 8, device8.clone()), revoked_answer);
    // kill -9 and a restart: still revoked; the others still connect.
    server.kill9();
    server.spawn();
    assert_eq!(refused(&server, 7, revoked), revoked_answer);
    assert_eq!(refused(&server, 8, device8), revoked_answer);
    drop(connect(&server, 7, other));
    drop(connect(&server, 9, rs256(43, 9, "d9")));
}

#[test]
fn tokens_of_another_issuer_or_signed_with_the_public_key_are_refused() {
    let server = server();
    let wrong_issuer = TokenSigner::from_pem(RSA_PRIVATE, None).expect("key").mint(
        &Claims {
            user: UserId(5),
            device: DeviceId(1),
            expires_s: now_s() + 3600,
            acl: Default::default(),
        },
        &Registered::default(),
    );
    let (code, message) = refused(&server, 1, wrong_issuer);
    assert_eq!(code, ErrorCode::AuthFailed as u16);
    assert!(message.contains("iss"), "{message}");
    // HS256 with the RSA public key's PEM text as the HMAC key.
    let public_pem = std::fs::read(RSA_PUBLIC).expect("pem");
    let confused = TokenSigner::hs256(&public_pem, None).mint(
        &Claims {
            user: UserId(5),
            device: DeviceId(1),
            expires_s: now_s() + 3600,
            acl: Default::default(),
        },
        &Registered {
            issuer: Some("https://id.example".into()),
            ..Registered::default()
        },
    );
    assert_eq!(
        refused(&server, 1, confused),
        (ErrorCode::AuthFailed as u16, "bad token signature".into())
    );
}
