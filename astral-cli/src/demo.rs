//! `astral demo`: two nodes in one process over loopback TCP, two streams,
//! one session carrying a random payload; migrate at ~33 %, kill the carrying
//! TCP connection at ~66 %, check the SHA-256 at the other end.
//!
//! The summary table is built from the client node's events (every event
//! of the session up to its close is counted before printing), so it never
//! contradicts the lines printed during the run: a migration that was asked
//! for but did not complete before the end says so. Units: MiB and MiB/s.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astral_tokio::{CloseReason, Config, Event, Node, SessionId, StreamId};
use bytes::BytesMut;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;

use crate::error::{describe, err, AnyError};
use crate::keys;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Payload size in bytes (suffixes K, M, G = KiB, MiB, GiB).
    #[arg(long, default_value = "256M", value_parser = crate::options::parse_size)]
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

/// What happened to the session, from the client's events.
#[derive(Default)]
struct Timeline {
    /// Completed migrations (from `Migrated` events).
    migrations: Vec<(StreamId, StreamId)>,
    recoveries: u32,
    resent_bytes: u64,
    recovered_after: Vec<Duration>,
    /// The kill: when, which stream.
    killed: Option<(Instant, StreamId)>,
    closed: Option<CloseReason>,
}

/// What the sender did (the requests; the timeline says what came of them).
#[derive(Default)]
struct Steps {
    migrate: Option<(StreamId, StreamId, u64)>,
    migrate_refused: Option<String>,
    kill: Option<(StreamId, u64)>,
}

struct Report {
    sent: u64,
    received: u64,
    sent_hash: [u8; 32],
    received_hash: [u8; 32],
    elapsed: Duration,
    steps: Steps,
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
    print_table(&args, &report, &t, ok);
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

fn pct(at: u64, total: u64) -> u64 {
    at.saturating_mul(100) / total.max(1)
}

fn print_table(args: &DemoArgs, r: &Report, t: &Timeline, ok: bool) {
    let total = args.bytes;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let migrations = if args.no_migrate {
        "skipped (--no-migrate)".to_string()
    } else if let Some(reason) = &r.steps.migrate_refused {
        format!("0 (refused: {reason})")
    } else {
        match (t.migrations.as_slice(), r.steps.migrate) {
            ([], Some((f, to, at))) => format!(
                "0 ({f} -> {to} asked at {}%, not completed before the session ended)",
                pct(at, total)
            ),
            ([], None) => "0 (no second stream)".into(),
            (done, _) => format!(
                "{} ({})",
                done.len(),
                done.iter()
                    .map(|(f, to)| format!("{f} -> {to}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    let killed = if args.no_kill {
        "skipped (--no-kill)".to_string()
    } else {
        match r.steps.kill {
            Some((s, at)) => format!("{s} at {}%", pct(at, total)),
            None => "- (no live transport to kill)".into(),
        }
    };
    let recovery = if t.recovered_after.is_empty() {
        "-".to_string()
    } else {
        t.recovered_after
            .iter()
            .map(|d| format!("{:.1} ms after the kill", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<(&str, String)> = vec![
        ("bytes sent", format!("{} ({:.1} MiB)", r.sent, mib(r.sent))),
        (
            "bytes received",
            format!("{} ({:.1} MiB)", r.received, mib(r.received)),
        ),
        ("sha-256 sent", hex(&r.sent_hash)),
        ("sha-256 received", hex(&r.received_hash)),
        ("match", if ok { "yes".into() } else { "NO".into() }),
        ("migrations", migrations),
        ("transport killed", killed),
        (
            "recoveries",
            format!("{} ({} bytes resent)", t.recoveries, t.resent_bytes),
        ),
        ("recovery time", recovery),
        (
            "session closed",
            t.closed.as_ref().map_or("-".into(), |c| describe(c)),
        ),
        ("elapsed", format!("{secs:.2} s")),
        ("goodput", format!("{:.1} MiB/s", mib(r.received) / secs)),
    ];
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let v = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(64);
    println!("+-{}-+-{}-+", "-".repeat(w), "-".repeat(v));
    for (k, val) in &rows {
        println!("| {k:<w$} | {val:<v$} |");
    }
    println!("+-{}-+-{}-+", "-".repeat(w), "-".repeat(v));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Follows the client's events for our session until it closes; returns
/// once the `SessionClosed` was seen (every earlier event of the session
/// precedes it in the channel), so the timeline is complete.
fn follow(
    client: &Node,
    ours: Arc<Mutex<Option<SessionId>>>,
    timeline: Arc<Mutex<Timeline>>,
    pb: ProgressBar,
) -> tokio::task::JoinHandle<()> {
    let mut events = client.events();
    tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(n)) => {
                    note(
                        &pb,
                        format!("  (missed {n} events: the table may undercount)"),
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let mine = |s: SessionId| ours.lock().map(|g| *g == Some(s)).unwrap_or(false);
            let mut t = timeline.lock().unwrap_or_else(|p| p.into_inner());
            match ev {
                Event::Migrated { session, from, to } if mine(session) => {
                    t.migrations.push((from, to));
                    note(&pb, format!("  migrated {from} -> {to}"));
                }
                Event::Recovering { session } if mine(session) => {
                    note(&pb, "  session recovering...");
                }
                Event::Recovered {
                    session,
                    resent_bytes,
                } if mine(session) => {
                    t.recoveries += 1;
                    t.resent_bytes += resent_bytes;
                    let after = t.killed.map(|(k, _)| k.elapsed());
                    if let Some(d) = after {
                        t.recovered_after.push(d);
                    }
                    note(
                        &pb,
                        format!(
                            "  recovered ({resent_bytes} bytes resent){}",
                            after
                                .map(|d| format!(" {:.1} ms after the kill", d.as_secs_f64() * 1e3))
                                .unwrap_or_default()
                        ),
                    );
                }
                Event::StreamDown { stream, reason, .. } => {
                    note(&pb, format!("  {stream} down: {}", describe(&reason)));
                }
                Event::StreamUp { stream, .. } => {
                    note(&pb, format!("  {stream} up"));
                }
                Event::SessionClosed { session, reason } if mine(session) => {
                    t.closed = Some(reason);
                    return;
                }
                _ => {}
            }
        }
    })
}

async fn transfer(
    args: &DemoArgs,
    timeline: Arc<Mutex<Timeline>>,
    received: Arc<AtomicU64>,
    pb: ProgressBar,
) -> Result<Report, AnyError> {
    let total = args.bytes;
    let server = Node::new(keys::random_identity()?, Config::default())?;
    let client = Node::new(keys::random_identity()?, Config::default())?;
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
        .map_err(|e| err(format!("first stream: {}", describe(&e))))?;
    let s2 = client
        .connect(server.id(), addr)
        .await
        .map_err(|e| err(format!("second stream: {}", describe(&e))))?;
    note(
        &pb,
        format!(
            "client {} connected: two streams {s1}, {s2}",
            client.id().short()
        ),
    );

    let ours: Arc<Mutex<Option<SessionId>>> = Arc::new(Mutex::new(None));
    let ev_task = follow(&client, ours.clone(), timeline.clone(), pb.clone());

    // Receiver: accept one session, hash everything, then finish its side.
    let srv = server.clone();
    let rc = received.clone();
    let recv_task = tokio::spawn(async move {
        let q = srv
            .next_query()
            .await
            .ok_or_else(|| err("server stopped before the query arrived"))?;
        let mut s = q
            .accept()
            .map_err(|e| err(format!("accept: {}", describe(&e))))?;
        let mut h = Sha256::new();
        let mut n_total = 0u64;
        while let Some(c) = s
            .read_chunk(1 << 20)
            .await
            .map_err(|e| err(format!("receiving: {e}")))?
        {
            h.update(&c);
            n_total += c.len() as u64;
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
        .map_err(|e| err(format!("open: {}", describe(&e))))?;
    *ours.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.id());
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
    // Small enough that the migration and the kill land mid-way even for
    // small payloads; large enough to cost nothing.
    let chunk = usize::try_from(total / 64)
        .unwrap_or(usize::MAX)
        .clamp(16 << 10, 1 << 20);
    let mut buf = BytesMut::new();
    let mut sent = 0u64;
    let migrate_at = total / 3;
    let kill_at = total * 2 / 3;
    let mut migrated = args.no_migrate;
    let mut killed = args.no_kill;
    let mut steps = Steps::default();
    while sent < total {
        let n = usize::try_from(total - sent)
            .unwrap_or(usize::MAX)
            .min(chunk);
        buf.resize(n, 0);
        rng.fill_bytes(&mut buf[..n]);
        h.update(&buf[..n]);
        // Handed to the session without a copy.
        session
            .write_chunk(buf.split().freeze())
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
                        steps.migrate = Some((from, to, sent));
                        note(
                            &pb,
                            format!("at {}%: migrating {from} -> {to}", pct(sent, total)),
                        );
                    }
                    Err(e) => {
                        note(
                            &pb,
                            format!(
                                "at {}%: migration refused: {}",
                                pct(sent, total),
                                describe(&e)
                            ),
                        );
                        steps.migrate_refused = Some(describe(&e));
                    }
                },
                _ => note(&pb, "no second stream to migrate to; skipping migration"),
            }
        }
        if !killed && sent >= kill_at {
            killed = true;
            match send_stream(&session) {
                Some(s) => {
                    // Noted before the kill: the recovery that follows can
                    // be reported before `kill_transport` even returns.
                    note(
                        &pb,
                        format!(
                            "at {}%: killing the TCP connection of {s}",
                            pct(sent, total)
                        ),
                    );
                    timeline.lock().unwrap_or_else(|p| p.into_inner()).killed =
                        Some((Instant::now(), s));
                    if client.kill_transport(s) {
                        steps.kill = Some((s, sent));
                    } else {
                        timeline.lock().unwrap_or_else(|p| p.into_inner()).killed = None;
                        note(&pb, format!("  {s} had no live transport to kill"));
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
    // The server finished its side after reading: end-of-stream here, then
    // the session closes and the event follower has seen all of it.
    while let Some(c) = session
        .read_chunk(1 << 16)
        .await
        .map_err(|e| err(format!("receiving the end: {e}")))?
    {
        drop(c);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), session.closed()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), ev_task).await;
    drop(session);
    ticker.abort();
    client.shutdown();
    server.shutdown();
    Ok(Report {
        sent,
        received: rcv,
        sent_hash,
        received_hash,
        elapsed,
        steps,
    })
}

fn send_stream(s: &astral_tokio::Session) -> Option<StreamId> {
    s.info().and_then(|i| i.send_stream)
}

/// A progress line: above the bar on a terminal, plain stderr otherwise.
fn note(pb: &ProgressBar, msg: impl AsRef<str>) {
    if pb.is_hidden() {
        eprintln!("{}", msg.as_ref());
    } else {
        pb.println(msg);
    }
}
