//! Graceful departure (design §13): a node that shuts down says so.
//!
//! `shutdown` ends every session with the peer at once
//! (`CloseReason::Shutdown` here) and queues a `Goodbye` on every stream to
//! it; each stream closes (`StreamCloseReason::Shutdown`, which drivers
//! flush before closing: `driver::linger`) once the Goodbye was handed to
//! the driver, or after [`GOODBYE_FLUSH`] if its transport takes nothing.
//! The peer, on the first Goodbye from this node instance, ends every
//! session with it (`CloseReason::PeerShutdown`) and closes every stream to
//! it: within one one-way delay of the shutdown, instead of a recovery that
//! would wait `recovery_timeout` for a node that is not coming back.
//!
//! Sessions end as by a reset: bytes not yet delivered are lost. An
//! application that wants them delivered finishes its sessions and waits
//! for them to close gracefully before it shuts down (as with QUIC's
//! `CONNECTION_CLOSE`).
//!
//! A Goodbye concerns one incarnation: a restarted process (a new
//! incarnation) or a second process with the same key is a different
//! engine, and its sessions are untouched.

use super::liveness::GOODBYE_FLUSH;
use super::PeerEngine;
use crate::event::{CloseReason, StreamCloseReason};
use crate::frame::Frame;
use crate::timer::EngineTimer;
use crate::{StreamId, Timestamp};

impl PeerEngine {
    /// This node is leaving: every session with the peer ends now
    /// (`CloseReason::Shutdown`), the peer is told with a Goodbye on every
    /// stream, and the streams close once it is flushed. Afterwards the
    /// engine takes no new stream or session and ignores what the peer
    /// sends. Idempotent.
    pub fn shutdown(&mut self, now: Timestamp) {
        self.last_now = now;
        if self.leaving {
            return;
        }
        self.leaving = true;
        self.end_all(now, CloseReason::Shutdown);
        self.lazy_credits.clear();
        let deadline = now + GOODBYE_FLUSH;
        for st in self.streams.iter_mut() {
            // Nothing queued matters any more (pongs, markers, resets of
            // sessions that are gone): the Goodbye says it all.
            st.tx.ctrl.clear();
            st.tx.ctrl_sessions.clear();
            st.tx.data.clear();
            st.tx.ctrl.push_back(Frame::Goodbye);
            st.leaving = Some(deadline);
            self.timers.arm(deadline, EngineTimer::Liveness(st.id));
        }
    }

    /// Whether [`PeerEngine::shutdown`] was called.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// The peer's Goodbye, on `stream`: the peer instance is leaving.
    /// Every session with it ends (`PeerShutdown`) and every stream to it
    /// closes; its other Goodbyes, still on their way, find nothing.
    pub(super) fn on_goodbye(&mut self, now: Timestamp, stream: StreamId) {
        tracing::debug!(%stream, peer = %self.peer, "peer said goodbye");
        self.end_all(now, CloseReason::PeerShutdown);
        self.lazy_credits.clear();
        for id in self.streams.ids() {
            self.kill_stream(now, id, StreamCloseReason::PeerShutdown);
        }
    }
}
