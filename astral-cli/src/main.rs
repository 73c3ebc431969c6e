//! `astral`: the netcat-style command-line tool for Astral nodes.
//!
//! Subcommands: `demo`, `keygen`, `id`, `listen`, `connect`, `ctl`, `bench`.
//! Errors are printed as one line (`error: ...`) and the process exits
//! non-zero; it never panics on bad input.

mod bench;
mod ctl;
mod demo;
mod keys;
mod net;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A boxed error with a human message.
pub type AnyError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Builds an error from a message.
pub fn err(msg: impl Into<String>) -> AnyError {
    msg.into().into()
}

#[derive(Parser)]
#[command(
    name = "astral",
    version,
    about = "Astral: multiplexed, migrating sessions over many streams"
)]
struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Two nodes in one process over loopback: transfer, migrate, kill, recover.
    Demo(demo::DemoArgs),
    /// Writes a new identity (key file) and prints its id.
    Keygen {
        /// Where to write the key file (refuses to overwrite); stdout if absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Prints the id of a key file.
    Id {
        /// The key file.
        #[arg(short, long)]
        key: PathBuf,
    },
    /// Runs a node that listens for streams and serves queries.
    Listen(net::ListenArgs),
    /// Connects to a peer and joins one session to stdin/stdout.
    Connect(net::ConnectArgs),
    /// Talks to a running `astral listen --control PATH`.
    Ctl(ctl::CtlArgs),
    /// Loopback benchmark: raw TCP, snow over TCP, astral (goodput, echo).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help / --version print and exit 0; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose);

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli.cmd));
    // Blocking stdin reads cannot be cancelled: do not wait for them.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> Result<ExitCode, AnyError> {
    match cmd {
        Cmd::Demo(a) => demo::run(a).await,
        Cmd::Keygen { output } => keys::keygen(output),
        Cmd::Id { key } => keys::id(&key),
        Cmd::Listen(a) => net::listen(a).await,
        Cmd::Connect(a) => net::connect(a).await,
        Cmd::Ctl(a) => ctl::run(a).await,
        Cmd::Bench(a) => bench::run(a).await,
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = if verbose == 0 {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    } else {
        EnvFilter::new(default)
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
