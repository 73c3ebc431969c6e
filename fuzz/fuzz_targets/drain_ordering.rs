//! Everything `recovery_ordering` does plus drains started by either side,
//! mixed with migrations and kills: a drained stream must never take bytes
//! with it (issue 10).
//!
//! Nothing is left out (`KnownDefects::none()`): every defect the
//! explorer's exclusions name is fixed, so any crash is a finding.
#![no_main]

use astral_sim::explore::KnownDefects;
use astral_sim::fuzzing::schedule::{run, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(Target::Drain, data, KnownDefects::none()) {
        panic!("oracle violation: {e}");
    }
});
