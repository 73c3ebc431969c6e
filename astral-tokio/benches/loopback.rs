//! Loopback benchmark: one astral session over one stream against plain
//! snow over TCP with the same cipher (Noise_XK_25519_ChaChaPoly_BLAKE2s,
//! 65,519-byte records, no multiplexing), measured in the same run.
//!
//! `cargo bench -p astral-tokio --bench loopback`; environment:
//! `ASTRAL_BENCH_BYTES` (default 1 GiB), `ASTRAL_BENCH_ECHO` (round trips,
//! default 20,000), `ASTRAL_BENCH_ROUNDS` (alternating rounds, default 3;
//! the best round of each is reported).

use std::time::{Duration, Instant};

use astral_tokio::{astral_core, Config, Identity, Node};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";
const MAX_PLAIN: usize = 65_519;
const CHUNK: usize = 64 * 1024;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ----- snow over TCP ------------------------------------------------------

struct Framed {
    tcp: TcpStream,
    rx: BytesMut,
}

impl Framed {
    async fn send(&mut self, frame: &[u8]) {
        let mut out = Vec::with_capacity(frame.len() + 2);
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
        self.tcp.write_all(&out).await.unwrap();
    }
    /// The next length-prefixed frame, or None at EOF.
    async fn recv(&mut self) -> Option<BytesMut> {
        loop {
            if self.rx.len() >= 2 {
                let len = u16::from_be_bytes([self.rx[0], self.rx[1]]) as usize;
                if self.rx.len() >= 2 + len {
                    self.rx.advance(2);
                    return Some(self.rx.split_to(len));
                }
            }
            self.rx.reserve(256 * 1024);
            if self.tcp.read_buf(&mut self.rx).await.unwrap() == 0 {
                return None;
            }
        }
    }
}

async fn snow_pair() -> (Framed, snow::TransportState, Framed, snow::TransportState) {
    // Keys and ephemerals from astral's seeded resolver (the workspace
    // builds snow without an OS RNG); the cipher suite is snow's own.
    let server_key = Identity::from_seed([11; 32]);
    let client_key = Identity::from_seed([12; 32]);
    let builder = |seed: u8| {
        let resolver = astral_core::noise::SeededResolver::new([seed; 32]);
        snow::Builder::with_resolver(PATTERN.parse().unwrap(), Box::new(resolver))
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_private = server_key.private_bytes();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut f = Framed {
            tcp,
            rx: BytesMut::new(),
        };
        let mut hs = builder(21)
            .local_private_key(&server_private)
            .unwrap()
            .build_responder()
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let m = f.recv().await.unwrap();
        hs.read_message(&m, &mut buf).unwrap();
        let n = hs.write_message(&[], &mut buf).unwrap();
        f.send(&buf[..n]).await;
        let m = f.recv().await.unwrap();
        hs.read_message(&m, &mut buf).unwrap();
        (f, hs.into_transport_mode().unwrap())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut f = Framed {
        tcp,
        rx: BytesMut::new(),
    };
    let mut hs = builder(22)
        .local_private_key(&client_key.private_bytes())
        .unwrap()
        .remote_public_key(server_key.node_id().as_bytes())
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut buf).unwrap();
    f.send(&buf[..n]).await;
    let m = f.recv().await.unwrap();
    hs.read_message(&m, &mut buf).unwrap();
    let n = hs.write_message(&[], &mut buf).unwrap();
    f.send(&buf[..n]).await;
    let client = hs.into_transport_mode().unwrap();
    let (sf, server) = server.await.unwrap();
    (f, client, sf, server)
}

async fn snow_goodput(total: u64) -> f64 {
    let (mut cf, mut client, mut sf, mut server) = snow_pair().await;
    let recv = tokio::spawn(async move {
        let mut plain = vec![0u8; MAX_PLAIN];
        let mut got = 0u64;
        while let Some(rec) = sf.recv().await {
            got += server.read_message(&rec, &mut plain).unwrap() as u64;
        }
        got
    });
    let data = vec![0x5au8; MAX_PLAIN];
    let mut out = vec![0u8; 2 + MAX_PLAIN + 16];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(MAX_PLAIN as u64) as usize;
        let len = client.write_message(&data[..n], &mut out[2..]).unwrap();
        out[..2].copy_from_slice(&(len as u16).to_be_bytes());
        cf.tcp.write_all(&out[..2 + len]).await.unwrap();
        sent += n as u64;
    }
    cf.tcp.shutdown().await.unwrap();
    let got = recv.await.unwrap();
    assert_eq!(got, total);
    total as f64 / t0.elapsed().as_secs_f64()
}

async fn snow_echo(rounds: usize) -> Vec<Duration> {
    let (mut cf, mut client, mut sf, mut server) = snow_pair().await;
    tokio::spawn(async move {
        let mut plain = [0u8; 64];
        let mut out = [0u8; 64];
        while let Some(rec) = sf.recv().await {
            let n = server.read_message(&rec, &mut plain).unwrap();
            let len = server.write_message(&plain[..n], &mut out).unwrap();
            sf.send(&out[..len]).await;
        }
    });
    let mut plain = [0u8; 64];
    let mut out = [0u8; 64];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        let len = client.write_message(&[i as u8], &mut out).unwrap();
        cf.send(&out[..len]).await;
        let rec = cf.recv().await.unwrap();
        let n = client.read_message(&rec, &mut plain).unwrap();
        assert_eq!(&plain[..n], &[i as u8]);
        samples.push(t.elapsed());
    }
    samples
}

// ----- astral ---------------------------------------------------------------

async fn astral_pair() -> (Node, Node) {
    let config = Config {
        auto_migrate: false,
        ..Config::default()
    };
    let a = Node::new(Identity::from_seed([1; 32]), config.clone());
    let b = Node::new(Identity::from_seed([2; 32]), config);
    let addr = b.listen("127.0.0.1:0").await.unwrap();
    a.connect(b.id(), addr).await.unwrap();
    (a, b)
}

async fn astral_goodput(total: u64) -> f64 {
    let (a, b) = astral_pair().await;
    let bb = b.clone();
    let recv = tokio::spawn(async move {
        let q = bb.next_query().await.unwrap();
        let mut s = q.accept().unwrap();
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return got;
            }
            got += n as u64;
        }
    });
    let mut s = a.open(b.id(), "sink").await.unwrap();
    let data = vec![0x5au8; CHUNK];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(CHUNK as u64) as usize;
        s.write_all(&data[..n]).await.unwrap();
        sent += n as u64;
    }
    s.shutdown().await.unwrap();
    let got = recv.await.unwrap();
    assert_eq!(got, total);
    let r = total as f64 / t0.elapsed().as_secs_f64();
    a.shutdown();
    b.shutdown();
    r
}

async fn astral_echo(rounds: usize) -> Vec<Duration> {
    let (a, b) = astral_pair().await;
    let bb = b.clone();
    tokio::spawn(async move {
        let q = bb.next_query().await.unwrap();
        let mut s = q.accept().unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let mut s = a.open(b.id(), "echo").await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    let mut one = [0u8; 1];
    for i in 0..rounds {
        let t = Instant::now();
        s.write_all(&[i as u8]).await.unwrap();
        s.read_exact(&mut one).await.unwrap();
        assert_eq!(one[0], i as u8);
        samples.push(t.elapsed());
    }
    a.shutdown();
    b.shutdown();
    samples
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let total = env("ASTRAL_BENCH_BYTES", 1 << 30);
    let echo = env("ASTRAL_BENCH_ECHO", 20_000) as usize;
    let rounds = env("ASTRAL_BENCH_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut sg, mut ag) = (0f64, 0f64);
        let (mut s50, mut s99, mut a50, mut a99) =
            (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            sg = sg.max(snow_goodput(total).await);
            ag = ag.max(astral_goodput(total).await);
            let mut s = snow_echo(echo).await;
            let mut a = astral_echo(echo).await;
            s50 = s50.min(pct(&mut s, 0.5));
            s99 = s99.min(pct(&mut s, 0.99));
            a50 = a50.min(pct(&mut a, 0.5));
            a99 = a99.min(pct(&mut a, 0.99));
        }
        let mib = |b: f64| b / (1024.0 * 1024.0);
        println!(
            "loopback TCP, {} MiB per goodput run, {echo} echo round trips, best of {rounds}",
            total >> 20
        );
        println!(
            "{:<28} {:>14} {:>12} {:>12}",
            "", "goodput MiB/s", "echo p50", "echo p99"
        );
        println!(
            "{:<28} {:>14.0} {:>12.1?} {:>12.1?}",
            "snow over TCP (baseline)",
            mib(sg),
            s50,
            s99
        );
        println!(
            "{:<28} {:>14.0} {:>12.1?} {:>12.1?}",
            "astral session (1 stream)",
            mib(ag),
            a50,
            a99
        );
        println!(
            "{:<28} {:>13.1}% {:>11.2}x {:>11.2}x",
            "astral / snow",
            100.0 * ag / sg,
            a50.as_secs_f64() / s50.as_secs_f64(),
            a99.as_secs_f64() / s99.as_secs_f64()
        );
        println!("targets: goodput >= 90%, echo p50 <= 1.15x");
    });
}
