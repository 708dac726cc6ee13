//! Messages between shards: what one shard's parts ask of another's.
//!
//! Owns: the message structs (`messages.rs`), the [`PeerMsg`] envelope the
//! mesh carries, and their versioned binary encoding (`wire.rs`).
//!
//! Rules:
//! - a message is addressed by the [`crate::Router`]: it goes to the owner
//!   of the id it is about, and the receiving shard's dispatcher
//!   (`Shard::handle_peer`) hands it whole to the part that owns that id's
//!   state;
//! - a message carries everything its receiver needs (no shared memory
//!   between shards), so the same struct can cross a process: each has an
//!   encoding, round-trip tested, and decoding untrusted bytes never panics
//!   (fuzz target `peer_msg`).

mod across;
mod messages;
mod moving;
mod presence;
mod share;
mod wire;

pub use across::{decode_answers, encode_answers, encode_answers_into, Answers};
pub use messages::{
    Ephemeral, FilterJoin, FilterJoined, FilterLeave, FilterQuery, FilterWant, GroupEphemeral,
    GroupStore, GroupStored, MembersUpdate, MembersUpdated, NodeFilters, PresenceChanged,
    PresenceUnwatch, PresenceWatch, QueryState, Release, ReleaseMany, Revoked, RoomFanout,
    RoomLeave, RoomPage, RoomPublish, RoomRefused, RoomRevoke, RoomSubscribe, StateStored,
    StateValue, StoreCopy, StoreMany, StoreState, Stored, StreamsAnswered, TopicNotice, TopicRelay,
};
pub use moving::{MoveCursor, MoveFetch, MovePage, MoveRoundFetch, MoveStatus};
pub use presence::{PresenceNodeUnwatch, PresenceNodeWatch, PresenceUpdate};
pub use share::{ShareAway, ShareDeliver, ShareDone, ShareJoin, ShareJoined, ShareOp};
pub(crate) use wire::encoded_len;
pub use wire::{PeerWireError, PEER_WIRE_VERSION};

/// One message between shards (through the channel mesh in the server).
/// Each variant wraps the struct of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    /// See [`StoreCopy`].
    StoreCopy(StoreCopy),
    /// See [`Stored`].
    Stored(Stored),
    /// See [`RoomPublish`].
    RoomPublish(RoomPublish),
    /// See [`Ephemeral`].
    Ephemeral(Ephemeral),
    /// See [`Release`].
    Release(Release),
    /// See [`GroupStore`].
    GroupStore(GroupStore),
    /// See [`StoreMany`].
    StoreMany(StoreMany),
    /// See [`GroupStored`].
    GroupStored(GroupStored),
    /// See [`GroupEphemeral`].
    GroupEphemeral(GroupEphemeral),
    /// See [`ReleaseMany`].
    ReleaseMany(ReleaseMany),
    /// See [`MembersUpdate`].
    MembersUpdate(MembersUpdate),
    /// See [`MembersUpdated`].
    MembersUpdated(MembersUpdated),
    /// See [`RoomSubscribe`].
    RoomSubscribe(RoomSubscribe),
    /// See [`RoomRefused`].
    RoomRefused(RoomRefused),
    /// See [`RoomRevoke`].
    RoomRevoke(RoomRevoke),
    /// See [`RoomLeave`].
    RoomLeave(RoomLeave),
    /// See [`RoomPage`].
    RoomPage(RoomPage),
    /// See [`RoomFanout`].
    RoomFanout(RoomFanout),
    /// See [`StoreState`].
    StoreState(StoreState),
    /// See [`StateStored`].
    StateStored(StateStored),
    /// See [`QueryState`].
    QueryState(QueryState),
    /// See [`StateValue`].
    StateValue(StateValue),
    /// See [`PresenceWatch`].
    PresenceWatch(PresenceWatch),
    /// See [`PresenceUnwatch`].
    PresenceUnwatch(PresenceUnwatch),
    /// See [`PresenceChanged`].
    PresenceChanged(PresenceChanged),
    /// See [`MoveFetch`].
    MoveFetch(MoveFetch),
    /// See [`MovePage`].
    MovePage(MovePage),
    /// See [`MoveRoundFetch`].
    MoveRoundFetch(MoveRoundFetch),
    /// See [`FilterJoin`].
    FilterJoin(FilterJoin),
    /// See [`FilterLeave`].
    FilterLeave(FilterLeave),
    /// See [`TopicNotice`].
    TopicNotice(TopicNotice),
    /// See [`FilterJoined`].
    FilterJoined(FilterJoined),
    /// See [`NodeFilters`].
    NodeFilters(NodeFilters),
    /// See [`FilterQuery`].
    FilterQuery(FilterQuery),
    /// See [`TopicRelay`].
    TopicRelay(TopicRelay),
    /// See [`StreamsAnswered`].
    StreamsAnswered(StreamsAnswered),
    /// See [`ShareJoin`].
    ShareJoin(ShareJoin),
    /// See [`ShareJoined`].
    ShareJoined(ShareJoined),
    /// See [`ShareDeliver`].
    ShareDeliver(ShareDeliver),
    /// See [`ShareDone`].
    ShareDone(ShareDone),
    /// See [`ShareAway`].
    ShareAway(ShareAway),
    /// See [`PresenceNodeWatch`].
    PresenceNodeWatch(PresenceNodeWatch),
    /// See [`PresenceNodeUnwatch`].
    PresenceNodeUnwatch(PresenceNodeUnwatch),
    /// See [`PresenceUpdate`].
    PresenceUpdate(PresenceUpdate),
}

/// `impl From<Struct> for PeerMsg` for each variant, so a sender writes
/// `StoreCopy { .. }.into()`.
macro_rules! peer_msg_from {
    ($($name:ident),* $(,)?) => {
        $(impl From<$name> for PeerMsg {
            fn from(msg: $name) -> PeerMsg {
                PeerMsg::$name(msg)
            }
        })*
    };
}

peer_msg_from!(
    StoreCopy,
    Stored,
    RoomPublish,
    Ephemeral,
    Release,
    GroupStore,
    StoreMany,
    GroupStored,
    GroupEphemeral,
    ReleaseMany,
    MembersUpdate,
    MembersUpdated,
    RoomSubscribe,
    RoomRefused,
    RoomRevoke,
    RoomLeave,
    RoomPage,
    RoomFanout,
    StoreState,
    StateStored,
    QueryState,
    StateValue,
    PresenceWatch,
    PresenceUnwatch,
    PresenceChanged,
    MoveFetch,
    MovePage,
    MoveRoundFetch,
    FilterJoin,
    FilterLeave,
    TopicNotice,
    FilterJoined,
    NodeFilters,
    FilterQuery,
    TopicRelay,
    StreamsAnswered,
    ShareJoin,
    ShareJoined,
    ShareDeliver,
    ShareDone,
    ShareAway,
    PresenceNodeWatch,
    PresenceNodeUnwatch,
    PresenceUpdate,
);

#[cfg(test)]
mod tests;
