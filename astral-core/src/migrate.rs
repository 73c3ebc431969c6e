//! Migration (design §7), drain and the automatic policy (§9).
//!
//! Offsets make migration simple: the initiator sends
//! `MigrateTo{session, target, epoch}` on its current stream and everything
//! later on the target; the responder follows a newer epoch passively and
//! acknowledges with a Credit on the target. Frames may arrive on any
//! stream in any order; reassembly by offset keeps delivery exact.

use rand_core::RngCore;
use smallvec::SmallVec;

use crate::error::{DrainError, MigrateError};
use crate::event::{Event, StreamCloseReason};
use crate::frame::Frame;
use crate::session::{self, SessionState};
use crate::timer::TimerKey;
use crate::{Node, SessionId, StreamId, Timestamp};

impl Node {
    /// Moves `session` to `target` (another stream with the same peer)
    /// without pausing writes. Completes (`Event::Migrated`) once the peer's
    /// traffic for the session shows up on `target`.
    pub fn migrate(
        &mut self,
        now: Timestamp,
        session: SessionId,
        target: StreamId,
    ) -> Result<(), MigrateError> {
        self.last_now = now;
        let s = self.get(session).ok_or(MigrateError::UnknownSession)?;
        if !matches!(s.state, SessionState::Open | SessionState::Migrating) {
            return Err(MigrateError::SessionNotOpen);
        }
        let t = self
            .streams
            .get(&target)
            .filter(|t| t.is_established())
            .ok_or(MigrateError::TargetUnknown)?;
        if t.peer != Some(s.peer) {
            return Err(MigrateError::WrongPeer);
        }
        if target == s.send_stream() {
            return Err(MigrateError::TargetIsCurrent);
        }
        if !t.confirmed {
            return Err(MigrateError::TargetNotConfirmed);
        }
        self.start_migration(session, target);
        Ok(())
    }

    fn start_migration(&mut self, id: SessionId, target: StreamId) {
        let target_wire = match self.streams.get(&target) {
            Some(t) => t.wire,
            None => return,
        };
        let Some(s) = self.get_mut(id) else { return };
        s.epoch = s.epoch.wrapping_add(1);
        let (wire, epoch, old) = (s.wire, s.epoch, s.send_stream());
        if s.state == SessionState::Open {
            s.set_migrated_from(old);
        }
        s.transition(SessionState::Migrating);
        self.push_ctrl(
            old,
            Frame::MigrateTo {
                session: wire,
                target: target_wire,
                epoch,
            },
        );
        self.rebind(id, target);
    }

    /// A MigrateTo marker from the peer.
    pub(crate) fn on_migrate_to(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        p: u32,
        wire: u64,
        target: u64,
        epoch: u32,
    ) {
        let _ = now;
        let Some(id) = self.lookup(p, wire) else {
            return;
        };
        let target_stream = self.peers[p as usize].streams.iter().copied().find(|s| {
            self.streams
                .get(s)
                .is_some_and(|st| st.wire == target && st.is_established())
        });
        let peer_id = self.peers[p as usize].id;
        let local_wins_tie = self.local_id < peer_id;
        let Some(s) = self.get_mut(id) else { return };
        if !s.state.is_established() {
            return;
        }
        let follow = epoch > s.epoch || (epoch == s.epoch && !local_wins_tie);
        s.epoch = s.epoch.max(epoch);
        s.set_recv_stream(stream);
        if !follow {
            return;
        }
        // Rule 3: a marker naming a stream we know is dead (or never knew)
        // is ignored; the peer will recover or migrate again.
        let Some(t) = target_stream else {
            tracing::debug!(session = ?id, target, "MigrateTo names an unknown or dead stream; ignored");
            return;
        };
        let from = s.send_stream();
        s.set(session::F_ACK_PENDING);
        if s.state == SessionState::Migrating {
            s.transition(SessionState::Open);
        }
        if from != t {
            s.migrations = s.migrations.saturating_add(1);
            self.events.push_back(Event::Migrated {
                session: id,
                from,
                to: t,
            });
            self.rebind(id, t);
        } else {
            self.schedule_ctrl(id);
        }
        self.drains_dirty = true;
    }

    /// Moves every session off `stream` (one round trip for all of them),
    /// asks the peer to do the same, then closes the stream.
    pub fn drain_stream(&mut self, now: Timestamp, stream: StreamId) -> Result<usize, DrainError> {
        self.last_now = now;
        let st = self
            .streams
            .get(&stream)
            .filter(|s| s.is_established())
            .ok_or(DrainError::UnknownStream)?;
        let p = st.peer.ok_or(DrainError::UnknownStream)?;
        let alt = self.best_stream_excluding(p, stream);
        if alt == StreamId::NONE {
            return Err(DrainError::NoAlternative);
        }
        if let Some(st) = self.streams.get_mut(&stream) {
            if !st.local_drain {
                st.local_drain = true;
                st.ctrl.push_back(Frame::Drain);
            }
        }
        let moved = self.move_sessions_off(p, stream, alt);
        self.check_drains();
        Ok(moved)
    }

    fn best_stream_excluding(&mut self, p: u32, exclude: StreamId) -> StreamId {
        let mut c = self.candidates(p);
        c.retain(|c| c.id != exclude);
        if c.is_empty() {
            StreamId::NONE
        } else {
            self.policy.choose(&c)
        }
    }

    /// Migrates (or, for sessions not yet open, rebinds) every session of
    /// peer `p` sending on `from` to `to`. Returns how many moved.
    fn move_sessions_off(&mut self, p: u32, from: StreamId, to: StreamId) -> usize {
        let ids: Vec<SessionId> = self
            .peer_sessions(p)
            .into_iter()
            .filter(|id| self.get(*id).is_some_and(|s| s.send_stream() == from))
            .collect();
        for &id in &ids {
            match self.get(id).map(|s| s.state) {
                Some(SessionState::Open | SessionState::Migrating) => self.start_migration(id, to),
                Some(_) => self.rebind(id, to),
                None => {}
            }
        }
        ids.len()
    }

    /// The peer asks us to move off `stream` (first Drain), or announces
    /// that it is closing it now that both sides moved off (second Drain).
    pub(crate) fn on_drain(&mut self, now: Timestamp, stream: StreamId, p: u32) {
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        if st.remote_drain {
            self.kill_stream(now, stream, StreamCloseReason::Drained);
            return;
        }
        st.remote_drain = true;
        let alt = self.best_stream_excluding(p, stream);
        if alt != StreamId::NONE {
            self.move_sessions_off(p, stream, alt);
        }
    }

    /// For each locally drained stream whose sessions have all moved and
    /// been confirmed, send the barrier ping; its pong ends the drain.
    pub(crate) fn check_drains(&mut self) {
        self.drains_dirty = false;
        let draining: SmallVec<[StreamId; 4]> = self
            .streams
            .values()
            .filter(|s| {
                s.local_drain
                    && s.drain_nonce.is_none()
                    && !s.close_after_flush
                    && s.session_count == 0
            })
            .map(|s| s.id)
            .collect();
        for id in draining {
            let pending = self
                .slots
                .iter()
                .flatten()
                .filter_map(|s| s.session.as_ref())
                .any(|s| s.state == SessionState::Migrating && s.migrated_from() == id);
            if pending {
                continue;
            }
            let nonce = self.rng.next_u64();
            if let Some(st) = self.streams.get_mut(&id) {
                st.drain_nonce = Some(nonce);
                st.ctrl.push_back(Frame::Ping { nonce, pong: false });
            }
        }
    }

    /// The barrier pong came back: nothing is in flight on the stream in
    /// either direction. Tell the peer and close once that is flushed.
    pub(crate) fn finish_drain(&mut self, now: Timestamp, stream: StreamId) {
        let _ = now;
        if let Some(st) = self.streams.get_mut(&stream) {
            st.ctrl.push_back(Frame::Drain);
            st.close_after_flush = true;
        }
    }

    /// Periodic policy: move sessions to a clearly better stream.
    pub(crate) fn run_policy(&mut self, now: Timestamp) {
        self.policy_armed = false;
        if self.streams.values().any(|s| s.is_established()) {
            self.arm_policy_at(now + self.config.policy_interval);
        }
        if !self.config.auto_migrate {
            return;
        }
        for p in 0..self.peers.len() as u32 {
            let cands = self.candidates(p);
            if cands.len() < 2 {
                continue;
            }
            for cur in cands.iter().filter(|c| c.sessions > 0) {
                if let Some(target) = self.policy.migrate_target(now, cur, &cands) {
                    if target != cur.id {
                        let ids: Vec<SessionId> = self
                            .peer_sessions(p)
                            .into_iter()
                            .filter(|id| {
                                self.get(*id).is_some_and(|s| {
                                    s.send_stream() == cur.id && s.state == SessionState::Open
                                })
                            })
                            .collect();
                        for id in ids {
                            self.start_migration(id, target);
                        }
                    }
                }
            }
        }
    }

    fn arm_policy_at(&mut self, at: Timestamp) {
        self.policy_armed = true;
        self.timers.arm(at, TimerKey::Policy);
    }
}
