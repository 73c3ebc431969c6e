//! The node-level part: the core [`astral_core::Endpoint`] (handshakes,
//! admission, routing to engines) behind its own lock, with the slots of
//! handshaking transports, the table of peers, the owner of every
//! established stream and the [`Redialer`].
//!
//! The hot paths never take this lock: a transport takes it while its
//! handshake runs, then only its peer's. When a handshake completes, the
//! endpoint hands the stream to its peer's engine and the stream's keys
//! (the detached record layer) to its transport task, which from then on
//! seals and opens records outside every lock. Lock order: this lock may
//! be held while a peer's is taken, never the other way round.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use astral_core::driver::{DetachedRecordLayer, DialId, Redialer};
use astral_core::{EngineId, Event, NewStream, NodeId, SessionId, StreamId, Timestamp};
use tokio::sync::Notify;

use crate::ctx::{Ctl, NodeCtx, TransportSlot, Wakers};
use crate::peer::{Peer, QueryTx};

/// A completed handshake waiting for its transport task.
pub(crate) struct Upgrade {
    pub peer: Arc<Peer>,
    pub layer: DetachedRecordLayer,
}

/// The endpoint's state, under its lock.
pub(crate) struct EpState {
    pub core: astral_core::Endpoint,
    /// Slots of handshaking transports.
    pub handshaking: HashMap<StreamId, TransportSlot>,
    /// Completed handshakes, until their transport task takes them.
    ready: HashMap<StreamId, Upgrade>,
    /// Live peers (engines the endpoint routes to), in engine order.
    pub peers: BTreeMap<EngineId, Arc<Peer>>,
    /// The peer of every established stream.
    pub owner: HashMap<StreamId, Arc<Peer>>,
    pub redialer: Redialer<SocketAddr>,
    /// Bounds a TCP connect, a redial's connect, and how long
    /// `open_session` waits for a first stream to the peer.
    pub connect_timeout: std::time::Duration,
    /// Peers of `Node::connect` calls still waiting for their TCP
    /// connection (one entry per call).
    pub connecting: Vec<NodeId>,
    pub closed: bool,
    /// Deadline the endpoint task sleeps until.
    timer_armed: Timestamp,
    wake: Wakers,
}

/// Default bound of a connect and of `open_session`'s wait for a first
/// stream.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl EpState {
    /// Whether a stream to `peer` may come up without the application
    /// dialing again: a `connect` to it is under way, a handshake with it is
    /// in progress, or a remembered dial of it is connecting, carried or
    /// waiting to redial.
    pub fn stream_coming(&self, peer: NodeId) -> bool {
        self.connecting.contains(&peer)
            || self.core.streams().any(|s| s.peer == Some(peer))
            || self.redialer.dialing(peer)
    }

    /// The peer routing new sessions to `remote`, if any.
    pub fn route(&self, remote: NodeId) -> Option<&Arc<Peer>> {
        self.peers.get(&self.core.route(remote)?)
    }

    /// The peer owning `session`.
    pub fn peer_of(&self, session: SessionId) -> Option<&Arc<Peer>> {
        self.peers.get(&session.engine())
    }

    fn next_deadline(&self) -> Timestamp {
        let a = self.core.poll_timeout().unwrap_or(Timestamp::MAX);
        let b = self.redialer.next_deadline().unwrap_or(Timestamp::MAX);
        a.min(b)
    }
}

/// The endpoint driver (see the module documentation).
pub(crate) struct EpDriver {
    pub ctx: Arc<NodeCtx>,
    state: Mutex<EpState>,
    /// Wakes the endpoint task when its deadline came earlier.
    pub timer: Notify,
    queries: QueryTx,
}

impl EpDriver {
    pub fn new(
        ctx: Arc<NodeCtx>,
        core: astral_core::Endpoint,
        redialer: Redialer<SocketAddr>,
        queries: QueryTx,
    ) -> Arc<EpDriver> {
        Arc::new(EpDriver {
            ctx,
            state: Mutex::new(EpState {
                core,
                handshaking: HashMap::new(),
                ready: HashMap::new(),
                peers: BTreeMap::new(),
                owner: HashMap::new(),
                redialer,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                connecting: Vec::new(),
                closed: false,
                timer_armed: Timestamp::MAX,
                wake: Wakers::new(),
            }),
            timer: Notify::new(),
            queries,
        })
    }

    /// Where new peers send inbound queries.
    pub fn queries(&self) -> QueryTx {
        self.queries.clone()
    }

    fn lock(&self) -> MutexGuard<'_, EpState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the endpoint's state, then dispatches what the endpoint
    /// produced (failed handshakes, completed ones); wakers run after the
    /// lock is released.
    pub fn with<R>(&self, f: impl FnOnce(&mut EpState, Timestamp) -> R) -> R {
        let mut g = self.lock();
        let now = self.ctx.now();
        let r = f(&mut g, now);
        self.after(&mut g, now);
        let wake = std::mem::take(&mut g.wake);
        drop(g);
        for w in wake {
            w.wake();
        }
        r
    }

    /// Reads the state without dispatching (snapshots, routing).
    pub fn peek<R>(&self, f: impl FnOnce(&mut EpState) -> R) -> R {
        f(&mut self.lock())
    }

    /// The completed handshake of `stream`, for its transport task.
    pub fn take_upgrade(&self, stream: StreamId) -> Option<Upgrade> {
        self.peek(|st| st.ready.remove(&stream))
    }

    /// Whether the handshake of `stream` completed and waits for its
    /// transport task to take it.
    pub fn is_upgraded(st: &EpState, stream: StreamId) -> bool {
        st.ready.contains_key(&stream)
    }

    fn after(&self, st: &mut EpState, now: Timestamp) {
        loop {
            let mut any = false;
            while let Some(ev) = st.core.poll_event() {
                any = true;
                if let Event::StreamDown {
                    stream,
                    reason,
                    peer,
                } = &ev
                {
                    tracing::debug!(%stream, %reason, "handshake failed");
                    if let Some(t) = st.handshaking.get_mut(stream) {
                        t.on_down(reason, *peer, &mut st.wake);
                    }
                    if !st.closed {
                        let r = st.core.random_u64();
                        st.redialer.stream_down(now, *stream, r);
                    }
                }
                self.ctx.publish(ev);
            }
            while let Some(ns) = st.core.poll_new_stream() {
                any = true;
                self.adopt(st, now, ns);
            }
            if !any {
                break;
            }
        }
        let EpState {
            core,
            handshaking,
            wake,
            ..
        } = st;
        for (id, t) in handshaking.iter_mut() {
            if t.waker.is_some() && core.wants_transmit(*id) {
                wake.extend(t.waker.take());
            }
        }
        let next = st.next_deadline();
        if next < st.timer_armed {
            st.timer_armed = next;
            self.timer.notify_one();
        }
    }

    /// A handshake completed: the stream goes to its peer's engine (a new
    /// peer if it is the first of a new engine), its keys and its slot to
    /// its transport task.
    fn adopt(&self, st: &mut EpState, now: Timestamp, mut ns: NewStream) {
        let _ = now;
        if let Some(engine) = ns.take_created() {
            let peer = Peer::spawn(self.ctx.clone(), engine, self.queries.clone());
            st.peers.insert(peer.id, peer);
        }
        for old in ns.superseded().to_vec() {
            if let Some(p) = st.peers.get(&old.engine) {
                p.with(|ps, now| ps.engine.handle_superseded(now, old.how));
            }
        }
        let (sid, eid) = (ns.stream(), ns.engine());
        let slot = st.handshaking.remove(&sid);
        let Some(peer) = st.peers.get(&eid).cloned() else {
            // Cannot happen (the endpoint routes to engines it made and we
            // keep every live one); end the transport rather than leak it.
            if let Some(mut slot) = slot {
                slot.on_down(
                    &astral_core::StreamCloseReason::LimitExceeded("engines"),
                    None,
                    &mut st.wake,
                );
                if let Some(k) = slot.kill.take() {
                    let _ = k.send(crate::ctx::Kill::Core);
                }
            }
            return;
        };
        let layer = ns.detach_record_layer();
        let mut slot = slot;
        if let Some(s) = slot.as_mut() {
            // The task re-parks once it took its keys.
            st.wake.extend(s.waker.take());
        }
        peer.with(|ps, now| {
            if let Some(slot) = slot {
                ps.transports.insert(sid, slot);
            }
            ps.engine.add_stream(now, ns);
            if layer.is_none() {
                // Keys already taken (cannot happen): the stream cannot work.
                ps.engine.close_stream(now, sid);
            }
        });
        st.owner.insert(sid, peer.clone());
        if let Some(layer) = layer {
            st.ready.insert(sid, Upgrade { peer, layer });
        }
    }

    /// One control message from a peer.
    pub fn handle_ctl(&self, st: &mut EpState, now: Timestamp, msg: Ctl) {
        match msg {
            Ctl::Up(stream) => st.redialer.up(stream),
            Ctl::Down(stream) => {
                st.owner.remove(&stream);
                if !st.closed {
                    let r = st.core.random_u64();
                    st.redialer.stream_down(now, stream, r);
                }
            }
            Ctl::MaybeIdle(id) => {
                let Some(p) = st.peers.get(&id).cloned() else {
                    return;
                };
                if p.retire_if_idle() {
                    st.peers.remove(&id);
                    st.core.retire_engine(id);
                }
            }
        }
    }

    /// The endpoint task's step: runs due handshake timers, returns the
    /// redials due now and the next deadline (`None` once shut down).
    pub fn step(&self) -> (Vec<(DialId, NodeId, SocketAddr)>, Option<Timestamp>) {
        self.with(|st, now| {
            if st.closed {
                return (Vec::new(), None);
            }
            if st.core.poll_timeout().is_some_and(|t| t <= now) {
                st.core.handle_timeout(now);
            }
            let mut due = Vec::new();
            while let Some(d) = st.redialer.poll_due(now) {
                due.push(d);
            }
            st.timer_armed = st.next_deadline();
            (due, Some(st.timer_armed))
        })
    }
}
