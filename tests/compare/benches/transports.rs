//! The peer transports: (a) raw TCP, (b) snow over TCP, (c) yamux over snow,
//! (d) quinn with rustls (default suites, or ChaCha20-Poly1305 only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::contender::{Duplex, Res, Transport};
use crate::snowio::{handshake_initiator, handshake_responder, NoiseKeys, SnowStream};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn tcp_listen() -> Res<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(loopback()).await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

async fn tcp_accept(l: &mut TcpListener) -> Res<TcpStream> {
    let (s, _) = l.accept().await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn tcp_connect(addr: SocketAddr) -> Res<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn take_once<S>(c: &mut Option<S>) -> Res<S> {
    c.take()
        .ok_or_else(|| "connection is not multiplexed: one stream only".into())
}

// ---------------------------------------------------------------- (a) TCP

/// (a) Plain TCP over loopback, `TCP_NODELAY`; one connection per session.
#[derive(Clone)]
pub struct RawTcp;

impl Transport for RawTcp {
    type Listener = TcpListener;
    type Incoming = TcpStream;
    type Conn = Option<TcpStream>;
    type Stream = TcpStream;

    fn name(&self) -> String {
        "tcp".into()
    }
    fn multiplexed(&self) -> bool {
        false
    }
    async fn listen(&self) -> Res<(TcpListener, SocketAddr)> {
        tcp_listen().await
    }
    async fn accept(&self, l: &mut TcpListener) -> Res<TcpStream> {
        tcp_accept(l).await
    }
    async fn establish(&self, inc: TcpStream) -> Res<Option<TcpStream>> {
        Ok(Some(inc))
    }
    async fn accept_stream(&self, c: &mut Option<TcpStream>) -> Res<Option<TcpStream>> {
        Ok(c.take())
    }
    async fn connect(&self, addr: SocketAddr) -> Res<Option<TcpStream>> {
        Ok(Some(tcp_connect(addr).await?))
    }
    async fn open_stream(&self, c: &mut Option<TcpStream>) -> Res<TcpStream> {
        take_once(c)
    }
}

// --------------------------------------------------------------- (b) snow

/// (b) Noise XK over TCP, one Noise session per TCP connection.
#[derive(Clone)]
pub struct SnowTcp {
    keys: Arc<NoiseKeys>,
}

impl SnowTcp {
    pub fn new() -> Res<Self> {
        Ok(Self {
            keys: Arc::new(NoiseKeys::generate()?),
        })
    }
}

impl Transport for SnowTcp {
    type Listener = TcpListener;
    type Incoming = TcpStream;
    type Conn = Option<SnowStream>;
    type Stream = SnowStream;

    fn name(&self) -> String {
        "snow-tcp".into()
    }
    fn multiplexed(&self) -> bool {
        false
    }
    async fn listen(&self) -> Res<(TcpListener, SocketAddr)> {
        tcp_listen().await
    }
    async fn accept(&self, l: &mut TcpListener) -> Res<TcpStream> {
        tcp_accept(l).await
    }
    async fn establish(&self, inc: TcpStream) -> Res<Option<SnowStream>> {
        Ok(Some(handshake_responder(inc, &self.keys).await?))
    }
    async fn accept_stream(&self, c: &mut Option<SnowStream>) -> Res<Option<SnowStream>> {
        Ok(c.take())
    }
    async fn connect(&self, addr: SocketAddr) -> Res<Option<SnowStream>> {
        let tcp = tcp_connect(addr).await?;
        Ok(Some(handshake_initiator(tcp, &self.keys).await?))
    }
    async fn open_stream(&self, c: &mut Option<SnowStream>) -> Res<SnowStream> {
        take_once(c)
    }
}

// -------------------------------------------------------------- (c) yamux

type OpenReply = oneshot::Sender<yamux::Result<yamux::Stream>>;

/// (c) yamux over the snow transport of (b).
#[derive(Clone)]
pub struct YamuxSnow {
    snow: SnowTcp,
    cfg: yamux::Config,
}

impl YamuxSnow {
    /// yamux's defaults (`yamux::Config::default()`): connection receive
    /// window limit 1 GiB, 512 streams, per-stream window 256 KiB growing
    /// with the measured bandwidth-delay product, 16 KiB data frames.
    pub fn new(snow: SnowTcp) -> Self {
        Self {
            snow,
            cfg: yamux::Config::default(),
        }
    }
}

/// Handle to a yamux connection driven by its own task. Dropping it closes
/// the connection.
pub struct YamuxConn {
    open: mpsc::UnboundedSender<OpenReply>,
    inbound: mpsc::UnboundedReceiver<yamux::Stream>,
}

fn spawn_yamux(io: SnowStream, cfg: yamux::Config, mode: yamux::Mode) -> YamuxConn {
    let mut conn = yamux::Connection::new(io.compat(), cfg, mode);
    let (open, mut open_rx) = mpsc::unbounded::<OpenReply>();
    let (inbound_tx, inbound) = mpsc::unbounded();
    tokio::spawn(async move {
        let mut pending: Option<OpenReply> = None;
        let mut closing = false;
        futures::future::poll_fn(|cx| loop {
            if closing {
                return conn.poll_close(cx).map(|_| ());
            }
            if pending.is_none() {
                match open_rx.poll_next_unpin(cx) {
                    Poll::Ready(Some(reply)) => pending = Some(reply),
                    Poll::Ready(None) => {
                        closing = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if let Some(reply) = pending.take() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(r) => {
                        let _ = reply.send(r);
                        continue;
                    }
                    Poll::Pending => pending = Some(reply),
                }
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let _ = inbound_tx.unbounded_send(stream);
                }
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
    });
    YamuxConn { open, inbound }
}

impl Transport for YamuxSnow {
    type Listener = TcpListener;
    type Incoming = TcpStream;
    type Conn = YamuxConn;
    type Stream = Compat<yamux::Stream>;

    fn name(&self) -> String {
        "yamux-snow".into()
    }
    fn multiplexed(&self) -> bool {
        true
    }
    async fn listen(&self) -> Res<(TcpListener, SocketAddr)> {
        tcp_listen().await
    }
    async fn accept(&self, l: &mut TcpListener) -> Res<TcpStream> {
        tcp_accept(l).await
    }
    async fn establish(&self, inc: TcpStream) -> Res<YamuxConn> {
        let io = handshake_responder(inc, &self.snow.keys).await?;
        Ok(spawn_yamux(io, self.cfg.clone(), yamux::Mode::Server))
    }
    async fn accept_stream(&self, c: &mut YamuxConn) -> Res<Option<Self::Stream>> {
        Ok(c.inbound.next().await.map(|s| s.compat()))
    }
    async fn connect(&self, addr: SocketAddr) -> Res<YamuxConn> {
        let tcp = tcp_connect(addr).await?;
        let io = handshake_initiator(tcp, &self.snow.keys).await?;
        Ok(spawn_yamux(io, self.cfg.clone(), yamux::Mode::Client))
    }
    /// Opening 100k streams took 86 s (10k: 0.66 s): yamux's connection
    /// loop does per-stream work on every turn, so opening is quadratic.
    /// Its idle bytes per stream do not change with the count (757 B at
    /// 10k, 751 B at 100k in that run), so 10k is enough.
    fn idle_limit(&self) -> Option<usize> {
        Some(10_000)
    }
    fn with_session_limit(&self, n: usize) -> Res<Self> {
        let mut t = self.clone();
        // yamux requires 256 KiB of connection window per stream allowed
        // (a limit, not an allocation).
        t.cfg
            .set_max_connection_receive_window(Some((n + 16) * 256 * 1024))
            .set_max_num_streams(n + 16);
        Ok(t)
    }
    async fn open_stream(&self, c: &mut YamuxConn) -> Res<Self::Stream> {
        let (tx, rx) = oneshot::channel();
        c.open.send(tx).await?;
        Ok(rx.await??.compat())
    }
}

// -------------------------------------------------------------- (d) quinn

/// Which TLS 1.3 suites the QUIC peers offer.
#[derive(Clone, Copy)]
pub enum QuicSuites {
    /// rustls' ring provider defaults: AES-256-GCM, AES-128-GCM, ChaCha20.
    Default,
    /// TLS13_CHACHA20_POLY1305_SHA256 only (AES-128-GCM still protects the
    /// Initial packets, as QUIC requires).
    ChaCha20,
}

/// (d) quinn 0.11 + rustls (ring), self-signed certificate from rcgen that
/// the client trusts as its only root. Quinn's default transport config.
#[derive(Clone)]
pub struct Quinn {
    label: &'static str,
    server_config: quinn::ServerConfig,
    client: quinn::Endpoint,
}

impl Quinn {
    /// Must be called inside the runtime (the client endpoint binds here).
    pub fn new(suites: QuicSuites) -> Res<Self> {
        use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
        use rustls::crypto::ring::{cipher_suite, default_provider};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let mut provider = default_provider();
        let label = match suites {
            QuicSuites::Default => "quinn-aes",
            QuicSuites::ChaCha20 => {
                provider.cipher_suites = vec![cipher_suite::TLS13_CHACHA20_POLY1305_SHA256];
                "quinn-chacha"
            }
        };
        let provider = Arc::new(provider);
        let initial = cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()
            .and_then(|s| s.quic_suite())
            .ok_or("ring has no QUIC AES-128-GCM suite")?;

        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let cert = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));

        let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        let server_config = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::with_initial(Arc::new(server_tls), initial)?,
        ));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert)?;
        let client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client_config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::with_initial(
            Arc::new(client_tls),
            initial,
        )?));
        let mut client = quinn::Endpoint::client(loopback())?;
        client.set_default_client_config(client_config);
        Ok(Self {
            label,
            server_config,
            client,
        })
    }
}

impl Transport for Quinn {
    type Listener = quinn::Endpoint;
    type Incoming = quinn::Incoming;
    type Conn = quinn::Connection;
    type Stream = Duplex<quinn::RecvStream, quinn::SendStream>;

    fn name(&self) -> String {
        self.label.into()
    }
    fn multiplexed(&self) -> bool {
        true
    }
    async fn listen(&self) -> Res<(quinn::Endpoint, SocketAddr)> {
        let ep = quinn::Endpoint::server(self.server_config.clone(), loopback())?;
        let addr = ep.local_addr()?;
        Ok((ep, addr))
    }
    async fn accept(&self, l: &mut quinn::Endpoint) -> Res<quinn::Incoming> {
        l.accept().await.ok_or_else(|| "endpoint closed".into())
    }
    async fn establish(&self, inc: quinn::Incoming) -> Res<quinn::Connection> {
        Ok(inc.await?)
    }
    async fn accept_stream(&self, c: &mut quinn::Connection) -> Res<Option<Self::Stream>> {
        match c.accept_bi().await {
            Ok((w, r)) => Ok(Some(Duplex { r, w })),
            Err(_) => Ok(None),
        }
    }
    async fn connect(&self, addr: SocketAddr) -> Res<quinn::Connection> {
        Ok(self.client.connect(addr, "localhost")?.await?)
    }
    fn with_session_limit(&self, n: usize) -> Res<Self> {
        // Raises only the peer-initiated bidirectional stream limit (default
        // 100); quinn's other defaults stay.
        let mut t = self.clone();
        let mut tc = quinn::TransportConfig::default();
        tc.max_concurrent_bidi_streams(quinn::VarInt::try_from(n as u64 + 16)?);
        t.server_config.transport_config(Arc::new(tc));
        Ok(t)
    }
    async fn open_stream(&self, c: &mut quinn::Connection) -> Res<Self::Stream> {
        let (w, r) = c.open_bi().await?;
        Ok(Duplex { r, w })
    }
}
