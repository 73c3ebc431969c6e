//! Drains: move every session off a stream, then close it with nothing in
//! flight.
//!
//! 1. The draining side sends `Drain` on the stream and migrates its
//!    sessions away; the peer, on `Drain`, migrates its own away. From then
//!    on neither side binds anything to the stream: `migrate` refuses it,
//!    markers naming it are not followed, new sessions and recoveries avoid
//!    it (unless it is the only stream left).
//! 2. Once no session sends on it and no migration away from it is
//!    unconfirmed, the draining side sends a barrier ping on it. The pong
//!    comes back after everything the peer sent on the stream before it.
//! 3. On the pong the draining side sends a second `Drain` and closes once
//!    that is flushed; the peer closes on the second `Drain`.
//!
//! A drained close still runs the Resume exchange of recovery for every
//! session (see `recovery.rs`), so even bytes that a binding made late (the
//! stream was the last one, a crossed marker) are never lost.

use rand_core::RngCore;

use super::streams::LocalDrain;
use super::PeerEngine;
use crate::error::DrainError;
use crate::event::StreamCloseReason;
use crate::frame::Frame;
use crate::{StreamId, Timestamp};

impl PeerEngine {
    /// Moves every session off `stream` (one round trip for all of them),
    /// asks the peer to do the same, then closes the stream. Returns how
    /// many sessions moved.
    pub fn drain_stream(&mut self, now: Timestamp, stream: StreamId) -> Result<usize, DrainError> {
        self.last_now = now;
        if !self.streams.contains(stream) {
            return Err(DrainError::UnknownStream);
        }
        let alt = self
            .usable_alternative(stream)
            .ok_or(DrainError::NoAlternative)?;
        if let Some(st) = self.streams.get_mut(stream) {
            if st.local_drain == LocalDrain::No {
                st.local_drain = LocalDrain::Moving;
                st.tx.ctrl.push_back(Frame::Drain);
            }
        }
        let moved = self.move_sessions_off(stream, alt);
        self.check_drains();
        Ok(moved)
    }

    /// The best usable stream other than `stream`.
    fn usable_alternative(&mut self, stream: StreamId) -> Option<StreamId> {
        let mut c = self.candidates();
        c.retain(|c| c.id != stream);
        if c.is_empty() {
            None
        } else {
            self.policy.choose(&c)
        }
    }

    /// Migrates (or, for sessions not yet open, rebinds) every session
    /// sending on `from` to `to`. Returns how many moved.
    fn move_sessions_off(&mut self, from: StreamId, to: StreamId) -> usize {
        let ids = self.sessions.ids_where(|s| s.tx == Some(from));
        for &id in &ids {
            match self.sessions.get(id).map(|s| s.may_send_data()) {
                Some(true) => self.on_migration_started(id, to),
                Some(false) => self.rebind(id, Some(to)),
                None => {}
            }
        }
        ids.len()
    }

    /// The peer asks us to move off `stream` (first Drain), or announces
    /// that it is closing it now that both sides moved off (second Drain).
    pub(super) fn on_drain(&mut self, now: Timestamp, stream: StreamId) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if st.remote_drain {
            self.kill_stream(now, stream, StreamCloseReason::Drained);
            return;
        }
        st.remote_drain = true;
        if let Some(alt) = self.usable_alternative(stream) {
            self.move_sessions_off(stream, alt);
        }
    }

    /// For each stream this side drains whose sessions have all moved and
    /// been confirmed, sends the barrier ping; its pong ends the drain.
    /// O(streams): the per-stream counts are kept by the transitions.
    pub(super) fn check_drains(&mut self) {
        self.drains_dirty = false;
        for st in self.streams.iter_mut() {
            if st.local_drain == LocalDrain::Moving && st.senders == 0 && st.migrating_from == 0 {
                let nonce = self.rng.next_u64();
                st.local_drain = LocalDrain::Barrier { nonce };
                st.tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
            }
        }
    }

    /// A pong on `stream`: if it answers the drain barrier, nothing is in
    /// flight on the stream in either direction: tell the peer, and close
    /// once that is flushed.
    pub(super) fn on_drain_pong(&mut self, now: Timestamp, stream: StreamId, nonce: u64) {
        let _ = now;
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if st.local_drain != (LocalDrain::Barrier { nonce }) {
            return;
        }
        if st.senders > 0 || st.migrating_from > 0 {
            // Something bound to it after the barrier went out (it became
            // the only stream): wait for the next chance.
            st.local_drain = LocalDrain::Moving;
            return;
        }
        st.local_drain = LocalDrain::Closing;
        st.tx.ctrl.push_back(Frame::Drain);
    }
}
