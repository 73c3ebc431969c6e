//! `astral`: the command-line tool for Astral nodes (docs/CLI.md).
//!
//! Subcommands: `demo`, `keygen`, `id`, `listen`, `connect`, `ctl`,
//! `bench`, `completions`, `man`. Errors are one line on stderr (`error:
//! ...`, naming the fix where there is one); exit codes: 0 success, 1
//! failure, 2 usage mistake, 130/143 stopped by SIGINT/SIGTERM. It never
//! panics on bad input.

#![forbid(unsafe_code)]

#[cfg(not(unix))]
compile_error!("the astral tool needs a Unix-like system (Unix sockets, signals)");

mod addr;
mod allow;
mod bench;
mod bridge;
mod connect;
mod control;
mod ctl;
mod demo;
mod dialer;
mod error;
mod forward;
mod instance;
mod keys;
mod listen;
mod logging;
mod options;
mod pipebench;
mod registry;
mod service;
mod signals;
mod stdio;
mod table;
mod transport;
mod unixsock;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::{is_usage, AnyError};

#[derive(Parser)]
#[command(
    name = "astral",
    version,
    about = "Astral: encrypted, multiplexed sessions that migrate between streams and survive their death",
    after_help = "Logs go to stderr. RUST_LOG (e.g. RUST_LOG=debug), when set, overrides -v and -q."
)]
struct Cli {
    /// More logging (-v, -vv, -vvv); RUST_LOG, when set, wins.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors (and the subcommand's output); RUST_LOG, when set, wins.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Two nodes in one process over loopback: transfer, migrate, kill, recover.
    Demo(demo::DemoArgs),
    /// Writes a new identity (key file, mode 0600) and prints its id.
    Keygen {
        /// Where to write the key file (never overwritten); stdout if absent.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Prints the id of a key file.
    Id {
        /// The key file.
        #[arg(value_name = "FILE", required_unless_present = "key")]
        file: Option<PathBuf>,
        /// The key file (same as the positional FILE).
        #[arg(short, long, value_name = "FILE", conflicts_with = "file")]
        key: Option<PathBuf>,
    },
    /// Runs a node that listens for streams and serves queries.
    Listen(listen::ListenArgs),
    /// Connects to a peer: one session on stdin/stdout, or --forward.
    Connect(connect::ConnectArgs),
    /// Talks to a running node's control socket (tables, migrate, drain).
    Ctl(ctl::CtlArgs),
    /// Loopback benchmark: raw TCP, snow over TCP, astral (goodput, echo).
    Bench(bench::BenchArgs),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff), or writes one page per subcommand to DIR.
    Man {
        /// Write astral.1, astral-listen.1, ... into this directory.
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
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
    // A listener is a daemon: stream and session life at info by default.
    let default = match cli.cmd {
        Cmd::Listen(_) => "info",
        _ => "warn",
    };
    logging::init(default, cli.verbose, cli.quiet);

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
    let result = rt.block_on(run(cli.cmd, cli.quiet));
    // Blocking stdin reads cannot be cancelled: do not wait for them.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error::describe(e.as_ref()));
            if is_usage(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cmd: Cmd, quiet: bool) -> Result<ExitCode, AnyError> {
    match cmd {
        Cmd::Demo(a) => demo::run(a).await,
        Cmd::Keygen { output } => keys::keygen(output),
        Cmd::Id { file, key } => match file.or(key) {
            Some(f) => keys::id(&f),
            None => Err(error::usage("give the key file: `astral id FILE`")),
        },
        Cmd::Listen(a) => listen::run(a, quiet).await,
        Cmd::Connect(a) => connect::run(a, quiet).await,
        Cmd::Ctl(a) => ctl::run(a).await,
        Cmd::Bench(a) => bench::run(a).await,
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "astral", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { output } => man(output),
    }
}

fn man(output: Option<PathBuf>) -> Result<ExitCode, AnyError> {
    let cmd = Cli::command();
    match output {
        None => {
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| error::err(format!("cannot write the man page: {e}")))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| error::err(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                error::err(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
