//! Arbitrary bytes, fed in arbitrary pieces, into the streaming decoder:
//! it must decode or fail with a typed error, never panic, and a decoded
//! frame must re-encode to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surepush::proto::Decoder;

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(4));
    let mut d = Decoder::new(64 * 1024);
    let mut pos = 0;
    let mut step = 0;
    while pos < stream.len() {
        let n = (cuts.get(step % cuts.len().max(1)).copied().unwrap_or(7) as usize % 64) + 1;
        let end = (pos + n).min(stream.len());
        d.feed(&stream[pos..end]);
        pos = end;
        step += 1;
        loop {
            match d.decode() {
                Ok(Some(frame)) => {
                    let mut again = Decoder::new(64 * 1024);
                    again.feed(&frame.to_bytes());
                    assert_eq!(
                        again.decode().expect("re-encoded frame decodes"),
                        Some(frame)
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.code();
                    return;
                }
            }
        }
    }
});
