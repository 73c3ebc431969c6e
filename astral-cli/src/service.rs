//! What `listen --serve NAME=KIND` does with a session whose query is NAME:
//! `echo`, `discard`, `tcp:HOST:PORT` / `unix:/path` (bridge it to a local
//! service, like `ssh -R`), or `exec:CMD` (bridge it to a process's stdin
//! and stdout, like inetd or socat's `EXEC`).
//!
//! For a bridged service the backend is reached first, then the query is
//! accepted; a backend that is down makes the query fail with code 1
//! (`REJECTED`) at once, instead of a session that dies on its first byte.

use std::fmt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use astral_tokio::{codes, IncomingQuery, Session};
use tokio::io::AsyncWrite;

use crate::addr::{parse_addr, Addr};
use crate::bridge::{self, Outcome};
use crate::limited;
use crate::logging::{escape, Noisy};
use crate::registry::Registry;
use crate::transport::CONNECT_TIMEOUT;

/// How a query is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// Sends every byte back.
    Echo,
    /// Reads and drops everything.
    Discard,
    /// Bridges to a TCP or Unix-socket service.
    Connect(Addr),
    /// Bridges to `sh -c CMD`'s stdin and stdout.
    Exec(String),
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Echo => f.write_str("echo"),
            Service::Discard => f.write_str("discard"),
            Service::Connect(a @ Addr::Tcp { .. }) => write!(f, "tcp:{a}"),
            Service::Connect(a) => write!(f, "{a}"),
            Service::Exec(c) => write!(f, "exec:{c}"),
        }
    }
}

const SERVE_FORMS: &str = "echo, discard, tcp:HOST:PORT, unix:/path or exec:CMD";

/// Parses `NAME=echo|discard|tcp:HOST:PORT|unix:/path|exec:CMD`.
pub fn parse_serve(s: &str) -> Result<(String, Service), String> {
    let (name, kind) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=KIND with KIND one of {SERVE_FORMS}, got {s:?}"))?;
    if name.is_empty() {
        return Err(format!(
            "empty service name in {s:?} (NAME is the query to serve)"
        ));
    }
    let svc = match kind {
        "echo" => Service::Echo,
        "discard" => Service::Discard,
        k if k.starts_with("tcp:") => {
            let a = parse_addr(&k[4..]).map_err(|e| format!("--serve {name}: {e}"))?;
            if matches!(a, Addr::Unix(_)) {
                return Err(format!(
                    "--serve {name}: write unix:/path, not tcp:unix:/path"
                ));
            }
            Service::Connect(a)
        }
        k if k.starts_with("unix:") => {
            Service::Connect(parse_addr(k).map_err(|e| format!("--serve {name}: {e}"))?)
        }
        k if k.starts_with("exec:") => {
            let cmd = k[5..].trim();
            if cmd.is_empty() {
                return Err(format!("--serve {name}: missing command after exec:"));
            }
            Service::Exec(cmd.to_string())
        }
        k => {
            return Err(format!(
                "unknown service {k:?} for {name:?} (use {SERVE_FORMS})"
            ))
        }
    };
    Ok((name.to_string(), svc))
}

/// Serves one inbound query (run in its own task).
pub async fn serve(q: IncomingQuery, svc: Service, reg: Arc<Registry>) {
    let peer = q.peer().short();
    let query = q.query().to_string();
    let shown = escape(&query);
    match svc {
        Service::Echo | Service::Discard => {
            let Some((s, short)) = accept(q, &reg, &query) else {
                return;
            };
            tracing::debug!("session {short} from {peer}: \"{shown}\" -> {svc}");
            simple(s, svc == Service::Echo, &short).await;
        }
        Service::Connect(ref addr) => {
            let backend = tokio::time::timeout(CONNECT_TIMEOUT, connect(addr)).await;
            let backend = match backend {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return unavailable(q, &svc, &e.to_string()),
                Err(_) => return unavailable(q, &svc, "no answer"),
            };
            let Some((s, short)) = accept(q, &reg, &query) else {
                return;
            };
            limited!(
                Noisy::Query,
                info,
                "session {short} from {peer}: \"{shown}\" -> {svc}"
            );
            match backend {
                Backend::Tcp(t) => {
                    let (mut r, mut w) = t.into_split();
                    let out = bridge::run(s, &mut r, &mut w).await;
                    if matches!(out, Outcome::SessionFailed(_)) {
                        // Pass the failure on as TCP does: a reset.
                        if let Ok(t) = r.reunite(w) {
                            let _ = t.set_zero_linger();
                        }
                    }
                    report(&short, &svc, out);
                }
                Backend::Unix(u) => {
                    let (mut r, mut w) = u.into_split();
                    let out = bridge::run(s, &mut r, &mut w).await;
                    report(&short, &svc, out);
                }
            }
        }
        Service::Exec(ref cmd) => {
            let mut child = match tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("ASTRAL_PEER", q.peer().to_string())
                .env("ASTRAL_QUERY", &query)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
            {
                Ok(c) => c,
                Err(e) => return unavailable(q, &svc, &e.to_string()),
            };
            let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
                // Both were asked for as pipes.
                return unavailable(q, &svc, "no pipes to the process");
            };
            let Some((s, short)) = accept(q, &reg, &query) else {
                return;
            };
            limited!(
                Noisy::Query,
                info,
                "session {short} from {peer}: \"{shown}\" -> {svc}"
            );
            let mut stdin = CloseOnShutdown(Some(stdin));
            let out = bridge::run(s, &mut stdout, &mut stdin).await;
            if matches!(out, Outcome::SessionFailed(_) | Outcome::LocalFailed(_)) {
                let _ = child.start_kill();
            }
            report(&short, &svc, out);
            drop(stdin);
            // Give it a moment to finish after its stdout closed, then stop it.
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(Ok(st)) if st.success() => {}
                Ok(Ok(st)) => limited!(
                    Noisy::Query,
                    info,
                    "session {short}: {svc} exited with {st}"
                ),
                Ok(Err(e)) => limited!(
                    Noisy::Query,
                    warn,
                    "session {short}: waiting for {svc}: {e}"
                ),
                Err(_) => {
                    let _ = child.kill().await;
                    limited!(
                        Noisy::Query,
                        info,
                        "session {short}: {svc} killed (still running 10 s after its output ended)"
                    );
                }
            }
        }
    }
}

fn accept(q: IncomingQuery, reg: &Registry, query: &str) -> Option<(Session, String)> {
    match q.accept() {
        Ok(s) => {
            let short = reg.add_session(s.id(), query);
            Some((s, short))
        }
        Err(e) => {
            limited!(
                Noisy::Query,
                info,
                "cannot accept \"{}\": {e}",
                escape(query)
            );
            None
        }
    }
}

fn unavailable(q: IncomingQuery, svc: &Service, why: &str) {
    limited!(
        Noisy::Query,
        warn,
        "query \"{}\" from {}: {svc} unavailable ({}); rejected",
        escape(q.query()),
        q.peer().short(),
        escape(why)
    );
    q.reject(codes::REJECTED);
}

fn report(short: &str, svc: &Service, out: Outcome) {
    match out {
        Outcome::Done {
            up,
            down,
            reason: Some(astral_tokio::CloseReason::Graceful),
        } => tracing::debug!("session {short} ({svc}) done: {up} bytes sent, {down} received"),
        Outcome::Done { reason, .. } => limited!(
            Noisy::Session,
            info,
            "session {short} ({svc}) ended: {}",
            reason.map_or("the peer did not acknowledge the end".into(), |r| r
                .to_string())
        ),
        Outcome::LocalFailed(e) => limited!(
            Noisy::Session,
            info,
            "session {short}: {svc} failed ({e}); session reset"
        ),
        Outcome::SessionFailed(e) => limited!(
            Noisy::Session,
            info,
            "session {short} failed ({e}); {svc} side aborted"
        ),
    }
}

async fn simple(s: Session, echo: bool, short: &str) {
    let (mut r, mut w) = s.into_split();
    let res: std::io::Result<u64> = async {
        let mut n = 0u64;
        while let Some(c) = r.read_chunk(1 << 20).await? {
            n += c.len() as u64;
            if echo {
                // The chunk goes back as it came: no copy.
                w.write_chunk(c).await?;
            }
        }
        tokio::io::AsyncWriteExt::shutdown(&mut w).await?;
        Ok(n)
    }
    .await;
    match res {
        Ok(n) => tracing::debug!("session {short} done ({n} bytes)"),
        Err(e) => limited!(Noisy::Session, info, "session {short} failed: {e}"),
    }
}

enum Backend {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn connect(addr: &Addr) -> std::io::Result<Backend> {
    Ok(match addr {
        Addr::Tcp { host, port } => {
            let t = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            let _ = t.set_nodelay(true);
            Backend::Tcp(t)
        }
        Addr::Unix(p) => Backend::Unix(tokio::net::UnixStream::connect(p).await?),
    })
}

/// A writer whose shutdown closes it (a child's stdin only reads EOF once
/// the pipe is closed; tokio's `shutdown` on it does nothing).
struct CloseOnShutdown<W>(Option<W>);

impl<W: AsyncWrite + Unpin> AsyncWrite for CloseOnShutdown<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(w) => Pin::new(w).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(w) = self.0.as_mut() {
            if let Poll::Ready(Err(e)) = Pin::new(w).poll_flush(cx) {
                self.0 = None;
                return Poll::Ready(Err(e));
            }
        }
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_forms() {
        assert_eq!(parse_serve("e=echo").unwrap().1, Service::Echo);
        assert_eq!(
            parse_serve("web=tcp:127.0.0.1:80").unwrap().1.to_string(),
            "tcp:127.0.0.1:80"
        );
        assert_eq!(
            parse_serve("db=unix:/run/db.sock").unwrap().1.to_string(),
            "unix:/run/db.sock"
        );
        assert_eq!(
            parse_serve("date=exec:date -u").unwrap().1,
            Service::Exec("date -u".into())
        );
        assert!(parse_serve("echo").unwrap_err().contains("NAME=KIND"));
        assert!(parse_serve("=echo")
            .unwrap_err()
            .contains("empty service name"));
        assert!(parse_serve("w=tcp:127.0.0.1")
            .unwrap_err()
            .contains("missing port"));
        assert!(parse_serve("x=exec:")
            .unwrap_err()
            .contains("missing command"));
        assert!(parse_serve("x=ftp")
            .unwrap_err()
            .contains("unknown service"));
    }
}
