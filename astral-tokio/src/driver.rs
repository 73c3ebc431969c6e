//! Shared driver state: the core behind one mutex, the wakers and channels
//! that turn core events into async progress, and the timer task.
//!
//! Every core call goes through [`Inner::with`], which runs the call, then
//! [`after`]: drain the core's events (wake sessions, resolve pending
//! connects and opens, forward queries, broadcast), wake the transports that
//! now have output, and re-arm the timer if the core's next deadline moved
//! earlier. Wakers run after the lock is released.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use astral_core::{
    CloseReason, Event, NodeId, SessionId, StreamCloseReason, StreamId, StreamState, Timestamp,
};
use bytes::BytesMut;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

use crate::session::IncomingQuery;

/// How a transport task must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The core ended the stream: drop the transport (nothing to report).
    Core,
    /// `kill_transport`: drop the transport abruptly and report the failure
    /// to the core, as if the connection had broken.
    Abort,
}

/// Driver-side state of one session handle.
#[derive(Default)]
pub(crate) struct SessionSlot {
    pub read: Option<Waker>,
    pub write: Option<Waker>,
    /// Why the core removed the session, once it did.
    pub closed: Option<CloseReason>,
    /// Live `Session`/`IncomingQuery` objects (and a pending `open`).
    pub handles: u32,
    /// A pending `open`, resolved by SessionOpen or SessionClosed.
    pub open: Option<oneshot::Sender<Result<(), CloseReason>>>,
}

/// Driver-side state of one transport.
pub(crate) struct TransportSlot {
    /// The transport task, parked because the core had nothing to send.
    pub waker: Option<Waker>,
    pub kill: Option<oneshot::Sender<Kill>>,
    /// A pending `connect`, resolved once the stream is up and confirmed.
    pub connect: Option<oneshot::Sender<Result<NodeId, StreamCloseReason>>>,
    /// Index in `Shared::dials` if we dialed it.
    pub dial: Option<usize>,
    /// TCP transports: the socket, for writing output directly from the
    /// context that produced it while the transport task is parked (saves
    /// a task hop per small message; see `after`).
    pub direct: Option<crate::conn::DirectTcp>,
    /// Ciphertext a direct write could not finish; the transport task
    /// writes it before pulling more from the core.
    pub pending: BytesMut,
}

/// A remembered dial target: redialed with backoff when its stream dies.
pub(crate) struct Dial {
    pub peer: NodeId,
    pub addr: SocketAddr,
    pub stream: Option<StreamId>,
    /// False once the application closed or drained the stream on purpose.
    pub active: bool,
    pub redialing: bool,
}

fn sh_dials_set(dials: &mut [Dial], d: usize, stream: StreamId) {
    dials[d].stream = Some(stream);
}

/// Exponential backoff bounds for redialing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

pub(crate) struct Shared {
    pub core: astral_core::Node,
    pub sessions: HashMap<SessionId, SessionSlot>,
    pub transports: HashMap<StreamId, TransportSlot>,
    pub dials: Vec<Dial>,
    pub incoming_tx: mpsc::UnboundedSender<IncomingQuery>,
    /// Deadline the timer task sleeps until.
    pub timer_armed: Timestamp,
    pub closed: bool,
    pub redial: Option<Backoff>,
    /// Wakers to run once the lock is released.
    wake: Vec<Waker>,
    /// Scratch buffer for direct writes.
    direct_buf: BytesMut,
}

pub(crate) struct Inner {
    shared: Mutex<Shared>,
    pub start: Instant,
    pub local_id: NodeId,
    pub timer: Notify,
    pub events: broadcast::Sender<Event>,
    pub incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<IncomingQuery>>,
    pub shutdown: watch::Sender<bool>,
    pub me: Weak<Inner>,
}

/// Largest output written directly (beyond it the transport task takes over).
const DIRECT_MAX: usize = 64 * 1024;

/// Events kept for `events()` subscribers.
const EVENT_CAPACITY: usize = 4096;

impl Inner {
    pub fn new(core: astral_core::Node) -> Arc<Inner> {
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        let local_id = core.local_id();
        Arc::new_cyclic(|me| Inner {
            shared: Mutex::new(Shared {
                core,
                sessions: HashMap::new(),
                transports: HashMap::new(),
                dials: Vec::new(),
                incoming_tx,
                timer_armed: Timestamp::MAX,
                closed: false,
                redial: Some(Backoff {
                    min: Duration::from_millis(100),
                    max: Duration::from_secs(5),
                }),
                wake: Vec::new(),
                direct_buf: BytesMut::new(),
            }),
            start: Instant::now(),
            local_id,
            timer: Notify::new(),
            events,
            incoming: tokio::sync::Mutex::new(incoming_rx),
            shutdown,
            me: me.clone(),
        })
    }

    /// The driver's clock as the core's timestamp.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Timestamp) -> Instant {
        // Cap "never" at a day: the timer task is re-armed long before.
        let d = Duration::from_nanos(t.as_nanos())
            .min(self.start.elapsed() + Duration::from_secs(86_400));
        self.start + d
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the shared state, then dispatches what the core produced.
    pub fn with<R>(&self, f: impl FnOnce(&mut Shared, Timestamp) -> R) -> R {
        let mut g = self.lock();
        let now = self.now();
        let r = f(&mut g, now);
        self.after(&mut g, now);
        let wake = std::mem::take(&mut g.wake);
        drop(g);
        for w in wake {
            w.wake();
        }
        r
    }

    /// Reads the shared state without dispatching (snapshots).
    pub fn peek<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        f(&self.lock())
    }

    fn after(&self, sh: &mut Shared, now: Timestamp) {
        let mut first = true;
        loop {
            let mut had_events = false;
            while let Some(ev) = sh.core.poll_event() {
                had_events = true;
                self.dispatch(sh, now, ev);
            }
            if !first && !had_events {
                break;
            }
            first = false;
            let Shared {
                core,
                transports,
                wake,
                dials,
                direct_buf,
                ..
            } = sh;
            let mut again = false;
            for (id, t) in transports.iter_mut() {
                if t.connect.is_some() {
                    if let Some(info) = core.stream_info(*id) {
                        // Up and confirmed: the responder's first record proved
                        // it accepted our last handshake message.
                        if info.state == StreamState::Established && info.confirmed {
                            if let (Some(tx), Some(peer)) = (t.connect.take(), info.peer) {
                                let _ = tx.send(Ok(peer));
                                if let Some(d) = t.dial {
                                    sh_dials_set(dials, d, *id);
                                }
                            }
                        }
                    }
                }
                // A parked transport task has written everything it pulled.
                if t.waker.is_none() || !core.wants_transmit(*id) {
                    continue;
                }
                if let (Some(tcp), true) = (&t.direct, t.pending.is_empty()) {
                    // Direct write: pull and write here, without waking the
                    // task, as long as the socket takes it all at once.
                    direct_buf.clear();
                    let n = core.poll_transmit(now, *id, direct_buf, DIRECT_MAX);
                    again = true;
                    let mut off = 0;
                    while off < n {
                        match crate::conn::try_write(tcp, &direct_buf[off..n]) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => off += k,
                        }
                    }
                    if off == n && !core.wants_transmit(*id) {
                        continue;
                    }
                    // The task takes over (it reports errors, waits for room).
                    t.pending.extend_from_slice(&direct_buf[off..n]);
                }
                wake.extend(t.waker.take());
            }
            // A direct transmit may have produced events (a session
            // finished): dispatch them too.
            if !again {
                break;
            }
        }
        let next = sh.core.poll_timeout().unwrap_or(Timestamp::MAX);
        if next < sh.timer_armed {
            sh.timer_armed = next;
            self.timer.notify_one();
        }
    }

    fn dispatch(&self, sh: &mut Shared, now: Timestamp, ev: Event) {
        let _ = now;
        match &ev {
            Event::Readable { session } => {
                if let Some(s) = sh.sessions.get_mut(session) {
                    sh.wake.extend(s.read.take());
                }
                return;
            }
            Event::Writable { session } => {
                if let Some(s) = sh.sessions.get_mut(session) {
                    sh.wake.extend(s.write.take());
                }
                return;
            }
            Event::SessionOpen { session } => {
                if let Some(s) = sh.sessions.get_mut(session) {
                    if let Some(tx) = s.open.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
            Event::SessionClosed { session, reason } => {
                if let Some(s) = sh.sessions.get_mut(session) {
                    s.closed = Some(reason.clone());
                    if let Some(tx) = s.open.take() {
                        let _ = tx.send(Err(reason.clone()));
                    }
                    sh.wake.extend(s.read.take());
                    sh.wake.extend(s.write.take());
                    if s.handles == 0 {
                        sh.sessions.remove(session);
                    }
                }
            }
            Event::Query {
                session,
                peer,
                query,
            } => {
                sh.sessions.insert(
                    *session,
                    SessionSlot {
                        handles: 1,
                        ..SessionSlot::default()
                    },
                );
                let inner = self.me.upgrade().expect("called through an Arc");
                let q = IncomingQuery::new(inner, *session, *peer, query.clone());
                if let Err(e) = sh.incoming_tx.send(q) {
                    // Nobody listens (cannot happen while the node lives):
                    // dropping the query rejects it.
                    drop(e);
                }
            }
            Event::StreamDown { stream, reason, .. } => {
                tracing::debug!(%stream, %reason, "stream down");
                if let Some(t) = sh.transports.get_mut(stream) {
                    if let Some(tx) = t.connect.take() {
                        let _ = tx.send(Err(reason.clone()));
                    }
                    if *reason == StreamCloseReason::Drained {
                        // Flush the last records, then hang up.
                        sh.wake.extend(t.waker.take());
                    } else if let Some(k) = t.kill.take() {
                        let _ = k.send(Kill::Core);
                    }
                    if let Some(d) = t.dial {
                        let dial = &mut sh.dials[d];
                        if dial.stream == Some(*stream) {
                            dial.stream = None;
                            if dial.active && !sh.closed && !dial.redialing {
                                if let Some(backoff) = sh.redial {
                                    dial.redialing = true;
                                    let inner = self.me.upgrade().expect("called through an Arc");
                                    tokio::spawn(crate::node::redial(inner, d, backoff));
                                }
                            }
                        }
                    }
                }
            }
            Event::StreamUp { stream, peer } => {
                tracing::debug!(%stream, %peer, "stream up");
            }
            _ => {}
        }
        let _ = self.events.send(ev);
    }

    /// Sleeps until the core's next deadline and runs its timers.
    pub async fn timer_task(self: Arc<Inner>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let deadline = self.with(|sh, now| {
                if sh.core.poll_timeout().is_some_and(|t| t <= now) {
                    sh.core.handle_timeout(now);
                }
                // What we sleep until; `after` then sees nothing earlier and
                // does not notify us again.
                sh.timer_armed = sh.core.poll_timeout().unwrap_or(Timestamp::MAX);
                (!sh.closed).then_some(sh.timer_armed)
            });
            let Some(at) = deadline else { return };
            let at = self.instant(at);
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = self.timer.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
