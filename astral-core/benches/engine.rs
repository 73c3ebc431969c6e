//! Engine benchmarks (plain `main`, prints a table):
//!
//! 1. one session moving `ASTRAL_BENCH_BYTES` (default 1 GiB) between two
//!    in-memory nodes with real ChaChaPoly records;
//! 2. the same with the no-security cipher (`--features fuzzing`), which
//!    shows the engine's own cost;
//! 3. snow's own `write_message` + `read_message` on 65,519-byte messages,
//!    the ceiling for (1);
//! 4. opening 100k sessions (query, accept, response) and the heap bytes an
//!    idle session costs at each end, counted by a global allocator.
//!
//! Run: `cargo bench -p astral-core --bench engine [--features fuzzing]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use astral_core::{Config, Event, Identity, Node, StreamId, Timestamp};
use bytes::{Bytes, BytesMut};

struct Counting;
static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        HEAP.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Pair {
    a: Node,
    b: Node,
    sa: StreamId,
    sb: StreamId,
    buf: BytesMut,
    now: Timestamp,
}

impl Pair {
    fn handshake(config: Config) -> Pair {
        let mut a =
            Node::new(Identity::from_seed([1; 32]), config.clone(), 1).expect("valid config");
        let mut b = Node::new(Identity::from_seed([2; 32]), config, 2).expect("valid config");
        let now = Timestamp::ZERO;
        let sa = a.connect(now, b.local_id()).expect("connect");
        let sb = b.accept(now).expect("accept");
        let mut p = Pair {
            a,
            b,
            sa,
            sb,
            buf: BytesMut::with_capacity(1 << 21),
            now,
        };
        for _ in 0..4 {
            p.pump();
        }
        p
    }

    #[cfg(feature = "fuzzing")]
    fn insecure(config: Config) -> Pair {
        let mut a =
            Node::new(Identity::from_seed([1; 32]), config.clone(), 1).expect("valid config");
        let mut b = Node::new(Identity::from_seed([2; 32]), config, 2).expect("valid config");
        let now = Timestamp::ZERO;
        let sa = a
            .insert_established_for_fuzzing(now, b.local_id(), 5)
            .expect("stream");
        let sb = b
            .insert_established_for_fuzzing(now, a.local_id(), 5)
            .expect("stream");
        Pair {
            a,
            b,
            sa,
            sb,
            buf: BytesMut::with_capacity(1 << 21),
            now,
        }
    }

    /// Moves everything pending both ways once. Returns bytes moved.
    fn pump(&mut self) -> usize {
        let mut moved = 0;
        self.buf.clear();
        let n = self
            .a
            .poll_transmit(self.now, self.sa, &mut self.buf, 1 << 20);
        if n > 0 {
            self.b.handle_input(self.now, self.sb, &self.buf);
        }
        moved += n;
        self.buf.clear();
        let n = self
            .b
            .poll_transmit(self.now, self.sb, &mut self.buf, 1 << 20);
        if n > 0 {
            self.a.handle_input(self.now, self.sa, &self.buf);
        }
        moved + n
    }

    fn open(&mut self) -> (astral_core::SessionId, astral_core::SessionId) {
        let id = self
            .a
            .open_session(self.now, self.b.local_id(), "bulk")
            .expect("open");
        self.pump();
        let mut theirs = None;
        while let Some(e) = self.b.poll_event() {
            if let Event::Query { session, .. } = e {
                self.b.accept_query(self.now, session).expect("accept");
                theirs = Some(session);
            }
        }
        self.pump();
        (id, theirs.expect("query arrived"))
    }
}

fn bulk(mut p: Pair, total: u64) -> f64 {
    let (tx, rx) = p.open();
    let chunk = Bytes::from(vec![0x5a; 256 * 1024]);
    let mut sent = 0u64;
    let mut got = 0u64;
    let start = Instant::now();
    while got < total {
        if sent < total {
            let mut s = p.a.session(tx).expect("session");
            while sent < total {
                match s.write_bytes(chunk.clone()) {
                    Ok(n) => sent += n as u64,
                    Err(_) => break,
                }
            }
        }
        p.pump();
        let mut r = p.b.session(rx).expect("session");
        while let Ok(Some(c)) = r.read_chunk(usize::MAX) {
            got += c.len() as u64;
        }
        p.pump();
    }
    let secs = start.elapsed().as_secs_f64();
    total as f64 / secs / 1e9
}

fn snow_ceiling(total: u64, aes: bool) -> f64 {
    let name = if aes {
        "Noise_NN_25519_AESGCM_BLAKE2s"
    } else {
        "Noise_NN_25519_ChaChaPoly_BLAKE2s"
    };
    let params: snow::params::NoiseParams = name.parse().expect("params");
    let resolver = |seed| Box::new(astral_core::unstable::SeededResolver::new([seed; 32]));
    let mut i = snow::Builder::with_resolver(params.clone(), resolver(1))
        .build_initiator()
        .expect("init");
    let mut r = snow::Builder::with_resolver(params, resolver(2))
        .build_responder()
        .expect("resp");
    let mut m = vec![0u8; 65535];
    let mut pl = vec![0u8; 65535];
    let n = i.write_message(&[], &mut m).expect("m1");
    r.read_message(&m[..n], &mut pl).expect("m1");
    let n = r.write_message(&[], &mut m).expect("m2");
    i.read_message(&m[..n], &mut pl).expect("m2");
    let mut ti = i.into_transport_mode().expect("t");
    let mut tr = r.into_transport_mode().expect("t");
    let payload = vec![0x5a; 65519];
    let start = Instant::now();
    let mut done = 0u64;
    while done < total {
        let n = ti.write_message(&payload, &mut m).expect("enc");
        tr.read_message(&m[..n], &mut pl).expect("dec");
        done += payload.len() as u64;
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn open_many(n: usize, exchange: bool) -> (Duration, f64, f64) {
    let config = Config {
        max_pending_queries: n + 1,
        max_sessions_per_peer: n + 1,
        max_sessions: n + 1,
        ..Config::default()
    };
    let mut p = Pair::handshake(config);
    while p.a.poll_event().is_some() {}
    while p.b.poll_event().is_some() {}
    let heap_before = HEAP.load(Ordering::Relaxed);
    let start = Instant::now();
    let peer = p.b.local_id();
    for _ in 0..n {
        p.a.open_session(p.now, peer, "idle").expect("open");
    }
    while p.pump() > 0 {
        while let Some(e) = p.b.poll_event() {
            if let Event::Query { session, .. } = e {
                p.b.accept_query(p.now, session).expect("accept");
            }
        }
    }
    let mut opened = Vec::new();
    while let Some(e) = p.a.poll_event() {
        if let Event::SessionOpen { session } = e {
            opened.push(session);
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(opened.len(), n, "all sessions open");
    if exchange {
        // One byte each way on every session: what an idle session keeps
        // after it has been used.
        for id in &opened {
            p.a.session(*id)
                .expect("session")
                .write(b"x")
                .expect("write");
        }
        for _ in 0..4 {
            p.pump();
            while let Some(e) = p.b.poll_event() {
                if let Event::Readable { session } = e {
                    let mut s = p.b.session(session).expect("session");
                    let mut buf = [0u8; 8];
                    if s.read(&mut buf) == Ok(1) {
                        s.write(b"y").expect("write");
                    }
                }
            }
            while let Some(e) = p.a.poll_event() {
                if let Event::Readable { session } = e {
                    let mut buf = [0u8; 8];
                    let _ = p.a.session(session).expect("session").read(&mut buf);
                }
            }
        }
    }
    // Let the routing deadlines pass so that only idle state remains.
    for _ in 0..32 {
        p.now += Duration::from_secs(1);
        p.a.handle_timeout(p.now);
        p.b.handle_timeout(p.now);
        p.pump();
    }
    // Heap now holds both nodes' idle sessions; attribute it per end by
    // measuring one node's share: drop the other node and compare.
    let both = HEAP.load(Ordering::Relaxed) - heap_before;
    let Pair { a, b, buf, .. } = p;
    drop(buf);
    let with_both = HEAP.load(Ordering::Relaxed);
    drop(a);
    let with_b = HEAP.load(Ordering::Relaxed);
    drop(b);
    let after = HEAP.load(Ordering::Relaxed);
    let _ = both;
    // Each figure is what dropping that node released, divided by the
    // sessions: it includes the node's fixed state (a few KB), negligible
    // at this scale.
    let per_a = (with_both - with_b) as f64 / n as f64;
    let per_b = (with_b - after) as f64 / n as f64;
    (elapsed, per_a, per_b)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let total: u64 = std::env::var("ASTRAL_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let config = Config {
        recv_window: 4 << 20,
        send_buffer: 4 << 20,
        ..Config::default()
    };
    println!(
        "astral-core engine benchmark ({} MiB per transfer)",
        total >> 20
    );
    // The ceiling is snow with the same resolver (ring ciphers) as the engine.
    let snow = snow_ceiling(total, false);
    println!("  snow write+read 65519-byte msgs : {snow:6.3} GB/s (ChaChaPoly)");
    let chacha = bulk(
        Pair::handshake(Config {
            offer_aes_gcm: false,
            ..config.clone()
        }),
        total,
    );
    println!(
        "  engine, ChaChaPoly records      : {chacha:6.3} GB/s ({:.0}% of snow)",
        100.0 * chacha / snow
    );
    if astral_core::noise::hardware_aes() {
        let snow_aes = snow_ceiling(total, true);
        println!("  snow write+read 65519-byte msgs : {snow_aes:6.3} GB/s (AESGCM)");
        let aes = bulk(
            Pair::handshake(Config {
                offer_aes_gcm: true,
                ..config.clone()
            }),
            total,
        );
        println!(
            "  engine, AES-256-GCM records     : {aes:6.3} GB/s ({:.0}% of snow AESGCM)",
            100.0 * aes / snow_aes
        );
    }
    #[cfg(feature = "fuzzing")]
    {
        let plain = bulk(Pair::insecure(config.clone()), total);
        println!("  engine, no-security cipher      : {plain:6.3} GB/s");
    }
    #[cfg(not(feature = "fuzzing"))]
    println!("  engine, no-security cipher      : (run with --features fuzzing)");
    let n: usize = std::env::var("ASTRAL_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (_, used_opener, used_acceptor) = open_many(n, true);
    let (t, opener, acceptor) = open_many(n, false);
    println!(
        "  open {n} sessions              : {:.1} ms ({:.2} µs each)",
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e6 / n as f64
    );
    println!("  idle session heap, opener end   : {opener:.0} bytes");
    println!("  idle session heap, acceptor end : {acceptor:.0} bytes");
    println!("  after 1 byte each way, opener   : {used_opener:.0} bytes");
    println!("  after 1 byte each way, acceptor : {used_acceptor:.0} bytes");
}
