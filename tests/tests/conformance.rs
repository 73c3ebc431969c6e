//! Driver conformance suite over real loopback TCP.
//!
//! The scenarios are written once, generic over the small [`Driver`] /
//! [`TestNode`] traits below, and run against every driver (tokio, mio)
//! and across them (a tokio node talking to a mio node, each dialing the
//! other). A driver implements `TestNode` with blocking calls plus
//! [`Pending`] results that its runtime (tasks or event loop) completes:
//!
//! * `conformance/tokio_driver.rs`: an `astral_tokio::Node` on its own
//!   one-worker runtime; sessions split into halves kept in a table.
//! * `conformance/mio_driver.rs`: an `astral_mio::MioNode` whose loop runs
//!   on a dedicated thread, fed closures through a channel + its waker.
//!
//! Every scenario takes two drivers: `L` listens, `D` dials it. Same-driver
//! tests use `<X, X>`; interop tests `<Tokio, Mio>` and `<Mio, Tokio>`.
//! Every wait is bounded and every test runs under [`LIMIT`]: a broken
//! driver fails, it never hangs CI.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use astral_core::{
    CloseReason, Config, Event, Identity, MigrateError, NodeId, SessionId, SessionInfo, StreamId,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};

#[path = "conformance/mio_driver.rs"]
mod mio_driver;
#[path = "conformance/tokio_driver.rs"]
mod tokio_driver;

use mio_driver::Mio;
use tokio_driver::Tokio;

/// Upper bound of any single wait in the suite.
pub const WAIT: Duration = Duration::from_secs(45);

/// Upper bound of a whole test.
const LIMIT: Duration = Duration::from_secs(60);

// ===== the driver-neutral interface =========================================

/// A result the driver delivers later.
pub type Pending<T> = mpsc::Receiver<T>;

/// A driver under test: starts nodes.
pub trait Driver {
    /// Name for messages.
    const NAME: &'static str;
    /// A running node.
    type Node: TestNode;
    /// Starts a node with `config`; its identity derives from `seed`
    /// (the same derivation for every driver).
    fn start(config: Config, seed: u64) -> Self::Node;
}

/// A running node, driven from the test thread. Methods that touch the
/// network return at once ([`Pending`]) or wait at most [`WAIT`].
pub trait TestNode: Send + Sync + 'static {
    /// The node's identity.
    fn id(&self) -> NodeId;
    /// Listens on a fresh loopback port; returns the address.
    fn listen(&self) -> SocketAddr;
    /// Dials `peer` at `addr` and waits until the stream is up and the
    /// listener confirmed it (its first record arrived): it can carry a
    /// migration at once.
    fn connect(&self, peer: NodeId, addr: SocketAddr) -> Result<StreamId, String>;
    /// Established streams to `peer`.
    fn streams_to(&self, peer: NodeId) -> Vec<StreamId>;
    /// Opens a session; completes when it is open (or refused).
    fn open(&self, peer: NodeId, query: &str) -> Pending<Result<SessionId, CloseReason>>;
    /// Next inbound query (session, peer, query), waiting up to `timeout`.
    fn next_query(&self, timeout: Duration) -> Option<(SessionId, NodeId, String)>;
    /// Accepts an inbound query.
    fn accept(&self, session: SessionId);
    /// Rejects an inbound query with `code`.
    fn reject(&self, session: SessionId, code: u8);
    /// Writes all of `data` (then half-closes if `finish`); completes when
    /// everything was handed to the session.
    fn write_all(
        &self,
        session: SessionId,
        data: Vec<u8>,
        finish: bool,
    ) -> Pending<Result<(), String>>;
    /// Reads until end-of-stream.
    fn read_to_end(&self, session: SessionId) -> Pending<Result<Vec<u8>, String>>;
    /// Snapshot of a live session.
    fn session_info(&self, session: SessionId) -> Option<SessionInfo>;
    /// Session-level events seen so far for `session` (Migrated,
    /// Recovering, Recovered, SessionClosed).
    fn session_events(&self, session: SessionId) -> Vec<Event>;
    /// Migrates `session` to `target`.
    fn migrate(&self, session: SessionId, target: StreamId) -> Result<(), MigrateError>;
    /// Closes the TCP connection under `stream` abruptly.
    fn kill_transport(&self, stream: StreamId) -> bool;
    /// Moves every session off `stream`, then closes it gracefully.
    fn drain_stream(&self, stream: StreamId) -> Result<usize, String>;
    /// Shuts the node down (`shutdown()`): every peer gets a Goodbye.
    fn shutdown(&self);
}

// ===== helpers ===============================================================

/// The identity of the node started with `seed` (every driver uses it).
pub fn identity(seed: u64) -> Identity {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    Identity::from_seed(bytes)
}

fn config() -> Config {
    Config {
        auto_migrate: false,
        ..Config::default()
    }
}

/// Runs `f` in a thread and fails the test if it takes longer than `limit`.
/// Prints the scenario's duration (visible with `--nocapture`).
fn bounded<F: FnOnce() + Send + 'static>(name: &str, limit: Duration, f: F) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let t = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .expect("spawn scenario thread");
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().expect("scenario thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: exceeded {limit:?}"),
    }
    eprintln!("{name}: {:.2?}", start.elapsed());
}

/// A line on stderr prefixed with the running test (see `--nocapture`).
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!(
            "{}: {}",
            std::thread::current().name().unwrap_or("?"),
            format_args!($($arg)*)
        )
    };
}

fn wait<T>(p: Pending<T>, what: &str) -> T {
    p.recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Random bytes (ChaCha8 seeded with `seed`: reproducible).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

fn check_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} bytes, want {}; first difference at byte {first}",
            got.len(),
            want.len()
        );
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `node` logged an event matching `pred` for `session`.
fn wait_event(node: &dyn TestNode, session: SessionId, what: &str, pred: impl Fn(&Event) -> bool) {
    let start = Instant::now();
    loop {
        let ev = node.session_events(session);
        if ev.iter().any(&pred) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}: {ev:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A listener node `a` (driver `L`) and a dialer node `b` (driver `D`),
/// `b` dialing `a` `streams` times; waits until both sides see every stream.
fn pair<L: Driver, D: Driver>(seed: u64, streams: usize) -> (L::Node, D::Node, Vec<StreamId>) {
    let a = L::start(config(), seed);
    let b = D::start(config(), seed + 1);
    let addr = a.listen();
    let mut ids = Vec::new();
    for _ in 0..streams {
        ids.push(b.connect(a.id(), addr).expect("connect"));
    }
    wait_until("streams up on both sides", || {
        a.streams_to(b.id()).len() == streams && b.streams_to(a.id()).len() == streams
    });
    (a, b, ids)
}

/// Opens one session from `b` to `a` (accepted) and returns (a's, b's) ids.
fn bulk_session(a: &dyn TestNode, b: &dyn TestNode) -> (SessionId, SessionId) {
    let p = b.open(a.id(), "bulk");
    let (sa, peer, q) = a.next_query(WAIT).expect("query");
    assert_eq!((peer, q.as_str()), (b.id(), "bulk"));
    a.accept(sa);
    let sb = wait(p, "open").expect("open");
    (sa, sb)
}

// ===== scenarios =============================================================

/// Many concurrent sessions opened from both sides, random sizes both ways
/// (empty ones included), every byte checked.
pub fn many_sessions_both_ways<L: Driver, D: Driver>() {
    const N: u64 = 40;
    let (a, b, _) = pair::<L, D>(10, 1);
    let (a, b): (&dyn TestNode, &dyn TestNode) = (&a, &b);
    let size = |tag: u64| (data(tag, 8)[0] as usize * 1237 + tag as usize * 7) % 300_000;
    let payload = |tag: u64| data(tag, size(tag));
    // Query "x/i" from side x; opener sends tag 1000x+2i, responder 1000x+2i+1.
    let mut opens = Vec::new();
    for i in 0..N {
        opens.push((0, i, a.open(b.id(), &format!("0/{i}"))));
        opens.push((1, i, b.open(a.id(), &format!("1/{i}"))));
    }
    let mut checks = Vec::new();
    for (side, responder, opener) in [(0u64, b, a), (1u64, a, b)] {
        for _ in 0..N {
            let (s, peer, q) = responder.next_query(WAIT).expect("query");
            assert_eq!(peer, opener.id());
            let i: u64 = q
                .strip_prefix(&format!("{side}/"))
                .expect("query format")
                .parse()
                .expect("index");
            responder.accept(s);
            let tag = 1000 * side + 2 * i;
            checks.push((
                responder.write_all(s, payload(tag + 1), true),
                responder.read_to_end(s),
                tag,
            ));
        }
    }
    for (side, i, p) in opens {
        let opener = if side == 0 { a } else { b };
        let s = wait(p, "open").expect("session opened");
        let tag = 1000 * side + 2 * i;
        checks.push((
            opener.write_all(s, payload(tag), true),
            opener.read_to_end(s),
            tag + 1,
        ));
    }
    for (w, r, tag) in checks {
        wait(w, "write").expect("write");
        check_eq(
            &wait(r, "read").expect("read"),
            &payload(tag),
            &format!("payload {tag}"),
        );
    }
}

/// A rejected query closes the opener's session with the code, on both
/// sides of the pair; the stream is unaffected.
pub fn reject<L: Driver, D: Driver>() {
    let (a, b, _) = pair::<L, D>(20, 1);
    let (a, b): (&dyn TestNode, &dyn TestNode) = (&a, &b);
    for (opener, responder, code) in [(a, b, 7u8), (b, a, 200u8)] {
        let p = opener.open(responder.id(), "nobody-serves-this");
        let (s, peer, q) = responder.next_query(WAIT).expect("query");
        assert_eq!((peer, q.as_str()), (opener.id(), "nobody-serves-this"));
        responder.reject(s, code);
        assert_eq!(wait(p, "open"), Err(CloseReason::Rejected(code)));
        // The stream is unaffected: the next session works.
        let p = opener.open(responder.id(), "ok");
        let (s, _, _) = responder.next_query(WAIT).expect("query");
        responder.accept(s);
        let so = wait(p, "open").expect("open after reject");
        let r = responder.read_to_end(s);
        wait(opener.write_all(so, b"after".to_vec(), true), "write").expect("write");
        assert_eq!(wait(r, "read").expect("read"), b"after");
    }
}

/// Half-close: the opener finishes its request, the responder reads it to
/// the end and only then answers, on the same session.
pub fn half_close<L: Driver, D: Driver>() {
    let (a, b, _) = pair::<L, D>(30, 1);
    let (a, b): (&dyn TestNode, &dyn TestNode) = (&a, &b);
    for (opener, responder, seed) in [(a, b, 31u64), (b, a, 35)] {
        let p = opener.open(responder.id(), "rpc");
        let (s, _, _) = responder.next_query(WAIT).expect("query");
        responder.accept(s);
        let so = wait(p, "open").expect("open");
        let request = data(seed, 100_000);
        wait(opener.write_all(so, request.clone(), true), "request").expect("request");
        let answer = opener.read_to_end(so);
        check_eq(
            &wait(responder.read_to_end(s), "read request").expect("request"),
            &request,
            "request",
        );
        // The opener's write side is done, its read side still open.
        let response = data(seed + 1, 700_000);
        wait(responder.write_all(s, response.clone(), true), "response").expect("response");
        check_eq(
            &wait(answer, "read response").expect("response"),
            &response,
            "response",
        );
    }
}

/// Migration between two TCP streams in the middle of a transfer in both
/// directions; one direction is stalled (reader paused) at the switch.
/// Both sides report `Migrated`.
pub fn migration_mid_transfer<L: Driver, D: Driver>() {
    const LEN: usize = 8 << 20;
    let (a, b, _) = pair::<L, D>(40, 2);
    let (a, b): (&dyn TestNode, &dyn TestNode) = (&a, &b);
    let (sa, sb) = bulk_session(a, b);
    let from = b
        .session_info(sb)
        .expect("info")
        .send_stream
        .expect("bound");
    let target = *b
        .streams_to(a.id())
        .iter()
        .find(|s| **s != from)
        .expect("second stream");
    let (up, down) = (data(41, LEN), data(42, LEN));
    let w_up = b.write_all(sb, up.clone(), true);
    let w_down = a.write_all(sa, down.clone(), true);
    let r_down = b.read_to_end(sb);
    wait_until("transfer under way", || {
        b.session_info(sb)
            .is_some_and(|i| i.stats.bytes_received > 1 << 20)
    });
    // The listener's reader is not started yet, so the dialer → listener
    // direction is stalled mid-transfer whatever the machine's speed.
    let before = a.session_info(sa).expect("info").stats.bytes_received;
    b.migrate(sb, target).expect("migrate");
    note!("migrated with {before} of {LEN} bytes received by the listener");
    assert_eq!(b.session_info(sb).expect("info").send_stream, Some(target));
    let r_up = a.read_to_end(sa);
    check_eq(
        &wait(r_up, "read up").expect("read up"),
        &up,
        "dialer → listener across migration",
    );
    check_eq(
        &wait(r_down, "read down").expect("read down"),
        &down,
        "listener → dialer across migration",
    );
    wait(w_up, "write up").expect("write up");
    wait(w_down, "write down").expect("write down");
    assert!(
        before < LEN as u64,
        "migration happened mid-transfer ({before} of {LEN} received)"
    );
    wait_event(
        b,
        sb,
        "Migrated on the initiator",
        |e| matches!(e, Event::Migrated { from: f, to, .. } if *f == from && *to == target),
    );
    // The responder's stream ids are its own: any Migrated will do.
    wait_event(a, sa, "Migrated on the responder", |e| {
        matches!(e, Event::Migrated { .. })
    });
}

/// A TCP connection killed mid-transfer: with a second stream up, the
/// session recovers on it, both directions complete intact, and both
/// sides report `Recovered`.
pub fn killed_transport_recovers<L: Driver, D: Driver>() {
    const LEN: usize = 8 << 20;
    let (a, b, first) = pair::<L, D>(50, 1);
    let (a, b): (&dyn TestNode, &dyn TestNode) = (&a, &b);
    let (sa, sb) = bulk_session(a, b);
    assert_eq!(
        b.session_info(sb).expect("info").send_stream,
        Some(first[0])
    );
    // Second stream after the session is bound to the first.
    let addr = a.listen();
    let second = b.connect(a.id(), addr).expect("second connect");
    wait_until("second stream on both sides", || {
        a.streams_to(b.id()).len() == 2 && b.streams_to(a.id()).len() == 2
    });
    let (up, down) = (data(51, LEN), data(52, LEN));
    let w_up = b.write_all(sb, up.clone(), true);
    let w_down = a.write_all(sa, down.clone(), true);
    let r_down = b.read_to_end(sb);
    wait_until("transfer under way", || {
        b.session_info(sb)
            .is_some_and(|i| i.stats.bytes_received > 1 << 20)
    });
    // The listener's reader is not started yet, so the dialer → listener
    // direction is stalled mid-transfer whatever the machine's speed.
    let before = a.session_info(sa).expect("info").stats.bytes_received;
    assert!(b.kill_transport(first[0]), "kill");
    note!("killed with {before} of {LEN} bytes received by the listener");
    let r_up = a.read_to_end(sa);
    check_eq(
        &wait(r_up, "read up").expect("read up"),
        &up,
        "dialer → listener across the failure",
    );
    check_eq(
        &wait(r_down, "read down").expect("read down"),
        &down,
        "listener → dialer across the failure",
    );
    wait(w_up, "write up").expect("write up");
    wait(w_down, "write down").expect("write down");
    assert!(
        before < LEN as u64,
        "killed mid-transfer ({before} of {LEN} received)"
    );
    let recovered = |e: &Event| matches!(e, Event::Recovered { .. });
    wait_event(b, sb, "Recovered on the dialer", recovered);
    wait_event(a, sa, "Recovered on the listener", recovered);
    wait_until("killed stream gone on both sides", || {
        a.streams_to(b.id()).len() == 1 && b.streams_to(a.id()) == [second]
    });
}

/// Draining a stream mid-transfer moves the session to the other stream;
/// the drained stream then closes on both sides and nothing is lost.
pub fn drain_mid_transfer<L: Driver, D: Driver>() {
    const LEN: usize = 4 << 20;
    let (a, b, _) = pair::<L, D>(60, 2);
    let (a, b): (&dyn TestNode, &dyn TestNode) = (&a, &b);
    let (sa, sb) = bulk_session(a, b);
    let from = b
        .session_info(sb)
        .expect("info")
        .send_stream
        .expect("bound");
    let (up, down) = (data(61, LEN), data(62, LEN));
    let w_up = b.write_all(sb, up.clone(), true);
    let w_down = a.write_all(sa, down.clone(), true);
    let r_down = b.read_to_end(sb);
    wait_until("transfer under way", || {
        b.session_info(sb)
            .is_some_and(|i| i.stats.bytes_received > 1 << 20)
    });
    // The listener's reader is not started yet, so the dialer → listener
    // direction is stalled mid-transfer whatever the machine's speed.
    let before = a.session_info(sa).expect("info").stats.bytes_received;
    assert_eq!(b.drain_stream(from), Ok(1));
    let r_up = a.read_to_end(sa);
    note!("drained with {before} of {LEN} bytes received by the listener");
    check_eq(
        &wait(r_up, "read up").expect("read up"),
        &up,
        "dialer → listener across the drain",
    );
    check_eq(
        &wait(r_down, "read down").expect("read down"),
        &down,
        "listener → dialer across the drain",
    );
    wait(w_up, "write up").expect("write up");
    wait(w_down, "write down").expect("write down");
    assert!(
        before < LEN as u64,
        "drained mid-transfer ({before} of {LEN} received)"
    );
    wait_until("drained stream closed on both sides", || {
        a.streams_to(b.id()).len() == 1 && b.streams_to(a.id()).len() == 1
    });
    assert!(!b.streams_to(a.id()).contains(&from));
}

/// `shutdown()` at either end tells the other: its sessions end at once
/// with `PeerShutdown` (not after `recovery_timeout`, 30 s here), the
/// leaving node's with `Shutdown`, and every stream between them closes.
pub fn shutdown_ends_sessions_at_once<L: Driver, D: Driver>() {
    for dialer_leaves in [true, false] {
        let seed = if dialer_leaves { 1100 } else { 1200 };
        let (a, b, _) = pair::<L, D>(seed, 2);
        let (sa, sb) = bulk_session(&a, &b);
        // Data in flight both ways when the node leaves.
        let _ = a.write_all(sa, data(seed, 1 << 20), false);
        let _ = b.write_all(sb, data(seed + 1, 1 << 20), false);
        let (leaving, ls, staying, ss): (&dyn TestNode, _, &dyn TestNode, _) = if dialer_leaves {
            (&b, sb, &a, sa)
        } else {
            (&a, sa, &b, sb)
        };
        let t = Instant::now();
        leaving.shutdown();
        wait_event(staying, ss, "PeerShutdown where the peer stays", |e| {
            matches!(
                e,
                Event::SessionClosed {
                    reason: CloseReason::PeerShutdown,
                    ..
                }
            )
        });
        let took = t.elapsed();
        wait_event(leaving, ls, "Shutdown where the node leaves", |e| {
            matches!(
                e,
                Event::SessionClosed {
                    reason: CloseReason::Shutdown,
                    ..
                }
            )
        });
        wait_until("no stream left", || {
            staying.streams_to(leaving.id()).is_empty()
                && leaving.streams_to(staying.id()).is_empty()
        });
        note!(
            "{} left: the peer's session ended {took:.2?} after shutdown()",
            if dialer_leaves { "dialer" } else { "listener" }
        );
        // Loopback: one one-way delay plus scheduling, far below 1 s.
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}

// ===== the matrix ============================================================

/// One `#[test]` per (scenario, driver pair): `tokio_x` and `mio_x` run a
/// driver against itself; `interop_tokio_dials_mio_x` has a tokio node dial
/// a mio listener (tokio migrates / kills / drains), `interop_mio_dials_tokio_x`
/// the reverse.
macro_rules! conformance {
    ($($scenario:ident: $tokio:ident, $mio:ident, $t2m:ident, $m2t:ident;)*) => {$(
        #[test]
        fn $tokio() {
            bounded(stringify!($tokio), LIMIT, $scenario::<Tokio, Tokio>);
        }
        #[test]
        fn $mio() {
            bounded(stringify!($mio), LIMIT, $scenario::<Mio, Mio>);
        }
        #[test]
        fn $t2m() {
            bounded(stringify!($t2m), LIMIT, $scenario::<Mio, Tokio>);
        }
        #[test]
        fn $m2t() {
            bounded(stringify!($m2t), LIMIT, $scenario::<Tokio, Mio>);
        }
    )*};
}

conformance! {
    many_sessions_both_ways:
        tokio_many_sessions_both_ways, mio_many_sessions_both_ways,
        interop_tokio_dials_mio_many_sessions_both_ways, interop_mio_dials_tokio_many_sessions_both_ways;
    reject:
        tokio_reject, mio_reject,
        interop_tokio_dials_mio_reject, interop_mio_dials_tokio_reject;
    half_close:
        tokio_half_close, mio_half_close,
        interop_tokio_dials_mio_half_close, interop_mio_dials_tokio_half_close;
    migration_mid_transfer:
        tokio_migration_mid_transfer, mio_migration_mid_transfer,
        interop_tokio_dials_mio_migration_mid_transfer, interop_mio_dials_tokio_migration_mid_transfer;
    killed_transport_recovers:
        tokio_killed_transport_recovers, mio_killed_transport_recovers,
        interop_tokio_dials_mio_killed_transport_recovers, interop_mio_dials_tokio_killed_transport_recovers;
    drain_mid_transfer:
        tokio_drain_mid_transfer, mio_drain_mid_transfer,
        interop_tokio_dials_mio_drain_mid_transfer, interop_mio_dials_tokio_drain_mid_transfer;
    shutdown_ends_sessions_at_once:
        tokio_shutdown_ends_sessions_at_once, mio_shutdown_ends_sessions_at_once,
        interop_tokio_dials_mio_shutdown_ends_sessions_at_once,
        interop_mio_dials_tokio_shutdown_ends_sessions_at_once;
}

#[test]
fn driver_names() {
    assert_eq!(<Tokio as Driver>::NAME, "tokio");
    assert_eq!(<Mio as Driver>::NAME, "mio");
}
