//! The admin routes about conversations (issue #22 items 1 and 5;
//! docs/PROTOCOL.md "Conversations"): `GET /v1/users/{n}/conversations`
//! (a page of summaries, as CONVLIST/CONVPAGE) and
//! `GET /v1/users/{n}/conversations/{kind}/{peer}/messages` (a page of one
//! conversation, as CONVFETCH/CONVMSGS), and `GET /v1/users/{n}/messages`
//! (a page of the whole inbox, the same page over every sequence). All are
//! answered by the user's owner shard with the frames' own code; this file only reads the query
//! and writes JSON (docs/openapi.yaml describes both).
//!
//! Query parameters are those of the frames. Every combination the file
//! documents is a valid request (no two parameters exclude each other), so
//! a page of messages names its direction and anchor as CONVFETCH does
//! rather than offering `before` and `after` side by side. Unknown or
//! repeated parameters are refused (400), as unknown body fields are.

use base64::Engine;

use super::json_body::id_text;
use super::{invalid, json, ApiError, Resp};
use crate::admin_api::{AdminBackend, ConversationError, ConversationPage, ConversationRead};
use surepush_core::UnreadFrom;
use surepush_proto::{
    ConvFetch, ConvList, ConvMsgs, ConvPage, DeviceId, Push, Seq, SyncDirection, UserId, ROOM_BIT,
};

/// Page size when the request names none.
pub const DEFAULT_LIMIT: u32 = 50;

/// `GET /v1/users/{n}/conversations?device=&before=&limit=&unread_only=`.
pub(super) async fn summaries<B: AdminBackend>(
    user: &str,
    query: Option<&str>,
    backend: &B,
) -> Result<Resp, ApiError> {
    let user = user_id(user)?;
    let q = Query::parse(query, &["device", "before", "limit", "unread_only"])?;
    let device = q.number("device")?.map(DeviceId);
    let list = ConvList {
        request_id: 0,
        before: Seq(q.number("before")?.unwrap_or(0)),
        limit: q.limit()?,
        unread_only: q.flag("unread_only")?.unwrap_or(false),
    };
    let from = device.map_or(UnreadFrom::AnyDevice, UnreadFrom::Device);
    let read = ConversationRead::Summaries { from, list };
    match backend.conversations(user, read).await {
        Ok(ConversationPage::Summaries(page)) => Ok(json(summaries_json(user, device, &page))),
        Ok(ConversationPage::Messages(_)) => unreachable!("a summary read answers summaries"),
        Err(e) => Err(read_error(e)),
    }
}

/// `GET /v1/users/{n}/conversations/{kind}/{peer}/messages?direction=&anchor=&limit=`.
pub(super) async fn messages<B: AdminBackend>(
    params: &[&str],
    query: Option<&str>,
    backend: &B,
) -> Result<Resp, ApiError> {
    let [user, kind, peer] = params else {
        unreachable!("the route has three parameters")
    };
    let user = user_id(user)?;
    let kind = Kind::parse(kind)?;
    let Some(number) = decimal(peer).filter(|n| *n < ROOM_BIT) else {
        return Err(invalid("the peer must be a number below 2^62"));
    };
    let fetch = page_request(query, kind.id(number))?;
    let page = message_page(backend, user, ConversationRead::Messages(fetch)).await?;
    Ok(json(messages_json(user, &page)))
}

/// `GET /v1/users/{n}/messages?direction=&anchor=&limit=`: a page of the
/// user's whole inbox history, with the same parameters and items as a
/// conversation's page.
pub(super) async fn inbox<B: AdminBackend>(
    user: &str,
    query: Option<&str>,
    backend: &B,
) -> Result<Resp, ApiError> {
    let user = user_id(user)?;
    let fetch = page_request(query, UserId(0))?;
    let page = message_page(backend, user, ConversationRead::Inbox(fetch)).await?;
    let messages: Vec<serde_json::Value> = page.items.iter().map(message_json).collect();
    Ok(json(serde_json::json!({
        "user": id_text(user.0),
        "head": page.head.0,
        "end": page.end,
        "messages": messages,
    })))
}

/// The CONVFETCH a page request asks (`direction`, `anchor`, `limit`).
fn page_request(query: Option<&str>, peer: UserId) -> Result<ConvFetch, ApiError> {
    let q = Query::parse(query, &["direction", "anchor", "limit"])?;
    let anchor = Seq(q.number("anchor")?.unwrap_or(0));
    let direction = match q.get("direction") {
        None | Some("latest") => SyncDirection::Latest,
        Some("before") => SyncDirection::Before(anchor),
        Some("after") => SyncDirection::After(anchor),
        Some(_) => return Err(invalid("direction must be latest, before or after")),
    };
    Ok(ConvFetch {
        request_id: 0,
        peer,
        direction,
        limit: q.limit()?,
    })
}

async fn message_page<B: AdminBackend>(
    backend: &B,
    user: UserId,
    read: ConversationRead,
) -> Result<ConvMsgs, ApiError> {
    match backend.conversations(user, read).await {
        Ok(ConversationPage::Messages(page)) => Ok(page),
        Ok(ConversationPage::Summaries(_)) => unreachable!("a message read answers messages"),
        Err(e) => Err(read_error(e)),
    }
}

/// A conversation's peer: another user, or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn parse(text: &str) -> Result<Kind, ApiError> {
        match text {
            "user" => Ok(Kind::User),
            "group" => Ok(Kind::Group),
            _ => Err(invalid("the conversation kind must be user or group")),
        }
    }

    /// The conversation's key in the core: the user id, or the group's
    /// wire id.
    fn id(self, number: u64) -> UserId {
        match self {
            Kind::User => UserId(number),
            Kind::Group => UserId(number | UserId::GROUP_BIT),
        }
    }

    /// The kind and number of a conversation key.
    fn of(peer: UserId) -> (&'static str, u64) {
        match peer.is_group() {
            true => ("group", peer.0 & !UserId::GROUP_BIT),
            false => ("user", peer.0),
        }
    }
}

fn user_id(text: &str) -> Result<UserId, ApiError> {
    match decimal(text).filter(|n| *n < ROOM_BIT) {
        Some(n) => Ok(UserId(n)),
        None => Err(invalid("the user id must be below 2^62")),
    }
}

/// Decimal digits only (no sign or spaces), within u64.
fn decimal(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// A query string's `name=value` pairs, each a known name at most once.
struct Query<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>, known: &[&str]) -> Result<Query<'a>, ApiError> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(invalid(&format!("query parameter {pair:?} has no value")));
            };
            if !known.contains(&name) {
                return Err(invalid(&format!(
                    "unknown query parameter {name:?} (known: {})",
                    known.join(", ")
                )));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(invalid(&format!("query parameter {name} given twice")));
            }
            pairs.push((name, value));
        }
        Ok(Query(pairs))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| decimal(v).ok_or_else(|| invalid(&format!("{name} must be a number"))))
            .transpose()
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(invalid(&format!("{name} must be true or false"))),
        }
    }

    /// `limit`, or the default; its upper bound is the owner shard's.
    fn limit(&self) -> Result<u32, ApiError> {
        match self.number("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(n) => u32::try_from(n).map_err(|_| invalid("limit is too large")),
        }
    }
}

fn read_error(e: ConversationError) -> ApiError {
    match e {
        ConversationError::Limit(limit) => ApiError::InvalidRequest(limit.to_string()),
        ConversationError::Invalid(why) => ApiError::InvalidRequest(why),
        ConversationError::Unavailable => ApiError::Unavailable,
        ConversationError::Owner(e) => e.into(),
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A CONVPAGE as JSON: ids as strings, preview in base64.
fn summaries_json(user: UserId, device: Option<DeviceId>, page: &ConvPage) -> serde_json::Value {
    let conversations: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|c| {
            let (kind, peer) = Kind::of(c.peer);
            serde_json::json!({
                "kind": kind,
                "peer": id_text(peer),
                "unread": c.unread,
                "unread_at_least": c.unread_at_least,
                "total": c.total,
                "last_seq": c.last_seq.0,
                "last_from": id_text(c.last_from.0),
                "last_from_device": id_text(c.last_from_device.0),
                "last_ts_ms": c.last_ts_ms,
                "last_len": c.last_len,
                "preview": base64(&c.preview),
            })
        })
        .collect();
    let mut answer = serde_json::json!({
        "user": id_text(user.0),
        "cursor": page.cursor.0,
        "head": page.head.0,
        "older": page.older,
        "end": page.end,
        "conversations": conversations,
    });
    if let Some(device) = device {
        answer["device"] = id_text(device.0).into();
    }
    answer
}

/// A CONVMSGS as JSON: ids as strings, payload and attributes in base64.
fn messages_json(user: UserId, page: &ConvMsgs) -> serde_json::Value {
    let (kind, peer) = Kind::of(page.peer);
    let messages: Vec<serde_json::Value> = page.items.iter().map(message_json).collect();
    serde_json::json!({
        "user": id_text(user.0),
        "kind": kind,
        "peer": id_text(peer),
        "head": page.head.0,
        "end": page.end,
        "truncated": page.truncated,
        "messages": messages,
    })
}

fn message_json(m: &Push) -> serde_json::Value {
    serde_json::json!({
        "seq": m.seq.0,
        "prev_seq": m.prev_seq.0,
        "from": id_text(m.from.0),
        "from_device": id_text(m.from_device.0),
        "to": id_text(m.to.0),
        "client_msg_id": id_text(m.client_msg_id),
        "ts_ms": m.ts_ms,
        "qos": m.qos as u8,
        "payload": base64(&m.payload),
        "payload_len": m.payload.len(),
        "attrs": base64(&m.attrs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_known_single_and_well_formed() {
        let known = ["limit", "unread_only"];
        let q = Query::parse(Some("limit=5&unread_only=true"), &known).expect("valid");
        assert_eq!(q.limit(), Ok(5));
        assert_eq!(q.flag("unread_only"), Ok(Some(true)));
        let q = Query::parse(None, &known).expect("no query");
        assert_eq!(q.limit(), Ok(DEFAULT_LIMIT));
        assert!(Query::parse(Some(""), &known).is_ok());
        for bad in ["limit", "limt=5", "limit=1&limit=2"] {
            assert!(Query::parse(Some(bad), &known).is_err(), "{bad}");
        }
        for bad in [
            "limit=",
            "limit=-1",
            "limit=+1",
            "limit=1.0",
            "limit=99999999999",
        ] {
            let q = Query::parse(Some(bad), &known).expect("known, once");
            assert!(q.limit().is_err(), "{bad}");
        }
        let q = Query::parse(Some("unread_only=1"), &known).expect("known");
        assert!(q.flag("unread_only").is_err());
    }

    #[test]
    fn kinds_name_users_and_groups_by_their_numbers() {
        assert_eq!(
            Kind::parse("group").map(|k| k.id(5)),
            Ok(UserId(5 | UserId::GROUP_BIT))
        );
        assert_eq!(Kind::of(UserId(5 | UserId::GROUP_BIT)), ("group", 5));
        assert_eq!(Kind::of(UserId(7)), ("user", 7));
        assert!(Kind::parse("room").is_err());
    }
}
