//! `astral ctl` and the control socket of `astral listen --control PATH`.
//!
//! Protocol: one JSON object per line each way. Requests:
//! `{"cmd":"streams"}`, `{"cmd":"sessions"}`,
//! `{"cmd":"migrate","session":N,"stream":N}`, `{"cmd":"drain","stream":N}`,
//! `{"cmd":"close","stream":N}`. Replies: `{"ok":true,"result":...}` or
//! `{"ok":false,"error":"..."}`.

use std::path::PathBuf;
use std::process::ExitCode;

use astral_tokio::{Node, SessionId, StreamId};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{err, AnyError};

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The node's control socket.
    #[arg(long, value_name = "PATH")]
    control: PathBuf,
    /// Print raw JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(clap::Subcommand)]
enum CtlCmd {
    /// List streams.
    Streams,
    /// List sessions.
    Sessions,
    /// Move SESSION onto STREAM.
    Migrate { session: u64, stream: u64 },
    /// Move every session off STREAM, then close it.
    Drain { stream: u64 },
    /// Close STREAM now (its sessions recover elsewhere).
    Close { stream: u64 },
}

pub async fn serve(node: Node, path: PathBuf) -> Result<(), AnyError> {
    #[cfg(unix)]
    {
        if path.exists() {
            // A stale socket from a dead node: replace it; a live one: refuse.
            if tokio::net::UnixStream::connect(&path).await.is_ok() {
                return Err(err(format!(
                    "control socket {} is in use by another node",
                    path.display()
                )));
            }
            let _ = std::fs::remove_file(&path);
        }
        let l = tokio::net::UnixListener::bind(&path).map_err(|e| {
            err(format!(
                "cannot bind control socket {}: {e}",
                path.display()
            ))
        })?;
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = l.accept().await else {
                    continue;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let (r, mut w) = conn.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = match handle(&node, &line) {
                            Ok(v) => json!({"ok": true, "result": v}),
                            Err(e) => json!({"ok": false, "error": e.to_string()}),
                        };
                        if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (node, path);
        Err(err(
            "control sockets are not yet implemented on this platform",
        ))
    }
}

fn num(v: &Value, k: &str) -> Result<u64, AnyError> {
    v.get(k)
        .and_then(Value::as_u64)
        .ok_or_else(|| err(format!("missing numeric field {k:?}")))
}

fn handle(node: &Node, line: &str) -> Result<Value, AnyError> {
    let req: Value = serde_json::from_str(line).map_err(|e| err(format!("bad request: {e}")))?;
    match req.get("cmd").and_then(Value::as_str).unwrap_or("") {
        "streams" => Ok(Value::Array(
            node.streams()
                .into_iter()
                .map(|s| {
                    json!({
                        "stream": s.id.0,
                        "peer": s.peer.map(|p| p.to_string()),
                        "initiator": s.initiator,
                        "state": format!("{:?}", s.state),
                        "draining": s.draining,
                        "srtt_us": s.rtt.srtt.as_micros() as u64,
                        "sessions": s.sessions,
                        "bytes_in": s.stats.bytes_in,
                        "bytes_out": s.stats.bytes_out,
                    })
                })
                .collect(),
        )),
        "sessions" => Ok(Value::Array(
            node.sessions()
                .into_iter()
                .map(|s| {
                    json!({
                        "session": s.id.as_u64(),
                        "peer": s.peer.to_string(),
                        "role": format!("{:?}", s.role),
                        "state": format!("{:?}", s.state),
                        "send_stream": s.send_stream.0,
                        "recv_stream": s.recv_stream.0,
                        "bytes_written": s.stats.bytes_written,
                        "bytes_read": s.stats.bytes_read,
                        "migrations": s.stats.migrations,
                        "recoveries": s.stats.recoveries,
                    })
                })
                .collect(),
        )),
        "migrate" => {
            let (s, t) = (num(&req, "session")?, num(&req, "stream")?);
            node.migrate(SessionId::from_u64(s), StreamId(t))?;
            Ok(json!({"migrated": s, "to": t}))
        }
        "drain" => {
            let t = num(&req, "stream")?;
            let n = node.drain_stream(StreamId(t))?;
            Ok(json!({"drained": t, "sessions_moved": n}))
        }
        "close" => {
            let t = num(&req, "stream")?;
            node.close_stream(StreamId(t))?;
            Ok(json!({"closed": t}))
        }
        other => Err(err(format!("unknown command {other:?}"))),
    }
}

pub async fn run(a: CtlArgs) -> Result<ExitCode, AnyError> {
    let req = match a.cmd {
        CtlCmd::Streams => json!({"cmd": "streams"}),
        CtlCmd::Sessions => json!({"cmd": "sessions"}),
        CtlCmd::Migrate { session, stream } => {
            json!({"cmd": "migrate", "session": session, "stream": stream})
        }
        CtlCmd::Drain { stream } => json!({"cmd": "drain", "stream": stream}),
        CtlCmd::Close { stream } => json!({"cmd": "close", "stream": stream}),
    };
    #[cfg(unix)]
    let reply: Value = {
        let conn = tokio::net::UnixStream::connect(&a.control)
            .await
            .map_err(|e| {
                err(format!(
                    "cannot reach the node at {}: {e}",
                    a.control.display()
                ))
            })?;
        let (r, mut w) = conn.into_split();
        w.write_all(format!("{req}\n").as_bytes()).await?;
        let mut lines = BufReader::new(r).lines();
        let line = lines
            .next_line()
            .await?
            .ok_or_else(|| err("the node closed the control connection"))?;
        serde_json::from_str(&line).map_err(|e| err(format!("bad reply from the node: {e}")))?
    };
    #[cfg(not(unix))]
    let reply: Value = return Err(err(
        "control sockets are not yet implemented on this platform",
    ));

    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        let msg = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(err(msg.to_string()));
    }
    let result = reply.get("result").cloned().unwrap_or(Value::Null);
    if a.json {
        println!("{result}");
    } else {
        print_table(&result);
    }
    Ok(ExitCode::SUCCESS)
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() == 64 => s[..16].to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn print_table(v: &Value) {
    match v {
        Value::Array(rows) if rows.is_empty() => println!("(none)"),
        Value::Array(rows) => {
            let cols: Vec<String> = match rows[0].as_object() {
                Some(o) => o.keys().cloned().collect(),
                None => return println!("{v}"),
            };
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    cols.iter()
                        .map(|c| cell(r.get(c).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                        .max(c.len())
                })
                .collect();
            let line = |vals: &[String]| {
                vals.iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            println!("{}", line(&cols));
            for r in &cells {
                println!("{}", line(r));
            }
        }
        Value::Object(o) => {
            for (k, v) in o {
                println!("{k}: {}", cell(v));
            }
        }
        v => println!("{v}"),
    }
}
