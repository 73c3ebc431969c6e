//! The harness: runs every workload on every contender, interleaved, and
//! reports medians with min–max over repetitions, as a table or as JSON.
//!
//! All contenders run over loopback in one process on one tokio runtime
//! (client and server share it, so CPU time covers both ends). Each
//! repetition runs every workload on every contender, in an order rotated
//! by one each repetition, so drift on the machine spreads over all of
//! them. Like with like by default: every contender uses the same cipher
//! (ChaChaPoly), window, write size and payload; `Options::aes` adds an
//! AES-GCM row for every contender, and astral's own AES-GCM (what two
//! astral nodes with AES instructions would pick) is a separate, labelled
//! row.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::runtime::Runtime;

use crate::contender::{streamed, Contender, Res, Shape};
use crate::machine::{fmt_load, Machine};
use crate::table::Table;
use crate::{astral::AstralTokio, snow::SnowTcp, sys, tcp::RawTcp, Cipher};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Payload bytes of every bulk workload (split over its sessions).
    pub bytes: u64,
    /// Sessions over one connection in the multi-session workload (1: not
    /// run).
    pub sessions: usize,
    /// Peer counts of the parallel-peers workload: that many connections
    /// (astral: client nodes) with one session each, all sending at once.
    pub parallel: Vec<usize>,
    /// Application write size, every contender.
    pub write_size: usize,
    /// Per-session window, every contender that has one: astral's
    /// `recv_window` and `send_buffer`, yamux's stream window (at least its
    /// fixed 256 KiB), quinn's stream receive window.
    pub window: u32,
    /// 1-byte round trips of the echo workload.
    pub rounds: usize,
    /// Sequential set-ups of the handshake workload (0: not run).
    pub handshakes: usize,
    /// Repetitions of every workload on every contender.
    pub reps: usize,
    /// Also run every contender with AES-GCM records.
    pub aes: bool,
    /// Add astral's own AES-GCM row when the others run ChaChaPoly only
    /// (only where the CPU has AES instructions).
    pub astral_aes_row: bool,
    /// Idle-session counts (needs [`crate::heap::Counting`]).
    pub idle: Vec<usize>,
    /// Also run the echo with every thread pinned to one CPU.
    pub pinned_echo: bool,
    /// astral's `Config::tcp_notsent_lowat` (the kernel's unsent-byte bound
    /// per stream; `None`: the system default).
    pub notsent_lowat: Option<u32>,
    /// astral runs the core's default flow control (windows auto-tuned
    /// from `Config::recv_window`, the default send buffer, the memory
    /// budgets) instead of the fixed `window`: what a deployment gets. Not
    /// like with like against the other contenders' fixed windows.
    pub default_flow: bool,
}

impl Default for Options {
    /// 1 GiB payloads, 64 sessions, 2 and 4 peers, 64 KiB writes, 256 KiB
    /// windows, 20,000 round trips, 500 set-ups, 3 repetitions, ChaChaPoly.
    fn default() -> Self {
        Options {
            bytes: 1 << 30,
            sessions: 64,
            parallel: vec![2, 4],
            write_size: 64 << 10,
            window: 256 << 10,
            rounds: 20_000,
            handshakes: 500,
            reps: 3,
            aes: false,
            astral_aes_row: true,
            idle: Vec::new(),
            pinned_echo: false,
            notsent_lowat: astral_tokio::Config::default().tcp_notsent_lowat,
            default_flow: false,
        }
    }
}

impl Options {
    /// The ciphers every contender runs with.
    pub fn ciphers(&self) -> Vec<Cipher> {
        if self.aes {
            vec![Cipher::ChaChaPoly, Cipher::AesGcm]
        } else {
            vec![Cipher::ChaChaPoly]
        }
    }

    /// Whether the separate astral AES-GCM row runs.
    pub fn extra_astral_aes(&self) -> bool {
        !self.aes && self.astral_aes_row && crate::machine::hardware_aes()
    }

    /// Checks the options make a run.
    pub fn validate(&self) -> Result<(), String> {
        if self.bytes == 0 || self.rounds == 0 || self.reps == 0 || self.write_size == 0 {
            return Err("bytes, rounds, reps and the write size must be at least 1".into());
        }
        if self.window == 0 {
            return Err("the window must be at least 1 byte".into());
        }
        if self.sessions == 0 || self.parallel.contains(&0) {
            return Err("session and peer counts must be at least 1".into());
        }
        Ok(())
    }
}

/// The contenders of the library, in report order: raw TCP, then for each
/// cipher snow over TCP and astral over astral-tokio, then astral's own
/// AES-GCM row if [`Options::extra_astral_aes`]. Call inside the runtime.
pub fn library_contenders(opts: &Options) -> Res<Vec<Box<dyn Contender>>> {
    let mut v = vec![streamed(RawTcp)];
    for c in opts.ciphers() {
        v.push(streamed(SnowTcp::new(c)?));
        v.push(streamed(
            AstralTokio::new(opts.window, c)
                .with_notsent_lowat(opts.notsent_lowat)
                .with_default_flow(opts.default_flow),
        ));
    }
    if opts.extra_astral_aes() {
        v.push(streamed(
            AstralTokio::new(opts.window, Cipher::AesGcm)
                .with_notsent_lowat(opts.notsent_lowat)
                .with_default_flow(opts.default_flow),
        ));
    }
    Ok(v)
}

/// The runtime every contender shares: multi-threaded, one worker per CPU.
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::machine::cpus())
        .enable_all()
        .build()
}

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One session, [`Options::bytes`].
    Bulk1,
    /// That many sessions over one connection, concurrently.
    BulkN(usize),
    /// That many connections (peers) with one session each, concurrently.
    Parallel(usize),
    /// 1-byte round trips over one session.
    Echo,
    /// The echo with every thread of the process pinned to that CPU.
    EchoPinned(usize),
    /// Sequential set-ups: connect, handshake, 1-byte echo, close.
    Handshake,
    /// That many idle sessions over one connection (live heap).
    Idle(usize),
}

impl Workload {
    /// The workloads `opts` asks for, in run order.
    pub fn all(opts: &Options) -> Vec<Workload> {
        let mut w = vec![Workload::Bulk1];
        if opts.sessions > 1 {
            w.push(Workload::BulkN(opts.sessions));
        }
        w.extend(opts.parallel.iter().map(|&n| Workload::Parallel(n)));
        w.push(Workload::Echo);
        if opts.pinned_echo {
            w.extend(sys::first_cpu().map(Workload::EchoPinned));
        }
        if opts.handshakes > 0 {
            w.push(Workload::Handshake);
        }
        w.extend(opts.idle.iter().map(|&n| Workload::Idle(n)));
        w
    }

    /// Short key (JSON).
    pub fn key(self) -> String {
        match self {
            Workload::Bulk1 => "bulk_1".into(),
            Workload::BulkN(n) => format!("bulk_{n}_sessions"),
            Workload::Parallel(n) => format!("parallel_{n}_peers"),
            Workload::Echo => "echo".into(),
            Workload::EchoPinned(_) => "echo_pinned".into(),
            Workload::Handshake => "handshake".into(),
            Workload::Idle(n) => format!("idle_{}", count_label(n)),
        }
    }

    fn is_bulk(self) -> bool {
        matches!(
            self,
            Workload::Bulk1 | Workload::BulkN(_) | Workload::Parallel(_)
        )
    }

    fn is_echo(self) -> bool {
        matches!(self, Workload::Echo | Workload::EchoPinned(_))
    }

    fn title(self, o: &Options) -> String {
        match self {
            Workload::Bulk1 => format!("1 session × {}", fmt_bytes(o.bytes)),
            Workload::BulkN(n) => format!(
                "{n} sessions over one connection × {} each, concurrently (RSS growth: memory for {n} busy sessions)",
                fmt_bytes(o.bytes / n as u64)
            ),
            Workload::Parallel(n) => format!(
                "{n} peers (connections) × 1 session × {} each, concurrently",
                fmt_bytes(o.bytes / n as u64)
            ),
            Workload::Echo => format!("1-byte echo, {} round trips, one session", o.rounds),
            Workload::EchoPinned(cpu) => format!(
                "1-byte echo, {} round trips, one session, every thread pinned to CPU {cpu}",
                o.rounds
            ),
            Workload::Handshake => format!(
                "{} sequential set-ups (connect + handshake + 1-byte echo + close)",
                o.handshakes
            ),
            Workload::Idle(n) => format!(
                "{} idle sessions over one connection (live heap; time to open them)",
                count_label(n)
            ),
        }
    }
}

fn count_label(n: usize) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// `1 GiB`, `256 MiB`, `64 KiB`, `1.5 MiB`, `100 B`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, unit) in UNITS {
        if b >= unit {
            return if b % unit == 0 {
                format!("{} {name}", b / unit)
            } else {
                format!("{:.1} {name}", b as f64 / unit as f64)
            };
        }
    }
    format!("{b} B")
}

/// "1 repetition", "3 repetitions".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One contender × workload × repetition.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Bulk: goodput MiB/s. Echo: p50 µs. Handshake: set-ups per second.
    /// Idle: live heap bytes per session per end.
    pub primary: f64,
    /// Echo: p99 µs. Handshake: p50 set-up latency µs. Idle: ms to open
    /// all sessions.
    pub secondary: Option<f64>,
    /// Idle only: ms until every session had its first round trip.
    pub ready_ms: Option<f64>,
    /// Process CPU (user + sys) seconds over the workload.
    pub cpu_s: f64,
    /// Bulk: CPU s per GiB. Others: CPU µs per operation.
    pub cpu_norm: f64,
    /// Wall time of the workload, seconds.
    pub wall_s: f64,
    /// Peak RSS during the workload (VmHWM reset before it), KiB.
    pub peak_rss_kib: Option<u64>,
    /// VmRSS when the workload started, KiB.
    pub start_rss_kib: Option<u64>,
    /// How the sessions were carried, e.g. "1 conn × 64 streams".
    pub mode: Option<String>,
}

impl Sample {
    /// RSS growth during the workload (peak − start), MiB.
    pub fn growth_mib(&self) -> Option<f64> {
        Some((self.peak_rss_kib? as f64 - self.start_rss_kib? as f64) / 1024.0)
    }
}

/// Every sample and error of one contender in one workload.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// One per repetition that ran.
    pub samples: Vec<Sample>,
    /// Errors, one per failed repetition.
    pub errors: Vec<String>,
}

/// Progress of a run, reported before and after each step.
#[derive(Clone, Debug)]
pub struct Step {
    /// Steps already done.
    pub index: usize,
    /// All steps of the run.
    pub total: usize,
    /// Repetition, from 0.
    pub rep: usize,
    /// The workload.
    pub workload: Workload,
    /// The contender's name.
    pub contender: String,
    /// `None` before the step; after it, a one-line result or the error.
    pub outcome: Option<Result<String, String>>,
}

/// `Ok(None)`: the contender does not run this workload.
fn run_one(c: &dyn Contender, w: Workload, o: &Options, rt: &Runtime) -> Res<Option<Sample>> {
    // Hand freed memory of earlier workloads back to the kernel so that
    // RSS figures start from what is live.
    sys::trim_heap();
    let peak_reset = sys::reset_peak_rss();
    let start_rss_kib = sys::rss_kib();
    let before = sys::usage();
    let t0 = Instant::now();
    let mut ready_ms = None;
    let (primary, secondary, ops, mode) = match w {
        Workload::Bulk1 | Workload::BulkN(_) | Workload::Parallel(_) => {
            let shape = match w {
                Workload::BulkN(n) => Shape {
                    conns: 1,
                    sessions: n,
                },
                Workload::Parallel(n) => Shape {
                    conns: n,
                    sessions: 1,
                },
                _ => Shape {
                    conns: 1,
                    sessions: 1,
                },
            };
            let Some(b) = c.bulk(rt, o.bytes, shape, o.write_size)? else {
                return Ok(None);
            };
            let mibs = b.bytes as f64 / b.elapsed.as_secs_f64() / MIB;
            (mibs, None, b.bytes as f64 / GIB, Some(b.mode))
        }
        Workload::Echo | Workload::EchoPinned(_) => {
            let _pinned = match w {
                Workload::EchoPinned(cpu) => {
                    Some(sys::pin_process(cpu).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?)
                }
                _ => None,
            };
            let mut lat = c.echo(rt, o.rounds)?;
            lat.sort_unstable();
            let n = lat.len() as f64;
            (percentile(&lat, 0.5), Some(percentile(&lat, 0.99)), n, None)
        }
        Workload::Handshake => {
            let mut lat = c.handshakes(rt, o.handshakes)?;
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
            ready_ms = Some(r.ready.as_secs_f64() * 1e3);
            (
                r.heap.bytes as f64 / ends,
                Some(r.open.as_secs_f64() * 1e3),
                r.sessions as f64,
                Some(format!("1 conn × {} streams", r.sessions)),
            )
        }
    };
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = sys::usage().cpu_s - before.cpu_s;
    let cpu_norm = if w.is_bulk() {
        cpu_s / ops
    } else {
        cpu_s / ops * 1e6
    };
    Ok(Some(Sample {
        primary,
        secondary,
        ready_ms,
        cpu_s,
        cpu_norm,
        wall_s,
        peak_rss_kib: if peak_reset {
            sys::peak_rss_kib()
        } else {
            None
        },
        start_rss_kib,
        mode,
    }))
}

/// The `p`-quantile (0..=1, nearest rank) of sorted `samples`, in µs.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e6
}

/// Median, min and max of the finite values (`None` if there are none).
pub fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
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

/// Runs every workload of `opts` on every contender, `opts.reps` times,
/// interleaved. `progress` hears of every step before and after it runs.
pub fn run(
    opts: &Options,
    contenders: &[Box<dyn Contender>],
    rt: &Runtime,
    progress: &mut dyn FnMut(&Step),
) -> Report {
    let machine = Machine::probe();
    let workloads = Workload::all(opts);
    let names: Vec<String> = contenders.iter().map(|c| c.name()).collect();
    let ciphers: Vec<Option<Cipher>> = contenders.iter().map(|c| c.cipher()).collect();
    let mut cells: Vec<Vec<Cell>> = workloads
        .iter()
        .map(|_| vec![Cell::default(); contenders.len()])
        .collect();
    let total = opts.reps * workloads.len() * contenders.len();
    let mut index = 0;
    let t0 = Instant::now();
    for rep in 0..opts.reps {
        for (wi, &w) in workloads.iter().enumerate() {
            for k in 0..contenders.len() {
                // Rotate the order so no contender always runs first.
                let ci = (k + rep) % contenders.len();
                let mut step = Step {
                    index,
                    total,
                    rep,
                    workload: w,
                    contender: names[ci].clone(),
                    outcome: None,
                };
                progress(&step);
                let outcome = match run_one(contenders[ci].as_ref(), w, opts, rt) {
                    Ok(None) => Ok("not run by this contender".to_string()),
                    Ok(Some(s)) => {
                        let line = format!(
                            "{:.1} {}, cpu {:.2} s, wall {:.2} s",
                            s.primary,
                            primary_unit(w),
                            s.cpu_s,
                            s.wall_s
                        );
                        cells[wi][ci].samples.push(s);
                        Ok(line)
                    }
                    Err(e) => {
                        cells[wi][ci].errors.push(e.to_string());
                        Err(e.to_string())
                    }
                };
                index += 1;
                step.index = index;
                step.outcome = Some(outcome);
                progress(&step);
            }
        }
    }
    Report {
        options: opts.clone(),
        machine,
        load_end: sys::loadavg(),
        workers: rt.metrics().num_workers(),
        workloads,
        names,
        ciphers,
        cells,
        elapsed: t0.elapsed(),
    }
}

fn primary_unit(w: Workload) -> &'static str {
    match w {
        Workload::Bulk1 | Workload::BulkN(_) | Workload::Parallel(_) => "MiB/s",
        Workload::Echo | Workload::EchoPinned(_) => "µs p50",
        Workload::Handshake => "set-ups/s",
        Workload::Idle(_) => "B/session/end",
    }
}

/// The outcome of [`run`].
#[derive(Clone, Debug)]
pub struct Report {
    /// What was measured.
    pub options: Options,
    /// The machine at the start of the run.
    pub machine: Machine,
    /// Load averages at the end of the run.
    pub load_end: Option<[f64; 3]>,
    /// Tokio worker threads of the shared runtime.
    pub workers: usize,
    /// Workloads, in run order.
    pub workloads: Vec<Workload>,
    /// Contender names, in report order.
    pub names: Vec<String>,
    /// Each contender's cipher.
    pub ciphers: Vec<Option<Cipher>>,
    /// `cells[workload][contender]`.
    pub cells: Vec<Vec<Cell>>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

fn cipher_label(c: Option<Cipher>) -> &'static str {
    c.map_or("none", Cipher::label)
}

impl Report {
    fn cell(&self, w: Workload, contender: usize) -> Option<&Cell> {
        let wi = self.workloads.iter().position(|&x| x == w)?;
        self.cells.get(wi)?.get(contender)
    }

    /// Median of `f` over the samples of contender `ci` in workload `w`.
    pub fn median(
        &self,
        w: Workload,
        ci: usize,
        f: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<f64> {
        stats(self.cell(w, ci)?.samples.iter().filter_map(f).collect()).map(|(m, _, _)| m)
    }

    /// Median primary figure of the contender named `name` in `w`.
    pub fn median_of(&self, w: Workload, name: &str) -> Option<f64> {
        let ci = self.names.iter().position(|n| n == name)?;
        self.median(w, ci, |s| Some(s.primary))
    }

    /// The snow-over-TCP contender with the cipher of contender `ci` (raw
    /// TCP is read against ChaChaPoly snow).
    fn snow_baseline(&self, ci: usize) -> Option<usize> {
        let want = self.ciphers[ci].unwrap_or(Cipher::ChaChaPoly);
        self.names
            .iter()
            .zip(&self.ciphers)
            .position(|(n, &c)| n.starts_with("snow-tcp") && c == Some(want))
    }

    /// The yamux contender with the cipher of contender `ci`.
    fn yamux_baseline(&self, ci: usize) -> Option<usize> {
        let want = self.ciphers[ci];
        self.names
            .iter()
            .zip(&self.ciphers)
            .position(|(n, &c)| n.starts_with("yamux") && c == want)
    }

    /// Contender `ci`'s median over its baseline's in `w` (snow with the
    /// same cipher; for idle sessions yamux, as snow does not multiplex).
    pub fn vs_baseline(&self, w: Workload, ci: usize) -> Option<f64> {
        let b = if matches!(w, Workload::Idle(_)) {
            self.yamux_baseline(ci)?
        } else {
            self.snow_baseline(ci)?
        };
        let ours = self.median(w, ci, |s| Some(s.primary))?;
        let theirs = self.median(w, b, |s| Some(s.primary))?;
        (theirs > 0.0).then(|| ours / theirs)
    }

    /// For multi-session and parallel-peer workloads: contender `ci`'s
    /// goodput over its own one-session goodput.
    pub fn vs_one_session(&self, w: Workload, ci: usize) -> Option<f64> {
        if !matches!(w, Workload::BulkN(_) | Workload::Parallel(_)) {
            return None;
        }
        let ours = self.median(w, ci, |s| Some(s.primary))?;
        let one = self.median(Workload::Bulk1, ci, |s| Some(s.primary))?;
        (one > 0.0).then(|| ours / one)
    }

    /// The header lines: machine, load, commit, what was measured.
    pub fn header(&self) -> String {
        let o = &self.options;
        let m = &self.machine;
        let mut s = String::new();
        s += &format!(
            "machine: {} ({}), {} {}, AES instructions: {}; tokio multi-thread runtime with {}, client and server in one process, loopback TCP\n",
            plural(m.cpus, "CPU", "CPUs"),
            m.cpu_model,
            std::env::consts::OS,
            std::env::consts::ARCH,
            if m.aes { "yes" } else { "no" },
            plural(self.workers, "worker", "workers"),
        );
        s += &format!(
            "load average (1/5/15 min): {} at start, {} at end\n",
            fmt_load(m.load),
            fmt_load(self.load_end)
        );
        s += &format!(
            "commit: {} (astral-bench {})\n",
            m.commit,
            env!("CARGO_PKG_VERSION")
        );
        let ciphers = o
            .ciphers()
            .iter()
            .map(|c| c.label())
            .collect::<Vec<_>>()
            .join(" and ");
        s += &format!(
            "every contender: {ciphers}, {} writes, {} window per session; {} per bulk run; {}, {:.0} s in all\n",
            fmt_bytes(o.write_size as u64),
            fmt_bytes(u64::from(o.window)),
            fmt_bytes(o.bytes),
            if o.reps == 1 {
                "1 repetition".to_string()
            } else {
                format!("{} interleaved (median, min–max)", plural(o.reps, "repetition", "repetitions"))
            },
            self.elapsed.as_secs_f64(),
        );
        if o.default_flow {
            s += "astral: the core's default flow control (auto-tuned windows from 64 KiB, 64 KiB send buffer, memory budgets), not the window above\n";
        }
        if !o.aes && self.ciphers.contains(&Some(Cipher::AesGcm)) {
            s += "rows ending in -aes: astral's own AES-256-GCM records (what two astral nodes with AES instructions choose); no other contender ran AES-GCM (ask with --aes or BENCH_AES=1), so they have no × snow figure\n";
        }
        s
    }

    /// The human report: header, one table per workload, notes.
    pub fn table(&self) -> String {
        let o = &self.options;
        let mut out = self.header();
        for (wi, &w) in self.workloads.iter().enumerate() {
            let (h1, h2, hn) = match w {
                Workload::Bulk1 | Workload::BulkN(_) | Workload::Parallel(_) => {
                    ("goodput MiB/s", None, "CPU s/GiB")
                }
                Workload::Echo | Workload::EchoPinned(_) => {
                    ("p50 µs", Some("p99 µs"), "CPU µs/round")
                }
                Workload::Handshake => ("set-ups/s", Some("p50 µs"), "CPU µs/set-up"),
                Workload::Idle(_) => ("B/session/end", Some("open / ready ms"), "CPU µs/session"),
            };
            let scaling = matches!(w, Workload::BulkN(_) | Workload::Parallel(_));
            let vs = if matches!(w, Workload::Idle(_)) {
                "× yamux"
            } else {
                "× snow"
            };
            let mut header = vec!["contender", "cipher", "mode", h1, vs];
            if scaling {
                header.push("× 1 session");
            }
            header.extend(h2);
            header.push(hn);
            if w.is_bulk() {
                header.push("RSS peak / +Δ MiB");
            }
            let mut t = Table::new(header, 3);
            let mut errors = Vec::new();
            for (ci, name) in self.names.iter().enumerate() {
                let cell = &self.cells[wi][ci];
                let n = cell.samples.len();
                if n == 0 && cell.errors.is_empty() {
                    continue; // not run by this contender
                }
                let col = |f: &dyn Fn(&Sample) -> Option<f64>| {
                    stats(cell.samples.iter().filter_map(f).collect())
                };
                let prec = if w.is_echo() { 1 } else { 0 };
                let ratio = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.2}×"));
                let mut row = vec![
                    name.clone(),
                    cipher_label(self.ciphers[ci]).to_string(),
                    cell.samples
                        .first()
                        .and_then(|s| s.mode.clone())
                        .unwrap_or_default(),
                    fmt_range(col(&|s| Some(s.primary)), n, prec),
                    ratio(self.vs_baseline(w, ci)),
                ];
                if scaling {
                    row.push(ratio(self.vs_one_session(w, ci)));
                }
                if h2.is_some() {
                    row.push(if let Workload::Idle(_) = w {
                        match (col(&|s| s.secondary), col(&|s| s.ready_ms)) {
                            (Some((a, _, _)), Some((b, _, _))) => format!("{a:.1} / {b:.1}"),
                            _ => "n/a".into(),
                        }
                    } else {
                        fmt_range(col(&|s| s.secondary), n, prec)
                    });
                }
                row.push(fmt_range(
                    col(&|s| Some(s.cpu_norm)),
                    n,
                    if w.is_bulk() { 2 } else { 0 },
                ));
                if w.is_bulk() {
                    let peak = col(&|s| Some(s.peak_rss_kib? as f64 / 1024.0));
                    let growth = col(&|s| s.growth_mib());
                    row.push(match (peak, growth) {
                        (Some((p, _, _)), Some((g, _, _))) => format!("{p:.0} / {:+.0}", g + 0.0),
                        (Some((p, _, _)), None) => format!("{p:.0}"),
                        _ => "n/a".into(),
                    });
                }
                t.row(row);
                for e in &cell.errors {
                    errors.push(format!("  {name}: error: {e}"));
                }
            }
            out.push('\n');
            out += &format!("== {}\n", w.title(o));
            out += &t.render();
            for e in errors {
                out += &e;
                out.push('\n');
            }
        }
        out.push('\n');
        out += "× snow: this row's median over snow over TCP's with the same cipher (goodput and set-ups: higher is better; latency: lower is better).\n";
        if self
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::BulkN(_) | Workload::Parallel(_)))
        {
            out += "× 1 session: this row's goodput over its own one-session goodput.\n";
        }
        if self
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::Idle(_)))
        {
            out += "× yamux (idle sessions): live heap over yamux's with the same cipher (lower is better).\n";
        }
        out += "CPU: user + sys of the whole process (client and server together). RSS: peak during the workload / growth over its start.\n";
        out
    }

    /// One JSON document with every figure and sample.
    pub fn to_json(&self) -> Value {
        let o = &self.options;
        let mut results = Vec::new();
        for (wi, &w) in self.workloads.iter().enumerate() {
            let (pk, sk, nk) = match w {
                Workload::Bulk1 | Workload::BulkN(_) | Workload::Parallel(_) => {
                    ("goodput_mib_s", None, "cpu_s_per_gib")
                }
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
            for (ci, name) in self.names.iter().enumerate() {
                let cell = &self.cells[wi][ci];
                if cell.samples.is_empty() && cell.errors.is_empty() {
                    continue;
                }
                let col = |f: &dyn Fn(&Sample) -> Option<f64>| -> Value {
                    match stats(cell.samples.iter().filter_map(f).collect()) {
                        Some((m, lo, hi)) => json!({"median": m, "min": lo, "max": hi}),
                        None => Value::Null,
                    }
                };
                let reps: Vec<Value> = cell
                    .samples
                    .iter()
                    .map(|s| {
                        let mut r = json!({
                            pk: s.primary,
                            nk: s.cpu_norm,
                            "cpu_s": s.cpu_s,
                            "wall_s": s.wall_s,
                            "peak_rss_kib": s.peak_rss_kib,
                            "start_rss_kib": s.start_rss_kib,
                        });
                        if let (Some(k), Some(v)) = (sk, s.secondary) {
                            r[k] = json!(v);
                        }
                        if let Some(v) = s.ready_ms {
                            r["ready_ms"] = json!(v);
                        }
                        r
                    })
                    .collect();
                let mut summary = json!({
                    pk: col(&|s| Some(s.primary)),
                    nk: col(&|s| Some(s.cpu_norm)),
                    "cpu_s": col(&|s| Some(s.cpu_s)),
                    "peak_rss_kib": col(&|s| s.peak_rss_kib.map(|v| v as f64)),
                    "rss_growth_mib": col(&|s| s.growth_mib()),
                });
                if let Some(k) = sk {
                    summary[k] = col(&|s| s.secondary);
                }
                if matches!(w, Workload::Idle(_)) {
                    summary["ready_ms"] = col(&|s| s.ready_ms);
                }
                results.push(json!({
                    "workload": w.key(),
                    "contender": name,
                    "cipher": self.ciphers[ci].map(Cipher::key),
                    "mode": cell.samples.first().and_then(|s| s.mode.clone()),
                    "vs_snow": self.vs_baseline(w, ci),
                    "vs_one_session": self.vs_one_session(w, ci),
                    "summary": summary,
                    "reps": reps,
                    "errors": cell.errors,
                }));
            }
        }
        let mut machine = self.machine.to_json();
        machine["loadavg_end"] = json!(self.load_end);
        machine["tokio_workers"] = json!(self.workers);
        json!({
            "bench": "astral-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "machine": machine,
            "config": {
                "bytes": o.bytes,
                "sessions": o.sessions,
                "parallel_peers": o.parallel,
                "write_size": o.write_size,
                "window": o.window,
                "astral_default_flow": o.default_flow,
                "echo_rounds": o.rounds,
                "handshakes": o.handshakes,
                "reps": o.reps,
                "ciphers": o.ciphers().iter().map(|c| c.key()).collect::<Vec<_>>(),
                "astral_aes_row": o.extra_astral_aes(),
                "idle_sessions": o.idle,
            },
            "units": {
                "goodput_mib_s": "payload MiB (2^20 bytes) per second",
                "cpu_s_per_gib": "process user+sys seconds per GiB of payload (client and server together)",
                "vs_snow": "median over the same-cipher snow-over-TCP median (latency: lower is better)",
                "vs_one_session": "median goodput over the same contender's one-session median",
                "peak_rss_kib": "VmHWM during the workload (reset via /proc/self/clear_refs before it)",
                "rss_growth_mib": "peak RSS during the workload minus VmRSS at its start",
                "heap_bytes_per_session_per_end": "live heap growth (counting allocator) with N idle sessions over one connection, divided by 2N",
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "results": results,
        })
    }
}

fn fmt_range(s: Option<(f64, f64, f64)>, reps: usize, prec: usize) -> String {
    match s {
        None => "n/a".into(),
        Some((m, lo, hi)) if reps > 1 => format!("{m:.prec$} ({lo:.prec$}–{hi:.prec$})"),
        Some((m, _, _)) => format!("{m:.prec$}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_percentile() {
        assert_eq!(stats(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(stats(vec![1.0, 2.0, 4.0, 8.0]).map(|s| s.0), Some(3.0));
        assert_eq!(stats(vec![f64::NAN]), None);
        let d: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&d, 0.5), 51.0);
        assert_eq!(percentile(&d, 0.99), 99.0);
    }

    #[test]
    fn units_and_plurals() {
        assert_eq!(fmt_bytes(1 << 30), "1 GiB");
        assert_eq!(fmt_bytes(256 << 20), "256 MiB");
        assert_eq!(fmt_bytes(3 << 19), "1.5 MiB");
        assert_eq!(fmt_bytes(64 << 10), "64 KiB");
        assert_eq!(fmt_bytes(100), "100 B");
        assert_eq!(plural(1, "repetition", "repetitions"), "1 repetition");
        assert_eq!(plural(3, "repetition", "repetitions"), "3 repetitions");
    }

    #[test]
    fn options_validate() {
        assert!(Options::default().validate().is_ok());
        let bad = Options {
            parallel: vec![2, 0],
            ..Options::default()
        };
        assert!(bad.validate().is_err());
    }
}
