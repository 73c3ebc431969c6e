//! Migration (design §7) and the automatic policy (§9).
//!
//! Offsets make migration simple: the initiator sends
//! `MigrateTo{session, target, epoch}` on its current stream and everything
//! later on the target; the responder follows a newer epoch passively and
//! acknowledges with a Credit on the target. Frames may arrive on any
//! stream in any order; reassembly by offset keeps delivery exact.

use super::sessions::Phase;
use super::{epoch_newer, PeerEngine};
use std::time::Duration;

use rand_core::RngCore;

use crate::error::MigrateError;
use crate::frame::Frame;
use crate::stream::StreamPreference;
use crate::timer::EngineTimer;
use crate::{SessionId, StreamId, Timestamp};

impl PeerEngine {
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
        let s = self
            .sessions
            .get(session)
            .ok_or(MigrateError::UnknownSession)?;
        if !s.may_send_data() {
            return Err(MigrateError::SessionNotOpen);
        }
        let t = self
            .streams
            .get(target)
            .ok_or(MigrateError::TargetUnknown)?;
        if s.tx == Some(target) {
            return Err(MigrateError::TargetIsCurrent);
        }
        if !t.confirmed {
            return Err(MigrateError::TargetNotConfirmed);
        }
        if t.is_draining() {
            // Bytes bound to a draining stream after its barrier would die
            // with it (issue 10, defect 1).
            return Err(MigrateError::TargetDraining);
        }
        if t.is_suspect() {
            return Err(MigrateError::TargetSuspect);
        }
        self.on_migration_started(session, target);
        // The application chose where the session goes: automatic
        // placement at both ends leaves it there until it is unpinned or
        // its stream dies.
        self.set_pin(session, true);
        Ok(())
    }

    /// Pins `session` where it is (`true`: automatic placement at both
    /// ends leaves it alone) or releases it. A pin lasts until released or
    /// until the session's sending stream dies (recovery places it then,
    /// unpinned). [`PeerEngine::migrate`] pins too.
    pub fn pin_session(
        &mut self,
        now: Timestamp,
        session: SessionId,
        pinned: bool,
    ) -> Result<(), MigrateError> {
        self.last_now = now;
        let s = self
            .sessions
            .get(session)
            .ok_or(MigrateError::UnknownSession)?;
        if !s.state().is_established() {
            return Err(MigrateError::SessionNotOpen);
        }
        self.set_pin(session, pinned);
        Ok(())
    }

    /// Whether this node's application, or the peer's, pinned `session`:
    /// `(local, peer)`.
    pub fn session_pins(&self, session: SessionId) -> Option<(bool, bool)> {
        self.sessions
            .get(session)
            .map(|s| (s.pins.local, s.pins.peer))
    }

    /// Sets this node's preference for `stream` (tier, penalty) and
    /// announces it to the peer (a Preference frame on the stream), so both
    /// ends place sessions alike: each uses the stricter of the two ends'
    /// settings.
    pub fn set_stream_preference(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        preference: StreamPreference,
    ) -> Result<(), MigrateError> {
        self.last_now = now;
        let st = self
            .streams
            .get_mut(stream)
            .ok_or(MigrateError::TargetUnknown)?;
        let preference = StreamPreference {
            tier: preference.tier,
            penalty: Duration::from_millis(u64::from(preference.penalty_ms())),
        };
        if st.preference != preference {
            st.preference = preference;
            st.tx.ctrl.push_back(Frame::Preference {
                tier: preference.tier,
                penalty_ms: preference.penalty_ms(),
            });
        }
        Ok(())
    }

    /// Records a pin change and owes the peer a Pin frame if it changed.
    fn set_pin(&mut self, session: SessionId, pinned: bool) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if s.pins.local != pinned {
            s.pins.local = pinned;
            s.owed.pin = true;
            self.schedule_ctrl(session);
        }
    }

    /// A Pin frame from the peer.
    pub(super) fn on_pin(&mut self, wire: u64, pinned: bool) {
        if let Some(s) = self
            .sessions
            .lookup(wire)
            .and_then(|id| self.sessions.get_mut(id))
        {
            s.pins.peer = pinned;
        }
    }

    /// A MigrateTo marker from the peer, on `stream`.
    pub(super) fn on_migrate_to(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        wire: u64,
        target: u64,
        epoch: u32,
    ) {
        let Some(id) = self.sessions.lookup(wire) else {
            return;
        };
        let local_wins_tie = self.local < self.peer;
        // Rule 3: a marker naming a stream we know is dead (or never knew)
        // is ignored; so is one naming a stream being drained (the peer
        // moves off it when it sees the Drain, with a newer marker), or one
        // we suspect (our probe on it went unanswered: it may be dead).
        let known = self.streams.by_wire(target);
        let suspected = known.is_some_and(|t| !t.is_draining() && t.is_suspect());
        let target = known
            .filter(|t| !t.is_draining() && !t.is_suspect())
            .map(|t| t.id);
        if let Some(t) = target {
            // The peer sends this session on the target from now on: what
            // it queues there is ahead of its answers to us.
            self.restart_silence(now, t);
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let newer = epoch_newer(epoch, s.epoch());
        if let Phase::Routing(r) = &mut s.phase {
            // The responder migrated the session before its Response
            // reached us (the marker went out on another stream): keep the
            // newest marker's epoch and target for when the Response
            // comes. Dropping it let an older marker, sent on the
            // Response's stream, win later: the two ends on different
            // streams, the responder `Migrating` for ever (fuzz input
            // migration_ordering/still-migrating-crossed-9f1e05be).
            if newer {
                r.early_marker = target;
                s.set_epoch(epoch);
            }
            return;
        }
        if !s.state().is_established() {
            return;
        }
        let follow = epoch_newer(epoch, s.epoch()) || (epoch == s.epoch() && !local_wins_tie);
        if epoch_newer(epoch, s.epoch()) {
            s.set_epoch(epoch);
        }
        s.rx = Some(stream);
        if !follow {
            // An older marker (or one of our epoch, which our id wins): the
            // peer started a migration without having seen our newest
            // epoch (its markers, or ours, died with a stream), so it would
            // wait in `Migrating` for traffic we never send on its target.
            // Unless our own migration is under way (its marker moves the
            // peer), restate where we send, with our epoch: the peer
            // follows it (newer for it, or a tie it loses). Bounded: a
            // restatement is answered only by one with a newer epoch. Not
            // during a Resume exchange: a Resume may still move us (Resumes
            // carry no epoch), and a restatement of the stream we are
            // leaving would cross the directions.
            let quiet = !s.awaiting_resume && !s.owed.resume && !s.owed.resume_reply;
            if matches!(s.phase, Phase::Open) && quiet {
                self.restate_binding(id, false);
            }
            return;
        }
        let Some(t) = target else {
            tracing::debug!(session = ?id, "MigrateTo names an unknown, dead, draining or suspect stream; ignored");
            let quiet = !s.awaiting_resume && !s.owed.resume && !s.owed.resume_reply;
            if matches!(s.phase, Phase::Migrating { .. }) {
                // The peer's marker won over ours: it will never follow
                // ours, so our migration cannot be confirmed. Its own
                // target is gone here: the peer recovers or moves on with a
                // newer marker, and that settles where both ends send.
                self.on_migration_abandoned(id);
            }
            if suspected && quiet {
                // A stream we suspect may be alive for the peer, which
                // then stays on it (a frame of ours sent there before we
                // left it confirms its migration): the directions would
                // stay crossed (fuzz input
                // migration_ordering/crossed-suspect-target-f93204e8).
                // Tell the peer where we send, with a newer epoch: it
                // follows (our next record on that stream also clears any
                // suspicion of it there). Bounded: each restatement needs
                // a newer marker naming a stream we suspect, and a record
                // on a suspect stream makes it healthy.
                let open = self
                    .sessions
                    .get(id)
                    .is_some_and(|s| matches!(s.phase, Phase::Open));
                if open {
                    self.restate_binding(id, true);
                }
            }
            return;
        };
        if matches!(s.phase, Phase::Recovering { .. }) {
            // The Resume exchange decides where a recovering session sends.
            return;
        }
        self.on_marker_followed(id, t);
    }

    /// Periodic policy: move sessions to a clearly better stream.
    pub(super) fn run_policy(&mut self, now: Timestamp) {
        self.policy_armed = false;
        if !self.streams.is_empty() {
            self.policy_armed = true;
            self.timers.arm(
                now + self.shared.config.policy_interval,
                EngineTimer::Policy,
            );
        }
        self.realign_crossed(now);
        if !self.shared.config.auto_migrate {
            return;
        }
        let cands = self.candidates();
        let placing = cands.len() >= 2 && !self.sessions.is_empty();
        self.tick_drain_probes(now, placing);
        if !placing {
            return;
        }
        // Again: the probes' tick may have unsettled a path.
        let cands = self.candidates();
        self.probe_streams(now);
        let cooldown = self.shared.config.migrate_cooldown;
        for cur in cands.iter().filter(|c| c.sessions > 0) {
            let Some(target) = self.policy.migrate_target(now, cur, &cands) else {
                continue;
            };
            if target == cur.id {
                continue;
            }
            let ids = self.sessions.ids_where(|s| {
                s.tx == Some(cur.id)
                    && matches!(s.phase, Phase::Open)
                    && !s.pins.any()
                    && s.placed_at()
                        .is_none_or(|at| now.saturating_duration_since(at) >= cooldown)
            });
            for id in ids {
                if let Some(s) = self.sessions.get_mut(id) {
                    let m = s.moves_mut();
                    m.policy_moves = m.policy_moves.saturating_add(1);
                }
                self.on_migration_started(id, target);
            }
        }
    }

    /// Convergence (design §7, defect 4 of issue 10): once migrations and
    /// recoveries stop, both directions of a session end on one stream.
    ///
    /// Some schedules still leave the two directions on different streams:
    /// Resumes, Responses to a repeated Query and markers that cross on
    /// different streams each move one side, and no rule sees the whole
    /// exchange. So both ends check every open session at each policy tick:
    /// if the peer's frames (`Session::peer_tx`) arrive on a stream other
    /// than the one it sends on, at two ticks in a row, with no Resume
    /// exchange under way and its own sending stream unchanged for two
    /// round trips of either stream plus a tick (late frames from before a
    /// move), then
    /// * the node with the lower id (whose choice stands in every
    ///   tie-break) restates its binding: `MigrateTo{its stream, a new
    ///   epoch}` on that stream, which the peer follows;
    /// * the node with the higher id migrates its sending direction to the
    ///   peer's stream by an ordinary marker (the peer already sends there,
    ///   follows the newer epoch and acknowledges).
    ///
    /// A `Migrating` session in the same state (its marker overruled or
    /// ignored at the peer: the peer never acknowledged on the target)
    /// abandons its migration at that tick and realigns at once, so no
    /// session, and no drain waiting for it, stays `Migrating` for ever.
    ///
    /// If both act at once the epochs tie and the lower id's stream wins at
    /// both ends; a restatement never moves the lower id, so the two ends
    /// cannot chase each other. Bounded: a crossed session converges within
    /// two policy ticks plus a round trip once nothing else moves it.
    fn realign_crossed(&mut self, now: Timestamp) {
        let local_wins = self.local < self.peer;
        let interval = self.shared.config.policy_interval;
        let ids = self
            .sessions
            .ids_where(|s| s.crossed_seen().is_some() || s.peer_tx != s.tx);
        for id in ids {
            let Some(s) = self.sessions.get(id) else {
                continue;
            };
            let srtt = |e: &PeerEngine, t: Option<StreamId>| {
                t.and_then(|t| e.streams.get(t))
                    .map_or(Duration::ZERO, |st| st.liveness.rtt.srtt)
            };
            let candidate = match (s.tx, s.peer_tx) {
                (Some(tx), Some(rx))
                    if rx != tx
                        && matches!(s.phase, Phase::Open)
                        && !s.awaiting_resume
                        && !s.owed.resume
                        && !s.owed.resume_reply
                        && self
                            .streams
                            .get(if local_wins { tx } else { rx })
                            .is_some_and(|st| st.is_usable()) =>
                {
                    let quiet = srtt(self, Some(tx)).max(srtt(self, Some(rx))) * 2 + interval;
                    s.placed_at()
                        .is_none_or(|at| now.saturating_duration_since(at) >= quiet)
                        .then_some(rx)
                }
                // A migration the peer never followed: its traffic still
                // arrives elsewhere a quiet time after our marker (a
                // follower acknowledges on the target at once, and any of
                // its frames there confirms). Its marker was overruled or
                // ignored where no rule saw it; give the migration up at
                // the second such tick (`Migrating => Open`), and the
                // realignment above settles where both ends send.
                (Some(tx), Some(rx))
                    if rx != tx
                        && matches!(s.phase, Phase::Migrating { .. })
                        && !s.awaiting_resume
                        && !s.owed.resume
                        && !s.owed.resume_reply =>
                {
                    let quiet = srtt(self, Some(tx)).max(srtt(self, Some(rx))) * 2 + interval;
                    s.placed_at()
                        .is_none_or(|at| now.saturating_duration_since(at) >= quiet)
                        .then_some(rx)
                }
                _ => None,
            };
            let migrating = matches!(s.phase, Phase::Migrating { .. });
            let seen = s.crossed_seen();
            let Some(s) = self.sessions.get_mut(id) else {
                continue;
            };
            match candidate {
                Some(rx) if seen == Some(rx) => {
                    s.set_crossed_seen(None);
                    if migrating {
                        tracing::debug!(session = ?id, peer_on = ?rx, "migration never followed: abandoned");
                        self.on_migration_abandoned(id);
                    }
                    // Realign at once (an abandoned migration leaves the
                    // directions crossed: waiting two more ticks would
                    // only delay the same step).
                    self.realign_now(id, rx, local_wins);
                }
                other => s.set_crossed_seen(other),
            }
        }
    }

    /// The step of [`Self::realign_crossed`] for one session whose peer
    /// sends on `rx`: the lower id restates its binding with a new epoch,
    /// the higher id migrates its sending direction to `rx`. Each only onto
    /// a stream usable here.
    fn realign_now(&mut self, id: SessionId, rx: StreamId, local_wins: bool) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let tx = s.tx;
        if local_wins {
            tracing::debug!(session = ?id, peer_on = ?rx, "directions on different streams: restating ours");
            self.restate_binding(id, true);
        } else if tx != Some(rx) && self.usable_wire(Some(rx)).is_some() {
            tracing::debug!(session = ?id, to = ?rx, "directions on different streams: realigning");
            self.on_migration_started(id, rx);
        }
    }

    /// The wire id of stream `t` if it is usable here.
    fn usable_wire(&self, t: Option<StreamId>) -> Option<u64> {
        t.and_then(|t| self.streams.get(t))
            .filter(|st| st.is_usable())
            .map(|st| st.wire)
    }

    /// Tells the peer where session `id` sends (a `MigrateTo` naming its
    /// own sending stream, on that stream), with its epoch, first raised by
    /// one if `new_epoch`; nothing if that stream is not usable.
    fn restate_binding(&mut self, id: SessionId, new_epoch: bool) {
        let Some(tx) = self.sessions.get(id).map(|s| s.tx) else {
            return;
        };
        let Some(target) = self.usable_wire(tx) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if new_epoch {
            s.set_epoch(s.epoch().wrapping_add(1));
        }
        let (wire, epoch) = (s.wire, s.epoch());
        self.push_ctrl(
            tx,
            Frame::MigrateTo {
                session: wire,
                target,
                epoch,
            },
        );
    }

    /// Pings every usable stream with no ping in flight: candidates that
    /// carry nothing are measured every `policy_interval`, not only at
    /// keep-alive time.
    fn probe_streams(&mut self, now: Timestamp) {
        for st in self.streams.iter_mut().filter(|s| s.is_usable()) {
            if st.liveness.ping.is_none() {
                let nonce = self.rng.next_u64();
                st.liveness.ping = Some(super::liveness::PingOut::new(nonce, now));
                st.tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
            }
        }
    }
}
