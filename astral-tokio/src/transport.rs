//! One task per transport, the only writer of its socket (quinn's
//! connection driver): it reads ciphertext, opens records and hands them to
//! its peer's engine; it pulls records from the engine when the socket can
//! take more, seals them and writes them.
//!
//! While the stream handshakes, the task talks to the endpoint. Once the
//! handshake completes it holds the stream's keys itself (the detached
//! record layer) and its peer: the AEAD work runs outside every lock, and
//! the peer's lock is held only to hand records in or take frames out.
//! Backpressure: frames are pulled (`poll_transmit_unsealed`) only into an
//! empty [`TxBuffer`], at most [`TxBuffer::PULL`] bytes at once, so
//! ciphertext never piles up in the driver; reads follow the
//! [`RxBuffer`] rule, so whole records reach the engine where the socket
//! wrote them (no copy). When the engine has nothing to send, the task
//! parks its waker in its slot, and the next call that gives the stream
//! output wakes it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use astral_core::driver::{RecordOpener, RxBuffer, TxBuffer, UnsealedRecords, LINGER_TIMEOUT};
use astral_core::{NodeId, StreamId};
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::ctx::{Kill, TransportSlot};
use crate::endpoint::EpDriver;
use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::wire::{Wire, WireTx};

/// A byte transport as the task drives it.
pub(crate) trait Io: Send + Unpin + 'static {
    /// Reads at most `max` and at most `rx.next_read()` bytes into `rx`;
    /// `Ok(0)` is the end.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut RxBuffer,
        max: usize,
    ) -> Poll<io::Result<usize>>;
    /// The most one read asks for (see [`ONE_RECORD`]).
    fn read_max(&self) -> usize {
        usize::MAX
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Breaks the transport as a network failure would (TCP: a reset).
    fn abort(&mut self) {}
    /// The socket, if callers may write it inline through a shared
    /// reference (see [`crate::wire`]).
    fn shared(&self) -> Option<Arc<TcpStream>> {
        None
    }
}

/// The most a TCP read asks for: one whole record. A read of a few records
/// would open them all before the session reading them could run (it runs
/// after this task, on the same worker), so a session's credit would come
/// back only once the whole batch was decrypted; one record per read lets
/// the reader and the decryption of the next record overlap (see
/// `docs/notes/perf-profile.md` §10).
pub(crate) const ONE_RECORD: usize = 2 + 65_535;

/// TCP: reads straight into the receive buffer's spare room (no zeroing);
/// shared with the transport's [`Wire`] for inline writes.
pub(crate) struct Tcp(pub Arc<TcpStream>);

impl Io for Tcp {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut RxBuffer,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Err(e) = std::task::ready!(self.0.poll_read_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            let want = rx.next_read().min(max).max(1);
            let mut got = 0;
            let r = self.0.try_io(Interest::READABLE, || {
                let mut dst = BufMut::limit(rx.buf_mut(), want);
                let n = self.0.try_read_buf(&mut dst)?;
                got = n;
                if n > 0 && n < want {
                    // A short read drained the socket: clear the readiness
                    // now (as tokio's own `poll_read` does) instead of
                    // paying a read that returns `WouldBlock` next time.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match r {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got > 0 {
                        return Poll::Ready(Ok(got));
                    }
                    // Readiness was cleared: poll it again (registers the waker).
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Err(e) = std::task::ready!(self.0.poll_write_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
    fn abort(&mut self) {
        let _ = self.0.set_zero_linger();
    }
    fn shared(&self) -> Option<Arc<TcpStream>> {
        Some(self.0.clone())
    }
    fn read_max(&self) -> usize {
        ONE_RECORD
    }
}

/// Any `AsyncRead + AsyncWrite` (pipes, Unix sockets, proxies).
pub(crate) struct Generic<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for Generic<T> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut RxBuffer,
        _max: usize,
    ) -> Poll<io::Result<usize>> {
        // `read_max` is unbounded: `next_read` is the limit.
        let mut pending = false;
        let io = &mut self.0;
        let r = rx.read_with(|b| {
            let mut rb = ReadBuf::new(b);
            match Pin::new(io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Ok(rb.filled().len()),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => {
                    pending = true;
                    Ok(0)
                }
            }
        });
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(r)
        }
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Resolves once the stream is up and confirmed, or with why it ended.
pub(crate) type UpRx = oneshot::Receiver<crate::ctx::UpResult>;

/// Which dial a dialed transport carries (redial bookkeeping).
#[derive(Clone, Copy, Debug)]
pub(crate) enum DialOf {
    /// A new dial the application made of this address.
    New(std::net::SocketAddr),
    /// A redial of a remembered dial.
    Again(astral_core::driver::DialId),
}

/// Registers a transport with the endpoint and spawns its task. `dial`:
/// `Some(peer)` to dial `peer`, `None` to accept (from `source`, if the
/// peer's address is known: handshake admission bounds it per address and
/// per prefix).
pub(crate) fn attach<I: Io>(
    ep: &Arc<EpDriver>,
    io: I,
    dial: Option<NodeId>,
    dial_of: Option<DialOf>,
    source: Option<astral_core::Source>,
) -> Result<(StreamId, UpRx)> {
    let (up_tx, up_rx) = oneshot::channel();
    let (kill_tx, kill_rx) = oneshot::channel();
    let stream = ep.with(|st, now| {
        if st.closed {
            return Err(Error::Shutdown);
        }
        let stream = match dial {
            Some(peer) => st.core.connect(now, peer)?,
            None => st.core.accept_from(now, source)?,
        };
        if let Some(peer) = dial {
            match dial_of {
                Some(DialOf::New(addr)) => {
                    let d = st.redialer.dial(peer, addr);
                    st.redialer.attached(d, stream);
                }
                Some(DialOf::Again(d)) => st.redialer.attached(d, stream),
                None => {}
            }
        }
        st.handshaking
            .insert(stream, TransportSlot::new(kill_tx, up_tx));
        Ok(stream)
    })?;
    ep.ctx.transport_started();
    tokio::spawn(Transport::new(io, ep.clone(), stream, kill_rx));
    Ok((stream, up_rx))
}

// One per transport task, inline in it and changed once: the size
// difference costs nothing, a box would cost an allocation per stream.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// The endpoint runs the handshake.
    Handshake,
    /// Established: the task holds the receiving key and its peer; the
    /// sending key is in the write side it shares with inline writers.
    Up {
        peer: Arc<Peer>,
        wire: Arc<Wire>,
        opener: RecordOpener,
    },
}

/// The transport task (a hand-written future that owns the transport, so
/// any transport works without splitting it).
struct Transport<I> {
    io: Option<I>,
    ep: Arc<EpDriver>,
    stream: StreamId,
    kill: oneshot::Receiver<Kill>,
    phase: Phase,
    rx: RxBuffer,
    /// Handshake messages; once up, the buffer moves into the [`Wire`].
    tx: TxBuffer,
    need_flush: bool,
    read_done: bool,
    /// The core no longer knows the stream: flush what is left and hang up.
    gone: bool,
    /// Bounds the flush of a stream that is gone.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The task yielded once for the burst whose records it holds.
    coalesced: bool,
    /// The handshake's last message waits in the write buffer: the first
    /// records ride behind it in the same write.
    tail: bool,
    /// The task yielded once, before writing, to the tasks its last read
    /// woke (see [`Transport::poll`]); it writes before it yields again.
    answered: bool,
}

/// What handing a read on did.
#[derive(Clone, Copy, Debug, Default)]
struct Delivered {
    /// It woke a task (a session reader, or the application taking an
    /// inbound query).
    woke: bool,
    /// It left output for this transport (a Pong, a credit).
    queued: bool,
}

/// What the write step left behind.
enum TxLeft {
    /// Nothing buffered (and the token, if any, released).
    Empty,
    /// Bytes wait for the transport to take them.
    Pending,
    /// An inline writer holds the token (it hands over or wakes the task).
    Elsewhere,
    /// An inline writer handed over a small batch of a burst: the task
    /// goes to the back of the run queue once, so that the tasks already
    /// queued add their output, and writes it all in one go next time.
    Coalesce,
}

/// Writes what `buf` holds until the transport would block; returns the
/// number of writes that took bytes.
fn write_out<I: Io>(
    io: &mut I,
    cx: &mut Context<'_>,
    buf: &mut TxBuffer,
    need_flush: &mut bool,
    progress: &mut bool,
) -> io::Result<u32> {
    let mut writes = 0;
    while !buf.is_empty() {
        match io.poll_write(cx, buf.chunk()) {
            Poll::Ready(Ok(0)) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                writes += 1;
                *need_flush = true;
                *progress = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(writes)
}

impl<I: Io> Transport<I> {
    fn new(io: I, ep: Arc<EpDriver>, stream: StreamId, kill: oneshot::Receiver<Kill>) -> Self {
        Transport {
            io: Some(io),
            ep,
            stream,
            kill,
            phase: Phase::Handshake,
            rx: RxBuffer::default(),
            tx: TxBuffer::default(),
            need_flush: false,
            read_done: false,
            gone: false,
            linger: None,
            coalesced: false,
            tail: false,
            answered: false,
        }
    }

    fn set_gone(&mut self) {
        if !self.gone {
            self.gone = true;
            self.linger = Some(Box::pin(tokio::time::sleep(LINGER_TIMEOUT)));
        }
    }

    /// Takes the keys and the peer once the handshake completed; what the
    /// records that came with the last handshake message did (see
    /// [`Transport::deliver`]).
    fn try_upgrade(&mut self) -> Delivered {
        if !matches!(self.phase, Phase::Handshake) {
            return Delivered::default();
        }
        let Some(up) = self.ep.take_upgrade(self.stream) else {
            return Delivered::default();
        };
        let layer = up.layer;
        let direct = self.io.as_ref().and_then(Io::shared);
        // The task holds the token first: handshake bytes may still wait
        // (the dialer's message 3), and records queued meanwhile (the
        // first Ping, a Query opened with the dial) go in the same write.
        self.tail = !self.tx.is_empty();
        let wire = Wire::new(
            self.stream,
            layer.sealer,
            std::mem::take(&mut self.tx),
            direct,
            up.peer.flush_watch(),
        );
        let stream = self.stream;
        up.peer.peek(|ps| {
            if let Some(t) = ps.transports.get_mut(&stream) {
                t.wire = Some(wire.clone());
            }
        });
        self.phase = Phase::Up {
            peer: up.peer,
            wire,
            opener: layer.opener,
        };
        if !layer.pending_input.is_empty() {
            // Records that came with the last handshake message go first
            // (what follows them in the buffer is at most a partial record).
            let buf = self.rx.buf_mut();
            let mut front = layer.pending_input;
            front.extend_from_slice(buf);
            *buf = front;
            return self.deliver();
        }
        Delivered::default()
    }

    /// Hands what was read on: handshake messages to the endpoint, opened
    /// records to the peer.
    fn deliver(&mut self) -> Delivered {
        let stream = self.stream;
        match &mut self.phase {
            Phase::Handshake => {
                let whole = self.rx.take_whole();
                if whole.is_empty() {
                    return Delivered::default();
                }
                self.ep
                    .with(|st, now| st.core.handle_input_owned(now, stream, whole));
                // The listener's case: a Query may ride behind message 3.
                self.try_upgrade()
            }
            Phase::Up {
                peer, opener, wire, ..
            } => {
                // Decrypted here, outside the peer's lock.
                let opened = self.rx.open(opener);
                if opened.records.is_empty() && opened.error.is_none() {
                    return Delivered::default();
                }
                let (queued, woke) = peer.with_woke(|ps, now| {
                    if !opened.records.is_empty() {
                        ps.engine.handle_records(now, stream, opened.records);
                    }
                    if let Some(e) = opened.error {
                        ps.engine.handle_record_error(now, stream, e);
                    }
                    ps.engine.wants_transmit(stream)
                });
                // What the woken readers write is an answer, not a burst:
                // it goes out inline. (What this call produced, if it went
                // to the task, is written below in the same poll.)
                wire.quiet();
                Delivered { woke, queued }
            }
        }
    }

    /// Refills the (empty) handshake buffer from the endpoint; parks the
    /// task if there is nothing.
    fn refill_handshake(&mut self, cx: &Context<'_>) {
        let stream = self.stream;
        let tx = &mut self.tx;
        let gone = self.ep.with(|st, now| {
            let n = st
                .core
                .poll_transmit(now, stream, tx.pull_into(), TxBuffer::PULL);
            if n > 0 || EpDriver::is_upgraded(st, stream) {
                return false;
            }
            if !st.core.has_stream(stream) {
                return true;
            }
            match st.handshaking.get_mut(&stream) {
                Some(t) => {
                    t.park(cx);
                    false
                }
                None => true,
            }
        });
        self.try_upgrade();
        if gone && matches!(self.phase, Phase::Handshake) {
            self.set_gone();
        }
    }

    /// Refills the (empty) buffer of the token holder from the engine;
    /// parks the task if there is nothing. `true` if the stream is gone.
    fn refill_up(peer: &Peer, stream: StreamId, tx: &mut WireTx, cx: &Context<'_>) -> bool {
        // Records an inline writer handed over come first; this pull adds
        // what was queued after them (one write for a burst).
        let mut unsealed = tx.take_unsealed();
        let handed = unsealed.len();
        let gone = peer.with(|ps, now| {
            let n = ps.engine.poll_transmit_unsealed(
                now,
                stream,
                &mut unsealed,
                TxBuffer::PULL.saturating_sub(handed),
            );
            if n > 0 || handed > 0 {
                return false;
            }
            if !ps.engine.has_stream(stream) {
                return true;
            }
            match ps.transports.get_mut(&stream) {
                Some(t) => {
                    t.park(cx);
                    false
                }
                None => true,
            }
        });
        // Sealed here, outside the peer's lock (an empty batch just gives
        // the buffer back).
        match tx.sealer.seal(unsealed) {
            Ok(sealed) => tx.buf.fill(sealed),
            Err(e) => {
                peer.with(|ps, now| ps.engine.handle_record_error(now, stream, e));
            }
        }
        gone
    }

    /// Seals the records the engine has for the stream now (the first Ping,
    /// a Query opened with the dial) behind the handshake's last message
    /// still in the buffer, so that both leave in one write: one system
    /// call less per set-up at each end, and the listener reads message 3
    /// and the Query together (`docs/notes/perf-profile.md` §17).
    fn append_up(peer: &Peer, stream: StreamId, tx: &mut WireTx) {
        let room = TxBuffer::PULL.saturating_sub(tx.buf.len());
        let mut unsealed = UnsealedRecords::with_buffer(BytesMut::new());
        let n = peer.with(|ps, now| {
            ps.engine
                .poll_transmit_unsealed(now, stream, &mut unsealed, room)
        });
        if n == 0 {
            return;
        }
        match tx.sealer.seal(unsealed) {
            Ok(sealed) => {
                // A copy of a few hundred bytes, once per stream.
                let mut buf = tx.buf.take_buffer();
                buf.extend_from_slice(&sealed);
                tx.buf.fill(buf);
            }
            Err(e) => peer.with(|ps, now| ps.engine.handle_record_error(now, stream, e)),
        }
    }

    /// The write step: refill an empty buffer, write until the transport
    /// would block.
    fn poll_tx(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> io::Result<TxLeft> {
        if let Phase::Handshake = self.phase {
            if self.tx.is_empty() && !self.gone {
                self.flush(cx)?;
                self.refill_handshake(cx);
                if self.gone {
                    // Poll the linger timer once (it registers the waker).
                    *progress = true;
                }
            }
            if let Phase::Handshake = self.phase {
                let Some(io) = self.io.as_mut() else {
                    return Ok(TxLeft::Empty);
                };
                let _ = write_out(io, cx, &mut self.tx, &mut self.need_flush, progress)?;
                return Ok(if self.tx.is_empty() {
                    TxLeft::Empty
                } else {
                    TxLeft::Pending
                });
            }
            // Upgraded: the buffer moved into the wire; carry on there.
        }
        let Phase::Up { peer, wire, .. } = &self.phase else {
            return Ok(TxLeft::Empty);
        };
        let (peer, wire) = (peer.clone(), wire.clone());
        wire.register_task(cx);
        // A stream that is gone waits for the holder to finish before it
        // hangs up; otherwise whoever brings output asks for the task.
        let Some(mut tx) = wire.task_lock(self.gone) else {
            return Ok(TxLeft::Elsewhere);
        };
        if std::mem::take(&mut self.tail) && !tx.buf.is_empty() && !tx.has_unsealed() && !self.gone
        {
            Self::append_up(&peer, self.stream, &mut tx);
        }
        if tx.has_unsealed() && !self.coalesced && !self.gone {
            self.coalesced = true;
            return Ok(TxLeft::Coalesce);
        }
        self.coalesced = false;
        if tx.buf.is_empty() && (!self.gone || tx.has_unsealed()) {
            // On an error the task ends holding the token: nothing is
            // written after it.
            self.flush(cx)?;
            if Self::refill_up(&peer, self.stream, &mut tx, cx) {
                self.set_gone();
                *progress = true;
            }
            if tx.buf.is_empty() {
                // Nothing to write: the transport is idle, a burst is over.
                wire.quiet();
            }
        }
        if let Some(io) = self.io.as_mut() {
            // On an error the task ends holding the token.
            let writes = write_out(io, cx, &mut tx.buf, &mut self.need_flush, progress)?;
            wire.count_writes(writes);
        }
        if tx.buf.is_empty() {
            if wire.task_release(tx) {
                // Someone found output while we held it: look again.
                *progress = true;
            }
            Ok(TxLeft::Empty)
        } else {
            Ok(TxLeft::Pending)
        }
    }

    /// Flushes what was written (a no-op on TCP).
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.need_flush {
            return Ok(());
        }
        let Some(io) = self.io.as_mut() else {
            return Ok(());
        };
        match io.poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.need_flush = false;
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(()),
        }
    }

    /// Reports a transport failure to the part owning the stream.
    fn report_closed(&mut self, reason: &str) {
        let stream = self.stream;
        self.try_upgrade();
        match &self.phase {
            Phase::Up { peer, .. } => {
                peer.with(|ps, now| ps.engine.handle_transport_closed(now, stream, reason))
            }
            Phase::Handshake => self
                .ep
                .with(|st, now| st.core.handle_transport_closed(now, stream, reason)),
        }
    }

    /// Ends the task: reports a failure (once) and forgets the slot.
    fn end(&mut self, report: Option<String>) {
        if let Some(reason) = report {
            self.report_closed(&reason);
        }
        let stream = self.stream;
        self.try_upgrade();
        match &self.phase {
            Phase::Up { peer, .. } => {
                peer.peek(|ps| {
                    ps.transports.remove(&stream);
                });
                // A flush waiter no longer waits for this transport.
                peer.flush_watch().notify();
            }
            Phase::Handshake => self.ep.peek(|st| {
                st.handshaking.remove(&stream);
            }),
        }
        self.io = None;
    }
}

impl<I> Drop for Transport<I> {
    /// Counts the task out (`Node::closed` waits for the last one).
    fn drop(&mut self) {
        self.io = None;
        // The write side shares the socket (inline writes): drop it too, so
        // that the socket is closed when the task is counted out.
        self.phase = Phase::Handshake;
        self.ep.ctx.transport_ended();
    }
}

impl<I: Io> Future for Transport<I> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.kill).poll(cx) {
                Poll::Ready(Ok(Kill::Abort)) => {
                    if let Some(io) = this.io.as_mut() {
                        io.abort();
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
            if let Some(l) = this.linger.as_mut() {
                if l.as_mut().poll(cx).is_ready() {
                    this.end(None);
                    return Poll::Ready(());
                }
            }
            if this.io.is_none() {
                return Poll::Ready(());
            }
            this.try_upgrade();
            let mut progress = false;
            // A full read woke a reader: let it run before the next read.
            let mut yield_now = false;
            // A short read woke a task and queued output: let the task run
            // before this one writes.
            let mut answer = false;

            if !this.read_done && !this.gone {
                let Some(io) = this.io.as_mut() else {
                    return Poll::Ready(());
                };
                let max = io.read_max();
                match io.poll_read_into(cx, &mut this.rx, max) {
                    Poll::Ready(Ok(0)) => {
                        progress = true;
                        this.read_done = true;
                        this.report_closed("connection closed by peer");
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        // The socket may hold more; a woken reader sits in
                        // this worker's LIFO slot, which no other worker can
                        // steal, until this task returns.
                        let d = this.deliver();
                        yield_now = d.woke && n >= max;
                        // Only when there is something for the answer to
                        // ride with: a one-byte echo costs no extra poll.
                        answer = d.woke && d.queued && n < max;
                    }
                    Poll::Ready(Err(e)) => {
                        this.end(Some(e.to_string()));
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }

            if answer && !this.answered && !this.gone {
                // What the woken task writes (a session's echo, the
                // Response of a Query it accepts) is an answer to what was
                // just read: it goes out in the same write as the records
                // this read queued (a Pong, a credit), inline by that task
                // or by this one on its next poll, instead of a write of
                // its own after this task's. Once only: the next poll
                // writes before it may yield again, so a peer that keeps
                // the socket busy never starves the write side.
                this.answered = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.answered = false;
            let left = match this.poll_tx(cx, &mut progress) {
                Ok(left) => left,
                Err(e) => {
                    this.end(Some(e.to_string()));
                    return Poll::Ready(());
                }
            };
            if this.gone && matches!(left, TxLeft::Empty) && !progress {
                // Everything the core handed out is written: hang up.
                let Some(io) = this.io.as_mut() else {
                    return Poll::Ready(());
                };
                return match io.poll_shutdown(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(_) => {
                        this.end(None);
                        Poll::Ready(())
                    }
                };
            }
            if matches!(left, TxLeft::Coalesce) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if yield_now && !this.gone {
                // Back of the queue (another worker may take the task over);
                // the reader runs first on this one.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
