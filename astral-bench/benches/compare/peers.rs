//! The peer transports: yamux over the snow baseline, and quinn with rustls
//! (AES-GCM or ChaCha20-Poly1305 suites).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use astral_bench::contender::{Duplex, Res, Transport};
use astral_bench::snow::{SnowStream, SnowTcp};
use astral_bench::tcp::{loopback, tcp_accept, tcp_connect, tcp_listen};
use astral_bench::Cipher;

// -------------------------------------------------------------- (c) yamux

type OpenReply = oneshot::Sender<yamux::Result<yamux::Stream>>;

/// yamux's fixed initial stream window (the spec's 256 KiB credit).
const YAMUX_CREDIT: usize = yamux::DEFAULT_CREDIT as usize;
/// yamux's default stream limit.
const YAMUX_STREAMS: usize = 512;

/// yamux over the snow baseline (the same [`SnowTcp`] contender, so the
/// same cipher and records).
#[derive(Clone)]
pub struct YamuxSnow {
    snow: SnowTcp,
    cfg: yamux::Config,
    window: usize,
    sessions: usize,
}

impl YamuxSnow {
    /// yamux 0.14's defaults except the window: a stream starts with the
    /// spec's 256 KiB credit and yamux grows it with the measured
    /// bandwidth-delay product while the connection's limit allows. The
    /// limit is set so that each of `sessions` concurrent streams can grow
    /// to `window` and no further (`window` ≤ 256 KiB: no growth at all, so
    /// yamux's window is max(window, 256 KiB)).
    pub fn new(snow: SnowTcp, window: u32, sessions: usize) -> Self {
        let mut t = Self {
            snow,
            cfg: yamux::Config::default(),
            window: window as usize,
            sessions,
        };
        t.set_limits(YAMUX_STREAMS);
        t
    }

    fn set_limits(&mut self, streams: usize) {
        let growth = self.window.saturating_sub(YAMUX_CREDIT) * self.sessions;
        // yamux asserts `window >= 256 KiB × streams` in both setters, so
        // lift the connection window before changing the stream count (the
        // idle workload raises it to thousands of streams).
        self.cfg
            .set_max_connection_receive_window(None)
            .set_max_num_streams(streams)
            .set_max_connection_receive_window(Some(streams * YAMUX_CREDIT + growth));
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
        match self.snow.cipher() {
            Cipher::ChaChaPoly => "yamux-snow".into(),
            Cipher::AesGcm => "yamux-snow-aes".into(),
        }
    }
    fn cipher(&self) -> Option<Cipher> {
        Some(self.snow.cipher())
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
        let io = self.snow.respond(inc).await?;
        Ok(spawn_yamux(io, self.cfg.clone(), yamux::Mode::Server))
    }
    async fn accept_stream(&self, c: &mut YamuxConn) -> Res<Option<Self::Stream>> {
        Ok(c.inbound.next().await.map(|s| s.compat()))
    }
    async fn connect(&self, addr: SocketAddr) -> Res<YamuxConn> {
        let tcp = tcp_connect(addr).await?;
        let io = self.snow.initiate(tcp).await?;
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
        t.set_limits(n + 16);
        Ok(t)
    }
    async fn open_stream(&self, c: &mut YamuxConn) -> Res<Self::Stream> {
        let (tx, rx) = oneshot::channel();
        c.open.send(tx).await?;
        Ok(rx.await??.compat())
    }
}

// -------------------------------------------------------------- (d) quinn

/// quinn 0.11 + rustls (ring) with one TLS 1.3 suite: AES-256-GCM (astral's
/// and snow's AES suite) or ChaCha20-Poly1305 (AES-128-GCM still protects
/// the Initial packets, as QUIC requires). Self-signed certificate from
/// rcgen that the client trusts as its only root. Quinn's default transport
/// config except the stream receive window, set to the harness window.
#[derive(Clone)]
pub struct Quinn {
    cipher: Cipher,
    window: u32,
    server_config: quinn::ServerConfig,
    client: quinn::Endpoint,
}

/// Quinn's transport config with `window` per stream and room for `streams`
/// peer-opened bidirectional streams (`None`: quinn's default, 100).
fn quic_transport(window: u32, streams: Option<u64>) -> Res<Arc<quinn::TransportConfig>> {
    let mut tc = quinn::TransportConfig::default();
    tc.stream_receive_window(quinn::VarInt::from_u32(window));
    if let Some(n) = streams {
        tc.max_concurrent_bidi_streams(quinn::VarInt::try_from(n)?);
    }
    Ok(Arc::new(tc))
}

impl Quinn {
    /// Must be called inside the runtime (the client endpoint binds here).
    pub fn new(cipher: Cipher, window: u32) -> Res<Self> {
        use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
        use rustls::crypto::ring::{cipher_suite, default_provider};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let mut provider = default_provider();
        provider.cipher_suites = vec![match cipher {
            Cipher::AesGcm => cipher_suite::TLS13_AES_256_GCM_SHA384,
            Cipher::ChaChaPoly => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        }];
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
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::with_initial(Arc::new(server_tls), initial)?,
        ));
        server_config.transport_config(quic_transport(window, None)?);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert)?;
        let client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client_config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::with_initial(
            Arc::new(client_tls),
            initial,
        )?));
        client_config.transport_config(quic_transport(window, None)?);
        let mut client = quinn::Endpoint::client(loopback())?;
        client.set_default_client_config(client_config);
        Ok(Self {
            cipher,
            window,
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
        match self.cipher {
            Cipher::ChaChaPoly => "quinn-chacha".into(),
            Cipher::AesGcm => "quinn-aes".into(),
        }
    }
    fn cipher(&self) -> Option<Cipher> {
        Some(self.cipher)
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
        // 100); the rest stays as `new` set it.
        let mut t = self.clone();
        t.server_config
            .transport_config(quic_transport(self.window, Some(n as u64 + 16))?);
        Ok(t)
    }
    async fn open_stream(&self, c: &mut quinn::Connection) -> Res<Self::Stream> {
        let (w, r) = c.open_bi().await?;
        Ok(Duplex { r, w })
    }
}
