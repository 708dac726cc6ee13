//! Arbitrary bytes as a NATS message from another node or a KV value
//! (issue #20; admin calls and answers included): every cluster decoder
//! returns a value or an error, never panics; what decodes re-encodes to
//! the same bytes; and decoded request
//! batches go through the receiver's link state machine (dedup, order,
//! reply cache) without a panic, as a forged or replayed batch would.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use surepush::cluster::admin_calls::{AdminAnswer, AdminCall};
use surepush::cluster::messaging::batch::{BatchReply, BatchRequest, RoomPublish};
use surepush::cluster::messaging::chunks::{ReplyAssembly, ReplyChunk};
use surepush::cluster::messaging::inbound::{InboundLinks, Verdict};
use surepush::cluster::placement::record::{ClusterMeta, PlacementRecord};
use surepush::cluster::registry::record::NodeRecord;
use surepush::cluster::wire::{self, Frames, Wire};
use surepush::cluster::NodeId;

fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(input: &Bytes) {
    if let Ok(msg) = wire::decode::<T>(input) {
        assert_eq!(&wire::to_bytes(&msg), input, "re-encodes identically");
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    round_trip::<BatchRequest>(&input);
    round_trip::<BatchReply>(&input);
    round_trip::<RoomPublish>(&input);
    round_trip::<ReplyChunk>(&input);
    round_trip::<NodeRecord>(&input);
    round_trip::<ClusterMeta>(&input);
    round_trip::<PlacementRecord>(&input);
    round_trip::<AdminCall>(&input);
    round_trip::<AdminAnswer>(&input);

    // The same bytes as a stream of reply chunks for the requester's
    // assembly: whatever comes out is bounded and never panics.
    let mut assembly = ReplyAssembly::default();
    for frame in Frames::new(&input) {
        let Ok(frame) = frame else { break };
        if let Ok(chunk) = frame.decode::<ReplyChunk>() {
            let _ = assembly.push(chunk);
        }
    }

    // The same bytes as a stream of frames: each a batch for the receiver.
    let mut links = InboundLinks::new(NodeId::parse("fuzz").expect("valid id"));
    for frame in Frames::new(&input) {
        let Ok(frame) = frame else { break };
        let Ok(req) = frame.decode::<BatchRequest>() else { continue };
        if let Verdict::Deliver { key, items } = links.handle(req) {
            for index in 0..items.len() {
                let _ = links.complete(&key, index, Bytes::new());
            }
            // A second answer to the same message is ignored.
            assert!(links.complete(&key, 0, Bytes::new()).is_none());
        }
    }
});
