//! Joins a session to a local byte stream (a TCP connection, a Unix socket,
//! a child process's stdin/stdout), as ssh port forwarding and socat do.
//!
//! * Both directions run at once; each carries its end: the local side's
//!   EOF half-closes the session (the peer reads end-of-stream and can still
//!   answer), the session's end shuts down the local write side (TCP FIN,
//!   the child's stdin closes).
//! * Backpressure: each direction holds at most one read buffer; it reads
//!   again only once the session (or the local side) took the last one, so
//!   a slow reader at either end stops the writer at the other.
//! * Failures: a failed local side resets the session (the peer must not
//!   take a truncated stream for a complete one); a failed session
//!   (reset, peer unreachable) is reported as [`Outcome::SessionFailed`] so
//!   the caller aborts the local side (TCP reset, kill the process).

use std::io;
use std::time::Duration;

use astral_tokio::{CloseReason, Session};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest read from the local side.
const LOCAL_READ: usize = 256 * 1024;
/// First read from the local side: an idle bridge holds only this much;
/// each read that fills its buffer doubles the next one, up to
/// [`LOCAL_READ`], and a short read halves it again.
const FIRST_READ: usize = 4 * 1024;
/// Largest chunk taken from the session per read.
const SESSION_READ: usize = 1 << 20;
/// How long to wait for the peer to acknowledge the end.
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// How a bridge ended.
#[derive(Debug)]
pub enum Outcome {
    /// Both directions ended and the session closed with this reason
    /// (`Graceful` when every byte arrived; `None` if the peer did not
    /// acknowledge the end in time).
    Done {
        /// Bytes local → session.
        up: u64,
        /// Bytes session → local.
        down: u64,
        /// The session's end.
        reason: Option<CloseReason>,
    },
    /// The local side failed; the session was reset.
    LocalFailed(io::Error),
    /// The session failed (the local side should be aborted).
    SessionFailed(io::Error),
}

enum Side {
    Local(io::Error),
    Session(io::Error),
}

/// Runs the bridge to its end.
pub async fn run<R, W>(s: Session, rd: &mut R, wr: &mut W) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut sr, mut sw) = s.into_split();
    let up = async {
        let mut buf = BytesMut::new();
        let mut want = FIRST_READ;
        let mut total = 0u64;
        loop {
            buf.reserve(want);
            let room = buf.capacity() - buf.len();
            let n = rd.read_buf(&mut buf).await.map_err(Side::Local)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            want = if n >= room {
                (want * 2).min(LOCAL_READ)
            } else {
                (want / 2).max(FIRST_READ)
            };
            // Handed over without a copy; `reserve` takes the memory back
            // once the session released the chunk.
            sw.write_chunk(buf.split().freeze())
                .await
                .map_err(Side::Session)?;
        }
        sw.shutdown().await.map_err(Side::Session)?;
        Ok::<u64, Side>(total)
    };
    let down = async {
        let mut total = 0u64;
        let mut discard = false;
        while let Some(chunk) = sr.read_chunk(SESSION_READ).await.map_err(Side::Session)? {
            total += chunk.len() as u64;
            if discard {
                continue;
            }
            match wr.write_all(&chunk).await {
                Ok(()) => {}
                // The local side stopped reading (a process that exited, a
                // socket shut for reading): what it would not read is
                // discarded, so the peer's writes still complete, as with
                // a closed pipe in a shell pipeline.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    tracing::debug!("local side stopped reading; discarding the rest");
                    discard = true;
                }
                Err(e) => return Err(Side::Local(e)),
            }
        }
        if !discard {
            wr.flush().await.map_err(Side::Local)?;
        }
        // End of the session's data: the local side reads EOF. A local
        // side that already went away does not make the session fail.
        let _ = wr.shutdown().await;
        Ok::<u64, Side>(total)
    };
    let r = tokio::try_join!(up, down);
    match r {
        Ok((up, down)) => {
            let reason = tokio::time::timeout(CLOSE_WAIT, sr.closed()).await.ok();
            Outcome::Done { up, down, reason }
        }
        Err(Side::Local(e)) => {
            sw.reset();
            Outcome::LocalFailed(e)
        }
        Err(Side::Session(e)) => Outcome::SessionFailed(e),
    }
}
