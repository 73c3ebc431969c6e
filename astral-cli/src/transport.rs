//! Transports the tool dials and accepts: TCP, Unix sockets, and TCP
//! through a SOCKS5 proxy. Each becomes a stream of the node through the
//! driver (`add_tcp` keeps TCP's fast path; `add_transport` takes the
//! rest), and is recorded in the registry with its remote address.

use std::sync::Arc;
use std::time::Duration;

use astral_tokio::{Node, NodeId, Role, Session, StreamCloseReason, StreamId};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_socks::tcp::Socks5Stream;

use crate::addr::{Addr, Target};
use crate::error::{describe, err, AnyError};
use crate::limited;
use crate::logging::{escape, Noisy};
use crate::registry::{Registry, StreamMeta};
use crate::unixsock::{self, SocketPath};

/// How long a TCP connect or SOCKS5 exchange may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected transport, before the handshake.
enum Dialed {
    Tcp(TcpStream),
    Unix(UnixStream),
    Socks(Socks5Stream<TcpStream>),
}

/// Opens the transport to `addr` (through `socks5` for TCP addresses).
/// Returns it with its transport name and the remote as shown to users.
async fn open(
    addr: &Addr,
    socks5: Option<&str>,
) -> Result<(Dialed, &'static str, String), AnyError> {
    let fut = async {
        match (addr, socks5) {
            (Addr::Tcp { host, port }, None) => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| connect_error(addr, &e))?;
                let remote = tcp
                    .peer_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string());
                Ok((Dialed::Tcp(tcp), "tcp", remote))
            }
            (Addr::Tcp { host, port }, Some(proxy)) => {
                // The proxy resolves the name (so .onion works and nothing
                // leaks to the local resolver).
                let s = Socks5Stream::connect(proxy, (host.as_str(), *port))
                    .await
                    .map_err(|e| socks_error(addr, proxy, e))?;
                Ok((Dialed::Socks(s), "socks5", format!("{addr} via {proxy}")))
            }
            (Addr::Unix(path), _) => {
                let u = UnixStream::connect(path)
                    .await
                    .map_err(|e| connect_error(addr, &e))?;
                Ok((Dialed::Unix(u), "unix", addr.to_string()))
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| {
            err(format!(
                "cannot connect to {addr}: no answer within {CONNECT_TIMEOUT:?}"
            ))
        })?
}

fn connect_error(addr: &Addr, e: &std::io::Error) -> AnyError {
    let hint = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => " (is `astral listen` running there?)",
        std::io::ErrorKind::NotFound => {
            " (no such socket: is `astral listen -b unix:...` running?)"
        }
        std::io::ErrorKind::PermissionDenied => " (permission denied on the socket)",
        _ => "",
    };
    err(format!("cannot connect to {addr}: {e}{hint}"))
}

fn socks_error(addr: &Addr, proxy: &str, e: tokio_socks::Error) -> AnyError {
    match e {
        tokio_socks::Error::ProxyServerUnreachable => err(format!(
            "cannot reach the SOCKS5 proxy {proxy} (is it running? Tor listens on 127.0.0.1:9050)"
        )),
        tokio_socks::Error::Io(io) => err(format!(
            "the SOCKS5 proxy {proxy} failed while connecting to {addr}: {io}"
        )),
        e => err(format!(
            "the SOCKS5 proxy {proxy} could not connect to {addr}: {e}"
        )),
    }
}

/// Dials `target` and runs the handshake: one more stream to its peer.
pub async fn dial(
    node: &Node,
    reg: &Registry,
    target: &Target,
    index: usize,
    socks5: Option<&str>,
) -> Result<StreamId, AnyError> {
    let (stream, _) = dial_opening(node, reg, target, index, socks5, None).await?;
    Ok(stream)
}

/// What [`dial_opening`] opened with the stream: the session, or why the
/// peer did not give it (the stream itself is up either way).
pub type Opened = Result<Session, astral_tokio::Error>;

/// Like [`dial`], and with a `query` opens a session on the new stream at
/// the same time: the Query leaves right behind the handshake's message 3,
/// so the session is open one round trip sooner than when opened after
/// `dial` returned (docs/PROTOCOL.md, "Handshake"; the driver's
/// `Node::connect_and_open` does the same for its own TCP dial). The
/// stream's errors come first: if the handshake fails the session, dropped,
/// is reset and never reaches the peer.
pub async fn dial_opening(
    node: &Node,
    reg: &Registry,
    target: &Target,
    index: usize,
    socks5: Option<&str>,
    query: Option<&str>,
) -> Result<(StreamId, Option<Opened>), AnyError> {
    let (io, transport, remote) = open(&target.addr, socks5).await?;
    let local = match &io {
        Dialed::Tcp(t) => t.local_addr().ok().map(|a| a.to_string()),
        Dialed::Socks(s) => s.local_addr().ok().map(|a| a.to_string()),
        Dialed::Unix(_) => None,
    };
    let role = Role::Dial(target.peer);
    let attach = async {
        match io {
            Dialed::Tcp(t) => node.add_tcp(t, role).await,
            Dialed::Unix(u) => node.add_transport(u, role).await,
            Dialed::Socks(s) => node.add_transport(s, role).await,
        }
    };
    let (r, opened) = match query {
        None => (attach.await, None),
        Some(q) => {
            let open = node.open_session(target.peer, q);
            tokio::pin!(attach, open);
            let mut opened = None;
            // `biased`: the attach's first poll registers the handshake
            // (a stream to the peer under way) before the open looks for
            // one; an open polled first would find nothing coming.
            let r = loop {
                tokio::select! {
                    biased;
                    r = &mut attach => break r,
                    s = &mut open, if opened.is_none() => opened = Some(s),
                }
            };
            match (r, opened) {
                (Ok(stream), None) => (Ok(stream), Some(open.await)),
                (r, opened) => (r, opened),
            }
        }
    };
    let stream = r.map_err(|e| handshake_error(target, &remote, e))?;
    let short = reg.add_stream(
        stream,
        StreamMeta {
            transport,
            remote: remote.clone(),
            local,
            target: Some(index),
            retired: false,
        },
    );
    limited!(
        Noisy::Stream,
        info,
        "stream {short} up: peer {} ({transport} {remote}, dialed)",
        target.peer.short()
    );
    Ok((stream, opened))
}

/// The user's sentence for a failed dial handshake.
fn handshake_error(target: &Target, remote: &str, e: astral_tokio::Error) -> AnyError {
    let at = format!("{}@{remote}", target.peer.short());
    match e {
        astral_tokio::Error::Handshake { reason, .. } => match reason {
            StreamCloseReason::HandshakeFailed(m) | StreamCloseReason::BadRecord(m) => err(format!(
                "handshake with {at} failed: the other end does not speak the astral protocol ({}); is {remote} an `astral listen` address?",
                escape(&describe(&m))
            )),
            StreamCloseReason::HandshakeTimeout => err(format!(
                "handshake with {at} timed out: the other end accepted the connection but never answered (is it an astral listener, and not overloaded?)"
            )),
            StreamCloseReason::TransportClosed(_) => err(format!(
                "handshake with {at} failed: the listener hung up; either {} is not its id (check the ID@ part), it does not allow this key, or it is busy",
                target.peer.short()
            )),
            r => err(format!("handshake with {at} failed: {}", escape(&describe(&r)))),
        },
        e => err(format!("cannot add a stream to {at}: {}", describe(&e))),
    }
}

/// Listens on `addr`: every accepted transport becomes an inbound stream.
/// Returns the address as bound (port 0 resolved), and for Unix sockets
/// the guard that removes the socket file on exit.
pub async fn listen(
    node: &Node,
    reg: &Arc<Registry>,
    addr: &Addr,
) -> Result<(String, Option<SocketPath>), AnyError> {
    match addr {
        Addr::Tcp { host, port } => {
            let l = TcpListener::bind((host.as_str(), *port))
                .await
                .map_err(|e| {
                    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                        " (another process listens there: pick another port, or 0 for any)"
                    } else {
                        ""
                    };
                    err(format!("cannot listen on {addr}: {e}{hint}"))
                })?;
            let local = l
                .local_addr()
                .map_or_else(|_| addr.to_string(), |a| a.to_string());
            tokio::spawn(accept_tcp(node.clone(), reg.clone(), l));
            reg.add_listen(local.clone());
            Ok((local, None))
        }
        Addr::Unix(path) => {
            let (l, guard) = unixsock::bind(path, "listening socket", false).await?;
            let shown = addr.to_string();
            tokio::spawn(accept_unix(node.clone(), reg.clone(), l, shown.clone()));
            reg.add_listen(shown.clone());
            Ok((shown, Some(guard)))
        }
    }
}

async fn accept_tcp(node: Node, reg: Arc<Registry>, l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((tcp, from)) => {
                let (node, reg) = (node.clone(), reg.clone());
                tokio::spawn(async move {
                    let local = tcp.local_addr().ok().map(|a| a.to_string());
                    let r = node.add_tcp(tcp, Role::Accept).await;
                    accepted(&node, &reg, r, "tcp", from.to_string(), local);
                });
            }
            Err(e) => {
                // Out of descriptors, usually: back off instead of spinning.
                limited!(Noisy::Handshake, warn, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_unix(node: Node, reg: Arc<Registry>, l: UnixListener, shown: String) {
    loop {
        match l.accept().await {
            Ok((u, _)) => {
                let (node, reg, shown) = (node.clone(), reg.clone(), shown.clone());
                tokio::spawn(async move {
                    // A Unix client has no address; its process does.
                    let remote = u.peer_cred().map_or_else(
                        |_| "unix client".to_string(),
                        |c| match c.pid() {
                            Some(pid) => format!("pid {pid} uid {}", c.uid()),
                            None => format!("uid {}", c.uid()),
                        },
                    );
                    let r = node.add_transport(u, Role::Accept).await;
                    accepted(&node, &reg, r, "unix", remote, Some(shown));
                });
            }
            Err(e) => {
                limited!(Noisy::Handshake, warn, "accept on {shown} failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn accepted(
    node: &Node,
    reg: &Registry,
    r: astral_tokio::Result<StreamId>,
    transport: &'static str,
    remote: String,
    local: Option<String>,
) {
    match r {
        Ok(stream) => {
            let peer: Option<NodeId> = node
                .streams()
                .into_iter()
                .find(|s| s.id == stream)
                .and_then(|s| s.peer);
            let short = reg.add_stream(
                stream,
                StreamMeta {
                    transport,
                    remote: remote.clone(),
                    local,
                    target: None,
                    retired: false,
                },
            );
            limited!(
                Noisy::Stream,
                info,
                "stream {short} up: peer {} ({transport} {remote}, accepted)",
                peer.map_or("-".into(), |p| p.short())
            );
        }
        Err(astral_tokio::Error::Shutdown) => {}
        Err(astral_tokio::Error::Inbound {
            peer: Some(peer),
            reason: StreamCloseReason::NotAllowed,
        }) => {
            limited!(
                Noisy::Handshake,
                info,
                "refused {transport} {remote}: {peer} is not on the allow list (hung up before any session)"
            );
        }
        Err(e) => {
            limited!(
                Noisy::Handshake,
                info,
                "handshake from {transport} {remote} failed: {}",
                escape(&describe(&e))
            );
        }
    }
}
