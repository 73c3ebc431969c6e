//! Joins a session to this process's stdin and stdout (`connect`, and
//! `listen --stdio`), at pipe speed.
//!
//! Each direction has a dedicated thread doing large blocking reads or
//! writes on the raw descriptor (no 8 KiB `BufReader`/`LineWriter` in
//! between): stdin is read into big buffers that go to the session as
//! `Bytes` without a copy (`write_chunk`); the session's chunks
//! (`read_chunk`) go to stdout as they are, several per `writev` when the
//! writer falls behind. Bounded channels between the threads and the
//! session carry backpressure both ways.
//!
//! stdin's EOF half-closes the session; the peer's end closes stdout's
//! thread. The join ends once both directions ended and the session
//! closed; it succeeds only if it closed gracefully (every byte written
//! was delivered and acknowledged).

use std::fs::File;
use std::io::{IoSlice, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use astral_tokio::{CloseReason, Session};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::error::{err, AnyError};

/// Buffer stdin is read into; each read takes what the pipe holds.
const READ_BUF: usize = 4 << 20;
/// Refill the buffer when less than this is left of it.
const READ_MIN: usize = 256 << 10;
/// Largest chunk taken from the session at once.
const SESSION_READ: usize = 1 << 20;
/// Chunks in flight between a thread and the session, per direction.
const DEPTH: usize = 8;
/// Pipe buffer asked for on stdin and stdout when they are pipes (fewer,
/// larger reads and writes; Linux allows up to 1 MiB unprivileged).
const PIPE_SIZE: usize = 1 << 20;
/// How long to wait for the peer to acknowledge the end of the session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the wait for the session's last frames (the final credit) to
/// reach the socket after a graceful close; only a transport that takes
/// nothing waits this long (the node's shutdown then gives up on it too).
const FLUSH_TIMEOUT: Duration = astral_tokio::astral_core::driver::LINGER_TIMEOUT;

/// A duplicate of stdin or stdout as a plain file: unbuffered reads and
/// writes of any size (std's `Stdout` is line-buffered).
fn dup(fd: std::os::fd::BorrowedFd<'_>, what: &str) -> Result<File, AnyError> {
    let owned = fd
        .try_clone_to_owned()
        .map_err(|e| err(format!("cannot use {what}: {e}")))?;
    // A bigger pipe buffer, where it is a pipe; nothing changes otherwise.
    let _ = rustix::pipe::fcntl_setpipe_size(&owned, PIPE_SIZE);
    Ok(File::from(owned))
}

/// Reads stdin into shared buffers on its own thread until EOF or error.
fn stdin_thread(mut input: File, tx: mpsc::Sender<std::io::Result<Bytes>>) {
    std::thread::spawn(move || {
        let mut buf = BytesMut::new();
        loop {
            if buf.len() < READ_MIN {
                // Fresh memory (or this buffer's own, once the session
                // released every chunk of it). The part already
                // initialised is read into again without zeroing it.
                buf.clear();
                buf.reserve(READ_BUF);
                buf.resize(READ_BUF, 0);
            }
            match input.read(&mut buf[..]) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(buf.split_to(n).freeze())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
}

/// Writes chunks to stdout on its own thread; reports the first error.
fn stdout_thread(
    mut output: File,
    mut rx: mpsc::Receiver<Bytes>,
) -> oneshot::Receiver<std::io::Result<()>> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| {
            let mut batch: Vec<Bytes> = Vec::with_capacity(DEPTH);
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < DEPTH {
                    match rx.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                write_all_vectored(&mut output, &batch)?;
                batch.clear();
            }
            output.flush()
        })();
        let _ = done_tx.send(r);
    });
    done_rx
}

fn write_all_vectored(out: &mut File, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Joins `s` to stdin/stdout until both directions ended and the session
/// closed. Ok only for a graceful close.
pub async fn join(s: Session) -> Result<(), AnyError> {
    let input = dup(std::io::stdin().as_fd(), "stdin")?;
    let output = dup(std::io::stdout().as_fd(), "stdout")?;
    let interactive = std::io::stdin().is_terminal();
    let (in_tx, mut in_rx) = mpsc::channel(DEPTH);
    stdin_thread(input, in_tx);
    let (out_tx, out_rx) = mpsc::channel(DEPTH);
    let out_done = stdout_thread(output, out_rx);

    let (mut r, mut w) = s.into_split();
    let mut up = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(chunk) = in_rx.recv().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // The peer must not take a truncated input for all of it.
                    w.reset();
                    return Err(err(format!("reading stdin: {e}")));
                }
            };
            n += chunk.len() as u64;
            w.write_chunk(chunk)
                .await
                .map_err(|e| err(format!("sending: {e}")))?;
        }
        w.shutdown()
            .await
            .map_err(|e| err(format!("half-closing: {e}")))?;
        tracing::debug!("stdin done after {n} bytes: half-closed");
        Ok::<_, AnyError>(())
    });

    // Session -> stdout, here. Which side failed decides what we tell the
    // peer: nothing if the session itself failed, a reset if we could not
    // deliver what it sent.
    enum Down {
        Session(AnyError),
        Stdout(AnyError),
    }
    let down: Result<(), Down> = async {
        while let Some(chunk) = r
            .read_chunk(SESSION_READ)
            .await
            .map_err(|e| Down::Session(err(reason_of(&e))))?
        {
            if out_tx.send(chunk).await.is_err() {
                // The writer stopped: its result says why.
                break;
            }
        }
        drop(out_tx);
        match out_done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Down::Stdout(err(format!("writing stdout: {e}")))),
            Err(_) => Err(Down::Stdout(err("the stdout writer stopped"))),
        }
    }
    .await;
    match down {
        Ok(()) => {}
        Err(Down::Session(e)) => {
            up.abort();
            return Err(e);
        }
        Err(Down::Stdout(e)) => {
            up.abort();
            r.reset();
            return Err(e);
        }
    }
    tracing::debug!("peer half-closed");
    // The peer finished its side. Keep sending until stdin ends; only an
    // interactive terminal is given up on (the user would have to press ^D).
    if interactive {
        match tokio::time::timeout(Duration::from_millis(200), &mut up).await {
            Ok(res) => res.map_err(|e| err(format!("stdin task failed: {e}")))??,
            // Dropping the writer half-closes the session.
            Err(_) => up.abort(),
        }
    } else {
        // Until stdin ends, unless the session ends first (the peer left or
        // reset it): nothing we read from stdin could go anywhere.
        tokio::select! {
            res = &mut up => res.map_err(|e| err(format!("stdin task failed: {e}")))??,
            reason = r.closed() => {
                up.abort();
                if reason != CloseReason::Graceful {
                    return Err(err(ended(&reason)));
                }
            }
        }
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, r.closed()).await {
        Ok(CloseReason::Graceful) => {
            // The close built our last frames; wait until the transport
            // took them: the node's shutdown, next, drops what the core
            // still queues in favour of its Goodbye. Usually at once.
            if tokio::time::timeout(FLUSH_TIMEOUT, r.flushed())
                .await
                .is_err()
            {
                tracing::info!("the last frames were not written within {FLUSH_TIMEOUT:?}");
            }
            Ok(())
        }
        Ok(reason) => Err(err(ended(&reason))),
        Err(_) => Err(err(
            "timed out waiting for the peer to acknowledge the end of the session",
        )),
    }
}

/// The close reason inside a session I/O error, in words.
fn reason_of(e: &std::io::Error) -> String {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<astral_tokio::SessionClosedError>())
        .map_or_else(|| format!("session ended: {e}"), |c| ended(&c.0))
}

/// Why the session ended, for the user: a peer that left or restarted is
/// said so first.
fn ended(reason: &CloseReason) -> String {
    match reason {
        CloseReason::PeerShutdown => "the peer left (it shut down): session ended".into(),
        CloseReason::PeerRestarted => "the peer restarted: session ended".into(),
        r => format!("session ended: {}", crate::error::describe(r)),
    }
}
