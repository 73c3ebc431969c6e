//! `astral connect`: streams to one peer, then one session joined to
//! stdin/stdout (like nc), or `--forward` listeners (like ssh -L).

use std::path::PathBuf;
use std::process::ExitCode;

use astral_tokio::{codes, Node};

use crate::addr::{parse_target, Target};
use crate::control::{self, Ctx};
use crate::dialer::Dialer;
use crate::error::{describe, err, usage, AnyError};
use crate::forward;
use crate::keys::KeyArgs;
use crate::logging::escape;
use crate::options::NodeOpts;
use crate::registry::{self, Registry};
use crate::signals::{self, Signals};
use crate::stdio;

#[derive(clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// One or more ID@HOST:PORT or ID@unix:/path (addresses of the same
    /// peer), then the QUERY to open a session for (not with --forward).
    #[arg(required = true, num_args = 1.., value_name = "ID@ADDR... QUERY")]
    args: Vec<String>,
    /// Streams to open, spread over the addresses [default: one per address].
    #[arg(long, value_name = "N")]
    streams: Option<usize>,
    /// Dial TCP addresses through this SOCKS5 proxy (e.g. Tor's
    /// 127.0.0.1:9050); host names are resolved by the proxy.
    #[arg(long, value_name = "HOST:PORT")]
    socks5: Option<String>,
    /// Listen on LOCAL_ADDR (HOST:PORT or unix:/path); each connection
    /// becomes a session opened with QUERY (repeatable).
    #[arg(long, num_args = 2, value_names = ["LOCAL_ADDR", "QUERY"], action = clap::ArgAction::Append)]
    forward: Vec<String>,
    /// Unix socket for `astral ctl` (created with mode 0600, removed on exit).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    #[command(flatten)]
    node: NodeOpts,
}

/// The user's sentence for a failed `open_session`.
pub fn open_error(query: &str, e: &astral_tokio::Error) -> String {
    let q = escape(query);
    match e {
        astral_tokio::Error::Rejected { code, .. } => format!(
            "query \"{q}\" rejected by the peer (code {code}{})",
            match *code {
                codes::REJECTED => ": rejected; for a bridged service, its backend may be down",
                codes::NO_SUCH_SERVICE => ": no such service; check the listener's --serve",
                codes::BUSY => ": busy",
                codes::LIMIT => ": a limit was reached",
                codes::TIMEOUT => ": the listener did not answer in time",
                _ => "",
            }
        ),
        e => format!("cannot open \"{q}\": {}", describe(e)),
    }
}

/// Splits the positionals into targets and the query.
fn split_args(a: &ConnectArgs) -> Result<(Vec<Target>, Option<String>), AnyError> {
    let forwarding = !a.forward.is_empty();
    let (targets, query): (&[String], Option<&String>) = if forwarding {
        (&a.args, None)
    } else {
        let (q, t) = a
            .args
            .split_last()
            .ok_or_else(|| usage("missing ID@ADDR and QUERY"))?;
        if parse_target(q).is_ok() {
            return Err(usage(format!(
                "missing the QUERY after {q}: e.g. `astral connect -k KEY {q} echo`"
            )));
        }
        if t.is_empty() {
            return Err(usage(format!(
                "missing ID@ADDR before the query {:?}: e.g. `astral connect -k KEY ID@HOST:PORT {}`",
                q, q
            )));
        }
        (t, Some(q))
    };
    let mut parsed = Vec::new();
    for t in targets {
        let target = parse_target(t).map_err(|e| {
            if forwarding && targets.last() == Some(t) {
                usage(format!(
                    "{e} (with --forward, the query goes after LOCAL_ADDR)"
                ))
            } else {
                usage(e)
            }
        })?;
        parsed.push(target);
    }
    let peer = parsed[0].peer;
    if let Some(other) = parsed.iter().find(|t| t.peer != peer) {
        return Err(usage(format!(
            "all ID@ADDR must name the same peer ({} vs {}): one connect talks to one peer",
            peer.short(),
            other.peer.short()
        )));
    }
    Ok((parsed, query.cloned()))
}

pub async fn run(a: ConnectArgs, quiet: bool) -> Result<ExitCode, AnyError> {
    let (targets, query) = split_args(&a)?;
    let forwards = forward::parse(&a.forward).map_err(usage)?;
    let config = a.node.config()?;
    let n = a.streams.unwrap_or(targets.len());
    let limit = config.max_streams_per_peer;
    if n == 0 {
        return Err(usage("--streams must be at least 1"));
    }
    if n > limit {
        return Err(usage(format!(
            "--streams {n} exceeds the limit of {limit} streams per peer"
        )));
    }
    if let Some(p) = &a.socks5 {
        crate::addr::parse_addr(p).map_err(|e| usage(format!("--socks5: {e}")))?;
    }
    let mut signals = Signals::new()?;
    let identity = a.key.load()?;
    let peer = targets[0].peer;
    let node = Node::new(identity, config.clone())
        .map_err(|e| usage(format!("invalid node settings: {}", describe(&e))))?;
    // Held until we exit: the lock on KEY.incarnation (a restart names
    // the instance it replaces; a twin names nothing).
    let _record = crate::instance::announce(&a.key.key, &node);
    let reg = Registry::new();
    registry::follow(&node, reg.clone());
    let mut sockets = Vec::new();
    if let Some(path) = &a.control {
        let ctx = Ctx {
            node: node.clone(),
            reg: reg.clone(),
            config: config.clone(),
            mode: "connect",
        };
        sockets.push(control::serve(ctx, path).await?);
        if !quiet {
            eprintln!("control socket at {}", path.display());
        }
    }
    let dialer = Dialer::new(&node, &reg, targets, a.socks5.clone());
    let work = async {
        let opened = dialer.start(n, query.as_deref()).await?;
        if let Some(query) = query {
            // The first stream up carried the query (`start` opens it with
            // the handshake); a dial that came up without it cannot happen,
            // but would still open here.
            let opened = match opened {
                Some(o) => o,
                None => node.open_session(peer, &query).await,
            };
            let s = opened.map_err(|e| err(open_error(&query, &e)))?;
            let short = reg.add_session(s.id(), &query);
            tracing::info!("session {short} open: \"{}\"", escape(&query));
            stdio::join(s).await?;
            return Ok(ExitCode::SUCCESS);
        }
        for f in &forwards {
            let (shown, guard) = forward::start(&node, &reg, peer, f).await?;
            sockets.extend(guard);
            if !quiet {
                eprintln!(
                    "forwarding {shown} to \"{}\" on {}",
                    escape(&f.query),
                    peer.short()
                );
            }
        }
        // Forwarding runs until a signal.
        std::future::pending::<Result<ExitCode, AnyError>>().await
    };
    // A signal shuts the node down before the session is dropped (with
    // `work`): the peer then learns that we left (PeerShutdown), not that
    // the session was reset.
    let stop = async {
        let code = signals.recv().await;
        node.shutdown();
        code
    };
    let code = tokio::select! {
        r = work => r,
        code = stop => Ok(ExitCode::from(code)),
    };
    dialer.stop();
    signals::leave(&node).await;
    drop(sockets);
    code
}
