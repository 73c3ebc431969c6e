//! Side-by-side comparison of astral-rs's peers (DESIGN.md §12).
//!
//! Contenders, all over loopback, in one process, on one tokio runtime with
//! two workers (client and server share it, so CPU time covers both ends):
//! (a) raw TCP, (b) Noise XK (snow) over TCP, (c) yamux over (b),
//! (d) quinn + rustls with the default suites and with ChaCha20 only,
//! (e) astral over astral-tokio (same runtime), (f) astral over astral-mio
//! (its own loop threads; see `astral.rs` for the bridge).
//!
//! Workloads: one session × N bytes; 64 sessions × N/64 bytes (one
//! connection if the contender multiplexes, else 64 connections, labelled);
//! 1-byte echo round trips (again with the whole process pinned to one
//! CPU); sequential session set-ups; N idle sessions over
//! one connection (live heap per session per end, from a counting global
//! allocator, and the time to open them). Each contender runs each workload
//! once per repetition, round-robin.
//!
//! ```text
//! cargo bench -p astral-compare --bench compare            table on stdout
//! cargo bench -p astral-compare --bench compare -- --json  JSON on stdout, table on stderr
//! COMPARE_QUICK=1                       64 MiB, 2,000 rounds, 100 handshakes, 1 rep
//! (without cargo bench's `--bench` flag, e.g. `cargo test --benches`: a
//! 1 MiB / 50 rounds / 5 set-ups smoke run, so tests never run the full thing)
//! COMPARE_BYTES=256M COMPARE_ROUNDS=N COMPARE_HANDSHAKES=N COMPARE_REPS=N
//! COMPARE_SESSIONS=64 COMPARE_WRITE=64K COMPARE_ONLY=snow,quinn
//! COMPARE_IDLE=10K,100K (idle session counts; 0 or empty: none)
//! COMPARE_PINNED=0 (no pinned echo; default: on, on the first allowed CPU)
//! COMPARE_ASTRAL_WINDOW=4M (astral recv_window = send_buffer)
//! COMPARE_ASTRAL_CIPHER=auto|aes|chacha (auto: AES-256-GCM if the CPU has AES)
//! ```
//!
//! Adding a contender: implement [`contender::Transport`] (a byte-stream
//! transport; all workloads are then shared) or [`contender::Contender`]
//! (anything else), and add one line to [`contenders`].

mod astral;
mod contender;
mod heap;
mod snowio;
mod sys;
mod transports;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use contender::{streamed, Contender, Res};
use transports::{QuicSuites, Quinn, RawTcp, SnowTcp, YamuxSnow};

/// Every contender, in the order they are run and reported.
fn contenders(cfg: &Config) -> Res<Vec<Box<dyn Contender>>> {
    let snow = SnowTcp::new()?;
    let astral_cfg = astral::astral_config(cfg.astral_window, cfg.astral_aes);
    Ok(vec![
        streamed(RawTcp),
        streamed(snow.clone()),
        streamed(YamuxSnow::new(snow)),
        streamed(Quinn::new(QuicSuites::Default)?),
        streamed(Quinn::new(QuicSuites::ChaCha20)?),
        streamed(astral::AstralTokio::new(astral_cfg.clone())),
        Box::new(astral::AstralMio::new(astral_cfg)),
    ])
}

/// Name of the contender the ratio column is relative to.
const BASELINE: &str = "snow-tcp";

struct Config {
    bytes: u64,
    sessions: usize,
    write_size: usize,
    rounds: usize,
    handshakes: usize,
    reps: usize,
    quick: bool,
    json: bool,
    only: Vec<String>,
    /// Idle-session counts.
    idle: Vec<usize>,
    /// CPU for the pinned echo (`None`: not run).
    pinned_cpu: Option<usize>,
    astral_window: u32,
    /// Whether astral offers AES-256-GCM (`None`: the core's default).
    astral_aes: Option<bool>,
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A count with an optional decimal K/M suffix (10K = 10,000).
fn parse_count(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_lowercase() {
        'k' => (&s[..s.len() - 1], 1_000),
        'm' => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mult)
}

fn env_size(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => parse_size(&v).unwrap_or_else(|| panic!("{name}={v:?}: expected e.g. 64M, 1G")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Self {
        let quick = std::env::var("COMPARE_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        // `cargo bench` passes `--bench`; without it (`cargo test --benches`,
        // `--all-targets`) this is a smoke test, not a measurement.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let (bytes, rounds, handshakes, reps) = if smoke {
            (1 << 20, 50, 5, 1)
        } else if quick {
            (64 << 20, 2_000, 100, 1)
        } else {
            (1 << 30, 20_000, 500, 3)
        };
        let to_usize = |v: u64| usize::try_from(v).expect("value fits in usize");
        Self {
            bytes: env_size("COMPARE_BYTES", bytes),
            sessions: to_usize(env_size("COMPARE_SESSIONS", 64)).max(1),
            write_size: to_usize(env_size("COMPARE_WRITE", 64 << 10)).max(1),
            rounds: to_usize(env_size("COMPARE_ROUNDS", rounds)).max(1),
            handshakes: to_usize(env_size("COMPARE_HANDSHAKES", handshakes)).max(1),
            reps: to_usize(env_size("COMPARE_REPS", reps)).max(1),
            quick,
            // `cargo bench -- --json` also passes `--bench`: ignore unknown args.
            json: std::env::args().skip(1).any(|a| a == "--json"),
            only: std::env::var("COMPARE_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            idle: match std::env::var("COMPARE_IDLE") {
                Ok(v) => v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        parse_count(s)
                            .unwrap_or_else(|| panic!("COMPARE_IDLE={v:?}: e.g. 10K,100K"))
                    })
                    .filter(|&n| n > 0)
                    .collect(),
                Err(_) if smoke => vec![100],
                Err(_) if quick => vec![10_000],
                Err(_) => vec![10_000, 100_000],
            },
            pinned_cpu: if std::env::var("COMPARE_PINNED").is_ok_and(|v| v.trim() == "0") {
                None
            } else {
                sys::first_cpu()
            },
            astral_window: u32::try_from(env_size("COMPARE_ASTRAL_WINDOW", 4 << 20))
                .expect("COMPARE_ASTRAL_WINDOW fits in u32"),
            astral_aes: match std::env::var("COMPARE_ASTRAL_CIPHER").as_deref() {
                Err(_) | Ok("" | "auto") => None,
                Ok("chacha") => Some(false),
                Ok("aes") => Some(true),
                Ok(v) => panic!("COMPARE_ASTRAL_CIPHER={v:?}: auto, aes or chacha"),
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Bulk1,
    BulkN,
    Echo,
    /// The echo with every thread of the process pinned to that CPU.
    EchoPinned(usize),
    Handshake,
    /// That many idle sessions over one connection.
    Idle(usize),
}

fn workloads(cfg: &Config) -> Vec<Workload> {
    let mut w = vec![Workload::Bulk1, Workload::BulkN, Workload::Echo];
    w.extend(cfg.pinned_cpu.map(Workload::EchoPinned));
    w.push(Workload::Handshake);
    w.extend(cfg.idle.iter().map(|&n| Workload::Idle(n)));
    w
}

fn count_label(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

impl Workload {
    fn key(self) -> String {
        match self {
            Workload::Bulk1 => "bulk_1".into(),
            Workload::BulkN => "bulk_n".into(),
            Workload::Echo => "echo".into(),
            Workload::EchoPinned(_) => "echo_pinned".into(),
            Workload::Handshake => "handshake".into(),
            Workload::Idle(n) => format!("idle_{}", count_label(n)),
        }
    }
}

/// One contender × workload × repetition.
struct Sample {
    /// Bulk: goodput MB/s. Echo: p50 µs. Handshake: set-ups per second.
    primary: f64,
    /// Echo: p99 µs. Handshake: p50 set-up latency µs. Idle: ms to open
    /// all sessions.
    secondary: Option<f64>,
    /// Idle only: ms until every session had its first round trip, and the
    /// raw heap figures.
    idle: Option<IdleExtra>,
    /// Process CPU (user + sys) seconds over the workload.
    cpu_s: f64,
    /// Bulk: CPU s per GB (10^9 bytes). Echo / handshake: CPU µs per op.
    cpu_norm: f64,
    wall_s: f64,
    /// Peak RSS during the workload (VmHWM reset before it), KiB, if the
    /// kernel lets us reset it; else `None`.
    peak_rss_kib: Option<u64>,
    /// VmRSS when the workload started, KiB (memory kept from earlier
    /// workloads: allocator caches, runtime), so peak − start is its growth.
    start_rss_kib: Option<u64>,
    /// getrusage ru_maxrss after the workload (process lifetime peak), KiB.
    maxrss_kib: u64,
    mode: Option<String>,
}

#[derive(Clone, Copy)]
struct IdleExtra {
    ready_ms: f64,
    heap_bytes: i64,
    heap_allocs: i64,
    heap_bytes_with_conn: i64,
    /// Live allocations per session per end.
    allocs_per_end: f64,
}

struct Cell {
    samples: Vec<Sample>,
    errors: Vec<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e6
}

/// `Ok(None)`: the contender does not run this workload.
fn run_one(
    c: &dyn Contender,
    w: Workload,
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
) -> Res<Option<Sample>> {
    // Hand freed memory of earlier workloads back to the kernel so that
    // RSS figures start from what is live.
    sys::trim_heap();
    let peak_reset = sys::reset_peak_rss();
    let start_rss_kib = sys::rss_kib();
    let before = sys::usage();
    let t0 = std::time::Instant::now();
    let mut idle = None;
    let (primary, secondary, ops, mode) = match w {
        Workload::Bulk1 | Workload::BulkN => {
            let sessions = if w == Workload::Bulk1 {
                1
            } else {
                cfg.sessions
            };
            let b = c.bulk(rt, cfg.bytes, sessions, cfg.write_size)?;
            let mbps = b.bytes as f64 / b.elapsed.as_secs_f64() / 1e6;
            (mbps, None, b.bytes as f64 / 1e9, Some(b.mode))
        }
        Workload::Echo | Workload::EchoPinned(_) => {
            let _pinned = match w {
                Workload::EchoPinned(cpu) => {
                    Some(sys::pin_process(cpu).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?)
                }
                _ => None,
            };
            let mut lat = c.echo(rt, cfg.rounds)?;
            lat.sort_unstable();
            let n = lat.len() as f64;
            (percentile(&lat, 0.5), Some(percentile(&lat, 0.99)), n, None)
        }
        Workload::Handshake => {
            let mut lat = c.handshakes(rt, cfg.handshakes)?;
            let total: f64 = lat.iter().map(Duration::as_secs_f64).sum();
            lat.sort_unstable();
            let n = lat.len() as f64;
            (n / total, Some(percentile(&lat, 0.5)), n, None)
        }
        Workload::Idle(n) => {
            let Some(r) = c.idle(rt, n)? else {
                return Ok(None);
            };
            let ends = 2.0 * r.sessions as f64;
            idle = Some(IdleExtra {
                ready_ms: r.ready.as_secs_f64() * 1e3,
                heap_bytes: r.heap.bytes,
                heap_allocs: r.heap.allocs,
                heap_bytes_with_conn: r.heap_with_conn.bytes,
                allocs_per_end: r.heap.allocs as f64 / ends,
            });
            (
                r.heap.bytes as f64 / ends,
                Some(r.open.as_secs_f64() * 1e3),
                r.sessions as f64,
                Some(format!("{} streams / 1 conn", r.sessions)),
            )
        }
    };
    let wall_s = t0.elapsed().as_secs_f64();
    let after = sys::usage();
    let cpu_s = after.cpu_s - before.cpu_s;
    let cpu_norm = match w {
        Workload::Bulk1 | Workload::BulkN => cpu_s / ops,
        _ => cpu_s / ops * 1e6,
    };
    Ok(Some(Sample {
        primary,
        secondary,
        idle,
        cpu_s,
        cpu_norm,
        wall_s,
        peak_rss_kib: if peak_reset {
            sys::peak_rss_kib()
        } else {
            None
        },
        start_rss_kib,
        maxrss_kib: after.maxrss_kib,
        mode,
    }))
}

fn growth_kib(s: &Sample) -> Option<f64> {
    Some(s.peak_rss_kib? as f64 - s.start_rss_kib? as f64)
}

fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// (median, min, max)
fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

fn stats_json(v: Vec<f64>) -> Value {
    match stats(v) {
        Some((med, min, max)) => json!({ "median": med, "min": min, "max": max }),
        None => Value::Null,
    }
}

fn fmt_range(s: Option<(f64, f64, f64)>, reps: usize, prec: usize) -> String {
    match s {
        None => "n/a".into(),
        Some((m, lo, hi)) if reps > 1 => format!("{m:.prec$} ({lo:.prec$}–{hi:.prec$})"),
        Some((m, _, _)) => format!("{m:.prec$}"),
    }
}

fn main() {
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let all = {
        let _guard = rt.enter();
        contenders(&cfg).expect("building contenders")
    };
    let contenders: Vec<Box<dyn Contender>> = all
        .into_iter()
        .filter(|c| cfg.only.is_empty() || cfg.only.iter().any(|o| c.name().contains(o.as_str())))
        .collect();
    let names: Vec<String> = contenders.iter().map(|c| c.name()).collect();

    eprintln!(
        "compare: {} contenders, {} B payload, {} sessions, write {} B, {} rounds, {} handshakes, {} reps{}",
        contenders.len(),
        cfg.bytes,
        cfg.sessions,
        cfg.write_size,
        cfg.rounds,
        cfg.handshakes,
        cfg.reps,
        if cfg.quick { " (quick)" } else { "" }
    );

    let load_start = sys::loadavg();
    let workloads = workloads(&cfg);
    // cells[workload][contender]
    let mut cells: Vec<Vec<Cell>> = workloads
        .iter()
        .map(|_| {
            (0..contenders.len())
                .map(|_| Cell {
                    samples: Vec::new(),
                    errors: Vec::new(),
                })
                .collect()
        })
        .collect();

    let run_start = std::time::Instant::now();
    for rep in 0..cfg.reps {
        for (wi, &w) in workloads.iter().enumerate() {
            // Round-robin, starting one further each repetition.
            for k in 0..contenders.len() {
                let ci = (k + rep) % contenders.len();
                let c = contenders[ci].as_ref();
                match run_one(c, w, &cfg, &rt) {
                    Ok(None) => {}
                    Ok(Some(s)) => {
                        eprintln!(
                            "  rep {} {:<10} {:<13} {:>10.1}  cpu {:.2}s  wall {:.2}s",
                            rep + 1,
                            w.key(),
                            names[ci],
                            s.primary,
                            s.cpu_s,
                            s.wall_s
                        );
                        cells[wi][ci].samples.push(s);
                    }
                    Err(e) => {
                        eprintln!(
                            "  rep {} {:<10} {:<13} ERROR {e}",
                            rep + 1,
                            w.key(),
                            names[ci]
                        );
                        cells[wi][ci].errors.push(e.to_string());
                    }
                }
            }
        }
    }
    let total_s = run_start.elapsed().as_secs_f64();
    let run = Run {
        cfg: &cfg,
        workloads: &workloads,
        names: &names,
        cells: &cells,
        total_s,
        load: [load_start, sys::loadavg()],
    };

    let table = tables(&run);
    if cfg.json {
        // JSON on stdout; the table still goes to the terminal.
        eprint!("{table}");
        println!("{}", to_json(&run));
    } else {
        print!("{table}");
    }
}

/// Everything a report needs.
struct Run<'a> {
    cfg: &'a Config,
    workloads: &'a [Workload],
    names: &'a [String],
    cells: &'a [Vec<Cell>],
    total_s: f64,
    /// /proc/loadavg (1, 5, 15 min) at the start and at the end.
    load: [Option<[f64; 3]>; 2],
}

fn machine() -> Value {
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": sys::cpu_model(),
        "tokio_workers": 2,
    })
}

fn to_json(run: &Run) -> Value {
    let (cfg, names, cells, total_s) = (run.cfg, run.names, run.cells, run.total_s);
    let mut results = Vec::new();
    for (wi, w) in run.workloads.iter().enumerate() {
        for (ci, name) in names.iter().enumerate() {
            let cell = &cells[wi][ci];
            let col = |f: &dyn Fn(&Sample) -> Option<f64>| -> Value {
                stats_json(cell.samples.iter().filter_map(f).collect())
            };
            let (primary_key, secondary_key, norm_key) = match w {
                Workload::Bulk1 | Workload::BulkN => ("goodput_mb_s", None, "cpu_s_per_gb"),
                Workload::Echo | Workload::EchoPinned(_) => {
                    ("p50_us", Some("p99_us"), "cpu_us_per_round")
                }
                Workload::Handshake => ("per_s", Some("p50_us"), "cpu_us_per_handshake"),
                Workload::Idle(_) => (
                    "heap_bytes_per_session_per_end",
                    Some("open_ms"),
                    "cpu_us_per_session",
                ),
            };
            if cell.samples.is_empty() && cell.errors.is_empty() {
                continue; // not run by this contender
            }
            let reps: Vec<Value> = cell
                .samples
                .iter()
                .map(|s| {
                    let mut o = json!({
                        primary_key: s.primary,
                        "cpu_s": s.cpu_s,
                        norm_key: s.cpu_norm,
                        "wall_s": s.wall_s,
                        "peak_rss_kib": s.peak_rss_kib,
                        "start_rss_kib": s.start_rss_kib,
                        "ru_maxrss_kib": s.maxrss_kib,
                    });
                    if let (Some(k), Some(v)) = (secondary_key, s.secondary) {
                        o[k] = json!(v);
                    }
                    if let Some(x) = s.idle {
                        o["ready_ms"] = json!(x.ready_ms);
                        o["heap_bytes"] = json!(x.heap_bytes);
                        o["heap_allocs"] = json!(x.heap_allocs);
                        o["heap_bytes_with_conn"] = json!(x.heap_bytes_with_conn);
                        o["allocs_per_session_per_end"] = json!(x.allocs_per_end);
                    }
                    o
                })
                .collect();
            let mut summary = json!({
                primary_key: col(&|s| Some(s.primary)),
                "cpu_s": col(&|s| Some(s.cpu_s)),
                norm_key: col(&|s| Some(s.cpu_norm)),
                "peak_rss_kib": col(&|s| s.peak_rss_kib.map(|v| v as f64)),
                "rss_growth_kib": col(&|s| growth_kib(s)),
                "ru_maxrss_kib": col(&|s| Some(s.maxrss_kib as f64)),
            });
            if let Some(k) = secondary_key {
                summary[k] = col(&|s| s.secondary);
            }
            if matches!(w, Workload::Idle(_)) {
                summary["ready_ms"] = col(&|s| Some(s.idle?.ready_ms));
                summary["allocs_per_session_per_end"] = col(&|s| Some(s.idle?.allocs_per_end));
                let n = match w {
                    Workload::Idle(n) => *n as f64,
                    _ => 1.0,
                };
                summary["heap_bytes_with_conn_per_session_per_end"] =
                    col(&|s| Some(s.idle?.heap_bytes_with_conn as f64 / (2.0 * n)));
            }
            let mut result = json!({
                "workload": w.key(),
                "contender": name,
                "mode": cell.samples.first().and_then(|s| s.mode.clone()),
                "summary": summary,
                "reps": reps,
                "errors": cell.errors,
            });
            if let Workload::EchoPinned(cpu) = w {
                result["label"] = json!(format!("1-byte echo, pinned to CPU {cpu}"));
                result["pinned_cpu"] = json!(cpu);
            }
            results.push(result);
        }
    }
    let mut machine = machine();
    machine["loadavg_start"] = json!(run.load[0]);
    machine["loadavg_end"] = json!(run.load[1]);
    json!({
        "machine": machine,
        "targets": targets(run).into_iter().map(|t| json!({
            "target": t.what,
            "measured": t.measured,
            "ratio": t.ratio,
            "met": t.met,
        })).collect::<Vec<_>>(),
        "config": {
            "bytes": cfg.bytes,
            "sessions": cfg.sessions,
            "write_size": cfg.write_size,
            "echo_rounds": cfg.rounds,
            "handshakes": cfg.handshakes,
            "reps": cfg.reps,
            "quick": cfg.quick,
            "idle_sessions": cfg.idle,
            "pinned_cpu": cfg.pinned_cpu,
            "astral_window": cfg.astral_window,
            "astral_cipher": astral::astral_cipher(&astral::astral_config(cfg.astral_window, cfg.astral_aes)),
        },
        "units": {
            "goodput_mb_s": "10^6 payload bytes per second",
            "cpu_s_per_gb": "process user+sys seconds per 10^9 payload bytes (client and server together)",
            "peak_rss_kib": "VmHWM during the workload (reset via /proc/self/clear_refs before it)",
            "start_rss_kib": "VmRSS when the workload started (kept from earlier workloads)",
            "rss_growth_kib": "peak_rss_kib - start_rss_kib",
            "ru_maxrss_kib": "getrusage(RUSAGE_SELF).ru_maxrss after the workload: process lifetime peak",
            "heap_bytes_per_session_per_end": "live heap growth (bytes requested from malloc, counting global allocator) while N sessions are held idle over one connection, measured from after the connection is up, divided by 2N; includes each end's handle for the session",
            "open_ms": "idle workload: from the first open to the last open returning with its first byte written (astral: open waits for the peer's accept)",
            "ready_ms": "idle workload: until every session's first 1-byte round trip completed",
        },
        "total_seconds": total_s,
        "results": results,
    })
}

/// One target of issue 7, evaluated on this run's medians.
struct Target {
    what: String,
    measured: String,
    ratio: Option<f64>,
    met: Option<bool>,
}

/// Median of `f` over the samples of `contender` in workload `w`.
fn med(run: &Run, w: Workload, contender: &str, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let wi = run.workloads.iter().position(|x| *x == w)?;
    let ci = run.names.iter().position(|n| n == contender)?;
    stats(run.cells[wi][ci].samples.iter().filter_map(f).collect()).map(|(m, _, _)| m)
}

fn targets(run: &Run) -> Vec<Target> {
    let mut out = Vec::new();
    let prim = |s: &Sample| Some(s.primary);
    let mut ratio = |what: String, ours: Option<f64>, theirs: Option<f64>, min: f64, unit: &str| {
        let r = match (ours, theirs) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        out.push(Target {
            what,
            measured: match (ours, theirs) {
                (Some(a), Some(b)) => format!("{a:.0} vs {b:.0} {unit}"),
                _ => "n/a".into(),
            },
            ratio: r,
            met: r.map(|r| r >= min),
        });
    };
    let astrals: Vec<&String> = run
        .names
        .iter()
        .filter(|n| n.starts_with("astral"))
        .collect();
    for a in &astrals {
        let b1 = med(run, Workload::Bulk1, a, prim);
        let bn = med(run, Workload::BulkN, a, prim);
        let snow = med(run, Workload::Bulk1, "snow-tcp", prim);
        ratio(
            format!("{a}: 1 session ≥ 0.90× snow-tcp (stretch 0.95)"),
            b1,
            snow,
            0.90,
            "MB/s",
        );
        ratio(
            format!("{a}: 64 sessions ≥ 0.90× its 1 session"),
            bn,
            b1,
            0.90,
            "MB/s",
        );
        for (w, label) in [
            (Workload::Bulk1, "1 session"),
            (Workload::BulkN, "64 sessions"),
        ] {
            let ours = med(run, w, a, prim);
            for (peer, min) in [
                ("yamux-snow", 1.3),
                ("quinn-chacha", 2.0),
                ("quinn-aes", 1.5),
            ] {
                let theirs = med(run, w, peer, prim);
                ratio(
                    format!("{a}: {label} goodput ≥ {min}× {peer}"),
                    ours,
                    theirs,
                    min,
                    "MB/s",
                );
            }
        }
    }
    // Inverse ratios: lower is better, the target is a ceiling.
    let mut ceiling =
        |what: String, ours: Option<f64>, limit: Option<f64>, max: f64, unit: &str| {
            let r = match (ours, limit) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            out.push(Target {
                what,
                measured: match (ours, limit) {
                    (Some(a), Some(b)) => format!("{a:.2} vs {b:.2} {unit}"),
                    _ => "n/a".into(),
                },
                ratio: r,
                met: r.map(|r| r <= max),
            });
        };
    for a in &astrals {
        for w in [Workload::Bulk1, Workload::BulkN] {
            let ours = med(run, w, a, |s| Some(s.cpu_norm));
            let yamux = med(run, w, "yamux-snow", |s| Some(s.cpu_norm));
            ceiling(
                format!("{a}: {} CPU/GB ≤ 0.8× yamux-snow", w.key()),
                ours,
                yamux,
                0.8,
                "s/GB",
            );
        }
        let p50 = med(run, Workload::Echo, a, prim);
        let snow = med(run, Workload::Echo, "snow-tcp", prim);
        ceiling(
            format!("{a}: echo p50 ≤ 1.15× snow-tcp"),
            p50,
            snow,
            1.15,
            "µs",
        );
        if let Some(&w) = run
            .workloads
            .iter()
            .find(|w| matches!(w, Workload::EchoPinned(_)))
        {
            let p50 = med(run, w, a, prim);
            let snow = med(run, w, "snow-tcp", prim);
            ceiling(
                format!("{a}: echo p50 (pinned) ≤ 1.15× snow-tcp"),
                p50,
                snow,
                1.15,
                "µs",
            );
        }
        for &n in &run.cfg.idle {
            let w = Workload::Idle(n);
            let per = med(run, w, a, prim);
            if per.is_none() {
                continue; // not run by this contender
            }
            ceiling(
                format!("{a}: {} ≤ 256 B/session/end", w.key()),
                per,
                Some(256.0),
                1.0,
                "B",
            );
            if n == 10_000 {
                let open = med(run, w, a, |s| s.secondary);
                ceiling(
                    format!("{a}: open 10k sessions ≤ 50 ms"),
                    open,
                    Some(50.0),
                    1.0,
                    "ms",
                );
            }
        }
        let hs = med(run, Workload::Handshake, a, prim);
        ceiling(
            format!("{a}: ≥ 1000 set-ups/s (as 1000 / measured)"),
            Some(1000.0),
            hs,
            1.0,
            "/s",
        );
        let growth = med(run, Workload::BulkN, a, |s| Some(growth_kib(s)? / 1024.0));
        ceiling(
            format!("{a}: 64-session RSS growth ≤ 20 MiB"),
            growth,
            Some(20.0),
            1.0,
            "MiB",
        );
    }
    out
}

fn tables(run: &Run) -> String {
    let (cfg, names, cells, total_s) = (run.cfg, run.names, run.cells, run.total_s);
    // Writing to a String cannot fail.
    let mut out = String::new();
    let m = machine();
    _ = writeln!(
        out,
        "astral-compare — {} CPUs ({}), tokio multi-thread with 2 workers, loopback, client and server in one process",
        m["nproc"], sys::cpu_model()
    );
    _ = writeln!(
        out,
        "payload {}, write {}, {} reps (median, min–max over reps), total {:.0} s",
        fmt_bytes(cfg.bytes),
        fmt_bytes(cfg.write_size as u64),
        cfg.reps,
        total_s
    );
    let load = |l: Option<[f64; 3]>| {
        l.map_or("n/a".to_string(), |l| {
            format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
        })
    };
    _ = writeln!(
        out,
        "load average (1/5/15 min): {} at start, {} at end; astral: recv_window = send_buffer = {}, records {} (snow-tcp, yamux-snow: chacha20-poly1305)",
        load(run.load[0]),
        load(run.load[1]),
        fmt_bytes(u64::from(cfg.astral_window)),
        astral::astral_cipher(&astral::astral_config(cfg.astral_window, cfg.astral_aes)),
    );
    for (wi, w) in run.workloads.iter().enumerate() {
        // Idle sessions: relative to yamux (snow-tcp does not multiplex).
        let base_name = if matches!(w, Workload::Idle(_)) {
            "yamux-snow"
        } else {
            BASELINE
        };
        let base = names.iter().position(|n| n == base_name);
        let (title, h1, h2, hn, higher_better) = match w {
            Workload::Bulk1 => (
                format!("1 session × {}", fmt_bytes(cfg.bytes)),
                "goodput MB/s",
                "",
                "CPU s/GB",
                true,
            ),
            Workload::BulkN => (
                format!(
                    "{} sessions × {} concurrently",
                    cfg.sessions,
                    fmt_bytes(cfg.bytes / cfg.sessions as u64)
                ),
                "goodput MB/s",
                "",
                "CPU s/GB",
                true,
            ),
            Workload::Echo => (
                format!("1-byte echo, {} rounds, one session", cfg.rounds),
                "p50 µs",
                "p99 µs",
                "CPU µs/round",
                false,
            ),
            Workload::EchoPinned(cpu) => (
                format!(
                    "1-byte echo, pinned to CPU {cpu}: {} rounds, one session, every thread on that CPU",
                    cfg.rounds
                ),
                "p50 µs",
                "p99 µs",
                "CPU µs/round",
                false,
            ),
            Workload::Handshake => (
                format!(
                    "{} sequential set-ups (connect + handshake + 1-byte echo + close)",
                    cfg.handshakes
                ),
                "set-ups/s",
                "p50 µs",
                "CPU µs/set-up",
                true,
            ),
            Workload::Idle(n) => (
                format!(
                    "{} idle sessions over one connection (live heap; time to open them)",
                    count_label(*n)
                ),
                "B/session/end",
                "open / ready ms",
                "CPU µs/session",
                false,
            ),
        };
        out.push('\n');
        _ = writeln!(out, "== {title}");
        _ = writeln!(
            out,
            "{:<13} {:<20} {:>26} {:>9} {:>22} {:>16} {:>15}",
            "contender",
            "mode",
            h1,
            if base_name == BASELINE {
                "vs snow"
            } else {
                "vs yamux"
            },
            h2,
            hn,
            "RSS peak/+Δ MiB"
        );
        let base_med =
            base.and_then(|b| stats(cells[wi][b].samples.iter().map(|s| s.primary).collect()));
        for (ci, name) in names.iter().enumerate() {
            let cell = &cells[wi][ci];
            let n = cell.samples.len();
            if n == 0 && cell.errors.is_empty() {
                continue; // not run by this contender
            }
            let prim = stats(cell.samples.iter().map(|s| s.primary).collect());
            let sec = stats(cell.samples.iter().filter_map(|s| s.secondary).collect());
            let norm = stats(cell.samples.iter().map(|s| s.cpu_norm).collect());
            let rss = stats(
                cell.samples
                    .iter()
                    .map(|s| s.peak_rss_kib.unwrap_or(s.maxrss_kib) as f64 / 1024.0)
                    .collect(),
            );
            let growth = stats(
                cell.samples
                    .iter()
                    .filter_map(|s| Some(growth_kib(s)? / 1024.0))
                    .collect(),
            );
            let rss = match (rss, growth) {
                (Some((p, _, _)), Some((g, _, _))) => format!("{p:.0} / {:+.0}", g + 0.0),
                (Some((p, _, _)), None) => format!("{p:.0}"),
                _ => "n/a".into(),
            };
            let ratio = match (prim, base_med) {
                (Some((p, _, _)), Some((b, _, _))) if b > 0.0 => {
                    let r = if higher_better { p / b } else { b / p };
                    format!("{r:.2}×")
                }
                _ => "n/a".into(),
            };
            let mode = cell
                .samples
                .first()
                .and_then(|s| s.mode.clone())
                .unwrap_or_default();
            let prec = if matches!(w, Workload::Echo | Workload::EchoPinned(_)) {
                1
            } else {
                0
            };
            _ = writeln!(
                out,
                "{:<13} {:<20} {:>26} {:>9} {:>22} {:>16} {:>15}",
                name,
                mode,
                fmt_range(prim, n, prec),
                ratio,
                if h2.is_empty() {
                    String::new()
                } else if matches!(w, Workload::Idle(_)) {
                    let ready = stats(
                        cell.samples
                            .iter()
                            .filter_map(|s| Some(s.idle?.ready_ms))
                            .collect(),
                    );
                    match (sec, ready) {
                        (Some((o, _, _)), Some((r, _, _))) => format!("{o:.1} / {r:.1}"),
                        _ => "n/a".into(),
                    }
                } else {
                    fmt_range(sec, n, prec)
                },
                fmt_range(norm, n, if hn == "CPU s/GB" { 2 } else { 0 }),
                rss,
            );
            for e in &cell.errors {
                _ = writeln!(out, "    error: {e}");
            }
        }
    }
    out.push('\n');
    _ = writeln!(
        out,
        "vs snow: relative to snow-tcp (>1 is better; for echo the inverse ratio of p50)."
    );
    _ = writeln!(
        out,
        "Idle: live heap growth (bytes asked of malloc; counting allocator) with N sessions held, from after the connection is up, / 2N; vs yamux >1 is better. open: until the last open returned (astral: accepted by the peer); ready: until every session's first round trip."
    );
    _ = writeln!(
        out,
        "CPU: process user+sys (client and server together), medians."
    );
    _ = writeln!(
        out,
        "RSS: VmHWM during the workload / its growth over VmRSS at the workload's start, medians."
    );
    let targets = targets(run);
    if !targets.is_empty() {
        out.push('\n');
        _ = writeln!(out, "== Targets (issue 7), medians of this run");
        for t in &targets {
            _ = writeln!(
                out,
                "{:<4} {:<58} {:>8} {}",
                match t.met {
                    Some(true) => "ok",
                    Some(false) => "MISS",
                    None => "n/a",
                },
                t.what,
                t.ratio.map_or("n/a".into(), |r| format!("{r:.2}×")),
                t.measured
            );
        }
    }
    out
}
