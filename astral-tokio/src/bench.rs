//! Loopback benchmark: astral over this driver against raw TCP and plain
//! snow over TCP with the same cipher, measured in one run.
//!
//! Used by `astral bench` and by `cargo bench -p astral-tokio --bench
//! loopback`. The full comparison with yamux and quinn is
//! `cargo bench -p astral-compare --bench compare`.
//!
//! Transports ([`Transport`]):
//!
//! * **raw TCP** — tokio `TcpStream`, `TCP_NODELAY`, no crypto: the floor.
//! * **snow over TCP** — `Noise_XK_25519_ChaChaPoly_BLAKE2s` (the cipher
//!   astral uses), one Noise transport message per 65,519-byte record behind
//!   a 2-byte length, no multiplexing: the ceiling of astral's design.
//! * **astral** — two [`Node`]s over one loopback TCP stream, one
//!   [`Session`](crate::Session), ChaCha20-Poly1305 records.
//! * On CPUs with AES instructions also **snow over TCP** with
//!   `Noise_XK_25519_AESGCM_BLAKE2s` and **astral** with AES-256-GCM
//!   records (what two such nodes negotiate by default); their ratios are
//!   taken to each other.
//!
//! Workloads, one fresh connection each: *goodput* (one direction, `bytes`
//! bytes in 64 KiB writes, timed from the first write to the receiver
//! seeing the end) and *echo* (`rounds` sequential 1-byte round trips; p50
//! and p99). Each repetition runs every transport once per workload,
//! interleaved and in a rotating order, so drift on the machine spreads
//! over all of them; results are medians with min–max over repetitions.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! use astral_tokio::bench::{self, Options};
//! let opts = Options { bytes: 64 << 20, rounds: 2_000, reps: 3 };
//! let report = bench::run(&opts, |step| eprintln!("{step}")).await?;
//! print!("{}", report.table());
//! println!("{}", report.to_json());
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{astral_core, Config, Identity, Node};

/// The Noise pattern of the ChaChaPoly snow baseline (astral's portable
/// cipher suite).
pub const NOISE_PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";
/// The Noise pattern of the AES-GCM snow baseline (the suite astral
/// negotiates when both ends have AES instructions).
pub const NOISE_PATTERN_AES: &str = "Noise_XK_25519_AESGCM_BLAKE2s";
/// Plaintext bytes per snow record (65,535 minus the 16-byte tag).
pub const SNOW_RECORD: usize = 65_519;
/// Application write size for raw TCP and astral.
pub const WRITE_SIZE: usize = 64 * 1024;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bytes per goodput run.
    pub bytes: u64,
    /// 1-byte round trips per echo run.
    pub rounds: usize,
    /// Repetitions of every (transport, workload) pair.
    pub reps: usize,
}

impl Default for Options {
    /// 1 GiB, 20,000 round trips, 3 repetitions.
    fn default() -> Self {
        Options {
            bytes: 1 << 30,
            rounds: 20_000,
            reps: 3,
        }
    }
}

/// A transport under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Tokio TCP, no crypto.
    Tcp,
    /// snow over TCP, same cipher as astral, no multiplexing.
    Snow,
    /// One astral session over one astral-tokio stream, ChaCha20-Poly1305.
    Astral,
    /// snow over TCP with AES-256-GCM.
    SnowAes,
    /// astral with AES-256-GCM records (its default on AES-capable CPUs).
    AstralAes,
}

impl Transport {
    /// Every transport, in table order.
    pub const ALL: [Transport; 5] = [
        Transport::Tcp,
        Transport::Snow,
        Transport::Astral,
        Transport::SnowAes,
        Transport::AstralAes,
    ];

    /// The transports measured on this machine: the AES-GCM pair only when
    /// the CPU has AES instructions (astral would not negotiate it).
    pub fn available() -> Vec<Transport> {
        let aes = astral_core::noise::hardware_aes();
        Transport::ALL
            .into_iter()
            .filter(|t| aes || !matches!(t, Transport::SnowAes | Transport::AstralAes))
            .collect()
    }

    /// The snow baseline with the same cipher (ratios are taken to it).
    pub fn baseline(self) -> Transport {
        match self {
            Transport::SnowAes | Transport::AstralAes => Transport::SnowAes,
            _ => Transport::Snow,
        }
    }

    /// Short key (JSON).
    pub fn key(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Snow => "snow",
            Transport::Astral => "astral",
            Transport::SnowAes => "snow_aes",
            Transport::AstralAes => "astral_aes",
        }
    }

    /// Human label (tables).
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "raw TCP",
            Transport::Snow => "snow/TCP ChaChaPoly",
            Transport::Astral => "astral ChaChaPoly",
            Transport::SnowAes => "snow/TCP AES-GCM",
            Transport::AstralAes => "astral AES-GCM",
        }
    }
}

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One direction, [`Options::bytes`] bytes.
    Goodput,
    /// [`Options::rounds`] sequential 1-byte round trips.
    Echo,
}

/// Progress: the step about to run (`index` of `total`, from 0).
#[derive(Clone, Debug)]
pub struct Step {
    /// Steps already done.
    pub index: usize,
    /// All steps of the run.
    pub total: usize,
    /// Repetition, from 0.
    pub rep: usize,
    /// Transport.
    pub transport: Transport,
    /// Workload.
    pub workload: Workload,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = match self.workload {
            Workload::Goodput => "goodput",
            Workload::Echo => "echo",
        };
        write!(
            f,
            "[{}/{}] rep {}: {} {w}",
            self.index + 1,
            self.total,
            self.rep + 1,
            self.transport.label()
        )
    }
}

/// Median and range of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summary of `samples` (all zero when empty).
    pub fn of(samples: &[f64]) -> Summary {
        if samples.is_empty() {
            return Summary {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Summary {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    fn json(&self, samples: &[f64]) -> Value {
        json!({"median": self.median, "min": self.min, "max": self.max, "samples": samples})
    }
}

/// Every sample of one transport.
#[derive(Clone, Debug)]
pub struct Results {
    /// The transport.
    pub transport: Transport,
    /// Goodput per repetition, bytes per second.
    pub goodput: Vec<f64>,
    /// Echo p50 per repetition, microseconds.
    pub echo_p50: Vec<f64>,
    /// Echo p99 per repetition, microseconds.
    pub echo_p99: Vec<f64>,
}

impl Results {
    /// Goodput summary (bytes per second).
    pub fn goodput(&self) -> Summary {
        Summary::of(&self.goodput)
    }
    /// Echo p50 summary (µs).
    pub fn p50(&self) -> Summary {
        Summary::of(&self.echo_p50)
    }
    /// Echo p99 summary (µs).
    pub fn p99(&self) -> Summary {
        Summary::of(&self.echo_p99)
    }
}

/// The outcome of [`run`].
#[derive(Clone, Debug)]
pub struct Report {
    /// What was measured.
    pub options: Options,
    /// One entry per transport of [`Transport::available`], in that order.
    pub results: Vec<Results>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// Goodput target: astral ≥ 90 % of snow over TCP.
pub const TARGET_GOODPUT: f64 = 0.90;
/// Latency target: astral's echo p50 ≤ 1.15 × snow over TCP's.
pub const TARGET_ECHO_P50: f64 = 1.15;

impl Report {
    /// The results of one transport, if it was measured.
    pub fn try_get(&self, t: Transport) -> Option<&Results> {
        self.results.iter().find(|r| r.transport == t)
    }

    fn get(&self, t: Transport) -> &Results {
        self.try_get(t)
            .expect("tcp, snow and astral are always measured")
    }

    /// Median goodput, echo p50 and echo p99 of `t` over those of its
    /// same-cipher snow baseline.
    pub fn vs_baseline(&self, t: Transport) -> Option<(f64, f64, f64)> {
        let r = self.try_get(t)?;
        let b = self.try_get(t.baseline())?;
        Some((
            ratio(r.goodput().median, b.goodput().median),
            ratio(r.p50().median, b.p50().median),
            ratio(r.p99().median, b.p99().median),
        ))
    }

    /// astral's median goodput over snow's (ChaChaPoly both).
    pub fn goodput_ratio(&self) -> f64 {
        ratio(
            self.get(Transport::Astral).goodput().median,
            self.get(Transport::Snow).goodput().median,
        )
    }

    /// astral's median echo p50 over snow's (ChaChaPoly both).
    pub fn p50_ratio(&self) -> f64 {
        ratio(
            self.get(Transport::Astral).p50().median,
            self.get(Transport::Snow).p50().median,
        )
    }

    /// astral's median echo p99 over snow's (ChaChaPoly both).
    pub fn p99_ratio(&self) -> f64 {
        ratio(
            self.get(Transport::Astral).p99().median,
            self.get(Transport::Snow).p99().median,
        )
    }

    /// One JSON document with every number.
    pub fn to_json(&self) -> Value {
        let mut transports = serde_json::Map::new();
        for r in &self.results {
            let (g, p50, p99) = self.vs_baseline(r.transport).unwrap_or_default();
            transports.insert(
                r.transport.key().into(),
                json!({
                    "label": r.transport.label(),
                    "goodput_bytes_per_s": r.goodput().json(&r.goodput),
                    "echo_p50_us": r.p50().json(&r.echo_p50),
                    "echo_p99_us": r.p99().json(&r.echo_p99),
                    "baseline": r.transport.baseline().key(),
                    "vs_baseline": {"goodput": g, "echo_p50": p50, "echo_p99": p99},
                }),
            );
        }
        json!({
            "bench": "astral-tokio loopback",
            "options": {
                "bytes": self.options.bytes,
                "rounds": self.options.rounds,
                "reps": self.options.reps,
                "write_size": WRITE_SIZE,
                "snow_record": SNOW_RECORD,
                "noise": NOISE_PATTERN,
                "noise_aes": NOISE_PATTERN_AES,
            },
            "machine": {
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "hardware_aes": astral_core::noise::hardware_aes(),
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "transports": transports,
            "astral_vs_snow": {
                "goodput": self.goodput_ratio(),
                "echo_p50": self.p50_ratio(),
                "echo_p99": self.p99_ratio(),
            },
            "astral_aes_vs_snow_aes": self.vs_baseline(Transport::AstralAes).map(|(g, p50, p99)| {
                json!({"goodput": g, "echo_p50": p50, "echo_p99": p99})
            }),
            "targets": {
                "goodput_min": TARGET_GOODPUT,
                "goodput_met": self.goodput_ratio() >= TARGET_GOODPUT,
                "echo_p50_max": TARGET_ECHO_P50,
                "echo_p50_met": self.p50_ratio() <= TARGET_ECHO_P50,
            },
        })
    }

    /// A human table: medians with min–max, and the ratios to snow.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let o = &self.options;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loopback TCP, {} per goodput run ({} KiB writes), {} echo round trips, \
             {} repetitions interleaved; median [min–max]",
            human_bytes(o.bytes),
            WRITE_SIZE >> 10,
            o.rounds,
            o.reps
        );
        let _ = writeln!(
            s,
            "{:<20} {:>24} {:>9} {:>22} {:>22} {:>8}",
            "", "goodput MiB/s", "vs snow", "echo p50 µs", "echo p99 µs", "vs snow"
        );
        for r in &self.results {
            let (gr, p50r, _) = self.vs_baseline(r.transport).unwrap_or_default();
            let (g, p50, p99) = (r.goodput(), r.p50(), r.p99());
            let mib = |b: f64| b / (1024.0 * 1024.0);
            let _ = writeln!(
                s,
                "{:<20} {:>24} {:>8.1}% {:>22} {:>22} {:>7.2}x",
                r.transport.label(),
                format!("{:.0} [{:.0}–{:.0}]", mib(g.median), mib(g.min), mib(g.max)),
                100.0 * gr,
                format!("{:.1} [{:.1}–{:.1}]", p50.median, p50.min, p50.max),
                format!("{:.1} [{:.1}–{:.1}]", p99.median, p99.min, p99.max),
                p50r,
            );
        }
        let _ = writeln!(
            s,
            "(\"vs snow\": against snow over TCP with the same cipher; echo column: p50)"
        );
        let mark = |ok: bool| if ok { "met" } else { "NOT met" };
        let _ = writeln!(
            s,
            "astral / snow, ChaChaPoly: goodput {:.1}% (target ≥ {:.0}%: {}), echo p50 {:.3}x \
             (target ≤ {:.2}x: {}), echo p99 {:.2}x",
            100.0 * self.goodput_ratio(),
            100.0 * TARGET_GOODPUT,
            mark(self.goodput_ratio() >= TARGET_GOODPUT),
            self.p50_ratio(),
            TARGET_ECHO_P50,
            mark(self.p50_ratio() <= TARGET_ECHO_P50),
            self.p99_ratio(),
        );
        s
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// `1 GiB`, `256 MiB`, `1000 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, unit) in UNITS {
        if b >= unit && b % unit == 0 {
            return format!("{} {name}", b / unit);
        }
    }
    for (name, unit) in UNITS {
        if b >= unit {
            return format!("{:.1} {name}", b as f64 / unit as f64);
        }
    }
    format!("{b} B")
}

/// Runs every transport and workload `opts.reps` times, interleaved,
/// calling `progress` before each step. Needs a tokio runtime with the
/// time and I/O drivers (a multi-threaded one gives the representative
/// numbers: sender and receiver then run in parallel).
pub async fn run(opts: &Options, mut progress: impl FnMut(&Step)) -> io::Result<Report> {
    if opts.bytes == 0 || opts.rounds == 0 || opts.reps == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bytes, rounds and reps must be at least 1",
        ));
    }
    let t0 = Instant::now();
    let transports = Transport::available();
    let mut results: Vec<Results> = transports
        .iter()
        .map(|&transport| Results {
            transport,
            goodput: Vec::new(),
            echo_p50: Vec::new(),
            echo_p99: Vec::new(),
        })
        .collect();
    let n = transports.len();
    let total = opts.reps * n * 2;
    let mut index = 0;
    for rep in 0..opts.reps {
        for workload in [Workload::Goodput, Workload::Echo] {
            for k in 0..n {
                // Rotate the order so no transport always runs first.
                let i = (k + rep) % n;
                let transport = transports[i];
                progress(&Step {
                    index,
                    total,
                    rep,
                    transport,
                    workload,
                });
                index += 1;
                match workload {
                    Workload::Goodput => {
                        let g = goodput(transport, opts.bytes).await?;
                        results[i].goodput.push(g);
                    }
                    Workload::Echo => {
                        let mut s = echo(transport, opts.rounds).await?;
                        results[i].echo_p50.push(micros(percentile(&mut s, 0.50)));
                        results[i].echo_p99.push(micros(percentile(&mut s, 0.99)));
                    }
                }
            }
        }
    }
    Ok(Report {
        options: opts.clone(),
        results,
        elapsed: t0.elapsed(),
    })
}

/// One goodput run over a fresh connection: bytes per second.
pub async fn goodput(t: Transport, bytes: u64) -> io::Result<f64> {
    match t {
        Transport::Tcp => tcp_goodput(bytes).await,
        Transport::Snow => snow_goodput(NOISE_PATTERN, bytes).await,
        Transport::Astral => astral_goodput(false, bytes).await,
        Transport::SnowAes => snow_goodput(NOISE_PATTERN_AES, bytes).await,
        Transport::AstralAes => astral_goodput(true, bytes).await,
    }
}

/// One echo run over a fresh connection: every round trip's duration.
pub async fn echo(t: Transport, rounds: usize) -> io::Result<Vec<Duration>> {
    match t {
        Transport::Tcp => tcp_echo(rounds).await,
        Transport::Snow => snow_echo(NOISE_PATTERN, rounds).await,
        Transport::Astral => astral_echo(false, rounds).await,
        Transport::SnowAes => snow_echo(NOISE_PATTERN_AES, rounds).await,
        Transport::AstralAes => astral_echo(true, rounds).await,
    }
}

/// The `p`-quantile (0..=1, nearest rank) of `samples`, sorting them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn other(e: impl fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn join_err(e: tokio::task::JoinError) -> io::Error {
    other(format!("bench task failed: {e}"))
}

fn check_len(got: u64, want: u64) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(other(format!("receiver got {got} bytes of {want}")))
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

// ----- raw TCP ----------------------------------------------------------------

async fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (c, (s, _)) = (c?, s?);
    c.set_nodelay(true)?;
    s.set_nodelay(true)?;
    Ok((c, s))
}

async fn tcp_goodput(total: u64) -> io::Result<f64> {
    let (mut c, mut s) = tcp_pair().await?;
    let recv = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, io::Error>(got);
            }
            got += n as u64;
        }
    });
    let data = payload(WRITE_SIZE);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(WRITE_SIZE as u64) as usize;
        c.write_all(&data[..n]).await?;
        sent += n as u64;
    }
    c.shutdown().await?;
    check_len(recv.await.map_err(join_err)??, total)?;
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

/// Echo server side: returns every byte until end-of-stream.
async fn echo_serve<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

/// Echo client side: `rounds` timed 1-byte round trips, then half-close.
async fn echo_rounds<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut S,
    rounds: usize,
) -> io::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(rounds);
    let mut one = [0u8; 1];
    for i in 0..rounds {
        let t = Instant::now();
        c.write_all(&[i as u8]).await?;
        c.read_exact(&mut one).await?;
        samples.push(t.elapsed());
        if one[0] != i as u8 {
            return Err(other("echo mismatch"));
        }
    }
    c.shutdown().await?;
    Ok(samples)
}

async fn tcp_echo(rounds: usize) -> io::Result<Vec<Duration>> {
    let (mut c, mut s) = tcp_pair().await?;
    let server = tokio::spawn(async move { echo_serve(&mut s).await });
    let samples = echo_rounds(&mut c, rounds).await?;
    server.await.map_err(join_err)??;
    Ok(samples)
}

// ----- snow over TCP ----------------------------------------------------------

/// A TCP stream carrying 2-byte length-prefixed frames.
struct Framed {
    tcp: TcpStream,
    rx: BytesMut,
}

impl Framed {
    fn new(tcp: TcpStream) -> Framed {
        Framed {
            tcp,
            rx: BytesMut::new(),
        }
    }

    async fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(frame.len() + 2);
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
        self.tcp.write_all(&out).await
    }

    /// The next frame, or None at EOF.
    async fn recv(&mut self) -> io::Result<Option<BytesMut>> {
        loop {
            if self.rx.len() >= 2 {
                let len = u16::from_be_bytes([self.rx[0], self.rx[1]]) as usize;
                if self.rx.len() >= 2 + len {
                    self.rx.advance(2);
                    return Ok(Some(self.rx.split_to(len)));
                }
            }
            self.rx.reserve(256 * 1024);
            if self.tcp.read_buf(&mut self.rx).await? == 0 {
                return if self.rx.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    async fn recv_some(&mut self) -> io::Result<BytesMut> {
        self.recv()
            .await?
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}

type SnowEnd = (Framed, snow::TransportState);

fn snow_builder<'a>(pattern: &str, seed: u8) -> io::Result<snow::Builder<'a>> {
    // Ephemerals from astral's seeded resolver (the workspace builds snow
    // without an OS RNG); the cipher suite is snow's own.
    let resolver = astral_core::unstable::SeededResolver::new([seed; 32]);
    Ok(snow::Builder::with_resolver(
        pattern.parse().map_err(other)?,
        Box::new(resolver),
    ))
}

async fn snow_pair(pattern: &'static str) -> io::Result<(SnowEnd, SnowEnd)> {
    let server_key = Identity::from_seed([11; 32]);
    let client_key = Identity::from_seed([12; 32]);
    let (c, s) = tcp_pair().await?;
    let server_private = server_key.private_bytes();
    let server = tokio::spawn(async move {
        let mut f = Framed::new(s);
        let mut hs = snow_builder(pattern, 21)?
            .local_private_key(&server_private)
            .map_err(other)?
            .build_responder()
            .map_err(other)?;
        let mut buf = vec![0u8; 1024];
        let m = f.recv_some().await?;
        hs.read_message(&m, &mut buf).map_err(other)?;
        let n = hs.write_message(&[], &mut buf).map_err(other)?;
        f.send(&buf[..n]).await?;
        let m = f.recv_some().await?;
        hs.read_message(&m, &mut buf).map_err(other)?;
        Ok::<_, io::Error>((f, hs.into_transport_mode().map_err(other)?))
    });
    let mut f = Framed::new(c);
    let mut hs = snow_builder(pattern, 22)?
        .local_private_key(&client_key.private_bytes())
        .map_err(other)?
        .remote_public_key(server_key.node_id().as_bytes())
        .map_err(other)?
        .build_initiator()
        .map_err(other)?;
    let mut buf = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut buf).map_err(other)?;
    f.send(&buf[..n]).await?;
    let m = f.recv_some().await?;
    hs.read_message(&m, &mut buf).map_err(other)?;
    let n = hs.write_message(&[], &mut buf).map_err(other)?;
    f.send(&buf[..n]).await?;
    let client = hs.into_transport_mode().map_err(other)?;
    let server = server.await.map_err(join_err)??;
    Ok(((f, client), server))
}

async fn snow_goodput(pattern: &'static str, total: u64) -> io::Result<f64> {
    let ((mut cf, mut client), (mut sf, mut server)) = snow_pair(pattern).await?;
    let recv = tokio::spawn(async move {
        let mut plain = vec![0u8; SNOW_RECORD];
        let mut got = 0u64;
        while let Some(rec) = sf.recv().await? {
            got += server.read_message(&rec, &mut plain).map_err(other)? as u64;
        }
        Ok::<_, io::Error>(got)
    });
    let data = payload(SNOW_RECORD);
    let mut out = vec![0u8; 2 + SNOW_RECORD + 16];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(SNOW_RECORD as u64) as usize;
        let len = client
            .write_message(&data[..n], &mut out[2..])
            .map_err(other)?;
        out[..2].copy_from_slice(&(len as u16).to_be_bytes());
        cf.tcp.write_all(&out[..2 + len]).await?;
        sent += n as u64;
    }
    cf.tcp.shutdown().await?;
    check_len(recv.await.map_err(join_err)??, total)?;
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

async fn snow_echo(pattern: &'static str, rounds: usize) -> io::Result<Vec<Duration>> {
    let ((mut cf, mut client), (mut sf, mut server)) = snow_pair(pattern).await?;
    let echo = tokio::spawn(async move {
        let mut plain = [0u8; 64];
        let mut out = [0u8; 64];
        while let Some(rec) = sf.recv().await? {
            let n = server.read_message(&rec, &mut plain).map_err(other)?;
            let len = server.write_message(&plain[..n], &mut out).map_err(other)?;
            sf.send(&out[..len]).await?;
        }
        Ok::<_, io::Error>(())
    });
    let mut plain = [0u8; 64];
    let mut out = [0u8; 64];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        let len = client.write_message(&[i as u8], &mut out).map_err(other)?;
        cf.send(&out[..len]).await?;
        let rec = cf.recv_some().await?;
        let n = client.read_message(&rec, &mut plain).map_err(other)?;
        samples.push(t.elapsed());
        if plain[..n] != [i as u8] {
            return Err(other("echo mismatch"));
        }
    }
    cf.tcp.shutdown().await?;
    echo.await.map_err(join_err)??;
    Ok(samples)
}

// ----- astral -----------------------------------------------------------------

/// Two nodes joined by one loopback TCP stream; (client, server). Records
/// use AES-256-GCM when `aes` (both ends offer it), else ChaCha20-Poly1305.
async fn astral_pair(aes: bool) -> io::Result<(Node, Node)> {
    let config = Config {
        auto_migrate: false,
        offer_aes_gcm: aes,
        ..Config::default()
    };
    let a = Node::new(Identity::from_seed([1; 32]), config.clone()).map_err(other)?;
    let b = Node::new(Identity::from_seed([2; 32]), config).map_err(other)?;
    let addr = b.listen("127.0.0.1:0").await?;
    a.connect(b.id(), addr).await.map_err(other)?;
    Ok((a, b))
}

/// Shuts both nodes down when dropped (also on an error path).
struct Pair(Node, Node);

impl Drop for Pair {
    fn drop(&mut self) {
        self.0.shutdown();
        self.1.shutdown();
    }
}

async fn astral_goodput(aes: bool, total: u64) -> io::Result<f64> {
    let (a, b) = astral_pair(aes).await?;
    let pair = Pair(a.clone(), b.clone());
    let recv = tokio::spawn(async move {
        let q = b
            .next_query()
            .await
            .ok_or_else(|| other("no query arrived"))?;
        let mut s = q.accept().map_err(other)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, io::Error>(got);
            }
            got += n as u64;
        }
    });
    let mut s = a.open_session(pair.1.id(), "sink").await.map_err(other)?;
    let data = payload(WRITE_SIZE);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(WRITE_SIZE as u64) as usize;
        s.write_all(&data[..n]).await?;
        sent += n as u64;
    }
    s.shutdown().await?;
    check_len(recv.await.map_err(join_err)??, total)?;
    let r = total as f64 / t0.elapsed().as_secs_f64();
    drop(pair);
    Ok(r)
}

async fn astral_echo(aes: bool, rounds: usize) -> io::Result<Vec<Duration>> {
    let (a, b) = astral_pair(aes).await?;
    let pair = Pair(a.clone(), b.clone());
    let echo = tokio::spawn(async move {
        let q = b
            .next_query()
            .await
            .ok_or_else(|| other("no query arrived"))?;
        let mut s = q.accept().map_err(other)?;
        echo_serve(&mut s).await
    });
    let mut s = a.open_session(pair.1.id(), "echo").await.map_err(other)?;
    let samples = echo_rounds(&mut s, rounds).await?;
    echo.await.map_err(join_err)??;
    drop(pair);
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_percentile() {
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[1.0, 2.0, 4.0, 8.0]).median, 3.0);
        let mut d: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&mut d, 0.5), Duration::from_micros(51));
        assert_eq!(percentile(&mut d, 0.99), Duration::from_micros(99));
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(256 << 20), "256 MiB");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_run() {
        let opts = Options {
            bytes: 4 << 20,
            rounds: 200,
            reps: 1,
        };
        let mut steps = 0;
        let r = run(&opts, |_| steps += 1).await.unwrap();
        let r2 = r.clone();
        assert!(r2.vs_baseline(Transport::Astral).is_some());
        assert_eq!(steps, 2 * Transport::available().len());
        for t in Transport::available() {
            let x = r.try_get(t).unwrap();
            assert_eq!((x.goodput.len(), x.echo_p50.len()), (1, 1));
            assert!(x.goodput[0] > 0.0 && x.echo_p50[0] > 0.0);
        }
        let j = r.to_json();
        assert!(j["transports"]["astral"]["goodput_bytes_per_s"]["median"].is_number());
        assert!(j["astral_vs_snow"]["goodput"].is_number());
        assert!(r.table().contains("astral"));
    }
}
