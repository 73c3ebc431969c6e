//! The control socket of `listen --control PATH` and `connect --control
//! PATH`: a Unix socket (mode 0600) that `astral ctl` talks to.
//!
//! Protocol (docs/CLI.md): one JSON object per line each way. A request is
//! `{"cmd": NAME, ...args}`; a reply is `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": {"kind": KIND, "message": TEXT}}`. Ids in
//! requests are short ids (`s3`, `t1`) or the long form.

use std::path::Path;
use std::sync::Arc;

use astral_tokio::{Config, Node, SessionId, StreamId};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::error::AnyError;
use crate::registry::{Lookup, Registry};
use crate::unixsock::{self, SocketPath};
use crate::view;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// What a control request works on.
#[derive(Clone)]
pub struct Ctx {
    /// The node.
    pub node: Node,
    /// The tool's tables.
    pub reg: Arc<Registry>,
    /// The node's configuration (for `node` and windows).
    pub config: Config,
    /// `listen` or `connect`.
    pub mode: &'static str,
}

/// A failed request: a stable kind and a sentence.
#[derive(Debug)]
pub struct CtlError {
    /// `bad_request`, `unknown_command`, `unknown_session`,
    /// `unknown_stream`, `unknown_peer`, `ambiguous`, `refused`.
    pub kind: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

fn fail(kind: &'static str, message: impl Into<String>) -> CtlError {
    CtlError {
        kind,
        message: message.into(),
    }
}

/// Binds the control socket and serves it until the process ends; the
/// returned guard removes the socket file.
pub async fn serve(ctx: Ctx, path: &Path) -> Result<SocketPath, AnyError> {
    let (l, guard) = unixsock::bind(path, "control socket", true).await?;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = l.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut r = BufReader::new(r);
                let mut line = String::new();
                loop {
                    line.clear();
                    let mut limited = (&mut r).take(MAX_LINE as u64 + 1);
                    match limited.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let reply = if line.len() > MAX_LINE {
                        error_reply(&fail("bad_request", "request longer than 64 KiB"))
                    } else {
                        match handle(&ctx, line.trim_end()) {
                            Ok(v) => json!({"ok": true, "result": v}),
                            Err(e) => error_reply(&e),
                        }
                    };
                    if w.write_all(format!("{reply}\n").as_bytes()).await.is_err()
                        || line.len() > MAX_LINE
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(guard)
}

fn error_reply(e: &CtlError) -> Value {
    json!({"ok": false, "error": {"kind": e.kind, "message": e.message}})
}

fn arg(req: &Value, key: &str) -> Result<String, CtlError> {
    match req.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(fail("bad_request", format!("missing argument {key:?}"))),
    }
}

fn stream_arg(ctx: &Ctx, req: &Value) -> Result<(StreamId, String), CtlError> {
    let name = arg(req, "stream")?;
    let live: Vec<StreamId> = ctx.node.streams().into_iter().map(|s| s.id).collect();
    match ctx.reg.find_stream(&name, &live) {
        Ok(id) => Ok((id, ctx.reg.stream(id))),
        Err(_) => Err(fail(
            "unknown_stream",
            format!("no stream {name:?} (see `astral ctl streams`)"),
        )),
    }
}

fn session_arg(ctx: &Ctx, req: &Value) -> Result<(SessionId, String), CtlError> {
    let name = arg(req, "session")?;
    let live: Vec<SessionId> = ctx.node.sessions().into_iter().map(|s| s.id).collect();
    match ctx.reg.find_session(&name, &live) {
        Ok(id) => Ok((id, ctx.reg.session(id))),
        Err(_) => Err(fail(
            "unknown_session",
            format!("no session {name:?} (see `astral ctl sessions`)"),
        )),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    // Rows are plain data (strings, numbers, options, vectors): they
    // always serialise.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Answers one request line.
pub fn handle(ctx: &Ctx, line: &str) -> Result<Value, CtlError> {
    let req: Value = serde_json::from_str(line)
        .map_err(|e| fail("bad_request", format!("not a JSON object: {e}")))?;
    let cmd = req
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("bad_request", "missing \"cmd\""))?;
    match cmd {
        "node" => Ok(to_value(view::node(
            &ctx.node,
            &ctx.reg,
            &ctx.config,
            ctx.mode,
        ))),
        "streams" => Ok(to_value(view::streams(&ctx.node, &ctx.reg))),
        "sessions" => Ok(to_value(view::sessions(&ctx.node, &ctx.reg, &ctx.config))),
        "peers" => {
            let rows = view::peers(&ctx.node, &ctx.reg);
            match req.get("peer") {
                None => Ok(to_value(rows)),
                Some(_) => {
                    let name = arg(&req, "peer")?;
                    let live: Vec<_> = rows.iter().filter_map(|r| r.peer.parse().ok()).collect();
                    let p = ctx.reg.find_peer(&name, &live).map_err(|e| match e {
                        Lookup::Ambiguous => fail(
                            "ambiguous",
                            format!("{name:?} matches several peers: give more hex digits"),
                        ),
                        Lookup::Unknown => fail(
                            "unknown_peer",
                            format!("no peer {name:?} (see `astral ctl peers`)"),
                        ),
                    })?;
                    let p = p.to_string();
                    Ok(to_value(
                        rows.into_iter().filter(|r| r.peer == p).collect::<Vec<_>>(),
                    ))
                }
            }
        }
        "migrate" => {
            let (session, s) = session_arg(ctx, &req)?;
            let (stream, t) = stream_arg(ctx, &req)?;
            let from = ctx
                .node
                .session_info(session)
                .and_then(|i| i.send_stream)
                .map(|f| ctx.reg.stream(f));
            ctx.node.migrate(session, stream).map_err(|e| {
                fail(
                    "refused",
                    format!(
                        "cannot migrate {s} to {t}: {}",
                        crate::error::describe(&e).trim_start_matches("migration refused: ")
                    ),
                )
            })?;
            Ok(json!({"session": s, "from": from, "to": t}))
        }
        "pin" | "unpin" => {
            let (session, s) = session_arg(ctx, &req)?;
            let pinned = cmd == "pin";
            ctx.node.pin_session(session, pinned).map_err(|e| {
                fail(
                    "refused",
                    format!(
                        "cannot {cmd} {s}: {}",
                        crate::error::describe(&e).trim_start_matches("migration refused: ")
                    ),
                )
            })?;
            let (local, peer) = ctx.node.session_pins(session).unwrap_or((pinned, false));
            Ok(json!({"session": s, "pinned": local, "peer_pinned": peer}))
        }
        "drain" => {
            let (stream, t) = stream_arg(ctx, &req)?;
            ctx.reg.retire(stream);
            let n = ctx.node.drain_stream(stream).map_err(|e| {
                fail(
                    "refused",
                    format!("cannot drain {t}: {}", crate::error::describe(&e)),
                )
            })?;
            Ok(json!({"stream": t, "sessions_moved": n}))
        }
        "close" => {
            let (stream, t) = stream_arg(ctx, &req)?;
            ctx.reg.retire(stream);
            ctx.node.close_stream(stream).map_err(|e| {
                fail(
                    "refused",
                    format!("cannot close {t}: {}", crate::error::describe(&e)),
                )
            })?;
            Ok(json!({"stream": t}))
        }
        other => Err(fail(
            "unknown_command",
            format!(
                "unknown command {:?} (node, streams, sessions, peers, migrate, pin, unpin, drain, close)",
                crate::logging::escape(other)
            ),
        )),
    }
}
