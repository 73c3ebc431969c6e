//! Automatic placement (issue 17; docs/MIGRATION.md, "Automatic
//! placement"): measured on the simulator's netem-like links, in exact
//! virtual time.
//!
//! * a clearly better path wins within a few seconds, and a carrying path
//!   that gets slower loses the session as fast;
//! * identical paths never trade a session, under a saturating transfer or
//!   with ±50 % jitter, over ten simulated minutes;
//! * goodput does not dip during an automatic move;
//! * a pinned session never moves.
//!
//! Every test prints what it measured (`--nocapture`).

use std::time::Duration;

use astral_core::{Config, Event, StreamId, StreamPreference, Timestamp};
use astral_sim::{Action, FlowSpec, LinkChange, LinkConfig, Sim};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A link of `rtt` round trip, capped at `rate` bytes per second each way.
fn path(rtt: Duration, rate: u64) -> LinkConfig {
    LinkConfig::default().latency(rtt / 2).bandwidth(rate)
}

/// Automatic migrations started, and when: `Migrated` events at the node
/// that sent the marker are reported when the peer's traffic shows up on
/// the target; either end counts.
fn migrations(sim: &Sim) -> Vec<(Timestamp, usize)> {
    sim.events_matching(|e| matches!(e, Event::Migrated { .. }))
        .into_iter()
        .map(|(t, n, _)| (t, n))
        .collect()
}

/// The link the flow's opener sends on.
fn carrying_link(sim: &Sim) -> Option<usize> {
    let s = sim.flows[0].at_opener?;
    let tx: StreamId = sim.nodes[0].session_info(s)?.send_stream?;
    sim.link_of(0, tx)
}

/// RTT samples taken on every stream of node 0 (pings and credits).
fn samples(sim: &Sim) -> u64 {
    sim.nodes[0]
        .streams()
        .map(|s| u64::from(s.rtt.samples))
        .sum()
}

/// RTT samples taken at node 0 on the stream of `link`.
fn samples_on(sim: &Sim, link: usize) -> u64 {
    sim.links[link]
        .stream_at(0)
        .and_then(|id| sim.nodes[0].stream_info(id))
        .map_or(0, |s| u64::from(s.rtt.samples))
}

/// Runs `sim` until `end` in `step` slices, recording the opener →
/// acceptor bytes read in each slice.
fn goodput(sim: &mut Sim, end: Timestamp, step: Duration) -> Vec<(Timestamp, u64)> {
    let mut out = Vec::new();
    let mut last = sim.flows[0].up.read;
    let mut at = sim.now;
    while at < end {
        at += step;
        sim.run_until(at);
        let read = sim.flows[0].up.read;
        out.push((at, read - last));
        last = read;
    }
    out
}

/// Two links between nodes 0 and 1 and one upload of `bytes`, opened at
/// once; returns the simulator.
fn scenario(seed: u64, a: LinkConfig, b: LinkConfig, bytes: u64) -> Sim {
    let mut sim = Sim::new(seed, 2, Config::default());
    sim.link(0, 1, a);
    sim.link(0, 1, b);
    sim.open_flows(&[FlowSpec::new(0, 1, bytes, 0)]);
    sim
}

const RATE: u64 = 500_000;

/// Time from `change` to the first migration, and that migration's target.
fn moved_after(sim: &Sim, change: Duration) -> Option<Duration> {
    migrations(sim)
        .first()
        .map(|(t, _)| t.saturating_duration_since(Sim::t(change)))
}

/// The smallest of `slices`' byte counts.
fn least(slices: &[(Timestamp, u64)]) -> u64 {
    slices.iter().map(|(_, b)| *b).min().unwrap_or(0)
}

#[test]
fn a_path_that_becomes_ten_times_faster_wins_within_five_seconds() {
    // 100 ms and 150 ms at first, both capped at 4 Mbit/s: the session
    // takes the 100 ms one; at 20 s the other one becomes 10 ms.
    let change = secs(20);
    let mut sim = scenario(
        11,
        path(ms(100), RATE),
        path(ms(150), RATE).at(change, LinkChange::Latency(ms(5))),
        u64::MAX / 4,
    );
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(10)));
    assert_eq!(carrying_link(&sim), Some(0));
    let before = goodput(&mut sim, Sim::t(change), secs(2));
    assert!(migrations(&sim).is_empty(), "no move before the change");
    let during = goodput(&mut sim, Sim::t(change + secs(10)), secs(2));
    let took = moved_after(&sim, change).expect("the session moved");
    let n = migrations(&sim).len();
    let confirms = sim.links[0]
        .stream_at(0)
        .and_then(|id| sim.nodes[0].stream_info(id))
        .map(|s| s.stats.drain_confirms);
    println!(
        "10x faster: moved {took:?} after the change; {n} Migrated events; \
         goodput per 2 s before {before:?}, during and after the move {during:?}; {} RTT samples; \
         confirming probes on the 100 ms stream {confirms:?}",
        samples(&sim)
    );
    // The 10 ms path wins at the trusted estimate of the 100 ms one: no
    // confirming probe (a second drain) holds data back around the move.
    assert_eq!(confirms, Some(0));
    assert!(took <= secs(5), "took {took:?}");
    assert_eq!(carrying_link(&sim), Some(1));
    // One move, reported at both ends.
    assert_eq!(n, 2);
    // No dip: the 2 s slices that hold the move (it ends when the peer's
    // traffic shows on the target) carried at least 90 % of the median
    // slice before the change. (The sim hands bytes over in window-sized
    // bursts, so slices are compared with slices.)
    let mut sorted: Vec<u64> = before.iter().map(|(_, b)| *b).collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let moved_at = Sim::t(change) + took;
    let around: Vec<u64> = during
        .iter()
        .filter(|(end, _)| *end > moved_at && end.saturating_duration_since(moved_at) <= secs(4))
        .map(|(_, b)| *b)
        .collect();
    assert_eq!(around.len(), 2);
    assert!(
        around.iter().all(|b| *b >= median * 9 / 10),
        "goodput dipped: before {before:?}, during {during:?}"
    );
}

#[test]
fn a_carrying_path_that_becomes_three_times_slower_loses_it_within_five_seconds() {
    // A window-limited transfer (80 Mbit/s links, far more than the
    // session's receive window carries in a round trip): on a
    // 300 ms path it would run at a third of its speed.
    let fast = 10_000_000;
    let change = secs(20);
    let mut sim = scenario(
        12,
        path(ms(100), fast).at(change, LinkChange::Latency(ms(150))),
        path(ms(120), fast),
        u64::MAX / 4,
    );
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(10)));
    assert_eq!(carrying_link(&sim), Some(0));
    let before = goodput(&mut sim, Sim::t(change), secs(2));
    assert!(migrations(&sim).is_empty(), "no move before the change");
    let during = goodput(&mut sim, Sim::t(change + secs(10)), secs(2));
    let took = moved_after(&sim, change).expect("the session moved");
    println!(
        "3x slower: moved {took:?} after the change; {} Migrated events; \
         goodput per 2 s before {before:?}, after {during:?}",
        migrations(&sim).len()
    );
    assert!(took <= secs(5), "took {took:?}");
    assert_eq!(carrying_link(&sim), Some(1));
    assert_eq!(migrations(&sim).len(), 2);
    // Back at the speed of a 120 ms path after the move: at least 80 % of
    // the 100 ms path's.
    let last = during.last().unwrap().1;
    assert!(last >= least(&before) * 8 / 10, "{last} B in the last 2 s");
}

/// A's `(srtt, path)` of the stream on `link`, ms.
fn rtt_on(sim: &Sim, link: usize) -> (u128, u128) {
    sim.links[link]
        .stream_at(0)
        .and_then(|id| sim.nodes[0].stream_info(id))
        .map_or((0, 0), |s| (s.rtt.srtt.as_millis(), s.rtt.path.as_millis()))
}

#[test]
fn a_saturated_carrying_path_that_becomes_three_times_slower_loses_it_within_five_seconds() {
    // As on the emulated paths (`astral-wan-placement slower`): 20 Mbit/s,
    // a saturating transfer that keeps a standing queue on the carrying
    // path before and after the change, so the rise of the path delay
    // hides behind the session's own queue: every loaded sample is
    // explained by it (the path estimate holds), and only a drain probe
    // sees the rise. The queue is what the receive window puts in flight
    // beyond the path's bandwidth-delay product (a window settles at 2-4
    // of them: 0.5-1 MB here, one to three path delays of queue); the
    // 1 MiB bottleneck buffer holds it without loss.
    let rate = 2_500_000;
    let change = secs(20);
    let buffer = 1 << 20;
    let mut sim = scenario(
        17,
        path(ms(100), rate)
            .buffer(buffer)
            .at(change, LinkChange::Latency(ms(150))),
        path(ms(120), rate).buffer(buffer),
        u64::MAX / 4,
    );
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(10)));
    assert_eq!(carrying_link(&sim), Some(0));
    let before = goodput(&mut sim, Sim::t(change), secs(2));
    let loaded = rtt_on(&sim, 0);
    assert!(migrations(&sim).is_empty(), "no move before the change");
    let mut trace = Vec::new();
    while sim.now < Sim::t(change + secs(10)) {
        let at = sim.now + ms(500);
        sim.run_until(at);
        trace.push((
            at.saturating_duration_since(Sim::t(change)).as_millis(),
            rtt_on(&sim, 0),
            rtt_on(&sim, 1),
        ));
    }
    let took = moved_after(&sim, change);
    let probes = sim.links[0]
        .stream_at(0)
        .and_then(|id| sim.nodes[0].stream_info(id))
        .map(|s| (s.stats.drain_probes, s.stats.drain_confirms))
        .unwrap_or_default();
    println!(
        "3x slower, saturated: moved {took:?} after the change; {} Migrated events; \
         A's srtt/path of the carrying stream before the change {loaded:?} ms; \
         drain probes on it (all, confirming) {probes:?}; \
         goodput per 2 s before {before:?}; after the change (ms, carrying, other) {trace:?}",
        migrations(&sim).len()
    );
    // The rise was seen by one probe ping and confirmed by a second probe
    // before the session moved.
    assert!(probes.1 >= 1, "{probes:?}");
    // The standing queue is there: the loaded round trip is at least half
    // a path delay above the path's 100 ms (204 ms with the tuner that
    // grows only windows that limit their flow; the earlier one, timed
    // from a window's first byte against the smoothed RTT, grew windows
    // by their own queue to about 370 ms, which is what the 250 ms this
    // asked before was calibrated on), the path estimate holds the idle
    // delay under it, and the link is full (the median 2 s slice; a slice
    // with a drain probe carries less).
    assert!(loaded.0 >= 150, "srtt {loaded:?}");
    assert!(loaded.1 <= 110, "path {loaded:?}");
    let mut sorted: Vec<u64> = before.iter().map(|(_, b)| *b).collect();
    sorted.sort_unstable();
    assert!(sorted[sorted.len() / 2] >= rate * 2 * 8 / 10, "{before:?}");
    let took = took.expect("the session moved");
    assert!(took <= secs(5), "took {took:?}");
    assert_eq!(carrying_link(&sim), Some(1));
    assert_eq!(migrations(&sim).len(), 2);
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
}

/// Ten simulated minutes of one transfer over two identical links:
/// returns (migrations, bytes delivered, samples on the carrying stream,
/// drain probes on it).
fn identical_paths(seed: u64, link: LinkConfig) -> (usize, u64, u64, u64) {
    let mut sim = scenario(seed, link.clone(), link, u64::MAX / 4);
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(600)));
    let carrying = carrying_link(&sim).expect("the session is placed");
    let stats = |l: usize| {
        sim.links[l]
            .stream_at(0)
            .and_then(|id| sim.nodes[0].stream_info(id))
            .map(|s| (s.stats.drain_probes, s.stats.drain_withheld))
    };
    println!(
        "samples at node 0: carrying stream {}, idle stream {}; drain probes (count, data withheld) {:?} / {:?}",
        samples_on(&sim, carrying),
        samples_on(&sim, 1 - carrying),
        stats(carrying),
        stats(1 - carrying)
    );
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    (
        migrations(&sim).len(),
        sim.flows[0].up.read,
        samples_on(&sim, carrying),
        stats(carrying).map_or(0, |(n, _)| n),
    )
}

#[test]
fn identical_capped_paths_under_a_saturating_transfer_never_trade_the_session() {
    // 40 ms, 2 Mbit/s each, the transfer keeps the bottleneck queue full.
    let rate = 250_000;
    let (moves, read, samples, probes) = identical_paths(13, path(ms(40), rate));
    println!(
        "identical 40 ms / 2 Mbit/s, 600 s: {moves} migrations, {read} B delivered \
         ({:.2} % of one path's capacity), {samples} RTT samples and {probes} drain probes \
         on the carrying stream",
        read as f64 * 100.0 / (rate * 600) as f64
    );
    assert_eq!(moves, 0);
    // Saturated: at least 98 % of the capacity of one path. The drain
    // probes that keep the carrying path's delay truthful cost 0.5 % here
    // (99.7 % of capacity without them): each idles the link for about one
    // path delay, and unchanged probes back off to one per 8 s (three
    // round trips every 2-3 s cost 3.9 %).
    assert!(read >= rate * 600 * 98 / 100, "{read} B");
    // Backed off: one probe per four path windows once they keep finding
    // the estimate unchanged (192 probes at one per path window). The
    // rest are re-arms by a loaded signal that moved: while the receive
    // window grows in the first 30 s its queue lifts the srtt by more
    // than an eighth between probes (5 times: 260 -> 1054 ms), and three
    // probes later start in the dip a drain leaves (81 in all; 78 with
    // the earlier tuner).
    assert!(probes <= 600 / 8 + 10, "{probes} probes");
    // Credits sample the busy stream (round trips of about a second
    // behind its standing queue) at least 1.5 times a second: more than
    // seven times what keep-alive pings alone give (one per 5 s). (Drain
    // probes hold new records back for about an eighth of the time here:
    // the standing queue is a second deep.)
    assert!(samples >= 600 * 3 / 2, "{samples} samples");
}

#[test]
fn equal_paths_with_half_their_delay_as_jitter_never_trade_the_session() {
    // One way 10..30 ms (20 ms ± 50 %), light traffic: 40 kB/s.
    let link = LinkConfig::default()
        .latency(ms(10))
        .jitter(ms(20))
        .bandwidth(1_000_000);
    let mut sim = Sim::new(14, 2, Config::default());
    sim.link(0, 1, link.clone());
    sim.link(0, 1, link);
    let mut spec = FlowSpec::new(0, 1, 40_000 * 600, 40_000 * 600);
    spec.max_write = 4_000;
    spec.write_interval = Some(ms(100));
    sim.open_flows(&[spec]);
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(600)));
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    let moves = migrations(&sim).len();
    println!(
        "jittered equal paths, 600 s: {moves} migrations, {} B delivered up, {} samples",
        sim.flows[0].up.read,
        samples(&sim)
    );
    assert_eq!(moves, 0);
    assert!(samples(&sim) >= 600 * 4);
}

/// Node `node`'s `(srtt, peak, path)` of the stream on `link`, ms.
fn rtt_at(sim: &Sim, node: usize, link: usize) -> (f64, f64, f64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    sim.links[link]
        .stream_at(node)
        .and_then(|id| sim.nodes[node].stream_info(id))
        .map_or((0.0, 0.0, 0.0), |s| {
            (ms(s.rtt.srtt), ms(s.rtt.peak), ms(s.rtt.path))
        })
}

#[test]
fn equal_jittered_paths_under_a_saturating_transfer_never_trade_the_session() {
    // As on the emulated paths (`astral-wan-placement identical --jitter
    // 10ms`): two 40 ms paths with ±50 % jitter (one way 10..30 ms, drawn
    // per 16 KiB chunk, order kept), 8 Mbit/s, both streams up and idle
    // for 2 s, then one saturating upload that keeps a standing queue at
    // the bottleneck.
    let rate = 1_000_000;
    let link = LinkConfig::default()
        .latency(ms(10))
        .jitter(ms(20))
        .bandwidth(rate);
    // Seed 23 traded the session 1.5 s into the transfer when the policy
    // judged a candidate by its srtt (the receiver's carrying path read
    // 45 ms, the idle stream's srtt 29 ms).
    let mut sim = Sim::new(23, 2, Config::default());
    sim.link(0, 1, link.clone());
    sim.link(0, 1, link);
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(2)));
    sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
    // How close each node came to a move, every 100 ms: the idle stream's
    // slowest recent round trip (the higher of its srtt and peak, as the
    // policy judges a candidate) over the carrying stream's path delay (a
    // move needs at most 0.7). Node 0 carries on the stream it sends on,
    // node 1 on the one it credits on.
    let mut closest = [(f64::MAX, 0u64, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)); 2];
    let mut at = Sim::t(secs(3));
    while at < Sim::t(secs(602)) {
        sim.run_until(at);
        for (node, close) in closest.iter_mut().enumerate() {
            let carrying = if node == 0 {
                sim.flows[0]
                    .at_opener
                    .and_then(|s| sim.nodes[0].session_info(s))
            } else {
                sim.flows[0]
                    .at_acceptor
                    .and_then(|s| sim.nodes[1].session_info(s))
            }
            .and_then(|i| i.send_stream)
            .and_then(|st| sim.link_of(node, st));
            if let Some(l) = carrying {
                let cur = rtt_at(&sim, node, l);
                let other = rtt_at(&sim, node, 1 - l);
                let ratio = other.0.max(other.1) / cur.2;
                if cur.2 > 0.0 && ratio < close.0 {
                    let t = at
                        .saturating_duration_since(Sim::t(Duration::ZERO))
                        .as_millis() as u64;
                    *close = (ratio, t, cur, other);
                }
            }
        }
        at += ms(100);
    }
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    let moves = migrations(&sim);
    let carrying = carrying_link(&sim).expect("the session is placed");
    let read = sim.flows[0].up.read;
    let probes = sim.links[carrying]
        .stream_at(0)
        .and_then(|id| sim.nodes[0].stream_info(id))
        .map(|s| {
            (
                s.stats.drain_probes,
                s.stats.drain_confirms,
                s.stats.drain_withheld,
            )
        })
        .unwrap_or_default();
    println!(
        "jittered identical 40 ms ± 50 % / 8 Mbit/s, saturating, 600 s: {} migrations {moves:?}, \
         {read} B delivered ({:.2} % of one path's capacity); closest to a move (idle slowest / \
         carrying path, at ms, carrying (srtt, peak, path), idle (srtt, peak, path)): node 0 {:?}, \
         node 1 {:?}; \
         {} RTT samples on the carrying stream; drain probes (all, confirming, withheld) {probes:?}",
        moves.len(),
        read as f64 * 100.0 / (rate * 600) as f64,
        closest[0],
        closest[1],
        samples_on(&sim, carrying),
    );
    assert!(moves.is_empty(), "{moves:?}");
    // Not by luck (a sustain or a confirming probe that happened to
    // intervene): the policy's comparison never favoured the idle stream
    // (with the srtt, node 0 came to 0.61-0.69 on seeds 18-25).
    for (node, c) in closest.iter().enumerate() {
        assert!(c.0 > 0.7, "node {node}: {c:?}");
    }
    // Loaded: the transfer filled the path.
    assert!(read >= rate * 600 * 95 / 100, "{read} B");
}

#[test]
fn a_receivers_estimate_from_before_the_transfer_does_not_move_the_session() {
    // Path 0 is 100 ms and path 1 110 ms when the upload starts: the
    // session takes path 0. At 10 s path 0 becomes 40 ms and path 1 60 ms.
    // The sender's drain probes see path 0's new delay; the receiver,
    // whose every pong waits behind the sender's data, still holds the
    // 100 ms it measured idle, against which path 1 is 40 % faster. The
    // receiver must leave the decision to the sender (its stale estimate
    // counts as unknown): path 0 is the faster one.
    let rate = 1_000_000;
    let mut sim = Sim::new(19, 2, Config::default());
    sim.link(
        0,
        1,
        path(ms(100), rate).at(secs(10), LinkChange::Latency(ms(20))),
    );
    sim.link(
        0,
        1,
        path(ms(110), rate).at(secs(10), LinkChange::Latency(ms(30))),
    );
    sim.keep_log = true;
    sim.run_until(Sim::t(secs(2)));
    sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
    sim.run_until(Sim::t(secs(9)));
    assert_eq!(carrying_link(&sim), Some(0));
    sim.run_until(Sim::t(secs(60)));
    let views: Vec<_> = (0..2)
        .map(|node| (rtt_at(&sim, node, 0), rtt_at(&sim, node, 1)))
        .collect();
    let moves = migrations(&sim);
    println!(
        "faster carrying path under load: {} Migrated events {moves:?}; (srtt, peak, path) of \
         path 0 and path 1 at 60 s: sender {:?}, receiver {:?}",
        moves.len(),
        views[0],
        views[1]
    );
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
    // The session stays on the faster path...
    assert!(moves.is_empty(), "{moves:?}");
    assert_eq!(carrying_link(&sim), Some(0));
    // ...although the receiver's view is the stale one, by which path 1
    // would win.
    let (cur, other) = views[1];
    assert!(other.0.max(other.1) <= 0.7 * cur.2, "{:?}", views[1]);
}

#[test]
fn a_pinned_session_never_moves() {
    // The operator moves the session onto the slower path at 5 s; the
    // faster one stays up for five minutes, and a later pin by the
    // acceptor holds too.
    let mut sim = scenario(15, path(ms(20), RATE), path(ms(200), RATE), u64::MAX / 4);
    sim.keep_log = true;
    sim.at(
        Sim::t(secs(5)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 1,
        },
    );
    sim.run_until(Sim::t(secs(300)));
    let moves = migrations(&sim).len();
    println!("pinned on the 200 ms path next to a 20 ms one: {moves} Migrated events in 300 s");
    // The operator's move, reported at both ends; nothing automatic.
    assert_eq!(moves, 2);
    assert_eq!(carrying_link(&sim), Some(1));
    let s = sim.flows[0].at_opener.unwrap();
    assert_eq!(sim.nodes[0].session_pins(s), Some((true, false)));
    let r = sim.flows[0].at_acceptor.unwrap();
    assert_eq!(sim.nodes[1].session_pins(r), Some((false, true)));
    // Released: the policy brings it back to the fast path within seconds.
    let now = sim.now;
    sim.nodes[0].pin_session(now, s, false).unwrap();
    sim.run_until(now + secs(15));
    assert_eq!(carrying_link(&sim), Some(0));
    assert_eq!(migrations(&sim).len(), 4);
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
}

#[test]
fn a_backup_stream_carries_the_session_only_while_no_normal_one_is_up() {
    // Link 1 is faster but marked backup (a metered link) by the opener;
    // the acceptor learns it from the Preference frame. The session stays
    // on the slower normal link 0, goes to the backup when link 0 dies,
    // and comes back as soon as a normal link (2) is up again.
    let mut sim = Sim::new(16, 2, Config::default());
    sim.link(0, 1, path(ms(100), RATE));
    sim.link(0, 1, path(ms(10), RATE));
    sim.keep_log = true;
    // Once both streams are up (handshakes done), before any session.
    sim.run_until(Sim::t(secs(1)));
    let backup = sim.links[1].stream_at(0).unwrap();
    let now = sim.now;
    sim.nodes[0]
        .set_stream_preference(now, backup, StreamPreference::backup())
        .unwrap();
    sim.open_flows(&[FlowSpec::new(0, 1, u64::MAX / 4, 0)]);
    sim.run_until(Sim::t(secs(30)));
    assert_eq!(carrying_link(&sim), Some(0), "never onto the backup");
    assert!(migrations(&sim).is_empty());
    let at_b = sim.links[1].stream_at(1).unwrap();
    assert_eq!(
        sim.nodes[1].stream_info(at_b).unwrap().peer_preference,
        StreamPreference::backup()
    );
    sim.act(Action::Kill(0));
    sim.run_until(Sim::t(secs(40)));
    assert_eq!(
        carrying_link(&sim),
        Some(1),
        "the backup when nothing else is up"
    );
    sim.act(Action::Connect(0, 1, path(ms(100), RATE)));
    let up = sim.now;
    sim.run_until(up + secs(15));
    let back = migrations(&sim)
        .iter()
        .map(|(t, _)| *t)
        .find(|t| *t > up)
        .map(|t| t.saturating_duration_since(up));
    println!("backup tier: back on a normal stream {back:?} after it came up");
    assert_eq!(carrying_link(&sim), Some(2), "back to the normal tier");
    assert!(back.is_some_and(|d| d <= secs(3)), "{back:?}");
    assert!(sim.flows[0].errors.is_empty(), "{:?}", sim.flows[0].errors);
}
