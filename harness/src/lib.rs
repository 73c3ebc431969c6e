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
