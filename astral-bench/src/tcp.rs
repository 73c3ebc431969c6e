//! Raw TCP over loopback (no crypto): the floor every contender is read
//! against, and the socket helpers the other TCP-based contenders share.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::contender::{Res, Transport};
use crate::Cipher;

/// `127.0.0.1:0`: every contender listens on loopback only.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A listener on a fresh loopback port, and its address.
pub async fn tcp_listen() -> Res<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(loopback()).await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

/// The next accepted connection, with `TCP_NODELAY` (as every contender).
pub async fn tcp_accept(l: &mut TcpListener) -> Res<TcpStream> {
    let (s, _) = l.accept().await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A connection to `addr`, with `TCP_NODELAY`.
pub async fn tcp_connect(addr: SocketAddr) -> Res<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The one stream of a connection that is not multiplexed.
pub fn take_once<S>(c: &mut Option<S>) -> Res<S> {
    c.take()
        .ok_or_else(|| "connection is not multiplexed: one stream only".into())
}

/// Plain TCP over loopback, `TCP_NODELAY`; one connection per session.
#[derive(Clone, Debug)]
pub struct RawTcp;

impl Transport for RawTcp {
    type Listener = TcpListener;
    type Incoming = TcpStream;
    type Conn = Option<TcpStream>;
    type Stream = TcpStream;

    fn name(&self) -> String {
        "tcp".into()
    }
    fn cipher(&self) -> Option<Cipher> {
        None
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
