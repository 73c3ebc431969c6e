//! The fuzz harnesses, run over pseudo-random inputs so CI exercises them
//! even without a nightly toolchain; every crash input a fuzzer found
//! (`fuzz/regressions/<target>/`) replayed; and the seed corpus checked
//! against its generator.

use std::cell::RefCell;
use std::path::PathBuf;

use astral_sim::explore::KnownDefects;
use astral_sim::fuzzing::schedule::{self, Target};
use astral_sim::fuzzing::stream_input::run_stream_input;
use astral_sim::fuzzing::{corpus, run_ordering};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Files in `fuzz/<dir>/<target>/`, sorted (missing directory: none).
fn inputs(dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("readable input"))
        })
        .collect();
    files.sort();
    files
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(300), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn ordering_two_streams(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(run_ordering(&data, 2, false), Ok(()));
    }

    #[test]
    fn ordering_three_streams_with_kills(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(run_ordering(&data, 3, true), Ok(()));
    }

    #[test]
    fn stream_input_output_stays_well_formed(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert!(run_stream_input(&data).is_ok());
    }
}

/// Each schedule target over random inputs of up to 4 KiB, with the known
/// defects left out (as the CI fuzz runs do): no violation, and the
/// schedules reach what the targets are for (counted and asserted).
#[test]
fn schedule_targets_over_random_inputs() {
    let known = KnownDefects::current_core();
    for target in Target::ALL {
        let mut runner = TestRunner::new(RunnerConfig {
            cases: cases(150),
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let total = RefCell::new((0usize, schedule::RunStats::default()));
        let strategy = prop::collection::vec(any::<u8>(), 64..corpus::MAX_LEN);
        let result = runner.run(&strategy, |data| {
            let stats = schedule::run(target, &data, known)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", target.name())))?;
            let (runs, total) = &mut *total.borrow_mut();
            *runs += 1;
            total.applied += stats.applied;
            total.excluded += stats.excluded;
            total.refused += stats.refused;
            let (t, c) = (&mut total.counters, stats.counters);
            t.migrated += c.migrated;
            t.recovered += c.recovered;
            t.drained += c.drained;
            t.connected += c.connected;
            t.graceful += c.graceful;
            t.other_close += c.other_close;
            t.final_counts_announced += c.final_counts_announced;
            Ok(())
        });
        let (runs, total) = total.into_inner();
        let c = &total.counters;
        eprintln!(
            "{}: {runs} schedules, {} operations applied ({} excluded as known defects, {} refused); migrated {}, recovered {}, drained {}, streams connected {}, sessions closed gracefully {} and otherwise {}, final counts re-announced {}",
            target.name(),
            total.applied,
            total.excluded,
            total.refused,
            c.migrated,
            c.recovered,
            c.drained,
            c.connected,
            c.graceful,
            c.other_close,
            c.final_counts_announced
        );
        if let Err(e) = result {
            panic!("{e}");
        }
        // Coverage: the schedules do what the target is for.
        assert!(
            total.applied > runs * 20,
            "{}: few operations applied",
            target.name()
        );
        assert!(
            c.migrated > 0 && c.graceful > 0,
            "{}: no migration or graceful close",
            target.name()
        );
        if target != Target::Migration {
            assert!(
                c.recovered > 0 && c.connected > 0,
                "{}: no recovery or new stream",
                target.name()
            );
        }
        if target == Target::Drain {
            assert!(c.drained > 0, "drain_ordering: no completed drain");
        }
    }
}

/// Every crash input kept under `fuzz/regressions/<target>/` passes, except
/// those named `known-*` (crashes on known defects of the current core; none
/// at present: the last three were oracle artefacts, see docs/MIGRATION.md,
/// "What recovery_timeout promises"). Trace one with `render_input`.
#[test]
fn fuzz_regressions_pass() {
    let mut failures = Vec::new();
    for target in Target::ALL {
        for (name, data) in inputs("regressions", target.name()) {
            if name.starts_with("known-") {
                continue;
            }
            if let Err(e) = schedule::run(target, &data, KnownDefects::none()) {
                failures.push(format!("{}/{name}: {e}", target.name()));
            }
        }
    }
    for (name, data) in inputs("regressions", "stream_input") {
        if let Err(e) = run_stream_input(&data) {
            failures.push(format!("stream_input/{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Prints the trace of one fuzz input (`schedule::render`): what a crash
/// report needs. `ASTRAL_FUZZ_INPUT=fuzz/regressions/drain_ordering/NAME
/// cargo test -p astral-sim --test fuzz_harness render_input -- --ignored
/// --nocapture` (the target is the input's directory name).
#[test]
#[ignore = "a tool: set ASTRAL_FUZZ_INPUT"]
fn render_input() {
    let Some(path) = std::env::var_os("ASTRAL_FUZZ_INPUT").map(PathBuf::from) else {
        panic!("set ASTRAL_FUZZ_INPUT to an input file");
    };
    let path = if path.is_absolute() {
        path
    } else {
        fuzz_dir().join("..").join(path)
    };
    let dir = path
        .parent()
        .and_then(|d| d.file_name())
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = Target::ALL
        .into_iter()
        .find(|t| t.name() == dir)
        .unwrap_or_else(|| panic!("{dir}: not an ordering target"));
    let data = std::fs::read(&path).expect("readable input");
    println!("{}", schedule::render(target, &data, KnownDefects::none()));
}

/// The committed seed corpus is what `corpus::seeds` generates
/// (`ASTRAL_WRITE_CORPUS=1` rewrites it).
#[test]
fn seed_corpus_is_generated() {
    let targets = Target::ALL
        .iter()
        .map(|t| t.name())
        .chain(["stream_input", "frame_decode"]);
    let write = std::env::var_os("ASTRAL_WRITE_CORPUS").is_some();
    for target in targets {
        let want = corpus::seeds(target);
        if write {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).expect("corpus directory");
            for (name, bytes) in &want {
                std::fs::write(dir.join(name), bytes).expect("seed written");
            }
        }
        let have: Vec<_> = inputs("corpus", target)
            .into_iter()
            .filter(|(name, _)| name.starts_with("seed-"))
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(
            have, want,
            "fuzz/corpus/{target}: run with ASTRAL_WRITE_CORPUS=1"
        );
    }
}

/// Regression: a schedule (found by the property test) where the opener
/// closed gracefully but the acceptor ended "peer unreachable".
#[test]
fn regression_three_streams_graceful_vs_unreachable() {
    let data: &[u8] = &[
        0, 193, 86, 0, 0, 0, 0, 246, 21, 0, 0, 0, 0, 39, 0, 0, 0, 0, 0, 47, 215, 7, 0, 39, 0, 103,
        0, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 44, 0, 44, 7, 14, 0, 39, 54, 139, 0, 23,
        39, 18, 35, 0, 7, 18, 71, 186, 0, 30, 0, 0, 72, 0, 0, 0, 7, 3, 134, 117, 0, 0, 0, 0, 39,
        159, 119, 0, 174, 128, 0, 0, 151, 112, 7, 0, 245, 163, 61, 147, 149, 19, 0, 5, 231, 110,
        71, 15, 201, 111, 60, 92, 33, 125, 50, 142, 10, 121, 226, 250, 152, 191, 255, 28, 87, 55,
        54, 78, 212, 227, 176, 103, 138, 226, 126, 232, 200, 225, 246, 65, 24, 78, 214, 238, 166,
        124, 160, 194, 26, 16, 154, 218, 247, 47, 87, 182, 64, 141, 157, 140, 77, 77, 188, 176, 76,
        16, 223, 171, 170, 28, 60, 99, 32, 195, 18, 20, 130, 137, 179, 173, 229, 89, 33, 207, 133,
        20, 178, 132, 92, 199, 158, 52, 255, 220, 36, 161, 107, 97, 138, 150, 8, 184, 228, 6, 91,
        223, 163, 16, 152, 185, 41, 235, 135, 137, 21, 15, 170, 212, 248, 211, 245, 73, 113, 243,
        228, 154, 85, 58, 116, 110, 69, 99, 43, 116, 84, 50, 85, 108, 192, 140, 206, 134,
    ];
    assert_eq!(run_ordering(data, 3, true), Ok(()));
}

/// Regression (fuzz finding, `migration_ordering`): a schedule that holds
/// back deliveries while time passes lets every stream die of silence; with
/// a stream's close still in flight the harness used to give the sessions no
/// path, so they ended unreachable. The harness now always heals with a new
/// stream, and the sessions must then complete exactly.
#[test]
fn regression_all_streams_die_of_silence() {
    let data: &[u8] = &[
        42, 191, 4, 120, 36, 22, 137, 202, 39, 175, 187, 150, 208, 57, 153, 247, 57, 119, 223, 91,
        71, 148, 84, 248, 71, 216, 232, 242, 239, 193, 214, 200, 111, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 35, 45, 45, 45, 71, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45,
    ];
    assert_eq!(run_ordering(data, 2, false), Ok(()));
}

/// Regression (fuzz finding, `migration_ordering`): the opener never saw
/// the credit of its Fin.
#[test]
fn regression_opener_never_closes() {
    let data: &[u8] = &[
        1, 0, 0, 0, 39, 0, 1, 0, 0, 1, 0, 100, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 240, 255, 255, 255, 45, 45, 45, 45, 38, 45, 45, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 38, 45, 45, 45, 45, 45,
        45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 0, 1, 1, 255, 255, 255, 1, 254, 254, 0, 90, 0, 254,
        85, 0, 153, 0, 0, 154, 164, 0, 1, 1, 255, 255, 255, 255, 164, 1, 170, 0, 164, 164, 255,
        164, 78, 10, 152, 164, 164, 164, 164, 164, 164,
    ];
    assert_eq!(run_ordering(data, 2, false), Ok(()));
}
