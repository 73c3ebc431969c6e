//! Goodput of one session against the round-trip time, in the
//! deterministic simulator (virtual time: the figures are exact and
//! repeatable), with a fixed 256 KiB window (the engine before issue 11)
//! and with auto-tuned windows (the defaults). Run:
//! `cargo bench -p astral-sim --bench flow` (`ASTRAL_FLOW_BYTES` sets the
//! transfer size, default 64 MiB; `ASTRAL_FLOW_GBIT=1` adds 1 Gbit/s;
//! `ASTRAL_FLOW_MAX_WINDOW` overrides the tuned `max_recv_window`).
//!
//! The link models a path whose transport is not the limit: its send
//! buffer (bytes in flight per direction) is twice the bandwidth-delay
//! product, as a Linux TCP connection's autotuned buffer would be. What
//! limits the session is its credit window.

use std::time::Duration;

use astral_core::Config;
use astral_sim::{FlowSpec, LinkConfig, Sim};

/// What one run measured.
struct Run {
    /// Goodput over the whole transfer (first byte to last), Mbit/s.
    whole: f64,
    /// Goodput from 3 s after the first byte to the last, Mbit/s.
    after_3s: Option<f64>,
    /// Time from the first byte until a 100 ms interval first moved 90 %
    /// of the link rate.
    reached: Option<f64>,
    /// Largest window the receiver granted.
    window: u32,
}

fn run(rate_bps: u64, rtt: Duration, bytes: u64, tuned: bool) -> Run {
    let fixed = 256 * 1024;
    let config = if tuned {
        let mut c = Config::default();
        if let Some(w) = std::env::var("ASTRAL_FLOW_MAX_WINDOW")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            c.max_recv_window = w;
        }
        c
    } else {
        Config {
            recv_window: fixed,
            max_recv_window: fixed,
            send_buffer: fixed,
            ..Config::default()
        }
    };
    let rate = rate_bps / 8;
    let bdp = (rate as f64 * rtt.as_secs_f64()) as usize;
    let mut sim = Sim::new(11, 2, config);
    sim.link(
        0,
        1,
        LinkConfig {
            latency: rtt / 2,
            bandwidth: Some(rate),
            buffer: 2 * bdp + (1 << 20),
            ..LinkConfig::default()
        },
    );
    sim.open_flows(&[FlowSpec {
        max_write: 256 * 1024,
        max_read: 256 * 1024,
        ..FlowSpec::new(0, 1, bytes, 0)
    }]);
    let end = Sim::t(Duration::from_secs(600));
    let mut first: Option<f64> = None;
    let mut last = 0.0;
    let mut window_at = (0.0, 0u64);
    let mut reached = None;
    let mut max_window = 0;
    let mut at_3s: Option<(f64, u64)> = None;
    let secs = |sim: &Sim| sim.now.as_nanos() as f64 / 1e9;
    while sim.flows[0].up.read < bytes && sim.step(end) {
        let read = sim.flows[0].up.read;
        let t = secs(&sim);
        if read > 0 && first.is_none() {
            first = Some(t);
            window_at = (t, read);
        }
        if let Some(sid) = sim.flows[0].at_acceptor {
            if let Some(info) = sim.nodes[1].session_info(sid) {
                max_window = max_window.max(info.stats.local_window);
            }
        }
        if let (None, Some(f)) = (at_3s, first) {
            if t - f >= 3.0 {
                at_3s = Some((t, read));
            }
        }
        if t - window_at.0 >= 0.1 {
            let r = (read - window_at.1) as f64 / (t - window_at.0);
            if reached.is_none() && r >= 0.9 * rate as f64 {
                reached = Some(t - first.unwrap_or(t));
            }
            window_at = (t, read);
        }
        last = t;
    }
    assert_eq!(sim.flows[0].up.read, bytes, "transfer incomplete");
    let took = last - first.unwrap_or(0.0);
    let mbit = |b: u64, s: f64| b as f64 * 8.0 / s / 1e6;
    Run {
        whole: mbit(bytes, took),
        after_3s: at_3s
            .filter(|(t, _)| last - t > 0.5)
            .map(|(t, r)| mbit(bytes - r, last - t)),
        reached,
        window: max_window,
    }
}

fn main() {
    let bytes: u64 = std::env::var("ASTRAL_FLOW_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 << 20);
    let mut rates = vec![100_000_000u64];
    if std::env::var_os("ASTRAL_FLOW_GBIT").is_some() {
        rates.push(1_000_000_000);
    }
    println!(
        "one session, {} MiB, simulated link (rate, RTT), goodput from the first byte",
        bytes >> 20
    );
    println!(
        "{:>9} {:>6} | {:>22} | {:>22} {:>16} {:>10} {:>10}",
        "link",
        "RTT",
        "fixed 256 KiB (Mbit/s)",
        "auto-tuned (Mbit/s)",
        "after 3 s",
        "90% after",
        "window"
    );
    for rate in rates {
        for rtt_ms in [20u64, 50, 100] {
            let rtt = Duration::from_millis(rtt_ms);
            let fixed = run(rate, rtt, bytes, false).whole;
            let t = run(rate, rtt, bytes, true);
            let link = rate as f64 / 1e6;
            println!(
                "{:>5} Mb/s {:>3} ms | {:>8.1} = {:>5.1}% link | {:>8.1} = {:>5.1}% link {:>16} {:>10} {:>6} KiB",
                link,
                rtt_ms,
                fixed,
                100.0 * fixed / link,
                t.whole,
                100.0 * t.whole / link,
                t.after_3s.map_or("(done)".into(), |g| format!(
                    "{g:.1} = {:.1}%",
                    100.0 * g / link
                )),
                t.reached.map_or("never".into(), |s| format!("{s:.2} s")),
                t.window >> 10,
            );
        }
    }
}
