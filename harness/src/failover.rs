//! `astral-wan-failover`: failover of one session when its carrying path
//! goes silent (issue 12's targets on emulated paths).
//!
//! Two in-process [`Forwarder`]s with the same delay and rate cap lead from
//! node A to node B; A dials B through both (two streams, one per path)
//! and, after 2 s of keep-alive measurement, opens one `sink` session and
//! writes a known byte pattern into it: as fast as the session takes bytes
//! (saturating) or at a fixed pace. B reads, checks every byte against the
//! pattern at its offset and logs the time of each read. At `blackhole_at`
//! the path the session sends on goes `partition` (blackhole both ways:
//! no FIN, no RST, what is queued is held); the other path stays healthy
//! and up. Optionally the blackhole is lifted (`heal`: the held bytes are
//! delivered, stale ones included) `lift_after` later.
//!
//! Measured: the **gap**, from the blackhole to the read that ends B's
//! longest stall after it (data resumes on the other path); both nodes'
//! `StreamSuspect` / `StreamHealthy` / `Migrated` / `Recovered` / `StreamDown`
//! events relative to the blackhole; and at the end (A half-closes, B reads
//! to the end) whether the transfer is **exact**: B read exactly the bytes
//! A wrote, each once and in order (the pattern), and the session closed
//! gracefully.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::astral_api::{self, Event, Node, StreamId};
use crate::units::Rate;
use crate::wan::{Forwarder, LinkParams, PathControl, PathKind, PathParams};

/// `SO_RCVBUF` of the forwarders' sockets by default: 16 KiB (32 KiB with
/// the kernel's doubling, 13 ms at 20 Mbit/s). The forwarders' own default
/// ([`crate::wan::forwarder::SOCKET_RCVBUF`], 64 KiB, 128 KiB doubled) is
/// 52 ms of queue at 20 Mbit/s ahead of the emulated bottleneck, which a
/// real path does not have: at 5 ms that is twice the path's documented
/// queue (one BDP, at least 64 KiB), and every probe waits behind it.
pub const FORWARDER_RCVBUF: u32 = 16 * 1024;

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// RTT of each path (both the same).
    pub rtt: Duration,
    /// Rate cap of each path, both ways.
    pub rate: Rate,
    /// `None`: saturating writer; `Some(r)`: writes paced at `r`.
    pub pace: Option<Rate>,
    /// When the carrying path goes silent (from the first byte).
    pub blackhole_at: Duration,
    /// Lift the blackhole this long after it started (`None`: never).
    pub lift_after: Option<Duration>,
    /// How long the transfer goes on after the blackhole (or after the
    /// lift) before A half-closes.
    pub after: Duration,
    /// Both nodes' `Config::tcp_notsent_lowat` (`None`: the default,
    /// 128 KiB; `Some(0)`: the system's).
    pub notsent_lowat: Option<u32>,
    /// `SO_RCVBUF` of the forwarders' sockets
    /// (`Forwarder::start_with_rcvbuf`): queue ahead of the emulated
    /// bottleneck that a real path does not have.
    pub forwarder_rcvbuf: u32,
}

impl FailoverConfig {
    /// Defaults: `rtt`, 20 Mbit/s paths, saturating, blackhole at 5 s, 5 s
    /// after it, not lifted.
    pub fn new(rtt: Duration) -> FailoverConfig {
        FailoverConfig {
            rtt,
            rate: Rate::mbit(20),
            pace: None,
            blackhole_at: Duration::from_secs(5),
            lift_after: None,
            after: Duration::from_secs(5),
            notsent_lowat: None,
            forwarder_rcvbuf: FORWARDER_RCVBUF,
        }
    }
}

/// An event at one node, relative to the blackhole.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seen {
    /// Milliseconds after the blackhole (negative: before).
    pub at_ms: f64,
    /// "a" (the sender) or "b" (the receiver).
    pub node: &'static str,
    /// What: `suspect`, `healthy`, `migrated`, `recovering`, `recovered`,
    /// `stream-down`, `closed`.
    pub what: &'static str,
    /// Details (A's streams as path numbers; B's by first sight, `b1`, ...).
    pub detail: String,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// RTT of each path, ms.
    pub rtt_ms: f64,
    /// Rate cap of each path, Mbit/s.
    pub rate_mbit: f64,
    /// Writer pace, MB/s (`None`: saturating).
    pub pace_mbyte_s: Option<f64>,
    /// Bottleneck buffer of each path and direction, bytes.
    pub queue: usize,
    /// `SO_RCVBUF` of the forwarders' sockets, bytes (the kernel doubles
    /// it).
    pub forwarder_rcvbuf: u32,
    /// A's `dead_timeout`, seconds (the silent stream is closed then).
    pub dead_timeout_s: f64,
    /// The path the session sent on when it was blackholed (1 or 2).
    pub blackholed_path: usize,
    /// Seconds from the first byte to the blackhole.
    pub blackhole_at_s: f64,
    /// Milliseconds from the blackhole to the lift, if lifted.
    pub lifted_at_ms: Option<f64>,
    /// Milliseconds from the blackhole to the read that ended B's longest
    /// stall after it: data resumed. `None`: B read nothing after it.
    pub resumed_ms: Option<f64>,
    /// Length of that stall, ms (from B's last read before it).
    pub stall_ms: Option<f64>,
    /// Milliseconds from the blackhole to A's first `StreamSuspect` of the
    /// blackholed path.
    pub suspect_ms: Option<f64>,
    /// The path A sent on just before the half-close (0: unknown).
    pub path_at_end: usize,
    /// Payload bytes A wrote.
    pub bytes_written: u64,
    /// Payload bytes B read.
    pub bytes_read: u64,
    /// Every byte B read matched the pattern at its offset.
    pub pattern_ok: bool,
    /// B read to the end of the session.
    pub eof: bool,
    /// How A's session ended (`Graceful` expected), if it did in time.
    pub close_reason: Option<String>,
    /// Written = read, pattern ok, end of stream, graceful close.
    pub exact: bool,
    /// Retransmitted bytes (sum of A's `Recovered` events).
    pub resent_bytes: u64,
    /// Both nodes' events from 1 s before the blackhole on.
    pub events: Vec<Seen>,
}

const CHUNK: usize = 64 << 10;
const PERIOD: u64 = 251;

/// `CHUNK + PERIOD` bytes of the pattern: byte `i` of the transfer is
/// `i % 251`, so the chunk at offset `o` is `pattern[o % 251..][..len]`.
fn pattern() -> Bytes {
    (0..CHUNK as u64 + PERIOD)
        .map(|i| (i % PERIOD) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn pattern_slice(pat: &Bytes, offset: u64, len: usize) -> Bytes {
    let start = (offset % PERIOD) as usize;
    pat.slice(start..start + len)
}

fn link(rtt: Duration, rate: Rate, queue: usize) -> PathParams {
    let mut l = LinkParams::with_delay(rtt / 2);
    l.rate = Some(rate);
    l.queue = queue;
    PathParams::symmetric(l)
}

/// What B's reader saw.
#[derive(Default)]
struct ReadLog {
    reads: Vec<(Instant, u64)>,
    total: u64,
    pattern_ok: bool,
    eof: bool,
}

/// Accepts one `sink` session on `node`, checks every byte against the
/// pattern and logs each read; returns at its end.
async fn checking_sink(node: Node, log: Arc<Mutex<ReadLog>>) {
    let Some(q) = astral_api::next_query(&node).await else {
        return;
    };
    let Ok(mut s) = q.accept() else { return };
    let pat = pattern();
    log.lock().expect("not poisoned").pattern_ok = true;
    loop {
        match s.read_chunk(CHUNK).await {
            Ok(Some(b)) => {
                let now = Instant::now();
                let mut l = log.lock().expect("not poisoned");
                if b[..] != pattern_slice(&pat, l.total, b.len())[..] {
                    l.pattern_ok = false;
                }
                l.total += b.len() as u64;
                let t = l.total;
                l.reads.push((now, t));
            }
            Ok(None) => {
                log.lock().expect("not poisoned").eof = true;
                break;
            }
            Err(_) => break,
        }
    }
}

/// Collects `node`'s events with their arrival time until the node stops.
fn collect_events(node: &Node) -> Arc<Mutex<Vec<(Instant, Event)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut rx = astral_api::events(node);
    let out = seen.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(ev) => out.lock().expect("not poisoned").push((Instant::now(), ev)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            }
        }
    });
    seen
}

/// Runs one failover (inside a multi-threaded Tokio runtime).
pub async fn run(cfg: &FailoverConfig) -> Result<Report, String> {
    let queue = cfg.rate.bytes_in(cfg.rtt).max(64 << 10);
    let mut config = astral_api::Config::default();
    if let Some(l) = cfg.notsent_lowat {
        config.tcp_notsent_lowat = (l > 0).then_some(l);
    }
    let dead_timeout = config.dead_timeout;
    let b = astral_api::node_with(astral_api::identity(1), config.clone())?;
    let b_addr = astral_api::listen(&b, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let log = Arc::new(Mutex::new(ReadLog::default()));
    let reader = tokio::spawn(checking_sink(b.clone(), log.clone()));
    let io = |e: std::io::Error| e.to_string();
    let forwarder = |seed| {
        let path = PathControl::new(PathKind::Forwarder, link(cfg.rtt, cfg.rate, queue));
        Forwarder::start_with_rcvbuf("127.0.0.1:0", b_addr, path, seed, cfg.forwarder_rcvbuf)
    };
    let f1 = forwarder(0).await.map_err(io)?;
    let f2 = forwarder(0).await.map_err(io)?;
    let a = astral_api::node_with(astral_api::identity(2), config)?;
    let s1 = astral_api::connect_stream(&a, b.id(), f1.local_addr()).await?;
    let s2 = astral_api::connect_stream(&a, b.id(), f2.local_addr()).await?;
    // Both streams measured (keep-alive and probe pings) before the start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ev_a = collect_events(&a);
    let ev_b = collect_events(&b);
    let mut session = astral_api::open(&a, b.id(), "sink").await?;
    let sid = session.id();
    let start = Instant::now();
    let lift = cfg.lift_after;
    let end = start + cfg.blackhole_at + lift.unwrap_or(Duration::ZERO) + cfg.after;
    let pace = cfg.pace;
    let writer = tokio::spawn(async move {
        let pat = pattern();
        let mut written = 0u64;
        // Paced: one chunk every `tick` (at most 64 KiB, at least 10 ms).
        let mut ticker = pace.map(|r| {
            let chunk = r.bytes_in(Duration::from_millis(10)).clamp(1, CHUNK);
            let mut t = tokio::time::interval(r.time_for(chunk));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (t, chunk)
        });
        while Instant::now() < end {
            let len = match &mut ticker {
                Some((t, chunk)) => {
                    t.tick().await;
                    *chunk
                }
                None => CHUNK,
            };
            if session
                .write_chunk(pattern_slice(&pat, written, len))
                .await
                .is_err()
            {
                break;
            }
            written += len as u64;
        }
        // Half-close, then read B's end of stream: the session is done
        // (graceful) once both directions finished.
        let _ = session.shutdown().await;
        let reason = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(_)) = session.read_chunk(CHUNK).await {}
            session.closed().await
        })
        .await
        .ok();
        (written, reason)
    });
    let path_of = |s: StreamId| -> usize {
        if s == s1 {
            1
        } else if s == s2 {
            2
        } else {
            0
        }
    };

    // The blackhole, on the path the session sends on now.
    tokio::time::sleep_until((start + cfg.blackhole_at).into()).await;
    let carrying = astral_api::send_stream(&a, sid).map_or(1, path_of).max(1);
    let fwd = if carrying == 2 { &f2 } else { &f1 };
    let t0 = Instant::now();
    fwd.path().apply("partition").map_err(|e| e.to_string())?;
    let mut lifted_at = None;
    if let Some(l) = lift {
        tokio::time::sleep_until((t0 + l).into()).await;
        lifted_at = Some(Instant::now());
        fwd.path().apply("heal").map_err(|e| e.to_string())?;
    }
    tokio::time::sleep_until(end.into()).await;
    let path_at_end = astral_api::send_stream(&a, sid).map_or(0, path_of);
    let (bytes_written, close_reason) =
        match tokio::time::timeout(dead_timeout + Duration::from_secs(15), writer).await {
            Ok(Ok((w, r))) => (w, r.map(|r| format!("{r:?}"))),
            _ => return Err("the writer did not finish".into()),
        };
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    // The events up to here (not the shutdown's).
    let ev_a = std::mem::take(&mut *ev_a.lock().expect("not poisoned"));
    let ev_b = std::mem::take(&mut *ev_b.lock().expect("not poisoned"));
    astral_api::shutdown(&a);
    astral_api::shutdown(&b);

    let ms = |t: Instant| {
        if t >= t0 {
            t.duration_since(t0).as_secs_f64() * 1e3
        } else {
            -(t0.duration_since(t).as_secs_f64() * 1e3)
        }
    };
    let log = std::mem::take(&mut *log.lock().expect("not poisoned"));
    // B's longest stall that ends after the blackhole.
    let stall = log
        .reads
        .windows(2)
        .filter(|w| w[1].0 > t0)
        .max_by_key(|w| w[1].0.duration_since(w[0].0))
        .map(|w| {
            (
                ms(w[1].0),
                w[1].0.duration_since(w[0].0).as_secs_f64() * 1e3,
            )
        });

    let mut events = Vec::new();
    let mut b_streams: Vec<StreamId> = Vec::new();
    let mut resent_bytes = 0;
    let mut suspect_ms = None;
    let blackholed = if carrying == 2 { s2 } else { s1 };
    for (node, evs) in [("a", &ev_a), ("b", &ev_b)] {
        for (t, ev) in evs {
            if ms(*t) < -1000.0 {
                continue;
            }
            let mut name = |s: StreamId| {
                if node == "a" {
                    format!("path {}", path_of(s))
                } else {
                    if !b_streams.contains(&s) {
                        b_streams.push(s);
                    }
                    let i = b_streams.iter().position(|&x| x == s).map_or(0, |i| i + 1);
                    format!("b{i}")
                }
            };
            let (what, detail) = match ev {
                Event::StreamSuspect { stream } => {
                    if node == "a" && *stream == blackholed && suspect_ms.is_none() {
                        suspect_ms = Some(ms(*t));
                    }
                    ("suspect", name(*stream))
                }
                Event::StreamHealthy { stream } => ("healthy", name(*stream)),
                Event::StreamDown { stream, reason, .. } => {
                    ("stream-down", format!("{}: {reason:?}", name(*stream)))
                }
                Event::Migrated { from, to, .. } => {
                    ("migrated", format!("{} -> {}", name(*from), name(*to)))
                }
                Event::Recovering { .. } => ("recovering", String::new()),
                Event::Recovered {
                    resent_bytes: r, ..
                } => {
                    if node == "a" {
                        resent_bytes += r;
                    }
                    ("recovered", format!("resent {r} B"))
                }
                Event::SessionClosed { reason, .. } => ("closed", format!("{reason:?}")),
                _ => continue,
            };
            events.push(Seen {
                at_ms: ms(*t),
                node,
                what,
                detail,
            });
        }
    }
    events.sort_by(|x, y| x.at_ms.total_cmp(&y.at_ms));
    let exact = log.pattern_ok
        && log.eof
        && log.total == bytes_written
        && close_reason.as_deref() == Some("Graceful");
    Ok(Report {
        rtt_ms: cfg.rtt.as_secs_f64() * 1e3,
        rate_mbit: cfg.rate.bits_per_sec() as f64 / 1e6,
        pace_mbyte_s: cfg.pace.map(|r| r.bytes_per_sec() / 1e6),
        queue,
        forwarder_rcvbuf: cfg.forwarder_rcvbuf,
        dead_timeout_s: dead_timeout.as_secs_f64(),
        blackholed_path: carrying,
        blackhole_at_s: t0.duration_since(start).as_secs_f64(),
        lifted_at_ms: lifted_at.map(ms),
        resumed_ms: stall.map(|s| s.0),
        stall_ms: stall.map(|s| s.1),
        suspect_ms,
        path_at_end,
        bytes_written,
        bytes_read: log.total,
        pattern_ok: log.pattern_ok,
        eof: log.eof,
        close_reason,
        exact,
        resent_bytes,
        events,
    })
}
