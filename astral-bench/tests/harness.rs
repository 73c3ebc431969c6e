//! A small run of the library's contenders end to end: every workload
//! yields a sample on every contender that runs it, the ratios are read
//! against the same-cipher snow baseline, and the report names the load,
//! the CPUs and the commit.

use astral_bench::harness::{self, Options, Workload};
use astral_bench::Cipher;

fn small() -> Options {
    Options {
        bytes: 2 << 20,
        sessions: 8,
        parallel: vec![2],
        rounds: 50,
        handshakes: 3,
        reps: 2,
        ..Options::default()
    }
}

#[test]
fn small_run_measures_every_contender_like_with_like() {
    let opts = small();
    let rt = harness::runtime().unwrap();
    let contenders = {
        let _in_runtime = rt.enter();
        harness::library_contenders(&opts).unwrap()
    };
    let mut started = 0;
    let mut finished = 0;
    let report = harness::run(&opts, &contenders, &rt, &mut |step| match step.outcome {
        None => started += 1,
        Some(_) => finished += 1,
    });
    let workloads = [
        Workload::Bulk1,
        Workload::BulkN(8),
        Workload::Parallel(2),
        Workload::Echo,
        Workload::Handshake,
    ];
    assert_eq!(report.workloads, workloads);
    let steps = opts.reps * workloads.len() * contenders.len();
    assert_eq!((started, finished), (steps, steps));
    for (wi, cells) in report.cells.iter().enumerate() {
        for (ci, cell) in cells.iter().enumerate() {
            assert!(
                cell.errors.is_empty(),
                "{}: {:?}",
                report.names[ci],
                cell.errors
            );
            assert_eq!(cell.samples.len(), opts.reps, "{:?}", report.workloads[wi]);
            assert!(cell.samples.iter().all(|s| s.primary > 0.0));
        }
    }
    // Same cipher on every contender; astral's own AES-GCM row only where
    // the CPU has AES, and then without a snow ratio (no AES snow ran).
    let snow = report.names.iter().position(|n| n == "snow-tcp").unwrap();
    let astral = report
        .names
        .iter()
        .position(|n| n == "astral-tokio")
        .unwrap();
    assert_eq!(report.ciphers[snow], Some(Cipher::ChaChaPoly));
    assert_eq!(report.ciphers[astral], Some(Cipher::ChaChaPoly));
    assert_eq!(report.vs_baseline(Workload::Bulk1, snow), Some(1.0));
    assert!(report.vs_baseline(Workload::Bulk1, astral).unwrap() > 0.0);
    assert!(report
        .vs_one_session(Workload::Parallel(2), astral)
        .is_some());
    assert!(report.vs_one_session(Workload::Bulk1, astral).is_none());
    if let Some(aes) = report.names.iter().position(|n| n == "astral-tokio-aes") {
        assert!(astral_bench::machine::hardware_aes());
        assert_eq!(report.vs_baseline(Workload::Bulk1, aes), None);
    }

    let table = report.table();
    for want in [
        "load average (1/5/15 min)",
        "commit: ",
        "CPU",
        "2 repetitions interleaved",
        "MiB/s",
    ] {
        assert!(table.contains(want), "table lacks {want:?}:\n{table}");
    }
    assert!(
        !table.contains("MB/s") && !table.contains("target"),
        "{table}"
    );
    let json = report.to_json();
    assert!(json["machine"]["commit"].is_string());
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(json["results"].as_array().unwrap().len() == workloads.len() * contenders.len());
}

#[test]
fn aes_asked_gives_every_contender_an_aes_row() {
    let opts = Options {
        aes: true,
        ..small()
    };
    let rt = harness::runtime().unwrap();
    let _in_runtime = rt.enter();
    let names: Vec<String> = harness::library_contenders(&opts)
        .unwrap()
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(
        names,
        [
            "tcp",
            "snow-tcp",
            "astral-tokio",
            "snow-tcp-aes",
            "astral-tokio-aes"
        ]
    );
}

#[test]
fn idle_without_the_counting_allocator_is_an_error_not_zeros() {
    assert!(!astral_bench::heap::active());
    let opts = Options {
        idle: vec![10],
        parallel: vec![],
        sessions: 1,
        handshakes: 0,
        reps: 1,
        ..small()
    };
    let rt = harness::runtime().unwrap();
    let contenders = {
        let _in_runtime = rt.enter();
        vec![astral_bench::contender::streamed(
            astral_bench::astral::AstralTokio::new(opts.window, Cipher::ChaChaPoly),
        )]
    };
    let report = harness::run(&opts, &contenders, &rt, &mut |_| {});
    let idle = report
        .workloads
        .iter()
        .position(|w| *w == Workload::Idle(10))
        .unwrap();
    assert!(report.cells[idle][0].samples.is_empty());
    assert!(report.cells[idle][0].errors[0].contains("Counting"));
}
