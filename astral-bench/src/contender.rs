//! What a contender is, and the workloads for any stream transport.
//!
//! A contender is anything implementing [`Contender`]: three blocking
//! workloads run on the shared tokio runtime. Most contenders are byte-stream
//! transports; for those, implement the smaller [`Transport`] trait and wrap
//! it with [`streamed`]: the client and server sides of every workload are
//! written once here, so all transports run exactly the same code.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::runtime::Runtime;

use crate::Cipher;

/// The result of every workload step: errors are reported in the table
/// (one row's failure does not stop the run).
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Upper bound for one workload run, so a wedged contender cannot hang the run.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// Echo rounds run before the measured ones.
pub const ECHO_WARMUP: usize = 100;
/// Server-side read buffer (also the bulk receiver's buffer).
const READ_BUF: usize = 64 * 1024;

/// Result of one bulk transfer.
pub struct Bulk {
    /// From the first byte written (sessions already established) to the
    /// last session's receipt acknowledged by the server.
    pub elapsed: Duration,
    /// Payload bytes delivered (all sessions).
    pub bytes: u64,
    /// How the sessions were carried, e.g. "64 streams / 1 conn".
    pub mode: String,
}

/// Result of the idle-session workload.
pub struct Idle {
    /// Sessions held open (on each end).
    pub sessions: usize,
    /// From the first open to the last `open_stream` returning (with its
    /// first byte written).
    pub open: Duration,
    /// From the first open until every session has its first round trip
    /// (the server's 1-byte answer) done.
    pub ready: Duration,
    /// Live heap growth while the sessions are held, both ends together,
    /// measured from after the connection is up (so per-session state only;
    /// includes the application's handle for each session on both ends).
    pub heap: crate::heap::Heap,
    /// The same, measured from before the connection was made (adds the
    /// connection's fixed cost).
    pub heap_with_conn: crate::heap::Heap,
}

/// The shape of a bulk transfer: `conns` connections (each a fresh client,
/// for astral a fresh node, i.e. a peer of its own) carrying `sessions`
/// concurrent sessions each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Connections (peers).
    pub conns: usize,
    /// Sessions per connection (a transport that does not multiplex uses
    /// one connection per session instead).
    pub sessions: usize,
}

/// One side of the comparison. Every method blocks on `rt` and returns
/// only once the server side has been torn down again.
pub trait Contender {
    /// Unique name in tables and JSON (includes the cipher when it is not
    /// the default ChaChaPoly).
    fn name(&self) -> String;
    /// The record cipher (`None`: no encryption).
    fn cipher(&self) -> Option<Cipher>;
    /// `payload` bytes split evenly over every session of `shape`, all
    /// concurrent, written `write_size` bytes at a time. `None`: the
    /// contender cannot run this shape.
    fn bulk(
        &self,
        rt: &Runtime,
        payload: u64,
        shape: Shape,
        write_size: usize,
    ) -> Res<Option<Bulk>>;
    /// 1-byte round trips over one session; one latency per measured round.
    fn echo(&self, rt: &Runtime, rounds: usize) -> Res<Vec<Duration>>;
    /// `n` sequential session set-ups (connect + handshake + first 1-byte
    /// round trip + close); one latency per set-up.
    fn handshakes(&self, rt: &Runtime, n: usize) -> Res<Vec<Duration>>;
    /// `n` sessions over one connection, each opened, answered once and then
    /// held idle while the heap is measured. `None` if the contender does
    /// not multiplex (one connection per session is not the point here).
    fn idle(&self, _rt: &Runtime, _n: usize) -> Res<Option<Idle>> {
        Ok(None)
    }
}

/// A byte-stream transport: a listener that accepts connections, and
/// connections that carry one (not multiplexed) or many streams.
///
/// Every method may be called from any runtime task; `Clone` must be cheap.
pub trait Transport: Clone + Send + Sync + 'static {
    /// A bound listener.
    type Listener: Send + 'static;
    /// An accepted connection before its handshake.
    type Incoming: Send + 'static;
    /// An established connection (either side).
    type Conn: Send + 'static;
    /// One session's byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// See [`Contender::name`].
    fn name(&self) -> String;
    /// See [`Contender::cipher`].
    fn cipher(&self) -> Option<Cipher>;
    /// Whether one connection carries many streams; if not, `open_stream` and
    /// `accept_stream` yield the connection itself, once.
    fn multiplexed(&self) -> bool;

    /// A listener on loopback and its address.
    fn listen(&self) -> impl Future<Output = Res<(Self::Listener, SocketAddr)>> + Send;
    /// The next inbound connection, before its handshake.
    fn accept(&self, l: &mut Self::Listener) -> impl Future<Output = Res<Self::Incoming>> + Send;
    /// Server side of the handshake.
    fn establish(&self, inc: Self::Incoming) -> impl Future<Output = Res<Self::Conn>> + Send;
    /// Next stream opened by the peer; `None` once the connection is closed.
    fn accept_stream(
        &self,
        c: &mut Self::Conn,
    ) -> impl Future<Output = Res<Option<Self::Stream>>> + Send;

    /// Client side: connect and handshake.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = Res<Self::Conn>> + Send;
    /// Client side: a new stream on `c` (the connection itself if not
    /// multiplexed).
    fn open_stream(&self, c: &mut Self::Conn) -> impl Future<Output = Res<Self::Stream>> + Send;

    /// Client side: connect, handshake and a first stream, as fast as the
    /// transport allows (the set-up workload). Default: `connect`, then
    /// `open_stream`; a transport that can open the stream during the
    /// handshake overrides it.
    fn connect_and_open(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = Res<(Self::Conn, Self::Stream)>> + Send {
        async move {
            let mut c = self.connect(addr).await?;
            let s = self.open_stream(&mut c).await?;
            Ok((c, s))
        }
    }

    /// Largest idle-session count worth running (`None`: no limit).
    fn idle_limit(&self) -> Option<usize> {
        None
    }

    /// The same transport with room for `n` concurrent streams on one
    /// connection (for the idle workload only; stream-count limits only).
    fn with_session_limit(&self, _n: usize) -> Res<Self> {
        Ok(self.clone())
    }

    /// Opens `n` streams and writes (and flushes) `first` on each, so the
    /// peer sees them. Default: one after the other; a transport whose open
    /// waits for the peer overrides it to pipeline the opens.
    fn open_many(
        &self,
        c: &mut Self::Conn,
        n: usize,
        first: &'static [u8],
    ) -> impl Future<Output = Res<Vec<Self::Stream>>> + Send {
        async move {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let mut s = self.open_stream(c).await?;
                s.write_all(first).await?;
                s.flush().await?;
                v.push(s);
            }
            Ok(v)
        }
    }
}

/// How `conns` connections with `per_conn` sessions each are shown.
pub fn shape_label(conns: usize, per_conn: usize, multiplexed: bool) -> String {
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    if multiplexed {
        format!(
            "{} × {}",
            plural(conns, "conn", "conns"),
            plural(per_conn, "stream", "streams")
        )
    } else {
        plural(conns, "conn", "conns")
    }
}

/// Make a [`Contender`] out of a [`Transport`].
pub fn streamed<T: Transport>(t: T) -> Box<dyn Contender> {
    Box::new(Streamed(t))
}

struct Streamed<T>(T);

/// Server for one workload run; stops accepting when dropped.
struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn start_server<T: Transport>(t: &T) -> Res<(Server, SocketAddr)> {
    let (mut listener, addr) = t.listen().await?;
    let t = t.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok(inc) = t.accept(&mut listener).await else {
                return;
            };
            let t = t.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = t.establish(inc).await else {
                    return;
                };
                while let Ok(Some(stream)) = t.accept_stream(&mut conn).await {
                    tokio::spawn(async move {
                        // A peer that goes away mid-workload is the client's
                        // problem to report, not the server's.
                        let _ = serve_stream(stream).await;
                    });
                }
            });
        }
    });
    Ok((Server(task), addr))
}

/// Opcode (the first byte a client writes on a stream): a bulk sink that
/// answers the byte count (8 bytes, little endian) at end of stream.
pub const OP_BULK: u8 = b'B';
/// Opcode: echo every byte until end of stream.
pub const OP_ECHO: u8 = b'E';
/// Idle workload: the server answers this byte once, then holds the stream.
pub const OP_IDLE: u8 = b'I';

/// The server side of every stream: dispatches on the opcode.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Res<()> {
    let mut op = [0u8; 1];
    s.read_exact(&mut op).await?;
    let mut buf = vec![0u8; READ_BUF];
    match op[0] {
        OP_BULK => {
            let mut total = 0u64;
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            s.write_all(&total.to_le_bytes()).await?;
        }
        OP_ECHO => loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await?;
            s.flush().await?;
        },
        other => return Err(format!("unknown opcode {other}").into()),
    }
    s.shutdown().await?;
    Ok(())
}

async fn send_bulk<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    bytes: u64,
    data: Arc<Vec<u8>>,
) -> Res<()> {
    s.write_all(&[OP_BULK]).await?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(data.len(), |l| l.min(data.len()));
        s.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).await?;
    let got = u64::from_le_bytes(ack);
    if got != bytes {
        return Err(format!("server received {got} bytes, sent {bytes}").into());
    }
    Ok(())
}

/// Payload pattern: not all zeros, not trivially compressible.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `f`, failed if it takes longer than the workload time-out (15 min).
pub async fn within<F: Future<Output = Res<R>>, R>(f: F) -> Res<R> {
    tokio::time::timeout(WORKLOAD_TIMEOUT, f)
        .await
        .map_err(|_| format!("workload timed out after {WORKLOAD_TIMEOUT:?}"))?
}

impl<T: Transport> Contender for Streamed<T> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn cipher(&self) -> Option<Cipher> {
        self.0.cipher()
    }

    fn bulk(
        &self,
        rt: &Runtime,
        payload: u64,
        shape: Shape,
        write_size: usize,
    ) -> Res<Option<Bulk>> {
        let t = &self.0;
        rt.block_on(within(async {
            let (_server, addr) = start_server(t).await?;
            let (conns_n, per_conn) = if t.multiplexed() {
                (shape.conns.max(1), shape.sessions.max(1))
            } else {
                // One connection per session.
                (shape.conns.max(1) * shape.sessions.max(1), 1)
            };
            let sessions = conns_n * per_conn;
            let per = payload / sessions as u64;
            let mut conns = Vec::with_capacity(conns_n);
            let mut streams = Vec::with_capacity(sessions);
            for _ in 0..conns_n {
                let mut c = t.connect(addr).await?;
                for _ in 0..per_conn {
                    streams.push(t.open_stream(&mut c).await?);
                }
                conns.push(c);
            }
            let mode = shape_label(conns_n, per_conn, t.multiplexed());
            let data = Arc::new(pattern(write_size.max(1)));
            let start = Instant::now();
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|s| tokio::spawn(send_bulk(s, per, data.clone())))
                .collect();
            for task in tasks {
                task.await??;
            }
            let elapsed = start.elapsed();
            drop(conns);
            Ok(Some(Bulk {
                elapsed,
                bytes: per * sessions as u64,
                mode,
            }))
        }))
    }

    fn echo(&self, rt: &Runtime, rounds: usize) -> Res<Vec<Duration>> {
        let t = &self.0;
        rt.block_on(within(async {
            let (_server, addr) = start_server(t).await?;
            let mut c = t.connect(addr).await?;
            let mut s = t.open_stream(&mut c).await?;
            s.write_all(&[OP_ECHO]).await?;
            let mut lat = Vec::with_capacity(rounds);
            let mut byte = [0u8; 1];
            for i in 0..ECHO_WARMUP + rounds {
                let start = Instant::now();
                s.write_all(&[i as u8]).await?;
                s.flush().await?;
                s.read_exact(&mut byte).await?;
                let d = start.elapsed();
                if byte[0] != i as u8 {
                    return Err("echo returned the wrong byte".into());
                }
                if i >= ECHO_WARMUP {
                    lat.push(d);
                }
            }
            s.shutdown().await?;
            drop(s);
            drop(c);
            Ok(lat)
        }))
    }

    fn handshakes(&self, rt: &Runtime, n: usize) -> Res<Vec<Duration>> {
        let t = &self.0;
        rt.block_on(within(async {
            let (_server, addr) = start_server(t).await?;
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                let (c, mut s) = t.connect_and_open(addr).await?;
                s.write_all(&[OP_ECHO, 7]).await?;
                s.flush().await?;
                let mut byte = [0u8; 1];
                s.read_exact(&mut byte).await?;
                drop(s);
                drop(c);
                lat.push(start.elapsed());
            }
            Ok(lat)
        }))
    }

    fn idle(&self, rt: &Runtime, n: usize) -> Res<Option<Idle>> {
        idle_streamed(&self.0, rt, n)
    }
}

/// Reads the idle opcode and answers it; the stream is then held idle.
async fn idle_ack<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Res<S> {
    let mut op = [0u8; 1];
    s.read_exact(&mut op).await?;
    if op[0] != OP_IDLE {
        return Err(format!("unexpected opcode {}", op[0]).into());
    }
    s.write_all(&[OP_IDLE]).await?;
    s.flush().await?;
    Ok(s)
}

/// Server of the idle workload: one connection, `held.capacity()` streams,
/// each answered once and kept (no task per stream) until `stop`.
async fn idle_server<T: Transport>(
    t: T,
    mut listener: T::Listener,
    mut held: Vec<T::Stream>,
    done: tokio::sync::oneshot::Sender<()>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Res<()> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let n = held.capacity();
    let inc = t.accept(&mut listener).await?;
    let mut conn = t.establish(inc).await?;
    let mut pending = FuturesUnordered::new();
    let mut accepting = true;
    while held.len() < n {
        tokio::select! {
            s = t.accept_stream(&mut conn), if accepting => match s? {
                Some(s) => pending.push(idle_ack(s)),
                None => accepting = false,
            },
            Some(r) = pending.next(), if !pending.is_empty() => held.push(r?),
            else => return Err("connection closed before all idle streams arrived".into()),
        }
    }
    drop(pending);
    let _ = done.send(());
    let _ = stop.await;
    drop(held);
    drop(conn);
    drop(listener);
    Ok(())
}

/// Lets background tasks (handshake completion, acks, the teardown of an
/// earlier workload) finish before the heap is read: waits until the live
/// heap moves by less than 16 KiB over 100 ms (at most 10 s).
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = crate::heap::snapshot().bytes;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = crate::heap::snapshot().bytes;
        if (now - last).abs() < 16 * 1024 || Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

/// [`settle`] for threads outside the runtime.
pub fn settle_blocking() {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = crate::heap::snapshot().bytes;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = crate::heap::snapshot().bytes;
        if (now - last).abs() < 16 * 1024 || Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

fn heap_delta(a: crate::heap::Heap, b: crate::heap::Heap) -> crate::heap::Heap {
    crate::heap::Heap {
        bytes: b.bytes - a.bytes,
        allocs: b.allocs - a.allocs,
    }
}

/// Idle workload for any multiplexed [`Transport`].
pub fn idle_streamed<T: Transport>(t: &T, rt: &Runtime, n: usize) -> Res<Option<Idle>> {
    if !t.multiplexed() || t.idle_limit().is_some_and(|l| n > l) {
        return Ok(None);
    }
    if !crate::heap::active() {
        return Err(
            "the idle workload needs astral_bench::heap::Counting as the global allocator".into(),
        );
    }
    let t = t.with_session_limit(n)?;
    rt.block_on(within(async move {
        let (listener, addr) = t.listen().await?;
        // The server's handle vector is counted like the client's.
        let held: Vec<T::Stream> = Vec::with_capacity(n);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        settle().await;
        let before = crate::heap::snapshot();
        let server = tokio::spawn(idle_server(t.clone(), listener, held, done_tx, stop_rx));
        let mut c = t.connect(addr).await?;
        settle().await;
        let mid = crate::heap::snapshot();
        let start = Instant::now();
        let mut streams = t.open_many(&mut c, n, &[OP_IDLE]).await?;
        let open = start.elapsed();
        let mut b = [0u8; 1];
        for s in &mut streams {
            s.read_exact(&mut b).await?;
        }
        let ready = start.elapsed();
        done_rx
            .await
            .map_err(|_| "idle server failed before holding every stream")?;
        settle().await;
        let after = crate::heap::snapshot();
        let _ = stop_tx.send(());
        drop(streams);
        drop(c);
        server.await??;
        // Handles the server holds sit in a vector allocated before `mid`:
        // count them like the client's.
        let handles = i64::try_from(n * std::mem::size_of::<T::Stream>()).unwrap_or(0);
        let mut heap = heap_delta(mid, after);
        heap.bytes += handles;
        let mut heap_with_conn = heap_delta(before, after);
        heap_with_conn.bytes += handles;
        Ok(Some(Idle {
            sessions: n,
            open,
            ready,
            heap,
            heap_with_conn,
        }))
    }))
}

/// Joins a read half and a write half into one stream (used for QUIC's
/// separate send and receive streams).
pub struct Duplex<R, W> {
    /// The receiving half.
    pub r: R,
    /// The sending half.
    pub w: W,
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Duplex<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().r).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Duplex<R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().w).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().w).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().w).poll_shutdown(cx)
    }
}
