//! Structure-aware schedules over two or three streams: every record a
//! separate delivery in an order the input chooses, time passing,
//! migrations started by either side, and sessions finished, closed or
//! reset, on real engines. The oracle checks every byte exactly once and in
//! order, the final stream bindings and every close (see
//! `astral_sim::fuzzing::schedule`).
//!
//! `ASTRAL_FUZZ_KNOWN_DEFECTS=skip` leaves out the known defects of the
//! current core, so that a crash is a new finding.
#![no_main]

use astral_sim::fuzzing::schedule::{known_defects_from_env, run, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(Target::Migration, data, known_defects_from_env()) {
        panic!("oracle violation: {e}");
    }
});
