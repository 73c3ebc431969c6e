//! `connect --forward LOCAL_ADDR QUERY`: a local listening socket (TCP or
//! Unix) whose every connection becomes a session with the peer, opened
//! with QUERY, like `ssh -L`. Bytes, half-close and backpressure go
//! through as in [`crate::bridge`]; a failed session resets the local
//! connection, a local connection that breaks resets its session.

use std::sync::Arc;

use astral_tokio::{Node, NodeId};
use tokio::net::{TcpListener, UnixListener};

use crate::addr::{parse_addr, Addr};
use crate::bridge::{self, Outcome};
use crate::error::{err, AnyError};
use crate::limited;
use crate::logging::{escape, Noisy};
use crate::registry::Registry;
use crate::unixsock::{self, SocketPath};

/// One `--forward LOCAL_ADDR QUERY`.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Where to listen locally.
    pub local: Addr,
    /// The query each connection's session is opened with.
    pub query: String,
}

/// Pairs up `--forward` values (clap hands them over flat, two per use).
pub fn parse(values: &[String]) -> Result<Vec<Forward>, String> {
    values
        .chunks(2)
        .map(|c| match c {
            [local, query] => {
                let local = parse_addr(local).map_err(|e| format!("--forward {local}: {e}"))?;
                if query.is_empty() {
                    return Err("--forward: empty QUERY".into());
                }
                Ok(Forward {
                    local,
                    query: query.clone(),
                })
            }
            _ => Err("--forward takes LOCAL_ADDR QUERY".into()),
        })
        .collect()
}

/// Binds the local side and serves it in the background. Returns the
/// bound address and, for Unix sockets, the guard removing the file.
pub async fn start(
    node: &Node,
    reg: &Arc<Registry>,
    peer: NodeId,
    f: &Forward,
) -> Result<(String, Option<SocketPath>), AnyError> {
    match &f.local {
        Addr::Tcp { host, port } => {
            let l = TcpListener::bind((host.as_str(), *port))
                .await
                .map_err(|e| err(format!("cannot listen on {} for --forward: {e}", f.local)))?;
            let shown = l
                .local_addr()
                .map_or_else(|_| f.local.to_string(), |a| a.to_string());
            let (node, reg, query) = (node.clone(), reg.clone(), f.query.clone());
            tokio::spawn(async move {
                loop {
                    let (tcp, from) = match l.accept().await {
                        Ok(c) => c,
                        Err(e) => {
                            limited!(Noisy::Query, warn, "--forward accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let (node, reg, query) = (node.clone(), reg.clone(), query.clone());
                    tokio::spawn(async move {
                        let (mut r, mut w) = tcp.into_split();
                        let failed =
                            one(&node, &reg, peer, &query, from.to_string(), &mut r, &mut w).await;
                        if failed {
                            if let Ok(t) = r.reunite(w) {
                                let _ = t.set_zero_linger();
                            }
                        }
                    });
                }
            });
            Ok((shown, None))
        }
        Addr::Unix(path) => {
            let (l, guard): (UnixListener, SocketPath) =
                unixsock::bind(path, "--forward socket", false).await?;
            let shown = f.local.to_string();
            let (node, reg, query) = (node.clone(), reg.clone(), f.query.clone());
            let from = shown.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((u, _)) = l.accept().await else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let (node, reg, query, from) =
                        (node.clone(), reg.clone(), query.clone(), from.clone());
                    tokio::spawn(async move {
                        let (mut r, mut w) = u.into_split();
                        one(&node, &reg, peer, &query, from, &mut r, &mut w).await;
                    });
                }
            });
            Ok((shown, Some(guard)))
        }
    }
}

/// One local connection: open its session and bridge them. Returns whether
/// the local side should be aborted (the session failed, or never opened).
async fn one<R, W>(
    node: &Node,
    reg: &Registry,
    peer: NodeId,
    query: &str,
    from: String,
    r: &mut R,
    w: &mut W,
) -> bool
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let s = match node.open_session(peer, query).await {
        Ok(s) => s,
        Err(e) => {
            limited!(
                Noisy::Query,
                warn,
                "--forward connection from {from}: cannot open \"{}\": {}",
                escape(query),
                crate::connect::open_error(query, &e)
            );
            return true;
        }
    };
    let short = reg.add_session(s.id(), query);
    limited!(
        Noisy::Session,
        info,
        "--forward connection from {from}: session {short} \"{}\"",
        escape(query)
    );
    match bridge::run(s, r, w).await {
        Outcome::Done { up, down, reason } => {
            match reason {
                Some(astral_tokio::CloseReason::Graceful) => {
                    tracing::debug!("session {short} done: {up} bytes sent, {down} received")
                }
                r => limited!(
                    Noisy::Session,
                    info,
                    "session {short} ended: {}",
                    r.map_or("the peer did not acknowledge the end".into(), |r| r
                        .to_string())
                ),
            }
            false
        }
        Outcome::LocalFailed(e) => {
            limited!(
                Noisy::Session,
                info,
                "session {short}: local connection from {from} failed ({e}); session reset"
            );
            false
        }
        Outcome::SessionFailed(e) => {
            limited!(
                Noisy::Session,
                info,
                "session {short} failed ({e}); local connection from {from} reset"
            );
            true
        }
    }
}
