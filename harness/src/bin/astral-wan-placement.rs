//! `astral-wan-placement`: automatic migration between two emulated paths
//! (issue 17's targets); see `astral_harness::placement`.
//!
//! ```text
//! astral-wan-placement identical --duration 180s      # 0 migrations expected
//! astral-wan-placement faster                          # idle path 100 ms -> 10 ms at 20 s
//! astral-wan-placement slower --json                   # carrying path 100 ms -> 300 ms at 20 s
//! astral-wan-placement identical --jitter 10ms         # 40 ms ± 50 %: 0 migrations expected
//! ```

use std::process::ExitCode;
use std::time::Duration;

use astral_harness::placement::{self, PlacementConfig, Report, Scenario};
use astral_harness::units::{parse_duration, parse_rate, parse_size};
use astral_harness::{run_tool, RunArgs};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "astral-wan-placement",
    version,
    about = "Automatic migration of one saturating session between two emulated paths"
)]
struct Cli {
    /// identical (count migrations), faster (idle path gets 10x faster),
    /// slower (carrying path gets 3x slower).
    #[arg(value_enum)]
    scenario: Scenario,
    /// Length of the run [default: 180s identical, 40s otherwise].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// When the path changes [default: 20s].
    #[arg(long, value_parser = parse_duration)]
    change_at: Option<Duration>,
    /// Rate cap of each path [default: 8mbit identical, 20mbit otherwise].
    #[arg(long)]
    rate: Option<String>,
    /// A fixed session window on both nodes (e.g. 256kb) instead of the
    /// auto-tuned default.
    #[arg(long, value_parser = parse_size)]
    window: Option<usize>,
    /// Jitter on each direction of both paths, `± DURATION` (order kept),
    /// e.g. `identical --jitter 10ms`: 40 ms paths ± 50 %.
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    #[command(flatten)]
    each: RunArgs,
}

fn summary(r: &Report) -> String {
    let mut s = format!(
        "{:?}: paths {:.0}/{:.0} ms ± {:.0} ms each way, {:.0} Mbit/s, queue {} B, window {}; {:.0} s, {} B, {:.2} Mbit/s; \
         on path 1/2 {:.1}/{:.1} s; migrations a {} b {}; a's drain probes (all, confirming, withheld s) path 1 {:?} path 2 {:?}",
        r.scenario,
        r.path_rtt_ms[0],
        r.path_rtt_ms[1],
        r.jitter_ms,
        r.rate_mbit,
        r.queue,
        r.window.map_or("auto".to_string(), |w| format!("{w} B")),
        r.duration_s,
        r.bytes,
        r.goodput_mbit,
        r.time_on_path_s[0],
        r.time_on_path_s[1],
        r.moves_a,
        r.moves_b,
        r.drain_probes[0],
        r.drain_probes[1]
    );
    if let Some((what, at)) = &r.change {
        s += &format!("; change {what} at {at:.1} s");
    }
    if let Some(d) = r.time_to_move_s {
        s += &format!("; moved {d:.2} s after it");
    }
    if let Some(b) = r.before_mbit {
        s += &format!("; before {b:.2} Mbit/s (median 0.5 s slice)");
    }
    if let Some(m) = r.around_move_min_mbit {
        s += &format!("; lowest slice around the move {m:.2} Mbit/s");
    }
    for m in &r.moves {
        s += &format!(
            "\n  {:>7.2} s  {}: path {} -> {}   (a's srtt/path ms: path 1 {:.0}/{:.0}, path 2 {:.0}/{:.0})",
            m.at_s,
            m.node,
            m.from_path,
            m.to_path,
            m.a_rtt_ms[0].0,
            m.a_rtt_ms[0].1,
            m.a_rtt_ms[1].0,
            m.a_rtt_ms[1].1
        );
    }
    s
}

async fn run(cli: &Cli) -> Result<(), String> {
    let mut cfg = PlacementConfig::new(cli.scenario);
    if let Some(d) = cli.duration {
        cfg.duration = d;
    }
    if let Some(c) = cli.change_at {
        cfg.change_at = c;
    }
    if let Some(r) = &cli.rate {
        cfg.rate = parse_rate(r)
            .map_err(|e| e.to_string())?
            .ok_or("--rate must be a rate (the paths are capped)")?;
    }
    if let Some(j) = cli.jitter {
        cfg.jitter = j;
    }
    if let Some(w) = cli.window {
        cfg.window = Some(u32::try_from(w).map_err(|_| "--window: at most 4 GiB")?);
    }
    cli.each.each(|| placement::run(&cfg), summary).await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_tool(cli.each.verbose, run(&cli))
}
