//! NATS subject names, built in one place.

use crate::node_id::NodeId;

/// Prefix of every subject this crate uses.
pub const PREFIX: &str = "surepush";

/// Where node `id` receives request batches.
pub fn requests(id: &NodeId) -> String {
    format!("{PREFIX}.node.{id}.req")
}

/// Where node `id` receives the replies to its batches.
pub fn replies(id: &NodeId) -> String {
    format!("{PREFIX}.node.{id}.rep")
}

/// Where node `id` takes partition move orders (`moves.rs`).
pub fn moves(id: &NodeId) -> String {
    format!("{PREFIX}.node.{id}.move")
}

/// Where node `id` takes admin calls about its users (`admin_calls`).
pub fn admin(id: &NodeId) -> String {
    format!("{PREFIX}.node.{id}.admin")
}

/// Where a room's pushes are published once for every node.
pub fn room(room: u64) -> String {
    format!("{PREFIX}.room.{room}")
}

/// Where a user's presence changes are published once for every node
/// watching it (docs/CLUSTER.md "Presence across nodes").
pub fn presence(user: u64) -> String {
    format!("{PREFIX}.presence.{user}")
}

/// The subject of a wire id a lane subscribes to or publishes on: a
/// room's pushes, or (any other id) a user's presence.
pub fn of_id(id: u64) -> String {
    if surepush_proto::is_room(id) {
        room(id)
    } else {
        presence(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_the_documented_ones() {
        let id = NodeId::parse("n1").unwrap();
        assert_eq!(requests(&id), "surepush.node.n1.req");
        assert_eq!(replies(&id), "surepush.node.n1.rep");
        assert_eq!(room(42), "surepush.room.42");
        assert_eq!(presence(42), "surepush.presence.42");
        assert_eq!(of_id(42), "surepush.presence.42");
        let a_room = surepush_proto::ROOM_BIT | 7;
        assert_eq!(of_id(a_room), room(a_room));
        assert_eq!(moves(&id), "surepush.node.n1.move");
        assert_eq!(admin(&id), "surepush.node.n1.admin");
    }
}
