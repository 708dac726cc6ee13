//! Arbitrary bytes as the tail of a segment: recovery's scan (decode record
//! after record, fold into the delivery state, load checkpoints) must stop
//! at damage with a verdict, never panic, and every record it accepts must
//! re-encode to the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use surepush::log::format::{self, Decoded};
use surepush::log::{DedupConfig, Record, RecoveredState};

fuzz_target!(|data: &[u8]| {
    let config = DedupConfig::default();
    let mut state = RecoveredState::default();
    let mut buf = Bytes::copy_from_slice(data);
    loop {
        match format::decode(&buf) {
            Decoded::Record(record, len) => {
                let mut again = BytesMut::new();
                format::encode(&record, &mut again);
                assert_eq!(
                    &again[..],
                    &buf[..len],
                    "accepted record re-encodes identically"
                );
                if let Record::Checkpoint(body) = &record {
                    if let Some(s) = format::decode_checkpoint(body, &config) {
                        state = s;
                    }
                } else {
                    state.apply(&record, &config);
                }
                buf = buf.slice(len..);
            }
            Decoded::End | Decoded::Truncated | Decoded::Corrupt(_) => break,
        }
    }
});
