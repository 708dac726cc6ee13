//! Arbitrary bytes as a shard-to-shard message (`surepush_core::PeerMsg`,
//! as a cluster would receive it from another process): decoding must
//! succeed or fail with a typed error, never panic or allocate by a forged
//! count, and a decoded message must re-encode to exactly the input (the
//! encoding has one form per message).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use surepush::core::PeerMsg;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(msg) = PeerMsg::decode(&input) {
        assert_eq!(msg.to_bytes(), input, "{msg:?}");
    }
});
