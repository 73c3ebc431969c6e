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

/// The placement benchmark's machinery: a short run of the faster-path
/// scenario (with jitter on both paths) applies its change, B counts the
/// bytes, the slices add up to the total, and every sample has the session
/// on one of the two paths.
/// (Whether and when it moves is the benchmark's figure, not asserted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_bench_runs_and_accounts_for_its_bytes() {
    use astral_harness::placement::{self, PlacementConfig, Scenario};
    let cfg = PlacementConfig {
        duration: Duration::from_secs(4),
        change_at: Duration::from_secs(2),
        jitter: Duration::from_millis(5),
        ..PlacementConfig::new(Scenario::Faster)
    };
    let r = placement::run(&cfg).await.unwrap();
    assert_eq!(r.jitter_ms, 5.0);
    assert_eq!(
        r.change.as_ref().map(|c| c.0.as_str()),
        Some("path 2: delay 5ms")
    );
    assert!(r.bytes > 0, "{r:?}");
    // 20 Mbit/s caps: never above two paths' worth (timer rounding aside).
    assert!(r.goodput_mbit < 42.0, "{r:?}");
    // Samples every 100 ms from 0.1 s to 3.9 s: seven 0.5 s slices and a
    // last one of 0.4 s (weighting it 0.5 s made the sum depend on the
    // rate's shape in the last 0.4 s). The total also counts the bytes
    // read after the last sample: at most 0.1 s at the cap.
    let samples = (cfg.duration.as_millis() / 100) as usize - 1;
    let last = match samples % 5 {
        0 => 5,
        k => k,
    };
    assert_eq!(r.slices_mbit.len(), samples.div_ceil(5), "{r:?}");
    let n = r.slices_mbit.len();
    let sliced: f64 = r
        .slices_mbit
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let secs = if i + 1 == n { last as f64 * 0.1 } else { 0.5 };
            m * 1e6 / 8.0 * secs
        })
        .sum();
    let tail = r.rate_mbit * 1e6 / 8.0 * 0.1;
    assert!(
        sliced <= r.bytes as f64 * 1.02 + 1.0 && r.bytes as f64 <= sliced * 1.02 + tail,
        "{sliced} vs {}",
        r.bytes
    );
    let on = r.time_on_path_s[0] + r.time_on_path_s[1];
    assert!((3.5..=4.05).contains(&on), "{r:?}");
    assert_eq!(r.moves_a, r.moves.iter().filter(|m| m.node == "a").count());
}
