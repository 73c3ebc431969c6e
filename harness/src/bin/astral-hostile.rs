//! `astral-hostile`: hostile clients against `astral listen` on loopback;
//! reports the listener's memory and whether a legitimate client from
//! another source address gets through during and after each attack.
//!
//! ```text
//! astral-hostile                                   # every attack, fresh listener each, table
//! astral-hostile --attack slowloris-partial --duration 5s --json
//! astral-hostile --target ID@127.0.0.1:4000 --pid 1234   # an already running listener
//! astral-hostile --list
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use astral_harness::hostile::{self, listener, Attack, RunConfig, Target};
use astral_harness::init_logging;
use astral_harness::units::{parse_duration, parse_size};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "astral-hostile",
    version,
    about = "Hostile clients against astral listen (loopback only)"
)]
struct Cli {
    /// Attacks to run (repeatable; default: all). See --list.
    #[arg(long = "attack")]
    attacks: Vec<String>,
    /// Print the attacks and their default sizes, then exit.
    #[arg(long)]
    list: bool,
    /// How long each attack holds at full size.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Legitimate tries during and after each attack.
    #[arg(long, default_value_t = 100)]
    tries: usize,
    /// Deadline of one legitimate try (connect, open, echo).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    try_timeout: Duration,
    /// Pause between an attack's end and the tries after it.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    settle: Duration,
    /// Time a well-behaved peer's upload of this many bytes to `discard`
    /// before each attack and while it holds (e.g. 64mb).
    #[arg(long, value_parser = parse_size)]
    bulk: Option<usize>,
    /// JSON lines on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// The astral binary (default: $ASTRAL_BIN, or built with cargo).
    #[arg(long)]
    astral_bin: Option<PathBuf>,
    /// Extra arguments for `astral listen` (repeatable), e.g. --listen-arg=--allow --listen-arg=FILE.
    #[arg(long = "listen-arg", allow_hyphen_values = true)]
    listen_args: Vec<String>,
    /// Start each listener with `--allow FILE` listing only the legitimate
    /// tries' identities: attackers' identities are then refused.
    #[arg(long)]
    allow_legit: bool,
    /// Attack a running listener instead: ID@ADDR (loopback only).
    #[arg(long)]
    target: Option<String>,
    /// With --target: the listener's pid, for memory readings.
    #[arg(long)]
    pid: Option<u32>,
    /// Override: connections (or queries in flight) of every attack.
    #[arg(long)]
    conns: Option<usize>,
    /// Override: source addresses.
    #[arg(long)]
    sources: Option<usize>,
    /// Override: identities of the session attacks.
    #[arg(long)]
    identities: Option<usize>,
    /// Override: sessions of the session attacks.
    #[arg(long)]
    sessions: Option<usize>,
    /// Override: bytes each flooding session writes.
    #[arg(long, value_parser = parse_size)]
    write: Option<usize>,
}

fn pick(cli: &Cli) -> Result<Vec<Attack>, String> {
    let all = Attack::catalogue();
    let mut chosen: Vec<Attack> = if cli.attacks.is_empty() {
        all
    } else {
        let mut v = Vec::new();
        for name in &cli.attacks {
            let a = all
                .iter()
                .find(|a| &a.name == name)
                .ok_or_else(|| format!("unknown attack {name:?} (see --list)"))?;
            v.push(a.clone());
        }
        v
    };
    for a in &mut chosen {
        if let Some(n) = cli.conns {
            a.conns = n;
        }
        if let Some(n) = cli.sources {
            a.sources = n.max(1);
        }
        if let Some(n) = cli.identities {
            a.identities = n.max(1);
            if a.kind == hostile::Kind::ManyIdentities {
                a.identities = n;
            }
        }
        if let Some(n) = cli.sessions {
            a.sessions = n;
        }
        if let Some(n) = cli.write {
            a.write_bytes = n;
        }
    }
    Ok(chosen)
}

fn parse_target(s: &str, pid: Option<u32>) -> Result<Target, String> {
    let (id, addr) = s.split_once('@').ok_or("--target: expected ID@ADDR")?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("--target address: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(
            "--target must be a loopback address: this harness attacks only this machine".into(),
        );
    }
    Ok(Target {
        addr,
        id: id.parse().map_err(|e| format!("--target id: {e}"))?,
        pid,
        control: None,
    })
}

async fn run(cli: Cli) -> Result<(), String> {
    let attacks = pick(&cli)?;
    if cli.list {
        for a in &attacks {
            println!("{:<24} {}", a.name, a.describe());
        }
        return Ok(());
    }
    let cfg = RunConfig {
        duration: cli.duration,
        tries: cli.tries,
        try_timeout: cli.try_timeout,
        settle: cli.settle,
        bulk: cli.bulk.map(|b| b as u64),
        ..RunConfig::default()
    };
    let fixed = match &cli.target {
        Some(t) => Some(parse_target(t, cli.pid)?),
        None => None,
    };
    let bin = match (&fixed, &cli.astral_bin) {
        (Some(_), _) => None,
        (None, Some(b)) => Some(b.clone()),
        (None, None) => Some(
            tokio::task::spawn_blocking(|| listener::astral_bin(true))
                .await
                .map_err(|e| e.to_string())??,
        ),
    };
    let mut reports = Vec::new();
    for a in &attacks {
        // A fresh listener per attack, so memory and lockouts do not carry over.
        let (own, target) = match (&fixed, &bin) {
            (Some(t), _) => (None, t.clone()),
            (None, Some(b)) => {
                let allowed = cli
                    .allow_legit
                    .then(|| hostile::legit::identities(cli.tries));
                let l = listener::Listener::start_with(
                    b,
                    "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
                    &cli.listen_args,
                    allowed.as_deref(),
                )?;
                let t = l.target().clone();
                (Some(l), t)
            }
            (None, None) => return Err("no listener".into()),
        };
        eprintln!("== {} ({}) against {}", a.name, a.describe(), target.addr);
        let r = hostile::run_attack(a, &target, &cfg).await;
        if let Some(l) = &own {
            let (lines, _) = l.log_tail();
            eprintln!("   listener logged {lines} lines");
        }
        if cli.json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        } else {
            eprint!("{}", hostile::table(std::slice::from_ref(&r)));
        }
        reports.push(r);
        drop(own);
    }
    if !cli.json {
        print!("{}", hostile::table(&reports));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(0);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
