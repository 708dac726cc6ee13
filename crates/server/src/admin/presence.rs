//! The admin routes about presence (issue #22 item 2; docs/PROTOCOL.md
//! section 6c): `GET /v1/users/{n}/presence` (one user) and
//! `POST /v1/presence` (a batch). Both answer from the users' owner shards,
//! what is online now; docs/openapi.yaml describes them.

use serde::Deserialize;

use super::json_body::{id_text, JsonId};
use super::{invalid, json, parse, ApiError, Resp};
use crate::admin_api::AdminBackend;
use surepush_proto::{OnlineDevice, UserId, ROOM_BIT};

/// Most users one `POST /v1/presence` may ask about.
pub const MAX_PRESENCE_BATCH: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    users: Vec<JsonId>,
}

/// `GET /v1/users/{n}/presence`.
pub(super) async fn one<B: AdminBackend>(user: &str, backend: &B) -> Result<Resp, ApiError> {
    let Some(user) = user.parse::<u64>().ok().filter(|n| *n < ROOM_BIT) else {
        return Err(invalid("the user id must be below 2^62"));
    };
    let mut answer = backend.presence(vec![UserId(user)]).await;
    let (user, devices) = answer.pop().expect("one answer per user asked");
    Ok(json(user_json(user, &devices?)))
}

/// `POST /v1/presence` with `{"users": [ids]}`.
pub(super) async fn batch<B: AdminBackend>(body: &[u8], backend: &B) -> Result<Resp, ApiError> {
    let b: BatchBody = parse(body)?;
    if b.users.len() > MAX_PRESENCE_BATCH {
        return Err(invalid("at most 1000 users per request"));
    }
    if b.users.iter().any(|u| u.0 >= ROOM_BIT) {
        return Err(invalid("user ids must be below 2^62"));
    }
    let users = b.users.iter().map(|u| UserId(u.0)).collect();
    let answer = backend.presence(users).await;
    let users: Vec<serde_json::Value> = answer
        .iter()
        .map(|(user, devices)| match devices {
            Ok(devices) => user_json(*user, devices),
            Err(e) => {
                // Unknown, not offline: the owner node could not say.
                let mut unknown = user_json(*user, &[]);
                unknown["error"] = ApiError::from(*e).code().into();
                unknown
            }
        })
        .collect();
    Ok(json(serde_json::json!({ "users": users })))
}

/// One user's presence as JSON (ids as strings).
fn user_json(user: UserId, devices: &[OnlineDevice]) -> serde_json::Value {
    let devices: Vec<serde_json::Value> = devices
        .iter()
        .map(|d| {
            serde_json::json!({
                "device": id_text(d.device.0),
                "since_ms": d.since_ms,
                "shard": d.shard,
                "transport": d.transport,
            })
        })
        .collect();
    serde_json::json!({
        "user": id_text(user.0),
        "online": !devices.is_empty(),
        "devices": devices,
    })
}
