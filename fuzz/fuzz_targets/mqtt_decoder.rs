//! Arbitrary bytes, in arbitrary pieces, into the MQTT decoder (version
//! unknown: learnt from CONNECT, or fixed by the first input byte): it must
//! decode or fail with a typed error and a reason code, never panic, and a
//! decoded packet must re-encode to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use surepush::mqtt::{encode, Decoder, ProtocolLevel};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let level = match mode % 3 {
        0 => None,
        1 => Some(ProtocolLevel::V311),
        _ => Some(ProtocolLevel::V5),
    };
    let (cuts, stream) = rest.split_at(rest.len().min(4));
    let mut d = Decoder::new(level, 64 * 1024);
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut step = 0;
    while pos < stream.len() {
        let n = (cuts.get(step % cuts.len().max(1)).copied().unwrap_or(7) as usize % 64) + 1;
        let end = (pos + n).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        step += 1;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let level = d.protocol_level().expect("known after a packet");
                    let mut wire = BytesMut::new();
                    encode(&packet, level, &mut wire).expect("a decoded packet encodes");
                    let mut again = Decoder::new(Some(level), 64 * 1024);
                    assert_eq!(
                        again.decode(&mut wire).expect("re-encoded packet decodes"),
                        Some(packet)
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.reason_code();
                    return;
                }
            }
        }
    }
});
