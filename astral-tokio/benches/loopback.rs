//! Loopback benchmark: raw TCP, plain snow over TCP with the same cipher
//! (Noise_XK_25519_ChaChaPoly_BLAKE2s, 65,519-byte records, no
//! multiplexing) and one astral session over one stream, measured in the
//! same run, interleaved. The measuring code is `astral_tokio::bench`,
//! shared with `astral bench`.
//!
//! `cargo bench -p astral-tokio --bench loopback`; environment:
//! `ASTRAL_BENCH_BYTES` (default 1 GiB), `ASTRAL_BENCH_ECHO` (round trips,
//! default 20,000), `ASTRAL_BENCH_ROUNDS` (repetitions, default 3; medians
//! and min–max are reported), `ASTRAL_BENCH_JSON=1` (print the JSON report
//! too).

use astral_tokio::bench::{self, Options};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let d = Options::default();
    let opts = if quick {
        Options {
            bytes: 8 << 20,
            rounds: 500,
            reps: 1,
        }
    } else {
        Options {
            bytes: env("ASTRAL_BENCH_BYTES", d.bytes),
            rounds: env("ASTRAL_BENCH_ECHO", d.rounds as u64) as usize,
            reps: env("ASTRAL_BENCH_ROUNDS", d.reps as u64).max(1) as usize,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = rt
        .block_on(bench::run(&opts, |step| eprintln!("{step}")))
        .unwrap_or_else(|e| panic!("benchmark failed: {e}"));
    print!("{}", report.table());
    if std::env::var_os("ASTRAL_BENCH_JSON").is_some() {
        println!("{:#}", report.to_json());
    }
}
