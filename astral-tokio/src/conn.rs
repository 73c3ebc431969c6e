//! One task per transport: reads ciphertext into the core, pulls records
//! from the core when the transport can take them, and writes them.
//!
//! The task is a hand-written future that owns the transport, so any
//! `AsyncRead + AsyncWrite` works without splitting it. Backpressure: records
//! are built (`poll_transmit`) only once the previous batch was fully
//! written, so ciphertext never piles up in the driver; when the core has
//! nothing to send, the task parks its waker in its transport slot and the
//! next core call that produces output wakes it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use astral_core::StreamId;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::driver::{Inner, Kill};

/// Ciphertext read per `poll_read`.
const READ_BUF: usize = 64 * 1024;
/// Ciphertext pulled from the core per batch (a few records).
const WRITE_BATCH: usize = 256 * 1024;

pub(crate) struct Conn<T> {
    io: Option<T>,
    abort: Option<fn(&mut T)>,
    inner: Arc<Inner>,
    stream: StreamId,
    kill: oneshot::Receiver<Kill>,
    rbuf: Box<[u8]>,
    wbuf: BytesMut,
    wpos: usize,
    need_flush: bool,
    read_done: bool,
    /// The core no longer knows the stream: flush what is left and hang up.
    gone: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Conn<T> {
    pub fn new(
        io: T,
        abort: Option<fn(&mut T)>,
        inner: Arc<Inner>,
        stream: StreamId,
        kill: oneshot::Receiver<Kill>,
    ) -> Self {
        Conn {
            io: Some(io),
            abort,
            inner,
            stream,
            kill,
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            wbuf: BytesMut::with_capacity(WRITE_BATCH + 70_000),
            wpos: 0,
            need_flush: false,
            read_done: false,
            gone: false,
        }
    }

    /// Reports a transport failure to the core (once) and forgets the slot.
    fn end(&mut self, report: Option<String>) {
        let stream = self.stream;
        if let Some(reason) = report {
            self.inner
                .with(|sh, now| sh.core.handle_transport_closed(now, stream, &reason));
        }
        self.inner.with(|sh, _| {
            sh.transports.remove(&stream);
            if sh.closed && sh.transports.is_empty() {
                self.inner.all_closed.notify_waiters();
            }
        });
        self.io = None;
    }

    fn input(&mut self, n: usize) {
        let (stream, data) = (self.stream, &self.rbuf[..n]);
        self.inner.with(|sh, now| {
            // New input: the answer to it may go out directly again (an
            // echo reply written by the session task while this task is
            // still on its way to parking).
            if let Some(t) = sh.transports.get_mut(&stream) {
                t.direct_ok = true;
            }
            sh.core.handle_input(now, stream, data)
        });
    }

    /// Refills the write buffer from the core; parks the task if empty.
    /// Returns whether the task must yield first (see `TransportSlot::defer`).
    fn refill(&mut self, cx: &Context<'_>) -> bool {
        self.wbuf.clear();
        self.wpos = 0;
        let Conn {
            inner,
            stream,
            wbuf,
            ..
        } = self;
        let stream = *stream;
        let (gone, defer) = inner.with(|sh, now| {
            let Some(t) = sh.transports.get_mut(&stream) else {
                return (true, false);
            };
            if std::mem::take(&mut t.defer) {
                // Busy (no direct writes, no wakes) until polled again.
                t.waker = None;
                return (false, true);
            }
            if !t.pending.is_empty() {
                // Left over by a direct write: it goes first.
                std::mem::swap(wbuf, &mut t.pending);
                t.waker = None;
                return (false, false);
            }
            let n = sh.core.poll_transmit(now, stream, wbuf, WRITE_BATCH);
            if n > 0 {
                // Busy: no direct writes until we park again.
                if let Some(t) = sh.transports.get_mut(&stream) {
                    t.waker = None;
                }
                return (false, false);
            }
            if sh.core.stream_info(stream).is_none() {
                return (true, false);
            }
            if let Some(t) = sh.transports.get_mut(&stream) {
                match &mut t.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                // Idle again: the next output may go out directly.
                t.direct_ok = true;
            }
            (false, false)
        });
        self.gone = gone;
        defer
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Conn<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.kill).poll(cx) {
                Poll::Ready(Ok(Kill::Abort)) => {
                    if let (Some(io), Some(abort)) = (this.io.as_mut(), this.abort) {
                        abort(io);
                    }
                    this.io = None;
                    this.end(Some("transport killed".into()));
                    return Poll::Ready(());
                }
                Poll::Ready(_) => {
                    // The core ended the stream, or the node shut down.
                    this.end(None);
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            let Some(io) = this.io.as_mut() else {
                return Poll::Ready(());
            };
            let mut progress = false;

            if !this.read_done && !this.gone {
                let mut rb = ReadBuf::new(&mut this.rbuf);
                match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        progress = true;
                        if n == 0 {
                            this.read_done = true;
                            let stream = this.stream;
                            this.inner.with(|sh, now| {
                                sh.core.handle_transport_closed(
                                    now,
                                    stream,
                                    "connection closed by peer",
                                )
                            });
                        } else {
                            this.input(n);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        this.end(Some(e.to_string()));
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }

            let io = this.io.as_mut().expect("present: checked above");
            if this.wpos == this.wbuf.len() && !this.gone {
                if this.need_flush {
                    match Pin::new(&mut *io).poll_flush(cx) {
                        Poll::Ready(Ok(())) => this.need_flush = false,
                        Poll::Ready(Err(e)) => {
                            this.end(Some(e.to_string()));
                            return Poll::Ready(());
                        }
                        Poll::Pending => {}
                    }
                }
                if this.refill(cx) {
                    // To the back of the run queue (a self-wake during the
                    // poll is a yield), then pull everything at once.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let io = this.io.as_mut().expect("present: checked above");
            while this.wpos < this.wbuf.len() {
                match Pin::new(&mut *io).poll_write(cx, &this.wbuf[this.wpos..]) {
                    Poll::Ready(Ok(0)) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        this.end(Some(e.to_string()));
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(n)) => {
                        this.wpos += n;
                        this.need_flush = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        this.end(Some(e.to_string()));
                        return Poll::Ready(());
                    }
                    Poll::Pending => break,
                }
            }
            if this.gone && this.wpos == this.wbuf.len() {
                // Everything the core handed out is written: hang up.
                match Pin::new(&mut *io).poll_shutdown(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => {
                        this.end(None);
                        return Poll::Ready(());
                    }
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// A TCP socket whose write half is shared between its transport task and
/// direct writes (a small mutex: the two never write at the same time, the
/// slot's park/pending protocol sees to that; it is uncontended).
pub(crate) struct SharedTcp {
    r: tokio::net::tcp::OwnedReadHalf,
    w: DirectTcp,
}

/// The shared write half.
pub(crate) type DirectTcp = Arc<std::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>;

impl SharedTcp {
    pub fn new(tcp: tokio::net::TcpStream) -> (SharedTcp, DirectTcp) {
        let (r, w) = tcp.into_split();
        let w = Arc::new(std::sync::Mutex::new(w));
        (SharedTcp { r, w: w.clone() }, w)
    }
}

fn lock_w(w: &DirectTcp) -> std::sync::MutexGuard<'_, tokio::net::tcp::OwnedWriteHalf> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes what the socket takes now, without waiting.
pub(crate) fn try_write(w: &DirectTcp, buf: &[u8]) -> io::Result<usize> {
    lock_w(w).try_write(buf)
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock_w(&self.w)).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock_w(&self.w)).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock_w(&self.w)).poll_shutdown(cx)
    }
}

pub(crate) fn tcp_abort(tcp: &mut SharedTcp) {
    let _ = tcp.r.as_ref().set_zero_linger();
}
