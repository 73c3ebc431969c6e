//! Migration and recovery costs, measured in the deterministic simulator
//! (virtual time, so the figures are exact and repeatable), plus the wall
//! time the engines spent. Run: `cargo bench -p astral-sim --bench sim`.

use std::time::{Duration, Instant};

use astral_core::{Config, Event, SessionState};
use astral_sim::{Action, FlowSpec, LinkConfig, Sim};

const RTT_MS: f64 = 20.0;

fn link() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(10),
        bandwidth: Some(100_000_000),
        buffer: 256 * 1024,
        ..LinkConfig::default()
    }
}

fn ms(t: astral_core::Timestamp) -> f64 {
    t.as_nanos() as f64 / 1e6
}

/// Migrating `n` idle sessions off one stream: virtual time until every
/// opener-side `Migrated` event, and the engines' wall time for it.
fn migrate_many(n: usize) -> (f64, Duration) {
    let config = Config {
        max_pending_queries: n + 1,
        max_sessions_per_peer: n + 1,
        max_sessions: n + 1,
        ..Config::default()
    };
    let mut sim = Sim::new(1, 2, config);
    sim.manual_queries = true;
    sim.link(0, 1, link());
    sim.link(0, 1, link());
    let peer = sim.id(1);
    let ids: Vec<_> = (0..n)
        .map(|_| sim.nodes[0].open_session(sim.now, peer, "idle").unwrap())
        .collect();
    sim.run_for(Duration::from_millis(100));
    for (_, node, e) in sim.log.clone() {
        if let (1, Event::Query { session, .. }) = (node, e) {
            sim.nodes[1].accept_query(sim.now, session).unwrap();
        }
    }
    sim.run_for(Duration::from_millis(100));
    let target = sim.links[1].sa;
    let start = sim.now;
    let before = sim.log.len();
    let wall = Instant::now();
    for id in &ids {
        sim.nodes[0].migrate(start, *id, target).unwrap();
    }
    let mut done_at = start;
    let mut done = 0;
    while done < n {
        if !sim.step(start + Duration::from_secs(10)) {
            break;
        }
        for (t, node, e) in &sim.log[before..] {
            if *node == 0 && matches!(e, Event::Migrated { .. }) {
                done_at = done_at.max(*t);
            }
        }
        done = sim.log[before..]
            .iter()
            .filter(|(_, nd, e)| *nd == 0 && matches!(e, Event::Migrated { .. }))
            .count();
    }
    let wall = wall.elapsed();
    assert_eq!(done, n);
    assert!(ids
        .iter()
        .all(|id| sim.nodes[0].session_info(*id).unwrap().state == SessionState::Open));
    (ms(done_at) - ms(start), wall)
}

/// Goodput of one bulk session, with an action every `every` (or none).
fn bulk(bytes: u64, every: Option<Duration>, kill: bool) -> (f64, u64, u64) {
    let config = Config {
        recv_window: 4 << 20,
        send_buffer: 4 << 20,
        keepalive_interval: Duration::from_millis(500),
        dead_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut sim = Sim::new(2, 2, config);
    sim.keep_log = true;
    let lk = LinkConfig {
        latency: Duration::from_millis(1),
        bandwidth: Some(1_000_000_000),
        buffer: 1 << 20,
        ..LinkConfig::default()
    };
    sim.link(0, 1, lk.clone());
    sim.link(0, 1, lk.clone());
    sim.open_flows(&[FlowSpec {
        max_write: 256 * 1024,
        max_read: 256 * 1024,
        ..FlowSpec::new(0, 1, bytes, 0)
    }]);
    if let Some(every) = every {
        // Schedule enough actions to cover the run (at 1 GB/s, bytes/1e9 s).
        let horizon = Duration::from_secs_f64(bytes as f64 / 5e8 + 1.0);
        let mut t = every;
        let mut i = 0usize;
        while t < horizon {
            if kill {
                // Kill the older link and bring a new one up.
                sim.at(Sim::t(t), Action::Kill(i));
                sim.at(Sim::t(t), Action::Connect(0, 1, lk.clone()));
            } else {
                sim.at(
                    Sim::t(t),
                    Action::Migrate {
                        flow: 0,
                        responder: i % 2 == 1,
                        link: (i + 1) % 2,
                    },
                );
            }
            t += every;
            i += 1;
        }
    }
    let start = sim.now;
    assert!(sim.run_until_done(Duration::from_secs(600)) || sim.flows_done());
    sim.check().expect("oracle");
    let end = sim
        .log
        .iter()
        .rev()
        .find(|(_, _, e)| matches!(e, Event::SessionClosed { .. }))
        .map(|(t, _, _)| *t)
        .unwrap_or(sim.now);
    let secs = (ms(end) - ms(start)) / 1e3;
    let migrations = sim
        .log
        .iter()
        .filter(|(_, n, e)| *n == 0 && matches!(e, Event::Migrated { .. }))
        .count() as u64;
    let recoveries = sim
        .log
        .iter()
        .filter(|(_, n, e)| *n == 0 && matches!(e, Event::Recovered { .. }))
        .count() as u64;
    (bytes as f64 / secs / 1e6, migrations, recoveries)
}

/// Recovery after a kill: transport close (immediate detection) and a
/// half-open stream (detected by the dead-stream timeout).
fn recovery_time(half_open: bool) -> (f64, u64) {
    let config = Config {
        keepalive_interval: Duration::from_millis(250),
        dead_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let mut sim = Sim::new(3, 2, config);
    sim.link(0, 1, link());
    sim.link(0, 1, link());
    sim.open_flows(&[FlowSpec::new(0, 1, 50_000_000, 50_000_000)]);
    let kill_at = Sim::t(Duration::from_millis(500));
    if half_open {
        sim.at(kill_at, Action::KillOneSide(0, true));
    } else {
        sim.at(kill_at, Action::Kill(0));
    }
    assert!(sim.run_until_done(Duration::from_secs(120)));
    sim.check().expect("oracle");
    let rec: Vec<_> = sim
        .log
        .iter()
        .filter_map(|(t, n, e)| match e {
            Event::Recovered { resent_bytes, .. } => Some((*t, *n, *resent_bytes)),
            _ => None,
        })
        .collect();
    let last = rec.iter().map(|r| r.0).max().expect("recovered");
    let resent: u64 = rec.iter().map(|r| r.2).sum();
    (ms(last) - ms(kill_at), resent)
}

/// Largest retention (bytes written but not credited) seen during a bulk
/// transfer, against the window.
fn retention(window: u32) -> (u64, u64, u64) {
    // A fixed window (no autotuning): the bound is against the window the
    // receiver really granted.
    let config = Config {
        recv_window: window,
        max_recv_window: window,
        send_buffer: window,
        ..Config::default()
    };
    let mut sim = Sim::new(4, 2, config);
    sim.link(0, 1, link());
    sim.open_flows(&[FlowSpec::new(0, 1, 20_000_000, 0)]);
    let (mut max, mut flight) = (0, 0);
    let end = sim.now + Duration::from_secs(60);
    while sim.step(end) {
        for s in sim.nodes[0].sessions() {
            max = max.max(s.stats.bytes_retained);
            flight = flight.max(s.stats.bytes_in_flight);
        }
    }
    sim.check().expect("oracle");
    (flight, max, u64::from(window))
}

fn main() {
    println!("astral migration and recovery (simulated links, RTT {RTT_MS} ms unless noted)");
    for n in [1usize, 10_000] {
        let (t, wall) = migrate_many(n);
        println!(
            "  migrate {n:>6} session(s)      : {t:7.2} ms virtual = {:.2} RTT; engine wall {:.1} ms",
            t / RTT_MS,
            wall.as_secs_f64() * 1e3
        );
    }
    let bytes: u64 = std::env::var("ASTRAL_SIM_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000_000);
    let (base, _, _) = bulk(bytes, None, false);
    let (mig, m, _) = bulk(bytes, Some(Duration::from_millis(10)), false);
    println!("  bulk goodput, no migration  : {base:8.1} MB/s (1 GB/s links, 1 ms latency, 4 MiB window)");
    println!(
        "  bulk, migration every 10 ms : {mig:8.1} MB/s ({m} migrations) = {:.1}% of no migration",
        100.0 * mig / base
    );
    let (killed, _, r) = bulk(bytes, Some(Duration::from_millis(100)), true);
    println!(
        "  bulk, stream killed /100 ms : {killed:8.1} MB/s ({r} recoveries) = {:.1}% of no kill",
        100.0 * killed / base
    );
    let (t, resent) = recovery_time(false);
    println!(
        "  recovery after transport close: {t:6.1} ms = {:.2} RTT (resent {resent} bytes)",
        t / RTT_MS
    );
    let (t, resent) = recovery_time(true);
    println!(
        "  recovery, half-open stream    : {t:6.1} ms = {:.2} RTT (the stream turns suspect after a probe goes unanswered, long before dead_timeout 1 s; resent {resent} bytes)",
        t / RTT_MS
    );
    for w in [65_536u32, 262_144, 1 << 20] {
        let (flight, max, window) = retention(w);
        println!(
            "  window {window:>8} B: max in flight (retained for retransmission) {flight} B = {:.2}× window; with unsent buffer {max} B",
            flight as f64 / window as f64
        );
    }
}
