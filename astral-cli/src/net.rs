//! `astral listen` and `astral connect`: netcat-style nodes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use std::io::IsTerminal;
use std::time::Duration;

use astral_tokio::{codes, CloseReason, Config, Event, Node, NodeId, Session, SessionId};
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, oneshot};

/// How long to wait for the peer to acknowledge the end of a session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for the last records to reach the socket after a graceful close.
const LINGER: Duration = Duration::from_millis(100);

use crate::{err, keys, AnyError};

#[derive(clap::Args)]
pub struct ListenArgs {
    /// Key file (from `astral keygen`).
    #[arg(short, long)]
    key: PathBuf,
    /// Address to listen on (repeatable), e.g. 127.0.0.1:4000.
    #[arg(short, long = "bind", required = true)]
    bind: Vec<String>,
    /// Serve a query: NAME=echo or NAME=discard (repeatable).
    #[arg(long, value_parser = parse_serve)]
    serve: Vec<(String, Service)>,
    /// Accept one session for QUERY, join it to stdin/stdout, exit when it ends.
    #[arg(long, value_name = "QUERY")]
    stdio: Option<String>,
    /// Unix socket for `astral ctl`.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug)]
pub enum Service {
    Echo,
    Discard,
}

fn parse_serve(s: &str) -> Result<(String, Service), String> {
    let (name, kind) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=echo|discard, got {s:?}"))?;
    let kind = match kind {
        "echo" => Service::Echo,
        "discard" => Service::Discard,
        k => return Err(format!("unknown service {k:?} (echo or discard)")),
    };
    if name.is_empty() {
        return Err("empty service name".into());
    }
    Ok((name.to_string(), kind))
}

#[derive(clap::Args)]
pub struct ConnectArgs {
    /// Key file (from `astral keygen`).
    #[arg(short, long)]
    key: PathBuf,
    /// One or more ID@ADDR (addresses of the same peer), then the QUERY to
    /// open a session for.
    #[arg(required = true, num_args = 1.., value_name = "ID@ADDR... QUERY")]
    args: Vec<String>,
    /// Number of streams to open (spread over the addresses given).
    #[arg(long, default_value_t = 1)]
    streams: usize,
}

pub async fn listen(a: ListenArgs) -> Result<ExitCode, AnyError> {
    let id = keys::load(&a.key)?;
    let node = Node::new(id, Config::default());
    eprintln!("id {}", node.id());
    for b in &a.bind {
        let addr = node
            .listen(b.as_str())
            .await
            .map_err(|e| err(format!("cannot listen on {b}: {e}")))?;
        eprintln!("listening on {addr}");
    }
    if let Some(path) = &a.control {
        crate::ctl::serve(node.clone(), path.clone()).await?;
        eprintln!("control socket at {}", path.display());
    }
    let services: HashMap<String, Service> = a.serve.into_iter().collect();
    let mut incoming = node.incoming();
    let mut stdio_task: Option<tokio::task::JoinHandle<Result<(), AnyError>>> = None;
    loop {
        let q = tokio::select! {
            q = incoming.next() => match q {
                Some(q) => q,
                None => return Err(err("node stopped")),
            },
            r = async { stdio_task.as_mut().unwrap().await }, if stdio_task.is_some() => {
                cleanup_control(&a.control);
                return match r {
                    Ok(Ok(())) => Ok(ExitCode::SUCCESS),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(err(format!("session task failed: {e}"))),
                };
            }
            _ = tokio::signal::ctrl_c() => {
                cleanup_control(&a.control);
                return Ok(ExitCode::from(130));
            }
        };
        let peer = q.peer();
        let query = q.query().to_string();
        if stdio_task.is_none() && a.stdio.as_deref() == Some(query.as_str()) {
            // Subscribed before the session can close, so no close is missed.
            let watch = watch(&node);
            let s = q.accept().map_err(|e| err(format!("accept: {e}")))?;
            eprintln!("session {} from {} for {query:?}", s.id(), peer);
            stdio_task = Some(tokio::spawn({
                let closed = watch(s.id());
                join_stdio(s, closed)
            }));
            continue;
        }
        match services.get(&query) {
            Some(&svc) => {
                let s = match q.accept() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%e, "accept failed");
                        continue;
                    }
                };
                tracing::info!(session = %s.id(), %peer, %query, "serving {svc:?}");
                tokio::spawn(serve(s, svc));
            }
            None => {
                tracing::info!(%peer, %query, "rejecting unknown query");
                q.reject(codes::NO_SUCH_SERVICE);
            }
        }
    }
}

fn cleanup_control(p: &Option<PathBuf>) {
    if let Some(p) = p {
        let _ = std::fs::remove_file(p);
    }
}

async fn serve(s: Session, svc: Service) {
    let id = s.id();
    let (mut r, mut w) = s.into_split();
    let res = match svc {
        Service::Echo => tokio::io::copy(&mut r, &mut w).await,
        Service::Discard => tokio::io::copy(&mut r, &mut tokio::io::sink()).await,
    };
    let _ = w.shutdown().await;
    match res {
        Ok(n) => tracing::info!(session = %id, bytes = n, "session done"),
        Err(e) => tracing::warn!(session = %id, %e, "session failed"),
    }
}

/// Joins a session to stdin/stdout: stdin EOF half-closes the session; ends
/// when both directions ended and the session closed. Ok only when it closed
/// gracefully (every byte written was delivered and acknowledged).
///
/// `closed` comes from [`watch`].
async fn join_stdio(
    s: Session,
    closed: oneshot::Receiver<Result<CloseReason, String>>,
) -> Result<(), AnyError> {
    let (mut r, mut w) = s.into_split();
    let mut up = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let n = tokio::io::copy(&mut stdin, &mut w)
            .await
            .map_err(|e| err(format!("sending: {e}")))?;
        w.shutdown()
            .await
            .map_err(|e| err(format!("half-closing: {e}")))?;
        tracing::info!(bytes = n, "stdin done, half-closed");
        Ok::<_, AnyError>(())
    });
    let mut stdout = tokio::io::stdout();
    let down = tokio::io::copy(&mut r, &mut stdout).await;
    let _ = stdout.flush().await;
    if let Err(e) = down {
        up.abort();
        return Err(err(format!("receiving: {e}")));
    }
    tracing::info!("peer half-closed");
    // The peer finished its side. Keep sending until stdin ends; only an
    // interactive terminal is given up on (the user would have to press ^D).
    if std::io::stdin().is_terminal() {
        match tokio::time::timeout(Duration::from_millis(200), &mut up).await {
            Ok(r) => r.map_err(|e| err(format!("stdin task failed: {e}")))??,
            // Dropping the writer half-closes the session.
            Err(_) => up.abort(),
        }
    } else {
        up.await
            .map_err(|e| err(format!("stdin task failed: {e}")))??;
    }
    drop(r);
    wait_closed(closed).await
}

/// Follows the node's events for session `id` in a task: logs stream
/// deaths, migrations and recoveries (`-v`), and resolves with the reason the
/// session closed. Call before the session can close (before accept or open).
fn watch(node: &Node) -> impl FnOnce(SessionId) -> oneshot::Receiver<Result<CloseReason, String>> {
    let mut events = node.events();
    let node = node.clone();
    move |id| {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let r = loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(Event::SessionClosed { session, reason }) if session == id => break Ok(reason),
                        Ok(Event::StreamDown { stream, reason, .. }) => {
                            tracing::info!(%stream, %reason, "stream down");
                        }
                        Ok(Event::StreamUp { stream, peer }) => {
                            tracing::info!(%stream, %peer, "stream up");
                        }
                        Ok(Event::Migrated { session, from, to }) if session == id => {
                            tracing::info!(%session, %from, %to, "session migrated");
                        }
                        Ok(Event::Recovering { session, .. }) if session == id => {
                            tracing::info!(%session, "session recovering");
                        }
                        Ok(Event::Recovered { session, resent_bytes }) if session == id => {
                            tracing::info!(%session, resent_bytes, "session recovered");
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break Err("node stopped".to_string()),
                    },
                    _ = tick.tick() => {
                        // Missed the event (lagged): the session is gone all the same.
                        if node.session_info(id).is_none() {
                            break Err("session ended (close reason lost)".to_string());
                        }
                    }
                }
            };
            let _ = tx.send(r);
        });
        rx
    }
}

/// Waits for the session to close; Ok when it closed gracefully. Lingers a
/// moment after that so the last acknowledgement reaches the socket before
/// the process exits.
async fn wait_closed(
    closed: oneshot::Receiver<Result<CloseReason, String>>,
) -> Result<(), AnyError> {
    match tokio::time::timeout(CLOSE_TIMEOUT, closed).await {
        Ok(Ok(Ok(CloseReason::Graceful))) => {
            tokio::time::sleep(LINGER).await;
            Ok(())
        }
        Ok(Ok(Ok(r))) => Err(err(format!("session ended: {r}"))),
        Ok(Ok(Err(e))) => Err(err(e)),
        Ok(Err(_)) => Err(err("session watcher failed")),
        Err(_) => Err(err(
            "timed out waiting for the peer to acknowledge the end of the session",
        )),
    }
}

fn parse_peer(s: &str) -> Result<(NodeId, String), AnyError> {
    let (id, addr) = s.split_once('@').ok_or_else(|| {
        err(format!(
            "expected ID@ADDR, got {s:?} (ID is the 64-hex node id)"
        ))
    })?;
    let id: NodeId = id
        .parse()
        .map_err(|e| err(format!("bad peer id {id:?}: {e}")))?;
    if addr.is_empty() {
        return Err(err(format!("missing address in {s:?}")));
    }
    Ok((id, addr.to_string()))
}

pub async fn connect(a: ConnectArgs) -> Result<ExitCode, AnyError> {
    let identity = keys::load(&a.key)?;
    let (query, peers) = a
        .args
        .split_last()
        .ok_or_else(|| err("missing ID@ADDR and QUERY"))?;
    if peers.is_empty() {
        return Err(err("missing ID@ADDR before the query"));
    }
    let mut targets = Vec::new();
    for p in peers {
        targets.push(parse_peer(p)?);
    }
    let peer = targets[0].0;
    if let Some((other, _)) = targets.iter().find(|(id, _)| *id != peer) {
        return Err(err(format!(
            "all ID@ADDR must name the same peer ({peer} vs {other})"
        )));
    }
    if a.streams == 0 {
        return Err(err("--streams must be at least 1"));
    }
    let node = Node::new(identity, Config::default());
    let watch = watch(&node);
    let n = a.streams.max(targets.len());
    for i in 0..n {
        let addr = &targets[i % targets.len()].1;
        let s = node
            .connect(peer, addr.as_str())
            .await
            .map_err(|e| err(format!("cannot connect to {peer}@{addr}: {e}")))?;
        tracing::info!(stream = %s, %addr, "connected");
    }
    let s = node.open_session(peer, query).await.map_err(|e| match e {
        astral_tokio::Error::Rejected { code, .. } => err(format!(
            "query {:?} rejected by the peer (code {code}{})",
            query,
            code_name(code)
        )),
        e => err(format!("cannot open {query:?}: {e}")),
    })?;
    tracing::info!(session = %s.id(), "session open");
    let closed = watch(s.id());
    join_stdio(s, closed).await?;
    node.shutdown();
    Ok(ExitCode::SUCCESS)
}

fn code_name(code: u8) -> &'static str {
    match code {
        codes::REJECTED => ": rejected",
        codes::NO_SUCH_SERVICE => ": no such service",
        codes::BUSY => ": busy",
        codes::LIMIT => ": limit",
        codes::TIMEOUT => ": timeout",
        _ => "",
    }
}
