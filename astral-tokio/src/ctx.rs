//! What every part of one node shares and none owns: the clock, the event
//! broadcast, the inbound-query channel, the shutdown signal and the
//! control channel from the peers to the endpoint task.
//!
//! It is the leaf of the module graph (`ctx` ← `peer` ← `endpoint` ←
//! `transport` ← `node`; `session` ← `node`): a peer reports what concerns
//! the endpoint (a stream went down, an engine became idle) as a [`Ctl`]
//! message instead of locking the endpoint, so locks are only ever taken
//! in the order endpoint → peer. (The inbound-query channel carries peer
//! handles, so it lives with the peers: [`crate::peer::QueryTx`].)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use astral_core::{Clock, EngineId, Event, StreamId, Timestamp};
use tokio::sync::{broadcast, mpsc, watch, Notify};

/// Wakers collected under a lock and run once it is released: a call wakes
/// one or two tasks, so they live inline (a `Vec` allocated and freed twice
/// per one-byte echo round trip at each end, perf-profile §17).
pub(crate) type Wakers = smallvec::SmallVec<[std::task::Waker; 4]>;

/// Events kept for `events()` subscribers.
const EVENT_CAPACITY: usize = 4096;

/// What a peer tells the endpoint task (it holds no endpoint lock).
#[derive(Debug)]
pub(crate) enum Ctl {
    /// An established stream is up and confirmed (redial bookkeeping).
    Up(StreamId),
    /// An established stream ended (routing and redial bookkeeping).
    Down(StreamId),
    /// The engine had nothing left after a call: retire it if still so.
    MaybeIdle(EngineId),
}

/// The node-wide context (see the module documentation).
pub(crate) struct NodeCtx {
    clock: Clock,
    /// Broadcast of every event but `Readable`/`Writable`, built by the
    /// first subscriber: its ring of `EVENT_CAPACITY` slots is half a MiB
    /// of memory touched at construction (perf-profile §16: 13 % of the
    /// cycles of a set-up on a fresh node), and a node nobody subscribes
    /// to never needs it (a broadcast without receivers drops events).
    events: std::sync::OnceLock<broadcast::Sender<Event>>,
    /// Becomes `true` once, at shutdown.
    pub shutdown: watch::Sender<bool>,
    /// Peers → endpoint task.
    pub ctl: mpsc::UnboundedSender<Ctl>,
    /// Transport tasks alive (see [`NodeCtx::transport_started`]).
    transports: AtomicUsize,
    /// Notified when the last transport of a shut-down node ends.
    pub all_closed: Notify,
}

impl NodeCtx {
    /// The context and the receiving end of its control channel.
    pub fn new() -> (NodeCtx, mpsc::UnboundedReceiver<Ctl>) {
        let (shutdown, _) = watch::channel(false);
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        (
            NodeCtx {
                clock: Clock::new(Instant::now()),
                events: std::sync::OnceLock::new(),
                shutdown,
                ctl,
                transports: AtomicUsize::new(0),
                all_closed: Notify::new(),
            },
            ctl_rx,
        )
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe()
    }

    /// Publishes `ev` to the subscribers (if any).
    pub fn publish(&self, ev: Event) {
        if let Some(tx) = self.events.get() {
            let _ = tx.send(ev);
        }
    }

    /// The driver's clock as the core's timestamp.
    pub fn now(&self) -> Timestamp {
        self.clock.timestamp(Instant::now())
    }

    /// When a timer task sleeping until `t` wakes (capped at a day from
    /// now: "never" is re-armed long before).
    pub fn instant(&self, t: Timestamp) -> tokio::time::Instant {
        let cap = Instant::now() + std::time::Duration::from_secs(86_400);
        self.clock.instant(t).min(cap).into()
    }

    /// A transport task was spawned.
    pub fn transport_started(&self) {
        self.transports.fetch_add(1, Ordering::AcqRel);
    }

    /// A transport task ended (its socket is closed).
    pub fn transport_ended(&self) {
        let left = self.transports.fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 && self.is_shut_down() {
            self.all_closed.notify_waiters();
        }
    }

    /// Whether the node was shut down and every transport task ended.
    pub fn all_closed(&self) -> bool {
        self.is_shut_down() && self.transports.load(Ordering::Acquire) == 0
    }

    /// Whether the node was shut down.
    pub fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Reports to the endpoint task (never blocks; ignored once it ended).
    pub fn tell(&self, msg: Ctl) {
        let _ = self.ctl.send(msg);
    }
}

impl std::fmt::Debug for NodeCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCtx").finish_non_exhaustive()
    }
}

/// How a transport task must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// The core ended the stream, or the node shut down: drop the transport
    /// (nothing to report).
    Core,
    /// `kill_transport`: drop the transport abruptly and report the failure
    /// to the core, as if the connection had broken.
    Abort,
}

/// How a pending `connect` resolves: the peer once the stream is up and
/// confirmed, or why it ended first and the dialer's identity if the
/// handshake learnt it (an inbound dialer the accept policy refused).
pub(crate) type UpResult =
    Result<astral_core::NodeId, (astral_core::StreamCloseReason, Option<astral_core::NodeId>)>;

/// What resolves a pending `connect`.
pub(crate) type UpTx = tokio::sync::oneshot::Sender<UpResult>;

/// The driver's side of one transport, kept by the part that owns its
/// stream: the endpoint while it handshakes, then its peer.
#[derive(Debug)]
pub(crate) struct TransportSlot {
    /// The transport task, parked because the core had nothing to send.
    pub waker: Option<std::task::Waker>,
    pub kill: Option<tokio::sync::oneshot::Sender<Kill>>,
    /// A pending `connect`/`add_transport`.
    pub connect: Option<UpTx>,
    /// The stream ended with last words to flush (`driver::linger`).
    pub linger: bool,
    /// The write side, once the handshake completed and the task took its
    /// keys (inline writes go through it).
    pub wire: Option<std::sync::Arc<crate::wire::Wire>>,
}

impl TransportSlot {
    pub fn new(kill: tokio::sync::oneshot::Sender<Kill>, connect: UpTx) -> TransportSlot {
        TransportSlot {
            waker: None,
            kill: Some(kill),
            connect: Some(connect),
            linger: false,
            wire: None,
        }
    }

    /// Parks the transport task until its stream has output.
    pub fn park(&mut self, cx: &std::task::Context<'_>) {
        match &mut self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
    }

    /// The stream is up and confirmed.
    pub fn on_up(&mut self, peer: astral_core::NodeId) {
        if let Some(tx) = self.connect.take() {
            let _ = tx.send(Ok(peer));
        }
    }

    /// The stream (with `peer`, if known) ended for `reason`: the task
    /// flushes and hangs up, or drops the transport at once
    /// (`astral_core::driver::linger`).
    pub fn on_down(
        &mut self,
        reason: &astral_core::StreamCloseReason,
        peer: Option<astral_core::NodeId>,
        wake: &mut Wakers,
    ) {
        if let Some(tx) = self.connect.take() {
            let _ = tx.send(Err((reason.clone(), peer)));
        }
        if astral_core::driver::linger(reason) {
            self.linger = true;
            wake.extend(self.waker.take());
        } else if let Some(k) = self.kill.take() {
            let _ = k.send(Kill::Core);
        }
    }
}
