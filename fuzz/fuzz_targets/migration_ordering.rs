//! Structure-aware schedules over two or three streams: every record a
//! separate delivery in an order the input chooses, time passing,
//! migrations started by either side, and sessions finished, closed or
//! reset, on real engines. The oracle checks every byte exactly once and in
//! order, the final stream bindings and every close (see
//! `astral_sim::fuzzing::schedule`).
//!
//! Nothing is left out (`KnownDefects::none()`): every defect the
//! explorer's exclusions name is fixed, so any crash is a finding.
#![no_main]

use astral_sim::explore::KnownDefects;
use astral_sim::fuzzing::schedule::{run, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(Target::Migration, data, KnownDefects::none()) {
        panic!("oracle violation: {e}");
    }
});
