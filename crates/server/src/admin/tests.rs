//! The admin HTTP layer against a test backend (the seam), over real
//! sockets with raw HTTP/1.1 requests.

use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;

use super::*;
use crate::admin_api::{PublishResult, RevokeError};
use surepush_core::auth::Revocation;

mod web;

#[derive(Default)]
struct TestBackend {
    degraded: bool,
    /// Answer API requests (false: as while the node recovers).
    attached: bool,
    published: RefCell<Vec<PublishRequest>>,
    groups: RefCell<std::collections::HashMap<UserId, Vec<UserId>>>,
    revoked: RefCell<Vec<Revocation>>,
}

impl NodeStatus for TestBackend {
    fn metrics_text(&self) -> String {
        "surepush_test_total 7\n".into()
    }
    fn health(&self) -> Health {
        if self.degraded {
            Health::Degraded("disk full".into())
        } else {
            Health::Ok
        }
    }
    fn readiness(&self) -> Health {
        if self.attached {
            Health::Ok
        } else {
            Health::Degraded("shard 1 is recovering its log".into())
        }
    }
}

impl AdminBackend for TestBackend {
    fn publish(
        &self,
        req: PublishRequest,
    ) -> Pin<Box<dyn Future<Output = Result<PublishResult, PublishError>>>> {
        let n = {
            let mut p = self.published.borrow_mut();
            p.push(req);
            p.len() as u64
        };
        Box::pin(async move {
            Ok(PublishResult {
                seq: surepush_proto::Seq(n),
                duplicate: false,
            })
        })
    }
    fn mint_token(&self, user: UserId, device: DeviceId, ttl_s: u64) -> String {
        format!("token-{}-{}-{ttl_s}", user.0, device.0)
    }
    fn update_members(
        &self,
        id: UserId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<UserId>, PublishError>>>> {
        let mut groups = self.groups.borrow_mut();
        let members = groups.entry(id).or_default();
        members.extend(add);
        members.retain(|m| !remove.contains(m));
        members.sort();
        members.dedup();
        let members = members.clone();
        Box::pin(async move { Ok(members) })
    }
    fn revoke(&self, r: Revocation) -> Pin<Box<dyn Future<Output = Result<usize, RevokeError>>>> {
        let held = {
            let mut revoked = self.revoked.borrow_mut();
            revoked.push(r);
            revoked.len()
        };
        Box::pin(async move { Ok(held) })
    }
    fn disconnect(
        &self,
        user: UserId,
        device: Option<DeviceId>,
    ) -> Pin<Box<dyn Future<Output = Result<usize, crate::admin_api::OwnerError>>>> {
        // Says what it was asked: one device, or (user 7 has two) all;
        // user 10's node is down.
        let closed = match device {
            _ if user == UserId(10) => Err(crate::admin_api::OwnerError::Unavailable),
            Some(_) => Ok(1),
            None if user == UserId(7) => Ok(2),
            None => Ok(0),
        };
        Box::pin(async move { closed })
    }

    fn presence(
        &self,
        users: Vec<UserId>,
    ) -> Pin<Box<dyn Future<Output = crate::admin_api::UserPresences>>> {
        // User 7 has two devices online, everyone else none.
        let answer = users
            .into_iter()
            .map(|u| {
                let devices = match u {
                    UserId(7) => (1..=2)
                        .map(|d| surepush_proto::OnlineDevice {
                            device: DeviceId(d),
                            since_ms: 1_000 * d,
                            shard: 0,
                            transport: "native".into(),
                        })
                        .collect(),
                    // User 10's node is down.
                    UserId(10) => return (u, Err(crate::admin_api::OwnerError::Unavailable)),
                    _ => Vec::new(),
                };
                (u, Ok(devices))
            })
            .collect();
        Box::pin(async move { answer })
    }

    fn conversations(
        &self,
        user: UserId,
        read: crate::admin_api::ConversationRead,
    ) -> Pin<Box<dyn Future<Output = crate::admin_api::ConversationAnswer>>> {
        use crate::admin_api::{ConversationError, ConversationPage, ConversationRead};
        use surepush_proto::{ConvMsgs, ConvPage, ConvSummary, Push, Qos, Seq};
        // User 8's shard cannot read, user 9 lives on another node; the
        // others have one conversation with group 5 (a page of one
        // message), whatever the page asked. Limits above 1000 are refused.
        let limit = match &read {
            ConversationRead::Summaries { list, .. } => list.limit,
            ConversationRead::Messages(fetch) | ConversationRead::Inbox(fetch) => fetch.limit,
        };
        let group = UserId(5 | UserId::GROUP_BIT);
        let answer = match (user, read) {
            _ if limit == 0 || limit > 1000 => Err(ConversationError::Limit(
                surepush_core::BadConversationLimit { limit, max: 1000 },
            )),
            (UserId(8), _) => Err(ConversationError::Unavailable),
            (UserId(9), _) => Err(crate::admin_api::OwnerError::OtherNode.into()),
            (UserId(10), _) => Err(crate::admin_api::OwnerError::Unavailable.into()),
            (_, ConversationRead::Summaries { list, .. }) => {
                Ok(ConversationPage::Summaries(ConvPage {
                    request_id: list.request_id,
                    cursor: Seq(1),
                    head: Seq(3),
                    older: 0,
                    end: true,
                    items: vec![ConvSummary {
                        peer: group,
                        unread: 2,
                        unread_at_least: false,
                        total: 3,
                        last_seq: Seq(3),
                        last_from: UserId(1 << 61),
                        last_from_device: DeviceId(u64::MAX),
                        last_ts_ms: 1_700_000_000_000,
                        last_len: 5,
                        preview: bytes::Bytes::from_static(b"hel"),
                    }],
                }))
            }
            (_, ConversationRead::Messages(fetch) | ConversationRead::Inbox(fetch)) => {
                Ok(ConversationPage::Messages(ConvMsgs {
                    request_id: fetch.request_id,
                    peer: fetch.peer,
                    head: Seq(3),
                    end: false,
                    truncated: true,
                    items: vec![Push {
                        seq: Seq(3),
                        prev_seq: Seq(2),
                        from: UserId(1 << 61),
                        from_device: DeviceId(u64::MAX),
                        to: group,
                        client_msg_id: u64::MAX,
                        ts_ms: 1_700_000_000_000,
                        qos: Qos::AtLeastOnce,
                        echo: false,
                        retransmit: false,
                        attrs: bytes::Bytes::new(),
                        payload: bytes::Bytes::from_static(b"hello"),
                    }],
                }))
            }
        };
        Box::pin(async move { answer })
    }
}

/// Runs the server on its own executor; returns its address.
fn start(degraded: bool, timeout: Duration) -> SocketAddr {
    start_with(degraded, true, timeout)
}

/// As [`start`]; `attached: false` serves without an API backend, as
/// while the node recovers its logs.
fn start_with(degraded: bool, attached: bool, timeout: Duration) -> SocketAddr {
    let config = AdminHttpConfig {
        admin_token: Some("sekret".into()),
        max_body_bytes: 1024,
        request_timeout: timeout,
        ..AdminHttpConfig::default()
    };
    start_configured(degraded, attached, config)
}

/// As [`start_with`], with the whole HTTP config given.
fn start_configured(degraded: bool, attached: bool, config: AdminHttpConfig) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let backend = Rc::new(TestBackend {
                degraded,
                attached,
                ..TestBackend::default()
            });
            let slot = match attached {
                true => BackendSlot::with(backend.clone()),
                false => BackendSlot::default(),
            };
            let stop = Rc::new(Cell::new(false));
            serve(listener, backend, Rc::new(slot), config, stop).await;
        })
        .unwrap();
    rx.recv().unwrap()
}

/// One request on its own connection (`Connection: close` is added, so
/// the answer ends at EOF).
fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let (line, rest) = raw.split_once("\r\n").expect("a request line");
    let raw = format!("{line}\r\nConnection: close\r\n{rest}");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

fn post(addr: SocketAddr, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn health_metrics_and_routing() {
    let addr = start(false, Duration::from_secs(5));
    assert_eq!(
        request(addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
        (200, "ok\n".into())
    );
    let (status, body) = request(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "surepush_test_total 7\n"));
    assert_eq!(
        request(addr, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n").0,
        404
    );
    assert_eq!(
        request(addr, "DELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n").0,
        405
    );
    let degraded = start(true, Duration::from_secs(5));
    let (status, body) = request(degraded, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.trim()), (503, "disk full"));
}

#[test]
fn publish_needs_the_token_and_valid_json() {
    let addr = start(false, Duration::from_secs(5));
    let ok = r#"{"to": 9, "payload": "hi", "qos": 2, "id": 5}"#;
    assert_eq!(post(addr, "/v1/publish", ok, None).0, 401);
    assert_eq!(post(addr, "/v1/publish", ok, Some("sekreT")).0, 401);
    let (status, body) = post(addr, "/v1/publish", ok, Some("sekret"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"duplicate":false,"seq":1}"#);
    let (status, body) = post(
        addr,
        "/v1/publish",
        r#"{"to": 9, "payload_b64": "aGk="}"#,
        Some("sekret"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"duplicate":false,"seq":2}"#)
    );
    for bad in [
        "not json",
        r#"{"to": 9}"#,
        r#"{"to": 9, "payload": "a", "payload_b64": "YQ=="}"#,
        r#"{"to": 9, "payload": "a", "qos": 3}"#,
        r#"{"to": 9, "payload_b64": "!!"}"#,
        r#"{"to": 9, "payload": "a", "unknown": 1}"#,
    ] {
        assert_eq!(
            post(addr, "/v1/publish", bad, Some("sekret")).0,
            400,
            "{bad}"
        );
    }
}

#[test]
fn oversized_body_is_refused() {
    let addr = start(false, Duration::from_secs(5));
    let big = format!(r#"{{"to": 1, "payload": "{}"}}"#, "x".repeat(4096));
    assert_eq!(post(addr, "/v1/publish", &big, Some("sekret")).0, 413);
}

#[test]
fn tokens_are_minted_with_bounded_lifetimes() {
    let addr = start(false, Duration::from_secs(5));
    let (status, body) = post(
        addr,
        "/v1/tokens",
        r#"{"user": 3, "device": 4, "ttl_s": 60}"#,
        Some("sekret"),
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"token":"token-3-4-60"}"#)
    );
    assert_eq!(
        post(
            addr,
            "/v1/tokens",
            r#"{"user": 3, "device": 4, "ttl_s": 0}"#,
            Some("sekret")
        )
        .0,
        400
    );
    assert_eq!(
        post(addr, "/v1/tokens", r#"{"user": 3, "device": 4}"#, None).0,
        401
    );
}

#[test]
fn a_stalled_request_is_dropped_at_the_deadline() {
    let addr = start(false, Duration::from_millis(300));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    // The server closes the connection: read returns EOF, not a timeout.
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn token_comparison_checks_every_byte_and_the_length() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(!constant_time_eq(b"", b"a"));
}

#[test]
fn groups_and_fan_out_addresses_are_validated() {
    let addr = start(false, Duration::from_secs(5));
    let token = Some("sekret");
    let (status, body) = post(addr, "/v1/groups/5", r#"{"add": [3, 1, 2]}"#, token);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""members":["1","2","3"]"#), "{body}");
    let (status, _) = post(addr, "/v1/groups/5", r#"{"remove": [2]}"#, None);
    assert_eq!(status, 401, "membership needs the admin token");
    let too_big = 1u64 << 62;
    for (path, body) in [
        (format!("/v1/groups/{too_big}"), "{}".to_string()),
        ("/v1/groups/x".to_string(), "{}".to_string()),
        (
            "/v1/groups/5".to_string(),
            format!(r#"{{"add": [{too_big}]}}"#),
        ),
        ("/v1/groups/5".to_string(), r#"{"add": "1"}"#.to_string()),
        (
            "/v1/publish".to_string(),
            r#"{"to": 1, "group": 2, "payload": "x"}"#.to_string(),
        ),
        (
            "/v1/publish".to_string(),
            format!(r#"{{"room": {too_big}, "payload": "x"}}"#),
        ),
        ("/v1/publish".to_string(), r#"{"payload": "x"}"#.to_string()),
    ] {
        let (status, resp) = post(addr, &path, &body, token);
        assert_eq!(status, 400, "{path} {body}: {resp}");
    }
    let (status, _) = post(addr, "/v1/publish", r#"{"room": 9, "payload": "x"}"#, token);
    assert_eq!(status, 200);
}

/// Issue 16 item 8 (found while documenting the API): `GET /v1/groups/{n}`
/// read a body and applied its `add`/`remove`, so a read could change a
/// group. A read ignores any body.
#[test]
fn reading_a_group_never_changes_it() {
    let addr = start(false, Duration::from_secs(5));
    let token = Some("sekret");
    assert_eq!(post(addr, "/v1/groups/6", r#"{"add": [1]}"#, token).0, 200);
    let body = r#"{"add": [2], "remove": [1]}"#;
    let (status, resp) = request(
        addr,
        &format!(
            "GET /v1/groups/6 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sekret\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains(r#""members":["1"]"#), "{resp}");
}

/// Reads one HTTP/1.1 answer with a Content-Length body from `s`.
fn read_answer(s: &mut TcpStream) -> (u16, Vec<(String, String)>, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "EOF inside a head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, headers, String::from_utf8(body).unwrap())
}

/// Issue 22 item 5: the admin port keeps connections alive (it closed
/// after every answer).
#[test]
fn two_requests_share_one_connection() {
    let addr = start(false, Duration::from_secs(5));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let publish = r#"{"to": "9", "payload": "hi", "id": "5"}"#;
    write!(
        s,
        "POST /v1/publish HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sekret\r\n\
         Content-Length: {}\r\n\r\n{publish}",
        publish.len()
    )
    .unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"duplicate":false,"seq":1}"#)
    );
    // A third on the same socket, asking to close: answered, then EOF.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).0, 200);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
}

/// An idle kept-alive connection is closed at the request deadline, so
/// idle clients cannot hold the admin port's connections forever.
#[test]
fn an_idle_kept_alive_connection_closes_at_the_deadline() {
    let addr = start(false, Duration::from_millis(300));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).0, 200);
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "closed, not timed out");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Issue 22 item 5: error answers carry a machine-readable code.
#[test]
fn errors_carry_their_code() {
    let addr = start(false, Duration::from_secs(5));
    let code = |(status, body): (u16, String)| {
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(v["error"]["message"].is_string(), "{body}");
        (status, v["error"]["code"].as_str().unwrap().to_string())
    };
    let token = Some("sekret");
    let expect = |got: (u16, String), status: u16, c: &str| {
        assert_eq!((got.0, got.1.as_str()), (status, c));
    };
    expect(
        code(post(addr, "/v1/publish", "{}", None)),
        401,
        "unauthorized",
    );
    expect(
        code(post(addr, "/v1/publish", "not json", token)),
        400,
        "invalid_json",
    );
    expect(
        code(post(
            addr,
            "/v1/publish",
            r#"{"to": 1, "payload": "x", "qos": 7}"#,
            token,
        )),
        400,
        "invalid_request",
    );
    expect(code(post(addr, "/v1/nothing", "", token)), 404, "not_found");
    expect(
        code(post(addr, "/healthz", "", token)),
        405,
        "method_not_allowed",
    );
    let big = format!(r#"{{"to": 1, "payload": "{}"}}"#, "x".repeat(4096));
    expect(
        code(post(addr, "/v1/publish", &big, token)),
        413,
        "body_too_large",
    );
}

/// Issue 22 item 5: ids above 2^53 travel exactly as strings, both ways.
#[test]
fn large_ids_travel_as_strings() {
    let addr = start(false, Duration::from_secs(5));
    let big = (1u64 << 62) - 1; // not a double
    let (status, body) = post(
        addr,
        "/v1/groups/4611686018427387903",
        &format!(r#"{{"add": ["{big}", 7]}}"#),
        Some("sekret"),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["group"], big.to_string());
    assert_eq!(v["id"], (big | (1 << 63)).to_string());
    assert_eq!(v["members"], serde_json::json!(["7", big.to_string()]));
}

/// Issue 22 item 6: while the node recovers, the admin port answers:
/// liveness yes, readiness no (with the reason), the API 503 `not_ready`.
#[test]
fn before_the_backend_is_attached_only_status_answers() {
    let addr = start_with(false, false, Duration::from_secs(5));
    assert_eq!(
        request(addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
        (200, "ok\n".into())
    );
    let (status, body) = request(addr, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (status, body.as_str()),
        (503, "shard 1 is recovering its log\n")
    );
    assert_eq!(
        request(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").0,
        200
    );
    let (status, body) = post(
        addr,
        "/v1/tokens",
        r#"{"user": 1, "device": 1}"#,
        Some("sekret"),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""code":"not_ready""#), "{body}");
    // Authentication still comes first.
    assert_eq!(post(addr, "/v1/tokens", "{}", None).0, 401);
    let ready = start(false, Duration::from_secs(5));
    assert_eq!(
        request(ready, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"),
        (200, "ready\n".into())
    );
}

/// Issue 16 item 6: room members are managed like group members, under the
/// room's wire id, and answered with the room number.
#[test]
fn room_members_are_kept_under_the_rooms_wire_id() {
    let addr = start(false, Duration::from_secs(5));
    let token = Some("sekret");
    let (status, body) = post(addr, "/v1/rooms/9", r#"{"add": [42, 1]}"#, token);
    assert_eq!(status, 200, "{body}");
    let room_id = 9 | surepush_proto::ROOM_BIT;
    let want = format!(r#"{{"id":"{room_id}","members":["1","42"],"room":"9"}}"#);
    let got: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(&want).expect("JSON")
    );
    // Group 9 is another list.
    let (status, body) = post(addr, "/v1/groups/9", "{}", token);
    assert_eq!(status, 200);
    assert!(body.contains(r#""members":[]"#), "{body}");
    let too_big = 1u64 << 62;
    for (path, body) in [
        (format!("/v1/rooms/{too_big}"), "{}".to_string()),
        ("/v1/rooms/-1".to_string(), "{}".to_string()),
        (
            "/v1/rooms/9".to_string(),
            format!(r#"{{"remove": [{too_big}]}}"#),
        ),
    ] {
        let (status, resp) = post(addr, &path, &body, token);
        assert_eq!(status, 400, "{path} {body}: {resp}");
    }
    assert_eq!(post(addr, "/v1/rooms/9", "{}", None).0, 401);
}

/// Issue 22 item 4: `POST /v1/revoke` takes a jti with its exp, or a user
/// (maybe a device, maybe a time), nothing else; `POST
/// /v1/users/{n}/disconnect` a user below 2^62 and an optional device.
#[test]
fn revoke_and_disconnect_requests_are_validated() {
    let addr = start(false, Duration::from_secs(5));
    let t = Some("sekret");
    assert_eq!(
        post(addr, "/v1/revoke", r#"{"jti": "a", "exp": 5}"#, None).0,
        401
    );
    for (body, held) in [
        (r#"{"jti": "a", "exp": 5}"#, 1),
        (r#"{"user": "42"}"#, 2),
        (r#"{"user": 42, "device": "7", "issued_before": 9}"#, 3),
    ] {
        let (status, answer) = post(addr, "/v1/revoke", body, t);
        assert_eq!(
            (status, answer),
            (200, format!(r#"{{"revocations":{held}}}"#)),
            "{body}"
        );
    }
    for bad in [
        "{}",
        r#"{"jti": "a"}"#,
        r#"{"exp": 5}"#,
        r#"{"jti": "a", "exp": 5, "user": 1}"#,
        r#"{"jti": "a", "exp": 5, "device": 1}"#,
        r#"{"user": 4611686018427387904}"#,
        r#"{"user": null}"#,
        r#"{"user": 1, "dev": 2}"#,
        "[]",
    ] {
        assert_eq!(post(addr, "/v1/revoke", bad, t).0, 400, "{bad}");
    }
    for (path, body, answer) in [
        (
            "/v1/users/7/disconnect",
            "",
            r#"{"disconnected":2,"user":"7"}"#,
        ),
        (
            "/v1/users/7/disconnect",
            "{}",
            r#"{"disconnected":2,"user":"7"}"#,
        ),
        (
            "/v1/users/9/disconnect",
            r#"{"device": "3"}"#,
            r#"{"disconnected":1,"user":"9"}"#,
        ),
    ] {
        assert_eq!(
            post(addr, path, body, t),
            (200, answer.to_string()),
            "{path} {body}"
        );
    }
    for (path, bad) in [
        ("/v1/users/4611686018427387904/disconnect", ""),
        ("/v1/users/x/disconnect", ""),
        ("/v1/users/7/disconnect", r#"{"device": null}"#),
        ("/v1/users/7/disconnect", r#"{"dev": 1}"#),
    ] {
        assert_eq!(post(addr, path, bad, t).0, 400, "{path} {bad}");
    }
    // A user whose node cannot be asked: a typed 503, not "0 closed".
    let (status, answer) = post(addr, "/v1/users/10/disconnect", "", t);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("owner_unavailable"), "{answer}");
}

/// Issue 22 item 2: `GET /v1/users/{n}/presence` answers one user, `POST
/// /v1/presence` up to 1,000 in the order asked; ids are strings, a user
/// id at or above 2^62 or a larger batch is refused.
#[test]
fn presence_batches_are_bounded() {
    let addr = start(false, Duration::from_secs(5));
    let t = Some("sekret");
    let (status, answer) = post(addr, "/v1/presence", r#"{"users": ["7", 8]}"#, t);
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(v["users"][0]["user"], "7");
    assert_eq!(v["users"][0]["online"], true);
    assert_eq!(v["users"][0]["devices"][1]["device"], "2");
    assert_eq!(v["users"][0]["devices"][1]["since_ms"], 2_000);
    assert_eq!(v["users"][1]["user"], "8");
    assert_eq!(v["users"][1]["devices"], serde_json::json!([]));
    assert_eq!(v["users"][1].get("error"), None);
    // A user whose node cannot be asked is unknown, not offline.
    let (status, answer) = post(addr, "/v1/presence", r#"{"users": [10, 7]}"#, t);
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(v["users"][0]["error"], "owner_unavailable");
    assert_eq!(v["users"][0]["online"], false);
    assert_eq!(v["users"][1]["online"], true);
    let (status, answer) = get(addr, "/v1/users/10/presence", t);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("owner_unavailable"), "{answer}");
    // (More than MAX_PRESENCE_BATCH users do not fit this server's 1 KiB
    // body limit: they are refused 413 here, 400 with a larger limit.)
    for bad in [
        r#"{"users": [4611686018427387904]}"#,
        r#"{"users": "7"}"#,
        r#"{"user": [7]}"#,
        "{}",
    ] {
        assert_eq!(post(addr, "/v1/presence", bad, t).0, 400, "{bad}");
    }
    assert_eq!(post(addr, "/v1/presence", "{}", None).0, 401);
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}\r\n"),
    )
}

/// Issue 22 items 1 and 5: conversation summaries and pages as JSON, ids
/// as strings, bytes as base64, groups by their number; the query is read
/// strictly and the backend's refusals keep their codes.
#[test]
fn conversation_reads_are_json_with_string_ids_and_typed_errors() {
    let addr = start(false, Duration::from_secs(5));
    let t = Some("sekret");
    let (status, answer) = get(
        addr,
        "/v1/users/7/conversations?limit=10&unread_only=true",
        t,
    );
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    let item = &v["conversations"][0];
    assert_eq!(
        (item["kind"].as_str(), item["peer"].as_str()),
        (Some("group"), Some("5"))
    );
    assert_eq!(item["last_from"], (1u64 << 61).to_string());
    assert_eq!(item["last_from_device"], u64::MAX.to_string());
    assert_eq!(item["preview"], "aGVs");
    assert_eq!(
        (item["unread"].as_u64(), item["last_seq"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(v["user"], "7");
    assert!(v.get("device").is_none(), "no device asked");
    let (status, answer) = get(
        addr,
        "/v1/users/7/conversations?device=18446744073709551615",
        t,
    );
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(v["device"], u64::MAX.to_string());

    let path = "/v1/users/7/conversations/group/5/messages?direction=before&anchor=4&limit=1";
    let (status, answer) = get(addr, path, t);
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        (v["kind"].as_str(), v["peer"].as_str()),
        (Some("group"), Some("5"))
    );
    assert_eq!(v["truncated"], true);
    let m = &v["messages"][0];
    assert_eq!(m["payload"], "aGVsbG8=");
    assert_eq!(m["to"], (5 | UserId::GROUP_BIT).to_string());
    assert_eq!(m["client_msg_id"], u64::MAX.to_string());
    assert_eq!((m["seq"].as_u64(), m["qos"].as_u64()), (Some(3), Some(1)));

    // The whole inbox: the same page, without a conversation.
    let (status, answer) = get(addr, "/v1/users/7/messages?direction=after&anchor=2", t);
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert!(v.get("kind").is_none() && v.get("peer").is_none(), "{v}");
    assert_eq!(
        (v["user"].as_str(), v["head"].as_u64()),
        (Some("7"), Some(3))
    );
    assert_eq!(v["messages"][0]["from"], (1u64 << 61).to_string());

    for (path, status, code) in [
        ("/v1/users/7/messages?limit=1001", 400, "invalid_request"),
        ("/v1/users/7/messages?direction=up", 400, "invalid_request"),
        ("/v1/users/7/messages?peer=5", 400, "invalid_request"),
        ("/v1/users/8/messages", 503, "unavailable"),
        ("/v1/users/9/messages", 421, "wrong_node"),
        ("/v1/users/10/messages", 503, "owner_unavailable"),
        (
            "/v1/users/7/conversations?limit=1001",
            400,
            "invalid_request",
        ),
        ("/v1/users/7/conversations?limit=0", 400, "invalid_request"),
        ("/v1/users/7/conversations?limit=x", 400, "invalid_request"),
        (
            "/v1/users/7/conversations?before=1&before=2",
            400,
            "invalid_request",
        ),
        ("/v1/users/7/conversations?after=1", 400, "invalid_request"),
        (
            "/v1/users/7/conversations?unread_only=yes",
            400,
            "invalid_request",
        ),
        (
            "/v1/users/4611686018427387904/conversations",
            400,
            "invalid_request",
        ),
        (
            "/v1/users/7/conversations/room/5/messages",
            400,
            "invalid_request",
        ),
        (
            "/v1/users/7/conversations/user/4611686018427387904/messages",
            400,
            "invalid_request",
        ),
        (
            "/v1/users/7/conversations/user/5/messages?direction=up",
            400,
            "invalid_request",
        ),
        (
            "/v1/users/7/conversations/user/5/messages?anchor=-1",
            400,
            "invalid_request",
        ),
        ("/v1/users/8/conversations", 503, "unavailable"),
        (
            "/v1/users/8/conversations/user/5/messages",
            503,
            "unavailable",
        ),
        ("/v1/users/9/conversations", 421, "wrong_node"),
        ("/v1/users/10/conversations", 503, "owner_unavailable"),
        ("/v1/users/7/conversations/user/5", 404, "not_found"),
    ] {
        let (got, answer) = get(addr, path, t);
        let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
    assert_eq!(get(addr, "/v1/users/7/conversations", None).0, 401);
}
