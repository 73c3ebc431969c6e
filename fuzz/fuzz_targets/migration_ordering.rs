//! Arbitrary bytes choose the order in which frames of two streams are
//! delivered and when migrations start, from which side. The oracle checks
//! exactly-once, in-order delivery of every session's bytes both ways.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = astral_sim::fuzzing::run_ordering(data, 2, false) {
        panic!("oracle violation: {e}");
    }
});
