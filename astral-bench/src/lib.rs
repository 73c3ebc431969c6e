//! Benchmarks for Astral: astral over its drivers against raw TCP and
//! snow over TCP, like with like, in one process over loopback.
//!
//! * [`harness`] runs workloads on contenders, interleaved over
//!   repetitions, and reports medians with min–max as a table or JSON,
//!   headed by the machine's CPUs, load average and the commit measured.
//! * [`contender`] says what a contender is; any byte-stream
//!   [`contender::Transport`] gets every workload for free.
//! * The contenders of the library: raw TCP ([`tcp`]), the one snow-over-TCP
//!   baseline ([`snow`]) and astral over astral-tokio ([`astral`]). The
//!   peer comparison (yamux over the same snow baseline, quinn, astral-mio)
//!   is the `compare` bench of this crate, behind the `peers` feature so
//!   that nothing else builds quinn:
//!   `cargo bench -p astral-bench --features peers --bench compare`.
//!
//! Workloads: one session; 64 sessions over one connection (with RSS
//! growth); 2 and 4 parallel peers with one session each; 1-byte echo
//! (p50, p99); sequential set-ups; idle sessions (live heap).
//!
//! `astral bench` (crate `astral-node-cli`) runs the library's contenders:
//!
//! ```no_run
//! use astral_bench::harness::{self, Options};
//! let opts = Options { bytes: 64 << 20, reps: 1, ..Options::default() };
//! let rt = harness::runtime()?;
//! let contenders = {
//!     let _in_runtime = rt.enter();
//!     harness::library_contenders(&opts)?
//! };
//! let report = harness::run(&opts, &contenders, &rt, &mut |step| {
//!     if let Some(Ok(line)) = &step.outcome {
//!         eprintln!("{} {:?}: {line}", step.contender, step.workload);
//!     }
//! });
//! print!("{}", report.table());
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```
#![warn(missing_docs)]

pub mod astral;
pub mod contender;
pub mod harness;
pub mod heap;
pub mod machine;
pub mod snow;
pub mod sys;
pub mod table;
pub mod tcp;

pub use harness::{Options, Report, Workload};

/// A record cipher, the same on every contender of a row set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// ChaCha20-Poly1305: astral's portable suite, the default everywhere.
    ChaChaPoly,
    /// AES-256-GCM (quinn: TLS_AES_256_GCM_SHA384).
    AesGcm,
}

impl Cipher {
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaChaPoly",
            Cipher::AesGcm => "AES-GCM",
        }
    }

    /// Short key (JSON).
    pub fn key(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "chacha20-poly1305",
            Cipher::AesGcm => "aes-256-gcm",
        }
    }
}
