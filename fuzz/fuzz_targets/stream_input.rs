//! Arbitrary bytes fed to an established stream's input (records use the
//! no-security cipher of the `fuzzing` feature, so the fuzzer reaches the
//! frame and session logic). The node must never panic, whatever arrives,
//! and everything it sends must decode as well-formed records and frames
//! (see `astral_sim::fuzzing::stream_input`).
#![no_main]

use astral_sim::fuzzing::stream_input::run_stream_input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run_stream_input(data) {
        panic!("{e}");
    }
});
