//! Tools that measure astral-rs on real sockets (see `docs/HARNESS.md`):
//!
//! * [`wan`]: `astral-wan`, a user-space WAN path emulator: a delaying TCP
//!   forwarder (no root) and a TUN bridge between two network namespaces
//!   (root), with delay, jitter, rate, bounded queues, loss, blackholes and
//!   partitions, changeable at run time.
//! * [`probe`]: small TCP tools (echo/sink server, RTT and bulk clients)
//!   the self-tests and benchmarks use on both sides of a path.
//! * `astral-wan-bench` ([`wanbench`]): plain TCP against astral over an
//!   emulated path.
//! * `astral-wan-placement` ([`placement`]): automatic migration between
//!   two emulated paths (issue 17's targets).
//! * `astral-wan-failover` ([`failover`]): failover when the carrying path
//!   goes silent (issue 12's targets on emulated paths).
//! * [`hostile`]: `astral-hostile`, hostile clients against `astral listen`.
//!
//! Unsafe code: none in this crate; the `tun` crate owns the TUN ioctls.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod astral_api;
pub mod failover;
pub mod hostile;
pub mod placement;
pub mod probe;
pub mod units;
pub mod wan;
pub mod wanbench;

/// The `main` of every harness tool: logging at `verbose`, a multi-thread
/// tokio runtime, `tool` run on it; an error is printed as `error: …` and
/// exits 1.
pub fn run_tool<F>(verbose: u8, tool: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    init_logging(verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(tool) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The options every scenario tool shares (`astral-wan-failover`,
/// `astral-wan-placement`): how many runs, JSON output, logging.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Runs (each on fresh nodes and forwarders).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// One JSON object per run on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl RunArgs {
    /// Runs `run` `--runs` times (at least once), printing each report as
    /// one JSON line or as `run N: <summary>`; returns the reports.
    pub async fn each<R, F, Fut>(
        &self,
        mut run: F,
        summary: impl Fn(&R) -> String,
    ) -> Result<Vec<R>, String>
    where
        R: serde::Serialize,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R, String>>,
    {
        let mut reports = Vec::new();
        for i in 0..self.runs.max(1) {
            let r = run().await?;
            if self.json {
                println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            } else {
                println!("run {}: {}", i + 1, summary(&r));
            }
            reports.push(r);
        }
        Ok(reports)
    }
}

/// Logs to stderr: `warn` by default, `-v` info, `-vv` debug, `-vvv`
/// trace; `RUST_LOG` overrides when no `-v` is given.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = if verbose == 0 {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
    } else {
        EnvFilter::new(level)
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
