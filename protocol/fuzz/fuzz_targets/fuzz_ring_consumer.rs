//! Fuzz target: arbitrary bytes become the content of a ring memfd (layout version 3: header and
//! data area, or patches over a valid ring with records wrapping behind a PAD and a stuck
//! reservation; see
//! `logtap_protocol::ring::fuzzing`), which the agent's `Consumer` then drains to the end. It
//! must answer with records or errors, never panic, never read out of bounds.
//!
//! Run from protocol/: `RUSTC_BOOTSTRAP=1 cargo fuzz run fuzz_ring_consumer -- -max_total_time=120`

#![no_main]

use libfuzzer_sys::fuzz_target;
use logtap_protocol::ring::fuzzing::consume_arbitrary_ring;

fuzz_target!(|data: &[u8]| {
    let _ = consume_arbitrary_ring(data);
});
