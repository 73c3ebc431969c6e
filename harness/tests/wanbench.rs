//! The WAN benchmark's machinery works end to end at a tiny size: both
//! contenders move every byte through the forwarder and the row adds up.
//! (The figures themselves come from `astral-wan-bench`, not from tests.)

use std::time::Duration;

use astral_harness::units::Rate;
use astral_harness::wanbench::{self, BenchConfig, Via};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_bench_runs_both_contenders() {
    let cfg = BenchConfig {
        via: Via::Forwarder,
        rtts: vec![Duration::from_millis(10)],
        rate: Some(Rate::mbit(200)),
        queue: None,
        bytes: 1 << 20,
        runs: 2,
        self_exe: std::env::current_exe().unwrap(),
    };
    let rows = wanbench::run_forwarder(&cfg).await.unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.tcp_runs.len(), r.astral_runs.len()), (2, 2));
    // Nobody beats the emulated rate (a few % for timer rounding).
    for m in r.tcp_runs.iter().chain(&r.astral_runs) {
        assert!(*m > 0.0 && *m < 210.0, "{r:?}");
    }
    assert!((r.ratio - r.astral_mbit / r.tcp_mbit).abs() < 1e-9);
    assert_eq!(r.queue, 250_000, "one BDP: 200 Mbit/s × 10 ms");
    let t = wanbench::table(&rows);
    assert!(t.contains("forwarder") && t.contains("10ms"), "{t}");
}
