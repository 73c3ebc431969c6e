//! The public, cloneable [`Node`] handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use astral_core::{
    CloseReason, Config, Event, Identity, NodeId, SessionId, SessionInfo, SessionState,
    StreamCloseReason, StreamId, StreamInfo,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{broadcast, oneshot};

use crate::conn::{tcp_abort, Conn, SharedTcp};
use crate::driver::{Backoff, Dial, Inner, Kill, TransportSlot};
use crate::error::{Error, Result};
use crate::session::{Incoming, IncomingQuery, Session};

/// Which side of the Noise handshake this node plays on a transport given to
/// [`Node::add_transport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We opened the transport and expect `NodeId` at the other end.
    Dial(NodeId),
    /// We accepted the transport; the peer's identity comes from the handshake.
    Accept,
}

/// An Astral node on Tokio: streams over TCP (or any byte transport),
/// sessions as `AsyncRead + AsyncWrite`, migration and recovery.
///
/// Cheap to clone: clones share one node. The node runs background tasks
/// (one per transport, a timer, one per listener) on the current Tokio
/// runtime until [`Node::shutdown`] or until the last clone is dropped.
///
/// ```no_run
/// use astral_tokio::{Node, Identity, Config};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # async fn demo(peer: astral_tokio::NodeId) -> Result<(), astral_tokio::Error> {
/// let node = Node::new(Identity::from_seed([7; 32]), Config::default()).unwrap();
/// node.connect(peer, "127.0.0.1:4000").await?;
/// let mut session = node.open_session(peer, "echo").await?;
/// session.write_all(b"hello").await?;
/// session.shutdown().await?; // half-close: the peer reads end-of-stream
/// let mut back = Vec::new();
/// session.read_to_end(&mut back).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    handle: Arc<Handle>,
}

/// Shuts the node down when the last `Node` clone goes.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        shutdown(&self.inner);
    }
}

fn shutdown(inner: &Arc<Inner>) {
    let first = inner.with(|sh, now| {
        if sh.closed {
            return false;
        }
        sh.closed = true;
        // Goodbye on every stream; each transport closes once it has
        // written its Goodbye (`StreamDown(Shutdown)` lingers, see
        // `dispatch`).
        sh.core.shutdown(now);
        if sh.transports.is_empty() {
            inner.all_closed.notify_waiters();
        }
        true
    });
    if !first {
        return;
    }
    // A transport that cannot take its Goodbye (a peer that stopped
    // reading, a blackholed path) is dropped after the linger bound.
    let linger = inner.clone();
    let abandon = move || {
        linger.with(|sh, _| {
            for t in sh.transports.values_mut() {
                if let Some(k) = t.kill.take() {
                    let _ = k.send(Kill::Core);
                }
            }
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                tokio::time::sleep(astral_core::driver::LINGER_TIMEOUT).await;
                abandon();
            });
        }
        Err(_) => abandon(),
    }
    let _ = inner.shutdown.send(true);
    // Queries nobody took hold the node alive: reject them now.
    if let Ok(mut rx) = inner.incoming.try_lock() {
        while rx.try_recv().is_ok() {}
    }
}

/// 256 bits from the OS for the core's generator (handshake ephemerals).
fn os_seed() -> [u8; 32] {
    let mut b = [0u8; 32];
    if let Err(e) = getrandom::getrandom(&mut b) {
        // Practically unreachable on supported systems; degrade loudly.
        tracing::warn!(%e, "no OS randomness: seeding from the clock");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    b
}

impl Node {
    /// A node with `identity` and the core `config`, seeded from the OS RNG.
    /// Must be called inside a Tokio runtime (it spawns the timer task).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use astral_tokio::{Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// println!("I am {}", node.id());
    /// # }
    /// ```
    ///
    /// Fails with [`Error::Config`] if `config` cannot work.
    pub fn new(identity: Identity, config: Config) -> Result<Node> {
        Ok(Node::from_core(astral_core::Node::with_seed_bytes(
            identity,
            config,
            os_seed(),
        )?))
    }

    /// Like [`Node::new`] with a given seed for the core's generator
    /// (stream and session ids, handshake ephemerals): for tests only.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use astral_tokio::{Node, Identity, Config};
    /// let node = Node::with_seed(Identity::from_seed([1; 32]), Config::default(), 42).unwrap();
    /// assert_eq!(node.id(), Identity::from_seed([1; 32]).node_id());
    /// # }
    /// ```
    pub fn with_seed(identity: Identity, config: Config, seed: u64) -> Result<Node> {
        Ok(Node::from_core(astral_core::Node::new(
            identity, config, seed,
        )?))
    }

    fn from_core(core: astral_core::Node) -> Node {
        let inner = Inner::new(core);
        tokio::spawn(inner.clone().timer_task());
        Node {
            handle: Arc::new(Handle { inner }),
        }
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// This node's identity.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use astral_tokio::{Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// assert_eq!(node.id().to_string().len(), 64);
    /// # }
    /// ```
    pub fn id(&self) -> NodeId {
        self.inner().local_id
    }

    /// Sets the redial backoff (default 100 ms doubling to 5 s); `None`
    /// turns redialing off. When a stream this node dialed dies and the peer
    /// has fewer streams than we dialed, the address is dialed again until a
    /// stream comes back (or the application closes the stream on purpose).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use astral_tokio::{Node, Identity, Config};
    /// # use std::time::Duration;
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// node.set_redial(Some((Duration::from_millis(50), Duration::from_secs(2))));
    /// node.set_redial(None);
    /// # }
    /// ```
    pub fn set_redial(&self, backoff: Option<(Duration, Duration)>) {
        self.inner()
            .with(|sh, _| sh.redial = backoff.map(|(min, max)| Backoff { min, max }));
    }

    /// Sets the connect timeout (default 10 s): how long [`Node::connect`]
    /// and each redial wait for the TCP connection, and how long
    /// [`Node::open`] waits for a first stream to a peer it has none to
    /// (while a dial or redial is under way) before it fails with
    /// [`Error::Unreachable`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use astral_tokio::{Node, Identity, Config};
    /// # use std::time::Duration;
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// node.set_connect_timeout(Duration::from_secs(3));
    /// # }
    /// ```
    pub fn set_connect_timeout(&self, timeout: Duration) {
        self.inner().with(|sh, _| sh.connect_timeout = timeout);
    }

    /// Listens for inbound TCP transports on `addr` (port 0 picks one) and
    /// returns the bound address. Call it as often as you like.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node) -> std::io::Result<()> {
    /// let addr = node.listen("127.0.0.1:0").await?;
    /// println!("listening on {addr}");
    /// # Ok(()) }
    /// ```
    pub async fn listen(&self, addr: impl ToSocketAddrs) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let inner = self.inner().clone();
        let mut shutdown = inner.shutdown.subscribe();
        if *shutdown.borrow() {
            return Err(std::io::Error::other("node shut down"));
        }
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((tcp, from)) => {
                            if let Err(e) = attach_tcp(&inner, tcp, Role::Accept, None) {
                                tracing::warn!(%from, %e, "refused inbound transport");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            }
        });
        Ok(local)
    }

    /// Dials `addr` over TCP and runs the handshake expecting `peer`: one
    /// more stream to that peer per call. Resolves once the stream is
    /// established and the peer has confirmed it (its first record arrived).
    /// The address is remembered and redialed if this stream dies.
    ///
    /// Errors: [`Error::Io`] if the TCP connection fails (refused,
    /// unreachable, or not established within the connect timeout, see
    /// [`Node::set_connect_timeout`]); [`Error::Handshake`] if the other end is not `peer`
    /// (it cannot decrypt our first message and hangs up) or the handshake
    /// times out.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node, peer: astral_tokio::NodeId) -> Result<(), astral_tokio::Error> {
    /// let s1 = node.connect(peer, "127.0.0.1:4000").await?;
    /// let s2 = node.connect(peer, "127.0.0.1:4000").await?; // a second, redundant stream
    /// assert_ne!(s1, s2);
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, peer: NodeId, addr: impl ToSocketAddrs) -> Result<StreamId> {
        let timeout = self.inner().with(|sh, _| {
            sh.connecting.push(peer);
            sh.connect_timeout
        });
        let tcp = tcp_connect(addr, timeout).await;
        self.inner().with(|sh, _| {
            if let Some(i) = sh.connecting.iter().position(|p| *p == peer) {
                sh.connecting.swap_remove(i);
            }
        });
        let tcp = tcp?;
        let addr = tcp.peer_addr()?;
        let dial = self.inner().with(|sh, _| {
            sh.dials.push(Dial {
                peer,
                addr,
                stream: None,
                active: true,
                redialing: false,
            });
            sh.dials.len() - 1
        });
        let r = dial_tcp(self.inner(), tcp, peer, Some(dial)).await;
        if r.is_err() {
            self.inner().with(|sh, _| sh.dials[dial].active = false);
        }
        r
    }

    /// Adds any byte transport (in-memory pipe, Unix socket, SOCKS/Tor
    /// stream…). With [`Role::Dial`] it resolves like [`Node::connect`];
    /// with [`Role::Accept`] once the handshake completes. Such transports
    /// are not redialed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), astral_tokio::Error> {
    /// use astral_tokio::{Node, Identity, Config, Role};
    /// let a = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// let b = Node::new(Identity::from_seed([2; 32]), Config::default()).unwrap();
    /// let (x, y) = tokio::io::duplex(1 << 16);
    /// let (sa, sb) = tokio::join!(a.add_transport(x, Role::Dial(b.id())), b.add_transport(y, Role::Accept));
    /// sa?; sb?;
    /// assert_eq!(a.peer_streams(b.id()).len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn add_transport<T>(&self, io: T, role: Role) -> Result<StreamId>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (stream, rx) = attach(self.inner(), io, None, role, None, None)?;
        wait_up(stream, rx, role).await
    }

    /// Adds a connected TCP socket as a transport, like
    /// [`Node::add_transport`] but keeping the TCP fast path (output written
    /// directly while the transport task is idle) and a real reset for
    /// [`Node::kill_transport`]. For applications that accept or dial TCP
    /// themselves (to see source addresses, or to dial through their own
    /// resolver). Not redialed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), astral_tokio::Error> {
    /// use astral_tokio::{Node, Identity, Config, Role};
    /// let a = Node::new(Identity::from_seed([1; 32]), Config::default())?;
    /// let b = Node::new(Identity::from_seed([2; 32]), Config::default())?;
    /// let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let dial = tokio::net::TcpStream::connect(l.local_addr()?).await?;
    /// let (accepted, from) = l.accept().await?;
    /// println!("transport from {from}");
    /// let (sa, sb) = tokio::join!(a.add_tcp(dial, Role::Dial(b.id())), b.add_tcp(accepted, Role::Accept));
    /// sa?; sb?;
    /// # Ok(()) }
    /// ```
    pub async fn add_tcp(&self, tcp: TcpStream, role: Role) -> Result<StreamId> {
        let (stream, rx) = attach_tcp(self.inner(), tcp, role, None)?;
        wait_up(stream, rx, role).await
    }

    /// Opens a session with `peer` for `query` and waits for the answer.
    /// The query goes out on the best stream to the peer, or, while a dial
    /// or redial to it is under way, on the first stream that comes up.
    ///
    /// Errors: [`Error::Rejected`] with the peer's code; [`Error::Unreachable`]
    /// at once if there is no stream to the peer and none is being set up
    /// (no dial or redial under way: like a socket's "no route to host"),
    /// or if none came up within the connect timeout
    /// ([`Node::set_connect_timeout`], default 10 s); [`Error::Timeout`] if
    /// the peer did not answer within the core's `routing_timeout`.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node, peer: astral_tokio::NodeId) -> Result<(), astral_tokio::Error> {
    /// match node.open_session(peer, "storage.read?id=7").await {
    ///     Ok(session) => println!("open: {}", session.id()),
    ///     Err(astral_tokio::Error::Rejected { code, .. }) => println!("rejected: {code}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn open_session(&self, peer: NodeId, query: &str) -> Result<Session> {
        let inner = self.inner().clone();
        let (id, wait_for_stream) = inner.with(|sh, now| {
            let linked = !sh.core.peer_streams(peer).is_empty();
            if !linked && !stream_coming(sh, peer) {
                return Err(Error::Unreachable(peer));
            }
            let id = sh.core.open_session(now, peer, query)?;
            Ok((id, (!linked).then_some(sh.connect_timeout)))
        })?;
        // Until the answer, a dropped future resets the session.
        let session = Session::new(inner.clone(), id, peer);
        if let Some(timeout) = wait_for_stream {
            // No stream yet: bound the wait for one by the connect timeout.
            let up = wait_for_stream_to(&inner, peer, id);
            if tokio::time::timeout(timeout, up).await.is_err() {
                inner.with(|sh, now| {
                    if let Some(h) = sh.core.session(id) {
                        h.reset(now);
                    }
                });
                return Err(Error::Unreachable(peer));
            }
        }
        // The pending open parks as the session's reader: SessionOpen and
        // SessionClosed wake it.
        let answer = std::future::poll_fn(|cx| {
            inner.peek_mut(|sh| match sh.core.session(id).map(|h| h.state()) {
                Some(SessionState::Routing) => {
                    sh.sessions.park_read(id, cx);
                    Poll::Pending
                }
                Some(_) => Poll::Ready(Ok(())),
                None => Poll::Ready(Err(sh
                    .sessions
                    .closed(id)
                    .cloned()
                    .unwrap_or(CloseReason::Graceful))),
            })
        })
        .await;
        match answer {
            Ok(()) => Ok(session),
            Err(reason) => {
                let unreachable = inner.peek(|sh| sh.core.peer_streams(peer).is_empty());
                Err(match reason {
                    CloseReason::Rejected(code) => Error::Rejected { peer, code },
                    CloseReason::RoutingTimeout if unreachable => Error::Unreachable(peer),
                    CloseReason::RoutingTimeout => Error::Timeout(peer),
                    CloseReason::PeerUnreachable => Error::Unreachable(peer),
                    r => Error::SessionClosed(r),
                })
            }
        }
    }

    /// The queries peers send us, to accept or reject. Several `Incoming`
    /// may exist; each query goes to exactly one of them. A query nobody
    /// takes is answered by the core with a timeout after `routing_timeout`.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node) {
    /// let mut incoming = node.incoming();
    /// while let Some(q) = incoming.next().await {
    ///     if q.query() == "echo" {
    ///         let session = q.accept().unwrap();
    ///         tokio::spawn(async move {
    ///             let (mut r, mut w) = tokio::io::split(session);
    ///             let _ = tokio::io::copy(&mut r, &mut w).await;
    ///         });
    ///     } else {
    ///         q.reject(astral_core::codes::NO_SUCH_SERVICE);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn incoming(&self) -> Incoming {
        Incoming::new(self.inner().clone())
    }

    /// The next inbound query (shorthand for `incoming().next()`).
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node) {
    /// if let Some(q) = node.next_query().await {
    ///     println!("{} asks {:?}", q.peer(), q.query());
    /// }
    /// # }
    /// ```
    pub async fn next_query(&self) -> Option<IncomingQuery> {
        self.incoming().next().await
    }

    /// Moves `session` onto `stream` (another stream with the same peer)
    /// without pausing writes; an [`Event::Migrated`] follows.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, s: astral_tokio::SessionId, t: astral_tokio::StreamId) {
    /// node.migrate(s, t).expect("migration refused");
    /// # }
    /// ```
    pub fn migrate(&self, session: SessionId, stream: StreamId) -> Result<()> {
        self.inner()
            .with(|sh, now| sh.core.migrate(now, session, stream))
            .map_err(Error::from)
    }

    /// Moves every session off `stream`, then closes it gracefully; returns
    /// how many sessions moved. The stream is not redialed.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, t: astral_tokio::StreamId) {
    /// let moved = node.drain_stream(t).unwrap();
    /// println!("{moved} sessions moved");
    /// # }
    /// ```
    pub fn drain_stream(&self, stream: StreamId) -> Result<usize> {
        self.inner().with(|sh, now| {
            let n = sh.core.drain_stream(now, stream)?;
            forget_dial(sh, stream);
            Ok(n)
        })
    }

    /// Closes `stream` now; its sessions resume on other streams to the
    /// peer. The stream is not redialed.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, t: astral_tokio::StreamId) {
    /// node.close_stream(t).unwrap();
    /// # }
    /// ```
    pub fn close_stream(&self, stream: StreamId) -> Result<()> {
        self.inner().with(|sh, now| {
            sh.core.stream_info(stream).ok_or(Error::UnknownStream)?;
            forget_dial(sh, stream);
            sh.core.close_stream(now, stream);
            Ok(())
        })
    }

    /// Breaks a stream's transport under the node, as a network failure
    /// would: the socket is reset (TCP: `SO_LINGER` 0) without telling the
    /// core first; the core then sees a transport failure and its sessions
    /// recover on other streams. For tests and demos. Returns whether the
    /// stream had a live transport.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, t: astral_tokio::StreamId) {
    /// assert!(node.kill_transport(t));
    /// # }
    /// ```
    pub fn kill_transport(&self, stream: StreamId) -> bool {
        self.inner().with(|sh, _| {
            sh.transports
                .get_mut(&stream)
                .and_then(|t| t.kill.take())
                .is_some_and(|k| k.send(Kill::Abort).is_ok())
        })
    }

    /// Snapshots of every stream (handshaking and established).
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node) {
    /// for s in node.streams() {
    ///     println!("{} {:?} rtt {:?}", s.id, s.peer, s.rtt.srtt);
    /// }
    /// # }
    /// ```
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.inner().peek(|sh| sh.core.streams().collect())
    }

    /// Snapshots of every live session.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node) {
    /// for s in node.sessions() {
    ///     println!("{} {:?} on {:?}", s.id, s.state, s.send_stream);
    /// }
    /// # }
    /// ```
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner().peek(|sh| sh.core.sessions().collect())
    }

    /// Snapshot of one session.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, s: astral_tokio::SessionId) {
    /// if let Some(info) = node.session_info(s) { println!("{:?}", info.stats); }
    /// # }
    /// ```
    pub fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        self.inner().peek(|sh| sh.core.session_info(session))
    }

    /// Established streams to `peer`.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, p: astral_tokio::NodeId) {
    /// println!("{} streams", node.peer_streams(p).len());
    /// # }
    /// ```
    pub fn peer_streams(&self, peer: NodeId) -> Vec<StreamId> {
        self.inner().peek(|sh| sh.core.peer_streams(peer))
    }

    /// Subscribes to the node's events: streams up/down, linked/unlinked,
    /// queries, sessions open/closed (with reason), migrated, recovering,
    /// recovered. `Readable`/`Writable` are not broadcast (sessions handle
    /// them). A subscriber that falls more than 4096 events behind gets
    /// `RecvError::Lagged`.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node) {
    /// let mut events = node.events();
    /// while let Ok(ev) = events.recv().await {
    ///     if let astral_tokio::Event::Recovered { session, resent_bytes } = ev {
    ///         println!("{session} recovered, {resent_bytes} bytes resent");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner().events.subscribe()
    }

    /// Leaves gracefully and stops the node's tasks: every peer is told
    /// (a Goodbye on each stream, see [`astral_core::Node::shutdown`]), so
    /// its sessions with this node end at once with
    /// [`CloseReason::PeerShutdown`]; here they end with
    /// [`CloseReason::Shutdown`] (reads and writes fail with
    /// `ConnectionAborted`). Each transport closes once its Goodbye is
    /// written, or after 2 s ([`astral_core::driver::LINGER_TIMEOUT`]) if it
    /// takes nothing; [`Node::closed`] waits for that. Returns at once.
    /// Bytes not yet delivered are lost: to deliver them, shut the sessions
    /// down and wait for them to end first. Dropping the last clone of the
    /// node does the same.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use astral_tokio::{Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// node.shutdown();
    /// node.closed().await;
    /// # }
    /// ```
    pub fn shutdown(&self) {
        shutdown(self.inner());
    }

    /// Resolves once the node was shut down ([`Node::shutdown`]) and every
    /// transport is closed (its Goodbye written, or abandoned after the
    /// linger bound). A process that exits right after `shutdown` should
    /// wait for this first, so the peers learn that it left.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node) {
    /// node.shutdown();
    /// let _ = tokio::time::timeout(std::time::Duration::from_secs(3), node.closed()).await;
    /// # }
    /// ```
    pub async fn closed(&self) {
        let inner = self.inner();
        loop {
            let notified = inner.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if inner.peek(|sh| sh.closed && sh.transports.is_empty()) {
                return;
            }
            notified.await;
        }
    }
}

/// Whether a stream to `peer` may come up soon: a `connect` to it is under
/// way, a handshake with it is in progress, or a dial to it is active (a
/// redial after its stream died).
fn stream_coming(sh: &crate::driver::Shared, peer: NodeId) -> bool {
    sh.connecting.contains(&peer)
        || sh.core.streams().any(|s| s.peer == Some(peer))
        || sh
            .dials
            .iter()
            .any(|d| d.peer == peer && d.active && d.redialing)
}

/// Resolves once `peer` has an established stream, or the session `id` is
/// gone (closed for another reason: the answer then says why).
async fn wait_for_stream_to(inner: &Arc<Inner>, peer: NodeId, id: SessionId) {
    let mut events = inner.events.subscribe();
    loop {
        let ready = inner.peek(|sh| {
            !sh.core.peer_streams(peer).is_empty() || sh.core.session_info(id).is_none()
        });
        if ready {
            return;
        }
        match events.recv().await {
            // Lagged: look again.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A TCP connection bounded by `timeout`.
async fn tcp_connect(addr: impl ToSocketAddrs, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("TCP connection not established within {timeout:?}"),
        )),
    }
}

fn forget_dial(sh: &mut crate::driver::Shared, stream: StreamId) {
    if let Some(d) = sh.transports.get(&stream).and_then(|t| t.dial) {
        sh.dials[d].active = false;
    }
}

type UpRx = oneshot::Receiver<Result<NodeId, StreamCloseReason>>;

fn attach_tcp(
    inner: &Arc<Inner>,
    tcp: TcpStream,
    role: Role,
    dial: Option<usize>,
) -> Result<(StreamId, UpRx)> {
    let _ = tcp.set_nodelay(true);
    let (tcp, direct) = SharedTcp::new(tcp);
    attach(inner, tcp, Some(tcp_abort), role, dial, Some(direct))
}

/// Registers a transport with the core and spawns its task.
fn attach<T>(
    inner: &Arc<Inner>,
    io: T,
    abort: Option<fn(&mut T)>,
    role: Role,
    dial: Option<usize>,
    direct: Option<crate::conn::DirectTcp>,
) -> Result<(StreamId, UpRx)>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (up_tx, up_rx) = oneshot::channel();
    let (kill_tx, kill_rx) = oneshot::channel();
    let stream = inner.with(|sh, now| {
        if sh.closed {
            return Err(Error::Shutdown);
        }
        let stream = match role {
            Role::Dial(peer) => sh.core.connect(now, peer)?,
            Role::Accept => sh.core.accept(now)?,
        };
        sh.transports.insert(
            stream,
            TransportSlot {
                waker: None,
                kill: Some(kill_tx),
                connect: Some(up_tx),
                dial,
                direct,
                pending: bytes::BytesMut::new(),
                direct_ok: false,
                defer: false,
            },
        );
        Ok(stream)
    })?;
    tokio::spawn(Conn::new(io, abort, inner.clone(), stream, kill_rx));
    Ok((stream, up_rx))
}

async fn wait_up(stream: StreamId, rx: UpRx, role: Role) -> Result<StreamId> {
    match rx.await {
        Ok(Ok(_)) => Ok(stream),
        Ok(Err(reason)) => match role {
            Role::Dial(peer) => Err(Error::Handshake {
                peer,
                reason: explain(reason),
            }),
            Role::Accept => Err(Error::Io(std::io::Error::other(format!(
                "inbound handshake failed: {reason}"
            )))),
        },
        Err(_) => Err(Error::Shutdown),
    }
}

/// A listener hangs up during the handshake when it cannot decrypt our
/// first message (its identity is not the one we dialed), when its policy
/// refuses our identity, or when it is busy (too many handshakes at once):
/// the Noise pattern gives the dialer no way to tell these apart.
fn explain(reason: StreamCloseReason) -> StreamCloseReason {
    match reason {
        StreamCloseReason::TransportClosed(why) => StreamCloseReason::TransportClosed(format!(
            "{why} during the handshake: the listener hung up (a wrong peer id, \
             a listener that does not allow us, or a busy listener)"
        )),
        r => r,
    }
}

async fn dial_tcp(
    inner: &Arc<Inner>,
    tcp: TcpStream,
    peer: NodeId,
    dial: Option<usize>,
) -> Result<StreamId> {
    let (stream, rx) = attach_tcp(inner, tcp, Role::Dial(peer), dial)?;
    wait_up(stream, rx, Role::Dial(peer)).await
}

/// Redials a remembered address with exponential backoff until a stream
/// comes back, the dial is retired, or the node shuts down.
pub(crate) async fn redial(inner: Arc<Inner>, d: usize, backoff: Backoff) {
    let mut delay = backoff.min;
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(backoff.max);
        let (peer, addr, go) = inner.with(|sh, _| {
            let (peer, addr, active) = (sh.dials[d].peer, sh.dials[d].addr, sh.dials[d].active);
            let wanted = sh
                .dials
                .iter()
                .filter(|x| x.peer == peer && x.active)
                .count();
            let have = sh.core.peer_streams(peer).len();
            let stop = !active || sh.closed;
            if stop {
                sh.dials[d].redialing = false;
            }
            (peer, addr, if stop { None } else { Some(have < wanted) })
        });
        match go {
            None => return,
            Some(false) => continue,
            Some(true) => {}
        }
        tracing::debug!(%peer, %addr, "redialing");
        let timeout = inner.peek(|sh| sh.connect_timeout);
        let Ok(tcp) = tcp_connect(addr, timeout).await else {
            continue;
        };
        match dial_tcp(&inner, tcp, peer, Some(d)).await {
            Ok(stream) => {
                tracing::debug!(%peer, %stream, "redialed");
                // If the new stream died already, keep going.
                let done = inner.with(|sh, _| {
                    let done = sh.dials[d].stream.is_some();
                    if done {
                        sh.dials[d].redialing = false;
                    }
                    done
                });
                if done {
                    return;
                }
            }
            Err(e) => tracing::debug!(%peer, %e, "redial failed"),
        }
    }
}
