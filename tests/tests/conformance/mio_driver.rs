//! The mio driver under the conformance traits: a `MioNode` whose loop
//! runs on a dedicated thread. The test thread hands it closures through a
//! channel and wakes it with the node's `Handle`; a small application on
//! the loop thread (`App`) turns Readable/Writable events into the
//! `write_all` / `read_to_end` jobs the traits promise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use astral_core::{
    CloseReason, Config, Event, MigrateError, NodeId, SessionId, SessionInfo, StreamId,
};

use super::{identity, Driver, Pending, TestNode, WAIT};
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
            // Like tokio's `connect`: done once the listener confirmed the
            // stream (its first record arrived), so it can carry migrations.
            Event::StreamConfirmed { stream } => {
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
        let thread = std::thread::Builder::new()
            .name(format!("mio-node-{seed}"))
            .spawn(move || {
                let mut node = MioNode::new(identity(seed), config, seed).expect("node");
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
            })
            .expect("spawn mio loop");
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
        self.call(move |n, a| match n.open_session(peer, &query) {
            Ok(s) => {
                a.opening.insert(s, tx);
            }
            Err(_) => {
                let _ = tx.send(Err(CloseReason::Limit("open refused")));
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
        self.call(move |n, _| n.accept_query(session))
            .expect("accept");
    }

    fn reject(&self, session: SessionId, code: u8) {
        self.call(move |n, _| n.reject_query(session, code))
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

    fn shutdown(&self) {
        self.call(move |n, _| n.shutdown());
    }
}
