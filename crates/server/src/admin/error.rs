//! Error answers of the admin API: one kind per reason, each with its HTTP
//! status and a machine-readable code, in one body shape:
//!
//! ```json
//! {"error": {"code": "no_such_group", "message": "no such group"}}
//! ```
//!
//! The code is the contract (docs/openapi.yaml lists the codes each route
//! answers, and `tests/admin_api.rs` checks every code is documented); the
//! message is for people and may change.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Why an admin request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON of the route's shape (not
    /// an object, an unknown field, a value of the wrong type).
    InvalidJson(String),
    /// 400 `invalid_request`: well-formed, but not a request the route can
    /// carry out (two addressees, a number out of range, bad base64, a
    /// body that could not be read).
    InvalidRequest(String),
    /// 401 `unauthorized`: the admin bearer token is missing or wrong.
    Unauthorized,
    /// 404 `not_found`: no route has this path.
    NotFound,
    /// 404 `no_such_group`: a publish to a group that has no members.
    NoSuchGroup,
    /// 405 `method_not_allowed`: the path exists with other methods (the
    /// answer's `Allow` header names them).
    MethodNotAllowed(Vec<&'static str>),
    /// 409 `id_conflict`: the idempotency key was used before for a
    /// different message.
    IdConflict,
    /// 413 `body_too_large`: the body is over the limit.
    BodyTooLarge,
    /// 507 `revocations_full`: as many revocations are held as allowed.
    RevocationsFull,
    /// 503 `unavailable`: nothing was stored (a shard's log has failed, or
    /// a request with the same key is in progress); retry.
    Unavailable,
    /// 503 `shutting_down`: the node is stopping.
    ShuttingDown,
    /// 503 `not_ready`: the node is starting (recovering its logs).
    NotReady(String),
    /// 421 `wrong_node`: the node asked about a user on this node's
    /// behalf does not own it either (a partition is moving); retry.
    WrongNode,
    /// 503 `owner_unavailable`: the user's node is down or not answering
    /// (or its partition has no owner yet); retry.
    OwnerUnavailable,
}

impl From<crate::admin_api::OwnerError> for ApiError {
    fn from(e: crate::admin_api::OwnerError) -> ApiError {
        match e {
            crate::admin_api::OwnerError::OtherNode => ApiError::WrongNode,
            crate::admin_api::OwnerError::Unavailable => ApiError::OwnerUnavailable,
        }
    }
}

impl ApiError {
    /// Every code, for the documentation check.
    pub const CODES: &'static [&'static str] = &[
        "invalid_json",
        "invalid_request",
        "unauthorized",
        "not_found",
        "no_such_group",
        "method_not_allowed",
        "id_conflict",
        "body_too_large",
        "revocations_full",
        "unavailable",
        "shutting_down",
        "not_ready",
        "wrong_node",
        "owner_unavailable",
    ];

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound | ApiError::NoSuchGroup => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdConflict => StatusCode::CONFLICT,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RevocationsFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::WrongNode => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Unavailable
            | ApiError::ShuttingDown
            | ApiError::NotReady(_)
            | ApiError::OwnerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::NoSuchGroup => "no_such_group",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::IdConflict => "id_conflict",
            ApiError::BodyTooLarge => "body_too_large",
            ApiError::RevocationsFull => "revocations_full",
            ApiError::Unavailable => "unavailable",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::NotReady(_) => "not_ready",
            ApiError::WrongNode => "wrong_node",
            ApiError::OwnerUnavailable => "owner_unavailable",
        }
    }

    /// What went wrong, for people.
    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidJson(why) => format!("invalid JSON: {why}"),
            ApiError::InvalidRequest(why) | ApiError::NotReady(why) => why.clone(),
            ApiError::Unauthorized => "missing or wrong admin bearer token".into(),
            ApiError::NotFound => "not found".into(),
            ApiError::NoSuchGroup => "no such group (it has no members)".into(),
            ApiError::MethodNotAllowed(_) => "method not allowed".into(),
            ApiError::IdConflict => "id used before for a different message".into(),
            ApiError::BodyTooLarge => "request body too large".into(),
            ApiError::RevocationsFull => "too many revocations held".into(),
            ApiError::Unavailable => "not stored: storage unavailable, or a request with the same key is in progress; retry".into(),
            ApiError::ShuttingDown => "shutting down".into(),
            ApiError::WrongNode => {
                "the node this one asked does not own the user either (a partition is moving); retry".into()
            }
            ApiError::OwnerUnavailable => {
                "the node the user is placed on is down or not answering; retry".into()
            }
        }
    }

    /// The HTTP answer.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.message() }
        });
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ApiError::MethodNotAllowed(allowed) = self {
            // RFC 9110: a 405 lists the methods the resource has.
            let allow = HeaderValue::from_str(&allowed.join(", ")).expect("method names are ASCII");
            headers.insert(ALLOW, allow);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<ApiError> {
        vec![
            ApiError::InvalidJson("x".into()),
            ApiError::InvalidRequest("x".into()),
            ApiError::Unauthorized,
            ApiError::NotFound,
            ApiError::NoSuchGroup,
            ApiError::MethodNotAllowed(vec!["GET"]),
            ApiError::IdConflict,
            ApiError::BodyTooLarge,
            ApiError::RevocationsFull,
            ApiError::Unavailable,
            ApiError::ShuttingDown,
            ApiError::NotReady("x".into()),
            ApiError::WrongNode,
            ApiError::OwnerUnavailable,
        ]
    }

    #[test]
    fn codes_are_listed_once_each() {
        let codes: Vec<&str> = every_kind().iter().map(ApiError::code).collect();
        assert_eq!(codes, ApiError::CODES);
    }

    #[test]
    fn the_body_carries_code_and_message() {
        use http_body_util::BodyExt;
        let resp = ApiError::NoSuchGroup.response();
        assert_eq!(resp.status(), 404);
        let body = futures_lite::future::block_on(resp.into_body().collect())
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_such_group");
        assert!(v["error"]["message"].is_string());
    }
}
