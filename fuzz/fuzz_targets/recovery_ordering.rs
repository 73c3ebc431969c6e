//! Like `migration_ordering`, with streams killed at both ends or at one
//! (half-open) and new streams connected at any point (design §8): no byte
//! lost or repeated, every session recovers or closes with a reason.
//!
//! `ASTRAL_FUZZ_KNOWN_DEFECTS=skip` leaves out the known defects of the
//! current core, so that a crash is a new finding.
#![no_main]

use astral_sim::fuzzing::schedule::{known_defects_from_env, run, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(Target::Recovery, data, known_defects_from_env()) {
        panic!("oracle violation: {e}");
    }
});
