//! Everything `recovery_ordering` does plus drains started by either side,
//! mixed with migrations and kills: a drained stream must never take bytes
//! with it (issue 10).
//!
//! `ASTRAL_FUZZ_KNOWN_DEFECTS=skip` leaves out the known defects of the
//! current core, so that a crash is a new finding.
#![no_main]

use astral_sim::fuzzing::schedule::{known_defects_from_env, run, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(Target::Drain, data, known_defects_from_env()) {
        panic!("oracle violation: {e}");
    }
});
