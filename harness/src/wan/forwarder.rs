//! The delaying TCP forwarder: listens on an address, and for each accepted
//! connection opens one to the target and carries bytes both ways through
//! an emulated [`Link`] per direction (delay, jitter, rate, bounded queue,
//! blackhole), changeable at run time through its [`PathControl`].
//!
//! It is split TCP: each end talks to the forwarder over loopback, so each
//! end's own TCP sees a near-zero RTT and an instant ACK clock. What reaches
//! the far end is delayed, paced and queued as on the emulated path, and
//! end-to-end mechanisms above TCP (astral's session credit, a request/
//! response protocol, keep-alives, RTT estimates from pings) see the
//! emulated path; the endpoints' TCP congestion control and receive windows
//! do not (use the TUN bridge for those). See `docs/HARNESS.md`.
//!
//! Per direction:
//! * bytes are read from the sender in chunks of at most 16 KiB, and only
//!   while the bottleneck queue has room: a full queue stops reading, and the
//!   sender's socket buffer then fills (backpressure, queueing delay);
//! * the forwarder's sockets have small kernel receive buffers
//!   ([`SOCKET_RCVBUF`], or the one given to
//!   [`Forwarder::start_with_rcvbuf`]), so bytes waiting ahead of the
//!   emulated bottleneck are the queue's, not megabytes of autotuned socket
//!   buffer that no real path has (the sender's own send buffer is the
//!   sender's);
//! * end-of-stream (FIN) travels through the link like data, so a
//!   half-close arrives after the delay and after every byte before it;
//! * a reset from one end (or a write error toward it) resets both ends;
//!   a reset read from the sender travels through the link first;
//! * `blackhole on` holds bytes without closing anything (no FIN, no RST);
//!   `blackhole drop` discards them; `partition` holds both directions;
//!   `reset` resets every connection now.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::wan::command::PathParams;
use crate::wan::link::{Link, LinkMode, LinkParams, LinkStats};
use crate::wan::path::{PathControl, PathKind, PathStats};

/// Largest chunk read from a socket at once: small enough that pacing at a
/// few Mbit/s stays smooth, large enough for Gbit/s on loopback.
const CHUNK: usize = 16 << 10;

/// What travels through a forwarder's link.
enum Segment {
    Data(Bytes),
    Fin,
    Reset,
}

/// A running forwarder. Dropping it stops accepting and resets every
/// forwarded connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use astral_harness::wan::{Forwarder, LinkParams, PathParams};
/// use std::time::Duration;
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let fwd = Forwarder::start(
///     "127.0.0.1:0",
///     server.local_addr()?,
///     PathParams::symmetric(LinkParams::with_delay(Duration::from_millis(25))),
/// ).await?;
/// // Dial fwd.local_addr() instead of the server: RTT 50 ms.
/// fwd.path().apply("rate 8mbit").unwrap();
/// # let _ = fwd.local_addr(); Ok(()) }
/// ```
pub struct Forwarder {
    local: SocketAddr,
    target: SocketAddr,
    path: PathControl,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Forwarder {
    /// Listens on `listen` and forwards every connection to `target` through
    /// a path with `params`.
    pub async fn start(
        listen: impl ToSocketAddrs,
        target: SocketAddr,
        params: PathParams,
    ) -> io::Result<Forwarder> {
        let path = PathControl::new(PathKind::Forwarder, params);
        Forwarder::start_with(listen, target, path, 0).await
    }

    /// Like [`Forwarder::start`] with an existing path handle (several
    /// forwarders may share one path: one set of parameters and counters)
    /// and a seed for the jitter.
    pub async fn start_with(
        listen: impl ToSocketAddrs,
        target: SocketAddr,
        path: PathControl,
        seed: u64,
    ) -> io::Result<Forwarder> {
        Forwarder::start_with_rcvbuf(listen, target, path, seed, SOCKET_RCVBUF).await
    }

    /// Like [`Forwarder::start_with`] with `rcvbuf` as the `SO_RCVBUF` of
    /// its sockets instead of [`SOCKET_RCVBUF`]: a smaller one leaves less
    /// queue ahead of the emulated bottleneck that no real path has (the
    /// kernel doubles it, and its minimum is about 2 KiB).
    pub async fn start_with_rcvbuf(
        listen: impl ToSocketAddrs,
        target: SocketAddr,
        path: PathControl,
        seed: u64,
        rcvbuf: u32,
    ) -> io::Result<Forwarder> {
        let listener = bind_small(listen, rcvbuf).await?;
        let local = listener.local_addr()?;
        let (stop, _) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            path.clone(),
            stop.clone(),
            seed,
            rcvbuf,
        ));
        Ok(Forwarder {
            local,
            target,
            path,
            stop,
            accept,
        })
    }

    /// The address to dial instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where connections go.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The path's controls (parameters, counters, commands).
    pub fn path(&self) -> &PathControl {
        &self.path
    }

    /// Shorthand for `path().stats()`.
    pub fn stats(&self) -> PathStats {
        self.path.stats()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
        self.stop.send_replace(true);
    }
}

/// `SO_RCVBUF` of the forwarder's sockets (the kernel doubles it for its
/// bookkeeping): what a sender may have in flight toward the forwarder
/// beyond the emulated queue. Linux autotunes an unset receive buffer up
/// to `net.ipv4.tcp_rmem` (6 MiB by default), which at 8 Mbit/s would be
/// six seconds of queueing that no router on the emulated path holds.
pub const SOCKET_RCVBUF: u32 = 64 * 1024;

/// A listener whose accepted sockets inherit `rcvbuf` as `SO_RCVBUF` (set
/// before `listen`, so the window scale fits it).
async fn bind_small(listen: impl ToSocketAddrs, rcvbuf: u32) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_recv_buffer_size(rcvbuf)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(1024),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

/// Connects to `target` with `rcvbuf` as `SO_RCVBUF`.
async fn connect_small(target: SocketAddr, rcvbuf: u32) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_recv_buffer_size(rcvbuf)?;
    socket.connect(target).await
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    path: PathControl,
    stop: watch::Sender<bool>,
    seed: u64,
    rcvbuf: u32,
) {
    let mut n: u64 = 0;
    loop {
        let (client, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait and go on.
                tracing::warn!(%e, "forwarder accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        n += 1;
        path.add_stats(|s| {
            s.connections += 1;
            s.open_connections += 1;
        });
        let conn_seed = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (path, stop) = (path.clone(), stop.subscribe());
        tokio::spawn(async move {
            if let Err(e) = forward(client, target, &path, stop, conn_seed, rcvbuf).await {
                tracing::debug!(%from, %e, "forwarded connection ended");
            }
            path.add_stats(|s| s.open_connections -= 1);
        });
    }
}

async fn forward(
    client: TcpStream,
    target: SocketAddr,
    path: &PathControl,
    stop: watch::Receiver<bool>,
    seed: u64,
    rcvbuf: u32,
) -> io::Result<()> {
    let server = match connect_small(target, rcvbuf).await {
        Ok(s) => s,
        Err(e) => {
            // As a refused connection looks to a dialer: a reset.
            let _ = client.set_zero_linger();
            return Err(e);
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction may end the connection with a reset: it sets zero
    // linger on both sockets and tells the other direction to stop.
    let (abort_tx, abort_rx) = watch::channel(false);
    let up = Pump {
        src: cr,
        dst: sw,
        path: path.clone(),
        up: true,
        abort: abort_tx.clone(),
        stop: stop.clone(),
    };
    let down = Pump {
        src: sr,
        dst: cw,
        path: path.clone(),
        up: false,
        abort: abort_tx,
        stop,
    };
    let (a, b) = tokio::join!(up.run(seed, abort_rx.clone()), down.run(seed ^ 1, abort_rx));
    a.and(b)
}

/// One direction of one forwarded connection.
struct Pump {
    src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    path: PathControl,
    up: bool,
    abort: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
}

/// Resets both sockets of the connection (zero linger, then close) and
/// tells the other direction to stop.
fn reset_both(src: &OwnedReadHalf, dst: OwnedWriteHalf, abort: &watch::Sender<bool>) -> io::Error {
    let _ = src.as_ref().set_zero_linger();
    let _ = dst.as_ref().set_zero_linger();
    abort.send_replace(true);
    // No FIN from the write half: the close after zero linger is a RST.
    dst.forget();
    io::ErrorKind::ConnectionReset.into()
}

impl Pump {
    async fn run(self, seed: u64, mut abort_rx: watch::Receiver<bool>) -> io::Result<()> {
        let Pump {
            mut src,
            mut dst,
            path,
            up,
            abort,
            mut stop,
        } = self;
        let pick = |p: &PathParams| -> LinkParams {
            if up {
                p.up.clone()
            } else {
                p.down.clone()
            }
        };
        let mut params = path.subscribe();
        let mut resets = path.resets();
        let first = pick(&params.borrow_and_update());
        let mut link: Link<Segment> = Link::new(LinkMode::Stream, first, Instant::now(), seed);
        let mut reported = LinkStats::default();
        let report =
            |link: &Link<Segment>, last: &mut LinkStats| path.report_link(up, link.stats(), last);
        let mut buf = BytesMut::new();
        let mut pending: Option<Bytes> = None;
        let mut reading = true;
        loop {
            let now = Instant::now();
            // Hand over what has arrived, one chunk at a time (the writer
            // holds at most one).
            while pending.is_none() {
                match link.poll_deliver(now) {
                    Some(Segment::Data(b)) => pending = Some(b),
                    Some(Segment::Fin) => {
                        let _ = dst.shutdown().await;
                        report(&link, &mut reported);
                        // Done. Dropping our halves is harmless: the read
                        // half's peer already sent FIN, the write half is
                        // shut down; the other direction keeps the sockets.
                        return Ok(());
                    }
                    Some(Segment::Reset) => {
                        report(&link, &mut reported);
                        return Err(reset_both(&src, dst, &abort));
                    }
                    None => break,
                }
            }
            report(&link, &mut reported);
            let room = if reading {
                link.room(now).min(CHUNK)
            } else {
                0
            };
            let wake = if pending.is_none() {
                link.next_wakeup(now)
            } else {
                link.next_departure_at(now)
            };
            let sleep = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(tokio::time::Instant::from_std(w)).await,
                    None => std::future::pending().await,
                }
            };
            let write_buf = pending.clone();
            tokio::select! {
                r = async {
                    buf.resize(room, 0);
                    src.read(&mut buf[..]).await
                }, if room > 0 => {
                    let now = Instant::now();
                    let seg = match r {
                        Ok(0) => {
                            reading = false;
                            Segment::Fin
                        }
                        Ok(n) => {
                            buf.truncate(n);
                            Segment::Data(buf.split().freeze())
                        }
                        Err(_) => {
                            reading = false;
                            Segment::Reset
                        }
                    };
                    let len = match &seg { Segment::Data(b) => b.len(), _ => 0 };
                    // A dropping blackhole discards; otherwise room was checked.
                    let _ = link.offer(now, seg, len);
                }
                r = async {
                    match &write_buf {
                        Some(b) => dst.write(b).await,
                        None => std::future::pending().await,
                    }
                }, if write_buf.is_some() => match r {
                    Ok(n) if n > 0 => {
                        if let Some(b) = pending.as_mut() {
                            let _ = b.split_to(n);
                            if b.is_empty() {
                                pending = None;
                            }
                        }
                    }
                    // The receiver is gone: reset the sender too (a real
                    // path would carry that RST back after a delay).
                    _ => {
                        report(&link, &mut reported);
                        return Err(reset_both(&src, dst, &abort));
                    }
                },
                _ = sleep => {}
                r = params.changed() => {
                    if r.is_ok() {
                        let p = pick(&params.borrow_and_update());
                        link.set_params(Instant::now(), p);
                    }
                }
                _ = resets.recv() => {
                    report(&link, &mut reported);
                    return Err(reset_both(&src, dst, &abort));
                }
                _ = abort_rx.changed() => {
                    // The other direction reset the connection.
                    dst.forget();
                    return Err(io::ErrorKind::ConnectionReset.into());
                }
                _ = stop.changed() => {
                    report(&link, &mut reported);
                    let _ = reset_both(&src, dst, &abort);
                    return Ok(());
                }
            }
        }
    }
}
