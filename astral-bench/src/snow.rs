//! The snow-over-TCP baseline: Noise without multiplexing, the "ceiling" of
//! astral's design. It is the only snow baseline of the workspace: the
//! `astral bench` table, the loopback bench and the peer comparison harness
//! (where yamux runs over it) all use this one.
//!
//! Handshake: `Noise_XK_25519_ChaChaPoly_BLAKE2s` (or `..._AESGCM_...`, see
//! [`Cipher`]), each handshake message framed as `u16 len || message`. Transport: records of
//! `u16 len || ciphertext`, at most [`MAX_PLAIN`] plaintext bytes each.
//!
//! [`SnowStream`] implements tokio's `AsyncRead`/`AsyncWrite`. Small writes
//! are coalesced into one record until the record is full or the stream is
//! flushed (yamux writes a 12-byte header and the body separately, then
//! flushes); a write of at least a full record is sealed straight from the
//! caller's buffer (bytes pending before it go out as a short record
//! first), and a record is opened straight into the caller's buffer when it
//! has room. Bulk transfer so copies each byte twice in user space, both
//! inside snow (`write_message` copies the plaintext into the record and
//! `read_message` the ciphertext into the output; each then works in place).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::contender::{Res, Transport};
use crate::tcp::{take_once, tcp_accept, tcp_connect, tcp_listen};
use crate::Cipher;
use tokio::net::TcpListener;

/// The Noise protocol name of the baseline with `cipher` (astral's own
/// suites: same pattern, DH and hash).
pub fn noise_params(cipher: Cipher) -> &'static str {
    match cipher {
        Cipher::ChaChaPoly => "Noise_XK_25519_ChaChaPoly_BLAKE2s",
        Cipher::AesGcm => "Noise_XK_25519_AESGCM_BLAKE2s",
    }
}
/// Poly1305 tag length.
const TAG: usize = 16;
/// Largest record body: the whole `u16` range.
const MAX_RECORD: usize = u16::MAX as usize;
/// Largest plaintext per record (65535 - 16).
pub const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// Largest record on the wire, length prefix included.
const MAX_WIRE: usize = 2 + MAX_RECORD;
/// Sealed records waiting for the socket: room for two full records.
const WBUF: usize = 2 * MAX_WIRE;
/// Raw bytes read from the socket: room for four full records (reads fill
/// at most three, so the record a read ends in always fits behind them).
const RBUF: usize = 4 * MAX_WIRE;

/// Static keys: the responder's key pair, which the XK initiator must know
/// in advance, and the initiator's own static key pair.
pub struct NoiseKeys {
    /// The responder's private key.
    pub server_private: Vec<u8>,
    /// The responder's public key (known to the initiator in advance).
    pub server_public: Vec<u8>,
    /// The initiator's private key.
    pub client_private: Vec<u8>,
}

impl NoiseKeys {
    /// Fresh key pairs from the OS generator.
    pub fn generate() -> Res<Self> {
        let builder = snow::Builder::new(noise_params(Cipher::ChaChaPoly).parse()?);
        let server = builder.generate_keypair()?;
        let client = builder.generate_keypair()?;
        Ok(Self {
            server_private: server.private,
            server_public: server.public,
            client_private: client.private,
        })
    }
}

/// The baseline uses the same cipher implementations as astral (ring's
/// ChaCha20-Poly1305 / AES-GCM; snow's own BLAKE2s and X25519), so "snow
/// over TCP" is the ceiling of the same cipher, not of a slower library.
fn resolver() -> snow::resolvers::BoxedCryptoResolver {
    use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
    Box::new(FallbackResolver::new(
        Box::new(RingResolver),
        Box::new(DefaultResolver),
    ))
}

async fn send_frame(tcp: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut frame = Vec::with_capacity(2 + msg.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(msg);
    tcp.write_all(&frame).await
}

async fn recv_frame(tcp: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut msg).await?;
    Ok(msg)
}

/// XK initiator: `-> e, es`, `<- e, ee`, `-> s, se`.
pub async fn handshake_initiator(
    mut tcp: TcpStream,
    keys: &NoiseKeys,
    cipher: Cipher,
) -> Res<SnowStream> {
    let mut hs = snow::Builder::with_resolver(noise_params(cipher).parse()?, resolver())
        .local_private_key(&keys.client_private)?
        .remote_public_key(&keys.server_public)?
        .build_initiator()?;
    let mut msg = vec![0u8; MAX_RECORD];
    let mut payload = vec![0u8; MAX_RECORD];
    let n = hs.write_message(&[], &mut msg)?;
    send_frame(&mut tcp, &msg[..n]).await?;
    let reply = recv_frame(&mut tcp).await?;
    hs.read_message(&reply, &mut payload)?;
    let n = hs.write_message(&[], &mut msg)?;
    send_frame(&mut tcp, &msg[..n]).await?;
    Ok(SnowStream::new(tcp, hs.into_transport_mode()?))
}

/// XK responder.
pub async fn handshake_responder(
    mut tcp: TcpStream,
    keys: &NoiseKeys,
    cipher: Cipher,
) -> Res<SnowStream> {
    let mut hs = snow::Builder::with_resolver(noise_params(cipher).parse()?, resolver())
        .local_private_key(&keys.server_private)?
        .build_responder()?;
    let mut msg = vec![0u8; MAX_RECORD];
    let mut payload = vec![0u8; MAX_RECORD];
    let first = recv_frame(&mut tcp).await?;
    hs.read_message(&first, &mut payload)?;
    let n = hs.write_message(&[], &mut msg)?;
    send_frame(&mut tcp, &msg[..n]).await?;
    let third = recv_frame(&mut tcp).await?;
    hs.read_message(&third, &mut payload)?;
    Ok(SnowStream::new(tcp, hs.into_transport_mode()?))
}

fn noise_err(e: snow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Seal `plain` as one record appended at `wbuf[*wlen..]`.
fn seal(
    ts: &mut snow::TransportState,
    plain: &[u8],
    wbuf: &mut [u8],
    wlen: &mut usize,
) -> io::Result<()> {
    debug_assert!(plain.len() <= MAX_PLAIN && *wlen + MAX_WIRE <= wbuf.len());
    let at = *wlen;
    let n = ts
        .write_message(plain, &mut wbuf[at + 2..at + 2 + plain.len() + TAG])
        .map_err(noise_err)?;
    let len = u16::try_from(n).map_err(|_| io::Error::other("record too long"))?;
    wbuf[at..at + 2].copy_from_slice(&len.to_be_bytes());
    *wlen = at + 2 + n;
    Ok(())
}

/// An established Noise transport over one TCP connection.
pub struct SnowStream {
    tcp: TcpStream,
    ts: snow::TransportState,
    /// Plaintext accepted by `poll_write` but not sealed yet.
    wplain: Vec<u8>,
    /// Sealed records; `wbuf[wpos..wlen]` is still to be written.
    wbuf: Box<[u8]>,
    wpos: usize,
    wlen: usize,
    /// Raw socket bytes; `rbuf[rstart..rend]` is unparsed.
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Opened plaintext not yet handed out; `plain[ppos..]` is unread.
    plain: Vec<u8>,
    ppos: usize,
}

impl SnowStream {
    fn new(tcp: TcpStream, ts: snow::TransportState) -> Self {
        Self {
            tcp,
            ts,
            wplain: Vec::with_capacity(MAX_PLAIN),
            wbuf: vec![0u8; WBUF].into_boxed_slice(),
            wpos: 0,
            wlen: 0,
            rbuf: vec![0u8; RBUF].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            plain: Vec::with_capacity(MAX_PLAIN),
            ppos: 0,
        }
    }

    /// Write out every sealed record; `Ready(Ok)` only once all are written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wlen {
            let n =
                ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.wbuf[self.wpos..self.wlen]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wpos = 0;
        self.wlen = 0;
        Poll::Ready(Ok(()))
    }

    /// Make room for one more full record in `wbuf`.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.wlen + MAX_WIRE > self.wbuf.len() {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn seal_pending(&mut self) -> io::Result<()> {
        let r = seal(&mut self.ts, &self.wplain, &mut self.wbuf, &mut self.wlen);
        self.wplain.clear();
        r
    }
}

impl AsyncWrite for SnowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_room(cx))?;
        if !this.wplain.is_empty() && buf.len() >= MAX_PLAIN {
            // A write that fills a record by itself: close the pending bytes
            // as a short record instead of copying the whole write behind
            // them (64 KiB writes leave 17 bytes pending after every 65,519
            // byte record, and topping those up copied every byte).
            this.seal_pending()?;
            ready!(this.poll_room(cx))?;
        }
        let n = if this.wplain.is_empty() && buf.len() >= MAX_PLAIN {
            seal(
                &mut this.ts,
                &buf[..MAX_PLAIN],
                &mut this.wbuf,
                &mut this.wlen,
            )?;
            MAX_PLAIN
        } else {
            let n = buf.len().min(MAX_PLAIN - this.wplain.len());
            this.wplain.extend_from_slice(&buf[..n]);
            if this.wplain.len() == MAX_PLAIN {
                this.seal_pending()?;
            }
            n
        };
        // Start sending right away; a full socket is not an error here, the
        // records stay queued for the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.wplain.is_empty() {
            ready!(this.poll_room(cx))?;
            this.seal_pending()?;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl AsyncRead for SnowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ppos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.ppos);
                buf.put_slice(&this.plain[this.ppos..this.ppos + n]);
                this.ppos += n;
                return Poll::Ready(Ok(()));
            }
            let avail = this.rend - this.rstart;
            if avail >= 2 {
                let head = [this.rbuf[this.rstart], this.rbuf[this.rstart + 1]];
                let len = usize::from(u16::from_be_bytes(head));
                if len < TAG {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "short record",
                    )));
                }
                if avail >= 2 + len {
                    let rec = &this.rbuf[this.rstart + 2..this.rstart + 2 + len];
                    this.rstart += 2 + len;
                    if buf.remaining() >= len - TAG {
                        // Open straight into the caller's buffer.
                        let dst = buf.initialize_unfilled();
                        let n = this.ts.read_message(rec, dst).map_err(noise_err)?;
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    this.plain.resize(len - TAG, 0);
                    let n = this
                        .ts
                        .read_message(rec, &mut this.plain)
                        .map_err(noise_err)?;
                    this.plain.truncate(n);
                    this.ppos = 0;
                    continue;
                }
            }
            // Bytes the record at `rstart` needs in all (2 while its
            // length is unknown).
            let need = if avail >= 2 {
                2 + usize::from(u16::from_be_bytes([
                    this.rbuf[this.rstart],
                    this.rbuf[this.rstart + 1],
                ]))
            } else {
                2
            };
            // Read big only into an empty buffer, and then leave room for
            // one whole record; with a record pending, read just its rest.
            // The buffer so ends every read on a record boundary and never
            // moves bytes (moving straddling records copied a third of all
            // bytes when short and full records alternate).
            let end = if this.rstart == this.rend {
                this.rstart = 0;
                this.rend = 0;
                this.rbuf.len() - MAX_WIRE
            } else {
                if this.rstart + need > this.rbuf.len() {
                    // Not reached while reads end on record boundaries;
                    // kept so that any framing still fits.
                    this.rbuf.copy_within(this.rstart..this.rend, 0);
                    this.rend -= this.rstart;
                    this.rstart = 0;
                }
                this.rstart + need
            };
            let mut rb = ReadBuf::new(&mut this.rbuf[this.rend..end]);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                if this.rstart == this.rend {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            this.rend += n;
        }
    }
}

/// Noise XK over TCP, one Noise session per TCP connection (not
/// multiplexed: every session is a connection of its own).
#[derive(Clone)]
pub struct SnowTcp {
    keys: Arc<NoiseKeys>,
    cipher: Cipher,
}

impl SnowTcp {
    /// The baseline with `cipher` records and fresh static keys.
    pub fn new(cipher: Cipher) -> Res<Self> {
        Ok(Self {
            keys: Arc::new(NoiseKeys::generate()?),
            cipher,
        })
    }

    /// The record cipher.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Server side of the handshake over an accepted TCP connection.
    pub async fn respond(&self, tcp: TcpStream) -> Res<SnowStream> {
        handshake_responder(tcp, &self.keys, self.cipher).await
    }

    /// Client side: handshake over a connected TCP stream.
    pub async fn initiate(&self, tcp: TcpStream) -> Res<SnowStream> {
        handshake_initiator(tcp, &self.keys, self.cipher).await
    }
}

impl Transport for SnowTcp {
    type Listener = TcpListener;
    type Incoming = TcpStream;
    type Conn = Option<SnowStream>;
    type Stream = SnowStream;

    fn name(&self) -> String {
        match self.cipher {
            Cipher::ChaChaPoly => "snow-tcp".into(),
            Cipher::AesGcm => "snow-tcp-aes".into(),
        }
    }
    fn cipher(&self) -> Option<Cipher> {
        Some(self.cipher)
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
        Ok(Some(self.respond(inc).await?))
    }
    async fn accept_stream(&self, c: &mut Option<SnowStream>) -> Res<Option<SnowStream>> {
        Ok(c.take())
    }
    async fn connect(&self, addr: SocketAddr) -> Res<Option<SnowStream>> {
        let tcp = tcp_connect(addr).await?;
        Ok(Some(self.initiate(tcp).await?))
    }
    async fn open_stream(&self, c: &mut Option<SnowStream>) -> Res<SnowStream> {
        take_once(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contender::pattern;
    use crate::tcp::{tcp_accept, tcp_connect, tcp_listen};

    /// 64 KiB writes do not line up with 65,519-byte records: every write
    /// after the first finds bytes pending and takes the short-record path.
    /// The receiver must still see every byte, in order.
    #[tokio::test]
    async fn misaligned_large_and_small_writes_arrive_intact() {
        for cipher in [Cipher::ChaChaPoly, Cipher::AesGcm] {
            let snow = SnowTcp::new(cipher).unwrap();
            let (mut l, addr) = tcp_listen().await.unwrap();
            let server = snow.clone();
            let reader = tokio::spawn(async move {
                let tcp = tcp_accept(&mut l).await.unwrap();
                let mut s = server.respond(tcp).await.unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                got
            });
            let mut c = snow
                .initiate(tcp_connect(addr).await.unwrap())
                .await
                .unwrap();
            let data = pattern(1 << 20);
            let mut sent = 0;
            for (i, size) in [65_536, 65_536, 3, 200_000, 65_519, 1, 65_535, 70_000]
                .into_iter()
                .cycle()
                .enumerate()
            {
                let end = (sent + size).min(data.len());
                c.write_all(&data[sent..end]).await.unwrap();
                if i % 5 == 4 {
                    c.flush().await.unwrap();
                }
                sent = end;
                if sent == data.len() {
                    break;
                }
            }
            c.shutdown().await.unwrap();
            let got = reader.await.unwrap();
            assert_eq!(got.len(), data.len(), "{cipher:?}");
            assert!(got == data, "{cipher:?}: bytes differ");
        }
    }
}
