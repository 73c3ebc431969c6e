//! Every call this crate makes into the astral-tokio API, in one module.
//!
//! The tokio API is being renamed (`Node::new` returns a `Result`, `open`
//! becomes `open_session`, `Config` fields change with the flow-control
//! work): when it lands, only this file changes.

use std::net::{IpAddr, SocketAddr};

pub use astral_tokio::{Config, Event, Identity, Node, NodeId, Session, SessionId, StreamId};

use crate::probe;

/// A failure talking to astral, as text (this crate only reports them).
pub type Error = String;

/// A deterministic identity from a number: identities in the harness are
/// labels, not secrets.
///
/// ```
/// use astral_harness::astral_api::identity;
/// assert_eq!(identity(7).node_id(), identity(7).node_id());
/// assert_ne!(identity(7).node_id(), identity(8).node_id());
/// ```
pub fn identity(n: u64) -> Identity {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8..16].copy_from_slice(b"harness!");
    Identity::from_seed(seed)
}

/// A node with the default configuration. Must run inside a Tokio runtime.
/// `ASTRAL_HARNESS_NOTSENT_LOWAT` (bytes, or `off`) overrides
/// `Config::tcp_notsent_lowat`, for comparing kernel send-buffer depths
/// (it reaches the processes the netns benchmark starts).
pub fn node(identity: Identity) -> Result<Node, Error> {
    let mut config = Config::default();
    if let Ok(v) = std::env::var("ASTRAL_HARNESS_NOTSENT_LOWAT") {
        config.tcp_notsent_lowat = match v.trim() {
            "off" | "0" => None,
            b => Some(
                crate::units::parse_size(b)
                    .ok()
                    .and_then(|b| u32::try_from(b).ok())
                    .ok_or_else(|| format!("ASTRAL_HARNESS_NOTSENT_LOWAT={v:?}: bytes or off"))?,
            ),
        };
    }
    if let Ok(v) = std::env::var("ASTRAL_HARNESS_WINDOW") {
        let w = crate::units::parse_size(v.trim())
            .ok()
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| format!("ASTRAL_HARNESS_WINDOW={v:?}: bytes"))?;
        config.recv_window = w;
        config.max_recv_window = w;
        config.send_buffer = w;
    }
    Node::new(identity, config).map_err(|e| e.to_string())
}

/// A node with `config`. Must run inside a Tokio runtime.
pub fn node_with(identity: Identity, config: Config) -> Result<Node, Error> {
    Node::new(identity, config).map_err(|e| e.to_string())
}

/// The default configuration with a fixed window of `window` bytes per
/// session and direction (no auto-tuning; `send_buffer` the same).
pub fn fixed_window(window: u32) -> Config {
    Config {
        recv_window: window,
        max_recv_window: window,
        send_buffer: window,
        ..Config::default()
    }
}

/// The flow-control settings a run used, for reports.
pub fn describe_config() -> String {
    let c = Config::default();
    format!(
        "astral default config: recv_window {} B, send_buffer {} B",
        c.recv_window, c.send_buffer
    )
}

/// Listens for streams on `addr`.
pub async fn listen(node: &Node, addr: SocketAddr) -> Result<SocketAddr, Error> {
    node.listen(addr)
        .await
        .map_err(|e| format!("listen on {addr}: {e}"))
}

/// Dials `peer` at `addr` (one more stream), from source address `bind` if
/// given.
pub async fn connect(
    node: &Node,
    peer: NodeId,
    addr: SocketAddr,
    bind: Option<IpAddr>,
) -> Result<(), Error> {
    let r = match bind {
        None => node.connect(peer, addr).await.map(|_| ()),
        Some(ip) => {
            let tcp = probe::connect_from(addr, Some(ip))
                .await
                .map_err(|e| format!("connect to {addr} from {ip}: {e}"))?;
            node.add_transport(tcp, astral_tokio::Role::Dial(peer))
                .await
                .map(|_| ())
        }
    };
    r.map_err(|e| format!("connect to {peer}@{addr}: {e}"))
}

/// Dials `peer` at `addr` and returns the new stream's id.
pub async fn connect_stream(
    node: &Node,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<StreamId, Error> {
    node.connect(peer, addr)
        .await
        .map_err(|e| format!("connect to {peer}@{addr}: {e}"))
}

/// The node's events (migrations, recoveries, ...) from now on.
pub fn events(node: &Node) -> tokio::sync::broadcast::Receiver<Event> {
    node.events()
}

/// The stream `session` sends on now, if it is open.
pub fn send_stream(node: &Node, session: SessionId) -> Option<StreamId> {
    node.session_info(session).and_then(|i| i.send_stream)
}

/// `(srtt, path delay)` of `stream` as the node measures it (zero when
/// unknown), in ms.
pub fn stream_rtt_ms(node: &Node, stream: StreamId) -> (f64, f64) {
    node.streams()
        .into_iter()
        .find(|s| s.id == stream)
        .map_or((0.0, 0.0), |s| {
            (
                s.rtt.srtt.as_secs_f64() * 1e3,
                s.rtt.path.as_secs_f64() * 1e3,
            )
        })
}

/// `stream`'s drain probes at `node`: (probes, of them confirming, seconds
/// data was withheld); zeros once the stream is gone.
pub fn stream_drain_probes(node: &Node, stream: StreamId) -> (u64, u64, f64) {
    node.streams()
        .into_iter()
        .find(|s| s.id == stream)
        .map_or((0, 0, 0.0), |s| {
            (
                s.stats.drain_probes,
                s.stats.drain_confirms,
                s.stats.drain_withheld.as_secs_f64(),
            )
        })
}

/// Opens a session with `peer` for `query`.
pub async fn open(node: &Node, peer: NodeId, query: &str) -> Result<Session, Error> {
    node.open_session(peer, query)
        .await
        .map_err(|e| format!("open {query:?}: {e}"))
}

/// Opens a session with `peer` for `query` without waiting for the answer:
/// the future resolves when the peer answers (for floods that keep many
/// queries pending).
pub fn open_pending(
    node: &Node,
    peer: NodeId,
    query: String,
) -> impl std::future::Future<Output = Result<Session, Error>> + Send + 'static {
    let node = node.clone();
    async move { open(&node, peer, &query).await }
}

/// The next inbound query as `(query, accept)`: call `accept` to get the
/// session, or drop it to reject.
pub async fn next_query(node: &Node) -> Option<Incoming> {
    node.next_query().await.map(Incoming)
}

/// An inbound query.
pub struct Incoming(astral_tokio::IncomingQuery);

impl Incoming {
    /// The query string.
    pub fn query(&self) -> &str {
        self.0.query()
    }

    /// Accepts it.
    pub fn accept(self) -> Result<Session, Error> {
        self.0.accept().map_err(|e| format!("accept: {e}"))
    }

    /// Rejects it ("no such service").
    pub fn reject(self) {
        self.0.reject(astral_tokio::codes::NO_SUCH_SERVICE)
    }
}

/// How many sessions the node has open now.
pub fn session_count(node: &Node) -> usize {
    node.sessions().len()
}

/// Stops the node: closes its streams and tasks.
pub fn shutdown(node: &Node) {
    node.shutdown()
}
