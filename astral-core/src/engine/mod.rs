//! The per-peer engine: everything about one remote node (one identity and
//! incarnation) — its established streams, its sessions, migration,
//! recovery, drains and the placement policy.
//!
//! Like a quinn-proto `Connection` under its `Endpoint`, an engine is its own
//! sans-IO state machine with its own seeded RNG (derived from the node's),
//! so a driver can lock and run each peer independently; migration and
//! recovery never cross peers. What engines share (configuration, node-wide
//! limits) is in [`NodeShared`].

mod budget;
mod drain;
mod handle;
mod input;
mod lifecycle;
mod liveness;
mod migrate;
mod probe;
mod recovery;
mod sessions;
mod shutdown;
mod streams;
mod transitions;
mod transmit;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::error::{OpenError, SessionError};
use crate::event::{CloseReason, Event};
use crate::frame::Frame;
use crate::policy::{Candidate, Policy};
use crate::session::{Role, SessionInfo, SessionStats};
use crate::shared::NodeShared;
use crate::stream::StreamInfo;
use crate::timer::{EngineTimer, TimerTable};
use crate::{codes, EngineId, NodeId, SessionId, StreamId, Timestamp};

use budget::{Charge, PeerBudget};
pub(crate) use sessions::SeededState;
use sessions::{Phase, Routing, Session, SessionTable, TimeWaitTable};
use streams::StreamTable;

pub use handle::SessionHandle;
pub use lifecycle::{DetachedRecordLayer, NewStream, Superseded, Supersession};

/// The sans-IO engine of one peer. Created by the [`Endpoint`](crate::Endpoint)
/// (see [`Endpoint::engine_for`](crate::Endpoint::engine_for)); the
/// [`Node`](crate::Node) facade owns and routes to its engines itself.
pub struct PeerEngine {
    id: EngineId,
    peer: NodeId,
    local: NodeId,
    /// The peer's incarnation, once a stream told it.
    incarnation: Option<u64>,
    /// A newer incarnation of the peer exists.
    superseded: bool,
    /// This node is shutting down (`shutdown.rs`).
    leaving: bool,
    /// Established streams, shared with the endpoint (its dial limit counts
    /// them).
    stream_count: Arc<AtomicUsize>,
    shared: Arc<NodeShared>,
    /// This peer's share of the memory budget.
    budget: PeerBudget,
    rng: ChaCha20Rng,
    streams: StreamTable,
    sessions: SessionTable,
    time_wait: TimeWaitTable,
    /// Sessions with a small credit to send later (FIFO: same delay for all).
    lazy_credits: VecDeque<(Timestamp, SessionId)>,
    timers: TimerTable<EngineTimer>,
    events: VecDeque<Event>,
    policy: Box<dyn Policy>,
    policy_armed: bool,
    /// A session's migration settled since drains were last checked.
    drains_dirty: bool,
    /// Time of the latest input, for API calls that take no `now`.
    last_now: Timestamp,
}

impl std::fmt::Debug for PeerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerEngine")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("incarnation", &self.incarnation)
            .field("streams", &self.streams.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl PeerEngine {
    pub(crate) fn new(
        id: EngineId,
        local: NodeId,
        peer: NodeId,
        shared: Arc<NodeShared>,
        stream_count: Arc<AtomicUsize>,
        policy: Box<dyn Policy>,
        seed: [u8; 32],
    ) -> PeerEngine {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut hasher = || SeededState(rng.next_u64(), rng.next_u64());
        let (h1, h2) = (hasher(), hasher());
        PeerEngine {
            id,
            peer,
            local,
            incarnation: None,
            superseded: false,
            leaving: false,
            stream_count,
            budget: PeerBudget::new(shared.clone()),
            shared,
            streams: StreamTable::default(),
            sessions: SessionTable::new(id, h1),
            time_wait: TimeWaitTable::new(h2),
            rng,
            lazy_credits: VecDeque::new(),
            timers: TimerTable::default(),
            events: VecDeque::new(),
            policy,
            policy_armed: false,
            drains_dirty: false,
            last_now: Timestamp::ZERO,
        }
    }

    /// Keeps the shared stream count equal to the table's.
    fn publish_stream_count(&self) {
        self.stream_count
            .store(self.streams.len(), Ordering::Release);
    }

    fn config(&self) -> &crate::Config {
        &self.shared.config
    }

    /// This engine's handle.
    pub fn id(&self) -> EngineId {
        self.id
    }

    /// The remote identity.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The peer's incarnation (known once a stream came up).
    pub fn incarnation(&self) -> Option<u64> {
        self.incarnation
    }

    /// Nothing left here: no stream, no session, no remembered closed
    /// session. The owner may then retire the engine
    /// ([`Endpoint::retire_engine`](crate::Endpoint::retire_engine)).
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.sessions.is_empty() && self.time_wait.is_empty()
    }

    /// Whether `stream` is one of this engine's established streams.
    pub fn has_stream(&self, stream: StreamId) -> bool {
        self.streams.contains(stream)
    }

    // ----- outputs -------------------------------------------------------

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 1024 {
            // A burst (e.g. 100k queries) must not leave its peak behind.
            self.events.shrink_to(64);
        }
        e
    }

    /// When [`PeerEngine::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next_deadline()
    }

    /// Whether `stream` has output the driver should pull now.
    pub fn wants_transmit(&self, stream: StreamId) -> bool {
        self.streams.get(stream).is_some_and(|s| s.has_output())
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.last_now = now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                EngineTimer::Liveness(id) => self.on_liveness_timer(now, id),
                EngineTimer::SessionDeadline(id) => self.on_session_deadline(now, id),
                EngineTimer::TimeWait => {
                    if let Some(next) = self.time_wait.expire(now) {
                        self.timers.arm(next, EngineTimer::TimeWait);
                    }
                }
                EngineTimer::LazyCredit => self.flush_lazy_credits(now),
                EngineTimer::Policy => self.run_policy(now),
            }
        }
        self.after_input();
    }

    /// Work that runs once after every input, not once per frame.
    fn after_input(&mut self) {
        if self.drains_dirty {
            self.check_drains();
        }
    }

    /// Draws a value from the engine's seeded generator.
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    // ----- sessions ------------------------------------------------------

    /// Opens a session with the peer for `query`. The query goes out on the
    /// best stream, or as soon as one comes up; without an answer within
    /// `routing_timeout` the session closes with `RoutingTimeout`.
    pub fn open_session(&mut self, now: Timestamp, query: &str) -> Result<SessionId, OpenError> {
        self.last_now = now;
        if self.leaving {
            return Err(OpenError::ShutDown);
        }
        if query.len() > self.config().max_query_len {
            return Err(OpenError::QueryTooLong(query.len()));
        }
        if self.sessions.len() >= self.config().max_sessions_per_peer {
            return Err(OpenError::TooManySessions);
        }
        if !self.shared.sessions.try_acquire() {
            return Err(OpenError::NodeSessionLimit);
        }
        let wire = loop {
            let w = self.rng.next_u64();
            if !self.sessions.contains_wire(w) && !self.time_wait.contains(w) {
                break w;
            }
        };
        let deadline = now + self.config().routing_timeout;
        let phase = Phase::Routing(Box::new(Routing {
            query: query.into(),
            deadline,
            early_marker: None,
        }));
        let (window, reserved) = self.initial_window();
        let charge = Charge {
            recv: reserved,
            send: 0,
        };
        let mut s = Session::new(wire, Role::Querier, phase, window, charge);
        s.owed.query = true;
        let Some(id) = self.sessions.insert(s) else {
            self.shared.sessions.release();
            self.release_charge(charge);
            return Err(OpenError::TooManySessions);
        };
        self.timers.arm(deadline, EngineTimer::SessionDeadline(id));
        let stream = self.best_stream(None);
        self.rebind(id, stream);
        Ok(id)
    }

    /// Accepts an inbound query (`Event::Query`): the session opens.
    pub fn accept_query(&mut self, now: Timestamp, id: SessionId) -> Result<(), SessionError> {
        self.last_now = now;
        let s = self.sessions.get(id).ok_or(SessionError::Unknown)?;
        if !matches!(s.phase, Phase::Pending { .. }) {
            return Err(SessionError::WrongState(s.state().name()));
        }
        self.on_query_accepted(id);
        Ok(())
    }

    /// Rejects an inbound query with `code` (non-zero; 0 becomes
    /// [`codes::REJECTED`]).
    pub fn reject_query(
        &mut self,
        now: Timestamp,
        id: SessionId,
        code: u8,
    ) -> Result<(), SessionError> {
        self.last_now = now;
        let s = self.sessions.get(id).ok_or(SessionError::Unknown)?;
        if !matches!(s.phase, Phase::Pending { .. }) {
            return Err(SessionError::WrongState(s.state().name()));
        }
        let code = if code == codes::ACCEPTED {
            codes::REJECTED
        } else {
            code
        };
        let (wire, stream) = (s.wire, s.tx);
        self.push_ctrl(
            stream,
            Frame::Response {
                session: wire,
                code,
                buffer: 0,
            },
        );
        self.close(now, id, CloseReason::RejectedLocally);
        Ok(())
    }

    /// A borrowed view of one session, for reading, writing and closing.
    pub fn session(&mut self, id: SessionId) -> Option<SessionHandle<'_>> {
        self.sessions.get(id)?;
        Some(SessionHandle::new(self, id))
    }

    /// Snapshot of one session.
    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        let s = self.sessions.get(id)?;
        Some(self.info_of(id, s))
    }

    fn info_of(&self, id: SessionId, s: &Session) -> SessionInfo {
        SessionInfo {
            id,
            wire_id: s.wire,
            peer: self.peer,
            role: s.role,
            state: s.state(),
            send_stream: s.tx,
            recv_stream: s.rx,
            stats: stats_of(s),
        }
    }

    /// Snapshots of every session, in slot order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.sessions.iter().map(|(id, s)| self.info_of(id, s))
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Bytes of the memory budget this peer's sessions reserved now (at
    /// most `Config::peer_memory_budget`).
    pub fn memory_reserved(&self) -> u64 {
        self.budget.used()
    }

    // ----- streams -------------------------------------------------------

    /// Snapshots of the established streams, in the order they came up.
    pub fn streams(&self) -> impl Iterator<Item = StreamInfo> + '_ {
        self.streams.iter().map(|s| s.info(self.id, self.peer))
    }

    /// Snapshot of one stream.
    pub fn stream_info(&self, id: StreamId) -> Option<StreamInfo> {
        self.streams.get(id).map(|s| s.info(self.id, self.peer))
    }

    /// Handles of the established streams.
    pub fn stream_ids(&self) -> Vec<StreamId> {
        self.streams.ids().to_vec()
    }

    // ----- internal helpers -------------------------------------------------

    /// Usable streams as policy candidates.
    fn candidates(&self) -> smallvec::SmallVec<[Candidate; 4]> {
        self.streams
            .iter()
            .filter(|s| s.is_usable())
            .map(|s| {
                // A stale estimate this side cannot refresh counts as
                // unknown: the policy never moves sessions off it
                // (`engine/probe.rs`, `DrainProbe::is_blind`).
                let path = if s.probe.is_blind() {
                    std::time::Duration::ZERO
                } else {
                    s.liveness.rtt.path
                };
                let mut c = Candidate::new(s.id, s.liveness.rtt.srtt, path, s.liveness.rtt.samples);
                c.established_at = s.established_at;
                c.sessions = s.senders;
                c.preference = s.preference();
                c.path_settled = s.probe.path_settled();
                c.peak = s.liveness.rtt.peak;
                c
            })
            .collect()
    }

    /// Best stream for new traffic: a usable one chosen by the policy, else
    /// (last resort, so sessions never wait while a stream is up) any
    /// stream that is not closing, one that is not suspect first.
    fn best_stream(&mut self, exclude: Option<StreamId>) -> Option<StreamId> {
        let mut c = self.candidates();
        c.retain(|c| Some(c.id) != exclude);
        if !c.is_empty() {
            return self.policy.choose(&c);
        }
        self.streams
            .iter()
            .filter(|s| Some(s.id) != exclude && s.local_drain != streams::LocalDrain::Closing)
            .min_by_key(|s| s.is_suspect())
            .map(|s| s.id)
    }

    /// Makes `stream` the session's sending stream (or none), moving its
    /// queue entries and the streams' sender counts. A move from one stream
    /// to another re-tunes the receive window to the new stream's RTT.
    fn rebind(&mut self, id: SessionId, stream: Option<StreamId>) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        if s.tx.is_some() && stream.is_some() && s.tx != stream {
            self.retune_window(id, s.tx, stream);
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let old = s.tx;
        s.tx = stream;
        s.queued.data = false;
        s.queued.ctrl = false;
        if old != stream {
            s.set_tx_since(s.send.sent());
            if old.is_some() {
                // A move (not the first placement) starts the cooldown.
                s.moves_mut().placed_at = Some(self.last_now);
            }
            let wire = s.wire;
            if let Some(o) = old.and_then(|o| self.streams.get_mut(o)) {
                // Its credits arriving there later must not match records
                // logged before it left.
                o.meter.forget(wire);
            }
            if let Some(o) = old.and_then(|o| self.streams.get_mut(o)) {
                o.senders = o.senders.saturating_sub(1);
                if o.is_draining() {
                    // A drain waits for its last sender to leave, and a
                    // session leaves by rebinding too (recovery, a Resume,
                    // a new stream), not only by a settled migration.
                    self.drains_dirty = true;
                }
            }
            if let Some(n) = stream.and_then(|n| self.streams.get_mut(n)) {
                n.senders += 1;
            }
        }
        self.schedule_ctrl(id);
        self.schedule(id);
    }

    /// Queues the session's data (or Fin) on its sending stream if it has any.
    fn schedule(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.queued.data || !s.may_send_data() || !s.send.has_output() {
            return;
        }
        let Some(st) = s.tx.and_then(|t| self.streams.get_mut(t)) else {
            return;
        };
        st.tx.data.push_back(id);
        s.queued.data = true;
    }

    /// Queues the session's control frames (credit, resume, query, response).
    fn schedule_ctrl(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.queued.ctrl || !s.wants_control() {
            return;
        }
        let Some(st) = s.tx.and_then(|t| self.streams.get_mut(t)) else {
            return;
        };
        st.tx.ctrl_sessions.push_back(id);
        s.queued.ctrl = true;
    }

    /// Queues an explicit control frame on a stream.
    fn push_ctrl(&mut self, stream: Option<StreamId>, frame: Frame) {
        if let Some(st) = stream.and_then(|s| self.streams.get_mut(s)) {
            st.tx.ctrl.push_back(frame);
        }
    }

    fn signal_readable(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.recv.is_readable() && !s.app.readable_signalled && s.state().is_established() {
            s.app.readable_signalled = true;
            self.events.push_back(Event::Readable { session: id });
        }
    }

    fn signal_writable(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let room = self.write_room(s);
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.app.write_blocked && room > 0 && s.state().is_established() {
            s.app.write_blocked = false;
            self.events.push_back(Event::Writable { session: id });
        }
    }

    /// Closes the session gracefully if both directions are complete.
    fn maybe_finish(&mut self, now: Timestamp, id: SessionId) {
        if self.sessions.get(id).is_some_and(|s| s.is_done()) {
            self.close(now, id, CloseReason::Graceful);
        }
    }

    /// After a read: credit below the batching threshold is sent after
    /// `credit_delay` unless more reading makes it due sooner.
    fn defer_credit(&mut self, id: SessionId) {
        let at = self.last_now + self.shared.config.credit_delay;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.queued.lazy_credit
            || s.recv.credit_due()
            || s.recv.credit_value() <= s.recv.advertised()
        {
            return;
        }
        s.queued.lazy_credit = true;
        if self.lazy_credits.is_empty() {
            self.timers.arm(at, EngineTimer::LazyCredit);
        }
        self.lazy_credits.push_back((at, id));
    }

    fn flush_lazy_credits(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.lazy_credits.front() {
            if at > now {
                self.timers.arm(at, EngineTimer::LazyCredit);
                return;
            }
            self.lazy_credits.pop_front();
            let Some(s) = self.sessions.get_mut(id) else {
                continue;
            };
            s.queued.lazy_credit = false;
            if s.recv.credit_value() > s.recv.advertised() {
                s.owed.credit = true;
                self.schedule_ctrl(id);
            }
        }
        if self.lazy_credits.capacity() > 4096 {
            self.lazy_credits.shrink_to(64);
        }
    }

    fn arm_policy(&mut self, now: Timestamp) {
        if !self.policy_armed {
            self.policy_armed = true;
            self.timers.arm(
                now + self.shared.config.policy_interval,
                EngineTimer::Policy,
            );
        }
    }
}

fn stats_of(s: &Session) -> SessionStats {
    let written = s.send.written();
    SessionStats {
        bytes_written: written,
        bytes_acked: s.send.acked().min(written),
        bytes_received: s.recv.delivered(),
        bytes_read: s.recv.consumed(),
        bytes_retransmitted: s.send.retransmitted(),
        bytes_retained: s.send.retained(),
        bytes_in_flight: s.send.sent_max().min(written) - s.send.acked().min(written),
        bytes_buffered: s.recv.buffered(),
        migrations: s.moves().migrations,
        recoveries: s.moves().recoveries,
        peer_window: s.send.peer_window(),
        local_window: s.recv.window(),
        peer_limit: s.send.limit(),
        window_growths: s.tune.growths,
        window_shrinks: s.tune.shrinks,
        budget_reserved: s.charge.recv + s.charge.send,
    }
}

/// `a` is later than `b` in serial-number arithmetic (RFC 1982) on u32:
/// epochs compare correctly across wrap-around as long as the two sides are
/// less than 2^31 migrations apart (they are at most a few apart).
pub(crate) fn epoch_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_detached;
