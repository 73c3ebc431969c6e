//! The attacks. Each runs until told to stop, from many source addresses
//! in 127.0.0.0/8 (loopback only), and counts what it did.
//!
//! | attack | what a client does |
//! |---|---|
//! | `random-bytes` | connects, sends 4 KiB of random bytes, waits for the listener to hang up, again |
//! | `slowloris-partial` | connects, sends 22 bytes (a length prefix of 48 and 20 bytes of message 1), stalls; reconnects 0.5 s after being dropped |
//! | `slowloris-msg1` | connects, sends a valid message 1 (50 bytes framed), reads message 2 and stalls; reconnects likewise |
//! | `handshake-burst` | every client completes one real handshake at once (fresh static keys) |
//! | `handshake-flood` | clients complete handshakes in a loop (fresh keys), closing each stream |
//! | `session-flood` | identities open sessions to `echo` and write without reading |
//! | `query-flood` | one identity keeps many queries for a service that does not exist in flight |
//! | `slow-readers` | sessions to `echo` that write 256 KiB and read 1 KiB a second |
//! | `many-identities` | one node per identity, one idle echo session each |

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::astral_api;
use crate::hostile::listener::Target;
use crate::hostile::wire::{self, RawDialer};
use crate::probe::connect_from;

/// How long a slowloris client waits before it reconnects after the
/// listener dropped it.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// What kind of attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Random bytes instead of a handshake.
    RandomBytes,
    /// Part of message 1, then silence.
    SlowlorisPartial,
    /// All of message 1, then silence.
    SlowlorisMsg1,
    /// One real handshake per client, all at once.
    HandshakeBurst,
    /// Real handshakes in a loop.
    HandshakeFlood,
    /// Sessions that write and never read.
    SessionFlood,
    /// Queries in flight for an unknown service.
    QueryFlood,
    /// Sessions that read very slowly.
    SlowReaders,
    /// Many identities, one idle session each.
    ManyIdentities,
}

/// One attack with its size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attack {
    /// Its name in tables and on the command line.
    pub name: String,
    /// What it does.
    pub kind: Kind,
    /// Concurrent connections or clients (or queries in flight).
    pub conns: usize,
    /// Distinct source addresses.
    pub sources: usize,
    /// Distinct identities (session attacks).
    pub identities: usize,
    /// Sessions in all (session attacks).
    pub sessions: usize,
    /// Bytes each session writes (session attacks).
    pub write_bytes: usize,
}

impl Attack {
    fn new(name: &str, kind: Kind) -> Attack {
        Attack {
            name: name.into(),
            kind,
            conns: 0,
            sources: 1,
            identities: 1,
            sessions: 0,
            write_bytes: 0,
        }
    }

    /// The standard set, sized after the targets of issue 13 (1,000
    /// slowloris connections from 1 and from 16 sources; 2,000 concurrent
    /// handshakes from 8 sources; session floods from 1 and 10 identities).
    pub fn catalogue() -> Vec<Attack> {
        use Kind::*;
        let a = Attack::new;
        vec![
            Attack {
                conns: 64,
                sources: 4,
                ..a("random-bytes", RandomBytes)
            },
            Attack {
                conns: 1000,
                sources: 1,
                ..a("slowloris-partial", SlowlorisPartial)
            },
            Attack {
                conns: 1000,
                sources: 16,
                ..a("slowloris-partial-16src", SlowlorisPartial)
            },
            Attack {
                conns: 1000,
                sources: 1,
                ..a("slowloris-msg1", SlowlorisMsg1)
            },
            Attack {
                conns: 2000,
                sources: 8,
                ..a("handshake-burst", HandshakeBurst)
            },
            Attack {
                conns: 64,
                sources: 8,
                ..a("handshake-flood", HandshakeFlood)
            },
            Attack {
                identities: 1,
                sessions: 500,
                write_bytes: 1 << 20,
                ..a("session-flood-1id", SessionFlood)
            },
            Attack {
                identities: 10,
                sessions: 500,
                write_bytes: 1 << 20,
                sources: 10,
                ..a("session-flood-10id", SessionFlood)
            },
            Attack {
                conns: 256,
                ..a("query-flood", QueryFlood)
            },
            Attack {
                identities: 4,
                sessions: 200,
                write_bytes: 256 << 10,
                sources: 4,
                ..a("slow-readers", SlowReaders)
            },
            Attack {
                identities: 500,
                sources: 16,
                ..a("many-identities", ManyIdentities)
            },
        ]
    }

    /// The load, for humans: `1000 conns from 1 source`.
    pub fn describe(&self) -> String {
        use Kind::*;
        let src = |n: usize| {
            if n == 1 {
                "1 source".to_string()
            } else {
                format!("{n} sources")
            }
        };
        match self.kind {
            RandomBytes | SlowlorisPartial | SlowlorisMsg1 | HandshakeFlood => {
                format!("{} conns from {}", self.conns, src(self.sources))
            }
            HandshakeBurst => format!(
                "{} handshakes at once from {}",
                self.conns,
                src(self.sources)
            ),
            SessionFlood | SlowReaders => format!(
                "{} sessions × {} from {} ids",
                self.sessions,
                crate::units::fmt_size(self.write_bytes),
                self.identities
            ),
            QueryFlood => format!("{} queries in flight, 1 id", self.conns),
            ManyIdentities => format!("{} ids from {}", self.identities, src(self.sources)),
        }
    }

    /// Whether the attack has reached its full size (the legitimate tries
    /// "during" start then).
    pub fn ready(&self, c: &Counters) -> bool {
        use Kind::*;
        let n = |a: &AtomicU64| a.load(Relaxed) as usize;
        match self.kind {
            // Every connection made at least once (a listener that evicts
            // never lets all of them be open together).
            SlowlorisPartial | SlowlorisMsg1 => n(&c.connects) >= self.conns,
            HandshakeBurst => n(&c.handshakes_ok) + n(&c.handshakes_failed) >= self.conns,
            SessionFlood | SlowReaders => {
                n(&c.sessions_ok) + n(&c.sessions_failed) >= self.sessions
            }
            ManyIdentities => n(&c.sessions_ok) + n(&c.sessions_failed) >= self.identities,
            RandomBytes | HandshakeFlood | QueryFlood => {
                n(&c.connects) > 0 || n(&c.queries_sent) > 0
            }
        }
    }
}

/// The `i`-th attacker source address: 127.0.1.1, 127.0.1.2, ... (the
/// legitimate client uses 127.0.0.2).
pub fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

/// What an attack did, counted as it goes.
#[derive(Debug, Default)]
pub struct Counters {
    /// TCP connections made.
    pub connects: AtomicU64,
    /// TCP connections that failed.
    pub connect_failed: AtomicU64,
    /// Connections the listener closed or reset.
    pub closed_by_listener: AtomicU64,
    /// Connections open now.
    pub open_now: AtomicU64,
    /// Most connections open at once.
    pub open_max: AtomicU64,
    /// Handshakes completed.
    pub handshakes_ok: AtomicU64,
    /// Handshakes that failed.
    pub handshakes_failed: AtomicU64,
    /// Sessions opened.
    pub sessions_ok: AtomicU64,
    /// Sessions (or identities' connects) that failed.
    pub sessions_failed: AtomicU64,
    /// Queries sent.
    pub queries_sent: AtomicU64,
    /// Queries the listener answered (accepted or rejected).
    pub queries_answered: AtomicU64,
    /// Application bytes written.
    pub bytes_written: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    reasons: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn opened(&self) {
        self.connects.fetch_add(1, Relaxed);
        let now = self.open_now.fetch_add(1, Relaxed) + 1;
        self.open_max.fetch_max(now, Relaxed);
    }

    fn closed(&self) {
        self.open_now.fetch_sub(1, Relaxed);
    }

    fn latency(&self, t: Duration) {
        self.latencies_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t.as_secs_f64() * 1e3);
    }

    fn reason(&self, r: &str) {
        let r = crate::hostile::legit::simplify(r);
        let mut m = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        // A bounded map: the first 20 distinct causes are what a reader needs.
        if m.len() < 20 || m.contains_key(&r) {
            *m.entry(r).or_default() += 1;
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut lat = self
            .latencies_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        lat.sort_by(f64::total_cmp);
        let l = |a: &AtomicU64| a.load(Relaxed);
        CounterSnapshot {
            connects: l(&self.connects),
            connect_failed: l(&self.connect_failed),
            closed_by_listener: l(&self.closed_by_listener),
            open_max: l(&self.open_max),
            handshakes_ok: l(&self.handshakes_ok),
            handshakes_failed: l(&self.handshakes_failed),
            handshake_p50_ms: lat.get(lat.len() / 2).copied(),
            handshake_max_ms: lat.last().copied(),
            sessions_ok: l(&self.sessions_ok),
            sessions_failed: l(&self.sessions_failed),
            queries_sent: l(&self.queries_sent),
            queries_answered: l(&self.queries_answered),
            bytes_written: l(&self.bytes_written),
            failures: self
                .reasons
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// [`Counters`] at one moment, for reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CounterSnapshot {
    /// TCP connections made.
    pub connects: u64,
    /// TCP connections that failed.
    pub connect_failed: u64,
    /// Connections the listener closed or reset.
    pub closed_by_listener: u64,
    /// Most connections open at once.
    pub open_max: u64,
    /// Handshakes completed.
    pub handshakes_ok: u64,
    /// Handshakes that failed.
    pub handshakes_failed: u64,
    /// Median handshake time (connect to message 3 sent), ms.
    pub handshake_p50_ms: Option<f64>,
    /// Slowest handshake, ms.
    pub handshake_max_ms: Option<f64>,
    /// Sessions opened.
    pub sessions_ok: u64,
    /// Sessions that failed.
    pub sessions_failed: u64,
    /// Queries sent.
    pub queries_sent: u64,
    /// Queries answered.
    pub queries_answered: u64,
    /// Application bytes written.
    pub bytes_written: u64,
    /// Why things failed, with counts.
    pub failures: BTreeMap<String, u64>,
}

impl CounterSnapshot {
    /// The counters that are not zero, in one short line.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut put = |name: &str, v: u64| {
            if v > 0 {
                parts.push(format!("{name} {v}"));
            }
        };
        put("conns", self.connects);
        put("conn-fail", self.connect_failed);
        put("dropped", self.closed_by_listener);
        put("open-max", self.open_max);
        put("hs-ok", self.handshakes_ok);
        put("hs-fail", self.handshakes_failed);
        put("sess-ok", self.sessions_ok);
        put("sess-fail", self.sessions_failed);
        put("queries", self.queries_sent);
        put("answered", self.queries_answered);
        put("MiB-written", self.bytes_written >> 20);
        let mut s = parts.join(" ");
        if let Some(m) = self.handshake_max_ms {
            s += &format!(" hs-max {m:.0}ms");
        }
        s
    }
}

/// Runs `attack` against `target` until `stop` turns true.
pub async fn run(
    attack: Attack,
    target: Target,
    mut stop: watch::Receiver<bool>,
    c: Arc<Counters>,
) {
    let mut set = JoinSet::new();
    let a = &attack;
    match a.kind {
        Kind::RandomBytes => {
            for i in 0..a.conns {
                set.spawn(random_bytes(
                    target.clone(),
                    source(i % a.sources.max(1)),
                    i as u64,
                    c.clone(),
                ));
            }
        }
        Kind::SlowlorisPartial | Kind::SlowlorisMsg1 => {
            let full = a.kind == Kind::SlowlorisMsg1;
            for i in 0..a.conns {
                set.spawn(slowloris(
                    target.clone(),
                    source(i % a.sources.max(1)),
                    full,
                    c.clone(),
                ));
            }
        }
        Kind::HandshakeBurst | Kind::HandshakeFlood => {
            let once = a.kind == Kind::HandshakeBurst;
            for i in 0..a.conns {
                set.spawn(handshakes(
                    target.clone(),
                    source(i % a.sources.max(1)),
                    once,
                    c.clone(),
                ));
            }
        }
        Kind::SessionFlood | Kind::SlowReaders => {
            let ids = a.identities.max(1);
            for k in 0..ids {
                let sessions = a.sessions / ids + usize::from(k < a.sessions % ids);
                set.spawn(session_flood(
                    target.clone(),
                    source(k % a.sources.max(1)),
                    k as u64,
                    sessions,
                    a.write_bytes,
                    a.kind == Kind::SlowReaders,
                    c.clone(),
                ));
            }
        }
        Kind::QueryFlood => {
            set.spawn(query_flood(target.clone(), source(0), a.conns, c.clone()));
        }
        Kind::ManyIdentities => {
            for k in 0..a.identities {
                set.spawn(idle_identity(
                    target.clone(),
                    source(k % a.sources.max(1)),
                    k as u64,
                    c.clone(),
                ));
            }
        }
    }
    let _ = stop.wait_for(|s| *s).await;
    // Dropping the tasks closes their sockets and nodes.
    set.shutdown().await;
}

async fn connect(target: &Target, src: IpAddr, c: &Counters) -> Option<TcpStream> {
    match connect_from(target.addr, Some(src)).await {
        Ok(t) => {
            c.opened();
            Some(t)
        }
        Err(e) => {
            c.connect_failed.fetch_add(1, Relaxed);
            c.reason(&format!("connect: {e}"));
            // Out of ports or backlog: back off a little.
            tokio::time::sleep(Duration::from_millis(20)).await;
            None
        }
    }
}

/// Reads until the listener closes the connection (or resets it).
async fn until_closed(tcp: &mut TcpStream, c: &Counters) {
    let mut buf = [0u8; 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => {
                c.closed_by_listener.fetch_add(1, Relaxed);
                return;
            }
            Ok(_) => {}
        }
    }
}

async fn random_bytes(target: Target, src: IpAddr, seed: u64, c: Arc<Counters>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut junk = vec![0u8; 4096];
    loop {
        let Some(mut tcp) = connect(&target, src, &c).await else {
            continue;
        };
        rng.fill_bytes(&mut junk);
        if tcp.write_all(&junk).await.is_ok() {
            c.bytes_written.fetch_add(junk.len() as u64, Relaxed);
        }
        // The listener should hang up at once; give up on it after 2 s.
        let _ = tokio::time::timeout(Duration::from_secs(2), until_closed(&mut tcp, &c)).await;
        let _ = tcp.set_zero_linger();
        c.closed();
    }
}

async fn slowloris(target: Target, src: IpAddr, full_msg1: bool, c: Arc<Counters>) {
    loop {
        let Some(mut tcp) = connect(&target, src, &c).await else {
            continue;
        };
        let payload = if full_msg1 {
            match RawDialer::new(&target.id).and_then(|mut d| d.message1()) {
                Ok(m) => m,
                Err(e) => {
                    c.reason(&e);
                    return;
                }
            }
        } else {
            // The length prefix of a 48-byte message 1 and 20 bytes of it.
            let mut p = (wire::MSG1_LEN as u16).to_be_bytes().to_vec();
            p.extend_from_slice(&[0x42; 20]);
            p
        };
        if tcp.write_all(&payload).await.is_ok() {
            c.bytes_written.fetch_add(payload.len() as u64, Relaxed);
        }
        // Stall: never send more; hold until the listener gives up on us,
        // then come back (as the attacker of issue 13 does), after a pause
        // so a refusing listener does not turn this into a connect storm
        // that measures the machine's CPU instead.
        until_closed(&mut tcp, &c).await;
        c.closed();
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

async fn handshakes(target: Target, src: IpAddr, once: bool, c: Arc<Counters>) {
    loop {
        let start = Instant::now();
        if let Some(mut tcp) = connect(&target, src, &c).await {
            let r = async {
                let mut d = RawDialer::new(&target.id)?;
                let m1 = d.message1()?;
                tcp.write_all(&m1)
                    .await
                    .map_err(|e| format!("sending message 1: {e}"))?;
                d.finish(&mut tcp, Duration::from_secs(10)).await
            }
            .await;
            match r {
                Ok(()) => {
                    c.handshakes_ok.fetch_add(1, Relaxed);
                    c.latency(start.elapsed());
                }
                Err(e) => {
                    c.handshakes_failed.fetch_add(1, Relaxed);
                    c.reason(&e);
                }
            }
            // An abortive close: no TIME_WAIT piling up on our side.
            let _ = tcp.set_zero_linger();
            drop(tcp);
            c.closed();
        } else if once {
            c.handshakes_failed.fetch_add(1, Relaxed);
        }
        if once {
            // Hold still: the burst is measured once.
            std::future::pending::<()>().await;
        }
    }
}

async fn session_flood(
    target: Target,
    src: IpAddr,
    k: u64,
    sessions: usize,
    write_bytes: usize,
    slow_read: bool,
    c: Arc<Counters>,
) {
    let node = match astral_api::node(astral_api::identity(1_000_000 + k)) {
        Ok(n) => n,
        Err(e) => return c.reason(&e),
    };
    if let Err(e) = astral_api::connect(&node, target.id, target.addr, Some(src)).await {
        c.sessions_failed.fetch_add(sessions as u64, Relaxed);
        return c.reason(&e);
    }
    c.opened();
    let mut tasks = JoinSet::new();
    for _ in 0..sessions {
        match astral_api::open(&node, target.id, "echo").await {
            Ok(s) => {
                c.sessions_ok.fetch_add(1, Relaxed);
                let c = c.clone();
                tasks.spawn(async move {
                    let (mut r, mut w) = tokio::io::split(s);
                    let writer = async {
                        let chunk = vec![0x33u8; 16 << 10];
                        let mut left = write_bytes;
                        while left > 0 {
                            let n = left.min(chunk.len());
                            if w.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                            c.bytes_written.fetch_add(n as u64, Relaxed);
                            left -= n;
                        }
                        // Written (or blocked forever): hold the session.
                        std::future::pending::<()>().await;
                    };
                    let reader = async {
                        if !slow_read {
                            // Never read.
                            return std::future::pending::<()>().await;
                        }
                        let mut buf = [0u8; 1024];
                        loop {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if matches!(r.read(&mut buf).await, Ok(0) | Err(_)) {
                                return std::future::pending().await;
                            }
                        }
                    };
                    tokio::join!(writer, reader);
                });
            }
            Err(e) => {
                c.sessions_failed.fetch_add(1, Relaxed);
                c.reason(&e);
            }
        }
    }
    // Hold everything until the attack is stopped (the task is dropped).
    std::future::pending::<()>().await;
    drop((tasks, node));
}

async fn query_flood(target: Target, src: IpAddr, in_flight: usize, c: Arc<Counters>) {
    let node = match astral_api::node(astral_api::identity(2_000_000)) {
        Ok(n) => n,
        Err(e) => return c.reason(&e),
    };
    if let Err(e) = astral_api::connect(&node, target.id, target.addr, Some(src)).await {
        return c.reason(&e);
    }
    c.opened();
    let mut set = JoinSet::new();
    let mut n: u64 = 0;
    loop {
        while set.len() < in_flight {
            n += 1;
            c.queries_sent.fetch_add(1, Relaxed);
            set.spawn(astral_api::open_pending(
                &node,
                target.id,
                format!("no-such-service/{n}"),
            ));
        }
        match set.join_next().await {
            Some(Ok(Err(e))) if e.contains("rejected") => {
                c.queries_answered.fetch_add(1, Relaxed);
            }
            Some(Ok(Ok(_session))) => {
                c.queries_answered.fetch_add(1, Relaxed);
            }
            Some(Ok(Err(e))) => c.reason(&e),
            Some(Err(_)) | None => {}
        }
    }
}

async fn idle_identity(target: Target, src: IpAddr, k: u64, c: Arc<Counters>) {
    let node = match astral_api::node(astral_api::identity(3_000_000 + k)) {
        Ok(n) => n,
        Err(e) => return c.reason(&e),
    };
    let r = async {
        astral_api::connect(&node, target.id, target.addr, Some(src)).await?;
        let mut s = astral_api::open(&node, target.id, "echo").await?;
        s.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    }
    .await;
    match r {
        Ok(s) => {
            c.opened();
            c.sessions_ok.fetch_add(1, Relaxed);
            std::future::pending::<()>().await;
            drop((s, node));
        }
        Err(e) => {
            c.sessions_failed.fetch_add(1, Relaxed);
            c.reason(&e);
        }
    }
}
