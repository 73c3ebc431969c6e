//! Driver conformance suite over loopback TCP.
//!
//! The scenarios are written once, generic over the small [`Driver`] /
//! [`TestNode`] traits below, so that every driver (mio here; tokio later)
//! runs the same checks. A driver implements `TestNode` with blocking
//! calls plus [`Pending`] results that its event loop (or tasks) completes.
//! Every wait is bounded: a broken driver fails, it never hangs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use astral_core::{
    CloseReason, Config, Event, Identity, MigrateError, NodeId, SessionId, SessionInfo, StreamId,
};

/// Upper bound of any single wait in the suite.
const WAIT: Duration = Duration::from_secs(60);

// ===== the driver-neutral interface =========================================

/// A result the driver's loop delivers later.
pub type Pending<T> = mpsc::Receiver<T>;

/// A driver under test: starts nodes.
pub trait Driver {
    /// Name for messages.
    const NAME: &'static str;
    /// A running node.
    type Node: TestNode;
    /// Starts a node with `config`; its identity derives from `seed`.
    fn start(config: Config, seed: u64) -> Self::Node;
}

/// A running node, driven from the test thread. Methods that touch the
/// network return at once ([`Pending`]) or wait at most [`WAIT`].
pub trait TestNode: Send + Sync + 'static {
    /// The node's identity.
    fn id(&self) -> NodeId;
    /// Listens on a fresh loopback port; returns the address.
    fn listen(&self) -> SocketAddr;
    /// Dials `peer` at `addr` and waits until the stream is up.
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
}

// ===== helpers ===============================================================

fn config() -> Config {
    Config {
        auto_migrate: false,
        ..Config::default()
    }
}

/// Runs `f` in a thread and fails the test if it takes longer than `limit`.
fn bounded<F: FnOnce() + Send + 'static>(limit: Duration, f: F) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().expect("scenario thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("scenario exceeded {limit:?}"),
    }
}

fn wait<T>(p: Pending<T>, what: &str) -> T {
    p.recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Deterministic pseudo-random bytes (splitmix64).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
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

/// Two nodes, `b` dialing `a` `streams` times; waits until both sides
/// see every stream.
fn pair<D: Driver>(seed: u64, streams: usize) -> (D::Node, D::Node, Vec<StreamId>) {
    let a = D::start(config(), seed);
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

// ===== scenarios =============================================================

/// Many concurrent sessions opened from both sides, random sizes both ways
/// (empty ones included), every byte checked.
pub fn many_sessions_both_ways<D: Driver>() {
    const N: u64 = 40;
    let (a, b, _) = pair::<D>(10, 1);
    let size = |tag: u64| (data(tag, 8)[0] as usize * 1237 + tag as usize * 7) % 300_000;
    let payload = |tag: u64| data(tag, size(tag));
    // Query "x/i" from side x; opener sends tag 1000x+2i, responder 1000x+2i+1.
    let mut checks = Vec::new();
    let mut opens = Vec::new();
    for i in 0..N {
        opens.push((0, i, a.open(b.id(), &format!("0/{i}"))));
        opens.push((1, i, b.open(a.id(), &format!("1/{i}"))));
    }
    for (side, responder) in [(0u64, &b), (1u64, &a)] {
        for _ in 0..N {
            let (s, _, q) = responder.next_query(WAIT).expect("query");
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
    let mut reads = Vec::new();
    for (side, i, p) in opens {
        let opener = if side == 0 { &a } else { &b };
        let s = wait(p, "open").expect("session opened");
        let tag = 1000 * side + 2 * i;
        reads.push((
            opener.write_all(s, payload(tag), true),
            opener.read_to_end(s),
            tag + 1,
        ));
    }
    for (w, r, tag) in checks {
        wait(w, "responder write").expect("responder write");
        check_eq(
            &wait(r, "responder read").expect("responder read"),
            &payload(tag),
            "opener → responder",
        );
    }
    for (w, r, tag) in reads {
        wait(w, "opener write").expect("opener write");
        check_eq(
            &wait(r, "opener read").expect("opener read"),
            &payload(tag),
            "responder → opener",
        );
    }
}

/// A rejected query closes the opener's session with the code.
pub fn reject<D: Driver>() {
    let (a, b, _) = pair::<D>(20, 1);
    let p = a.open(b.id(), "nobody-serves-this");
    let (s, peer, q) = b.next_query(WAIT).expect("query");
    assert_eq!((peer, q.as_str()), (a.id(), "nobody-serves-this"));
    b.reject(s, 7);
    assert_eq!(wait(p, "open"), Err(CloseReason::Rejected(7)));
    // The stream is unaffected: the next session works.
    let p = a.open(b.id(), "ok");
    let (s, _, _) = b.next_query(WAIT).expect("query");
    b.accept(s);
    let sa = wait(p, "open").expect("open after reject");
    let r = b.read_to_end(s);
    wait(a.write_all(sa, b"after".to_vec(), true), "write").expect("write");
    assert_eq!(wait(r, "read").expect("read"), b"after");
}

/// Half-close: the opener finishes its request, the responder reads it to
/// the end and only then answers, on the same session.
pub fn half_close<D: Driver>() {
    let (a, b, _) = pair::<D>(30, 1);
    let p = a.open(b.id(), "rpc");
    let (s, _, _) = b.next_query(WAIT).expect("query");
    b.accept(s);
    let sa = wait(p, "open").expect("open");
    let request = data(31, 100_000);
    wait(a.write_all(sa, request.clone(), true), "request").expect("request");
    let answer = a.read_to_end(sa);
    check_eq(
        &wait(b.read_to_end(s), "read request").expect("request"),
        &request,
        "request",
    );
    let response = data(32, 700_000);
    wait(b.write_all(s, response.clone(), true), "response").expect("response");
    check_eq(
        &wait(answer, "read response").expect("response"),
        &response,
        "response",
    );
}

/// Migration between two TCP streams in the middle of a transfer in both
/// directions; one direction is stalled (reader paused) at the switch.
pub fn migration_mid_transfer<D: Driver>() {
    const LEN: usize = 8 << 20;
    let (a, b, _) = pair::<D>(40, 2);
    let p = b.open(a.id(), "bulk");
    let (sa, _, _) = a.next_query(WAIT).expect("query");
    a.accept(sa);
    let sb = wait(p, "open").expect("open");
    let from = b.session_info(sb).expect("info").send_stream;
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
    let before = b.session_info(sb).expect("info").stats.bytes_received;
    b.migrate(sb, target).expect("migrate");
    assert_eq!(b.session_info(sb).expect("info").send_stream, target);
    let r_up = a.read_to_end(sa);
    check_eq(
        &wait(r_up, "read up").expect("read up"),
        &up,
        "b → a across migration",
    );
    check_eq(
        &wait(r_down, "read down").expect("read down"),
        &down,
        "a → b across migration",
    );
    wait(w_up, "write up").expect("write up");
    wait(w_down, "write down").expect("write down");
    assert!(
        before < LEN as u64,
        "migration happened mid-transfer ({before} of {LEN} received)"
    );
    let migrated = a
        .session_events(sa)
        .iter()
        .any(|e| matches!(e, Event::Migrated { .. }));
    assert!(
        migrated,
        "the responder followed the migration: {:?}",
        a.session_events(sa)
    );
}

/// A TCP connection killed mid-transfer: with a second stream up, the
/// session recovers on it and both directions complete intact.
pub fn killed_transport_recovers<D: Driver>() {
    const LEN: usize = 8 << 20;
    let (a, b, first) = pair::<D>(50, 1);
    let p = b.open(a.id(), "bulk");
    let (sa, _, _) = a.next_query(WAIT).expect("query");
    a.accept(sa);
    let sb = wait(p, "open").expect("open");
    assert_eq!(b.session_info(sb).expect("info").send_stream, first[0]);
    // Second stream after the session is bound to the first.
    let addr = a.listen();
    b.connect(a.id(), addr).expect("second connect");
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
    assert!(b.kill_transport(first[0]), "kill");
    let r_up = a.read_to_end(sa);
    check_eq(
        &wait(r_up, "read up").expect("read up"),
        &up,
        "b → a across the failure",
    );
    check_eq(
        &wait(r_down, "read down").expect("read down"),
        &down,
        "a → b across the failure",
    );
    wait(w_up, "write up").expect("write up");
    wait(w_down, "write down").expect("write down");
    for (side, ev) in [
        ("dialer", b.session_events(sb)),
        ("listener", a.session_events(sa)),
    ] {
        assert!(
            ev.iter().any(|e| matches!(e, Event::Recovered { .. })),
            "{side} recovered: {ev:?}"
        );
    }
    assert_eq!(b.streams_to(a.id()).len(), 1);
}

/// Draining a stream mid-transfer moves the session to the other stream;
/// the drained stream then closes on both sides and nothing is lost.
pub fn drain_mid_transfer<D: Driver>() {
    const LEN: usize = 4 << 20;
    let (a, b, _) = pair::<D>(60, 2);
    let p = b.open(a.id(), "bulk");
    let (sa, _, _) = a.next_query(WAIT).expect("query");
    a.accept(sa);
    let sb = wait(p, "open").expect("open");
    let from = b.session_info(sb).expect("info").send_stream;
    let (up, down) = (data(61, LEN), data(62, LEN));
    let w_up = b.write_all(sb, up.clone(), true);
    let w_down = a.write_all(sa, down.clone(), true);
    let r_down = b.read_to_end(sb);
    let r_up = a.read_to_end(sa);
    wait_until("transfer under way", || {
        b.session_info(sb)
            .is_some_and(|i| i.stats.bytes_received > 1 << 20)
    });
    assert_eq!(b.drain_stream(from), Ok(1));
    check_eq(
        &wait(r_up, "read up").expect("read up"),
        &up,
        "b → a across the drain",
    );
    check_eq(
        &wait(r_down, "read down").expect("read down"),
        &down,
        "a → b across the drain",
    );
    wait(w_up, "write up").expect("write up");
    wait(w_down, "write down").expect("write down");
    wait_until("drained stream closed on both sides", || {
        a.streams_to(b.id()).len() == 1 && b.streams_to(a.id()).len() == 1
    });
    assert!(!b.streams_to(a.id()).contains(&from));
}

// ===== the mio driver ========================================================

mod mio_driver {
    use super::*;
    use astral_mio::{Handle, MioNode};
    use std::io;

    pub struct Mio;

    type AppCmd = Box<dyn FnOnce(&mut MioNode, &mut App) + Send>;

    pub struct Node {
        id: NodeId,
        tx: mpsc::Sender<AppCmd>,
        handle: Handle,
        queries: Mutex<mpsc::Receiver<(SessionId, NodeId, String)>>,
        stop: Arc<AtomicBool>,
        thread: Mutex<Option<JoinHandle<()>>>,
    }

    struct WriteJob {
        data: Vec<u8>,
        pos: usize,
        finish: bool,
        done: mpsc::Sender<Result<(), String>>,
    }

    struct ReadJob {
        buf: Vec<u8>,
        done: mpsc::Sender<Result<Vec<u8>, String>>,
    }

    /// The test application living on the loop thread.
    struct App {
        queries: mpsc::Sender<(SessionId, NodeId, String)>,
        opening: HashMap<SessionId, mpsc::Sender<Result<SessionId, CloseReason>>>,
        writes: HashMap<SessionId, WriteJob>,
        reads: HashMap<SessionId, ReadJob>,
        stream_waiters: HashMap<StreamId, mpsc::Sender<Result<StreamId, String>>>,
        log: HashMap<SessionId, Vec<Event>>,
        buf: Vec<u8>,
    }

    impl App {
        fn on_event(&mut self, node: &mut MioNode, ev: Event) {
            match &ev {
                Event::StreamUp { stream, .. } => {
                    if let Some(w) = self.stream_waiters.remove(stream) {
                        let _ = w.send(Ok(*stream));
                    }
                }
                Event::StreamDown { stream, reason, .. } => {
                    if let Some(w) = self.stream_waiters.remove(stream) {
                        let _ = w.send(Err(reason.to_string()));
                    }
                }
                Event::Query {
                    session,
                    peer,
                    query,
                } => {
                    let _ = self.queries.send((*session, *peer, query.clone()));
                }
                Event::SessionOpen { session } => {
                    if let Some(w) = self.opening.remove(session) {
                        let _ = w.send(Ok(*session));
                    }
                }
                Event::Readable { session } => self.pump_read(node, *session),
                Event::Writable { session } => self.pump_write(node, *session),
                Event::Migrated { session, .. }
                | Event::Recovering { session }
                | Event::Recovered { session, .. } => {
                    self.log.entry(*session).or_default().push(ev.clone());
                }
                Event::SessionClosed { session, reason } => {
                    self.log.entry(*session).or_default().push(ev.clone());
                    if let Some(w) = self.opening.remove(session) {
                        let _ = w.send(Err(reason.clone()));
                    }
                    if let Some(j) = self.writes.remove(session) {
                        let _ = j
                            .done
                            .send(Err(format!("closed before all was written: {reason}")));
                    }
                    if let Some(j) = self.reads.remove(session) {
                        let r = if *reason == CloseReason::Graceful {
                            Ok(j.buf)
                        } else {
                            Err(reason.to_string())
                        };
                        let _ = j.done.send(r);
                    }
                }
                _ => {}
            }
        }

        fn pump_write(&mut self, node: &mut MioNode, id: SessionId) {
            let Some(job) = self.writes.get_mut(&id) else {
                return;
            };
            let Some(mut s) = node.session(id) else {
                return;
            };
            while job.pos < job.data.len() {
                match s.write(&job.data[job.pos..]) {
                    Ok(n) => job.pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        let job = self.writes.remove(&id).expect("present");
                        let _ = job.done.send(Err(e.to_string()));
                        return;
                    }
                }
            }
            if job.finish {
                s.finish();
            }
            let job = self.writes.remove(&id).expect("present");
            let _ = job.done.send(Ok(()));
        }

        fn pump_read(&mut self, node: &mut MioNode, id: SessionId) {
            let Some(job) = self.reads.get_mut(&id) else {
                return;
            };
            let Some(mut s) = node.session(id) else {
                return;
            };
            loop {
                match s.read(&mut self.buf) {
                    Ok(0) => {
                        let job = self.reads.remove(&id).expect("present");
                        let _ = job.done.send(Ok(job.buf));
                        return;
                    }
                    Ok(n) => job.buf.extend_from_slice(&self.buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        let job = self.reads.remove(&id).expect("present");
                        let _ = job.done.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        }
    }

    impl Node {
        fn call<R: Send + 'static>(
            &self,
            f: impl FnOnce(&mut MioNode, &mut App) -> R + Send + 'static,
        ) -> R {
            let (tx, rx) = mpsc::channel();
            self.tx
                .send(Box::new(move |n, a| {
                    let _ = tx.send(f(n, a));
                }))
                .expect("loop alive");
            self.handle.wake().expect("loop alive");
            rx.recv_timeout(WAIT).expect("loop answered")
        }
    }

    impl Drop for Node {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.handle.wake();
            if let Some(t) = self.thread.lock().expect("lock").take() {
                let _ = t.join();
            }
        }
    }

    impl Driver for Mio {
        const NAME: &'static str = "mio";
        type Node = Node;

        fn start(config: Config, seed: u64) -> Node {
            let (tx, rx) = mpsc::channel::<AppCmd>();
            let (qtx, qrx) = mpsc::channel();
            let (ready_tx, ready_rx) = mpsc::channel();
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut seed_bytes = [0u8; 32];
                seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
                let mut node =
                    MioNode::new(config, Identity::from_seed(seed_bytes), seed).expect("node");
                ready_tx
                    .send((node.local_id(), node.handle()))
                    .expect("starter");
                let mut app = App {
                    queries: qtx,
                    opening: HashMap::new(),
                    writes: HashMap::new(),
                    reads: HashMap::new(),
                    stream_waiters: HashMap::new(),
                    log: HashMap::new(),
                    buf: vec![0; 64 * 1024],
                };
                while !stop2.load(Ordering::SeqCst) {
                    node.run_once(Some(Duration::from_secs(1)))
                        .expect("run_once");
                    for cmd in rx.try_iter() {
                        cmd(&mut node, &mut app);
                    }
                    while let Some(ev) = node.poll_event() {
                        app.on_event(&mut node, ev);
                    }
                }
            });
            let (id, handle) = ready_rx.recv_timeout(WAIT).expect("node started");
            Node {
                id,
                tx,
                handle,
                queries: Mutex::new(qrx),
                stop,
                thread: Mutex::new(Some(thread)),
            }
        }
    }

    impl TestNode for Node {
        fn id(&self) -> NodeId {
            self.id
        }

        fn listen(&self) -> SocketAddr {
            self.call(|n, _| n.listen("127.0.0.1:0".parse().expect("addr")))
                .expect("listen")
        }

        fn connect(&self, peer: NodeId, addr: SocketAddr) -> Result<StreamId, String> {
            let (tx, rx) = mpsc::channel();
            self.call(move |n, a| match n.connect(peer, addr) {
                Ok(s) => {
                    a.stream_waiters.insert(s, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            });
            rx.recv_timeout(WAIT).map_err(|e| e.to_string())?
        }

        fn streams_to(&self, peer: NodeId) -> Vec<StreamId> {
            self.call(move |n, _| n.peer_streams(peer))
        }

        fn open(&self, peer: NodeId, query: &str) -> Pending<Result<SessionId, CloseReason>> {
            let (tx, rx) = mpsc::channel();
            let query = query.to_string();
            self.call(move |n, a| match n.open(peer, &query) {
                Ok(s) => {
                    a.opening.insert(s, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(CloseReason::ProtocolError(e.to_string())));
                }
            });
            rx
        }

        fn next_query(&self, timeout: Duration) -> Option<(SessionId, NodeId, String)> {
            self.queries
                .lock()
                .expect("lock")
                .recv_timeout(timeout)
                .ok()
        }

        fn accept(&self, session: SessionId) {
            self.call(move |n, _| n.accept(session)).expect("accept");
        }

        fn reject(&self, session: SessionId, code: u8) {
            self.call(move |n, _| n.reject(session, code))
                .expect("reject");
        }

        fn write_all(
            &self,
            session: SessionId,
            data: Vec<u8>,
            finish: bool,
        ) -> Pending<Result<(), String>> {
            let (tx, rx) = mpsc::channel();
            self.call(move |n, a| {
                a.writes.insert(
                    session,
                    WriteJob {
                        data,
                        pos: 0,
                        finish,
                        done: tx,
                    },
                );
                a.pump_write(n, session);
            });
            rx
        }

        fn read_to_end(&self, session: SessionId) -> Pending<Result<Vec<u8>, String>> {
            let (tx, rx) = mpsc::channel();
            self.call(move |n, a| {
                a.reads.insert(
                    session,
                    ReadJob {
                        buf: Vec::new(),
                        done: tx,
                    },
                );
                a.pump_read(n, session);
            });
            rx
        }

        fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
            self.call(move |n, _| n.session_info(session))
        }

        fn session_events(&self, session: SessionId) -> Vec<Event> {
            self.call(move |_, a| a.log.get(&session).cloned().unwrap_or_default())
        }

        fn migrate(&self, session: SessionId, target: StreamId) -> Result<(), MigrateError> {
            self.call(move |n, _| n.migrate(session, target))
        }

        fn kill_transport(&self, stream: StreamId) -> bool {
            self.call(move |n, _| n.kill_transport(stream))
        }

        fn drain_stream(&self, stream: StreamId) -> Result<usize, String> {
            self.call(move |n, _| n.drain_stream(stream))
                .map_err(|e| e.to_string())
        }
    }
}

use mio_driver::Mio;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn mio_many_sessions_both_ways() {
    bounded(LIMIT, many_sessions_both_ways::<Mio>);
}

#[test]
fn mio_reject() {
    bounded(LIMIT, reject::<Mio>);
}

#[test]
fn mio_half_close() {
    bounded(LIMIT, half_close::<Mio>);
}

#[test]
fn mio_migration_mid_transfer() {
    bounded(LIMIT, migration_mid_transfer::<Mio>);
}

#[test]
fn mio_killed_transport_recovers() {
    bounded(LIMIT, killed_transport_recovers::<Mio>);
}

#[test]
fn mio_drain_mid_transfer() {
    bounded(LIMIT, drain_mid_transfer::<Mio>);
}

#[test]
fn driver_name() {
    assert_eq!(<Mio as Driver>::NAME, "mio");
}
