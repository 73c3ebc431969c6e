//! Side-by-side comparison of astral-rs's peers (DESIGN.md §12).
//!
//! Contenders, all over loopback, in one process, on one tokio runtime with
//! two workers (client and server share it, so CPU time covers both ends):
//! (a) raw TCP, (b) Noise XK (snow) over TCP, (c) yamux over (b),
//! (d) quinn + rustls with the default suites and with ChaCha20 only.
//!
//! Workloads: one session × N bytes; 64 sessions × N/64 bytes (one
//! connection if the contender multiplexes, else 64 connections, labelled);
//! 1-byte echo round trips; sequential session set-ups. Each contender runs
//! each workload once per repetition, round-robin.
//!
//! ```text
//! cargo bench -p astral-compare --bench compare            table on stdout
//! cargo bench -p astral-compare --bench compare -- --json  JSON on stdout, table on stderr
//! COMPARE_QUICK=1                       64 MiB, 2,000 rounds, 100 handshakes, 1 rep
//! (without cargo bench's `--bench` flag, e.g. `cargo test --benches`: a
//! 1 MiB / 50 rounds / 5 set-ups smoke run, so tests never run the full thing)
//! COMPARE_BYTES=256M COMPARE_ROUNDS=N COMPARE_HANDSHAKES=N COMPARE_REPS=N
//! COMPARE_SESSIONS=64 COMPARE_WRITE=64K COMPARE_ONLY=snow,quinn
//! ```
//!
//! Adding a contender: implement [`contender::Transport`] (a byte-stream
//! transport; all workloads are then shared) or [`contender::Contender`]
//! (anything else), and add one line to [`contenders`].

mod contender;
mod snowio;
mod sys;
mod transports;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use contender::{streamed, Contender, Res};
use transports::{QuicSuites, Quinn, RawTcp, SnowTcp, YamuxSnow};

/// Every contender, in the order they are run and reported.
fn contenders() -> Res<Vec<Box<dyn Contender>>> {
    let snow = SnowTcp::new()?;
    Ok(vec![
        streamed(RawTcp),
        streamed(snow.clone()),
        streamed(YamuxSnow::new(snow)),
        streamed(Quinn::new(QuicSuites::Default)?),
        streamed(Quinn::new(QuicSuites::ChaCha20)?),
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
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Bulk1,
    BulkN,
    Echo,
    Handshake,
}

const WORKLOADS: [Workload; 4] = [
    Workload::Bulk1,
    Workload::BulkN,
    Workload::Echo,
    Workload::Handshake,
];

impl Workload {
    fn key(self) -> &'static str {
        match self {
            Workload::Bulk1 => "bulk_1",
            Workload::BulkN => "bulk_n",
            Workload::Echo => "echo",
            Workload::Handshake => "handshake",
        }
    }
}

/// One contender × workload × repetition.
struct Sample {
    /// Bulk: goodput MB/s. Echo: p50 µs. Handshake: set-ups per second.
    primary: f64,
    /// Echo: p99 µs. Handshake: p50 set-up latency µs.
    secondary: Option<f64>,
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

fn run_one(
    c: &dyn Contender,
    w: Workload,
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
) -> Res<Sample> {
    let peak_reset = sys::reset_peak_rss();
    let start_rss_kib = sys::rss_kib();
    let before = sys::usage();
    let t0 = std::time::Instant::now();
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
        Workload::Echo => {
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
    };
    let wall_s = t0.elapsed().as_secs_f64();
    let after = sys::usage();
    let cpu_s = after.cpu_s - before.cpu_s;
    let cpu_norm = match w {
        Workload::Bulk1 | Workload::BulkN => cpu_s / ops,
        _ => cpu_s / ops * 1e6,
    };
    Ok(Sample {
        primary,
        secondary,
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
    })
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
        contenders().expect("building contenders")
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

    // cells[workload][contender]
    let mut cells: Vec<Vec<Cell>> = WORKLOADS
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
        for (wi, &w) in WORKLOADS.iter().enumerate() {
            // Round-robin, starting one further each repetition.
            for k in 0..contenders.len() {
                let ci = (k + rep) % contenders.len();
                let c = contenders[ci].as_ref();
                match run_one(c, w, &cfg, &rt) {
                    Ok(s) => {
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

    let table = tables(&cfg, &names, &cells, total_s);
    if cfg.json {
        // JSON on stdout; the table still goes to the terminal.
        eprint!("{table}");
        println!("{}", to_json(&cfg, &names, &cells, total_s));
    } else {
        print!("{table}");
    }
}

fn machine() -> Value {
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": sys::cpu_model(),
        "tokio_workers": 2,
    })
}

fn to_json(cfg: &Config, names: &[String], cells: &[Vec<Cell>], total_s: f64) -> Value {
    let mut results = Vec::new();
    for (wi, w) in WORKLOADS.iter().enumerate() {
        for (ci, name) in names.iter().enumerate() {
            let cell = &cells[wi][ci];
            let col = |f: &dyn Fn(&Sample) -> Option<f64>| -> Value {
                stats_json(cell.samples.iter().filter_map(f).collect())
            };
            let (primary_key, secondary_key, norm_key) = match w {
                Workload::Bulk1 | Workload::BulkN => ("goodput_mb_s", None, "cpu_s_per_gb"),
                Workload::Echo => ("p50_us", Some("p99_us"), "cpu_us_per_round"),
                Workload::Handshake => ("per_s", Some("p50_us"), "cpu_us_per_handshake"),
            };
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
            results.push(json!({
                "workload": w.key(),
                "contender": name,
                "mode": cell.samples.first().and_then(|s| s.mode.clone()),
                "summary": summary,
                "reps": reps,
                "errors": cell.errors,
            }));
        }
    }
    json!({
        "machine": machine(),
        "config": {
            "bytes": cfg.bytes,
            "sessions": cfg.sessions,
            "write_size": cfg.write_size,
            "echo_rounds": cfg.rounds,
            "handshakes": cfg.handshakes,
            "reps": cfg.reps,
            "quick": cfg.quick,
        },
        "units": {
            "goodput_mb_s": "10^6 payload bytes per second",
            "cpu_s_per_gb": "process user+sys seconds per 10^9 payload bytes (client and server together)",
            "peak_rss_kib": "VmHWM during the workload (reset via /proc/self/clear_refs before it)",
            "start_rss_kib": "VmRSS when the workload started (kept from earlier workloads)",
            "rss_growth_kib": "peak_rss_kib - start_rss_kib",
            "ru_maxrss_kib": "getrusage(RUSAGE_SELF).ru_maxrss after the workload: process lifetime peak",
        },
        "total_seconds": total_s,
        "results": results,
    })
}

fn tables(cfg: &Config, names: &[String], cells: &[Vec<Cell>], total_s: f64) -> String {
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
    let base = names.iter().position(|n| n == BASELINE);
    for (wi, w) in WORKLOADS.iter().enumerate() {
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
        };
        out.push('\n');
        _ = writeln!(out, "== {title}");
        _ = writeln!(
            out,
            "{:<13} {:<20} {:>26} {:>9} {:>22} {:>16} {:>15}",
            "contender", "mode", h1, "vs snow", h2, hn, "RSS peak/+Δ MiB"
        );
        let base_med =
            base.and_then(|b| stats(cells[wi][b].samples.iter().map(|s| s.primary).collect()));
        for (ci, name) in names.iter().enumerate() {
            let cell = &cells[wi][ci];
            let n = cell.samples.len();
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
            let prec = if matches!(w, Workload::Echo) { 1 } else { 0 };
            _ = writeln!(
                out,
                "{:<13} {:<20} {:>26} {:>9} {:>22} {:>16} {:>15}",
                name,
                mode,
                fmt_range(prim, n, prec),
                ratio,
                if h2.is_empty() {
                    String::new()
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
        "CPU: process user+sys (client and server together), medians."
    );
    _ = writeln!(
        out,
        "RSS: VmHWM during the workload / its growth over VmRSS at the workload's start, medians."
    );
    out
}
