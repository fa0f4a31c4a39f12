//! Arbitrary bytes, arbitrarily split, into both Forward stream decoders: must never panic and
//! must decode every split of the same bytes identically (see `harness/forward_decode.rs`).
#![no_main]

#[path = "../harness/forward_decode.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    harness::run(input);
});
