//! `astral bench`: the loopback benchmark of `astral_tokio::bench` (raw
//! TCP, snow over TCP, astral over astral-tokio), as a table or JSON.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use astral_tokio::bench::{self, Options};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{err, AnyError};

/// Where the full peer comparison lives.
const COMPARE_NOTE: &str = "full comparison with yamux and quinn (and astral-mio): \
                            astral bench --peers (or cargo bench -p astral-compare --bench compare)";

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Bytes per goodput run (suffixes K, M, G = KiB, MiB, GiB).
    #[arg(long, default_value = "1G", value_parser = crate::options::parse_size)]
    bytes: u64,
    /// 1-byte echo round trips per latency run.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Repetitions of every transport and workload, interleaved (medians
    /// and min–max are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Print one JSON document with every number (on stdout) instead of
    /// the table.
    #[arg(long)]
    json: bool,
    /// Run the full side-by-side comparison instead (raw TCP, snow, yamux,
    /// quinn, astral-tokio, astral-mio): it needs this source checkout and
    /// cargo, because the peers are dev-dependencies of a bench crate and
    /// never part of the library.
    #[arg(long)]
    peers: bool,
    /// Measure the tool's own pipes instead: `astral connect` stdin into
    /// `astral listen --stdio` stdout (to /dev/null), against one
    /// snow-over-TCP session with the same cipher (--bytes, --reps apply).
    #[arg(long, conflicts_with = "peers")]
    pipe: bool,
}

/// `astral bench --peers`: runs the comparison harness through cargo from
/// the workspace this binary was built in.
fn run_peers(json: bool) -> Result<ExitCode, AnyError> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| err("cannot locate the source checkout".to_string()))?;
    if !workspace.join("tests/compare/Cargo.toml").exists() {
        return Err(err(format!(
            "the comparison harness is not in {} (run from a source checkout)",
            workspace.display()
        )));
    }
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&workspace)
        .args(["bench", "-p", "astral-compare", "--bench", "compare"]);
    if json {
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

pub async fn run(a: BenchArgs) -> Result<ExitCode, AnyError> {
    if a.peers {
        return run_peers(a.json);
    }
    if a.pipe {
        crate::pipebench::run(a.bytes, a.reps, a.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = Options {
        bytes: a.bytes,
        rounds: a.rounds as usize,
        reps: a.reps as usize,
    };
    let total = (opts.reps * bench::Transport::available().len() * 2) as u64;
    // A progress indicator on a terminal only (stderr).
    let pb = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
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
    let result = bench::run(&opts, |step| {
        pb.set_position(step.index as u64);
        let w = match step.workload {
            bench::Workload::Goodput => "goodput",
            bench::Workload::Echo => "echo",
        };
        pb.set_message(format!(
            "rep {}/{}: {} {w}",
            step.rep + 1,
            opts.reps,
            step.transport.label()
        ));
    })
    .await;
    pb.finish_and_clear();
    let report = result.map_err(|e| err(format!("benchmark failed: {e}")))?;
    if a.json {
        let mut doc = report.to_json();
        doc["note"] = COMPARE_NOTE.into();
        println!("{doc:#}");
    } else {
        print!("{}", report.table());
        println!("note: {COMPARE_NOTE}");
    }
    Ok(ExitCode::SUCCESS)
}
