//! One peer: its [`PeerEngine`] behind its own lock, with the driver state
//! that belongs to it (wakers of its sessions, slots of its transports), a
//! timer task of its own, and the dispatch of its events.
//!
//! Peers never wait for each other: the transports and sessions of one
//! peer take only that peer's lock, so two peers run on two cores. A call
//! is [`Peer::with`]: lock, call the engine, drain its events (wake
//! sessions, resolve connects, hand queries on, broadcast), wake the
//! peer's transports that now have output, move the timer if its deadline
//! came earlier, unlock, then run the wakers. What concerns the endpoint
//! (a stream went down, the engine became idle) goes to the endpoint task
//! as a [`Ctl`] message: a peer never takes the endpoint's lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use astral_core::{codes, EngineId, Event, NodeId, PeerEngine, SessionId, StreamId, Timestamp};
use tokio::sync::{mpsc, Notify};

use crate::ctx::{Ctl, NodeCtx, TransportSlot, Wakers};
use crate::error::{Error, Result};
use crate::sessions::Sessions;
use crate::wire::{FlushWatch, Pulled, Wire};

/// Where inbound queries go (to the node's `Incoming`s).
pub(crate) type QueryTx = mpsc::UnboundedSender<PendingQuery>;

/// A peer's state, under its lock.
pub(crate) struct PeerState {
    pub engine: PeerEngine,
    pub sessions: Sessions,
    /// Slots of this peer's established streams.
    pub transports: HashMap<StreamId, TransportSlot>,
    /// The endpoint retired the engine: nothing is routed here any more.
    pub dead: bool,
    /// Deadline the timer task sleeps until.
    timer_armed: Timestamp,
    /// `MaybeIdle` was sent and the engine stayed idle since.
    idle_told: bool,
    /// Wakers to run once the lock is released.
    wake: Wakers,
    /// This call handed an inbound query to the application (which the
    /// channel woke): [`Peer::with_woke`] counts it as a wake-up.
    handed_query: bool,
    /// Transports whose token this call took: sealed and written inline
    /// once the lock is released.
    inline: smallvec::SmallVec<[Arc<Wire>; 2]>,
}

/// One peer (see the module documentation).
pub(crate) struct Peer {
    pub ctx: Arc<NodeCtx>,
    pub id: EngineId,
    pub remote: NodeId,
    state: Mutex<PeerState>,
    timer: Notify,
    queries: QueryTx,
    me: Weak<Peer>,
    /// Told when a transport of this peer goes idle ([`Peer::flushed`]).
    flush: Arc<FlushWatch>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Wraps a new engine and starts its timer task.
    pub fn spawn(ctx: Arc<NodeCtx>, engine: PeerEngine, queries: QueryTx) -> Arc<Peer> {
        let peer = Arc::new_cyclic(|me| Peer {
            ctx,
            id: engine.id(),
            remote: engine.peer(),
            state: Mutex::new(PeerState {
                engine,
                sessions: Sessions::default(),
                transports: HashMap::new(),
                dead: false,
                timer_armed: Timestamp::MAX,
                idle_told: false,
                wake: Wakers::new(),
                handed_query: false,
                inline: smallvec::SmallVec::new(),
            }),
            timer: Notify::new(),
            queries,
            me: me.clone(),
            flush: Arc::default(),
        });
        tokio::spawn(peer.clone().timer_task());
        peer
    }

    fn lock(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the peer's state, then dispatches what the engine
    /// produced; records pulled for idle transports are sealed and written
    /// and wakers run after the lock is released.
    pub fn with<R>(&self, f: impl FnOnce(&mut PeerState, Timestamp) -> R) -> R {
        let mut g = self.lock();
        let now = self.ctx.now();
        let r = f(&mut g, now);
        self.after(&mut g, now);
        self.unlock(g);
        r
    }

    /// [`Peer::with`] for a call that gives the engine no time (a session's
    /// read, write or finish): the clock is read only if the dispatch
    /// needs it (records pulled for an inline write, a query to reject).
    /// A one-byte echo round trip read it ~16 times more than snow's, one
    /// read per peer call (`docs/notes/perf-profile.md` §17.5).
    pub fn with_untimed<R>(&self, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut g = self.lock();
        let r = f(&mut g);
        self.after_at(&mut g, &mut None);
        self.unlock(g);
        r
    }

    /// [`Peer::with`], also telling whether the call woke any task (a
    /// session, or whoever takes inbound queries).
    pub fn with_woke<R>(&self, f: impl FnOnce(&mut PeerState, Timestamp) -> R) -> (R, bool) {
        let mut g = self.lock();
        let now = self.ctx.now();
        let r = f(&mut g, now);
        self.after(&mut g, now);
        let woke = !g.wake.is_empty() || g.handed_query;
        self.unlock(g);
        (r, woke)
    }

    /// Releases the lock, then writes what `after` pulled inline and runs
    /// the wakers.
    fn unlock(&self, mut g: MutexGuard<'_, PeerState>) {
        g.handed_query = false;
        let wake = std::mem::take(&mut g.wake);
        let inline = std::mem::take(&mut g.inline);
        drop(g);
        for w in inline {
            if let Err(e) = w.write_inline() {
                self.record_error(w.stream(), e);
            }
        }
        for w in wake {
            w.wake();
        }
    }

    /// A record could not be sealed: the stream is torn down.
    fn record_error(&self, stream: StreamId, e: astral_core::noise::NoiseError) {
        let mut g = self.lock();
        let now = self.ctx.now();
        g.engine.handle_record_error(now, stream, e);
        self.after(&mut g, now);
        self.unlock(g);
    }

    /// Reads or updates driver-side state without dispatching: for calls
    /// that cannot make the engine produce anything (parking a waker,
    /// snapshots).
    pub fn peek<R>(&self, f: impl FnOnce(&mut PeerState) -> R) -> R {
        f(&mut self.lock())
    }

    /// Retires the engine if it is idle (the endpoint calls this under its
    /// own lock, so nothing can be routed here meanwhile).
    pub fn retire_if_idle(&self) -> bool {
        let retired = self.peek(|st| {
            if st.engine.is_idle() && !st.dead {
                st.dead = true;
                true
            } else {
                false
            }
        });
        if retired {
            self.timer.notify_one();
        }
        retired
    }

    /// The watch every [`Wire`] of this peer tells when it goes idle.
    pub fn flush_watch(&self) -> Arc<FlushWatch> {
        self.flush.clone()
    }

    /// Whether everything queued for this peer was handed to its
    /// transports: the engine has no output for any established stream,
    /// and no transport holds bytes it has not written (its write token is
    /// free).
    pub fn is_flushed(&self) -> bool {
        self.peek(|st| {
            st.transports.iter().all(|(id, t)| {
                !st.engine.wants_transmit(*id) && t.wire.as_ref().is_none_or(|w| w.is_idle())
            })
        })
    }

    /// Resolves once [`Peer::is_flushed`] holds (at once if it does).
    pub async fn flushed(&self) {
        self.flush.wait(|| self.is_flushed()).await;
    }

    /// Wakes the timer task (at shutdown, so it sees the watch).
    pub fn wake_timer(&self) {
        self.timer.notify_one();
    }

    fn after(&self, st: &mut PeerState, now: Timestamp) {
        self.after_at(st, &mut Some(now));
    }

    /// The time of this call: `now` if known, else read once.
    fn clock(&self, now: &mut Option<Timestamp>) -> Timestamp {
        *now.get_or_insert_with(|| self.ctx.now())
    }

    /// [`Peer::after`] with the time read only if needed.
    fn after_at(&self, st: &mut PeerState, now: &mut Option<Timestamp>) {
        while let Some(ev) = st.engine.poll_event() {
            self.dispatch(st, now, ev);
        }
        let PeerState {
            engine,
            transports,
            wake,
            inline,
            ..
        } = st;
        // The streams of one peer: a handful, not every transport of the node.
        for (id, t) in transports.iter_mut() {
            if !engine.wants_transmit(*id) {
                continue;
            }
            match &t.wire {
                // An idle socket is written by this call, without a task
                // hop; a busy one by its holder, which looks again.
                Some(w) if w.is_direct() => match w.pull_inline(engine, self.clock(now)) {
                    Pulled::Inline => inline.push(w.clone()),
                    // A burst: the task writes it with what follows.
                    Pulled::ToTask => wake.extend(w.task_waker()),
                    Pulled::Nothing => {}
                },
                _ => wake.extend(t.waker.take()),
            }
        }
        let next = engine.poll_timeout().unwrap_or(Timestamp::MAX);
        if next < st.timer_armed {
            st.timer_armed = next;
            self.timer.notify_one();
        }
        if st.engine.is_idle() {
            if !st.idle_told && !st.dead {
                st.idle_told = true;
                self.ctx.tell(Ctl::MaybeIdle(self.id));
            }
        } else {
            st.idle_told = false;
        }
    }

    fn dispatch(&self, st: &mut PeerState, now: &mut Option<Timestamp>, ev: Event) {
        match &ev {
            Event::Readable { session } => {
                st.sessions
                    .unpark(*session, true, false, false, &mut st.wake);
                return;
            }
            Event::Writable { session } => {
                st.sessions
                    .unpark(*session, false, true, false, &mut st.wake);
                return;
            }
            Event::SessionOpen { session } => {
                // A pending `open_session` parks as the session's reader.
                st.sessions
                    .unpark(*session, true, false, false, &mut st.wake);
            }
            Event::SessionClosed { session, reason } => {
                st.sessions.on_closed(*session, reason);
                st.sessions.unpark(*session, true, true, true, &mut st.wake);
            }
            Event::Query {
                session,
                peer,
                query,
            } => {
                let delivered = match self.me.upgrade() {
                    Some(me) => {
                        let q = PendingQuery::new(me, *session, *peer, query.clone());
                        match self.queries.send(q) {
                            Ok(()) => {
                                st.handed_query = true;
                                true
                            }
                            Err(e) => {
                                // Nobody listens (the node is going away).
                                // Dropping it here would take this lock
                                // again: reject it in place.
                                let mut q = e.0;
                                q.done = true;
                                false
                            }
                        }
                    }
                    None => false,
                };
                if !delivered {
                    let now = self.clock(now);
                    let _ = st.engine.reject_query(now, *session, codes::REJECTED);
                    st.sessions.release(*session);
                }
            }
            Event::StreamConfirmed { stream } => {
                if let Some(t) = st.transports.get_mut(stream) {
                    t.on_up(self.remote);
                }
                self.ctx.tell(Ctl::Up(*stream));
            }
            Event::StreamDown { stream, reason, .. } => {
                tracing::debug!(%stream, %reason, "stream down");
                if let Some(t) = st.transports.get_mut(stream) {
                    t.on_down(reason, Some(self.remote), &mut st.wake);
                }
                self.ctx.tell(Ctl::Down(*stream));
            }
            Event::StreamUp { stream, peer } => {
                tracing::debug!(%stream, %peer, "stream up");
            }
            _ => {}
        }
        self.ctx.publish(ev);
    }

    /// Sleeps until the engine's next deadline and runs its timers; ends
    /// when the engine is retired or the node shuts down.
    async fn timer_task(self: Arc<Peer>) {
        let mut shutdown = self.ctx.shutdown.subscribe();
        loop {
            let at = self.with(|st, now| {
                if st.dead {
                    return None;
                }
                if st.engine.poll_timeout().is_some_and(|t| t <= now) {
                    st.engine.handle_timeout(now);
                }
                // What we sleep until; `after` then sees nothing earlier
                // and does not notify us again.
                st.timer_armed = st.engine.poll_timeout().unwrap_or(Timestamp::MAX);
                Some(st.timer_armed)
            });
            let Some(at) = at else { return };
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(self.ctx.instant(at)) => {}
                _ = self.timer.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// An inbound query on its way to the application: accepted, rejected, or
/// rejected when dropped.
pub(crate) struct PendingQuery {
    pub peer: Arc<Peer>,
    pub id: SessionId,
    pub from: NodeId,
    pub query: String,
    done: bool,
}

impl PendingQuery {
    fn new(peer: Arc<Peer>, id: SessionId, from: NodeId, query: String) -> PendingQuery {
        PendingQuery {
            peer,
            id,
            from,
            query,
            done: false,
        }
    }

    /// Accepts: the session opens.
    pub fn accept(&mut self) -> Result<()> {
        let id = self.id;
        self.done = true;
        self.peer.with(|st, now| {
            if st.engine.accept_query(now, id).is_err() {
                let reason = st.sessions.closed(id).cloned();
                st.sessions.release(id);
                return Err(match reason {
                    None | Some(astral_core::CloseReason::Graceful) => {
                        Error::Session(astral_core::SessionError::Unknown)
                    }
                    Some(r) => Error::SessionClosed(r),
                });
            }
            Ok(())
        })
    }

    /// Rejects with `code` (once).
    pub fn reject(&mut self, code: u8) {
        if self.done {
            return;
        }
        self.done = true;
        let id = self.id;
        self.peer.with(|st, now| {
            let _ = st.engine.reject_query(now, id, code);
            st.sessions.release(id);
        });
    }
}

impl Drop for PendingQuery {
    fn drop(&mut self) {
        self.reject(codes::REJECTED);
    }
}
