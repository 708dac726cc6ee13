//! Arbitrary bytes as the tail of a segment: recovery's scan (decode record
//! after record, fold into the delivery state, load checkpoints) must stop
//! at damage with a verdict, never panic, and every record it accepts must
//! re-encode to the same bytes. The same bytes as a sidecar or a checkpoint
//! pointer must be rejected or read, never panic.
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
                    if let Some(cp) = format::decode_checkpoint(body, &config) {
                        state = cp.state;
                    }
                } else {
                    state.apply(&record, &config);
                }
                buf = buf.slice(len..);
            }
            Decoded::End | Decoded::Truncated | Decoded::Corrupt(_) => break,
        }
    }
    // The other files recovery reads: sidecars and the checkpoint pointer.
    for with_keys in [false, true] {
        if let Some(sidecar) = format::decode_sidecar(data, 0, with_keys) {
            assert_eq!(sidecar.keys.is_empty(), !with_keys || sidecar.entries.is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = format::parse_pointer(text);
    }
});
