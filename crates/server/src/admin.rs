//! The admin HTTP server: `/healthz`, `/metrics`, and the backend API
//! (publish, tokens, group and room members). The routes are listed once, in [`routes`];
//! docs/openapi.yaml is their description for client authors.
//!
//! hyper 1 (HTTP/1.1 server) runs on the shard's glommio executor through
//! smol-hyper's `FuturesIo` adapter; nothing needs `Send`. hyper's own
//! header timeout needs a thread-safe timer glommio lacks, so the deadline
//! is enforced here: each connection serves one request (no keep-alive)
//! and is dropped when `request_timeout` passes, which also bounds a
//! slowloris client. Bodies are read through a size limit, never beyond it.
//! The API is meant for a private interface; publish and token minting
//! additionally require the admin bearer token, compared in constant time.

mod json_body;
pub mod routes;

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_lite::future;
use glommio::net::TcpListener;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use self::json_body::{object, present, JsonInt};
use self::routes::{Endpoint, RouteMatch};
use super::admin_api::{AdminBackend, Health, PublishError, PublishRequest};
use surepush_proto::{DeviceId, Qos, UserId, ROOM_BIT};

/// Admin HTTP limits.
#[derive(Clone, Debug)]
pub struct AdminHttpConfig {
    /// Bearer token required by the API endpoints (`None`: no auth).
    pub admin_token: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A connection (one request) must complete within this.
    pub request_timeout: Duration,
}

impl Default for AdminHttpConfig {
    fn default() -> Self {
        AdminHttpConfig {
            admin_token: None,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Longest token lifetime `POST /v1/tokens` grants.
const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 3600;

/// Serves until `stop` becomes true (checked between connections).
pub async fn serve<B: AdminBackend>(
    listener: TcpListener,
    backend: Rc<B>,
    config: AdminHttpConfig,
    stop: Rc<Cell<bool>>,
) {
    let config = Rc::new(config);
    let failures_log = super::log_every::LogEvery::new(Duration::from_secs(10));
    while !stop.get() {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            while !stop.get() {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                if let Some(failures) = failures_log.tick() {
                    tracing::warn!(error = %e, failures, "admin accept failed");
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let backend = backend.clone();
        let config = config.clone();
        glommio::spawn_local(async move {
            let io = smol_hyper::rt::FuturesIo::new(stream);
            let timeout = config.request_timeout;
            let service = hyper::service::service_fn(move |req| {
                let backend = backend.clone();
                let config = config.clone();
                async move { Ok::<_, Infallible>(route(req, &*backend, &config).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(io, service);
            let done = future::or(async { Some(conn.await) }, async {
                glommio::timer::sleep(timeout).await;
                None
            })
            .await;
            match done {
                None => tracing::debug!("admin connection timed out"),
                Some(Err(e)) => tracing::debug!(error = %e, "admin connection error"),
                Some(Ok(())) => {}
            }
        })
        .detach();
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_error(status: StatusCode, message: &str) -> Resp {
    respond(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

async fn route<B: AdminBackend>(
    req: Request<Incoming>,
    backend: &B,
    config: &AdminHttpConfig,
) -> Resp {
    let path = req.uri().path().to_string();
    let (route, params) = match routes::find(req.method().as_str(), &path) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::WrongMethod(allowed) => {
            // RFC 9110: a 405 lists the methods the resource has.
            let mut resp = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            let allow = HeaderValue::from_str(&allowed.join(", ")).expect("method names are ASCII");
            resp.headers_mut().insert(ALLOW, allow);
            return resp;
        }
        RouteMatch::NotFound => return json_error(StatusCode::NOT_FOUND, "not found"),
    };
    if route.needs_token && !authorized(&req, config) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin bearer token",
        );
    }
    let number = params.first().copied().unwrap_or_default();
    match route.endpoint {
        Endpoint::Health => match backend.health() {
            Health::Ok => respond(StatusCode::OK, "text/plain", "ok\n"),
            Health::Degraded(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        Endpoint::Metrics => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            backend.metrics_text(),
        ),
        // A read never changes the members, whatever body it carries.
        Endpoint::ReadGroup => members(Membership::Group, number, b"", backend).await,
        Endpoint::ReadRoom => members(Membership::Room, number, b"", backend).await,
        Endpoint::Publish | Endpoint::MintToken | Endpoint::UpdateGroup | Endpoint::UpdateRoom => {
            let body = match read_body(req, config).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            match route.endpoint {
                Endpoint::Publish => publish(&body, backend).await,
                Endpoint::MintToken => token(&body, backend),
                Endpoint::UpdateGroup => members(Membership::Group, number, &body, backend).await,
                _ => members(Membership::Room, number, &body, backend).await,
            }
        }
    }
}

/// The request body, at most `max_body_bytes`.
async fn read_body(req: Request<Incoming>, config: &AdminHttpConfig) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), config.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ))
        }
        Err(_) => Err(json_error(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
    }
}

fn authorized(req: &Request<Incoming>, config: &AdminHttpConfig) -> bool {
    let Some(expected) = &config.admin_token else {
        return true;
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), expected.as_bytes())
}

/// Compares without an early exit, so timing does not reveal the prefix
/// that matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// A user id (below 2^62).
    #[serde(default, deserialize_with = "present")]
    to: Option<JsonInt>,
    /// A group number (below 2^62; the wire id sets the top bit).
    #[serde(default, deserialize_with = "present")]
    group: Option<JsonInt>,
    /// A room number (below 2^62; the wire id sets bit 62).
    #[serde(default, deserialize_with = "present")]
    room: Option<JsonInt>,
    #[serde(default, deserialize_with = "present")]
    payload: Option<String>,
    #[serde(default, deserialize_with = "present")]
    payload_b64: Option<String>,
    #[serde(default = "default_qos")]
    qos: JsonInt,
    #[serde(default)]
    from: JsonInt,
    #[serde(default, deserialize_with = "present")]
    id: Option<JsonInt>,
}

fn default_qos() -> JsonInt {
    JsonInt(1)
}

async fn publish<B: AdminBackend>(body: &[u8], backend: &B) -> Resp {
    let b: PublishBody = match object(body) {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let payload = match (b.payload, b.payload_b64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(raw) => Bytes::from(raw),
            Err(_) => return json_error(StatusCode::BAD_REQUEST, "payload_b64 is not base64"),
        },
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of payload and payload_b64",
            )
        }
    };
    let Some(qos) = u8::try_from(b.qos.0).ok().and_then(Qos::from_u8) else {
        return json_error(StatusCode::BAD_REQUEST, "qos must be 0, 1 or 2");
    };
    let to = match (b.to.map(|n| n.0), b.group.map(|n| n.0), b.room.map(|n| n.0)) {
        (Some(user), None, None) if user < ROOM_BIT => UserId(user),
        (None, Some(n), None) if n < ROOM_BIT => Membership::Group.id(n),
        (None, None, Some(n)) if n < ROOM_BIT => Membership::Room.id(n),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of to (a user id), group or room (numbers), each below 2^62",
            )
        }
    };
    let req = PublishRequest {
        to,
        from: UserId(b.from.0),
        qos,
        payload,
        id: b.id.map(|id| id.0),
    };
    match backend.publish(req).await {
        Ok(r) => respond(
            StatusCode::OK,
            "application/json",
            serde_json::json!({ "seq": r.seq.0, "duplicate": r.duplicate }).to_string(),
        ),
        Err(PublishError::Invalid(why)) => json_error(StatusCode::BAD_REQUEST, &why),
        Err(PublishError::NoSuchGroup) => json_error(StatusCode::NOT_FOUND, "no such group"),
        Err(e @ PublishError::Conflict) => json_error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// Whose members a route manages: a group's (they get its messages) or a
/// room's (they may read and write it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Membership {
    Group,
    Room,
}

impl Membership {
    /// The wire id of number `n` (below 2^62).
    fn id(self, n: u64) -> UserId {
        match self {
            Membership::Group => UserId(n | UserId::GROUP_BIT),
            Membership::Room => UserId(n | ROOM_BIT),
        }
    }

    /// The JSON key naming the number in answers.
    fn key(self) -> &'static str {
        match self {
            Membership::Group => "group",
            Membership::Room => "room",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MembersBody {
    #[serde(default)]
    add: Vec<JsonInt>,
    #[serde(default)]
    remove: Vec<JsonInt>,
}

/// `GET /v1/{groups,rooms}/{n}` (members) or `POST` with
/// `{"add": [..], "remove": [..]}`.
async fn members<B: AdminBackend>(kind: Membership, n: &str, body: &[u8], backend: &B) -> Resp {
    let Some(n) = n.parse::<u64>().ok().filter(|n| *n < ROOM_BIT) else {
        let why = format!("the {} number must be below 2^62", kind.key());
        return json_error(StatusCode::BAD_REQUEST, &why);
    };
    let b: MembersBody = if body.is_empty() {
        MembersBody::default()
    } else {
        match object(body) {
            Ok(b) => b,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
        }
    };
    let users = |v: Vec<JsonInt>| -> Option<Vec<UserId>> {
        v.into_iter()
            .map(|JsonInt(u)| (u < ROOM_BIT).then_some(UserId(u)))
            .collect()
    };
    let (Some(add), Some(remove)) = (users(b.add), users(b.remove)) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "member ids must be user ids below 2^62",
        );
    };
    let id = kind.id(n);
    match backend.update_members(id, add, remove).await {
        Ok(members) => {
            let mut answer = serde_json::Map::new();
            answer.insert(kind.key().into(), n.into());
            answer.insert("id".into(), id.0.into());
            let members: Vec<u64> = members.iter().map(|m| m.0).collect();
            answer.insert("members".into(), members.into());
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::Value::Object(answer).to_string(),
            )
        }
        Err(PublishError::Invalid(why)) => json_error(StatusCode::BAD_REQUEST, &why),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    user: JsonInt,
    device: JsonInt,
    #[serde(default = "default_ttl")]
    ttl_s: JsonInt,
}

fn default_ttl() -> JsonInt {
    JsonInt(86_400)
}

fn token<B: AdminBackend>(body: &[u8], backend: &B) -> Resp {
    let (user, device, ttl_s) = match object::<TokenBody>(body) {
        Ok(b) => (b.user.0, b.device.0, b.ttl_s.0),
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    if user >= ROOM_BIT {
        return json_error(
            StatusCode::BAD_REQUEST,
            "user must be below 2^62 (higher ids name groups and rooms)",
        );
    }
    if ttl_s == 0 || ttl_s > MAX_TOKEN_TTL_S {
        return json_error(
            StatusCode::BAD_REQUEST,
            "ttl_s must be within 1 ..= 2592000",
        );
    }
    let token = backend.mint_token(UserId(user), DeviceId(device), ttl_s);
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::json!({ "token": token }).to_string(),
    )
}

#[cfg(test)]
mod tests;
