//! `astral ctl`: asks a running `astral listen` or `astral connect` (over
//! its `--control` socket) for tables, or to move sessions and streams.
//!
//! With `--json` every answer is one JSON document on stdout, errors too
//! (`{"error": {"kind": ..., "message": ...}}`, exit 1), so scripts never
//! parse prose.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::error::AnyError;
use crate::table;
use crate::view::{NodeRow, PeerRow, SessionRow, StreamRow};

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The node's control socket (as given to `listen`/`connect --control`).
    #[arg(long, short = 'c', value_name = "PATH", env = "ASTRAL_CONTROL")]
    control: PathBuf,
    /// Print JSON (stable keys, see docs/CLI.md) instead of tables; errors too.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(clap::Subcommand)]
enum CtlCmd {
    /// The node: id, addresses, counts, timers and windows.
    Node,
    /// Streams: id, peer, direction, transport, remote address, state, RTT, bytes.
    Streams,
    /// Sessions: id, peer, query, state, stream, bytes, windows, migrations.
    Sessions,
    /// Peers: streams, sessions, best RTT, bytes, addresses.
    Peers {
        /// Only this peer (`p1`, or a prefix of its hex id).
        peer: Option<String>,
    },
    /// Refreshing view of peers, streams and sessions (Ctrl-C stops).
    Watch {
        /// Time between refreshes.
        #[arg(long, short = 'n', default_value = "1s", value_parser = crate::options::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Move SESSION (e.g. s3) onto STREAM (e.g. t2), another stream to the same peer.
    /// Migrating pins SESSION there: automatic placement leaves it alone
    /// until `unpin` or until that stream dies.
    Migrate { session: String, stream: String },
    /// Pin SESSION (e.g. s3) where it is: automatic placement at both ends
    /// leaves it alone until `unpin` or until its stream dies.
    Pin { session: String },
    /// Release SESSION to automatic placement.
    Unpin { session: String },
    /// Move every session off STREAM, then close it (not redialed).
    Drain { stream: String },
    /// Close STREAM now; its sessions recover on other streams (not redialed).
    Close { stream: String },
}

/// A failure on the client side or reported by the node.
struct Failure {
    kind: String,
    message: String,
}

impl Failure {
    fn new(kind: &str, message: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// A connection to the control socket.
struct Client {
    r: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    w: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    async fn connect(path: &std::path::Path) -> Result<Client, Failure> {
        let conn = tokio::net::UnixStream::connect(path).await.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    " (no such socket: start `astral listen --control PATH` or `astral connect --control PATH`)"
                }
                std::io::ErrorKind::ConnectionRefused => " (nothing listens there: the node exited)",
                std::io::ErrorKind::PermissionDenied => {
                    " (the control socket belongs to another user)"
                }
                _ => "",
            };
            Failure::new(
                "unreachable",
                format!("cannot reach the node at {}: {e}{hint}", path.display()),
            )
        })?;
        let (r, w) = conn.into_split();
        Ok(Client {
            r: BufReader::new(r).lines(),
            w,
        })
    }

    async fn call(&mut self, req: Value) -> Result<Value, Failure> {
        let io = |e: std::io::Error| Failure::new("io", format!("control connection: {e}"));
        self.w
            .write_all(format!("{req}\n").as_bytes())
            .await
            .map_err(io)?;
        let line = self
            .r
            .next_line()
            .await
            .map_err(io)?
            .ok_or_else(|| Failure::new("io", "the node closed the control connection"))?;
        let reply: Value = serde_json::from_str(&line)
            .map_err(|e| Failure::new("protocol", format!("bad reply from the node: {e}")))?;
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
        let e = reply.get("error");
        Err(Failure::new(
            e.and_then(|e| e.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or("error"),
            e.and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("the node reported an error"),
        ))
    }
}

fn rows<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v)
        .map_err(|e| Failure::new("protocol", format!("unexpected reply from the node: {e}")))
}

/// `astral ctl ...`.
pub async fn run(a: CtlArgs) -> Result<ExitCode, AnyError> {
    let json = a.json;
    match run_inner(a).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(f) if json => {
            println!(
                "{}",
                json!({"error": {"kind": f.kind, "message": f.message}})
            );
            Ok(ExitCode::FAILURE)
        }
        Err(f) => Err(f.message.into()),
    }
}

async fn run_inner(a: CtlArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&a.control).await?;
    let req = match &a.cmd {
        CtlCmd::Watch { interval, count } => return watch(&mut c, *interval, *count, a.json).await,
        CtlCmd::Node => json!({"cmd": "node"}),
        CtlCmd::Streams => json!({"cmd": "streams"}),
        CtlCmd::Sessions => json!({"cmd": "sessions"}),
        CtlCmd::Peers { peer: None } => json!({"cmd": "peers"}),
        CtlCmd::Peers { peer: Some(p) } => json!({"cmd": "peers", "peer": p}),
        CtlCmd::Migrate { session, stream } => {
            json!({"cmd": "migrate", "session": session, "stream": stream})
        }
        CtlCmd::Pin { session } => json!({"cmd": "pin", "session": session}),
        CtlCmd::Unpin { session } => json!({"cmd": "unpin", "session": session}),
        CtlCmd::Drain { stream } => json!({"cmd": "drain", "stream": stream}),
        CtlCmd::Close { stream } => json!({"cmd": "close", "stream": stream}),
    };
    let result = c.call(req).await?;
    if a.json {
        println!("{result}");
        return Ok(());
    }
    let text = match &a.cmd {
        CtlCmd::Node => table::node(&rows::<NodeRow>(result)?),
        CtlCmd::Streams => table::streams(&rows::<Vec<StreamRow>>(result)?),
        CtlCmd::Sessions => table::sessions(&rows::<Vec<SessionRow>>(result)?),
        CtlCmd::Peers { .. } => table::peers(&rows::<Vec<PeerRow>>(result)?),
        CtlCmd::Migrate { .. } => {
            let s = str_of(&result, "session");
            match result.get("from").and_then(Value::as_str) {
                Some(f) => format!("migrating {s} from {f} to {}\n", str_of(&result, "to")),
                None => format!("migrating {s} to {}\n", str_of(&result, "to")),
            }
        }
        CtlCmd::Pin { .. } | CtlCmd::Unpin { .. } => {
            let s = str_of(&result, "session");
            let local = result.get("pinned").and_then(Value::as_bool) == Some(true);
            let peer = result.get("peer_pinned").and_then(Value::as_bool) == Some(true);
            match (local, peer) {
                (true, _) => format!("pinned {s}: automatic placement leaves it where it is\n"),
                (false, true) => format!("unpinned {s} here; the peer still pins it\n"),
                (false, false) => format!("unpinned {s}: automatic placement may move it\n"),
            }
        }
        CtlCmd::Drain { .. } => {
            let n = result
                .get("sessions_moved")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            format!(
                "draining {}: {n} session{} moved off; it closes once they are across\n",
                str_of(&result, "stream"),
                if n == 1 { "" } else { "s" }
            )
        }
        CtlCmd::Close { .. } => format!(
            "closed {} (its sessions recover on other streams)\n",
            str_of(&result, "stream")
        ),
        CtlCmd::Watch { .. } => String::new(),
    };
    print!("{text}");
    Ok(())
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("-").to_string()
}

/// `ctl watch`: on a terminal the screen is redrawn in place; elsewhere each
/// refresh is printed after the last, headed by its time since start.
async fn watch(
    c: &mut Client,
    every: Duration,
    count: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let tty = std::io::stdout().is_terminal();
    let start = std::time::Instant::now();
    let mut tick = tokio::time::interval(every);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let node = c.call(json!({"cmd": "node"})).await?;
        let peers = c.call(json!({"cmd": "peers"})).await?;
        let streams = c.call(json!({"cmd": "streams"})).await?;
        let sessions = c.call(json!({"cmd": "sessions"})).await?;
        if json {
            println!(
                "{}",
                json!({"node": node, "peers": peers, "streams": streams, "sessions": sessions})
            );
        } else {
            let node: NodeRow = rows(node)?;
            let mut frame = String::new();
            if tty {
                // Home, clear: redraw in place.
                frame.push_str("\x1b[H\x1b[2J");
            } else if n > 0 {
                frame.push('\n');
            }
            frame.push_str(&format!(
                "{} ({}) — {:.1} s — refresh every {}\n\n",
                node.id.get(..16).unwrap_or(&node.id),
                node.mode,
                start.elapsed().as_secs_f64(),
                humantime::format_duration(every)
            ));
            frame.push_str(&table::peers(&rows::<Vec<PeerRow>>(peers)?));
            frame.push('\n');
            frame.push_str(&table::streams(&rows::<Vec<StreamRow>>(streams)?));
            frame.push('\n');
            frame.push_str(&table::sessions(&rows::<Vec<SessionRow>>(sessions)?));
            print!("{frame}");
        }
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
    }
}
