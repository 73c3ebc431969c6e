//! Fuzzing harnesses; also run by ordinary tests (`tests/fuzz_harness.rs`)
//! so they stay correct where no fuzzer is installed, and so every crash a
//! fuzzer found is replayed by `cargo test`.
//!
//! - [`schedule`]: structure-aware schedules (a setup and a list of
//!   operations decoded with `arbitrary`) run on the explorer's
//!   [`crate::explore::World`]; the `migration_ordering`,
//!   `recovery_ordering` and `drain_ordering` targets.
//! - [`stream_input`]: arbitrary bytes into an established stream; the
//!   node's output must stay well-formed records and frames.
//! - [`corpus`]: the seed corpus, generated reproducibly.
//! - [`run_ordering`]: the first, byte-by-byte ordering harness over the
//!   simulator, kept for its regressions.

mod bytes;
pub mod corpus;
pub mod schedule;
pub mod stream_input;

pub use bytes::run_ordering;
