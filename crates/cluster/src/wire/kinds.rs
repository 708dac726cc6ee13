//! The registry of message kind numbers. A number, once used, is never
//! given to another struct (old nodes and KV history still hold it).
//!
//! | range       | owner                                               |
//! |-------------|-----------------------------------------------------|
//! | 1 – 99      | this crate: KV records, batches, room publishes     |
//! | 100 – 999   | the core's node-to-node messages (`StoreCopy`, ...) |
//! | 60000 –     | tests and benchmarks                                |

use super::MessageKind;

/// `ClusterMeta`: the cluster record in the placement bucket.
pub const CLUSTER_META: MessageKind = MessageKind(1);
/// `PlacementRecord`: one partition's owner.
pub const PLACEMENT_RECORD: MessageKind = MessageKind(2);
/// `NodeRecord`: one node's registry entry.
pub const NODE_RECORD: MessageKind = MessageKind(3);
/// `BatchRequest`: messages from one node to another.
pub const BATCH_REQUEST: MessageKind = MessageKind(4);
/// `BatchReply`: the answer to one `BatchRequest`.
pub const BATCH_REPLY: MessageKind = MessageKind(5);
/// `RoomPublish`: one room push on a room subject.
pub const ROOM_PUBLISH: MessageKind = MessageKind(6);
/// `MoveOrder`: an operator asks a node to take a partition, or (version 2,
/// with a shard) to move one it holds between its shards (issue #20).
pub const MOVE_ORDER: MessageKind = MessageKind(7);
/// `MoveResult`: how a `MoveOrder` ended.
pub const MOVE_RESULT: MessageKind = MessageKind(8);
/// `ReplyChunk`: a slice of a `BatchReply` larger than one NATS message.
pub const REPLY_CHUNK: MessageKind = MessageKind(10);
/// `AdminCall`: a node asks a user's owner node for an admin read or
/// action (`admin_calls`).
pub const ADMIN_CALL: MessageKind = MessageKind(11);
/// `AdminAnswer`: the owner's answer to an `AdminCall`.
pub const ADMIN_ANSWER: MessageKind = MessageKind(12);
/// A message between shards of different nodes: the core's `PeerMsg`
/// encoding (which carries its own version and message kind), in an
/// envelope routed by the partition it is about.
pub const CORE_PEER_MSG: MessageKind = MessageKind(100);
/// First number for test and benchmark messages.
pub const FIRST_TEST_KIND: u16 = 60_000;
