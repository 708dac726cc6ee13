//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, and the
//! backend API (publish, tokens, group and room members). It listens
//! before the shards have recovered their logs: health, readiness and
//! metrics answer at once ([`NodeStatus`]); the API answers 503
//! `not_ready` until its backend is attached ([`BackendSlot`]). The routes
//! are listed once, in [`routes`];
//! docs/openapi.yaml is their description for client authors.
//!
//! hyper 1 (HTTP/1.1 server) runs on the shard's glommio executor through
//! smol-hyper's `FuturesIo` adapter; nothing needs `Send`. Connections are
//! kept alive between requests, with deadlines enforced on the glommio
//! side ([`connection`]), which also bounds a slowloris client. Bodies are
//! read through a size limit, never beyond it. Every error answer is
//! `{"error": {"code", "message"}}` ([`ApiError`]). Ids in answers are
//! decimal strings; requests may give them as numbers or such strings.
//! The API is meant for a private interface; the `/v1/` routes
//! additionally require the admin bearer token, compared in constant time.

mod auth;
mod connection;
mod conversations;
mod error;
mod json_body;
mod presence;
pub mod routes;
mod static_files;

pub use error::ApiError;
pub use static_files::{StaticFiles, StaticTarget};

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_lite::future;
use glommio::net::TcpListener;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use self::json_body::{id_text, object, present, JsonId, JsonInt};
use self::routes::{Endpoint, RouteMatch};
use super::admin_api::{
    AdminBackend, BackendSlot, Health, NodeStatus, PublishError, PublishRequest,
};
use surepush_proto::{DeviceId, Qos, UserId, ROOM_BIT};

/// Admin HTTP limits.
#[derive(Clone, Debug)]
pub struct AdminHttpConfig {
    /// Bearer token required by the API endpoints (`None`: no auth).
    pub admin_token: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A request must arrive within this after the connection opened or
    /// the previous answer, and is then given this long again. A TLS
    /// handshake must end within it too.
    pub request_timeout: Duration,
    /// HTTPS: the node's TLS configs (the admin one is used); `None`:
    /// plain HTTP.
    pub tls: Option<std::sync::Arc<super::tls::NodeTls>>,
    /// Static files under a URL path (`None`: none).
    pub static_files: Option<StaticFiles>,
    /// Lifetime (s) of the tokens `POST /demo/token` mints without
    /// authentication (`None`: the route is off and answers 404).
    pub demo_token_ttl_s: Option<u64>,
}

impl Default for AdminHttpConfig {
    fn default() -> Self {
        AdminHttpConfig {
            admin_token: None,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
            tls: None,
            static_files: None,
            demo_token_ttl_s: None,
        }
    }
}

/// Longest token lifetime `POST /v1/tokens` grants.
const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 3600;

/// Serves until `stop` becomes true (then closes the listener and every
/// idle connection; busy ones finish their request).
pub async fn serve<S: NodeStatus, B: AdminBackend>(
    listener: TcpListener,
    status: Rc<S>,
    backend: Rc<BackendSlot<B>>,
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
        let (status, backend, handler_config) = (status.clone(), backend.clone(), config.clone());
        let handle = move |req| {
            let (status, backend) = (status.clone(), backend.clone());
            let config = handler_config.clone();
            async move { route(req, &*status, &backend, &config).await }
        };
        let (timeout, stop) = (config.request_timeout, stop.clone());
        match config.tls.as_ref().and_then(|t| t.admin()) {
            None => {
                glommio::spawn_local(connection::serve(stream, handle, timeout, stop)).detach();
            }
            Some(tls) => {
                glommio::spawn_local(async move {
                    let opened = future::or(
                        async { Some(crate::transport::tls::handshake(stream, tls).await) },
                        async {
                            glommio::timer::sleep(timeout).await;
                            None
                        },
                    )
                    .await;
                    match opened {
                        Some(Ok(stream)) => connection::serve(stream, handle, timeout, stop).await,
                        // rustls sent its alert (no or a wrong client
                        // certificate, not TLS, an old version).
                        Some(Err(e)) => tracing::debug!(error = %e, "admin TLS handshake failed"),
                        None => tracing::debug!("admin TLS handshake timed out"),
                    }
                })
                .detach();
            }
        }
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

fn json(value: serde_json::Value) -> Resp {
    respond(StatusCode::OK, "application/json", value.to_string())
}

async fn route<S: NodeStatus, B: AdminBackend>(
    req: Request<Incoming>,
    status: &S,
    backend: &BackendSlot<B>,
    config: &AdminHttpConfig,
) -> Resp {
    handle(req, status, backend, config)
        .await
        .unwrap_or_else(|e| e.response())
}

/// `/healthz` and `/readyz` answers: plain text, the reason on 503.
fn health_answer(health: Health, ok: &'static str) -> Resp {
    match health {
        Health::Ok => respond(StatusCode::OK, "text/plain", ok),
        Health::Degraded(why) => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{why}\n"),
        ),
    }
}

async fn handle<S: NodeStatus, B: AdminBackend>(
    req: Request<Incoming>,
    status: &S,
    backend: &BackendSlot<B>,
    config: &AdminHttpConfig,
) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let (route, params) = match routes::find(req.method().as_str(), &path) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::WrongMethod(allowed) => return Err(ApiError::MethodNotAllowed(allowed)),
        // Not an API path: a static file, if they are served.
        RouteMatch::NotFound => {
            return match &config.static_files {
                Some(files) => files
                    .answer(req.method(), &path)
                    .await
                    .unwrap_or(Err(ApiError::NotFound)),
                None => Err(ApiError::NotFound),
            };
        }
    };
    if route.needs_token && !authorized(&req, config) {
        return Err(ApiError::Unauthorized);
    }
    let number = params.first().copied().unwrap_or_default();
    match route.endpoint {
        Endpoint::Health => Ok(health_answer(status.health(), "ok\n")),
        Endpoint::Ready => Ok(health_answer(status.readiness(), "ready\n")),
        Endpoint::Metrics => Ok(respond(
            StatusCode::OK,
            super::metrics::CONTENT_TYPE,
            status.metrics_text(),
        )),
        // A read never changes the members, whatever body it carries.
        Endpoint::ReadGroup => members(Membership::Group, number, b"", &*attached(backend)?).await,
        Endpoint::ReadRoom => members(Membership::Room, number, b"", &*attached(backend)?).await,
        Endpoint::UserPresence => presence::one(number, &*attached(backend)?).await,
        Endpoint::Conversations => {
            conversations::summaries(number, query.as_deref(), &*attached(backend)?).await
        }
        Endpoint::ConversationMessages => {
            conversations::messages(&params, query.as_deref(), &*attached(backend)?).await
        }
        Endpoint::InboxMessages => {
            conversations::inbox(number, query.as_deref(), &*attached(backend)?).await
        }
        Endpoint::DemoToken if config.demo_token_ttl_s.is_none() => Err(ApiError::NotFound),
        Endpoint::Publish
        | Endpoint::MintToken
        | Endpoint::DemoToken
        | Endpoint::UpdateGroup
        | Endpoint::UpdateRoom
        | Endpoint::Revoke
        | Endpoint::Disconnect
        | Endpoint::Presence => {
            let backend = attached(backend)?;
            let body = read_body(req, config).await?;
            match route.endpoint {
                Endpoint::Publish => publish(&body, &*backend).await,
                Endpoint::MintToken => token(&body, &*backend),
                Endpoint::DemoToken => demo_token(&body, &*backend, config),
                Endpoint::UpdateGroup => members(Membership::Group, number, &body, &*backend).await,
                Endpoint::Revoke => auth::revoke(&body, &*backend, wall_s()).await,
                Endpoint::Disconnect => auth::disconnect(number, &body, &*backend).await,
                Endpoint::Presence => presence::batch(&body, &*backend).await,
                _ => members(Membership::Room, number, &body, &*backend).await,
            }
        }
    }
}

/// Wall-clock seconds (a revocation's default `issued_before`).
fn wall_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The API backend, or 503 `not_ready` while the node starts.
fn attached<B>(slot: &BackendSlot<B>) -> Result<Rc<B>, ApiError> {
    slot.get().ok_or_else(|| {
        ApiError::NotReady("the node is starting: its logs are being recovered".into())
    })
}

/// The request body, at most `max_body_bytes`.
async fn read_body(req: Request<Incoming>, config: &AdminHttpConfig) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), config.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::BodyTooLarge)
        }
        Err(_) => Err(ApiError::InvalidRequest(
            "could not read the request body".into(),
        )),
    }
}

/// A request body of the route's shape.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    object(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

fn invalid(why: &str) -> ApiError {
    ApiError::InvalidRequest(why.to_string())
}

/// A backend failure as an answer.
fn backend_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Invalid(why) => ApiError::InvalidRequest(why),
        PublishError::NoSuchGroup => ApiError::NoSuchGroup,
        PublishError::Conflict => ApiError::IdConflict,
        PublishError::StorageUnavailable => ApiError::Unavailable,
        PublishError::ShuttingDown => ApiError::ShuttingDown,
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
    to: Option<JsonId>,
    /// A group number (below 2^62; the wire id sets the top bit).
    #[serde(default, deserialize_with = "present")]
    group: Option<JsonId>,
    /// A room number (below 2^62; the wire id sets bit 62).
    #[serde(default, deserialize_with = "present")]
    room: Option<JsonId>,
    #[serde(default, deserialize_with = "present")]
    payload: Option<String>,
    #[serde(default, deserialize_with = "present")]
    payload_b64: Option<String>,
    #[serde(default = "default_qos")]
    qos: JsonInt,
    #[serde(default)]
    from: JsonId,
    #[serde(default, deserialize_with = "present")]
    id: Option<JsonId>,
}

fn default_qos() -> JsonInt {
    JsonInt(1)
}

async fn publish<B: AdminBackend>(body: &[u8], backend: &B) -> Result<Resp, ApiError> {
    let b: PublishBody = parse(body)?;
    let payload = match (b.payload, b.payload_b64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(raw) => Bytes::from(raw),
            Err(_) => return Err(invalid("payload_b64 is not base64")),
        },
        _ => return Err(invalid("give exactly one of payload and payload_b64")),
    };
    let Some(qos) = u8::try_from(b.qos.0).ok().and_then(Qos::from_u8) else {
        return Err(invalid("qos must be 0, 1 or 2"));
    };
    let to = match (b.to.map(|n| n.0), b.group.map(|n| n.0), b.room.map(|n| n.0)) {
        (Some(user), None, None) if user < ROOM_BIT => UserId(user),
        (None, Some(n), None) if n < ROOM_BIT => Membership::Group.id(n),
        (None, None, Some(n)) if n < ROOM_BIT => Membership::Room.id(n),
        _ => {
            return Err(invalid(
                "give exactly one of to (a user id), group or room (numbers), each below 2^62",
            ))
        }
    };
    let req = PublishRequest {
        to,
        from: UserId(b.from.0),
        qos,
        payload,
        id: b.id.map(|id| id.0),
    };
    let r = backend.publish(req).await.map_err(backend_error)?;
    Ok(json(
        serde_json::json!({ "seq": r.seq.0, "duplicate": r.duplicate }),
    ))
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
    add: Vec<JsonId>,
    #[serde(default)]
    remove: Vec<JsonId>,
}

/// `GET /v1/{groups,rooms}/{n}` (members) or `POST` with
/// `{"add": [..], "remove": [..]}`.
async fn members<B: AdminBackend>(
    kind: Membership,
    n: &str,
    body: &[u8],
    backend: &B,
) -> Result<Resp, ApiError> {
    let Some(n) = n.parse::<u64>().ok().filter(|n| *n < ROOM_BIT) else {
        return Err(invalid(&format!(
            "the {} number must be below 2^62",
            kind.key()
        )));
    };
    let b: MembersBody = if body.is_empty() {
        MembersBody::default()
    } else {
        parse(body)?
    };
    let users = |v: Vec<JsonId>| -> Option<Vec<UserId>> {
        v.into_iter()
            .map(|JsonId(u)| (u < ROOM_BIT).then_some(UserId(u)))
            .collect()
    };
    let (Some(add), Some(remove)) = (users(b.add), users(b.remove)) else {
        return Err(invalid("member ids must be user ids below 2^62"));
    };
    let id = kind.id(n);
    let members = backend
        .update_members(id, add, remove)
        .await
        .map_err(backend_error)?;
    let mut answer = serde_json::Map::new();
    answer.insert(kind.key().into(), id_text(n).into());
    answer.insert("id".into(), id_text(id.0).into());
    let members: Vec<String> = members.iter().map(|m| id_text(m.0)).collect();
    answer.insert("members".into(), members.into());
    Ok(json(serde_json::Value::Object(answer)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    user: JsonId,
    device: JsonId,
    #[serde(default = "default_ttl")]
    ttl_s: JsonInt,
}

fn default_ttl() -> JsonInt {
    JsonInt(86_400)
}

fn token<B: AdminBackend>(body: &[u8], backend: &B) -> Result<Resp, ApiError> {
    let b: TokenBody = parse(body)?;
    let (user, ttl_s) = (client_user(b.user)?, b.ttl_s.0);
    if ttl_s == 0 || ttl_s > MAX_TOKEN_TTL_S {
        return Err(invalid("ttl_s must be within 1 ..= 2592000"));
    }
    let token = backend.mint_token(user, DeviceId(b.device.0), ttl_s);
    Ok(json(serde_json::json!({ "token": token })))
}

/// A user id a client token may carry (below 2^62).
fn client_user(user: JsonId) -> Result<UserId, ApiError> {
    if user.0 >= ROOM_BIT {
        return Err(invalid(
            "user must be below 2^62 (higher ids name groups and rooms)",
        ));
    }
    Ok(UserId(user.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoTokenBody {
    user: JsonId,
    device: JsonId,
}

/// `POST /demo/token {user, device}`: a short-lived client token for
/// anyone who asks (`[admin] demo_tokens`, off by default; the route only
/// reaches here when it is on).
fn demo_token<B: AdminBackend>(
    body: &[u8],
    backend: &B,
    config: &AdminHttpConfig,
) -> Result<Resp, ApiError> {
    let Some(ttl_s) = config.demo_token_ttl_s else {
        return Err(ApiError::NotFound);
    };
    let b: DemoTokenBody = parse(body)?;
    let user = client_user(b.user)?;
    let token = backend.mint_token(user, DeviceId(b.device.0), ttl_s);
    Ok(json(serde_json::json!({ "token": token, "ttl_s": ttl_s })))
}

#[cfg(test)]
mod tests;
