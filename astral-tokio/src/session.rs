//! Sessions as `AsyncRead + AsyncWrite`, and inbound queries.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use astral_core::{
    CloseReason, NodeId, ReadError, SessionId, SessionInfo, SessionState, WriteError,
};
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use astral_core::driver;
use tokio::sync::mpsc;

use crate::ctx::NodeCtx;
use crate::peer::{Peer, PeerState, PendingQuery};

use crate::error::Result;

/// What a session operation sees once the core forgot the session.
fn closed_reason(sh: &PeerState, id: SessionId) -> CloseReason {
    sh.sessions
        .closed(id)
        .cloned()
        .unwrap_or(CloseReason::Graceful)
}

/// The handle of a session, held inline by a [`Session`] and shared by its
/// halves: its drop releases the session with socket semantics (see
/// [`Session`]).
///
/// The peer's id is not stored here: it is the engine's (`Peer::remote`),
/// and 32 bytes per handle were a sixth of an idle session's cost.
struct SessionRef {
    inner: Arc<Peer>,
    id: SessionId,
}

impl Drop for SessionRef {
    fn drop(&mut self) {
        let id = self.id;
        self.inner.with(|sh, now| {
            if let Some(h) = sh.engine.session(id) {
                match h.state() {
                    // Never answered: nobody will use it.
                    SessionState::Routing | SessionState::Pending => h.reset(now),
                    _ => h.release(now),
                }
            }
            sh.sessions.release(id);
        });
    }
}

impl SessionRef {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        self.inner.with_untimed(|sh| {
            let Some(mut h) = sh.engine.session(id) else {
                return match closed_reason(sh, id) {
                    CloseReason::Graceful => Poll::Ready(Ok(())),
                    r => Poll::Ready(Err(driver::io_error(r))),
                };
            };
            let dst = buf.initialize_unfilled();
            match h.read(dst) {
                Ok(n) => {
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                Err(ReadError::Blocked) => {
                    sh.sessions.park_read(id, cx);
                    Poll::Pending
                }
                Err(ReadError::Closed(CloseReason::Graceful)) => Poll::Ready(Ok(())),
                Err(ReadError::Closed(r)) => Poll::Ready(Err(driver::io_error(r))),
                Err(e) => Poll::Ready(Err(io::Error::other(e))),
            }
        })
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        self.inner.with_untimed(|sh| {
            let Some(mut h) = sh.engine.session(id) else {
                return Poll::Ready(Err(driver::io_error(closed_reason(sh, id))));
            };
            match h.write(buf) {
                Ok(n) => Poll::Ready(Ok(n)),
                Err(WriteError::Blocked) => {
                    sh.sessions.park_write(id, cx);
                    Poll::Pending
                }
                Err(_) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "session closed for writing (shut down or closed)",
                ))),
            }
        })
    }

    /// Takes up to `max` bytes as they sit in the reassembly buffer (no
    /// copy); `None` at end-of-stream.
    fn poll_read_chunk(&self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Option<Bytes>>> {
        if max == 0 {
            return Poll::Ready(Ok(Some(Bytes::new())));
        }
        let id = self.id;
        self.inner.with_untimed(|sh| {
            let Some(mut h) = sh.engine.session(id) else {
                return match closed_reason(sh, id) {
                    CloseReason::Graceful => Poll::Ready(Ok(None)),
                    r => Poll::Ready(Err(driver::io_error(r))),
                };
            };
            match h.read_chunk(max) {
                Ok(c) => Poll::Ready(Ok(c)),
                Err(ReadError::Blocked) => {
                    sh.sessions.park_read(id, cx);
                    Poll::Pending
                }
                Err(ReadError::Closed(CloseReason::Graceful)) => Poll::Ready(Ok(None)),
                Err(ReadError::Closed(r)) => Poll::Ready(Err(driver::io_error(r))),
                Err(e) => Poll::Ready(Err(io::Error::other(e))),
            }
        })
    }

    /// Queues as much of `data` as the send buffer takes, without copying
    /// large chunks, and advances `data` past it.
    fn poll_write_bytes(&self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<io::Result<()>> {
        if data.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        self.inner.with_untimed(|sh| {
            let Some(mut h) = sh.engine.session(id) else {
                return Poll::Ready(Err(driver::io_error(closed_reason(sh, id))));
            };
            // A clone of `Bytes` is a reference count, not a copy.
            match h.write_bytes(data.clone()) {
                Ok(n) => {
                    data.advance(n);
                    Poll::Ready(Ok(()))
                }
                Err(WriteError::Blocked) => {
                    sh.sessions.park_write(id, cx);
                    Poll::Pending
                }
                Err(_) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "session closed for writing (shut down or closed)",
                ))),
            }
        })
    }

    async fn write_chunk(&self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| self.poll_write_bytes(cx, &mut data)).await?;
        }
        Ok(())
    }

    async fn read_chunk(&self, max: usize) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_read_chunk(cx, max)).await
    }

    /// Ready with the reason once the core removed the session.
    fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let id = self.id;
        self.inner.peek(|sh| {
            if sh.engine.session(id).is_some() {
                sh.sessions.park_close(id, cx);
                Poll::Pending
            } else {
                // The core removes a session and reports `SessionClosed`
                // in the same locked call, so the reason is there.
                Poll::Ready(closed_reason(sh, id))
            }
        })
    }

    async fn closed(&self) -> CloseReason {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// Aborts the session: the peer gets a Reset.
    fn reset(&self) {
        let id = self.id;
        self.inner.with(|sh, now| {
            if let Some(h) = sh.engine.session(id) {
                h.reset(now);
            }
        });
    }

    fn finish(&self) {
        let id = self.id;
        self.inner.with_untimed(|sh| {
            if let Some(mut h) = sh.engine.session(id) {
                h.finish();
            }
        });
    }
}

/// A session: a bidirectional byte flow with a peer, multiplexed over the
/// node's streams, that survives migration and the death of its stream.
///
/// Implements [`AsyncRead`] (`Ok(0)` = the peer finished its side) and
/// [`AsyncWrite`] (`shutdown` = half-close: the peer reads end-of-stream,
/// and this side can still read). A reset or failed session returns an
/// `io::Error` wrapping a [`SessionClosedError`] with the reason.
///
/// Dropping a `Session` (or both of its halves) is closing a socket:
/// * bytes already written are still delivered, then a Fin (the peer reads
///   end-of-stream), and the session ends gracefully once the peer
///   finishes too;
/// * if bytes had arrived that were never read, the session is reset at
///   once instead (the peer's reads and writes fail with `ConnectionReset`),
///   as TCP sends RST when a socket is closed with unread data;
/// * bytes that arrive after the drop reset it too, so a peer still writing
///   learns that nobody reads (its writes fail with `ConnectionReset`).
///
/// To stop reading but keep accepting what the peer sends, read to the end
/// before dropping; to abort, call [`Session::reset`].
///
/// ```no_run
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// # async fn f(node: astral_tokio::Node, peer: astral_tokio::NodeId) -> Result<(), astral_tokio::Error> {
/// let mut s = node.open_session(peer, "echo").await?;
/// s.write_all(b"ping").await?;
/// s.shutdown().await?;
/// let mut reply = String::new();
/// s.read_to_string(&mut reply).await?;
/// assert_eq!(reply, "ping");
/// # Ok(()) }
/// ```
pub struct Session {
    // Inline (no allocation per session): only `into_split` shares it.
    r: SessionRef,
}

impl Session {
    /// The handle of session `id` of the engine `inner`.
    pub(crate) fn new(inner: Arc<Peer>, id: SessionId) -> Session {
        Session {
            r: SessionRef { inner, id },
        }
    }

    /// The session's local handle (for `Node::migrate`, `Node::session_info`).
    ///
    /// ```no_run
    /// # fn f(s: astral_tokio::Session) { println!("session {}", s.id()); }
    /// ```
    pub fn id(&self) -> SessionId {
        self.r.id
    }

    /// The peer at the other end.
    ///
    /// ```no_run
    /// # fn f(s: astral_tokio::Session) { println!("talking to {}", s.peer()); }
    /// ```
    pub fn peer(&self) -> NodeId {
        self.r.inner.remote
    }

    /// Snapshot of the session (state, streams, counters); `None` once the
    /// core removed it.
    ///
    /// ```no_run
    /// # fn f(s: astral_tokio::Session) {
    /// if let Some(i) = s.info() { println!("{} bytes written", i.stats.bytes_written); }
    /// # }
    /// ```
    pub fn info(&self) -> Option<SessionInfo> {
        let id = self.r.id;
        self.r.inner.peek(|sh| sh.engine.session_info(id))
    }

    /// Why the session ended, once it did.
    ///
    /// ```no_run
    /// # fn f(s: astral_tokio::Session) { if let Some(r) = s.close_reason() { println!("{r}"); } }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        let id = self.r.id;
        self.r.inner.peek(|sh| sh.sessions.closed(id).cloned())
    }

    /// Writes all of `data` without copying it (chunks of 4 KiB and more are
    /// queued as they are; smaller ones are coalesced), waiting for room as
    /// `write_all` does. Fails like `poll_write` once the session ended or
    /// was shut down for writing.
    ///
    /// ```no_run
    /// # async fn f(mut s: astral_tokio::Session) -> std::io::Result<()> {
    /// let block = bytes::Bytes::from(vec![0u8; 1 << 20]);
    /// s.write_chunk(block.clone()).await?; // the same memory, twice
    /// s.write_chunk(block).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.r.write_chunk(data).await
    }

    /// Reads up to `max` bytes without copying them out of the session's
    /// reassembly buffer: `Ok(None)` at the end of the peer's data, an error
    /// (with a [`SessionClosedError`]) if the session failed. A chunk is
    /// never empty for `max > 0`.
    ///
    /// ```no_run
    /// # async fn f(mut s: astral_tokio::Session) -> std::io::Result<()> {
    /// while let Some(chunk) = s.read_chunk(1 << 20).await? {
    ///     println!("{} bytes", chunk.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.r.read_chunk(max).await
    }

    /// Waits until the session ended and returns why: `Graceful` once both
    /// directions finished and every byte was acknowledged, or the reason
    /// it failed. Returns at once if it already ended. The reason is kept
    /// for as long as a handle of the session lives, so it is never lost.
    ///
    /// ```no_run
    /// # async fn f(mut s: astral_tokio::Session) -> std::io::Result<()> {
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// s.shutdown().await?;
    /// let mut rest = Vec::new();
    /// s.read_to_end(&mut rest).await?;
    /// assert_eq!(s.closed().await, astral_tokio::CloseReason::Graceful);
    /// # Ok(()) }
    /// ```
    pub async fn closed(&self) -> CloseReason {
        self.r.closed().await
    }

    /// Resolves once everything queued for this session's peer (this
    /// session's last frames, such as the final credit of a graceful close,
    /// and any other session's) was handed to the peer's transports: the
    /// core has no output for them and no transport holds bytes it has not
    /// written to its socket. At once if that holds already; never while a
    /// transport cannot write (bound it with a timeout).
    ///
    /// A process that exits right after a graceful close waits for this,
    /// then shuts the node down ([`Node::shutdown`](crate::Node::shutdown)
    /// drops what is still queued in favour of its Goodbye).
    ///
    /// ```no_run
    /// # async fn f(s: astral_tokio::Session) {
    /// s.closed().await;
    /// let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s.flushed()).await;
    /// # }
    /// ```
    pub async fn flushed(&self) {
        self.r.inner.flushed().await;
    }

    /// Closes the session like dropping it (see [`Session`]): bytes written
    /// are delivered; unread or later incoming bytes reset it.
    ///
    /// ```no_run
    /// # fn f(s: astral_tokio::Session) { s.close(); }
    /// ```
    pub fn close(self) {}

    /// Aborts the session: the peer gets a Reset; unsent and unread bytes
    /// are dropped.
    ///
    /// ```no_run
    /// # fn f(s: astral_tokio::Session) { s.reset(); }
    /// ```
    pub fn reset(self) {
        self.r.reset();
    }

    /// Splits into owned read and write halves (for two tasks). Dropping the
    /// write half half-closes the session; dropping both closes it.
    ///
    /// ```no_run
    /// # async fn f(s: astral_tokio::Session) {
    /// let (mut r, mut w) = s.into_split();
    /// tokio::spawn(async move { let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await; });
    /// let _ = tokio::io::AsyncWriteExt::write_all(&mut w, b"data").await;
    /// # }
    /// ```
    pub fn into_split(self) -> (SessionReader, SessionWriter) {
        let r = Arc::new(self.r);
        (
            SessionReader { r: r.clone() },
            SessionWriter { r, finished: false },
        )
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.r.id)
            .field("peer", &self.r.inner.remote)
            .finish()
    }
}

impl AsyncRead for Session {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.r.poll_read(cx, buf)
    }
}

impl AsyncWrite for Session {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.r.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.r.finish();
        Poll::Ready(Ok(()))
    }
}

/// The read half of a [`Session`] (see [`Session::into_split`]).
///
/// ```no_run
/// # async fn f(s: astral_tokio::Session) -> std::io::Result<()> {
/// use tokio::io::AsyncReadExt;
/// let (mut r, _w) = s.into_split();
/// let mut buf = Vec::new();
/// r.read_to_end(&mut buf).await?;
/// # Ok(()) }
/// ```
pub struct SessionReader {
    r: Arc<SessionRef>,
}

impl SessionReader {
    /// The session's handle.
    ///
    /// ```no_run
    /// # fn f(r: astral_tokio::SessionReader) { println!("{}", r.id()); }
    /// ```
    pub fn id(&self) -> SessionId {
        self.r.id
    }

    /// [`Session::read_chunk`] on this half.
    ///
    /// ```no_run
    /// # async fn f(s: astral_tokio::Session) -> std::io::Result<()> {
    /// let (mut r, _w) = s.into_split();
    /// while let Some(chunk) = r.read_chunk(1 << 20).await? { drop(chunk); }
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.r.read_chunk(max).await
    }

    /// [`Session::closed`] on this half.
    ///
    /// ```no_run
    /// # async fn f(r: astral_tokio::SessionReader) { println!("{}", r.closed().await); }
    /// ```
    pub async fn closed(&self) -> CloseReason {
        self.r.closed().await
    }

    /// [`Session::flushed`] on this half.
    ///
    /// ```no_run
    /// # async fn f(r: astral_tokio::SessionReader) { r.flushed().await; }
    /// ```
    pub async fn flushed(&self) {
        self.r.inner.flushed().await;
    }

    /// Aborts the whole session (both directions), as [`Session::reset`]:
    /// for a reader that meets an error its application cannot recover from.
    ///
    /// ```no_run
    /// # fn f(r: astral_tokio::SessionReader) { r.reset(); }
    /// ```
    pub fn reset(self) {
        self.r.reset();
    }
}

impl AsyncRead for SessionReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.r.poll_read(cx, buf)
    }
}

/// The write half of a [`Session`] (see [`Session::into_split`]). Shutting
/// it down or dropping it half-closes the session.
///
/// ```no_run
/// # async fn f(s: astral_tokio::Session) -> std::io::Result<()> {
/// use tokio::io::AsyncWriteExt;
/// let (_r, mut w) = s.into_split();
/// w.write_all(b"bye").await?;
/// w.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct SessionWriter {
    r: Arc<SessionRef>,
    finished: bool,
}

impl SessionWriter {
    /// The session's handle.
    ///
    /// ```no_run
    /// # fn f(w: astral_tokio::SessionWriter) { println!("{}", w.id()); }
    /// ```
    pub fn id(&self) -> SessionId {
        self.r.id
    }

    /// [`Session::write_chunk`] on this half.
    ///
    /// ```no_run
    /// # async fn f(s: astral_tokio::Session) -> std::io::Result<()> {
    /// let (_r, mut w) = s.into_split();
    /// w.write_chunk(bytes::Bytes::from_static(b"hello")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.r.write_chunk(data).await
    }

    /// [`Session::closed`] on this half.
    ///
    /// ```no_run
    /// # async fn f(w: astral_tokio::SessionWriter) { println!("{}", w.closed().await); }
    /// ```
    pub async fn closed(&self) -> CloseReason {
        self.r.closed().await
    }

    /// [`Session::flushed`] on this half.
    ///
    /// ```no_run
    /// # async fn f(w: astral_tokio::SessionWriter) { w.flushed().await; }
    /// ```
    pub async fn flushed(&self) {
        self.r.inner.flushed().await;
    }

    /// Aborts the whole session (both directions), as [`Session::reset`]:
    /// e.g. when the source of the bytes failed and the peer must not
    /// mistake what arrived for a complete stream.
    ///
    /// ```no_run
    /// # fn f(w: astral_tokio::SessionWriter) { w.reset(); }
    /// ```
    pub fn reset(mut self) {
        // Not a half-close: the Reset comes instead of a Fin.
        self.finished = true;
        self.r.reset();
    }
}

impl AsyncWrite for SessionWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.r.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.finished = true;
        self.r.finish();
        Poll::Ready(Ok(()))
    }
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.r.finish();
        }
    }
}

/// An inbound query: accept it for a [`Session`] or reject it with a code.
/// Dropping it rejects it with [`astral_core::codes::REJECTED`].
///
/// ```no_run
/// # async fn f(node: astral_tokio::Node) -> Result<(), astral_tokio::Error> {
/// let q = node.next_query().await.unwrap();
/// if q.query().starts_with("storage.") {
///     let _session = q.accept()?;
/// } else {
///     q.reject(astral_core::codes::NO_SUCH_SERVICE);
/// }
/// # Ok(()) }
/// ```
pub struct IncomingQuery {
    q: PendingQuery,
}

impl IncomingQuery {
    /// Who asks.
    ///
    /// ```no_run
    /// # fn f(q: astral_tokio::IncomingQuery) { println!("{}", q.peer()); }
    /// ```
    pub fn peer(&self) -> NodeId {
        self.q.from
    }

    /// The query string.
    ///
    /// ```no_run
    /// # fn f(q: astral_tokio::IncomingQuery) { println!("{}", q.query()); }
    /// ```
    pub fn query(&self) -> &str {
        &self.q.query
    }

    /// The pending session's handle.
    ///
    /// ```no_run
    /// # fn f(q: astral_tokio::IncomingQuery) { println!("{}", q.id()); }
    /// ```
    pub fn id(&self) -> SessionId {
        self.q.id
    }

    /// Accepts: the session opens. Fails if the query already timed out or
    /// the peer gave up.
    ///
    /// ```no_run
    /// # fn f(q: astral_tokio::IncomingQuery) -> Result<(), astral_tokio::Error> {
    /// let session = q.accept()?;
    /// # Ok(()) }
    /// ```
    pub fn accept(mut self) -> Result<Session> {
        self.q.accept()?;
        Ok(Session::new(self.q.peer.clone(), self.q.id))
    }

    /// Rejects with `code` (non-zero; see [`astral_core::codes`]); the
    /// opener's `open_session` fails with [`Error::Rejected`](crate::Error::Rejected) carrying it.
    ///
    /// ```no_run
    /// # fn f(q: astral_tokio::IncomingQuery) { q.reject(astral_core::codes::NO_SUCH_SERVICE); }
    /// ```
    pub fn reject(mut self, code: u8) {
        self.q.reject(code);
    }
}

impl std::fmt::Debug for IncomingQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingQuery")
            .field("id", &self.q.id)
            .field("peer", &self.q.from)
            .field("query", &self.q.query)
            .finish()
    }
}

/// The node's inbound queries (see [`Node::incoming`](crate::Node::incoming)).
///
/// ```no_run
/// # async fn f(node: astral_tokio::Node) {
/// let mut incoming = node.incoming();
/// while let Some(q) = incoming.next().await {
///     let _ = q.accept();
/// }
/// # }
/// ```
pub struct Incoming {
    queries: Arc<Queries>,
}

impl Incoming {
    pub(crate) fn new(queries: Arc<Queries>) -> Self {
        Incoming { queries }
    }

    /// The next query; `None` once the node shut down.
    ///
    /// ```no_run
    /// # async fn f(mut i: astral_tokio::Incoming) { while let Some(q) = i.next().await { q.reject(1); } }
    /// ```
    pub async fn next(&mut self) -> Option<IncomingQuery> {
        let mut shutdown = self.queries.ctx.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return None;
        }
        let mut rx = tokio::select! {
            rx = self.queries.rx.lock() => rx,
            _ = shutdown.changed() => return None,
        };
        tokio::select! {
            q = rx.recv() => q.map(|q| IncomingQuery { q }),
            _ = shutdown.changed() => None,
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

/// The node's inbound queries, shared by its [`Incoming`]s.
pub(crate) struct Queries {
    ctx: Arc<NodeCtx>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<PendingQuery>>,
}

impl Queries {
    pub fn new(ctx: Arc<NodeCtx>, rx: mpsc::UnboundedReceiver<PendingQuery>) -> Queries {
        Queries {
            ctx,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// Rejects every query nobody took (at shutdown).
    pub fn drain(&self) {
        if let Ok(mut rx) = self.rx.try_lock() {
            while rx.try_recv().is_ok() {}
        }
    }
}
