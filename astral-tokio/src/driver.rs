//! Shared driver state: the core behind one mutex, the wakers and channels
//! that turn core events into async progress, and the timer task.
//!
//! Every core call goes through [`Inner::with`], which runs the call, then
//! [`after`]: drain the core's events (wake sessions, resolve pending
//! connects and opens, forward queries, broadcast), wake the transports that
//! now have output, and re-arm the timer if the core's next deadline moved
//! earlier. Wakers run after the lock is released.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Waker};
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

/// Wakers of a session's parked reader (or pending `open_session`), writer
/// and `closed()` waiter.
#[derive(Default)]
struct Parked {
    read: Option<Waker>,
    write: Option<Waker>,
    close: Option<Waker>,
}

/// Driver-side session state, kept sparse so that an idle session costs
/// the driver nothing: an entry exists only while a task is parked on the
/// session, or once the core removed a session whose handle still lives.
///
/// Every session the core creates gets exactly one driver handle at once
/// (`open_session` makes the `Session`; a `Query` event makes the `IncomingQuery`,
/// which `accept` turns into the `Session`), and the core reports exactly one
/// `SessionClosed` per session. Whichever of "handle released" and
/// "SessionClosed dispatched" comes second forgets the session: a close
/// reason waits in `closed` for the handle, a released handle waits in
/// `orphans` for the close.
#[derive(Default)]
pub(crate) struct Sessions {
    parked: HashMap<SessionId, Parked, IdHash>,
    /// Why the core removed a session that still has a handle.
    closed: HashMap<SessionId, CloseReason, IdHash>,
    /// Released handles whose `SessionClosed` is still to come.
    orphans: HashSet<SessionId, IdHash>,
}

/// Hashes session ids (local handles the core hands out, not peer input)
/// with one multiplication: parking and waking a session touch `parked`
/// on every blocked read or write.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        // The slot index sits in the low bits and the generation in the
        // high bits: fold them, then spread (the table uses the low bits
        // for the bucket and the top 7 for its tag).
        self.0 = (self.0 ^ v ^ (v >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Gives memory back once a map (or set) is mostly empty: maps never
/// shrink by themselves, so a burst of parked sessions would pin its peak.
macro_rules! shrink {
    ($m:expr) => {{
        let m = &mut $m;
        if m.capacity() > 64 && m.len() < m.capacity() / 8 {
            m.shrink_to(m.len() * 2);
        }
    }};
}

impl Sessions {
    fn parked(&mut self, id: SessionId) -> &mut Parked {
        self.parked.entry(id).or_default()
    }

    /// Parks the session's reader (or its pending `open_session`) until `Readable`,
    /// `SessionOpen` or `SessionClosed`.
    pub fn park_read(&mut self, id: SessionId, cx: &Context<'_>) {
        park(&mut self.parked(id).read, cx);
    }

    /// Parks the session's writer until `Writable` or `SessionClosed`.
    pub fn park_write(&mut self, id: SessionId, cx: &Context<'_>) {
        park(&mut self.parked(id).write, cx);
    }

    /// Parks a `closed()` waiter until `SessionClosed`.
    pub fn park_close(&mut self, id: SessionId, cx: &Context<'_>) {
        park(&mut self.parked(id).close, cx);
    }

    /// Takes the session's parked wakers (reader if `read`, writer if
    /// `write`, and the `closed()` waiter if `close`) into `wake`.
    fn unpark(
        &mut self,
        id: SessionId,
        read: bool,
        write: bool,
        close: bool,
        wake: &mut Vec<Waker>,
    ) {
        let Some(p) = self.parked.get_mut(&id) else {
            return;
        };
        if read {
            wake.extend(p.read.take());
        }
        if write {
            wake.extend(p.write.take());
        }
        if close {
            wake.extend(p.close.take());
        }
        if p.read.is_none() && p.write.is_none() && p.close.is_none() {
            self.parked.remove(&id);
            shrink!(self.parked);
        }
    }

    /// Why the core removed the session, if it did and its handle lives.
    pub fn closed(&self, id: SessionId) -> Option<&CloseReason> {
        self.closed.get(&id)
    }

    fn on_closed(&mut self, id: SessionId, reason: &CloseReason) {
        if self.orphans.remove(&id) {
            shrink!(self.orphans);
        } else {
            self.closed.insert(id, reason.clone());
        }
    }

    /// The session's only handle is gone (dropped, rejected, or failed to
    /// accept): forget what the driver keeps for it.
    pub fn release(&mut self, id: SessionId) {
        if self.parked.remove(&id).is_some() {
            shrink!(self.parked);
        }
        if self.closed.remove(&id).is_some() {
            shrink!(self.closed);
        } else {
            self.orphans.insert(id);
        }
    }
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        w => *w = Some(cx.waker().clone()),
    }
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
    /// Whether the next output may be written directly: set when the
    /// transport task parks, cleared by a direct write. Output produced
    /// after a direct write, before the task parked again, wakes the task
    /// instead, which then pulls everything pending at once: a burst of
    /// small calls (opens, accepts, writes of many sessions) costs two
    /// socket writes, not one each, while a lone write (an echo reply: the
    /// task parked after reading the request) still goes out at once.
    pub direct_ok: bool,
    /// The task was woken for output a direct write left to it: it yields
    /// once before pulling, so the tasks already queued on its worker (more
    /// sessions' opens, accepts, writes) add their output to the same batch.
    pub defer: bool,
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
    pub sessions: Sessions,
    pub transports: HashMap<StreamId, TransportSlot>,
    pub dials: Vec<Dial>,
    pub incoming_tx: mpsc::UnboundedSender<IncomingQuery>,
    /// Deadline the timer task sleeps until.
    pub timer_armed: Timestamp,
    pub closed: bool,
    pub redial: Option<Backoff>,
    /// Bounds a TCP connect, a redial's connect, and how long `open` waits
    /// for a first stream to the peer.
    pub connect_timeout: Duration,
    /// Peers of `Node::connect` calls still waiting for their TCP
    /// connection (one entry per call).
    pub connecting: Vec<NodeId>,
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
    /// Notified when the last transport of a shut-down node is gone.
    pub all_closed: Notify,
    pub me: Weak<Inner>,
}

/// Largest output written directly (beyond it the transport task takes over).
const DIRECT_MAX: usize = 64 * 1024;

/// Events kept for `events()` subscribers.
const EVENT_CAPACITY: usize = 4096;

/// Default bound of a connect and of `open`'s wait for a first stream.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Inner {
    pub fn new(core: astral_core::Node) -> Arc<Inner> {
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        let local_id = core.local_id();
        Arc::new_cyclic(|me| Inner {
            shared: Mutex::new(Shared {
                core,
                sessions: Sessions::default(),
                transports: HashMap::new(),
                dials: Vec::new(),
                incoming_tx,
                timer_armed: Timestamp::MAX,
                closed: false,
                redial: Some(Backoff {
                    min: Duration::from_millis(100),
                    max: Duration::from_secs(5),
                }),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                connecting: Vec::new(),
                wake: Vec::new(),
                direct_buf: BytesMut::new(),
            }),
            start: Instant::now(),
            local_id,
            timer: Notify::new(),
            events,
            incoming: tokio::sync::Mutex::new(incoming_rx),
            shutdown,
            all_closed: Notify::new(),
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

    /// Updates driver-side state without dispatching: for calls that cannot
    /// make the core produce anything (parking a waker, reading a state).
    pub fn peek_mut<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        f(&mut self.lock())
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
                if let (Some(tcp), true, true) = (&t.direct, t.pending.is_empty(), t.direct_ok) {
                    // Direct write: pull and write here, without waking the
                    // task, as long as the socket takes it all at once.
                    t.direct_ok = false;
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
                } else if t.direct.is_some() && !t.direct_ok {
                    // Output right after a direct write: coalesce.
                    t.defer = true;
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
                sh.sessions
                    .unpark(*session, true, false, false, &mut sh.wake);
                return;
            }
            Event::Writable { session } => {
                sh.sessions
                    .unpark(*session, false, true, false, &mut sh.wake);
                return;
            }
            Event::SessionOpen { session } => {
                // A pending `open_session` parks as the session's reader.
                sh.sessions
                    .unpark(*session, true, false, false, &mut sh.wake);
            }
            Event::SessionClosed { session, reason } => {
                sh.sessions.on_closed(*session, reason);
                sh.sessions.unpark(*session, true, true, true, &mut sh.wake);
            }
            Event::Query {
                session,
                peer,
                query,
            } => {
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
                    if astral_core::driver::linger(reason) {
                        // Flush the last records (a drain's second Drain, a
                        // shutdown's Goodbye), then hang up.
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
