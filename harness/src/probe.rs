//! Small plain-TCP tools for both ends of an emulated path: one server that
//! echoes, sinks or sources bytes, and clients that measure round trips
//! and bulk goodput. The self-tests assert the emulator with them and the
//! WAN benchmark uses them as the plain-TCP contender.
//!
//! Protocol: the client's first byte picks the service.
//! * `E`: echo every byte until end-of-stream, then half-close.
//! * `S`: sink: read until end-of-stream, then reply with the byte count
//!   (u64 big-endian) and close. The reply is the sender's proof of delivery.
//! * `G` + u64 big-endian `n`: send `n` bytes, then half-close.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::task::JoinHandle;

/// Write size of the bulk clients and the source service.
pub const WRITE_SIZE: usize = 64 << 10;

/// A running probe server; stops when dropped.
pub struct ProbeServer {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl ProbeServer {
    /// Listens on `addr` and serves every connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// use astral_harness::probe;
    /// let server = probe::ProbeServer::start("127.0.0.1:0").await?;
    /// let rtts = probe::rtt(server.local_addr(), 3, None).await?;
    /// assert_eq!(rtts.len(), 3);
    /// let up = probe::upload(server.local_addr(), 1 << 20, None).await?;
    /// assert_eq!(up.bytes, 1 << 20);
    /// # Ok(()) }
    /// ```
    pub async fn start(addr: impl ToSocketAddrs) -> io::Result<ProbeServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        tokio::spawn(async move {
                            if let Err(e) = serve(conn).await {
                                tracing::debug!(%e, "probe connection failed");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%e, "probe accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        Ok(ProbeServer { local, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut c: TcpStream) -> io::Result<()> {
    let _ = c.set_nodelay(true);
    let mut buf = vec![0u8; WRITE_SIZE];
    match c.read_u8().await? {
        b'E' => {
            loop {
                let n = c.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                c.write_all(&buf[..n]).await?;
            }
            c.shutdown().await
        }
        b'S' => {
            let mut total: u64 = 0;
            loop {
                let n = c.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            c.write_u64(total).await?;
            c.shutdown().await
        }
        b'G' => {
            let mut left = c.read_u64().await?;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                c.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            c.shutdown().await
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown probe service {other:#x}"),
        )),
    }
}

/// Connects to `addr`, from `bind` (an address of this host, port chosen by
/// the kernel) if given.
pub async fn connect_from(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// `count` one-byte round trips on one connection to the echo service.
pub async fn rtt(
    addr: SocketAddr,
    count: usize,
    bind: Option<IpAddr>,
) -> io::Result<Vec<Duration>> {
    let mut c = connect_from(addr, bind).await?;
    c.write_u8(b'E').await?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        c.write_u8(i as u8).await?;
        let b = c.read_u8().await?;
        if b != i as u8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "echo returned another byte",
            ));
        }
        out.push(t.elapsed());
    }
    c.shutdown().await?;
    Ok(out)
}

/// A finished bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Transfer {
    /// Bytes delivered.
    pub bytes: u64,
    /// From the connection's first byte to the proof of delivery.
    pub secs: f64,
    /// Downloads only: goodput over the second half of the bytes, timed by
    /// the receiver (the steady rate, without connection setup and slow
    /// start).
    pub tail_mbit_per_sec: Option<f64>,
}

impl Transfer {
    /// Goodput in Mbit/s.
    pub fn mbit_per_sec(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }
}

/// Sends `bytes` to the sink service and waits for its count: the time
/// covers every byte's delivery.
pub async fn upload(addr: SocketAddr, bytes: u64, bind: Option<IpAddr>) -> io::Result<Transfer> {
    let mut c = connect_from(addr, bind).await?;
    let buf = vec![0x5au8; WRITE_SIZE];
    let start = Instant::now();
    c.write_u8(b'S').await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        c.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    c.shutdown().await?;
    let got = c.read_u64().await?;
    let secs = start.elapsed().as_secs_f64();
    if got != bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sink counted {got} bytes of {bytes}"),
        ));
    }
    Ok(Transfer {
        bytes,
        secs,
        tail_mbit_per_sec: None,
    })
}

/// Asks the source service for `bytes` and reads them to the end.
pub async fn download(addr: SocketAddr, bytes: u64, bind: Option<IpAddr>) -> io::Result<Transfer> {
    let mut c = connect_from(addr, bind).await?;
    let mut buf = vec![0u8; WRITE_SIZE];
    let start = Instant::now();
    c.write_u8(b'G').await?;
    c.write_u64(bytes).await?;
    let mut got: u64 = 0;
    let mut half: Option<Instant> = None;
    loop {
        let n = c.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
        if half.is_none() && got >= bytes / 2 {
            half = Some(Instant::now());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let tail_mbit_per_sec = half.map(|h| {
        let tail = (bytes - bytes / 2) as f64;
        tail * 8.0 / h.elapsed().as_secs_f64().max(1e-9) / 1e6
    });
    if got != bytes {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("received {got} bytes of {bytes}"),
        ));
    }
    Ok(Transfer {
        bytes,
        secs,
        tail_mbit_per_sec,
    })
}

/// The median of some durations (the upper one of the two middle values).
pub fn median(v: &[Duration]) -> Option<Duration> {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied()
}
