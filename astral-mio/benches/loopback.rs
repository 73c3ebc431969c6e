//! Loopback benchmark of the mio driver: one-session goodput over one
//! encrypted stream, and 1-byte echo round-trip latency (p50/p99), between
//! two nodes in two threads over loopback TCP.
//!
//! `cargo bench -p astral-mio --bench loopback`; environment (same as the
//! tokio driver's bench, for side-by-side numbers): `ASTRAL_BENCH_BYTES`
//! (default 1 GiB), `ASTRAL_BENCH_ECHO` (round trips, default 20,000),
//! `ASTRAL_BENCH_ROUNDS` (rounds, default 3; the best is reported).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astral_core::{Config, Identity};
use astral_mio::{Event, MioNode, NodeId, SessionId};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> Config {
    Config {
        auto_migrate: false,
        ..Config::default()
    }
}

/// Server: "sink" reads and discards, half-closing at EOF; "echo" echoes.
fn spawn_server(stop: Arc<AtomicBool>) -> (NodeId, SocketAddr, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut node = MioNode::new(Identity::from_seed([1; 32]), config(), 1).expect("node");
        let addr = node
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        tx.send((node.local_id(), addr)).expect("main");
        let mut echo: std::collections::HashMap<SessionId, bool> = Default::default();
        let mut buf = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            node.run_once(Some(Duration::from_millis(100)))
                .expect("run");
            while let Some(ev) = node.poll_event() {
                match ev {
                    Event::Query { session, query, .. } => {
                        echo.insert(session, query == "echo");
                        node.accept_query(session).expect("accept");
                    }
                    Event::Readable { session } => {
                        let is_echo = echo.get(&session).copied().unwrap_or(false);
                        let Some(mut s) = node.session(session) else {
                            continue;
                        };
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    s.finish();
                                    break;
                                }
                                Ok(n) if is_echo => {
                                    // Echo payloads are tiny: the send buffer takes them.
                                    s.write(&buf[..n]).expect("echo write");
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    }
                    Event::SessionClosed { session, .. } => {
                        echo.remove(&session);
                    }
                    _ => {}
                }
            }
        }
    });
    let (id, addr) = rx.recv().expect("server up");
    (id, addr, t)
}

fn client(server: NodeId, addr: SocketAddr) -> io::Result<MioNode> {
    let mut node = MioNode::new(Identity::from_seed([2; 32]), config(), 2)?;
    node.connect(server, addr)?;
    Ok(node)
}

fn open(node: &mut MioNode, server: NodeId, query: &str) -> SessionId {
    let id = node.open_session(server, query).expect("open");
    loop {
        node.run_once(None).expect("run");
        while let Some(ev) = node.poll_event() {
            if ev == (Event::SessionOpen { session: id }) {
                return id;
            }
        }
    }
}

/// Bytes per second of one session, writer to the reader's end-of-stream.
fn goodput(node: &mut MioNode, server: NodeId, total: u64) -> f64 {
    let id = open(node, server, "sink");
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut sent = 0u64;
    let start = Instant::now();
    let write = |node: &mut MioNode, sent: &mut u64| {
        let Some(mut s) = node.session(id) else {
            return;
        };
        while *sent < total {
            let n = (total - *sent).min(chunk.len() as u64) as usize;
            match s.write(&chunk[..n]) {
                Ok(k) => *sent += k as u64,
                Err(_) => return,
            }
        }
        s.finish();
    };
    write(node, &mut sent);
    let mut buf = [0u8; 64];
    loop {
        node.run_once(None).expect("run");
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Writable { session } if session == id => write(node, &mut sent),
                Event::Readable { session } if session == id => {
                    // The server half-closes after reading everything.
                    if let Some(Ok(0)) = node.session(id).map(|mut s| s.read(&mut buf)) {
                        return total as f64 / start.elapsed().as_secs_f64();
                    }
                }
                Event::SessionClosed { session, .. } if session == id => {
                    return total as f64 / start.elapsed().as_secs_f64();
                }
                _ => {}
            }
        }
    }
}

/// Round-trip times of 1-byte echoes.
fn echo(node: &mut MioNode, server: NodeId, rounds: usize) -> Vec<Duration> {
    let id = open(node, server, "echo");
    let mut out = Vec::with_capacity(rounds);
    let mut buf = [0u8; 16];
    for i in 0..rounds {
        let start = Instant::now();
        node.session(id)
            .expect("session")
            .write(&[i as u8])
            .expect("write");
        'wait: loop {
            node.run_once(None).expect("run");
            while let Some(ev) = node.poll_event() {
                if ev == (Event::Readable { session: id }) {
                    let n = node
                        .session(id)
                        .expect("session")
                        .read(&mut buf)
                        .expect("read");
                    assert_eq!((n, buf[0]), (1, i as u8));
                    break 'wait;
                }
            }
        }
        out.push(start.elapsed());
    }
    if let Some(mut s) = node.session(id) {
        s.close();
    }
    out
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let total = env("ASTRAL_BENCH_BYTES", 1 << 30);
    let echo_rounds = env("ASTRAL_BENCH_ECHO", 20_000) as usize;
    let rounds = env("ASTRAL_BENCH_ROUNDS", 3).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let (server, addr, t) = spawn_server(stop.clone());
    let mut node = client(server, addr).expect("client");
    let (mut best_goodput, mut best_p50, mut best_p99) = (0f64, Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        best_goodput = best_goodput.max(goodput(&mut node, server, total));
        let mut samples = echo(&mut node, server, echo_rounds);
        let (p50, p99) = (pct(&mut samples, 0.50), pct(&mut samples, 0.99));
        if p50 < best_p50 {
            (best_p50, best_p99) = (p50, p99);
        }
    }
    println!(
        "loopback TCP, {} MiB per goodput run, {echo_rounds} echo round trips, best of {rounds}",
        total >> 20
    );
    println!(
        "{:<28} {:>14} {:>12} {:>12}",
        "", "goodput MiB/s", "echo p50", "echo p99"
    );
    println!(
        "{:<28} {:>14.0} {:>12.1?} {:>12.1?}",
        "astral-mio session",
        best_goodput / (1024.0 * 1024.0),
        best_p50,
        best_p99
    );
    stop.store(true, Ordering::Relaxed);
    t.join().expect("server");
}
