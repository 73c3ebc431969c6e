//! Failover on emulated paths (issue 12), as behaviour: when the path a
//! session sends on goes silent both ways (no FIN, no RST), the session's
//! data resumes on the healthy second path long before `dead_timeout`,
//! and every byte arrives exactly once and in order, also when the
//! blackhole later lifts and the held (stale) bytes are delivered.
//! (The failover times themselves are `astral-wan-failover`'s figures.)

use std::time::Duration;

use astral_harness::failover::{self, FailoverConfig};
use astral_harness::units::Rate;

/// 50 ms paths, writer paced at 1 MB/s, blackhole 2 s after the first byte.
fn config() -> FailoverConfig {
    FailoverConfig {
        pace: Some(Rate::from_bits_per_sec(8_000_000).expect("nonzero")),
        blackhole_at: Duration::from_secs(2),
        after: Duration::from_secs(4),
        ..FailoverConfig::new(Duration::from_millis(50))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_carrying_path_fails_over_before_dead_timeout_with_every_byte_once() {
    let r = failover::run(&config()).await.unwrap();
    println!("{r:#?}");
    let after_ms = config().after.as_secs_f64() * 1e3;
    assert!(
        after_ms < r.dead_timeout_s * 1e3,
        "the run must end before dead_timeout"
    );
    // Data resumed within the run, so before the silent stream's
    // dead_timeout: the failover, not the stream's death, moved it.
    let resumed = r.resumed_ms.expect("data resumed after the blackhole");
    assert!(resumed > 0.0 && resumed < after_ms, "{r:#?}");
    assert!(
        r.stall_ms.expect("a stall") >= 50.0,
        "the blackhole stalled the reader: {r:#?}"
    );
    let suspect = r.suspect_ms.expect("A suspected the blackholed stream");
    assert!(suspect > 0.0 && suspect <= resumed, "{r:#?}");
    assert!(
        !r.events
            .iter()
            .any(|e| e.what == "stream-down" && e.at_ms >= 0.0),
        "no stream died (the blackholed one has until dead_timeout): {r:#?}"
    );
    assert_ne!(r.path_at_end, r.blackholed_path, "{r:#?}");
    assert_ne!(r.path_at_end, 0, "{r:#?}");
    // Bytes exact: B read what A wrote, each once, in order, to the end.
    assert!(r.pattern_ok && r.eof, "{r:#?}");
    assert_eq!(r.bytes_read, r.bytes_written, "{r:#?}");
    assert_eq!(r.close_reason.as_deref(), Some("Graceful"), "{r:#?}");
    assert!(r.exact);
    // About 1 MB/s for 6 s (less the stall): the transfer really ran.
    assert!(r.bytes_read > 3_000_000, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifted_blackhole_delivers_its_stale_bytes_without_duplicate_or_loss() {
    let cfg = FailoverConfig {
        lift_after: Some(Duration::from_secs(3)),
        after: Duration::from_secs(3),
        ..config()
    };
    let r = failover::run(&cfg).await.unwrap();
    println!("{r:#?}");
    let lifted = r.lifted_at_ms.expect("lifted");
    assert!(
        r.resumed_ms.expect("data resumed") < lifted,
        "resumed before the lift: {r:#?}"
    );
    // The blackholed stream came back (it was heard again) instead of dying.
    assert!(
        r.events.iter().any(|e| e.node == "a"
            && e.what == "healthy"
            && e.detail == format!("path {}", r.blackholed_path)
            && e.at_ms >= lifted),
        "{r:#?}"
    );
    assert!(!r.events.iter().any(|e| e.what == "stream-down"), "{r:#?}");
    assert!(r.pattern_ok && r.eof, "{r:#?}");
    assert_eq!(r.bytes_read, r.bytes_written, "{r:#?}");
    assert_eq!(r.close_reason.as_deref(), Some("Graceful"), "{r:#?}");
    assert!(r.exact);
}
