//! `astral-wan-placement`: automatic placement (issue 17) on two emulated
//! paths between two nodes.
//!
//! Two in-process [`Forwarder`]s, each with its own delay, rate and queue,
//! lead from node A to node B; A dials B through both, so the peer has two
//! streams, one per path. A opens one `sink` session and writes into it as
//! fast as the session takes bytes (64 KiB chunks, zero-copy); B reads and
//! counts. Nothing migrates the session but the policy (default `Config`).
//! Every 100 ms the run samples the bytes B has read and the stream A sends
//! on; both nodes' `Migrated` events are logged with their time. A
//! scenario may change one path at `change_at` (the forwarder's command
//! language, e.g. `delay 5ms`: one-way).
//!
//! Scenarios (issue 17's targets):
//! * [`Scenario::Identical`]: two identical rate-capped paths (default 40
//!   ms RTT, 8 Mbit/s, one BDP of queue), saturating upload: count the
//!   automatic migrations (target 0).
//! * [`Scenario::Faster`]: carrying path 100 ms, the other 150 ms; at `change_at` the idle
//!   path drops to 10 ms (10× faster than the carrying one): time until A moves the session
//!   (target ≤ 5 s) and goodput around the move (no dip).
//! * [`Scenario::Slower`]: carrying path 100 ms, the other 120 ms; at
//!   `change_at` the carrying path becomes 3× slower (300 ms): time until
//!   A moves off it (target ≤ 5 s).
//!
//! [`PlacementConfig::jitter`] adds `± jitter` to each direction of both
//! paths (order kept, as the forwarder's `jitter` command): `identical`
//! with 10 ms is issue 17's "equal paths with ±50 % jitter" (20 ms one
//! way ± 10 ms; target 0 migrations).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::astral_api::{self, Event, Node, StreamId};
use crate::units::Rate;
use crate::wan::{Forwarder, LinkParams, PathParams};

/// Which placement target to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Two identical rate-capped paths, one saturating transfer: migrations.
    Identical,
    /// The idle path becomes 10× faster: time to move there.
    Faster,
    /// The carrying path becomes 3× slower: time to move off it.
    Slower,
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct PlacementConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// Length of the run (from the first byte).
    pub duration: Duration,
    /// When the scenario changes a path (from the first byte).
    pub change_at: Duration,
    /// Bottleneck rate of each path, both ways.
    pub rate: Rate,
    /// A fixed session window (both nodes; `None`: the default, auto-tuned).
    pub window: Option<u32>,
    /// Jitter half-width added to each direction of both paths (zero:
    /// none).
    pub jitter: Duration,
}

impl PlacementConfig {
    /// The defaults of `scenario`: identical 180 s at 8 Mbit/s; faster and
    /// slower 40 s with the change at 20 s, 20 Mbit/s.
    pub fn new(scenario: Scenario) -> PlacementConfig {
        match scenario {
            Scenario::Identical => PlacementConfig {
                scenario,
                duration: Duration::from_secs(180),
                change_at: Duration::MAX,
                rate: Rate::mbit(8),
                window: None,
                jitter: Duration::ZERO,
            },
            Scenario::Faster | Scenario::Slower => PlacementConfig {
                scenario,
                duration: Duration::from_secs(40),
                change_at: Duration::from_secs(20),
                rate: Rate::mbit(20),
                window: None,
                jitter: Duration::ZERO,
            },
        }
    }

    /// RTTs of path 1 (the first stream: new sessions go there when the
    /// paths tie) and path 2 at the start; the change (`(path, command)`).
    fn paths(&self) -> (Duration, Duration, Option<(usize, &'static str)>) {
        let ms = Duration::from_millis;
        match self.scenario {
            Scenario::Identical => (ms(40), ms(40), None),
            Scenario::Faster => (ms(100), ms(150), Some((2, "delay 5ms"))),
            Scenario::Slower => (ms(100), ms(120), Some((1, "delay 150ms"))),
        }
    }
}

/// A migration seen at one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Move {
    /// Seconds from the first byte.
    pub at_s: f64,
    /// "a" (the sender) or "b" (the receiver).
    pub node: &'static str,
    /// Path the session left (1 or 2; 0 if unknown).
    pub from_path: usize,
    /// Path it went to.
    pub to_path: usize,
    /// A's `(srtt, path delay)` of path 1 and path 2 when the move was
    /// seen, ms.
    pub a_rtt_ms: [(f64, f64); 2],
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// Seconds of transfer.
    pub duration_s: f64,
    /// Each path's RTT at the start, ms; rate, Mbit/s; queue, bytes.
    pub path_rtt_ms: [f64; 2],
    /// Rate cap of each path, Mbit/s.
    pub rate_mbit: f64,
    /// Bottleneck buffer of each path and direction, bytes.
    pub queue: usize,
    /// Fixed session window, bytes (`None`: auto-tuned).
    pub window: Option<u32>,
    /// Jitter half-width on each direction of both paths, ms.
    pub jitter_ms: f64,
    /// The change and when (seconds), if any.
    pub change: Option<(String, f64)>,
    /// Every migration, both nodes, in order.
    pub moves: Vec<Move>,
    /// Migrations at A (the sender, whose policy decides).
    pub moves_a: usize,
    /// Migrations at B.
    pub moves_b: usize,
    /// Seconds from the change to A's first move afterwards.
    pub time_to_move_s: Option<f64>,
    /// Payload bytes B read.
    pub bytes: u64,
    /// Mean goodput, Mbit/s.
    pub goodput_mbit: f64,
    /// Goodput of each 500 ms slice, Mbit/s.
    pub slices_mbit: Vec<f64>,
    /// Median slice of the 10 s before the change, Mbit/s.
    pub before_mbit: Option<f64>,
    /// Lowest slice from 1 s before A's move to 2 s after it, Mbit/s.
    pub around_move_min_mbit: Option<f64>,
    /// Seconds the session's sending stream was on path 1 and on path 2
    /// (A's view, 100 ms samples).
    pub time_on_path_s: [f64; 2],
    /// A's drain probes on path 1 and path 2 (docs/MIGRATION.md):
    /// (probes, of them confirming, seconds data was withheld).
    pub drain_probes: [(u64, u64, f64); 2],
}

const SLICE: Duration = Duration::from_millis(500);
const SAMPLE: Duration = Duration::from_millis(100);
const CHUNK: usize = 64 << 10;

fn link(rtt: Duration, rate: Rate, queue: usize, jitter: Duration) -> PathParams {
    let mut l = LinkParams::with_delay(rtt / 2);
    l.rate = Some(rate);
    l.queue = queue;
    l.jitter = jitter;
    PathParams::symmetric(l)
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied()
}

/// Serves `sink` sessions on `node`: reads each to its end, adding what it
/// reads to `count`.
async fn serve_counting_sink(node: Node, count: Arc<AtomicU64>) {
    while let Some(q) = astral_api::next_query(&node).await {
        let Ok(mut s) = q.accept() else { continue };
        let count = count.clone();
        tokio::spawn(async move {
            while let Ok(Some(b)) = s.read_chunk(CHUNK).await {
                count.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        });
    }
}

/// Runs one scenario (inside a multi-threaded Tokio runtime).
pub async fn run(cfg: &PlacementConfig) -> Result<Report, String> {
    let (rtt1, rtt2, change) = cfg.paths();
    let queue = cfg.rate.bytes_in(rtt1.max(rtt2)).max(64 << 10);
    let config = cfg
        .window
        .map_or_else(astral_api::Config::default, astral_api::fixed_window);
    let b = astral_api::node_with(astral_api::identity(1), config.clone())?;
    let b_addr = astral_api::listen(&b, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let count = Arc::new(AtomicU64::new(0));
    tokio::spawn(serve_counting_sink(b.clone(), count.clone()));
    let io = |e: std::io::Error| e.to_string();
    let f1 = Forwarder::start(
        "127.0.0.1:0",
        b_addr,
        link(rtt1, cfg.rate, queue, cfg.jitter),
    )
    .await
    .map_err(io)?;
    let f2 = Forwarder::start(
        "127.0.0.1:0",
        b_addr,
        link(rtt2, cfg.rate, queue, cfg.jitter),
    )
    .await
    .map_err(io)?;
    let a = astral_api::node_with(astral_api::identity(2), config)?;
    let s1 = astral_api::connect_stream(&a, b.id(), f1.local_addr()).await?;
    let s2 = astral_api::connect_stream(&a, b.id(), f2.local_addr()).await?;
    // Both streams measured (keep-alive and probe pings) before the start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ev_a = astral_api::events(&a);
    let mut ev_b = astral_api::events(&b);
    let mut session = astral_api::open(&a, b.id(), "sink").await?;
    let sid = session.id();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![0x5au8; CHUNK]);
            while !stop.load(Ordering::Relaxed) {
                if session.write_chunk(chunk.clone()).await.is_err() {
                    break;
                }
            }
            drop(session);
        })
    };
    let start = Instant::now();
    let path_of = |s: StreamId| {
        if s == s1 {
            1
        } else if s == s2 {
            2
        } else {
            0
        }
    };
    let rtts = || {
        [
            astral_api::stream_rtt_ms(&a, s1),
            astral_api::stream_rtt_ms(&a, s2),
        ]
    };
    let mut moves = Vec::new();
    let mut b_streams: Vec<StreamId> = Vec::new();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut on_path = [0u32; 2];
    let mut changed_at = None;
    let mut next = start;
    loop {
        next += SAMPLE;
        tokio::time::sleep_until(next.into()).await;
        let t = start.elapsed();
        if t >= cfg.duration {
            break;
        }
        if let (Some((path, cmd)), None) = (change, changed_at) {
            if t >= cfg.change_at {
                let f = if path == 1 { &f1 } else { &f2 };
                f.path().apply(cmd).map_err(|e| e.to_string())?;
                changed_at = Some(t.as_secs_f64());
            }
        }
        samples.push((t.as_secs_f64(), count.load(Ordering::Relaxed)));
        if let Some(s) = astral_api::send_stream(&a, sid) {
            match path_of(s) {
                1 => on_path[0] += 1,
                2 => on_path[1] += 1,
                _ => {}
            }
        }
        while let Ok(ev) = ev_a.try_recv() {
            if let Event::Migrated { session, from, to } = ev {
                if session == sid {
                    moves.push(Move {
                        at_s: t.as_secs_f64(),
                        node: "a",
                        from_path: path_of(from),
                        to_path: path_of(to),
                        a_rtt_ms: rtts(),
                    });
                }
            }
        }
        while let Ok(ev) = ev_b.try_recv() {
            if let Event::Migrated { from, to, .. } = ev {
                // B's stream ids are its own: number them by first sight
                // (B has only this session).
                for s in [from, to] {
                    if !b_streams.contains(&s) {
                        b_streams.push(s);
                    }
                }
                let idx = |s| b_streams.iter().position(|&x| x == s).map_or(0, |i| i + 1);
                moves.push(Move {
                    at_s: t.as_secs_f64(),
                    node: "b",
                    from_path: idx(from),
                    to_path: idx(to),
                    a_rtt_ms: rtts(),
                });
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let bytes = count.load(Ordering::Relaxed);
    let drain_probes = [
        astral_api::stream_drain_probes(&a, s1),
        astral_api::stream_drain_probes(&a, s2),
    ];
    astral_api::shutdown(&a);
    astral_api::shutdown(&b);

    // 500 ms slices from the 100 ms samples.
    let per_slice = (SLICE.as_millis() / SAMPLE.as_millis()) as usize;
    let mut slices = Vec::new();
    let mut prev = 0u64;
    for chunk in samples.chunks(per_slice) {
        let last = chunk.last().map_or(prev, |s| s.1);
        let secs = chunk.len() as f64 * SAMPLE.as_secs_f64();
        slices.push((last - prev) as f64 * 8.0 / secs / 1e6);
        prev = last;
    }
    let slice_at = |t: f64| (t / SLICE.as_secs_f64()) as usize;
    let moves_a = moves.iter().filter(|m| m.node == "a").count();
    let moves_b = moves.iter().filter(|m| m.node == "b").count();
    let first_move = changed_at.and_then(|c| {
        moves
            .iter()
            .find(|m| m.node == "a" && m.at_s >= c)
            .map(|m| (m.at_s, m.at_s - c))
    });
    let before = changed_at.and_then(|c| {
        let (lo, hi) = (slice_at((c - 10.0).max(0.0)), slice_at(c));
        median(slices.get(lo..hi)?)
    });
    let around = first_move.and_then(|(m, _)| {
        let (lo, hi) = (slice_at((m - 1.0).max(0.0)), slice_at(m + 2.0) + 1);
        slices
            .get(lo..hi.min(slices.len()))?
            .iter()
            .copied()
            .min_by(f64::total_cmp)
    });
    Ok(Report {
        scenario: cfg.scenario,
        duration_s: elapsed,
        path_rtt_ms: [rtt1.as_secs_f64() * 1e3, rtt2.as_secs_f64() * 1e3],
        rate_mbit: cfg.rate.bits_per_sec() as f64 / 1e6,
        queue,
        window: cfg.window,
        jitter_ms: cfg.jitter.as_secs_f64() * 1e3,
        change: change
            .zip(changed_at)
            .map(|((p, cmd), at)| (format!("path {p}: {cmd}"), at)),
        moves,
        moves_a,
        moves_b,
        time_to_move_s: first_move.map(|(_, d)| d),
        bytes,
        goodput_mbit: bytes as f64 * 8.0 / elapsed / 1e6,
        slices_mbit: slices,
        before_mbit: before,
        around_move_min_mbit: around,
        time_on_path_s: [
            f64::from(on_path[0]) * SAMPLE.as_secs_f64(),
            f64::from(on_path[1]) * SAMPLE.as_secs_f64(),
        ],
        drain_probes,
    })
}
