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

use astral_core::driver::{
    RecordOpener, RecordSealer, RxBuffer, TxBuffer, UnsealedRecords, LINGER_TIMEOUT,
};
use astral_core::{NodeId, StreamId};
use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::ctx::{Kill, TransportSlot};
use crate::endpoint::EpDriver;
use crate::error::{Error, Result};
use crate::peer::Peer;

/// A byte transport as the task drives it.
pub(crate) trait Io: Send + Unpin + 'static {
    /// Reads at most `rx.next_read()` bytes into `rx`; `Ok(0)` is the end.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut RxBuffer,
    ) -> Poll<io::Result<usize>>;
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Breaks the transport as a network failure would (TCP: a reset).
    fn abort(&mut self) {}
}

/// TCP: reads straight into the receive buffer's spare room (no zeroing).
pub(crate) struct Tcp(pub TcpStream);

impl Io for Tcp {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut RxBuffer,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Err(e) = std::task::ready!(self.0.poll_read_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            let want = rx.next_read();
            let mut dst = BufMut::limit(rx.buf_mut(), want);
            match self.0.try_read_buf(&mut dst) {
                Ok(n) => return Poll::Ready(Ok(n)),
                // Readiness was cleared: poll it again (registers the waker).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
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
    fn abort(&mut self) {
        let _ = self.0.set_zero_linger();
    }
}

/// Any `AsyncRead + AsyncWrite` (pipes, Unix sockets, proxies).
pub(crate) struct Generic<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for Generic<T> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut RxBuffer,
    ) -> Poll<io::Result<usize>> {
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
    /// Established: the task holds the keys and its peer.
    Up {
        peer: Arc<Peer>,
        sealer: RecordSealer,
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
    tx: TxBuffer,
    need_flush: bool,
    read_done: bool,
    /// The core no longer knows the stream: flush what is left and hang up.
    gone: bool,
    /// Bounds the flush of a stream that is gone.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
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
        }
    }

    fn set_gone(&mut self) {
        if !self.gone {
            self.gone = true;
            self.linger = Some(Box::pin(tokio::time::sleep(LINGER_TIMEOUT)));
        }
    }

    /// Takes the keys and the peer once the handshake completed.
    fn try_upgrade(&mut self) {
        if !matches!(self.phase, Phase::Handshake) {
            return;
        }
        let Some(up) = self.ep.take_upgrade(self.stream) else {
            return;
        };
        let layer = up.layer;
        self.phase = Phase::Up {
            peer: up.peer,
            sealer: layer.sealer,
            opener: layer.opener,
        };
        if !layer.pending_input.is_empty() {
            // Records that came with the last handshake message go first
            // (what follows them in the buffer is at most a partial record).
            let buf = self.rx.buf_mut();
            let mut front = layer.pending_input;
            front.extend_from_slice(buf);
            *buf = front;
            self.deliver();
        }
    }

    /// Hands what was read on: handshake messages to the endpoint, opened
    /// records to the peer.
    fn deliver(&mut self) {
        let stream = self.stream;
        match &mut self.phase {
            Phase::Handshake => {
                let whole = self.rx.take_whole();
                if whole.is_empty() {
                    return;
                }
                self.ep
                    .with(|st, now| st.core.handle_input_owned(now, stream, whole));
                self.try_upgrade();
            }
            Phase::Up { peer, opener, .. } => {
                // Decrypted here, outside the peer's lock.
                let opened = self.rx.open(opener);
                if opened.records.is_empty() && opened.error.is_none() {
                    return;
                }
                peer.with(|ps, now| {
                    if !opened.records.is_empty() {
                        ps.engine.handle_records(now, stream, opened.records);
                    }
                    if let Some(e) = opened.error {
                        ps.engine.handle_record_error(now, stream, e);
                    }
                });
            }
        }
    }

    /// Refills the (empty) write buffer; parks the task if there is nothing.
    fn refill(&mut self, cx: &Context<'_>) {
        let stream = self.stream;
        if let Phase::Handshake = self.phase {
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
                return;
            }
            if !self.tx.is_empty() || matches!(self.phase, Phase::Handshake) {
                return;
            }
        }
        let Phase::Up { peer, sealer, .. } = &mut self.phase else {
            return;
        };
        let mut unsealed = UnsealedRecords::with_buffer(self.tx.take_buffer());
        let gone = peer.with(|ps, now| {
            let n = ps
                .engine
                .poll_transmit_unsealed(now, stream, &mut unsealed, TxBuffer::PULL);
            if n > 0 {
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
        match sealer.seal(unsealed) {
            Ok(sealed) => self.tx.fill(sealed),
            Err(e) => {
                peer.with(|ps, now| ps.engine.handle_record_error(now, stream, e));
            }
        }
        if gone {
            self.set_gone();
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
            Phase::Up { peer, .. } => peer.peek(|ps| {
                ps.transports.remove(&stream);
            }),
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

            if !this.read_done && !this.gone {
                let Some(io) = this.io.as_mut() else {
                    return Poll::Ready(());
                };
                match io.poll_read_into(cx, &mut this.rx) {
                    Poll::Ready(Ok(0)) => {
                        progress = true;
                        this.read_done = true;
                        this.report_closed("connection closed by peer");
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        this.deliver();
                    }
                    Poll::Ready(Err(e)) => {
                        this.end(Some(e.to_string()));
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }

            if this.tx.is_empty() && !this.gone {
                if this.need_flush {
                    let Some(io) = this.io.as_mut() else {
                        return Poll::Ready(());
                    };
                    match io.poll_flush(cx) {
                        Poll::Ready(Ok(())) => this.need_flush = false,
                        Poll::Ready(Err(e)) => {
                            this.end(Some(e.to_string()));
                            return Poll::Ready(());
                        }
                        Poll::Pending => {}
                    }
                }
                this.refill(cx);
                if this.gone {
                    // Poll the linger timer once (it registers the waker).
                    progress = true;
                }
            }
            let Some(io) = this.io.as_mut() else {
                return Poll::Ready(());
            };
            while !this.tx.is_empty() {
                match io.poll_write(cx, this.tx.chunk()) {
                    Poll::Ready(Ok(0)) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        this.end(Some(e.to_string()));
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(n)) => {
                        this.tx.advance(n);
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
            if this.gone && this.tx.is_empty() && !progress {
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
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
