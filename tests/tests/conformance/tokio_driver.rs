//! The tokio driver under the conformance traits: an `astral_tokio::Node`
//! on its own one-worker runtime. Sessions are split into read and write
//! halves kept in a table, so a `write_all` and a `read_to_end` can run as
//! two tasks at once; inbound queries wait in a table until the test
//! accepts or rejects them; a task records the session-level events of
//! `Node::events()`.
//!
//! Redialing is off: the scenarios count streams, and the mio driver does
//! not redial either.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use astral_core::{
    CloseReason, Config, Event, MigrateError, NodeId, SessionId, SessionInfo, StreamId,
};
use astral_tokio::{Error, IncomingQuery, Session, SessionReader, SessionWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;

use super::{identity, Driver, Pending, TestNode, WAIT};

pub struct Tokio;

/// A session's halves while no job holds them.
#[derive(Default)]
struct Halves {
    r: Option<SessionReader>,
    w: Option<SessionWriter>,
}

type Table<K, V> = Arc<Mutex<HashMap<K, V>>>;

pub struct Node {
    node: astral_tokio::Node,
    rt: Option<Runtime>,
    queries: Mutex<mpsc::Receiver<(SessionId, NodeId, String)>>,
    pending: Table<SessionId, IncomingQuery>,
    sessions: Table<SessionId, Halves>,
    log: Table<SessionId, Vec<Event>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Node {
    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("runtime")
    }

    fn store(sessions: &Table<SessionId, Halves>, s: Session) -> SessionId {
        let id = s.id();
        let (r, w) = s.into_split();
        lock(sessions).insert(
            id,
            Halves {
                r: Some(r),
                w: Some(w),
            },
        );
        id
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _guard = self.rt().enter();
        self.node.shutdown();
        lock(&self.pending).clear();
        lock(&self.sessions).clear();
        drop(_guard);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Driver for Tokio {
    const NAME: &'static str = "tokio";
    type Node = Node;

    fn start(config: Config, seed: u64) -> Node {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("tokio-node-{seed}"))
            .enable_all()
            .build()
            .expect("runtime");
        let node = {
            let _guard = rt.enter();
            astral_tokio::Node::with_seed(identity(seed), config, seed).expect("valid config")
        };
        node.set_redial(None);
        let pending: Table<SessionId, IncomingQuery> = Arc::default();
        let log: Table<SessionId, Vec<Event>> = Arc::default();
        // Session-level events, recorded from the start.
        let mut events = node.events();
        let log2 = log.clone();
        rt.spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        let session = match &ev {
                            Event::Migrated { session, .. }
                            | Event::Recovering { session }
                            | Event::Recovered { session, .. }
                            | Event::SessionClosed { session, .. } => *session,
                            _ => continue,
                        };
                        lock(&log2).entry(session).or_default().push(ev);
                    }
                    Err(RecvError::Lagged(n)) => {
                        eprintln!("tokio conformance node: event log lagged by {n}");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        // Inbound queries wait in `pending` for accept / reject.
        let (qtx, qrx) = mpsc::channel();
        let mut incoming = node.incoming();
        let pending2 = pending.clone();
        rt.spawn(async move {
            while let Some(q) = incoming.next().await {
                let info = (q.id(), q.peer(), q.query().to_string());
                lock(&pending2).insert(q.id(), q);
                if qtx.send(info).is_err() {
                    return;
                }
            }
        });
        Node {
            node,
            rt: Some(rt),
            queries: Mutex::new(qrx),
            pending,
            sessions: Arc::default(),
            log,
        }
    }
}

impl TestNode for Node {
    fn id(&self) -> NodeId {
        self.node.id()
    }

    fn listen(&self) -> SocketAddr {
        self.rt()
            .block_on(self.node.listen("127.0.0.1:0"))
            .expect("listen")
    }

    fn connect(&self, peer: NodeId, addr: SocketAddr) -> Result<StreamId, String> {
        self.rt()
            .block_on(async { tokio::time::timeout(WAIT, self.node.connect(peer, addr)).await })
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| e.to_string())
    }

    fn streams_to(&self, peer: NodeId) -> Vec<StreamId> {
        self.node.peer_streams(peer)
    }

    fn open(&self, peer: NodeId, query: &str) -> Pending<Result<SessionId, CloseReason>> {
        let (tx, rx) = mpsc::channel();
        let (node, query, sessions) = (self.node.clone(), query.to_string(), self.sessions.clone());
        self.rt().spawn(async move {
            let r = match node.open_session(peer, &query).await {
                Ok(s) => Ok(Node::store(&sessions, s)),
                Err(Error::Rejected { code, .. }) => Err(CloseReason::Rejected(code)),
                Err(Error::SessionClosed(r)) => Err(r),
                Err(_) => Err(CloseReason::Limit("open refused")),
            };
            let _ = tx.send(r);
        });
        rx
    }

    fn next_query(&self, timeout: Duration) -> Option<(SessionId, NodeId, String)> {
        lock(&self.queries).recv_timeout(timeout).ok()
    }

    fn accept(&self, session: SessionId) {
        let _guard = self.rt().enter();
        let q = lock(&self.pending)
            .remove(&session)
            .expect("a pending query");
        Node::store(&self.sessions, q.accept().expect("accept"));
    }

    fn reject(&self, session: SessionId, code: u8) {
        let _guard = self.rt().enter();
        let q = lock(&self.pending)
            .remove(&session)
            .expect("a pending query");
        q.reject(code);
    }

    fn write_all(
        &self,
        session: SessionId,
        data: Vec<u8>,
        finish: bool,
    ) -> Pending<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        let w = lock(&self.sessions)
            .get_mut(&session)
            .and_then(|h| h.w.take());
        let Some(mut w) = w else {
            let _ = tx.send(Err(format!("no write half for {session}")));
            return rx;
        };
        let sessions = self.sessions.clone();
        self.rt().spawn(async move {
            let mut r = w.write_all(&data).await;
            if r.is_ok() && finish {
                r = w.shutdown().await;
            }
            // Keep the half (the session lives until the node goes).
            lock(&sessions).entry(session).or_default().w = Some(w);
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        rx
    }

    fn read_to_end(&self, session: SessionId) -> Pending<Result<Vec<u8>, String>> {
        let (tx, rx) = mpsc::channel();
        let r = lock(&self.sessions)
            .get_mut(&session)
            .and_then(|h| h.r.take());
        let Some(mut r) = r else {
            let _ = tx.send(Err(format!("no read half for {session}")));
            return rx;
        };
        let sessions = self.sessions.clone();
        self.rt().spawn(async move {
            let mut buf = Vec::new();
            let res = r.read_to_end(&mut buf).await;
            lock(&sessions).entry(session).or_default().r = Some(r);
            let _ = tx.send(res.map(|_| buf).map_err(|e| e.to_string()));
        });
        rx
    }

    fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        self.node.session_info(session)
    }

    fn session_events(&self, session: SessionId) -> Vec<Event> {
        lock(&self.log).get(&session).cloned().unwrap_or_default()
    }

    fn migrate(&self, session: SessionId, target: StreamId) -> Result<(), MigrateError> {
        let _guard = self.rt().enter();
        match self.node.migrate(session, target) {
            Ok(()) => Ok(()),
            Err(Error::Migrate(e)) => Err(e),
            Err(e) => panic!("migrate: unexpected error {e}"),
        }
    }

    fn kill_transport(&self, stream: StreamId) -> bool {
        let _guard = self.rt().enter();
        self.node.kill_transport(stream)
    }

    fn drain_stream(&self, stream: StreamId) -> Result<usize, String> {
        let _guard = self.rt().enter();
        self.node.drain_stream(stream).map_err(|e| e.to_string())
    }

    fn shutdown(&self) {
        let _guard = self.rt().enter();
        self.node.shutdown();
    }
}
