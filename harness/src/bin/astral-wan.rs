//! `astral-wan`: a user-space WAN path emulator (see `docs/HARNESS.md`).
//!
//! ```text
//! astral-wan forward --listen 127.0.0.1:9000 --target 127.0.0.1:4000 --rtt 100ms --rate 20mbit --control /tmp/wan.sock
//! astral-wan ctl /tmp/wan.sock "blackhole on"
//! astral-wan tun --dev-a awa1 --dev-b awb1 --delay 25ms      # root; see scripts/wan-netns.sh
//! astral-wan probe serve 0.0.0.0:7001 | probe rtt ADDR | probe upload ADDR --bytes 8mb
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use astral_harness::units::{parse_duration, parse_fraction, parse_rate, parse_size, Rate};
use astral_harness::wan::control::{self, ControlSocket};
use astral_harness::wan::{Forwarder, LinkParams, PathControl, PathParams, Schedule};
use astral_harness::{probe, run_tool};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "astral-wan",
    version,
    about = "User-space WAN path emulator: delaying TCP forwarder and TUN bridge"
)]
struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Delaying TCP forwarder (no root): listen, forward each connection to the target.
    Forward {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Where each connection goes.
        #[arg(long)]
        target: SocketAddr,
        #[command(flatten)]
        shape: Shape,
        #[command(flatten)]
        control: Control,
    },
    /// TUN bridge between two devices (root; normally started by scripts/wan-netns.sh).
    Tun {
        /// Device A (its packets go "up").
        #[arg(long)]
        dev_a: String,
        /// Device B.
        #[arg(long)]
        dev_b: String,
        /// MTU of both devices.
        #[arg(long, default_value_t = 1500)]
        mtu: u16,
        #[command(flatten)]
        shape: Shape,
        #[command(flatten)]
        control: Control,
    },
    /// Sends commands to a running emulator's control socket, prints the replies.
    Ctl {
        /// The control socket.
        socket: PathBuf,
        /// One or more commands, e.g. "delay 100ms" "blackhole on".
        #[arg(required = true)]
        commands: Vec<String>,
    },
    /// Plain-TCP probes: a server and clients that measure RTT and goodput (JSON out).
    Probe {
        #[command(subcommand)]
        what: ProbeCmd,
    },
}

#[derive(Subcommand)]
enum ProbeCmd {
    /// Echo / sink / source server.
    Serve {
        /// Address to listen on.
        addr: SocketAddr,
    },
    /// One-byte round trips; prints min/median/max in ms.
    Rtt {
        /// The probe server (or a forwarder in front of it).
        addr: SocketAddr,
        /// How many round trips.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Source address to bind.
        #[arg(long)]
        bind: Option<IpAddr>,
    },
    /// Sends bytes to the sink; prints goodput.
    Upload {
        /// The probe server.
        addr: SocketAddr,
        /// How much, e.g. 8mb.
        #[arg(long, value_parser = parse_size, default_value = "8mb")]
        bytes: usize,
        /// Source address to bind.
        #[arg(long)]
        bind: Option<IpAddr>,
    },
    /// Receives bytes from the source; prints goodput.
    Download {
        /// The probe server.
        addr: SocketAddr,
        /// How much, e.g. 8mb.
        #[arg(long, value_parser = parse_size, default_value = "8mb")]
        bytes: usize,
        /// Source address to bind.
        #[arg(long)]
        bind: Option<IpAddr>,
    },
}

/// Initial path parameters (both directions; per-direction changes with
/// `--at "0s up delay 30ms"`).
#[derive(Args)]
struct Shape {
    /// One-way delay each way.
    #[arg(long, value_parser = parse_duration, conflicts_with = "rtt")]
    delay: Option<Duration>,
    /// Round-trip time: one-way delay = RTT/2 each way.
    #[arg(long, value_parser = parse_duration)]
    rtt: Option<Duration>,
    /// Jitter (± uniform, order preserved).
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Bottleneck rate each way, e.g. 8mbit, 1gbit, off.
    #[arg(long, value_parser = parse_limit)]
    rate: Option<Limit>,
    /// Bottleneck buffer each way, e.g. 256kb.
    #[arg(long, value_parser = parse_size)]
    queue: Option<usize>,
    /// Token bucket depth, e.g. 16kb.
    #[arg(long, value_parser = parse_size)]
    burst: Option<usize>,
    /// Packet loss (TUN bridge), e.g. 1%.
    #[arg(long, value_parser = parse_fraction)]
    loss: Option<f64>,
}

/// A rate or no limit (`off`).
#[derive(Clone, Copy)]
struct Limit(Option<Rate>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    parse_rate(s).map(Limit).map_err(|e| e.to_string())
}

impl Shape {
    fn params(&self) -> PathParams {
        let mut l = LinkParams::default();
        if let Some(d) = self.delay {
            l.delay = d;
        }
        if let Some(r) = self.rtt {
            l.delay = r / 2;
        }
        if let Some(j) = self.jitter {
            l.jitter = j;
        }
        if let Some(Limit(r)) = self.rate {
            l.rate = r;
        }
        if let Some(q) = self.queue {
            l.queue = q;
        }
        if let Some(b) = self.burst {
            l.burst = b;
        }
        if let Some(p) = self.loss {
            l.loss = p;
        }
        PathParams::symmetric(l)
    }
}

/// Ways to change the path while it runs.
#[derive(Args)]
struct Control {
    /// Unix socket for commands (`astral-wan ctl SOCKET "delay 100ms"`).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Read commands from stdin too (replies on stdout).
    #[arg(long)]
    stdin: bool,
    /// Schedule file: lines `OFFSET COMMAND` (`10s blackhole on`).
    #[arg(long)]
    schedule: Option<PathBuf>,
    /// One schedule step, e.g. "5s rate 2mbit" (repeatable).
    #[arg(long = "at", value_name = "OFFSET COMMAND")]
    at: Vec<String>,
    /// Seed for jitter and loss.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Control {
    fn schedule(&self) -> Result<Schedule, String> {
        let mut s = match &self.schedule {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                Schedule::parse(&text).map_err(|e| e.to_string())?
            }
            None => Schedule::default(),
        };
        for a in &self.at {
            s.steps.push(Schedule::parse_step(a)?);
        }
        s.steps.sort_by_key(|(t, _)| *t);
        Ok(s)
    }

    /// Starts the control socket, stdin and schedule for `path`; runs until
    /// Ctrl-C or SIGTERM.
    async fn run(&self, path: PathControl) -> Result<(), String> {
        let schedule = self.schedule()?;
        let _socket = match &self.control {
            Some(at) => Some(
                ControlSocket::bind(at, path.clone())
                    .map_err(|e| format!("control socket {}: {e}", at.display()))?,
            ),
            None => None,
        };
        let _schedule = control::run_schedule(path.clone(), schedule);
        if self.stdin {
            let p = path.clone();
            tokio::spawn(async move {
                let _ = control::serve_lines(p, tokio::io::stdin(), tokio::io::stdout()).await;
            });
        }
        eprintln!("{}", path.params().describe());
        wait_for_signal().await;
        eprintln!(
            "stats {}",
            serde_json::to_string(&path.stats()).unwrap_or_default()
        );
        Ok(())
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Forward {
            listen,
            target,
            shape,
            control,
        } => {
            let path = PathControl::new(astral_harness::wan::PathKind::Forwarder, shape.params());
            let fwd = Forwarder::start_with(listen, target, path.clone(), control.seed)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            eprintln!("forwarding {} -> {}", fwd.local_addr(), fwd.target());
            control.run(path).await
        }
        Cmd::Tun {
            dev_a,
            dev_b,
            mtu,
            shape,
            control,
        } => run_tun(dev_a, dev_b, mtu, shape, control).await,
        Cmd::Ctl { socket, commands } => {
            let lines: Vec<&str> = commands.iter().map(String::as_str).collect();
            let replies = control::send(&socket, &lines)
                .await
                .map_err(|e| format!("control socket {}: {e}", socket.display()))?;
            let mut failed = false;
            for r in replies {
                failed |= r.starts_with("error");
                println!("{r}");
            }
            if failed {
                Err("a command failed".into())
            } else {
                Ok(())
            }
        }
        Cmd::Probe { what } => run_probe(what).await,
    }
}

#[cfg(target_os = "linux")]
async fn run_tun(
    dev_a: String,
    dev_b: String,
    mtu: u16,
    shape: Shape,
    control: Control,
) -> Result<(), String> {
    use astral_harness::wan::tun::{TunBridge, TunConfig};
    let cfg = TunConfig {
        dev_a,
        dev_b,
        mtu,
        seed: control.seed,
    };
    let bridge = TunBridge::start(&cfg, shape.params())
        .map_err(|e| format!("{e} (needs root and /dev/net/tun)"))?;
    let (a, b) = bridge.devices();
    eprintln!("bridging {a} <-> {b}");
    control.run(bridge.path().clone()).await
}

#[cfg(not(target_os = "linux"))]
async fn run_tun(_: String, _: String, _: u16, _: Shape, _: Control) -> Result<(), String> {
    Err("the TUN bridge is Linux-only".into())
}

fn print_transfer(t: &probe::Transfer) {
    println!(
        "{}",
        serde_json::json!({
            "bytes": t.bytes,
            "secs": t.secs,
            "mbit_per_sec": t.mbit_per_sec(),
            "tail_mbit_per_sec": t.tail_mbit_per_sec,
        })
    );
}

async fn run_probe(what: ProbeCmd) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    match what {
        ProbeCmd::Serve { addr } => {
            let s = probe::ProbeServer::start(addr).await.map_err(io)?;
            eprintln!("probe server on {}", s.local_addr());
            wait_for_signal().await;
            Ok(())
        }
        ProbeCmd::Rtt { addr, count, bind } => {
            let v = probe::rtt(addr, count.max(1), bind).await.map_err(io)?;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let min = v.iter().min().copied().unwrap_or_default();
            let max = v.iter().max().copied().unwrap_or_default();
            let med = probe::median(&v).unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({"count": v.len(), "min_ms": ms(min), "median_ms": ms(med), "max_ms": ms(max)})
            );
            Ok(())
        }
        ProbeCmd::Upload { addr, bytes, bind } => {
            let t = probe::upload(addr, bytes as u64, bind).await.map_err(io)?;
            print_transfer(&t);
            Ok(())
        }
        ProbeCmd::Download { addr, bytes, bind } => {
            let t = probe::download(addr, bytes as u64, bind)
                .await
                .map_err(io)?;
            print_transfer(&t);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_tool(cli.verbose, run(cli.cmd))
}
