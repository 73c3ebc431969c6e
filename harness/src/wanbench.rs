//! `astral-wan-bench`: one plain TCP connection against one astral session
//! over the same emulated path, at several RTTs and one rate; goodputs and
//! their ratio.
//!
//! Both contenders do the same thing: connect (not timed), then send
//! `bytes` in 64 KiB writes, half-close, and wait for the receiver's
//! count of bytes (the proof that every byte arrived). The time is from the
//! first write to the count. TCP talks to the [`probe`] sink; astral opens a
//! session for `sink` on a fresh node per run, whose peer reads it to the
//! end and answers with the count. Runs alternate (TCP, astral, TCP, ...)
//! and the medians are reported.
//!
//! Paths:
//! * [`Via::Forwarder`]: in this process, through two [`Forwarder`]s with
//!   the same parameters (one in front of each server). No root. Split TCP:
//!   the plain TCP connection is limited only by the emulated rate (its own
//!   window never sees the RTT), so this measures astral's end-to-end
//!   flow control against the path's capacity.
//! * [`Via::Netns`]: two network namespaces and one TUN-bridged path set up
//!   with `scripts/wan-netns.sh`; servers in namespace B and clients in
//!   namespace A run as separate processes (`astral-wan-bench serve` /
//!   `client`). Kernel TCP end to end: the faithful comparison.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::astral_api::{self, Node, NodeId};
use crate::probe::{self, ProbeServer, Transfer, WRITE_SIZE};
use crate::units::{fmt_duration, fmt_size, Rate};
use crate::wan::{Forwarder, LinkParams, PathParams};

/// Where the emulated path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The in-process delaying TCP forwarder.
    Forwarder,
    /// Two network namespaces joined by the TUN bridge (root).
    Netns,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The path emulator.
    pub via: Via,
    /// RTTs, one row each.
    pub rtts: Vec<Duration>,
    /// Bottleneck rate (both ways).
    pub rate: Option<Rate>,
    /// Bottleneck buffer; `None` = one bandwidth-delay product of the row
    /// (at least 64 KiB).
    pub queue: Option<usize>,
    /// Bytes per transfer.
    pub bytes: u64,
    /// Runs per contender per row.
    pub runs: usize,
    /// The `astral-wan-bench` binary (netns mode runs it in the namespaces).
    pub self_exe: PathBuf,
}

/// One row of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Path emulator.
    pub via: Via,
    /// Round-trip time of the path, ms.
    pub rtt_ms: f64,
    /// Rate cap, Mbit/s (`None` = none).
    pub rate_mbit: Option<f64>,
    /// Bottleneck buffer, bytes.
    pub queue: usize,
    /// Bytes per transfer.
    pub bytes: u64,
    /// Plain TCP goodputs, Mbit/s, per run.
    pub tcp_runs: Vec<f64>,
    /// Astral goodputs, Mbit/s, per run.
    pub astral_runs: Vec<f64>,
    /// Median of `tcp_runs`.
    pub tcp_mbit: f64,
    /// Median of `astral_runs`.
    pub astral_mbit: f64,
    /// `astral_mbit / tcp_mbit`.
    pub ratio: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

fn queue_for(cfg: &BenchConfig, rtt: Duration) -> usize {
    cfg.queue.unwrap_or_else(|| match cfg.rate {
        Some(r) => r.bytes_in(rtt).max(64 << 10),
        None => 1 << 20,
    })
}

fn row(cfg: &BenchConfig, rtt: Duration, tcp: Vec<f64>, astral: Vec<f64>) -> Row {
    let (t, a) = (median(&tcp), median(&astral));
    Row {
        via: cfg.via,
        rtt_ms: rtt.as_secs_f64() * 1e3,
        rate_mbit: cfg.rate.map(|r| r.bits_per_sec() as f64 / 1e6),
        queue: queue_for(cfg, rtt),
        bytes: cfg.bytes,
        tcp_runs: tcp,
        astral_runs: astral,
        tcp_mbit: t,
        astral_mbit: a,
        ratio: if t > 0.0 { a / t } else { 0.0 },
    }
}

/// The query the astral sink answers.
pub const SINK_QUERY: &str = "sink";

/// Serves `sink` sessions on `node`: reads each to its end, answers with
/// the byte count (u64 big-endian) and closes. Runs until the node stops.
pub async fn serve_astral_sink(node: Node) {
    while let Some(q) = astral_api::next_query(&node).await {
        if q.query() != SINK_QUERY {
            q.reject();
            continue;
        }
        let Ok(mut s) = q.accept() else { continue };
        tokio::spawn(async move {
            let mut buf = vec![0u8; WRITE_SIZE];
            let mut total: u64 = 0;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) => {
                        tracing::debug!(%e, "sink session failed");
                        return;
                    }
                }
            }
            let _ = s.write_u64(total).await;
            let _ = s.shutdown().await;
        });
    }
}

/// One astral transfer from a fresh node: connect to `peer` at `addr`,
/// open `sink`, send `bytes`, wait for the count.
pub async fn astral_upload(
    peer: NodeId,
    addr: SocketAddr,
    bytes: u64,
    seed: u64,
) -> Result<Transfer, String> {
    let node = astral_api::node(astral_api::identity(seed))?;
    astral_api::connect(&node, peer, addr, None).await?;
    let mut s = astral_api::open(&node, peer, SINK_QUERY).await?;
    let buf = vec![0x5au8; WRITE_SIZE];
    let start = Instant::now();
    let mut left = bytes;
    let io = |e: std::io::Error| format!("astral transfer: {e}");
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await.map_err(io)?;
        left -= n as u64;
    }
    s.shutdown().await.map_err(io)?;
    let got = s.read_u64().await.map_err(io)?;
    let secs = start.elapsed().as_secs_f64();
    drop(s);
    astral_api::shutdown(&node);
    if got != bytes {
        return Err(format!("astral sink counted {got} of {bytes} bytes"));
    }
    Ok(Transfer {
        bytes,
        secs,
        tail_mbit_per_sec: None,
    })
}

/// Runs the benchmark through in-process forwarders.
pub async fn run_forwarder(cfg: &BenchConfig) -> Result<Vec<Row>, String> {
    let tcp_server = ProbeServer::start("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let server = astral_api::node(astral_api::identity(1))?;
    let astral_addr = astral_api::listen(&server, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    tokio::spawn(serve_astral_sink(server.clone()));
    let tcp_fwd = Forwarder::start(
        "127.0.0.1:0",
        tcp_server.local_addr(),
        PathParams::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let astral_fwd = Forwarder::start("127.0.0.1:0", astral_addr, PathParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &rtt in &cfg.rtts {
        let mut l = LinkParams::with_delay(rtt / 2);
        l.rate = cfg.rate;
        l.queue = queue_for(cfg, rtt);
        let p = PathParams::symmetric(l);
        tcp_fwd.path().set_params(p.clone());
        astral_fwd.path().set_params(p);
        let (mut tcp, mut astral) = (Vec::new(), Vec::new());
        for run in 0..cfg.runs {
            let t = probe::upload(tcp_fwd.local_addr(), cfg.bytes, None)
                .await
                .map_err(|e| format!("tcp transfer: {e}"))?;
            tcp.push(t.mbit_per_sec());
            let a = astral_upload(
                server.id(),
                astral_fwd.local_addr(),
                cfg.bytes,
                100 + run as u64,
            )
            .await?;
            astral.push(a.mbit_per_sec());
            eprintln!(
                "  rtt {} run {}: tcp {:.1} Mbit/s, astral {:.1} Mbit/s",
                fmt_duration(rtt),
                run + 1,
                t.mbit_per_sec(),
                a.mbit_per_sec()
            );
        }
        rows.push(row(cfg, rtt, tcp, astral));
    }
    astral_api::shutdown(&server);
    Ok(rows)
}

/// Network namespaces and one TUN-bridged path, torn down when dropped.
struct Namespaces {
    script: PathBuf,
    prefix: String,
    wan_bin: PathBuf,
    server: Option<std::process::Child>,
}

/// Subnet of the bench's namespaces (apart from the tests' and the
/// default of the script).
const NETNS_NET: &str = "10.204";
const TCP_PORT: u16 = 7101;
const ASTRAL_PORT: u16 = 7102;

impl Namespaces {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(&self.script)
            .args(args)
            .env("WAN_PREFIX", &self.prefix)
            .env("WAN_NET", NETNS_NET)
            .env("WAN_PATHS", "1")
            .env("ASTRAL_WAN", &self.wan_bin);
        c
    }

    fn ctl(&self, line: &str) -> Result<(), String> {
        let out = self
            .command(&["ctl", "1", line])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "wan-netns.sh ctl 1 {line:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    fn exec(&self, side: &str, exe: &PathBuf, args: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{side}", self.prefix)])
            .arg(exe)
            .args(args);
        c
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.command(&["down"]).output();
    }
}

/// Runs the benchmark between two network namespaces (root).
pub fn run_netns(cfg: &BenchConfig) -> Result<Vec<Row>, String> {
    let dir = cfg
        .self_exe
        .parent()
        .ok_or("cannot locate the binaries' directory")?
        .to_path_buf();
    let wan_bin = dir.join("astral-wan");
    if !wan_bin.exists() {
        return Err(format!(
            "{} not found: build astral-harness's binaries first",
            wan_bin.display()
        ));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/wan-netns.sh");
    let mut ns = Namespaces {
        script,
        prefix: format!("awb{}", std::process::id() % 100_000),
        wan_bin,
        server: None,
    };
    let rate_flag = cfg.rate.map(|r| format!("--rate {r}")).unwrap_or_default();
    let out = ns
        .command(&["up"])
        .env("WAN_PATH1", &rate_flag)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "wan-netns.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let b_addr = format!("{NETNS_NET}.1.2");
    let mut server = ns
        .exec(
            "b",
            &cfg.self_exe,
            &[
                "serve".into(),
                "--tcp".into(),
                format!("0.0.0.0:{TCP_PORT}"),
                "--astral".into(),
                format!("0.0.0.0:{ASTRAL_PORT}"),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the server in the namespace: {e}"))?;
    let id = {
        use std::io::BufRead;
        let out = server.stdout.take().ok_or("no server stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim()
            .strip_prefix("ready ")
            .ok_or(format!("server said {line:?}"))?
            .to_string()
    };
    ns.server = Some(server);
    let mut rows = Vec::new();
    for &rtt in &cfg.rtts {
        ns.ctl(&format!("delay {}", fmt_duration(rtt / 2)))?;
        ns.ctl(&format!("queue {}", queue_for(cfg, rtt)))?;
        let (mut tcp, mut astral) = (Vec::new(), Vec::new());
        for run in 0..cfg.runs {
            for (which, dst, v) in [
                ("tcp", format!("{b_addr}:{TCP_PORT}"), &mut tcp),
                (
                    "astral",
                    format!("{id}@{b_addr}:{ASTRAL_PORT}"),
                    &mut astral,
                ),
            ] {
                let out = ns
                    .exec(
                        "a",
                        &cfg.self_exe,
                        &[
                            "client".into(),
                            "--which".into(),
                            which.into(),
                            "--to".into(),
                            dst,
                            "--bytes".into(),
                            cfg.bytes.to_string(),
                            "--seed".into(),
                            (100 + run).to_string(),
                        ],
                    )
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "{which} client: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                let t: serde_json::Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                let mbit = t["mbit_per_sec"]
                    .as_f64()
                    .ok_or("client printed no goodput")?;
                eprintln!(
                    "  rtt {} run {}: {which} {mbit:.1} Mbit/s",
                    fmt_duration(rtt),
                    run + 1
                );
                v.push(mbit);
            }
        }
        rows.push(row(cfg, rtt, tcp, astral));
    }
    Ok(rows)
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<10} {:>7} {:>9} {:>8} {:>8} {:>12} {:>14} {:>11}\n",
        "via", "rtt", "rate", "queue", "bytes", "tcp Mbit/s", "astral Mbit/s", "astral/tcp"
    );
    for r in rows {
        s += &format!(
            "{:<10} {:>7} {:>9} {:>8} {:>8} {:>12.1} {:>14.1} {:>11.2}\n",
            format!("{:?}", r.via).to_lowercase(),
            format!("{}ms", r.rtt_ms),
            r.rate_mbit.map_or("none".into(), |m| format!("{m}mbit")),
            fmt_size(r.queue),
            fmt_size(r.bytes as usize),
            r.tcp_mbit,
            r.astral_mbit,
            r.ratio
        );
    }
    s
}
