//! Like `migration_ordering` over three streams, with streams killed and new
//! ones connected at arbitrary points (design §8): no byte lost or repeated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = astral_sim::fuzzing::run_ordering(data, 3, true) {
        panic!("oracle violation: {e}");
    }
});
