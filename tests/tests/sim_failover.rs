//! Failover (issue 12; docs/MIGRATION.md, "Failover"): suspect streams
//! measured on the simulator's links, in exact virtual time.
//!
//! * a blackholed carrying path (silent, no reset) with a healthy second
//!   path: the application's data resumes within 1 s at 50 ms RTT and
//!   within 300 ms at 5 ms RTT, every byte exactly once;
//! * no false suspicion: a saturated healthy stream, and paths of 2 s RTT
//!   with ±50 % jitter, over ten simulated minutes, give no suspect event
//!   and no migration;
//! * a shutdown ends the peer's sessions (`PeerShutdown`) within one RTT
//!   plus 100 ms; a restart with the same key that states which
//!   incarnation it supersedes ends the old process's sessions
//!   (`PeerRestarted`) at its new handshake; one that cannot know (it may
//!   be a twin) about one RTO after it.
//!
//! Every test prints what it measured (`--nocapture`).

use std::time::Duration;

use astral_core::{CloseReason, Config, Event, StreamId, StreamStats, Timestamp};
use astral_sim::{Action, FlowSpec, LinkConfig, Sim};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Suspect events at either end.
fn suspects(sim: &Sim) -> usize {
    sim.events_matching(|e| matches!(e, Event::StreamSuspect { .. }))
        .len()
}

/// Migrated events at either end.
fn migrations(sim: &Sim) -> usize {
    sim.events_matching(|e| matches!(e, Event::Migrated { .. }))
        .len()
}

/// The link flow 0's opener sends on.
fn carrying_link(sim: &Sim) -> Option<usize> {
    let s = sim.flows[0].at_opener?;
    let tx: StreamId = sim.nodes[0].session_info(s)?.send_stream?;
    sim.link_of(0, tx)
}

/// What a blackhole of the carrying path did to the application.
struct Outage {
    /// From the blackhole to the first byte the receiver read after its
    /// reads stopped.
    resumed_after: Duration,
    /// The longest time the receiver read nothing.
    longest_stall: Duration,
    suspects: usize,
}

/// Two identical links of `rtt` round trip and `rate` bytes/s, one upload
/// of `total` bytes; at `at` the carrying link goes silent in both
/// directions (a blackhole: nothing delivered, nothing closed). Steps the
/// simulation 1 ms at a time to time the outage, then runs the transfer to
/// its end and checks that every byte arrived exactly once, in order.
fn blackhole(seed: u64, rtt: Duration, rate: u64, total: u64, at: Duration) -> Outage {
    blackhole_with(seed, rtt, rate, FlowSpec::new(0, 1, total, 0), at)
}

fn blackhole_with(seed: u64, rtt: Duration, rate: u64, spec: FlowSpec, at: Duration) -> Outage {
    let link = LinkConfig::default().latency(rtt / 2).bandwidth(rate);
    blackhole_on(seed, link, spec, at)
}

/// [`blackhole_with`] on two links configured as `link`.
fn blackhole_on(seed: u64, link: LinkConfig, spec: FlowSpec, at: Duration) -> Outage {
    let total = spec.up;
    let mut sim = Sim::new(seed, 2, Config::default());
    sim.link(0, 1, link.clone());
    sim.link(0, 1, link);
    sim.open_flows(&[spec]);
    sim.keep_log = true;
    sim.run_until(Sim::t(at));
    let carrying = carrying_link(&sim).expect("the session is placed");
    assert!(sim.flows[0].up.read > 0, "data flows before the blackhole");
    let cut = sim.now;
    sim.act(Action::Partition(carrying));
    let step = ms(1);
    let mut last = sim.flows[0].up.read;
    let mut last_at = cut;
    let mut stalled = false;
    let mut resumed_after = None;
    let mut longest_stall = Duration::ZERO;
    while sim.now < cut + secs(30) {
        let next = sim.now + step;
        sim.run_until(next);
        let read = sim.flows[0].up.read;
        if read > last {
            let gap = sim.now.saturating_duration_since(last_at);
            longest_stall = longest_stall.max(gap);
            if stalled && resumed_after.is_none() {
                resumed_after = Some(sim.now.saturating_duration_since(cut));
            }
            last = read;
            last_at = sim.now;
        } else if sim.now.saturating_duration_since(last_at) > step * 2 {
            stalled = true;
        }
        if resumed_after.is_some() && sim.now > last_at + secs(1) {
            break;
        }
        if resumed_after.is_some() && sim.now > cut + secs(5) {
            break;
        }
    }
    if std::env::var("FO_DEBUG").is_ok() {
        for (t, n, e) in sim.log.iter().filter(|(t, _, _)| *t >= cut) {
            println!("{:?} node {n}: {e:?}", t.saturating_duration_since(cut));
        }
    }
    let resumed_after = resumed_after.expect("data resumes on the healthy path");
    assert_ne!(
        carrying_link(&sim),
        Some(carrying),
        "moved off the blackhole"
    );
    assert!(sim.run_until_done(secs(600)), "the transfer completes");
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    assert_eq!(sim.flows[0].up.read, total, "every byte exactly once");
    Outage {
        resumed_after,
        longest_stall,
        suspects: suspects(&sim),
    }
}

#[test]
fn a_blackholed_carrying_path_fails_over_within_a_second_at_50_ms() {
    let o = blackhole(21, ms(50), 10_000_000, 200_000_000, secs(5));
    println!(
        "blackhole at 50 ms RTT, 10 MB/s: data resumed {:?} after the cut (longest stall {:?}), {} suspect events",
        o.resumed_after, o.longest_stall, o.suspects
    );
    assert!(o.suspects >= 1);
    assert!(o.resumed_after <= secs(1), "{:?}", o.resumed_after);
    assert!(o.longest_stall <= secs(1), "{:?}", o.longest_stall);
}

#[test]
fn a_blackholed_carrying_path_fails_over_within_300_ms_at_5_ms() {
    let o = blackhole(22, ms(5), 10_000_000, 200_000_000, secs(5));
    println!(
        "blackhole at 5 ms RTT, 10 MB/s: data resumed {:?} after the cut (longest stall {:?}), {} suspect events",
        o.resumed_after, o.longest_stall, o.suspects
    );
    assert!(o.suspects >= 1);
    assert!(o.resumed_after <= ms(300), "{:?}", o.resumed_after);
    assert!(o.longest_stall <= ms(300), "{:?}", o.longest_stall);
}

/// The emulated paths' case (`astral-wan-failover --rtt 5ms`, issue 12):
/// 5 ms, 20 Mbit/s, a saturating upload that keeps a standing queue of its
/// own ahead of every record (the link's transport buffer: 128, 256 and
/// 512 KiB are 52, 105 and 210 ms at 2.5 MB/s), delivered 16 KiB at a time
/// as a bottleneck delivers packets. Every credit sample waits behind that
/// queue, so the loaded RTO is about the queue and its variance, and the
/// probe also waits for our output ahead of it: the suspicion must count
/// the queue once (before: 667 ms to resume at 256 KiB and 1,214 ms at
/// 512 KiB; 286 and 383 ms with the clean-sample timeouts). What the
/// receiver got but has not credited yet (it credits a quarter window at a
/// time) is not ahead of the probe: at most what the path delivered since
/// the newest credit arrived is left out of the queue (session 5: 193 /
/// 254 / 254 ms; 216 / 287 / 287 ms without).
#[test]
fn a_saturating_transfer_behind_a_standing_queue_fails_over_within_300_ms_at_5_ms() {
    for (seed, kib) in [(41, 128), (42, 256), (43, 512)] {
        let link = LinkConfig::default()
            .latency(ms(5) / 2)
            .bandwidth(2_500_000)
            .buffer(kib * 1024)
            .segment(16 * 1024);
        let o = blackhole_on(seed, link, FlowSpec::new(0, 1, 100_000_000, 0), secs(5));
        let queue = Duration::from_millis(kib as u64 * 1024 * 1000 / 2_500_000);
        println!(
            "blackhole at 5 ms RTT, 2.5 MB/s, {kib} KiB buffer ({queue:?} of queue): data resumed {:?} after the cut (longest stall {:?}), {} suspect events",
            o.resumed_after, o.longest_stall, o.suspects
        );
        assert!(o.suspects >= 1);
        let stall = o.resumed_after.max(o.longest_stall);
        // Within 300 ms behind up to about 100 ms of queue (our kernel's
        // unsent bytes plus a 64 KiB router queue); a deeper queue is
        // waited for once: a probe timeout (100 ms), the queue, the floor
        // of the suspicion after it and the resend.
        if kib <= 256 {
            assert!(stall <= ms(300), "{kib} KiB: {stall:?}");
        }
        if kib == 256 {
            // 287 ms while the bytes the peer had not credited yet counted
            // as queue ahead of the probe.
            assert!(stall <= ms(260), "{kib} KiB: {stall:?}");
        }
        assert!(stall <= queue + ms(200), "{kib} KiB: {stall:?}");
    }
}

/// While a side receives data, its suspicion also waits for the data it
/// granted, at the incoming rate it measured: a transfer saturating both
/// directions fails over a little later than a one-way one.
#[test]
fn a_blackholed_two_way_transfer_fails_over_within_a_second_at_50_ms() {
    let o = blackhole_with(
        33,
        ms(50),
        10_000_000,
        FlowSpec::new(0, 1, 100_000_000, 100_000_000),
        secs(5),
    );
    println!(
        "blackhole at 50 ms RTT, 10 MB/s, both directions saturated: data resumed {:?} after the cut, {} suspect events",
        o.resumed_after, o.suspects
    );
    assert!(o.suspects >= 1);
    assert!(o.resumed_after <= secs(1), "{:?}", o.resumed_after);
}

#[test]
fn a_saturated_healthy_stream_is_never_suspect() {
    // 40 ms, 2 Mbit/s, 256 KiB transport buffers: the transfer keeps a
    // second of our own data queued ahead of every probe, and the
    // receiver's pings wait behind the sender's bursts.
    let link = LinkConfig::default().latency(ms(20)).bandwidth(250_000);
    let mut sim = Sim::new(23, 2, Config::default());
    sim.link(0, 1, link.clone());
    sim.link(0, 1, link);
    sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(600)));
    let read = sim.flows[0].up.read;
    println!(
        "saturated 40 ms / 2 Mbit/s, 600 s: {} suspect events, {} migrations, {read} B delivered",
        suspects(&sim),
        migrations(&sim)
    );
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    // 93 % of the link: drain probes (placement, `engine/probe.rs`) idle
    // it for about three path delays every few seconds.
    assert!(read >= 250_000 * 600 * 92 / 100, "saturated: {read} B");
    assert_eq!(suspects(&sim), 0);
    assert_eq!(migrations(&sim), 0);
}

#[test]
fn a_saturated_two_way_stream_is_never_suspect() {
    // Both ends send as fast as they can: each side's answers wait behind
    // its own bulk data.
    let link = LinkConfig::default().latency(ms(20)).bandwidth(250_000);
    let mut sim = Sim::new(24, 2, Config::default());
    sim.link(0, 1, link.clone());
    sim.link(0, 1, link);
    sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, u64::MAX / 4)]);
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(600)));
    println!(
        "saturated both ways 40 ms / 2 Mbit/s, 600 s: {} suspect events, {} migrations, {} B up, {} B down",
        suspects(&sim),
        migrations(&sim),
        sim.flows[0].up.read,
        sim.flows[0].down.read
    );
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    assert_eq!(suspects(&sim), 0);
    assert_eq!(migrations(&sim), 0);
}

/// Two paths of 2 s RTT ± 50 % (one way 0.5 s plus 0..1 s of jitter:
/// round trips of 1 to 3 s), ten simulated minutes of `spec`.
fn jittered(seed: u64, spec: FlowSpec) -> (usize, usize, u64, Vec<StreamStats>) {
    let link = LinkConfig::default()
        .latency(ms(500))
        .jitter(secs(1))
        .bandwidth(1_000_000);
    let mut sim = Sim::new(seed, 2, Config::default());
    sim.link(0, 1, link.clone());
    sim.link(0, 1, link);
    sim.open_flows(&[spec]);
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(600)));
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    let stats = sim.nodes[0].streams().map(|s| s.stats).collect();
    (
        suspects(&sim),
        migrations(&sim),
        sim.flows[0].up.read,
        stats,
    )
}

#[test]
fn a_two_second_path_with_half_its_delay_as_jitter_is_never_suspect() {
    // Interactive traffic: 4 kB every 100 ms each way.
    let mut spec = FlowSpec::new(0, 1, 40_000 * 600, 40_000 * 600);
    spec.max_write = 4_000;
    spec.write_interval = Some(ms(100));
    let (s, m, read, _) = jittered(25, spec);
    println!("2 s ± 50 %, paced, 600 s: {s} suspect events, {m} migrations, {read} B up");
    assert!(read >= 40_000 * 600 / 3, "{read} B");
    assert_eq!(s, 0);
    assert_eq!(m, 0);
}

#[test]
fn a_two_second_path_with_half_its_delay_as_jitter_under_a_bulk_transfer_is_never_suspect() {
    let (s, m, read, stats) = jittered(26, FlowSpec::new(0, 1, u64::MAX / 4, 0));
    let probes: Vec<_> = stats
        .iter()
        .map(|s| (s.drain_probes, s.drain_confirms, s.drain_withheld))
        .collect();
    println!(
        "2 s ± 50 %, bulk, 600 s: {s} suspect events, {m} migrations, {read} B up; \
         drain probes per stream at the sender (probes, confirming, data withheld) {probes:?}"
    );
    assert!(read > 0);
    assert_eq!(s, 0);
    assert_eq!(m, 0);
}

/// Runs `sim` 1 ms at a time until `done` (bounded by `limit`); returns the
/// virtual time it took.
fn until(sim: &mut Sim, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> Option<Duration> {
    let start = sim.now;
    while sim.now < start + limit {
        if done(sim) {
            return Some(sim.now.saturating_duration_since(start));
        }
        let next = sim.now + ms(1);
        sim.run_until(next);
    }
    None
}

/// Sessions node `n` ended with `reason`, and when.
fn closed_with(sim: &Sim, n: usize, reason: &CloseReason) -> Vec<Timestamp> {
    sim.events_matching(|e| matches!(e, Event::SessionClosed { reason: r, .. } if r == reason))
        .into_iter()
        .filter(|(_, at, _)| *at == n)
        .map(|(t, _, _)| t)
        .collect()
}

#[test]
fn a_shutdown_ends_the_peers_sessions_within_an_rtt_and_100_ms() {
    for (rtt, seed) in [(ms(50), 27), (ms(5), 28), (ms(200), 29)] {
        let link = LinkConfig::default().latency(rtt / 2).bandwidth(10_000_000);
        let mut sim = Sim::new(seed, 2, Config::default());
        sim.link(0, 1, link.clone());
        sim.link(0, 1, link);
        // Two sessions: one busy, one idle.
        sim.open_flows(&[
            FlowSpec::new(0, 1, u64::MAX / 4, 0),
            FlowSpec::new(0, 1, 1000, 1000),
        ]);
        sim.keep_log = true;
        sim.run_until(Sim::t(secs(3)));
        let open = sim.nodes[1].sessions().count();
        assert!(open >= 1);
        let now = sim.now;
        sim.nodes[0].shutdown(now);
        let took = until(&mut sim, secs(5), |s| {
            closed_with(s, 1, &CloseReason::PeerShutdown).len() >= open
        })
        .expect("the peer's sessions end");
        println!(
            "shutdown at {rtt:?} RTT: the peer's {open} session(s) ended with PeerShutdown {took:?} later"
        );
        assert!(took <= rtt + ms(100), "{took:?} at RTT {rtt:?}");
        assert_eq!(sim.nodes[1].sessions().count(), 0);
    }
}

#[test]
fn a_restarted_peer_ends_the_old_sessions_soon_after_its_new_handshake() {
    for (rtt, seed) in [(ms(50), 30), (ms(5), 31), (ms(200), 32)] {
        let link = LinkConfig::default().latency(rtt / 2).bandwidth(10_000_000);
        let mut sim = Sim::new(seed, 2, Config::default());
        sim.link(0, 1, link.clone());
        sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
        sim.keep_log = true;
        sim.run_until(Sim::t(secs(3)));
        assert_eq!(sim.nodes[1].sessions().count(), 1);
        // Node 0's host crashes and the process comes back with the same
        // key: its old transport is silent, and it dials again.
        sim.restart(0, 1000 + seed).unwrap();
        sim.act(Action::Connect(0, 1, link));
        let ups = |s: &Sim| {
            s.events_matching(|e| matches!(e, Event::StreamUp { .. }))
                .iter()
                .filter(|(_, n, _)| *n == 1)
                .count()
        };
        let before = ups(&sim);
        let up =
            until(&mut sim, secs(5), |s| ups(s) > before).expect("the new handshake completes");
        let handshake_at = sim.now;
        let took = until(&mut sim, secs(5), |s| {
            !closed_with(s, 1, &CloseReason::PeerRestarted).is_empty()
                || !closed_with(s, 1, &CloseReason::PeerUnreachable).is_empty()
        })
        .expect("the old session ends");
        let reason = if closed_with(&sim, 1, &CloseReason::PeerRestarted).is_empty() {
            "PeerUnreachable"
        } else {
            "PeerRestarted"
        };
        println!(
            "restart at {rtt:?} RTT: new handshake {up:?} after the dial, old session ended ({reason}) {took:?} after it"
        );
        assert_eq!(reason, "PeerRestarted");
        assert!(handshake_at > Sim::t(secs(3)));
        // The old process's stream is probed at the new handshake and
        // closed one RTO after the unanswered probe (a live twin with the
        // same key would answer it): about one RTO, not the one
        // RTT (docs/MIGRATION.md, "Failover").
        assert!(took <= rtt * 3 + ms(150), "{took:?} at RTT {rtt:?}");
    }
}

/// Streams that came up at node `n` so far.
fn ups_at(sim: &Sim, n: usize) -> usize {
    sim.events_matching(|e| matches!(e, Event::StreamUp { .. }))
        .iter()
        .filter(|(_, at, _)| *at == n)
        .count()
}

#[test]
fn a_restart_that_names_the_incarnation_it_supersedes_ends_the_old_sessions_at_its_handshake() {
    // Either side restarts: the dialer (its message 3 names the old
    // incarnation) or the listener (its message 2 does, when the peer
    // dials it again).
    for (restarted, rtt, seed) in [
        (0, ms(50), 40),
        (0, ms(5), 41),
        (0, ms(200), 42),
        (1, ms(50), 43),
        (1, ms(200), 44),
    ] {
        let other = 1 - restarted;
        let link = LinkConfig::default().latency(rtt / 2).bandwidth(10_000_000);
        let mut sim = Sim::new(seed, 2, Config::default());
        sim.link(0, 1, link.clone());
        sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
        sim.keep_log = true;
        sim.run_until(Sim::t(secs(3)));
        assert_eq!(sim.nodes[other].sessions().count(), 1);
        let old = sim.nodes[restarted].incarnation();
        // The host crashes (the old transport goes silent, nothing closes
        // it) and the process comes back with the same key; its record
        // next to the key says the old incarnation is gone.
        sim.restart_superseding(restarted, 1000 + seed).unwrap();
        assert_eq!(sim.nodes[restarted].supersedes(), Some(old));
        sim.try_link(0, 1, link).expect("node 0 dials again");
        let before = ups_at(&sim, other);
        let up = until(&mut sim, secs(5), |s| ups_at(s, other) > before)
            .expect("the new handshake completes");
        let took = until(&mut sim, secs(5), |s| {
            !closed_with(s, other, &CloseReason::PeerRestarted).is_empty()
        })
        .expect("the old session ends");
        // The old process's silent stream was closed with the reason, not
        // after a probe.
        let restarted_downs = sim
            .events_matching(|e| {
                matches!(
                    e,
                    Event::StreamDown {
                        reason: astral_core::StreamCloseReason::PeerRestarted,
                        ..
                    }
                )
            })
            .into_iter()
            .filter(|(_, at, _)| *at == other)
            .count();
        println!(
            "restart of node {restarted} naming its old incarnation at {rtt:?} RTT: new handshake \
             {up:?} after the dial, old session ended (PeerRestarted) {took:?} after it, \
             {restarted_downs} old stream(s) closed PeerRestarted"
        );
        // Exact virtual time: in the same millisecond as the handshake.
        assert_eq!(took, Duration::ZERO, "at RTT {rtt:?}");
        assert!(took <= rtt);
        assert_eq!(restarted_downs, 1);
        assert_eq!(suspects(&sim), 0, "nothing was suspected first");
        assert_eq!(sim.nodes[other].sessions().count(), 0);
    }
}

#[test]
fn a_restart_that_names_nothing_also_closes_an_old_stream_already_suspect() {
    // Regression: a stream whose suspicion had already fired when the peer
    // came back with a new incarnation was never closed by its new probe
    // (a stream becomes suspect once), so the old sessions waited for
    // `dead_timeout` (20 s) instead of about one RTO.
    for (rtt, seed) in [(ms(50), 45), (ms(200), 46)] {
        let link = LinkConfig::default().latency(rtt / 2).bandwidth(10_000_000);
        let mut sim = Sim::new(seed, 2, Config::default());
        sim.link(0, 1, link.clone());
        sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
        sim.keep_log = true;
        sim.run_until(Sim::t(secs(3)));
        // The receiver's host crashes; the sender's data goes unanswered
        // and its stream becomes suspect (there is no other to move to).
        sim.restart(1, 1000 + seed).unwrap();
        until(&mut sim, secs(5), |s| suspects(s) > 0).expect("the silent stream is suspect");
        sim.try_link(0, 1, link).expect("node 0 dials again");
        let before = ups_at(&sim, 0);
        until(&mut sim, secs(5), |s| ups_at(s, 0) > before).expect("the new handshake completes");
        let took = until(&mut sim, secs(5), |s| {
            !closed_with(s, 0, &CloseReason::PeerRestarted).is_empty()
        })
        .expect("the old session ends before dead_timeout");
        println!(
            "restart naming nothing, old stream already suspect, {rtt:?} RTT: old session ended \
             {took:?} after the new handshake"
        );
        // The new probe waits one RTO plus our unconfirmed output at the
        // measured rate, at no less than 1 Mbit/s (a live twin's answer
        // queues behind it), as for a stream that was not suspect: about
        // one RTO. Regression: its deadline was never armed (the blackholed
        // transport takes nothing, so the probe's record never left and
        // armed nothing), and it was only checked at the next keep-alive
        // (1,747 / 1,371 ms after the handshake).
        assert!(took <= rtt * 3 + ms(150), "{took:?} at RTT {rtt:?}");
    }
}

/// The real-binary suspect test's case (`astral-cli/tests/suspect.rs`):
/// two idle streams with a 200 ms keep-alive, one of them blackholed. Only
/// a keep-alive ping makes an idle stream wait for anything, so the
/// silence starts with the first ping after the cut; the probe goes out
/// once that ping is overdue (one floored timeout) and the stream is
/// suspect one floored timeout after the probe: the next keep-alive (0 to
/// 200 ms after the cut, by phase) + 100 + 100 ms, never more.
#[test]
fn an_idle_stream_is_suspect_within_a_keepalive_and_two_floored_timeouts() {
    let mut worst = Duration::ZERO;
    let mut best = Duration::MAX;
    for (seed, phase) in [(60, 0), (61, 37), (62, 101), (63, 150), (64, 199)] {
        let config = Config {
            keepalive_interval: ms(200),
            ..Config::default()
        };
        let link = LinkConfig::default().latency(ms(1)).bandwidth(10_000_000);
        let mut sim = Sim::new(seed, 2, config);
        let cut_link = sim.link(0, 1, link.clone());
        sim.link(0, 1, link);
        sim.keep_log = true;
        sim.run_until(Sim::t(secs(3) + ms(phase)));
        assert_eq!(suspects(&sim), 0, "idle and healthy: never suspect");
        sim.act(Action::Partition(cut_link));
        let took = until(&mut sim, secs(5), |s| {
            s.events_matching(|e| matches!(e, Event::StreamSuspect { .. }))
                .iter()
                .any(|(_, n, _)| *n == 0)
        })
        .expect("the blackholed idle stream turns suspect");
        println!(
            "idle, 200 ms keep-alive, cut at 3 s + {phase} ms: node 0 suspects after {took:?}"
        );
        worst = worst.max(took);
        best = best.min(took);
    }
    println!("idle suspicion after the cut: {best:?} to {worst:?}");
    assert!(worst <= ms(200) + ms(100) + ms(100) + ms(10), "{worst:?}");
    assert!(best >= ms(200), "{best:?}: two floored timeouts at least");
}
