//! The admin routes about client tokens and sessions: `POST /v1/revoke`
//! (withdraw a token, or every token of a user or device issued before a
//! time) and `POST /v1/users/{n}/disconnect` (close sessions now).
//! docs/openapi.yaml describes both.

use serde::Deserialize;

use super::json_body::{id_text, present, JsonId, JsonInt};
use super::{invalid, json, parse, ApiError, Resp};
use crate::admin_api::{AdminBackend, RevokeError};
use surepush_core::auth::Revocation;
use surepush_proto::{DeviceId, UserId, ROOM_BIT};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// The token's `jti` (with `exp`)...
    #[serde(default, deserialize_with = "present")]
    jti: Option<String>,
    /// ...and its `exp` (seconds): the entry is kept until then.
    #[serde(default, deserialize_with = "present")]
    exp: Option<JsonInt>,
    /// Or a user (maybe one `device`) ...
    #[serde(default, deserialize_with = "present")]
    user: Option<JsonId>,
    #[serde(default, deserialize_with = "present")]
    device: Option<JsonId>,
    /// ... whose tokens issued before this (seconds; default now) are
    /// refused.
    #[serde(default, deserialize_with = "present")]
    issued_before: Option<JsonInt>,
}

/// `POST /v1/revoke`.
pub(super) async fn revoke<B: AdminBackend>(
    body: &[u8],
    backend: &B,
    now_s: u64,
) -> Result<Resp, ApiError> {
    let b: RevokeBody = parse(body)?;
    let r = match (b.jti, b.exp, b.user) {
        (Some(jti), Some(exp), None) if b.device.is_none() && b.issued_before.is_none() => {
            Revocation::Token {
                jti,
                expires_s: exp.0,
            }
        }
        (None, None, Some(JsonId(user))) if user < ROOM_BIT => Revocation::Subject {
            user: UserId(user),
            device: b.device.map(|d| DeviceId(d.0)),
            issued_before_s: b.issued_before.map_or(now_s, |t| t.0),
        },
        _ => {
            return Err(invalid(
                "give jti and exp, or user (below 2^62) with optional device and issued_before",
            ))
        }
    };
    let held = backend.revoke(r).await.map_err(|e| match e {
        RevokeError::Invalid(why) => ApiError::InvalidRequest(why),
        RevokeError::Full => ApiError::RevocationsFull,
        RevokeError::StorageUnavailable(_) => ApiError::Unavailable,
    })?;
    Ok(json(serde_json::json!({ "revocations": held })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default, deserialize_with = "present")]
    device: Option<JsonId>,
}

/// `POST /v1/users/{n}/disconnect` with an optional `{"device": id}`.
pub(super) async fn disconnect<B: AdminBackend>(
    user: &str,
    body: &[u8],
    backend: &B,
) -> Result<Resp, ApiError> {
    let Some(user) = user.parse::<u64>().ok().filter(|n| *n < ROOM_BIT) else {
        return Err(invalid("the user id must be below 2^62"));
    };
    let b: DisconnectBody = match body.is_empty() {
        true => DisconnectBody::default(),
        false => parse(body)?,
    };
    let device = b.device.map(|d| DeviceId(d.0));
    let closed = backend.disconnect(UserId(user), device).await?;
    Ok(json(
        serde_json::json!({ "user": id_text(user), "disconnected": closed }),
    ))
}
