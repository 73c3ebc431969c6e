//! `astral-wan-bench`: one plain TCP connection against one astral session
//! over an emulated path at several RTTs; prints goodputs and the ratio.
//!
//! ```text
//! astral-wan-bench --rtt 20ms,50ms,100ms --rate 100mbit --bytes 16mb --runs 3
//! astral-wan-bench --via netns ...     # root: kernel TCP end to end through the TUN bridge
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use astral_harness::astral_api;
use astral_harness::units::{parse_duration, parse_rate, parse_size, Rate};
use astral_harness::wanbench::{self, BenchConfig, Via};
use astral_harness::{probe, run_tool};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "astral-wan-bench",
    version,
    about = "Plain TCP vs one astral session over an emulated WAN path",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// More logging (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Path emulator: the in-process forwarder (no root) or the netns TUN bridge (root).
    #[arg(long, value_enum, default_value = "forwarder")]
    via: Via,
    /// RTTs, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_duration, default_value = "20ms,50ms,100ms")]
    rtt: Vec<Duration>,
    /// Bottleneck rate both ways (e.g. 100mbit, off).
    #[arg(long, value_parser = parse_limit, default_value = "100mbit")]
    rate: Limit,
    /// Bottleneck buffer (default: one bandwidth-delay product per RTT, at least 64 KiB).
    #[arg(long, value_parser = parse_size)]
    queue: Option<usize>,
    /// Bytes per transfer.
    #[arg(long, value_parser = parse_size, default_value = "16mb")]
    bytes: usize,
    /// Runs per contender per RTT (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// JSON rows on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy)]
struct Limit(Option<Rate>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    parse_rate(s).map(Limit).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Sub {
    /// (netns mode, in namespace B) TCP sink and astral sink; prints "ready ID".
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        tcp: SocketAddr,
        #[arg(long)]
        astral: SocketAddr,
    },
    /// (netns mode, in namespace A) one transfer; prints JSON.
    #[command(hide = true)]
    Client {
        /// tcp or astral.
        #[arg(long)]
        which: String,
        /// ADDR (tcp) or ID@ADDR (astral).
        #[arg(long)]
        to: String,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 100)]
        seed: u64,
    },
}

async fn serve(tcp: SocketAddr, astral: SocketAddr) -> Result<(), String> {
    let _tcp = probe::ProbeServer::start(tcp)
        .await
        .map_err(|e| e.to_string())?;
    let node = astral_api::node(astral_api::identity(1))?;
    astral_api::listen(&node, astral).await?;
    println!("ready {}", node.id());
    wanbench::serve_astral_sink(node).await;
    Ok(())
}

async fn client(which: &str, to: &str, bytes: u64, seed: u64) -> Result<(), String> {
    let t = match which {
        "tcp" => {
            let addr: SocketAddr = to.parse().map_err(|e| format!("{to}: {e}"))?;
            probe::upload(addr, bytes, None)
                .await
                .map_err(|e| e.to_string())?
        }
        "astral" => {
            let (id, addr) = to.split_once('@').ok_or("expected ID@ADDR")?;
            let id = id.parse().map_err(|e| format!("peer id: {e}"))?;
            let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
            wanbench::astral_upload(id, addr, bytes, seed).await?
        }
        w => return Err(format!("unknown contender {w:?}")),
    };
    println!(
        "{}",
        serde_json::json!({"bytes": t.bytes, "secs": t.secs, "mbit_per_sec": t.mbit_per_sec()})
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Some(Sub::Serve { tcp, astral }) => return serve(tcp, astral).await,
        Some(Sub::Client {
            which,
            to,
            bytes,
            seed,
        }) => return client(&which, &to, bytes, seed).await,
        None => {}
    }
    let a = cli.run;
    let cfg = BenchConfig {
        via: a.via,
        rtts: a.rtt,
        rate: a.rate.0,
        queue: a.queue,
        bytes: a.bytes as u64,
        runs: a.runs.max(1),
        self_exe: std::env::current_exe().map_err(|e| e.to_string())?,
    };
    eprintln!("{}", astral_api::describe_config());
    let rows = match cfg.via {
        Via::Forwarder => wanbench::run_forwarder(&cfg).await?,
        Via::Netns => {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || wanbench::run_netns(&cfg))
                .await
                .map_err(|e| e.to_string())??
        }
    };
    if a.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else {
        print!("{}", wanbench::table(&rows));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_tool(cli.verbose, run(cli))
}
