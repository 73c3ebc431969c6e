//! Recovery (design §8): sessions survive the death of their stream.
//!
//! When any stream to a peer dies, every session with that peer resumes
//! (rule 2): it picks a live stream, sends `Resume{received, consumed}` and
//! holds new data until the peer's Resume (or reply) says where to restart.
//! Retransmission is `[max(received, acked), sent)`; duplicates are dropped
//! by offset at the receiver.

use crate::event::Event;
use crate::session::{self, SessionState};
use crate::timer::TimerKey;
use crate::{Node, SessionId, StreamId, Timestamp};

impl Node {
    /// A stream of peer `p` is gone. `graceful` means a completed drain: only
    /// sessions still bound to it need a new stream, nothing was in flight.
    pub(crate) fn on_stream_lost(
        &mut self,
        now: Timestamp,
        p: u32,
        dead: StreamId,
        graceful: bool,
    ) {
        if !graceful {
            self.mark_closed_for_announce(p);
        }
        let ids = self.peer_sessions(p);
        for id in ids {
            let Some(s) = self.get(id) else { continue };
            let bound = s.send_stream() == dead;
            if graceful && !bound {
                continue;
            }
            match s.state {
                SessionState::Routing => {
                    // Resend the query: the responder answers duplicates.
                    let stream = self.best_stream(p, dead);
                    if let Some(s) = self.get_mut(id) {
                        s.set(session::F_QUERY_PENDING);
                    }
                    self.rebind_or_orphan(id, stream);
                }
                SessionState::Pending => {
                    if bound {
                        let stream = self.best_stream(p, dead);
                        self.rebind_or_orphan(id, stream);
                    }
                }
                SessionState::Open | SessionState::Migrating | SessionState::Recovering => {
                    self.start_recovery(now, id, p, dead);
                }
                SessionState::Closed => {}
            }
        }
    }

    fn rebind_or_orphan(&mut self, id: SessionId, stream: StreamId) {
        if stream == StreamId::NONE {
            if let Some(s) = self.get_mut(id) {
                s.set_send_stream(StreamId::NONE);
                s.clear(session::F_IN_SCHED | session::F_IN_CTRL);
            }
        } else {
            self.rebind(id, stream);
        }
    }

    fn start_recovery(&mut self, now: Timestamp, id: SessionId, p: u32, dead: StreamId) {
        let timeout = self.config.recovery_timeout;
        let Some(s) = self.get_mut(id) else { return };
        if s.state != SessionState::Recovering {
            s.transition(SessionState::Recovering);
            let tag = s.recoveries.min(crate::timer::ROUTING_TAG - 1);
            self.timers.arm(now + timeout, TimerKey::Session(id, tag));
            self.events.push_back(Event::Recovering { session: id });
        }
        let Some(s) = self.get_mut(id) else { return };
        s.set(session::F_RESUME_PENDING);
        let current = s.send_stream();
        let keep = current != dead
            && self
                .streams
                .get(&current)
                .is_some_and(|st| st.is_established());
        let stream = if keep {
            current
        } else {
            self.best_stream(p, dead)
        };
        self.rebind_or_orphan(id, stream);
    }

    /// Sessions with `p` that closed gracefully within `recovery_timeout`
    /// may have lost their final frames with the dead stream (the peer then
    /// waits for a Credit that will never come, and no stream death tells it
    /// to resume). Mark them to re-announce their final counts.
    fn mark_closed_for_announce(&mut self, p: u32) {
        let keys: Vec<(u32, u64)> = self
            .time_wait_order
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k.0 == p)
            .collect();
        for key in keys {
            if let Some(tw) = self.time_wait.get_mut(&key) {
                tw.announce = true;
            }
        }
        self.announce_closed(p);
    }

    /// Sends the marked announcements (a Resume reply with the final counts:
    /// the peer applies them like any Resume and never answers a reply) on
    /// a live stream to `p`, if there is one; otherwise when one comes up.
    pub(crate) fn announce_closed(&mut self, p: u32) {
        let stream = self.best_stream(p, StreamId::NONE);
        if stream == StreamId::NONE {
            return;
        }
        let keys: Vec<(u32, u64)> = self
            .time_wait_order
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k.0 == p)
            .collect();
        for key in keys {
            let Some(tw) = self.time_wait.get_mut(&key) else {
                continue;
            };
            if !tw.announce {
                continue;
            }
            tw.announce = false;
            let frame = crate::frame::Frame::Resume {
                session: key.1,
                received: tw.received,
                consumed: tw.consumed,
                reply: true,
            };
            self.push_ctrl(stream, frame);
        }
    }

    /// The peer's Resume (or reply) for a session.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_resume(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        p: u32,
        wire: u64,
        received: u64,
        consumed: u64,
        reply: bool,
    ) {
        let Some(id) = self.lookup(p, wire) else {
            if reply {
                return;
            }
            // A session we finished: answer with its final counts so the
            // peer sees its Fin acknowledged. Otherwise it is gone: Reset.
            let frame = match self.time_wait.get(&(p, wire)) {
                Some(tw) => crate::frame::Frame::Resume {
                    session: wire,
                    received: tw.received,
                    consumed: tw.consumed,
                    reply: true,
                },
                None => crate::frame::Frame::Reset { session: wire },
            };
            self.push_ctrl(stream, frame);
            return;
        };
        let Some(s) = self.get_mut(id) else { return };
        if s.state == SessionState::Pending {
            return;
        }
        if let Err(e) = s.send.on_credit(consumed) {
            self.session_violation(now, stream, id, e);
            return;
        }
        let before = s.send.sent();
        if let Err(e) = s.send.retransmit_from(received) {
            self.session_violation(now, stream, id, e);
            return;
        }
        let resent = before.saturating_sub(s.send.sent());
        if reply {
            s.clear(session::F_RESUME_PENDING);
        } else {
            // Rule 4: answer every Resume; our reply also replaces a Resume
            // of ours not yet sent.
            s.clear(session::F_RESUME_PENDING);
            s.set(session::F_RESUME_REPLY_PENDING);
        }
        if s.state == SessionState::Recovering && !s.has(session::F_RESUME_PENDING) {
            s.transition(SessionState::Open);
            s.recoveries = s.recoveries.saturating_add(1);
            self.events.push_back(Event::Recovered {
                session: id,
                resent_bytes: resent,
            });
        } else if s.state == SessionState::Migrating {
            // Both sides now send on the Resume's stream.
            s.transition(SessionState::Open);
        }
        // Rule 5: the stream the Resume came on is proven live; use it.
        self.rebind(id, stream);
        self.touch(id, stream);
        self.signal_writable(id);
        self.maybe_finish(now, id);
    }
}
