//! Token ACLs: the resources a token grants its session, by topic filter.
//!
//! A token may carry an `acl` claim (docs/PROTOCOL.md section 4):
//! `{"sub": [filters], "pub": [filters]}`. Each filter uses MQTT
//! topic-filter syntax (`+` one level, `#` the rest; `proto::topic`) over
//! resource names; room `n` is the name `room/{n}`, so `room/+` grants every
//! room and `room/42` one. Free-form MQTT topics (issue #21) will be
//! granted by the same claim, unchanged.
//!
//! Rules:
//! - the claim is parsed and checked once, when the token is verified; a
//!   session keeps the result ([`Acl`]) for its life, like the token;
//! - an ACL only grants: a resource it does not name may still be allowed
//!   by room membership or an open room (the policy is decided in
//!   `room_access`); no claim and empty lists grant nothing;
//! - its size is bounded ([`MAX_ACL_FILTERS`] per list, [`MAX_ACL_FILTER_LEN`]
//!   bytes per filter): a larger or invalid claim refuses the token, so a
//!   client never carries an unbounded matcher and a typo is never read as
//!   "grant nothing" in silence.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use surepush_proto::topic::{filter_error, topic_matches, RoomName};
use surepush_proto::topic_stream::is_topic_stream;
use surepush_proto::ROOM_BIT;

/// Most filters in one list (`sub` or `pub`) of an `acl` claim.
pub const MAX_ACL_FILTERS: usize = 64;
/// Longest filter in an `acl` claim, in bytes.
pub const MAX_ACL_FILTER_LEN: usize = 256;

/// What a session does with a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclAction {
    /// Read it: SUBSCRIBE (the claim's `sub` list).
    Subscribe,
    /// Write into it: SEND / PUBLISH (the claim's `pub` list).
    Publish,
}

impl AclAction {
    /// The claim's key for this action.
    pub fn claim_key(self) -> &'static str {
        match self {
            AclAction::Subscribe => "sub",
            AclAction::Publish => "pub",
        }
    }
}

/// Why an `acl` claim was refused (the token is refused with `AuthFailed`).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AclError {
    /// A list holds more than [`MAX_ACL_FILTERS`] filters.
    #[error("acl.{0}: more than {MAX_ACL_FILTERS} filters")]
    TooManyFilters(&'static str),
    /// A filter is longer than [`MAX_ACL_FILTER_LEN`] bytes.
    #[error("acl.{0}: a filter is longer than {MAX_ACL_FILTER_LEN} bytes")]
    FilterTooLong(&'static str),
    /// A filter breaks the topic-filter syntax (or holds U+0000).
    #[error("acl.{0}: invalid filter: {1}")]
    InvalidFilter(&'static str, &'static str),
}

/// The grants of one session's token, checked and compact: no claim costs
/// one pointer per connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    lists: Option<Box<Lists>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Lists {
    subscribe: Box<[Box<str>]>,
    publish: Box<[Box<str>]>,
}

/// The claim as JSON: `{"sub": [...], "pub": [...]}`, both optional, no
/// other keys (an unknown key is refused rather than ignored: a misspelt
/// list would otherwise grant nothing without a word).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AclClaim {
    #[serde(default, rename = "sub", skip_serializing_if = "Vec::is_empty")]
    subscribe: Vec<String>,
    #[serde(default, rename = "pub", skip_serializing_if = "Vec::is_empty")]
    publish: Vec<String>,
}

impl Acl {
    /// An ACL granting `subscribe` and `publish` (filters), checked.
    pub fn new<S: AsRef<str>>(subscribe: &[S], publish: &[S]) -> Result<Acl, AclError> {
        let subscribe = checked(AclAction::Subscribe, subscribe)?;
        let publish = checked(AclAction::Publish, publish)?;
        let lists = (!subscribe.is_empty() || !publish.is_empty())
            .then(|| Box::new(Lists { subscribe, publish }));
        Ok(Acl { lists })
    }

    /// True when nothing is granted (no claim, or empty lists).
    pub fn is_empty(&self) -> bool {
        self.lists.is_none()
    }

    /// The filters granted for `action`.
    pub fn filters(&self, action: AclAction) -> &[Box<str>] {
        match (&self.lists, action) {
            (None, _) => &[],
            (Some(l), AclAction::Subscribe) => &l.subscribe,
            (Some(l), AclAction::Publish) => &l.publish,
        }
    }

    /// Whether a filter of the `action` list matches the resource `name`.
    pub fn grants(&self, action: AclAction, name: &str) -> bool {
        self.filters(action)
            .iter()
            .any(|filter| topic_matches(filter, name))
    }

    /// Whether the ACL grants `action` on the room with wire id `room`
    /// (the name `room/{n}`); allocates nothing. Never for a topic stream:
    /// its grant is by topic name, which only the MQTT bridge knows
    /// (`surepush_proto::topic_stream`).
    pub fn grants_room(&self, action: AclAction, room: u64) -> bool {
        !self.is_empty()
            && !is_topic_stream(room)
            && self.grants(action, RoomName::new(room & !ROOM_BIT).as_str())
    }

    pub(super) fn from_claim(claim: AclClaim) -> Result<Acl, AclError> {
        Acl::new(&claim.subscribe, &claim.publish)
    }

    pub(super) fn to_claim(&self) -> Option<AclClaim> {
        let owned = |action| self.filters(action).iter().map(|f| f.to_string()).collect();
        self.lists.as_ref().map(|_| AclClaim {
            subscribe: owned(AclAction::Subscribe),
            publish: owned(AclAction::Publish),
        })
    }
}

fn checked<S: AsRef<str>>(action: AclAction, filters: &[S]) -> Result<Box<[Box<str>]>, AclError> {
    let key = action.claim_key();
    if filters.len() > MAX_ACL_FILTERS {
        return Err(AclError::TooManyFilters(key));
    }
    filters
        .iter()
        .map(|f| {
            let f = f.as_ref();
            if f.len() > MAX_ACL_FILTER_LEN {
                return Err(AclError::FilterTooLong(key));
            }
            if f.contains('\0') {
                // Never part of a topic ([MQTT-4.7.3-2]).
                return Err(AclError::InvalidFilter(key, "U+0000 in a filter"));
            }
            match filter_error(f) {
                Some(why) => Err(AclError::InvalidFilter(key, why)),
                None => Ok(Box::from(f)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: u64) -> u64 {
        n | ROOM_BIT
    }

    #[test]
    fn filters_grant_rooms_by_name() {
        let acl = Acl::new(&["room/+"], &["room/42", "room/7/#"]).expect("valid");
        assert!(acl.grants_room(AclAction::Subscribe, room(0)));
        assert!(acl.grants_room(AclAction::Subscribe, room((1 << 61) - 1)));
        // Issue #21: a topic stream's id is a hash, not a room number:
        // `room/+` must not grant it.
        assert!(!acl.grants_room(AclAction::Subscribe, room((1 << 62) - 1)));
        let stream = surepush_proto::topic_stream::stream_id("chat/general");
        assert!(!Acl::new(&["#"], &["#"])
            .expect("valid")
            .grants_room(AclAction::Subscribe, stream));
        assert!(acl.grants_room(AclAction::Publish, room(42)));
        assert!(
            acl.grants_room(AclAction::Publish, room(7)),
            "'#' matches its parent"
        );
        assert!(!acl.grants_room(AclAction::Publish, room(43)));
        assert!(!acl.grants_room(AclAction::Publish, room(420)));
        assert!(!acl.grants_room(AclAction::Publish, room(4)));
        let all = Acl::new(&["#"], &[]).expect("valid");
        assert!(all.grants_room(AclAction::Subscribe, room(9)));
        assert!(
            !all.grants_room(AclAction::Publish, room(9)),
            "lists are apart"
        );
    }

    #[test]
    fn no_claim_and_empty_lists_grant_nothing() {
        for acl in [Acl::default(), Acl::new::<&str>(&[], &[]).expect("valid")] {
            assert!(acl.is_empty());
            assert!(!acl.grants_room(AclAction::Subscribe, room(1)));
            assert!(!acl.grants(AclAction::Publish, "room/1"));
        }
    }

    #[test]
    fn oversized_or_invalid_claims_are_refused_with_a_reason() {
        let many: Vec<String> = (0..=MAX_ACL_FILTERS).map(|n| format!("room/{n}")).collect();
        assert_eq!(Acl::new(&many, &[]), Err(AclError::TooManyFilters("sub")));
        assert!(Acl::new(&many[..MAX_ACL_FILTERS], &many[..MAX_ACL_FILTERS]).is_ok());
        let long = format!("room/{}", "9".repeat(MAX_ACL_FILTER_LEN));
        assert_eq!(
            Acl::new(&[], &[long.as_str()]),
            Err(AclError::FilterTooLong("pub"))
        );
        for bad in ["", "room/#/x", "room/4+", "room/\0"] {
            let e = Acl::new(&[bad], &[]).expect_err(bad);
            assert!(matches!(e, AclError::InvalidFilter("sub", _)), "{bad}: {e}");
        }
    }
}
