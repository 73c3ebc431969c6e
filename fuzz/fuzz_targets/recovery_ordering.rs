//! Like `migration_ordering`, with streams killed at both ends or at one
//! (half-open) and new streams connected at any point (design §8): no byte
//! lost or repeated, every session recovers or closes with a reason.
//!
//! Nothing is left out (`KnownDefects::none()`): every defect the
//! explorer's exclusions name is fixed, so any crash is a finding.
#![no_main]

use astral_sim::explore::KnownDefects;
use astral_sim::fuzzing::schedule::{run, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(Target::Recovery, data, KnownDefects::none()) {
        panic!("oracle violation: {e}");
    }
});
