//! astral over astral-tokio as a [`Transport`], and the core config every
//! astral contender shares.
//!
//! One TCP stream per connection, sessions multiplexed over it, records
//! with the harness cipher. Config: the core's defaults except
//! `recv_window = send_buffer =` the harness window, the record cipher
//! chosen explicitly (never by probing this CPU), and for the idle
//! workload a per-peer session limit above the session count.
//!
//! A "connection" is a fresh client node (fresh identity) that dials the
//! server node and waits until the stream is confirmed; dropping it shuts
//! the node down. So `n` connections are `n` peers of the server node.
//! Each `listen` starts a fresh server node with its own identity, so runs
//! never see each other's state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use astral_core::{Config, Identity, NodeId};
use astral_tokio::{Incoming, Node, Session};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::contender::{Res, Transport};
use crate::tcp::loopback;
use crate::Cipher;

/// The query every harness session is opened with.
pub const QUERY: &str = "compare";
/// Opens in flight at once in the idle workload (below the server's
/// default `max_pending_queries` of 1024).
pub const OPEN_PIPELINE: usize = 512;

/// Core config of every astral contender: `window` bytes of receive
/// window (fixed: no auto-tuning, like with like against the other
/// contenders' fixed windows) and of send buffer per session, records
/// with `cipher`.
pub fn astral_config(window: u32, cipher: Cipher) -> Config {
    Config {
        recv_window: window,
        max_recv_window: window,
        send_buffer: window,
        // Both ends offer AES-256-GCM or neither does: the negotiated
        // suite is then exactly `cipher`.
        offer_aes_gcm: cipher == Cipher::AesGcm,
        ..Config::default()
    }
}

/// The contender name of astral over `driver` with `cipher`.
pub fn astral_name(driver: &str, cipher: Cipher) -> String {
    match cipher {
        Cipher::ChaChaPoly => format!("astral-{driver}"),
        Cipher::AesGcm => format!("astral-{driver}-aes"),
    }
}

/// Distinct identities and seeds for every node of the run.
pub fn fresh(tag: u8) -> (Identity, u64) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8] = tag;
    seed[9..17].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    (Identity::from_seed(seed), n ^ 0x9e37_79b9_7f4a_7c15)
}

/// astral over astral-tokio, on the harness's tokio runtime.
#[derive(Clone)]
pub struct AstralTokio {
    cfg: Config,
    cipher: Cipher,
    /// Listening address → the server node's id (the client must know it).
    servers: Arc<Mutex<HashMap<SocketAddr, NodeId>>>,
}

impl AstralTokio {
    /// Nodes with `window` and `cipher` (see [`astral_config`]).
    pub fn new(window: u32, cipher: Cipher) -> Self {
        Self {
            cfg: astral_config(window, cipher),
            cipher,
            servers: Arc::default(),
        }
    }

    /// A fresh client node (no redial) and the id of the server at `addr`.
    fn client(&self, addr: SocketAddr) -> Res<(Node, NodeId)> {
        let peer = *self
            .servers
            .lock()
            .map_err(|_| "poisoned")?
            .get(&addr)
            .ok_or("unknown server address")?;
        let (id, seed) = fresh(2);
        let node = Node::with_seed(id, self.cfg.clone(), seed)?;
        node.set_redial(None);
        Ok((node, peer))
    }

    /// With `on`, both nodes use the core's default flow control (windows
    /// auto-tuned from the default `recv_window`, the default send buffer
    /// and memory budgets) instead of the fixed window.
    pub fn with_default_flow(mut self, on: bool) -> Self {
        if on {
            let d = Config::default();
            self.cfg.recv_window = d.recv_window;
            self.cfg.max_recv_window = d.max_recv_window;
            self.cfg.send_buffer = d.send_buffer;
        }
        self
    }

    /// The same with `Config::tcp_notsent_lowat = lowat` on both nodes.
    pub fn with_notsent_lowat(mut self, lowat: Option<u32>) -> Self {
        self.cfg.tcp_notsent_lowat = lowat;
        self
    }
}

/// The server node of one workload run.
pub struct AstralListener {
    /// Keeps the server node alive; dropping it shuts the node down.
    _node: Node,
    incoming: Option<Incoming>,
}

/// Server side: the node's inbound queries (all connections). Client side:
/// a node of its own with one stream to the server.
pub enum AstralConn {
    /// The server node's inbound queries.
    Server(Incoming),
    /// A client node and the server it dialled.
    Client {
        /// The client node (one peer of the server).
        node: Node,
        /// The server node's id.
        peer: NodeId,
    },
}

impl Transport for AstralTokio {
    type Listener = AstralListener;
    type Incoming = Incoming;
    type Conn = AstralConn;
    type Stream = Session;

    fn name(&self) -> String {
        astral_name("tokio", self.cipher)
    }
    fn cipher(&self) -> Option<Cipher> {
        Some(self.cipher)
    }
    fn multiplexed(&self) -> bool {
        true
    }
    async fn listen(&self) -> Res<(AstralListener, SocketAddr)> {
        let (id, seed) = fresh(1);
        let node = Node::with_seed(id, self.cfg.clone(), seed)?;
        let addr = node.listen(loopback()).await?;
        self.servers
            .lock()
            .map_err(|_| "poisoned")?
            .insert(addr, node.id());
        let incoming = Some(node.incoming());
        Ok((
            AstralListener {
                _node: node,
                incoming,
            },
            addr,
        ))
    }
    /// The node accepts TCP streams itself; the harness sees one
    /// "connection" that yields every inbound session.
    async fn accept(&self, l: &mut AstralListener) -> Res<Incoming> {
        match l.incoming.take() {
            Some(i) => Ok(i),
            None => futures::future::pending().await,
        }
    }
    async fn establish(&self, inc: Incoming) -> Res<AstralConn> {
        Ok(AstralConn::Server(inc))
    }
    async fn accept_stream(&self, c: &mut AstralConn) -> Res<Option<Session>> {
        let AstralConn::Server(inc) = c else {
            return Err("accept_stream on a client connection".into());
        };
        match inc.next().await {
            Some(q) => Ok(Some(q.accept()?)),
            None => Ok(None),
        }
    }
    async fn connect(&self, addr: SocketAddr) -> Res<AstralConn> {
        let (node, peer) = self.client(addr)?;
        node.connect(peer, addr).await?;
        Ok(AstralConn::Client { node, peer })
    }
    /// The session's Query rides behind handshake message 3
    /// (`Node::connect_and_open`).
    async fn connect_and_open(&self, addr: SocketAddr) -> Res<(AstralConn, Session)> {
        let (node, peer) = self.client(addr)?;
        let (_, s) = node.connect_and_open(peer, addr, QUERY).await?;
        Ok((AstralConn::Client { node, peer }, s))
    }
    async fn open_stream(&self, c: &mut AstralConn) -> Res<Session> {
        let AstralConn::Client { node, peer } = c else {
            return Err("open_stream on a server connection".into());
        };
        Ok(node.open_session(*peer, QUERY).await?)
    }
    fn with_session_limit(&self, n: usize) -> Res<Self> {
        let mut t = self.clone();
        t.cfg.max_sessions_per_peer = t.cfg.max_sessions_per_peer.max(n + 64);
        t.cfg.max_sessions = t.cfg.max_sessions.max(n + 64);
        Ok(t)
    }
    /// `open` waits for the peer's answer: keep `OPEN_PIPELINE` in flight.
    async fn open_many(
        &self,
        c: &mut AstralConn,
        n: usize,
        first: &'static [u8],
    ) -> Res<Vec<Session>> {
        let AstralConn::Client { node, peer } = c else {
            return Err("open_many on a server connection".into());
        };
        let (node, peer) = (&*node, *peer);
        let mut opens = futures::stream::iter(0..n)
            .map(|_| async move {
                let mut s = node.open_session(peer, QUERY).await?;
                s.write_all(first).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
            })
            .buffer_unordered(OPEN_PIPELINE);
        let mut v = Vec::with_capacity(n);
        while let Some(s) = opens.next().await {
            v.push(s?);
        }
        Ok(v)
    }
}
