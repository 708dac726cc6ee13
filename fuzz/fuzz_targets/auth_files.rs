//! What the gateway reads from outside besides tokens, for auth: a JWKS
//! document (from the identity provider's URL) and the revocations file
//! (from the data directory). Either is parsed or refused, never a panic;
//! revocations that parse store back into the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surepush::token::{parse_jwks, Revocations, MAX_JWKS_KEYS};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_jwks(data) {
        assert!(parsed.keys.len() <= MAX_JWKS_KEYS);
    }
    if let Ok(revocations) = Revocations::decode(data) {
        assert_eq!(Revocations::decode(&revocations.encode()), Ok(revocations));
    }
});
