//! `astral-wan-failover`: failover when the carrying path goes silent
//! (issue 12's targets on emulated paths); see `astral_harness::failover`.
//!
//! ```text
//! astral-wan-failover --rtt 50ms --runs 2                  # saturating, 20 Mbit/s paths
//! astral-wan-failover --rtt 5ms --pace 1mbps --runs 2      # paced at 1 MB/s
//! astral-wan-failover --rtt 50ms --lift-after 10s          # the blackhole ends after 10 s
//! ```

use std::process::ExitCode;
use std::time::Duration;

use astral_harness::failover::{self, FailoverConfig, Report};
use astral_harness::units::{parse_duration, parse_rate, parse_size};
use astral_harness::{run_tool, RunArgs};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "astral-wan-failover",
    version,
    about = "Failover of one session when its carrying path goes silent (blackhole both ways)"
)]
struct Cli {
    /// RTT of each of the two paths.
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    rtt: Duration,
    /// Rate cap of each path.
    #[arg(long, default_value = "20mbit")]
    rate: String,
    /// Pace the writer at this rate (e.g. 1mbps = 1 MB/s) instead of
    /// saturating.
    #[arg(long)]
    pace: Option<String>,
    /// When the carrying path goes silent, from the first byte.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    blackhole_at: Duration,
    /// Lift the blackhole this long after it began.
    #[arg(long, value_parser = parse_duration)]
    lift_after: Option<Duration>,
    /// How long the transfer goes on after the blackhole (or the lift).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    after: Duration,
    /// Both nodes' TCP_NOTSENT_LOWAT: unsent bytes each stream's kernel
    /// socket may hold (K, M suffixes; 0: the system's) [default: the
    /// library's, 128K].
    #[arg(long, value_parser = parse_size)]
    tcp_notsent_lowat: Option<usize>,
    /// SO_RCVBUF of the forwarders' sockets (K, M suffixes; the kernel
    /// doubles it): queue ahead of the emulated bottleneck [default: 16K;
    /// the forwarder's own default is 64K].
    #[arg(long, value_parser = parse_size)]
    forwarder_rcvbuf: Option<usize>,
    #[command(flatten)]
    each: RunArgs,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0} ms"))
}

fn summary(r: &Report) -> String {
    let mut s = format!(
        "rtt {:.0} ms, {:.0} Mbit/s, queue {} B, forwarder SO_RCVBUF {} B, {}; path {} blackholed at {:.1} s{}: \
         suspect {}, data resumed {} after it (stall {}), on path {} at the end; \
         written {} B, read {} B, pattern {}, eof {}, close {}, resent {} B: {}",
        r.rtt_ms,
        r.rate_mbit,
        r.queue,
        r.forwarder_rcvbuf,
        r.pace_mbyte_s
            .map_or("saturating".to_string(), |p| format!("paced {p:.2} MB/s")),
        r.blackholed_path,
        r.blackhole_at_s,
        r.lifted_at_ms
            .map_or(String::new(), |l| format!(", lifted {l:.0} ms later")),
        opt_ms(r.suspect_ms),
        opt_ms(r.resumed_ms),
        opt_ms(r.stall_ms),
        r.path_at_end,
        r.bytes_written,
        r.bytes_read,
        if r.pattern_ok { "ok" } else { "WRONG" },
        r.eof,
        r.close_reason.as_deref().unwrap_or("none in 10 s"),
        r.resent_bytes,
        if r.exact { "EXACT" } else { "NOT EXACT" },
    );
    for e in &r.events {
        s += &format!(
            "\n  {:>9.1} ms  {}: {} {}",
            e.at_ms, e.node, e.what, e.detail
        );
    }
    s
}

async fn run(cli: &Cli) -> Result<bool, String> {
    let mut cfg = FailoverConfig::new(cli.rtt);
    cfg.rate = parse_rate(&cli.rate)
        .map_err(|e| e.to_string())?
        .ok_or("--rate must be a rate (the paths are capped)")?;
    if let Some(p) = &cli.pace {
        cfg.pace = Some(
            parse_rate(p)
                .map_err(|e| e.to_string())?
                .ok_or("--pace must be a rate")?,
        );
    }
    cfg.blackhole_at = cli.blackhole_at;
    cfg.lift_after = cli.lift_after;
    cfg.after = cli.after;
    if let Some(l) = cli.tcp_notsent_lowat {
        cfg.notsent_lowat =
            Some(u32::try_from(l).map_err(|_| "--tcp-notsent-lowat: at most 4 GiB")?);
    }
    if let Some(b) = cli.forwarder_rcvbuf {
        cfg.forwarder_rcvbuf = u32::try_from(b).map_err(|_| "--forwarder-rcvbuf: at most 4 GiB")?;
    }
    let reports = cli.each.each(|| failover::run(&cfg), summary).await?;
    Ok(reports.iter().all(|r| r.exact))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_tool(cli.each.verbose, async {
        match run(&cli).await? {
            true => Ok(()),
            false => Err("a transfer was not exact".to_string()),
        }
    })
}
