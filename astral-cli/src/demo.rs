//! `astral demo`: two nodes in one process over loopback TCP, two streams,
//! one session carrying a random payload; migrate at ~33 %, kill the carrying
//! TCP connection at ~66 %, check the SHA-256 at the other end.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astral_tokio::{Config, Event, Node, SessionId, StreamId};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{err, keys, AnyError};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Payload size in bytes (suffixes K, M, G = KiB, MiB, GiB).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    bytes: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Skip the migration step.
    #[arg(long)]
    no_migrate: bool,
    /// Skip the kill step.
    #[arg(long)]
    no_kill: bool,
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let mul = match s[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
            };
            (&s[..i], mul)
        }
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let v = n.checked_mul(mul).ok_or("size too large")?;
    if v == 0 {
        return Err("size must be at least 1 byte".into());
    }
    Ok(v)
}

#[derive(Default)]
struct Timeline {
    migrations: u32,
    recoveries: u32,
    migrated_at: Option<(StreamId, StreamId)>,
    killed: Option<(Instant, StreamId)>,
    recovered_after: Vec<Duration>,
    resent_bytes: u64,
    closed: Option<String>,
}

struct Report {
    sent: u64,
    received: u64,
    sent_hash: [u8; 32],
    received_hash: [u8; 32],
    elapsed: Duration,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode, AnyError> {
    let total = args.bytes;
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let received = Arc::new(AtomicU64::new(0));

    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner:.green} [{elapsed_precise}] [{wide_bar:.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
        )
        .map_err(|e| err(e.to_string()))?
        .progress_chars("#>-"),
    );
    pb.enable_steady_tick(Duration::from_millis(100));

    let fut = transfer(&args, timeline.clone(), received.clone(), pb.clone());
    let outcome = match tokio::time::timeout(Duration::from_secs(args.timeout), fut).await {
        Ok(r) => r,
        Err(_) => Err(err(format!(
            "demo timed out after {} s ({} of {} bytes received)",
            args.timeout,
            received.load(Ordering::Relaxed),
            total
        ))),
    };
    pb.finish_and_clear();
    let report = outcome?;

    let t = timeline.lock().unwrap_or_else(|p| p.into_inner());
    let ok = report.sent == total
        && report.received == report.sent
        && report.sent_hash == report.received_hash;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let goodput = report.received as f64 / secs / 1e6;
    let rec_time = if t.recovered_after.is_empty() {
        "-".to_string()
    } else {
        t.recovered_after
            .iter()
            .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<(&str, String)> = vec![
        ("bytes sent", report.sent.to_string()),
        ("bytes received", report.received.to_string()),
        ("sha-256 sent", hex(&report.sent_hash)),
        ("sha-256 received", hex(&report.received_hash)),
        ("match", if ok { "yes".into() } else { "NO".into() }),
        (
            "migrations",
            match t.migrated_at {
                Some((f, to)) => format!("{} ({f} -> {to})", t.migrations),
                None => t.migrations.to_string(),
            },
        ),
        (
            "transport killed",
            match t.killed {
                Some((_, s)) => s.to_string(),
                None => "-".into(),
            },
        ),
        (
            "recoveries",
            format!("{} ({} bytes resent)", t.recoveries, t.resent_bytes),
        ),
        ("recovery time", rec_time),
        ("elapsed", format!("{:.2} s", secs)),
        ("goodput", format!("{goodput:.1} MB/s")),
    ];
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("+-{}-+-{}-+", "-".repeat(w), "-".repeat(64));
    for (k, v) in &rows {
        println!("| {k:<w$} | {v:<64} |");
    }
    println!("+-{}-+-{}-+", "-".repeat(w), "-".repeat(64));
    if ok {
        println!("payload arrived intact");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(err(format!(
            "payload corrupted or incomplete: sent {} bytes, received {} bytes, hashes {}",
            report.sent,
            report.received,
            if report.sent_hash == report.received_hash {
                "match"
            } else {
                "differ"
            }
        )))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn transfer(
    args: &DemoArgs,
    timeline: Arc<Mutex<Timeline>>,
    received: Arc<AtomicU64>,
    pb: ProgressBar,
) -> Result<Report, AnyError> {
    let total = args.bytes;
    let server = Node::new(keys::random_identity()?, Config::default());
    let client = Node::new(keys::random_identity()?, Config::default());
    client.set_redial(Some((Duration::from_millis(20), Duration::from_secs(1))));
    let addr = server
        .listen("127.0.0.1:0")
        .await
        .map_err(|e| err(format!("cannot listen on loopback: {e}")))?;
    note(
        &pb,
        format!("server {} listening on {addr}", server.id().short()),
    );
    let s1 = client
        .connect(server.id(), addr)
        .await
        .map_err(|e| err(format!("first stream: {e}")))?;
    let s2 = client
        .connect(server.id(), addr)
        .await
        .map_err(|e| err(format!("second stream: {e}")))?;
    note(
        &pb,
        format!(
            "client {} connected: two streams {s1}, {s2}",
            client.id().short()
        ),
    );

    // Events of the client node: migrations, recoveries.
    let mut events = client.events();
    let tl = timeline.clone();
    let pbe = pb.clone();
    let session_cell: Arc<Mutex<Option<SessionId>>> = Arc::new(Mutex::new(None));
    let sc = session_cell.clone();
    let ev_task = tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let ours = |s: SessionId| sc.lock().map(|g| *g == Some(s)).unwrap_or(false);
            let mut t = tl.lock().unwrap_or_else(|p| p.into_inner());
            match ev {
                Event::Migrated { session, from, to } if ours(session) => {
                    t.migrations += 1;
                    note(&pbe, format!("  migrated {from} -> {to}"));
                }
                Event::Recovering { session } if ours(session) => {
                    note(&pbe, "  session recovering...");
                }
                Event::Recovered {
                    session,
                    resent_bytes,
                } if ours(session) => {
                    t.recoveries += 1;
                    t.resent_bytes += resent_bytes;
                    let after = t.killed.map(|(k, _)| k.elapsed());
                    if let Some(d) = after {
                        t.recovered_after.push(d);
                    }
                    note(
                        &pbe,
                        format!(
                            "  recovered ({resent_bytes} bytes resent){}",
                            after
                                .map(|d| format!(" {:.1} ms after the kill", d.as_secs_f64() * 1e3))
                                .unwrap_or_default()
                        ),
                    );
                }
                Event::StreamDown { stream, reason, .. } => {
                    note(&pbe, format!("  {stream} down: {reason}"));
                }
                Event::StreamUp { stream, .. } => {
                    note(&pbe, format!("  {stream} up"));
                }
                Event::SessionClosed { session, reason } if ours(session) => {
                    t.closed = Some(reason.to_string());
                }
                _ => {}
            }
        }
    });

    // Receiver: accept one session, hash everything, then close.
    let srv = server.clone();
    let rc = received.clone();
    let recv_task = tokio::spawn(async move {
        let q = srv
            .next_query()
            .await
            .ok_or_else(|| err("server stopped before the query arrived"))?;
        let mut s = q.accept().map_err(|e| err(format!("accept: {e}")))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n_total = 0u64;
        loop {
            let n = s
                .read(&mut buf)
                .await
                .map_err(|e| err(format!("receiving: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            n_total += n as u64;
            rc.store(n_total, Ordering::Relaxed);
        }
        s.shutdown()
            .await
            .map_err(|e| err(format!("closing: {e}")))?;
        Ok::<_, AnyError>((n_total, <[u8; 32]>::from(h.finalize())))
    });

    // Progress ticker.
    let pbt = pb.clone();
    let rt = received.clone();
    let ticker = tokio::spawn(async move {
        loop {
            pbt.set_position(rt.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let start = Instant::now();
    let mut session = client
        .open_session(server.id(), "demo")
        .await
        .map_err(|e| err(format!("open: {e}")))?;
    *session_cell.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.id());
    note(
        &pb,
        format!(
            "session {} open on {}",
            session.id(),
            send_stream(&session).map_or("?".into(), |s| s.to_string())
        ),
    );
    pb.set_message("sending");

    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut h = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    let migrate_at = total / 3;
    let kill_at = total * 2 / 3;
    let mut migrated = args.no_migrate;
    let mut killed = args.no_kill;
    while sent < total {
        let n = ((total - sent) as usize).min(chunk.len());
        rng.fill_bytes(&mut chunk[..n]);
        h.update(&chunk[..n]);
        session
            .write_all(&chunk[..n])
            .await
            .map_err(|e| err(format!("sending: {e}")))?;
        sent += n as u64;

        if !migrated && sent >= migrate_at {
            migrated = true;
            let from = send_stream(&session);
            let to = client
                .peer_streams(server.id())
                .into_iter()
                .find(|s| Some(*s) != from);
            match (from, to) {
                (Some(from), Some(to)) => match client.migrate(session.id(), to) {
                    Ok(()) => {
                        timeline
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .migrated_at = Some((from, to));
                        note(
                            &pb,
                            format!("at {}%: migrating {from} -> {to}", sent * 100 / total),
                        );
                    }
                    Err(e) => note(
                        &pb,
                        format!("at {}%: migration refused: {e}", sent * 100 / total),
                    ),
                },
                _ => note(&pb, "no second stream to migrate to; skipping migration"),
            }
        }
        if !killed && sent >= kill_at {
            killed = true;
            match send_stream(&session) {
                Some(s) => {
                    let t0 = Instant::now();
                    if client.kill_transport(s) {
                        timeline.lock().unwrap_or_else(|p| p.into_inner()).killed = Some((t0, s));
                        note(
                            &pb,
                            format!(
                                "at {}%: killing the TCP connection of {s}",
                                sent * 100 / total
                            ),
                        );
                    } else {
                        note(
                            &pb,
                            format!(
                                "at {}%: {s} had no live transport to kill",
                                sent * 100 / total
                            ),
                        );
                    }
                }
                None => note(&pb, "session has no send stream; skipping kill"),
            }
        }
    }
    let sent_hash: [u8; 32] = h.finalize().into();
    session
        .shutdown()
        .await
        .map_err(|e| err(format!("finishing: {e}")))?;
    pb.set_message("waiting for the receiver");

    let (rcv, received_hash) = match recv_task.await {
        Ok(r) => r?,
        Err(e) => return Err(err(format!("receiver task failed: {e}"))),
    };
    let elapsed = start.elapsed();
    pb.set_position(rcv);
    // The server half-closed after reading: we see end-of-stream.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), session.read_to_end(&mut rest)).await;
    drop(session);
    ticker.abort();
    // Give the event task a moment to record a late Recovered event.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ev_task.abort();
    client.shutdown();
    server.shutdown();
    Ok(Report {
        sent,
        received: rcv,
        sent_hash,
        received_hash,
        elapsed,
    })
}

fn send_stream(s: &astral_tokio::Session) -> Option<StreamId> {
    s.info()
        .map(|i| i.send_stream)
        .filter(|s| *s != StreamId::NONE)
}

/// A progress line: above the bar on a terminal, plain stderr otherwise.
fn note(pb: &ProgressBar, msg: impl AsRef<str>) {
    if pb.is_hidden() {
        eprintln!("{}", msg.as_ref());
    } else {
        pb.println(msg);
    }
}
