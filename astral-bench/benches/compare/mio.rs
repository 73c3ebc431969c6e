//! astral over astral-mio.
//!
//! Bridges astral-mio's single-threaded loop to the blocking [`Contender`]
//! API with two dedicated OS threads per run, one per [`MioNode`], each
//! owning its loop (`run_once` + `poll_event`) and running plain
//! non-blocking session logic inside it: the server thread answers the same
//! opcodes as the shared stream server; the client thread runs the workload
//! and returns its measurements through `join`. No tokio involved.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astral_bench::astral::{astral_config, astral_name, fresh, OPEN_PIPELINE, QUERY};
use astral_bench::contender::{
    pattern, Bulk, Contender, Idle, Res, Shape, ECHO_WARMUP, OP_BULK, OP_ECHO, OP_IDLE,
};
use astral_bench::tcp::loopback;
use astral_bench::{heap, Cipher};
use astral_core::{Config, NodeId};
use astral_mio::{Event, MioNode, SessionId};
use tokio::runtime::Runtime;

/// (f) astral over astral-mio: client and server `MioNode`s on two
/// dedicated threads per run (see the module docs).
pub struct AstralMio {
    cfg: Config,
    cipher: Cipher,
}

impl AstralMio {
    /// Nodes with `window` and `cipher` (the same config as astral-tokio).
    pub fn new(window: u32, cipher: Cipher) -> Self {
        Self {
            cfg: astral_config(window, cipher),
            cipher,
        }
    }
}

/// Server thread; stopped and joined on drop.
struct MioServer {
    id: NodeId,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wake: astral_mio::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MioServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the server does with a session, decided by its first byte.
enum Serve {
    New,
    /// Bulk sink: bytes counted so far.
    Bulk(u64),
    /// Echo: bytes read but not yet taken by the send buffer.
    Echo(Vec<u8>),
    /// Idle: answered once, then held.
    Idle,
}

fn start_mio_server(cfg: &Config) -> Res<MioServer> {
    let (identity, seed) = fresh(3);
    let mut node = MioNode::new(identity, cfg.clone(), seed)?;
    let addr = node.listen(loopback())?;
    let id = node.local_id();
    let wake = node.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("astral-mio-server".into())
        .spawn(move || serve_mio(node, &stop2))?;
    Ok(MioServer {
        id,
        addr,
        stop,
        wake,
        thread: Some(thread),
    })
}

/// Writes what `pending` holds; keeps the rest for the next `Writable`.
fn echo_out(node: &mut MioNode, id: SessionId, pending: &mut Vec<u8>) {
    let Some(mut s) = node.session(id) else {
        pending.clear();
        return;
    };
    while !pending.is_empty() {
        match s.write(pending) {
            Ok(k) => {
                pending.drain(..k);
            }
            Err(_) => return,
        }
    }
}

fn serve_readable(node: &mut MioNode, id: SessionId, st: &mut Serve, buf: &mut [u8]) {
    loop {
        let Some(mut s) = node.session(id) else {
            return;
        };
        let n = match s.read(buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        let mut data = &buf[..n];
        if matches!(st, Serve::New) && !data.is_empty() {
            *st = match data[0] {
                OP_BULK => Serve::Bulk(0),
                OP_ECHO => Serve::Echo(Vec::new()),
                OP_IDLE => {
                    // One byte always fits in the send buffer.
                    let _ = s.write(&[OP_IDLE]);
                    Serve::Idle
                }
                _ => {
                    s.reset();
                    return;
                }
            };
            data = &data[1..];
        }
        match st {
            Serve::Bulk(total) if n == 0 => {
                // 8 bytes always fit in the send buffer.
                let _ = s.write(&total.to_le_bytes());
                s.finish();
                return;
            }
            Serve::Bulk(total) => *total += data.len() as u64,
            Serve::Echo(_) if n == 0 => {
                s.finish();
                return;
            }
            Serve::Echo(pending) => {
                pending.extend_from_slice(data);
                echo_out(node, id, pending);
            }
            Serve::Idle | Serve::New if n == 0 => {
                s.finish();
                return;
            }
            Serve::Idle | Serve::New => {}
        }
    }
}

fn serve_mio(mut node: MioNode, stop: &AtomicBool) {
    let mut sessions: HashMap<SessionId, Serve> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if node.run_once(Some(Duration::from_millis(200))).is_err() {
            return;
        }
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Query { session, .. } if node.accept_query(session).is_ok() => {
                    sessions.insert(session, Serve::New);
                }
                Event::Readable { session } => {
                    if let Some(st) = sessions.get_mut(&session) {
                        serve_readable(&mut node, session, st, &mut buf);
                    }
                }
                Event::Writable { session } => {
                    if let Some(Serve::Echo(p)) = sessions.get_mut(&session) {
                        echo_out(&mut node, session, p);
                    }
                }
                Event::SessionClosed { session, .. } => {
                    sessions.remove(&session);
                }
                _ => {}
            }
        }
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Runs the loop until `done` says so, handing it every event; fails after
/// `limit` without success.
fn drive(
    node: &mut MioNode,
    limit: Duration,
    mut on: impl FnMut(&mut MioNode, Event) -> Res<bool>,
) -> Res<()> {
    let deadline = Instant::now() + limit;
    loop {
        while let Some(ev) = node.poll_event() {
            if on(node, ev)? {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("astral-mio: timed out".into());
        }
        node.run_once(Some(Duration::from_millis(500)))?;
    }
}

const STEP: Duration = Duration::from_secs(30);

/// A client node with one confirmed stream to `server`.
fn mio_client(cfg: &Config, server: &MioServer) -> Res<MioNode> {
    let (identity, seed) = fresh(4);
    let mut node = MioNode::new(identity, cfg.clone(), seed)?;
    let stream = node.connect(server.id, server.addr)?;
    drive(&mut node, STEP, |_, ev| match ev {
        Event::StreamConfirmed { stream: s } if s == stream => Ok(true),
        Event::StreamDown {
            stream: s, reason, ..
        } if s == stream => Err(format!("astral-mio: stream down: {reason:?}").into()),
        _ => Ok(false),
    })?;
    Ok(node)
}

/// Opens `n` sessions (pipelined) and waits until all are accepted.
fn mio_open(node: &mut MioNode, server: NodeId, n: usize) -> Res<Vec<SessionId>> {
    let ids = (0..n)
        .map(|_| node.open_session(server, QUERY).map_err(io_err))
        .collect::<io::Result<Vec<_>>>()?;
    let mut open = 0;
    drive(node, STEP, |_, ev| match ev {
        Event::SessionOpen { .. } => {
            open += 1;
            Ok(open == n)
        }
        Event::SessionClosed { reason, .. } => {
            Err(format!("astral-mio: open failed: {reason:?}").into())
        }
        _ => Ok(false),
    })?;
    Ok(ids)
}

struct Sender {
    id: SessionId,
    left: u64,
    op_sent: bool,
    finished: bool,
    ack: Vec<u8>,
    done: bool,
}

/// Writes until the session's send buffer refuses; finishes when all is written.
fn push(node: &mut MioNode, tx: &mut Sender, data: &[u8]) -> Res<()> {
    let Some(mut s) = node.session(tx.id) else {
        return Err("astral-mio: session gone mid-transfer".into());
    };
    let blocked = |e: &io::Error| e.kind() == io::ErrorKind::WouldBlock;
    if !tx.op_sent {
        match s.write(&[OP_BULK]) {
            Ok(_) => tx.op_sent = true,
            Err(e) if blocked(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    while tx.left > 0 {
        let n = usize::try_from(tx.left).map_or(data.len(), |l| l.min(data.len()));
        match s.write(&data[..n]) {
            Ok(k) => tx.left -= k as u64,
            Err(e) if blocked(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    if !tx.finished {
        s.finish();
        tx.finished = true;
    }
    Ok(())
}

/// Reads the server's 8-byte receipt; true once complete.
fn pull_ack(node: &mut MioNode, tx: &mut Sender, bytes: u64) -> Res<bool> {
    let Some(mut s) = node.session(tx.id) else {
        return Err("astral-mio: session gone before its receipt".into());
    };
    let mut b = [0u8; 16];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => tx.ack.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    if tx.ack.len() >= 8 {
        let got = u64::from_le_bytes(tx.ack[..8].try_into()?);
        if got != bytes {
            return Err(format!("server received {got} bytes, sent {bytes}").into());
        }
        return Ok(true);
    }
    Ok(false)
}

/// One client node sending `payload` over `sessions` sessions; starts
/// writing once every client of the run is ready (`ready`). Returns when
/// the writes started and ended, and the bytes delivered.
fn mio_bulk(
    cfg: &Config,
    server: &MioServer,
    payload: u64,
    sessions: usize,
    write_size: usize,
    ready: &std::sync::Barrier,
) -> Res<(Instant, Instant, u64)> {
    let mut node = mio_client(cfg, server)?;
    let ids = mio_open(&mut node, server.id, sessions)?;
    ready.wait();
    let per = payload / sessions as u64;
    let data = pattern(write_size.max(1));
    let mut txs: Vec<Sender> = ids
        .iter()
        .map(|&id| Sender {
            id,
            left: per,
            op_sent: false,
            finished: false,
            ack: Vec::new(),
            done: false,
        })
        .collect();
    let index: HashMap<SessionId, usize> = ids.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    let start = Instant::now();
    for tx in &mut txs {
        push(&mut node, tx, &data)?;
    }
    let mut done = 0;
    drive(&mut node, Duration::from_secs(900), |node, ev| {
        match ev {
            Event::Writable { session } => {
                if let Some(&i) = index.get(&session) {
                    push(node, &mut txs[i], &data)?;
                }
            }
            Event::Readable { session } => {
                if let Some(&i) = index.get(&session) {
                    if !txs[i].done && pull_ack(node, &mut txs[i], per)? {
                        txs[i].done = true;
                        done += 1;
                    }
                }
            }
            Event::SessionClosed { session, reason } => {
                if let Some(&i) = index.get(&session) {
                    if !txs[i].done {
                        return Err(format!("astral-mio: session closed: {reason:?}").into());
                    }
                }
            }
            _ => {}
        }
        Ok(done == sessions)
    })?;
    Ok((start, Instant::now(), per * sessions as u64))
}

/// `shape.conns` client nodes (peers), each on its own thread with
/// `shape.sessions` sessions, sending at the same time.
fn mio_bulk_shape(
    cfg: &Config,
    server: &MioServer,
    payload: u64,
    shape: Shape,
    write_size: usize,
) -> Res<Bulk> {
    let conns = shape.conns.max(1);
    let sessions = shape.sessions.max(1);
    let ready = std::sync::Barrier::new(conns);
    let per_conn = payload / conns as u64;
    let runs: Vec<Res<(Instant, Instant, u64)>> = std::thread::scope(|sc| {
        let threads: Vec<_> = (0..conns)
            .map(|_| {
                let ready = &ready;
                sc.spawn(move || mio_bulk(cfg, server, per_conn, sessions, write_size, ready))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("astral-mio client thread panicked".into()))
            })
            .collect()
    });
    let mut first = None::<Instant>;
    let mut last = None::<Instant>;
    let mut bytes = 0;
    for r in runs {
        let (a, b, n) = r?;
        first = Some(first.map_or(a, |f| f.min(a)));
        last = Some(last.map_or(b, |l| l.max(b)));
        bytes += n;
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err("astral-mio: no client ran".into());
    };
    Ok(Bulk {
        elapsed: last - first,
        bytes,
        mode: astral_bench::contender::shape_label(conns, sessions, true),
    })
}

/// One 1-byte round trip on `id`.
fn mio_round(node: &mut MioNode, id: SessionId, byte: u8) -> Res<()> {
    node.session(id)
        .ok_or("astral-mio: echo session gone")?
        .write(&[byte])?;
    drive(node, STEP, |node, ev| match ev {
        Event::Readable { session } if session == id => {
            let mut b = [0u8; 1];
            let mut s = node.session(id).ok_or("astral-mio: echo session gone")?;
            match s.read(&mut b) {
                Ok(1) if b[0] == byte => Ok(true),
                Ok(1) => Err("echo returned the wrong byte".into()),
                Ok(_) => Err("echo session ended".into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Event::SessionClosed { session, reason } if session == id => {
            Err(format!("astral-mio: echo session closed: {reason:?}").into())
        }
        _ => Ok(false),
    })
}

fn mio_echo(cfg: &Config, server: &MioServer, rounds: usize) -> Res<Vec<Duration>> {
    let mut node = mio_client(cfg, server)?;
    let id = mio_open(&mut node, server.id, 1)?[0];
    node.session(id)
        .ok_or("astral-mio: echo session gone")?
        .write(&[OP_ECHO])?;
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..ECHO_WARMUP + rounds {
        let start = Instant::now();
        mio_round(&mut node, id, i as u8)?;
        if i >= ECHO_WARMUP {
            lat.push(start.elapsed());
        }
    }
    if let Some(mut s) = node.session(id) {
        s.finish();
    }
    // Let the finish go out before the node (and its socket) goes.
    node.run_once(Some(Duration::ZERO))?;
    Ok(lat)
}

fn mio_handshakes(cfg: &Config, server: &MioServer, n: usize) -> Res<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        // The session is opened with the dial: its Query rides behind
        // handshake message 3 (no wait for the server's first record).
        let (identity, seed) = fresh(4);
        let mut node = MioNode::new(identity, cfg.clone(), seed)?;
        let stream = node.connect(server.id, server.addr)?;
        let id = node.open_session(server.id, QUERY).map_err(io_err)?;
        drive(&mut node, STEP, |_, ev| match ev {
            Event::SessionOpen { session } if session == id => Ok(true),
            Event::StreamDown {
                stream: s, reason, ..
            } if s == stream => Err(format!("astral-mio: stream down: {reason:?}").into()),
            Event::SessionClosed { reason, .. } => {
                Err(format!("astral-mio: open failed: {reason:?}").into())
            }
            _ => Ok(false),
        })?;
        node.session(id)
            .ok_or("astral-mio: session gone")?
            .write(&[OP_ECHO])?;
        mio_round(&mut node, id, 7)?;
        if let Some(mut s) = node.session(id) {
            s.close();
        }
        drop(node);
        lat.push(start.elapsed());
    }
    Ok(lat)
}

/// Idle workload: `n` sessions opened with `OPEN_PIPELINE` opens in
/// flight, each announced with `OP_IDLE` and answered once by the server
/// thread, then held while the heap is read (both loops idle).
///
/// `BENCH_IDLE_SILENT=1` (diagnostic): no byte exchanged, sessions only
/// opened and accepted, to tell session state from what one round trip
/// leaves behind.
fn mio_idle(cfg: &Config, server: &MioServer, n: usize) -> Res<Idle> {
    let silent = std::env::var("BENCH_IDLE_SILENT").is_ok_and(|v| v == "1");
    astral_bench::contender::settle_blocking();
    let before = heap::snapshot();
    let mut node = mio_client(cfg, server)?;
    let mut ids: Vec<SessionId> = Vec::with_capacity(n);
    astral_bench::contender::settle_blocking();
    let mid = heap::snapshot();
    let start = Instant::now();
    let (mut issued, mut open, mut answered) = (0usize, 0usize, 0usize);
    let mut open_at = None;
    while issued < n.min(OPEN_PIPELINE) {
        node.open_session(server.id, QUERY).map_err(io_err)?;
        issued += 1;
    }
    drive(&mut node, Duration::from_secs(300), |node, ev| {
        match ev {
            Event::SessionOpen { session } => {
                if silent {
                    answered += 1;
                } else {
                    node.session(session)
                        .ok_or("astral-mio: idle session gone")?
                        .write(&[OP_IDLE])?;
                }
                ids.push(session);
                open += 1;
                if open == n {
                    open_at = Some(start.elapsed());
                }
                if issued < n {
                    node.open_session(server.id, QUERY).map_err(io_err)?;
                    issued += 1;
                }
            }
            Event::Readable { session } => {
                let mut b = [0u8; 4];
                if let Some(Ok(1)) = node.session(session).map(|mut s| s.read(&mut b)) {
                    answered += 1;
                }
            }
            Event::SessionClosed { reason, .. } => {
                return Err(format!("astral-mio: idle session closed: {reason:?}").into());
            }
            _ => {}
        }
        Ok(answered == n)
    })?;
    let ready = start.elapsed();
    // Both loops go idle (the server's next turn happens within 200 ms).
    astral_bench::contender::settle_blocking();
    let after = heap::snapshot();
    let delta = |a: heap::Heap| heap::Heap {
        bytes: after.bytes - a.bytes,
        allocs: after.allocs - a.allocs,
    };
    drop(ids);
    drop(node);
    Ok(Idle {
        sessions: n,
        open: open_at.unwrap_or(ready),
        ready,
        heap: delta(mid),
        heap_with_conn: delta(before),
    })
}

/// Runs `f` on a dedicated client thread against a fresh server thread.
fn with_mio<R: Send>(cfg: &Config, f: impl FnOnce(&MioServer) -> Res<R> + Send) -> Res<R> {
    let server = start_mio_server(cfg)?;
    let server = &server;
    std::thread::scope(|sc| {
        std::thread::Builder::new()
            .name("astral-mio-client".into())
            .spawn_scoped(sc, move || f(server))?
            .join()
            .map_err(|_| "astral-mio client thread panicked")?
    })
}

impl Contender for AstralMio {
    fn name(&self) -> String {
        astral_name("mio", self.cipher)
    }
    fn cipher(&self) -> Option<Cipher> {
        Some(self.cipher)
    }
    fn bulk(
        &self,
        _rt: &Runtime,
        payload: u64,
        shape: Shape,
        write_size: usize,
    ) -> Res<Option<Bulk>> {
        with_mio(&self.cfg, |s| {
            mio_bulk_shape(&self.cfg, s, payload, shape, write_size)
        })
        .map(Some)
    }
    fn echo(&self, _rt: &Runtime, rounds: usize) -> Res<Vec<Duration>> {
        with_mio(&self.cfg, |s| mio_echo(&self.cfg, s, rounds))
    }
    fn handshakes(&self, _rt: &Runtime, n: usize) -> Res<Vec<Duration>> {
        with_mio(&self.cfg, |s| mio_handshakes(&self.cfg, s, n))
    }
    fn idle(&self, _rt: &Runtime, n: usize) -> Res<Option<Idle>> {
        let mut cfg = self.cfg.clone();
        cfg.max_sessions_per_peer = cfg.max_sessions_per_peer.max(n + 64);
        cfg.max_sessions = cfg.max_sessions.max(n + 64);
        with_mio(&cfg, |s| mio_idle(&cfg, s, n)).map(Some)
    }
}
