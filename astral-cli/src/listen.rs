//! `astral listen`: a node that accepts streams and serves queries.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use astral_tokio::{codes, Node};

use crate::addr::{parse_addr, Addr};
use crate::allow::AllowFile;
use crate::control::{self, Ctx};
use crate::error::{describe, err, usage, AnyError};
use crate::keys::KeyArgs;
use crate::limited;
use crate::logging::{escape, Noisy};
use crate::options::NodeOpts;
use crate::registry::{self, Registry};
use crate::service::{self, Service};
use crate::signals::{self, Asked, Signals};
use crate::{stdio, transport};

#[derive(clap::Args)]
pub struct ListenArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Address to listen on (repeatable): HOST:PORT (port 0 picks one) or unix:/path.
    #[arg(short, long = "bind", value_name = "ADDR", required = true, value_parser = parse_addr)]
    bind: Vec<Addr>,
    /// Serve query NAME (repeatable): NAME=echo, NAME=discard,
    /// NAME=tcp:HOST:PORT, NAME=unix:/path (bridge each session to that
    /// local service) or NAME=exec:CMD (to `sh -c CMD`'s stdin/stdout).
    #[arg(long, value_name = "NAME=KIND", value_parser = service::parse_serve)]
    serve: Vec<(String, Service)>,
    /// Accept one session for QUERY, join it to stdin/stdout, exit when it ends.
    #[arg(long, value_name = "QUERY")]
    stdio: Option<String>,
    /// Only these identities may connect: FILE lists one node id per line
    /// (`#` comments, like authorized_keys); SIGHUP re-reads it. Others are
    /// hung up on right after the handshake, before any session or peer state.
    #[arg(long, value_name = "FILE")]
    allow: Option<PathBuf>,
    /// Unix socket for `astral ctl` (created with mode 0600, removed on exit).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    #[command(flatten)]
    node: NodeOpts,
}

/// Checks what clap cannot: one service per name, and `--stdio` not
/// shadowing a service.
fn services(a: &ListenArgs) -> Result<HashMap<String, Service>, AnyError> {
    let mut map = HashMap::new();
    for (name, svc) in &a.serve {
        if let Some(old) = map.insert(name.clone(), svc.clone()) {
            return Err(usage(format!(
                "--serve {name} is given twice ({old} and {svc}): one service per query"
            )));
        }
    }
    if let Some(q) = &a.stdio {
        if let Some(svc) = map.get(q) {
            return Err(usage(format!(
                "query {q:?} is both --serve {q}={svc} and --stdio {q}: choose one"
            )));
        }
    }
    Ok(map)
}

type StdioTask = tokio::task::JoinHandle<Result<(), AnyError>>;

/// The `--stdio` session's end, once there is one (never, before).
async fn finished(
    t: &mut Option<StdioTask>,
) -> Result<Result<(), AnyError>, tokio::task::JoinError> {
    match t {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

pub async fn run(a: ListenArgs, quiet: bool) -> Result<ExitCode, AnyError> {
    let services = services(&a)?;
    let config = a.node.config()?;
    let mut signals = Signals::new()?;
    let allow = a
        .allow
        .clone()
        .map(|p| AllowFile::new(p, a.key.insecure_key_perms));
    if allow.is_some() {
        signals = signals.with_hangup()?;
    }
    let identity = a.key.load()?;
    let node = Node::new(identity, config.clone())
        .map_err(|e| usage(format!("invalid node settings: {}", describe(&e))))?;
    // Held until we exit: the lock on KEY.incarnation (a restart names
    // the instance it replaces; a twin names nothing).
    let _record = crate::instance::announce(&a.key.key, &node);
    // The policy is in force before the first socket listens.
    if let Some(f) = &allow {
        let n = f.apply(&node)?;
        tracing::info!(
            "allow list: {n} id{} may connect",
            if n == 1 { "" } else { "s" }
        );
    }
    let reg = Registry::new();
    registry::follow(&node, reg.clone());
    // User-facing lines (stderr): what to give the other side.
    let say = |s: String| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    say(format!("id {}", node.id()));
    // Guards: the socket files go when we do.
    let mut sockets = Vec::new();
    for b in &a.bind {
        let (shown, guard) = transport::listen(&node, &reg, b).await?;
        sockets.extend(guard);
        say(format!("listening on {shown}"));
    }
    if let Some(path) = &a.control {
        let ctx = Ctx {
            node: node.clone(),
            reg: reg.clone(),
            config: config.clone(),
            mode: "listen",
        };
        sockets.push(control::serve(ctx, path).await?);
        say(format!("control socket at {}", path.display()));
    }
    let mut incoming = node.incoming();
    let mut stdio_task: Option<StdioTask> = None;
    let code = loop {
        let q = tokio::select! {
            q = incoming.next() => match q {
                Some(q) => q,
                None => break Err(err("the node stopped")),
            },
            r = finished(&mut stdio_task) => {
                break match r {
                    Ok(Ok(())) => Ok(ExitCode::SUCCESS),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(err(format!("the session task failed: {e}"))),
                };
            }
            asked = signals.next() => match asked {
                Asked::Stop(code) => {
                    // Before the --stdio session's task sees its session
                    // end: the peer learns that we left (PeerShutdown).
                    node.shutdown();
                    break Ok(ExitCode::from(code));
                }
                Asked::Reload => {
                    if let Some(f) = &allow {
                        f.reload(&node);
                    }
                    continue;
                }
            },
        };
        let query = q.query().to_string();
        if a.stdio.as_deref() == Some(query.as_str()) {
            if stdio_task.is_some() {
                limited!(
                    Noisy::Query,
                    info,
                    "query \"{}\" from {}: the --stdio session is taken; rejected as busy",
                    escape(&query),
                    q.peer().short()
                );
                q.reject(codes::BUSY);
                continue;
            }
            let peer = q.peer();
            let s = q
                .accept()
                .map_err(|e| err(format!("accept: {}", describe(&e))))?;
            let short = reg.add_session(s.id(), &query);
            tracing::info!(
                "session {short} from {} for \"{}\" on stdio",
                peer.short(),
                escape(&query)
            );
            stdio_task = Some(tokio::spawn(stdio::join(s)));
            continue;
        }
        match services.get(&query) {
            Some(svc) => {
                tokio::spawn(service::serve(q, svc.clone(), reg.clone()));
            }
            None => {
                limited!(
                    Noisy::Query,
                    info,
                    "query \"{}\" from {}: no such service; rejected",
                    escape(&query),
                    q.peer().short()
                );
                q.reject(codes::NO_SUCH_SERVICE);
            }
        }
    };
    signals::leave(&node).await;
    drop(sockets);
    code
}
