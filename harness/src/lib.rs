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
