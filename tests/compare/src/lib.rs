//! Comparison harness for astral-rs (DESIGN.md §12).
//!
//! The harness itself lives in `benches/compare.rs` so that its peers
//! (yamux, quinn, rustls, rcgen, ...) stay dev-dependencies. Run it with
//! `cargo bench -p astral-compare --bench compare` (add `-- --json` for a
//! JSON document on stdout, `COMPARE_QUICK=1` for a smoke run); the
//! environment knobs are listed at the top of `benches/compare.rs`.
