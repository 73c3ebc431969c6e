//! The public, cloneable [`Node`] handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use astral_core::driver::{source_of, Backoff, DialId, Redialer};
use astral_core::{
    AcceptPolicy, AdmissionStats, CloseReason, Config, Event, Identity, MigrateError, NodeId,
    SessionId, SessionInfo, SessionState, Source, StreamCloseReason, StreamId, StreamInfo,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::sync::{broadcast, mpsc};

use crate::ctx::{Ctl, Kill, NodeCtx};
use crate::endpoint::EpDriver;
use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::session::{Incoming, IncomingQuery, Queries, Session};
use crate::transport::{attach, DialOf, Generic, Tcp, UpRx};

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

/// The parts of one node (tasks hold this; the last `Node` clone going
/// shuts them down through [`Handle`]).
pub(crate) struct Inner {
    ctx: Arc<NodeCtx>,
    ep: Arc<EpDriver>,
    queries: Arc<Queries>,
    local_id: NodeId,
    /// `Config::tcp_notsent_lowat`, set on every TCP stream.
    notsent_lowat: Option<u32>,
}

fn shutdown(inner: &Arc<Inner>) {
    let peers = inner.ep.with(|st, now| {
        if st.closed {
            return None;
        }
        st.closed = true;
        // Handshakes in progress are abandoned (their transports hang up).
        st.core.shutdown(now);
        for t in st.handshaking.values_mut() {
            if let Some(k) = t.kill.take() {
                let _ = k.send(Kill::Core);
            }
        }
        Some(st.peers.values().cloned().collect::<Vec<_>>())
    });
    let Some(peers) = peers else { return };
    // A Goodbye on every established stream: each transport closes once
    // it has written it (`StreamDown(Shutdown)` lingers, see
    // `TransportSlot::on_down`).
    for p in &peers {
        p.with(|ps, now| ps.engine.shutdown(now));
    }
    let _ = inner.ctx.shutdown.send_replace(true);
    if inner.ctx.all_closed() {
        inner.ctx.all_closed.notify_waiters();
    }
    for p in &peers {
        p.wake_timer();
    }
    inner.ep.timer.notify_one();
    // A transport that cannot take its Goodbye (a peer that stopped
    // reading, a blackholed path) is dropped after the linger bound.
    let abandon = move || {
        for p in &peers {
            p.peek(|ps| {
                for t in ps.transports.values_mut() {
                    if let Some(k) = t.kill.take() {
                        let _ = k.send(Kill::Core);
                    }
                }
            });
        }
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
    // Queries nobody took hold the node alive: reject them now.
    inner.queries.drain();
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
        Node::start(identity, config, os_seed())
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
        // The derivation of `astral_core::Node::new`: the same seed gives
        // the same node under every driver.
        let mut bytes = [0u8; 32];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Node::start(identity, config, bytes)
    }

    fn start(identity: Identity, config: Config, seed: [u8; 32]) -> Result<Node> {
        let notsent_lowat = config.tcp_notsent_lowat;
        let core = astral_core::Endpoint::new(identity, config, seed)?;
        let local_id = core.local_id();
        let (ctx, ctl) = NodeCtx::new();
        let ctx = Arc::new(ctx);
        let (qtx, qrx) = mpsc::unbounded_channel();
        let redialer = Redialer::new(Some(Backoff::default()));
        let ep = EpDriver::new(ctx.clone(), core, redialer, qtx);
        let inner = Arc::new(Inner {
            queries: Arc::new(Queries::new(ctx.clone(), qrx)),
            ctx,
            ep,
            local_id,
            notsent_lowat,
        });
        tokio::spawn(endpoint_task(inner.clone(), ctl));
        Ok(Node {
            handle: Arc::new(Handle { inner }),
        })
    }

    /// The peer routing sessions to `remote` (tests of the driver's parts).
    #[cfg(test)]
    pub(crate) fn peer_for_tests(&self, remote: NodeId) -> Option<Arc<Peer>> {
        self.inner().ep.peek(|st| st.route(remote).cloned())
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

    /// This node instance's incarnation: 64 random bits drawn at start,
    /// sent in every handshake (docs/PROTOCOL.md). A program that keeps a
    /// record of it next to its key can name it in the next instance's
    /// [`Node::set_supersedes`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use astral_tokio::{Node, Identity, Config};
    /// let a = Node::with_seed(Identity::from_seed([1; 32]), Config::default(), 1).unwrap();
    /// let b = Node::with_seed(Identity::from_seed([1; 32]), Config::default(), 2).unwrap();
    /// assert_ne!(a.incarnation(), b.incarnation());
    /// # }
    /// ```
    pub fn incarnation(&self) -> u64 {
        self.inner().ep.with(|st, _| st.core.incarnation())
    }

    /// States in every later handshake that this instance replaces the
    /// earlier instance `previous` of the same key, which is gone: a peer
    /// still holding sessions with `previous` ends them at once
    /// (`PeerRestarted`) instead of probing its streams for an RTO. Call it
    /// before the first `listen` or `connect`, and only when no other
    /// process can be running with this key (the `astral` tool knows it by
    /// holding a lock on `KEY.incarnation`; docs/MIGRATION.md, "Restarts
    /// and twins"): a live twin named here would have its sessions cut
    /// off. `None` (the default) says nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use astral_tokio::{Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
    /// node.set_supersedes(Some(0x1234)); // the previous instance's incarnation
    /// # }
    /// ```
    pub fn set_supersedes(&self, previous: Option<u64>) {
        self.inner()
            .ep
            .with(|st, _| st.core.set_supersedes(previous));
    }

    /// Sets the redial backoff (default 100 ms doubling to 5 s, +25 %
    /// jitter); `None` turns redialing off. The rule is the core's
    /// [`Redialer`]: once a stream this node dialed with [`Node::connect`]
    /// came up, its address is dialed again whenever that stream ends for
    /// any reason but the application closing or draining it, until a
    /// stream for it is up again.
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
        let backoff = backoff.map(|(min, max)| Backoff::new(min, max));
        self.inner()
            .ep
            .with(|st, _| st.redialer.set_backoff(backoff));
    }

    /// Sets the connect timeout (default 10 s): how long [`Node::connect`]
    /// and each redial wait for the TCP connection, and how long
    /// [`Node::open_session`] waits for a first stream to a peer it has
    /// none to (while a dial or redial is under way) before it fails with
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
        self.inner().ep.with(|st, _| st.connect_timeout = timeout);
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
        configure(&listener, inner.notsent_lowat);
        let mut shutdown = inner.ctx.shutdown.subscribe();
        if *shutdown.borrow() {
            return Err(std::io::Error::other("node shut down"));
        }
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((tcp, from)) => {
                            let source = Some(source_of(from));
                            let r = if ACCEPTED_INHERIT {
                                attach_configured(&inner, tcp, Role::Accept, None, source)
                            } else {
                                attach_tcp(&inner, tcp, Role::Accept, None, source)
                            };
                            if let Err(e) = r {
                                // Strangers trigger this at will: not a warning.
                                tracing::debug!(%from, %e, "refused inbound transport");
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
    /// established and the peer has confirmed it (its first record arrived),
    /// so a listener that refuses this key is an error here. A session
    /// opened after it returns costs one round trip more than one opened
    /// while it runs ([`Node::connect_and_open`]).
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
        // `open_session` sees this dial under way until the transport is
        // attached (then the redialer and the handshake show it).
        let connecting = Connecting::new(&self.inner().ep, peer);
        let tcp = tcp_connect(addr, connecting.timeout, self.inner().notsent_lowat).await?;
        let addr = tcp.peer_addr()?;
        let (stream, rx) = attach_configured(
            self.inner(),
            tcp,
            Role::Dial(peer),
            Some(DialOf::New(addr)),
            None,
        )?;
        drop(connecting);
        wait_up(stream, rx, Role::Dial(peer)).await
    }

    /// Dials `addr` like [`Node::connect`] and opens a session for `query`
    /// on the new stream at the same time: the Query leaves right behind
    /// the handshake's message 3 instead of after the peer's first record,
    /// so the session is open 2 round trips after the TCP connection
    /// instead of 3 (docs/PROTOCOL.md, "Handshake"). The stream's errors
    /// come first: a dial that fails (the listener refuses this key, a
    /// wrong id, a timeout) is [`Error::Io`] or [`Error::Handshake`] as from
    /// `connect`, and the session, dropped, is reset; otherwise the
    /// session's answer as from [`Node::open_session`]. If the node already
    /// has a usable stream to `peer`, the query may go out on that one.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node, peer: astral_tokio::NodeId) -> Result<(), astral_tokio::Error> {
    /// let (stream, session) = node.connect_and_open(peer, "127.0.0.1:4000", "echo").await?;
    /// println!("session {} on stream {stream}", session.id());
    /// # Ok(()) }
    /// ```
    pub async fn connect_and_open(
        &self,
        peer: NodeId,
        addr: impl ToSocketAddrs,
        query: &str,
    ) -> Result<(StreamId, Session)> {
        // `biased`: the dial registers itself (`Connecting`) on its first
        // poll, before the open looks for a stream under way.
        tokio::try_join!(
            biased;
            self.connect(peer, addr),
            self.open_session(peer, query)
        )
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
        let (stream, rx) = attach(&self.inner().ep, Generic(io), role.dialed(), None, None)?;
        wait_up(stream, rx, role).await
    }

    /// Like [`Node::add_transport`] with [`Role::Accept`] for a transport
    /// accepted from `from` (a proxy or tunnel that knows the peer's
    /// address): handshake admission then bounds it per address and per
    /// prefix like the TCP listener does (`docs/SECURITY.md`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), astral_tokio::Error> {
    /// use astral_tokio::{Node, Identity, Config, Role};
    /// let a = Node::new(Identity::from_seed([1; 32]), Config::default())?;
    /// let b = Node::new(Identity::from_seed([2; 32]), Config::default())?;
    /// let (x, y) = tokio::io::duplex(1 << 16);
    /// let from = "192.0.2.1:5000".parse().unwrap();
    /// let (sa, sb) = tokio::join!(a.add_transport(x, Role::Dial(b.id())), b.add_transport_from(y, from));
    /// sa?; sb?;
    /// # Ok(()) }
    /// ```
    pub async fn add_transport_from<T>(&self, io: T, from: SocketAddr) -> Result<StreamId>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let source = Some(source_of(from));
        let (stream, rx) = attach(&self.inner().ep, Generic(io), None, None, source)?;
        wait_up(stream, rx, Role::Accept).await
    }

    /// Sets who may connect to this node (`None`: anyone). The policy sees
    /// each inbound stream's dialer as soon as the handshake authenticates
    /// it, before the node keeps any state for that peer; a refused stream
    /// ends with [`StreamCloseReason::NotAllowed`] (reported in
    /// [`Node::events`]). Streams this node dials are not asked, and
    /// established streams stay: replacing the policy affects handshakes
    /// that complete afterwards.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), astral_tokio::Error> {
    /// use std::sync::Arc;
    /// use astral_tokio::{AllowList, Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default())?;
    /// let friend = Identity::from_seed([2; 32]).node_id();
    /// node.set_accept_policy(Some(Arc::new([friend].into_iter().collect::<AllowList>())));
    /// # Ok(()) }
    /// ```
    pub fn set_accept_policy(&self, policy: Option<Arc<dyn AcceptPolicy>>) {
        self.inner()
            .ep
            .with(|st, _| st.core.set_accept_policy(policy));
    }

    /// Counters of the inbound handshake admission: handshakes served and
    /// waiting now, evicted, timed out, refused by the accept policy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), astral_tokio::Error> {
    /// # use astral_tokio::{Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default())?;
    /// assert_eq!(node.admission_stats().waiting, 0);
    /// # Ok(()) }
    /// ```
    pub fn admission_stats(&self) -> AdmissionStats {
        self.inner().ep.peek(|st| st.core.admission_stats())
    }

    /// Adds a connected TCP socket as a transport, like
    /// [`Node::add_transport`] but keeping the TCP fast path (reads straight
    /// into the receive buffer) and a real reset for
    /// [`Node::kill_transport`]. For applications that accept or dial TCP
    /// themselves (to see source addresses, or to dial through their own
    /// resolver). Not redialed. An accepted socket's peer address goes to
    /// handshake admission like the node's own listener's.
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
        let source = match role {
            Role::Accept => tcp.peer_addr().ok().map(source_of),
            Role::Dial(_) => None,
        };
        let (stream, rx) = attach_tcp(self.inner(), tcp, role, None, source)?;
        wait_up(stream, rx, role).await
    }

    /// Opens a session with `peer` for `query` and waits for the answer.
    /// The query goes out on the best stream to the peer, or, while a dial
    /// or redial to it is under way, on the first stream that comes up.
    ///
    /// Errors: [`Error::Rejected`] with the peer's code; [`Error::Unreachable`]
    /// at once if there is no stream to the peer and none is being set up
    /// (no connect, handshake or remembered dial: like a socket's "no route
    /// to host"), or if none came up within the connect timeout
    /// ([`Node::set_connect_timeout`], default 10 s); [`Error::Timeout`] if
    /// the peer did not answer within the core's `routing_timeout`;
    /// [`Error::Shutdown`] after [`Node::shutdown`].
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
        let ctx = inner.ctx.clone();
        // Under the endpoint's lock, so the engine cannot be retired
        // between routing and opening.
        let (engine, id, wait) = inner.ep.with(|st, _| {
            if st.closed {
                return Err(Error::Shutdown);
            }
            let linked = st
                .route(peer)
                .is_some_and(|p| p.peek(|ps| !ps.engine.stream_ids().is_empty()));
            if !linked && !st.stream_coming(peer) {
                return Err(Error::Unreachable(peer));
            }
            let wait = (!linked).then_some(st.connect_timeout);
            let r = st.core.engine_for(peer)?;
            if let Some(e) = r.created {
                let p = Peer::spawn(ctx.clone(), e, inner.ep.queries());
                st.peers.insert(p.id, p);
            }
            let p = st
                .peers
                .get(&r.id)
                .cloned()
                .ok_or(Error::Open(astral_core::OpenError::NodeSessionLimit))?;
            let id = p.with(|ps, now| ps.engine.open_session(now, query))?;
            Ok((p, id, wait))
        })?;
        // Until the answer, a dropped future resets the session.
        let session = Session::new(engine.clone(), id);
        // The pending open parks as the session's reader: SessionOpen and
        // SessionClosed wake it.
        let answer = std::future::poll_fn(|cx| {
            engine.peek(|ps| match ps.engine.session(id).map(|h| h.state()) {
                Some(SessionState::Routing) => {
                    ps.sessions.park_read(id, cx);
                    Poll::Pending
                }
                Some(_) => Poll::Ready(Ok(())),
                None => Poll::Ready(Err(ps
                    .sessions
                    .closed(id)
                    .cloned()
                    .unwrap_or(CloseReason::Graceful))),
            })
        });
        tokio::pin!(answer);
        let answer = match wait {
            None => answer.await,
            // No stream yet: the wait for one is bounded by the connect
            // timeout (then the session is reset: nothing was sent). Only
            // the answer wakes this task, not every stream that comes up
            // (a wake-up of the caller per set-up, perf-profile §17): the
            // timeout looks for a stream when it fires.
            Some(timeout) => match tokio::time::timeout(timeout, &mut answer).await {
                Ok(a) => a,
                Err(_) if engine.peek(|ps| ps.engine.stream_ids().is_empty()) => {
                    return Err(Error::Unreachable(peer));
                }
                Err(_) => answer.await,
            },
        };
        match answer {
            Ok(()) => Ok(session),
            Err(reason) => {
                let unreachable = engine.peek(|ps| ps.engine.stream_ids().is_empty());
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
        Incoming::new(self.inner().queries.clone())
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
        self.inner().ep.with(|st, _| {
            let p = st
                .peer_of(session)
                .cloned()
                .ok_or(MigrateError::UnknownSession)?;
            if !p.peek(|ps| ps.engine.has_stream(stream)) {
                let elsewhere = st.owner.contains_key(&stream);
                let known = p.peek(|ps| ps.engine.session_info(session).is_some());
                return Err(Error::Migrate(match (known, elsewhere) {
                    (false, _) => MigrateError::UnknownSession,
                    (true, true) => MigrateError::WrongPeer,
                    (true, false) => MigrateError::TargetUnknown,
                }));
            }
            p.with(|ps, now| ps.engine.migrate(now, session, stream))
                .map_err(Error::from)
        })
    }

    /// Pins `session` where it is (`true`: automatic placement at both ends
    /// leaves it alone until it is unpinned or its stream dies) or releases
    /// it. [`Node::migrate`] pins too.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, s: astral_tokio::SessionId) {
    /// node.pin_session(s, false).expect("unknown session");
    /// # }
    /// ```
    pub fn pin_session(&self, session: SessionId, pinned: bool) -> Result<()> {
        self.inner().ep.with(|st, _| {
            let p = st
                .peer_of(session)
                .cloned()
                .ok_or(MigrateError::UnknownSession)?;
            p.with(|ps, now| ps.engine.pin_session(now, session, pinned))
                .map_err(Error::from)
        })
    }

    /// Whether this node's application, or the peer's, pinned `session`:
    /// `(local, peer)`; `None` for an unknown session.
    pub fn session_pins(&self, session: SessionId) -> Option<(bool, bool)> {
        let p = self.inner().ep.peek(|st| st.peer_of(session).cloned())?;
        p.peek(|ps| ps.engine.session_pins(session))
    }

    /// Sets this node's placement preference for `stream` (tier, penalty)
    /// and announces it to the peer; both ends use the stricter of their
    /// two settings.
    pub fn set_stream_preference(
        &self,
        stream: StreamId,
        preference: astral_core::StreamPreference,
    ) -> Result<()> {
        self.inner().ep.with(|st, _| {
            let p = st
                .owner
                .get(&stream)
                .cloned()
                .ok_or(MigrateError::TargetUnknown)?;
            p.with(|ps, now| ps.engine.set_stream_preference(now, stream, preference))
                .map_err(Error::from)
        })
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
        self.inner().ep.with(|st, _| {
            let p = st
                .owner
                .get(&stream)
                .cloned()
                .ok_or(astral_core::DrainError::UnknownStream)?;
            let n = p.with(|ps, now| ps.engine.drain_stream(now, stream))?;
            st.redialer.retire_stream(stream);
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
        self.inner().ep.with(|st, now| {
            if st.core.has_stream(stream) {
                st.redialer.retire_stream(stream);
                st.core.close_stream(now, stream);
                return Ok(());
            }
            let p = st.owner.get(&stream).cloned().ok_or(Error::UnknownStream)?;
            let closed = p.with(|ps, now| {
                let known = ps.engine.has_stream(stream);
                if known {
                    ps.engine.close_stream(now, stream);
                }
                known
            });
            if !closed {
                return Err(Error::UnknownStream);
            }
            st.redialer.retire_stream(stream);
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
        let abort = |k: Option<tokio::sync::oneshot::Sender<Kill>>| {
            k.is_some_and(|k| k.send(Kill::Abort).is_ok())
        };
        self.inner().ep.peek(|st| {
            if let Some(t) = st.handshaking.get_mut(&stream) {
                return abort(t.kill.take());
            }
            match st.owner.get(&stream) {
                Some(p) => {
                    p.peek(|ps| abort(ps.transports.get_mut(&stream).and_then(|t| t.kill.take())))
                }
                None => false,
            }
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
        self.inner().ep.peek(|st| {
            let mut all: Vec<StreamInfo> = st.core.streams().collect();
            for p in st.peers.values() {
                p.peek(|ps| all.extend(ps.engine.streams()));
            }
            all.sort_by_key(|s| s.id);
            all
        })
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
        self.inner().ep.peek(|st| {
            let mut all = Vec::new();
            for p in st.peers.values() {
                p.peek(|ps| all.extend(ps.engine.sessions()));
            }
            all
        })
    }

    /// Snapshot of one session.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, s: astral_tokio::SessionId) {
    /// if let Some(info) = node.session_info(s) { println!("{:?}", info.stats); }
    /// # }
    /// ```
    pub fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        let p = self.inner().ep.peek(|st| st.peer_of(session).cloned())?;
        p.peek(|ps| ps.engine.session_info(session))
    }

    /// Established streams to `peer`.
    ///
    /// ```no_run
    /// # fn f(node: astral_tokio::Node, p: astral_tokio::NodeId) {
    /// println!("{} streams", node.peer_streams(p).len());
    /// # }
    /// ```
    pub fn peer_streams(&self, peer: NodeId) -> Vec<StreamId> {
        let p = self.inner().ep.peek(|st| st.route(peer).cloned());
        p.map(|p| p.peek(|ps| ps.engine.stream_ids()))
            .unwrap_or_default()
    }

    /// Number of peers this node keeps state for (streams, sessions, or
    /// sessions that closed recently). An inbound dialer the accept policy
    /// refused never counts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), astral_tokio::Error> {
    /// # use astral_tokio::{Node, Identity, Config};
    /// let node = Node::new(Identity::from_seed([1; 32]), Config::default())?;
    /// assert_eq!(node.peer_count(), 0);
    /// # Ok(()) }
    /// ```
    pub fn peer_count(&self) -> usize {
        self.inner().ep.peek(|st| st.peers.len())
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
        self.inner().ctx.subscribe()
    }

    /// Leaves gracefully and stops the node's tasks: every peer is told
    /// (a Goodbye on each stream, see [`astral_core::PeerEngine::shutdown`]),
    /// so its sessions with this node end at once with
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
        let ctx = &self.inner().ctx;
        loop {
            let notified = ctx.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ctx.all_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once everything queued for `peer` was handed to its
    /// transports (see [`Session::flushed`]); at once if there is no such
    /// peer. Never while a transport cannot write: bound it with a timeout.
    ///
    /// ```no_run
    /// # async fn f(node: astral_tokio::Node, peer: astral_tokio::NodeId) {
    /// let _ = tokio::time::timeout(std::time::Duration::from_secs(2), node.flushed(peer)).await;
    /// node.shutdown();
    /// # }
    /// ```
    pub async fn flushed(&self, peer: NodeId) {
        let p = self.inner().ep.peek(|st| st.route(peer).cloned());
        if let Some(p) = p {
            p.flushed().await;
        }
    }
}

impl Role {
    fn dialed(self) -> Option<NodeId> {
        match self {
            Role::Dial(peer) => Some(peer),
            Role::Accept => None,
        }
    }
}

fn attach_tcp(
    inner: &Arc<Inner>,
    tcp: TcpStream,
    role: Role,
    dial: Option<DialOf>,
    source: Option<Source>,
) -> Result<(StreamId, UpRx)> {
    configure(&tcp, inner.notsent_lowat);
    attach_configured(inner, tcp, role, dial, source)
}

/// [`attach_tcp`] for a socket whose options were set already (before its
/// connection, or on the listener it was accepted from).
fn attach_configured(
    inner: &Arc<Inner>,
    tcp: TcpStream,
    role: Role,
    dial: Option<DialOf>,
    source: Option<Source>,
) -> Result<(StreamId, UpRx)> {
    attach(&inner.ep, Tcp(Arc::new(tcp)), role.dialed(), dial, source)
}

/// The driver's options on a TCP socket: no Nagle delay, and
/// `TCP_NOTSENT_LOWAT` (see [`crate::sockopt`]). Set before a dial
/// connects and on a listener rather than on every socket once it is
/// registered with the reactor: on Linux, setting `TCP_NOTSENT_LOWAT` on a
/// registered socket signals write space and woke a worker for nothing, a
/// wake-up per set-up (`docs/notes/perf-profile.md` §17); accepted sockets
/// inherit both options from the listener there.
#[cfg(unix)]
fn configure<S: std::os::fd::AsFd>(socket: &S, lowat: Option<u32>) {
    let _ = socket2::SockRef::from(socket).set_tcp_nodelay(true);
    crate::sockopt::set_notsent_lowat(socket, lowat);
}

/// Not Unix: no Nagle delay (`TCP_NOTSENT_LOWAT` is Linux only).
#[cfg(windows)]
fn configure<S: std::os::windows::io::AsSocket>(socket: &S, _lowat: Option<u32>) {
    let _ = socket2::SockRef::from(socket).set_tcp_nodelay(true);
}

/// Whether sockets accepted from a [`configure`]d listener have its
/// options (Linux copies them to the accepted socket).
const ACCEPTED_INHERIT: bool = cfg!(any(target_os = "linux", target_os = "android"));

async fn wait_up(stream: StreamId, rx: UpRx, role: Role) -> Result<StreamId> {
    match rx.await {
        Ok(Ok(_)) => Ok(stream),
        Ok(Err((reason, known))) => match role {
            Role::Dial(peer) => Err(Error::Handshake {
                peer,
                reason: explain(reason),
            }),
            Role::Accept => Err(Error::Inbound {
                peer: known,
                reason,
            }),
        },
        Err(_) => Err(Error::Shutdown),
    }
}

/// A `Node::connect` waiting for its TCP connection (see
/// `EpState::connecting`); forgotten when dropped, also if the call is
/// cancelled.
struct Connecting {
    ep: Arc<EpDriver>,
    peer: NodeId,
    timeout: Duration,
}

impl Connecting {
    fn new(ep: &Arc<EpDriver>, peer: NodeId) -> Connecting {
        let timeout = ep.peek(|st| {
            st.connecting.push(peer);
            st.connect_timeout
        });
        Connecting {
            ep: ep.clone(),
            peer,
            timeout,
        }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.ep.peek(|st| {
            if let Some(i) = st.connecting.iter().position(|p| *p == self.peer) {
                st.connecting.swap_remove(i);
            }
        });
    }
}

/// A TCP connection bounded by `timeout`.
/// Connects to the first address `addr` resolves to that accepts, like
/// `TcpStream::connect`, with the driver's socket options set before the
/// connection (see [`configure`]).
async fn tcp_connect(
    addr: impl ToSocketAddrs,
    timeout: Duration,
    lowat: Option<u32>,
) -> std::io::Result<TcpStream> {
    let connect = async {
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            let socket = if a.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            };
            let r = match socket {
                Ok(socket) => {
                    configure(&socket, lowat);
                    socket.connect(a).await
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            )
        }))
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("TCP connection not established within {timeout:?}"),
        )),
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

/// The endpoint task: handshake deadlines, control messages from the
/// peers (stream up/down, idle engines), and due redials.
async fn endpoint_task(inner: Arc<Inner>, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
    let ep = inner.ep.clone();
    let mut shutdown = inner.ctx.shutdown.subscribe();
    loop {
        let (due, next) = ep.step();
        let Some(next) = next else { return };
        for (d, peer, addr) in due {
            tokio::spawn(redial(inner.clone(), d, peer, addr));
        }
        if *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            m = ctl.recv() => {
                let Some(m) = m else { return };
                ep.with(|st, now| {
                    ep.handle_ctl(st, now, m);
                    while let Ok(m) = ctl.try_recv() {
                        ep.handle_ctl(st, now, m);
                    }
                });
            }
            _ = tokio::time::sleep_until(inner.ctx.instant(next)) => {}
            _ = ep.timer.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One redial attempt of a remembered dial (the [`Redialer`] decides when
/// and tracks the outcome).
async fn redial(inner: Arc<Inner>, d: DialId, peer: NodeId, addr: SocketAddr) {
    tracing::debug!(%peer, %addr, "redialing");
    let timeout = inner.ep.peek(|st| st.connect_timeout);
    let attached = match tcp_connect(addr, timeout, inner.notsent_lowat).await {
        Ok(tcp) => {
            attach_configured(&inner, tcp, Role::Dial(peer), Some(DialOf::Again(d)), None).is_ok()
        }
        Err(e) => {
            tracing::debug!(%peer, %e, "redial failed");
            false
        }
    };
    if !attached {
        inner.ep.with(|st, now| {
            let r = st.core.random_u64();
            st.redialer.failed(now, d, r);
        });
    }
}

#[cfg(test)]
mod tests {
    //! What the per-peer structure promises, checked from the inside: peers
    //! do not wait for each other's locks, and engines with nothing left
    //! are retired.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc as std_mpsc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(20);

    fn node(seed: u8, config: Config) -> Node {
        let n = Node::with_seed(Identity::from_seed([seed; 32]), config, u64::from(seed)).unwrap();
        n.set_redial(None);
        n
    }

    /// Echoes every session's bytes back until end-of-stream.
    fn serve_echo(node: &Node) {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(q) = node.next_query().await {
                let Ok(s) = q.accept() else { continue };
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
    }

    fn peer_of(node: &Node, remote: NodeId) -> Arc<Peer> {
        node.inner()
            .ep
            .peek(|st| st.route(remote).cloned())
            .unwrap()
    }

    async fn echo_rounds(s: &mut Session, rounds: usize) {
        let mut b = [0u8; 1];
        for i in 0..rounds {
            s.write_all(&[i as u8]).await.unwrap();
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i as u8);
        }
    }

    /// While another thread holds the server's lock of peer A, peer B's
    /// sessions still make progress: B's echo completes before A's lock is
    /// released (with one node-wide lock it could not).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_peer_lock_does_not_stall_another_peer() {
        timeout(LIMIT, async {
            let server = node(1, Config::default());
            let (a, b) = (node(2, Config::default()), node(3, Config::default()));
            let addr = server.listen("127.0.0.1:0").await.unwrap();
            serve_echo(&server);
            a.connect(server.id(), addr).await.unwrap();
            b.connect(server.id(), addr).await.unwrap();
            let mut sa = a.open_session(server.id(), "echo").await.unwrap();
            let mut sb = b.open_session(server.id(), "echo").await.unwrap();
            echo_rounds(&mut sa, 3).await;
            echo_rounds(&mut sb, 3).await;

            let held = peer_of(&server, a.id());
            let released = Arc::new(AtomicBool::new(false));
            let (locked_tx, locked_rx) = std_mpsc::channel();
            let (done_tx, done_rx) = std_mpsc::channel::<()>();
            let rel = released.clone();
            let holder = std::thread::spawn(move || {
                held.peek(|_| {
                    locked_tx.send(()).unwrap();
                    // Held until B is done, or at most 10 s.
                    let _ = done_rx.recv_timeout(Duration::from_secs(10));
                    rel.store(true, Ordering::SeqCst);
                });
            });
            locked_rx.recv().unwrap();
            // A's traffic now waits for the lock; B's must not.
            let a_task = tokio::spawn(async move {
                echo_rounds(&mut sa, 1).await;
                sa
            });
            // B's rounds run on a worker: the worker blocked on A's lock may
            // be the one that last polled the I/O driver, and a round that
            // writes inline from the test's own thread wakes no other
            // worker to take the driver over (tokio's, not ours).
            let _sb = tokio::spawn(async move {
                echo_rounds(&mut sb, 50).await;
                sb
            })
            .await
            .unwrap();
            assert!(
                !released.load(Ordering::SeqCst),
                "peer B waited for peer A's lock"
            );
            done_tx.send(()).unwrap();
            holder.join().unwrap();
            // A goes on once its lock is free.
            let mut sa = a_task.await.unwrap();
            echo_rounds(&mut sa, 3).await;
        })
        .await
        .expect("test timed out");
    }

    /// Once a peer has no stream, no session and no remembered closed
    /// session, its engine is retired on both nodes, and a new session
    /// to the same peer gets a fresh engine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_engines_are_retired() {
        timeout(LIMIT, async {
            let config = Config {
                recovery_timeout: Duration::from_millis(200),
                ..Config::default()
            };
            let server = node(1, config.clone());
            let client = node(2, config);
            let addr = server.listen("127.0.0.1:0").await.unwrap();
            serve_echo(&server);
            let stream = client.connect(server.id(), addr).await.unwrap();
            let mut s = client.open_session(server.id(), "echo").await.unwrap();
            echo_rounds(&mut s, 3).await;
            let first = peer_of(&client, server.id()).id;
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert_eq!(s.closed().await, CloseReason::Graceful);
            drop(s);
            client.close_stream(stream).unwrap();
            let engines = |n: &Node| {
                n.inner()
                    .ep
                    .peek(|st| (st.peers.len(), st.core.engine_count()))
            };
            loop {
                if engines(&client) == (0, 0) && engines(&server) == (0, 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client.connect(server.id(), addr).await.unwrap();
            let mut s = client.open_session(server.id(), "echo").await.unwrap();
            echo_rounds(&mut s, 3).await;
            assert_ne!(peer_of(&client, server.id()).id, first, "a fresh engine");
        })
        .await
        .expect("test timed out");
    }
}
