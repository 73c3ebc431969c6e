//! `astral bench`: the loopback benchmark of `astral_bench` (raw TCP, snow
//! over TCP, astral over astral-tokio; same cipher, window and write size on
//! every one), as a table or JSON. `--peers` runs the full comparison
//! (yamux, quinn, astral-mio) through cargo from a source checkout.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use astral_bench::harness::{self, Options, Workload};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{err, AnyError};

/// Where the full peer comparison lives.
const COMPARE_NOTE: &str = "full comparison with yamux, quinn and astral-mio: \
                            astral bench --peers (from a source checkout)";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Payload bytes of every bulk run, split over its sessions (suffixes
    /// K, M, G = KiB, MiB, GiB).
    #[arg(long, default_value = "1G", value_parser = crate::options::parse_size)]
    bytes: u64,
    /// 1-byte echo round trips per latency run.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Repetitions of every contender and workload, interleaved (medians
    /// and min–max are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Sessions over one connection in the multi-session run (1: skip it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    sessions: u64,
    /// Peer counts of the parallel-peers runs (one session each), comma
    /// separated; empty to skip them.
    #[arg(long, default_value = "2,4", value_delimiter = ',', num_args = 0..)]
    parallel: Vec<usize>,
    /// Sequential set-ups of the handshake run (0: skip it).
    #[arg(long, default_value_t = 500)]
    handshakes: usize,
    /// Application write size, every contender (suffixes K, M).
    #[arg(long, default_value = "64K", value_parser = crate::options::parse_size)]
    write: u64,
    /// Per-session window, every contender that has one (astral's receive
    /// window and send buffer, yamux's and quinn's stream windows).
    #[arg(long, default_value = "256K", value_parser = crate::options::parse_size)]
    window: u64,
    /// Run astral with the core's default flow control (receive windows
    /// auto-tuned from 64 KiB, 64 KiB send buffer, memory budgets: what a
    /// deployment gets) instead of the fixed --window; the other
    /// contenders keep --window. Labelled in the report.
    #[arg(long, conflicts_with = "pipe")]
    default_flow: bool,
    /// Also run every contender with AES-GCM records (default: ChaChaPoly
    /// everywhere, plus astral's own AES-GCM as a separate row where the
    /// CPU has AES instructions).
    #[arg(long)]
    aes: bool,
    /// Print one JSON document with every number (on stdout) instead of
    /// the table.
    #[arg(long)]
    json: bool,
    /// Run the full side-by-side comparison instead (adds yamux over snow,
    /// quinn and astral-mio): it needs this source checkout and cargo,
    /// because the peers are optional dependencies of the bench crate and
    /// never part of the tool.
    #[arg(long)]
    peers: bool,
    /// Measure the tool's own pipes instead: `astral connect` stdin into
    /// `astral listen --stdio` stdout (to /dev/null), against one
    /// snow-over-TCP session with the same cipher (--bytes, --reps apply).
    #[arg(long, conflicts_with = "peers")]
    pipe: bool,
    /// astral's kernel bound on unsent bytes per TCP stream
    /// (TCP_NOTSENT_LOWAT, Linux; `off` or 0: the system default) [default: 128K].
    #[arg(long, value_name = "BYTES|off", value_parser = crate::options::parse_lowat)]
    tcp_notsent_lowat: Option<u32>,
}

impl BenchArgs {
    fn options(&self) -> Result<Options, AnyError> {
        let opts = Options {
            bytes: self.bytes,
            rounds: usize::try_from(self.rounds)?,
            reps: usize::try_from(self.reps)?,
            sessions: usize::try_from(self.sessions)?,
            parallel: self.parallel.clone(),
            handshakes: self.handshakes,
            write_size: usize::try_from(self.write)?,
            window: u32::try_from(self.window).map_err(|_| err("--window: at most 4 GiB"))?,
            aes: self.aes,
            default_flow: self.default_flow,
            ..Options::default()
        };
        let opts = Options {
            notsent_lowat: match self.tcp_notsent_lowat {
                Some(0) => None,
                Some(b) => Some(b),
                None => opts.notsent_lowat,
            },
            ..opts
        };
        opts.validate().map_err(err)?;
        Ok(opts)
    }

    /// The same options for the comparison harness (it reads them from the
    /// environment: `cargo bench` passes no flags of ours).
    fn env(&self) -> Vec<(&'static str, String)> {
        let list = |v: &[usize]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            ("BENCH_BYTES", self.bytes.to_string()),
            ("BENCH_ROUNDS", self.rounds.to_string()),
            ("BENCH_REPS", self.reps.to_string()),
            ("BENCH_SESSIONS", self.sessions.to_string()),
            ("BENCH_PARALLEL", list(&self.parallel)),
            ("BENCH_HANDSHAKES", self.handshakes.to_string()),
            ("BENCH_WRITE", self.write.to_string()),
            ("BENCH_WINDOW", self.window.to_string()),
            ("BENCH_AES", u8::from(self.aes).to_string()),
            (
                "BENCH_DEFAULT_FLOW",
                u8::from(self.default_flow).to_string(),
            ),
        ]
        .into_iter()
        .chain(
            self.tcp_notsent_lowat
                .map(|b| ("BENCH_NOTSENT_LOWAT", b.to_string())),
        )
        .collect()
    }
}

/// `astral bench --peers`: runs the comparison harness through cargo from
/// the workspace this binary was built in.
fn run_peers(a: &BenchArgs) -> Result<ExitCode, AnyError> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| err("cannot locate the source checkout"))?;
    if !workspace
        .join("astral-bench/benches/compare/main.rs")
        .exists()
    {
        return Err(err(format!(
            "the comparison harness is not in {} (run from a source checkout)",
            workspace.display()
        )));
    }
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&workspace).args([
        "bench",
        "-p",
        "astral-bench",
        "--features",
        "peers",
        "--bench",
        "compare",
    ]);
    cmd.envs(a.env());
    if a.json {
        cmd.args(["--", "--json"]);
    }
    let status = cmd
        .status()
        .map_err(|e| err(format!("cannot run cargo for the comparison harness: {e}")))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn workload_label(w: Workload) -> String {
    match w {
        Workload::Bulk1 => "1 session".into(),
        Workload::BulkN(n) => format!("{n} sessions"),
        Workload::Parallel(n) => format!("{n} peers"),
        Workload::Echo | Workload::EchoPinned(_) => "echo".into(),
        Workload::Handshake => "set-ups".into(),
        Workload::Idle(n) => format!("{n} idle sessions"),
    }
}

/// Runs the harness on a thread of its own (it blocks, and has its own
/// runtime so the measured contenders do not share this one's workers).
fn measure(opts: Options, pb: ProgressBar) -> Result<harness::Report, AnyError> {
    let rt = harness::runtime().map_err(|e| err(format!("cannot start the bench runtime: {e}")))?;
    let contenders = {
        let _in_runtime = rt.enter();
        harness::library_contenders(&opts)?
    };
    let reps = opts.reps;
    let report = harness::run(&opts, &contenders, &rt, &mut |step| {
        if step.outcome.is_none() {
            pb.set_length(step.total as u64);
            pb.set_position(step.index as u64);
            pb.set_message(format!(
                "rep {}/{reps}: {} {}",
                step.rep + 1,
                step.contender,
                workload_label(step.workload)
            ));
        } else if let Some(Err(e)) = &step.outcome {
            pb.println(format!(
                "{} {}: error: {e}",
                step.contender,
                workload_label(step.workload)
            ));
        }
    });
    pb.finish_and_clear();
    Ok(report)
}

pub async fn run(a: BenchArgs) -> Result<ExitCode, AnyError> {
    if a.peers {
        return run_peers(&a);
    }
    if a.pipe {
        crate::pipebench::run(a.bytes, a.reps, a.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = a.options()?;
    // A progress indicator on a terminal only (stderr).
    let pb = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} [{elapsed_precise}] [{bar:30.cyan/blue}] {pos}/{len} {msg}",
            )
            .map_err(|e| err(e.to_string()))?
            .progress_chars("#>-"),
        );
        pb.enable_steady_tick(Duration::from_millis(100));
        pb
    } else {
        ProgressBar::hidden()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("astral-bench".into())
        .spawn(move || {
            let _ = tx.send(measure(opts, pb));
        })
        .map_err(|e| err(format!("cannot start the bench thread: {e}")))?;
    let report = rx
        .await
        .map_err(|_| err("the bench thread failed"))?
        .map_err(|e| err(format!("benchmark failed: {e}")))?;
    let failed = report.cells.iter().flatten().any(|c| !c.errors.is_empty());
    if a.json {
        let mut doc = report.to_json();
        doc["note"] = COMPARE_NOTE.into();
        println!("{doc:#}");
    } else {
        print!("{}", report.table());
        println!("note: {COMPARE_NOTE}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
