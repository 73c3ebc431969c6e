//! The session transitions of [`Transition`], each performed by its own
//! method here and nowhere else: the phase change and its side effects
//! (events, counters, timers, the streams' migration counts) happen in one
//! place per cause.

use super::sessions::{Ending, Phase};
use super::PeerEngine;
use crate::event::{CloseReason, Event};
use crate::frame::Frame;
use crate::session::{Role, Transition};
use crate::timer::EngineTimer;
use crate::{codes, SessionId, StreamId, Timestamp};

impl PeerEngine {
    /// Whether `t` may start in the session's current state. An illegal
    /// transition is refused, never applied: the caller's invariant was
    /// wrong, and the state stays coherent.
    fn allowed(&self, id: SessionId, t: Transition) -> bool {
        let Some(s) = self.sessions.get(id) else {
            return false;
        };
        if t.allowed_from(s.state()) {
            return true;
        }
        tracing::error!(session = ?id, from = ?s.state(), transition = t.name(), "illegal session transition refused");
        debug_assert!(false, "illegal {} from {:?}", t.name(), s.state());
        false
    }

    /// A stream's count of sessions migrating away from it.
    fn migration_settled(&mut self, from: StreamId) {
        if let Some(st) = self.streams.get_mut(from) {
            st.migrating_from = st.migrating_from.saturating_sub(1);
        }
        // A drain waits for exactly this.
        self.drains_dirty = true;
    }

    /// `on_response_accepted: Routing => Open`.
    pub(super) fn on_response_accepted(&mut self, id: SessionId, stream: StreamId, buffer: u32) {
        if !self.allowed(id, Transition::ResponseAccepted) {
            return;
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let early_marker = match &s.phase {
            Phase::Routing(r) => r.early_marker,
            _ => None,
        };
        s.phase = Phase::Open;
        s.owed.query = false;
        s.send.set_peer_window(buffer);
        // The Response came on another stream than our latest Query (we sent
        // it again after a stream died or became suspect, and the first one
        // was answered late): the responder may be bound to either. A Resume
        // makes it follow us here (rule 5), so both sides agree.
        if s.tx != Some(stream) {
            s.owed.resume = true;
        }
        self.events.push_back(Event::SessionOpen { session: id });
        // Send where the responder answered: both sides agree from the start.
        self.rebind(id, Some(stream));
        // Unless the responder's newest marker came first: follow it now,
        // as if it had come after the Response (its target may have died
        // or started draining since: then the marker is ignored, as rule 3
        // ignores one naming an unusable stream, and the responder's
        // migration ends by recovery).
        let early_target =
            early_marker.filter(|t| self.streams.get(*t).is_some_and(|st| !st.is_draining()));
        if let Some(t) = early_target {
            self.on_marker_followed(id, t);
            return;
        }
        // Unless that stream is being drained (the responder answered
        // before it learnt of our Drain): then move off at once, with a
        // marker, as the drain moved every other session; left there, the
        // session would hold the drain's barrier back for ever.
        if self.streams.get(stream).is_some_and(|st| st.is_draining()) {
            let mut c = self.candidates();
            c.retain(|c| c.id != stream);
            if let Some(alt) = (!c.is_empty()).then(|| self.policy.choose(&c)).flatten() {
                self.on_migration_started(id, alt);
            }
        }
    }

    /// `on_query_accepted: Pending => Open`.
    pub(super) fn on_query_accepted(&mut self, id: SessionId) {
        if !self.allowed(id, Transition::QueryAccepted) {
            return;
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.phase = Phase::Open;
        s.owed.response = Some(codes::ACCEPTED);
        let orphan = s.tx.is_none();
        self.shared.pending_queries.release();
        if orphan {
            // Its stream died while the application decided: like any
            // session whose stream died, it waits for one (the querier
            // repeats its Query there) until `recovery_timeout`.
            self.on_stream_lost(self.last_now, id);
            return;
        }
        self.schedule_ctrl(id);
        self.schedule(id);
    }

    /// `on_migration_started: Open | Migrating => Migrating`: the marker
    /// goes out on the current stream, everything later on `target`.
    pub(super) fn on_migration_started(&mut self, id: SessionId, target: StreamId) {
        if !self.allowed(id, Transition::MigrationStarted) {
            return;
        }
        let Some(target_wire) = self.streams.get(target).map(|t| t.wire) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.set_epoch(s.epoch().wrapping_add(1));
        let (wire, epoch, old) = (s.wire, s.epoch(), s.tx);
        let started_from = match (&s.phase, old) {
            (Phase::Open, Some(old)) => Some(old),
            // From Migrating, `from` stays the stream the migration first
            // left; the new marker goes out on the current stream.
            (Phase::Migrating { from, .. }, Some(_)) => Some(*from),
            _ => None,
        };
        if let (Some(from), Some(marker)) = (started_from, old) {
            if matches!(s.phase, Phase::Open) {
                if let Some(st) = self.streams.get_mut(from) {
                    st.migrating_from += 1;
                }
            }
            s.phase = Phase::Migrating { from, marker };
        }
        self.push_ctrl(
            old,
            Frame::MigrateTo {
                session: wire,
                target: target_wire,
                epoch,
            },
        );
        self.rebind(id, Some(target));
    }

    /// `on_migration_confirmed: Migrating => Open`: the peer's traffic for
    /// the session arrived on the target.
    pub(super) fn on_migration_confirmed(&mut self, id: SessionId) {
        if !self.allowed(id, Transition::MigrationConfirmed) {
            return;
        }
        self.settle_migration(id);
    }

    /// `on_migration_abandoned: Migrating => Open`: the stream the migration
    /// left (and its marker) died; the session keeps sending on the target
    /// and the Resume exchange of recovery settles where the peer sends.
    pub(super) fn on_migration_abandoned(&mut self, id: SessionId) {
        if !self.allowed(id, Transition::MigrationAbandoned) {
            return;
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let Phase::Migrating { from, .. } = s.phase else {
            return;
        };
        s.phase = Phase::Open;
        self.migration_settled(from);
    }

    /// Common end of a migration this side started.
    fn settle_migration(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let Phase::Migrating { from, .. } = s.phase else {
            return;
        };
        s.phase = Phase::Open;
        let m = s.moves_mut();
        m.migrations = m.migrations.saturating_add(1);
        if let Some(to) = s.tx {
            self.events.push_back(Event::Migrated {
                session: id,
                from,
                to,
            });
        }
        self.migration_settled(from);
    }

    /// `on_marker_followed: Open | Migrating => Open`: the peer's marker won
    /// (newer epoch, or the tie-break): send on `target` from now on, and
    /// acknowledge there.
    pub(super) fn on_marker_followed(&mut self, id: SessionId, target: StreamId) {
        if !self.allowed(id, Transition::MarkerFollowed) {
            return;
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let migrating_from = match s.phase {
            Phase::Migrating { from, .. } => Some(from),
            _ => None,
        };
        // Where the session sent before: the stream our own migration left,
        // if one is under way. Both ends moving to the same stream at once
        // (the peer's marker wins the tie-break and names our own target)
        // is still a move of ours: reported, like a confirmed one.
        let from = migrating_from.or(s.tx);
        s.phase = Phase::Open;
        s.owed.credit = true;
        if from != Some(target) {
            let m = s.moves_mut();
            m.migrations = m.migrations.saturating_add(1);
            if let Some(from) = from {
                self.events.push_back(Event::Migrated {
                    session: id,
                    from,
                    to: target,
                });
            }
        }
        if let Some(f) = migrating_from {
            self.migration_settled(f);
        }
        self.drains_dirty = true;
        self.rebind(id, Some(target));
    }

    /// `on_stream_lost: Open | Migrating | Recovering => Recovering`: the
    /// stream this side sent on died. New data waits for the Resume
    /// exchange; the session closes if none completes by the deadline.
    pub(super) fn on_stream_lost(&mut self, now: Timestamp, id: SessionId) {
        if !self.allowed(id, Transition::StreamLost) {
            return;
        }
        let timeout = self.shared.config.recovery_timeout;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let settled = match s.phase {
            Phase::Migrating { from, .. } => Some(from),
            _ => None,
        };
        if s.pins.local {
            // A pin holds a session on the stream it was pinned to; that
            // stream is gone: recovery places it, unpinned (the peer is
            // told).
            s.pins.local = false;
            s.owed.pin = true;
        }
        if !matches!(s.phase, Phase::Recovering { .. }) {
            let deadline = now + timeout;
            s.phase = Phase::Recovering { deadline };
            self.timers.arm(deadline, EngineTimer::SessionDeadline(id));
            self.events.push_back(Event::Recovering { session: id });
        }
        if let Some(f) = settled {
            self.migration_settled(f);
        }
    }

    /// `on_resumed: Recovering => Open`.
    pub(super) fn on_resumed(&mut self, id: SessionId, resent_bytes: u64) {
        if !self.allowed(id, Transition::Resumed) {
            return;
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.phase = Phase::Open;
        let m = s.moves_mut();
        m.recoveries = m.recoveries.saturating_add(1);
        // Where a recovery leaves us sending was chosen by Resumes, which
        // carry no epoch: restate it with a new one (after our reply), so
        // that a marker of ours still in flight from before the recovery
        // cannot move the peer back onto a stream we left (fuzz input
        // drain_ordering/crossed-after-recovery-6e044062).
        s.owed.restate = true;
        self.schedule_ctrl(id);
        self.events.push_back(Event::Recovered {
            session: id,
            resent_bytes,
        });
    }

    /// Not a state change: an open session whose sending stream the peer's
    /// Resume moved (the peer saw a stream die first). It counts, and is
    /// reported, as a recovery like one that went through `Recovering`.
    pub(super) fn on_moved_by_resume(&mut self, id: SessionId, resent_bytes: u64) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let m = s.moves_mut();
        m.recoveries = m.recoveries.saturating_add(1);
        self.events.push_back(Event::Recovered {
            session: id,
            resent_bytes,
        });
    }

    /// Every transition into `Closed`, named by `reason`: removes the
    /// session, gives back what it held, remembers a graceful one for late
    /// Resumes, and reports why.
    pub(super) fn close(&mut self, now: Timestamp, id: SessionId, reason: CloseReason) {
        let t = match &reason {
            CloseReason::Graceful => Transition::Finished,
            CloseReason::Rejected(_) => Transition::Rejected,
            CloseReason::RejectedLocally => Transition::RejectedLocally,
            CloseReason::RoutingTimeout => Transition::RoutingTimedOut,
            CloseReason::PeerUnreachable => Transition::RecoveryTimedOut,
            CloseReason::ResetByPeer => Transition::ResetByPeer,
            CloseReason::ProtocolError(_) => Transition::Violated,
            CloseReason::ResetLocally | CloseReason::Limit(_) | CloseReason::Shutdown => {
                Transition::ResetLocally
            }
            CloseReason::PeerRestarted | CloseReason::PeerShutdown => Transition::PeerGone,
        };
        if !self.allowed(id, t) {
            return;
        }
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        self.shared.sessions.release();
        self.release_charge(s.charge);
        match s.phase {
            Phase::Pending { .. } => self.shared.pending_queries.release(),
            Phase::Migrating { from, .. } => self.migration_settled(from),
            _ => {}
        }
        if let Some(st) = s.tx.and_then(|t| self.streams.get_mut(t)) {
            st.senders = st.senders.saturating_sub(1);
        }
        self.drains_dirty = true;
        let ending = match &reason {
            CloseReason::Graceful => Some(Ending::Finished {
                received: s.recv.received_mark(),
                consumed: s.recv.credit_value(),
            }),
            CloseReason::ResetLocally
            | CloseReason::ResetByPeer
            | CloseReason::ProtocolError(_)
            | CloseReason::Limit(_) => Some(Ending::Reset),
            CloseReason::RejectedLocally => Some(Ending::Refused {
                code: codes::REJECTED,
            }),
            CloseReason::RoutingTimeout if s.role == Role::Responder => Some(Ending::Refused {
                code: codes::TIMEOUT,
            }),
            // Our own query that failed, or a peer that is gone: nothing
            // of the peer's can come back for it that needs an answer.
            _ => None,
        };
        if let Some(ending) = ending {
            let expiry = now + self.shared.config.recovery_timeout;
            if self.time_wait.insert(s.wire, ending, expiry) {
                self.timers.arm(expiry, EngineTimer::TimeWait);
            }
        }
        self.events.push_back(Event::SessionClosed {
            session: id,
            reason,
        });
    }

    /// A session deadline fired: routing, the application's decision, or
    /// recovery. The deadline lives in the phase, so a stale timer entry
    /// (an earlier recovery's) finds a later deadline and does nothing.
    pub(super) fn on_session_deadline(&mut self, now: Timestamp, id: SessionId) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let routing_due = matches!(&s.phase, Phase::Routing(r) if r.deadline <= now);
        match s.phase {
            Phase::Routing(_) if routing_due => self.close(now, id, CloseReason::RoutingTimeout),
            Phase::Pending { deadline } if deadline <= now => {
                let (wire, stream) = (s.wire, s.tx);
                self.push_ctrl(
                    stream,
                    Frame::Response {
                        session: wire,
                        code: codes::TIMEOUT,
                        buffer: 0,
                    },
                );
                self.close(now, id, CloseReason::RoutingTimeout);
            }
            Phase::Recovering { deadline } if deadline <= now => {
                self.close(now, id, CloseReason::PeerUnreachable)
            }
            _ => {}
        }
    }
}
