//! Ways to drive a path while it runs: a Unix control socket, lines on
//! stdin, a schedule, and a client for the socket (`astral-wan ctl`).
//!
//! The protocol is one command per line (see [`crate::wan::command`]);
//! each gets one reply line: `ok`, a description, JSON counters, or
//! `error: ...`. `show` replies with two lines (`up ...`, `down ...`)
//! joined by ` | ` to keep one line per reply.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::wan::command::Schedule;
use crate::wan::path::PathControl;

/// Runs one command line and formats the reply as one line.
pub fn reply(path: &PathControl, line: &str) -> String {
    match path.apply(line) {
        Ok(r) => r.replace('\n', " | "),
        Err(e) => format!("error: {e}"),
    }
}

/// Serves command lines from `input`, replying on `output`, until end of
/// input.
pub async fn serve_lines<R, W>(path: PathControl, input: R, mut output: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = BufReader::new(input).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let r = reply(&path, &line);
        tracing::info!(command = %line.trim(), reply = %r, "control");
        output.write_all(r.as_bytes()).await?;
        output.write_all(b"\n").await?;
        output.flush().await?;
    }
    Ok(())
}

/// A control socket being served; removes the socket file when dropped.
pub struct ControlSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlSocket {
    /// Listens on the Unix socket `at` (replacing a stale socket file) and
    /// serves every connection with [`serve_lines`].
    pub fn bind(at: &Path, path: PathControl) -> io::Result<ControlSocket> {
        if at.exists() {
            // Only a socket file is replaced, never anything else.
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(at)?.file_type().is_socket() {
                std::fs::remove_file(at)?;
            }
        }
        let listener = UnixListener::bind(at)?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        let path = path.clone();
                        tokio::spawn(async move {
                            let (r, w) = conn.into_split();
                            let _ = serve_lines(path, r, w).await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(ControlSocket {
            path: at.to_path_buf(),
            task,
        })
    }

    /// The socket's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends command lines to a control socket and returns one reply per line.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// let replies = astral_harness::wan::control::send(
///     std::path::Path::new("/tmp/wan.sock"),
///     &["blackhole on"],
/// ).await?;
/// assert_eq!(replies, ["ok"]);
/// # Ok(()) }
/// ```
pub async fn send(at: &Path, lines: &[&str]) -> io::Result<Vec<String>> {
    let conn = UnixStream::connect(at).await?;
    let (r, mut w) = conn.into_split();
    let mut replies = BufReader::new(r).lines();
    let mut out = Vec::new();
    for line in lines {
        w.write_all(line.as_bytes()).await?;
        w.write_all(b"\n").await?;
        w.flush().await?;
        match replies.next_line().await? {
            Some(r) => out.push(r),
            None => return Err(io::Error::other("control socket closed before replying")),
        }
    }
    Ok(out)
}

/// Runs a schedule against a path in a task: each step at its offset from
/// now. The task ends after the last step; abort it to cancel the rest.
pub fn run_schedule(path: PathControl, schedule: Schedule) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (at, cmd) in schedule.steps {
            tokio::time::sleep_until(start + at).await;
            match path.run(&cmd) {
                Ok(r) => tracing::info!(at = ?at, command = ?cmd, reply = %r, "schedule"),
                Err(e) => tracing::warn!(at = ?at, command = ?cmd, %e, "schedule step failed"),
            }
        }
    })
}
