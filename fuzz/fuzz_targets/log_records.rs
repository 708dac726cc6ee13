//! Arbitrary bytes as the tail of a segment: recovery's scan (decode record
//! after record, fold into the delivery state, load checkpoints) must stop
//! at damage with a verdict, never panic, and every record it accepts must
//! re-encode to the same bytes. The same bytes as a sidecar or a checkpoint
//! pointer must be rejected or read, never panic.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use surepush::log::format::{self, Decoded};
use surepush::log::scan;
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
            Decoded::Internal(_, len) => buf = buf.slice(len..),
            Decoded::End | Decoded::Truncated | Decoded::Corrupt(_) => break,
        }
    }
    // The resyncing scanner over the same bytes as a whole segment (fed in
    // small pieces): it ends, and what it reports tiles the file in order.
    let mut scanner = scan::Scanner::new(0, data.len() as u64);
    let mut next = 0u64;
    loop {
        match scanner.step() {
            scan::Step::Found(found) => {
                let (at, end) = match found {
                    scan::Found::Record { at, len, .. } | scan::Found::Internal { at, len, .. } => {
                        (at, at + len as u64)
                    }
                    scan::Found::Damage { at, resume, .. } => (at, resume),
                    scan::Found::End { at } => (at, data.len() as u64),
                };
                assert!(at == next && end > at || end == at && at == data.len() as u64);
                next = end;
            }
            scan::Step::NeedMore => {
                let at = scanner.wants() as usize;
                let end = (at + 97).min(data.len());
                scanner.feed(Bytes::copy_from_slice(&data[at..end]));
            }
            scan::Step::Done => break,
        }
    }
    let _ = scan::guess_records(data, 0);
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
