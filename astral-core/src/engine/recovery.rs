//! Recovery (design §8): sessions survive the death of their stream.
//!
//! When any stream to the peer dies (rule 2), every session exchanges its
//! counts with the peer: `Resume{received, consumed}` on a live stream,
//! answered by a reply (rule 4). A session whose *sending* stream died
//! enters `Recovering` and holds new data until the exchange; the others
//! keep sending and only exchange counts (a Credit, a Fin or data of theirs
//! may have died with the stream). A drained stream is no exception: the
//! drain's barrier normally leaves nothing in flight, and the exchange makes
//! the few bytes and credits that a late binding put on it exact anyway.
//!
//! On the peer's Resume a sender rewinds to `max(received, acked)`, except
//! for bytes it sent on the stream the Resume arrived on since it started
//! sending there: that stream is live both ways, so they are on their way.
//! Duplicates are dropped by offset at the receiver.

use super::sessions::{Ending, Phase};
use super::PeerEngine;
use crate::frame::Frame;
use crate::{StreamId, Timestamp};

impl PeerEngine {
    /// Stream `dead` is gone; `drained` if it closed after a completed drain.
    pub(super) fn on_stream_gone(&mut self, now: Timestamp, dead: StreamId, drained: bool) {
        let _ = drained;
        // Closed sessions' final Credits may have died with it.
        self.time_wait.mark_all_for_announce();
        self.announce_closed();
        for id in self.sessions.ids() {
            let Some(s) = self.sessions.get(id) else {
                continue;
            };
            let bound = s.tx == Some(dead);
            match s.phase {
                Phase::Routing(_) => {
                    // Resend the query: the responder answers duplicates.
                    if let Some(s) = self.sessions.get_mut(id) {
                        s.owed.query = true;
                    }
                    if bound {
                        let to = self.best_stream(Some(dead));
                        self.rebind(id, to);
                    } else {
                        self.schedule_ctrl(id);
                    }
                }
                Phase::Pending { .. } => {
                    if bound {
                        let to = self.best_stream(Some(dead));
                        self.rebind(id, to);
                    }
                }
                Phase::Open | Phase::Migrating { .. } | Phase::Recovering { .. } => {
                    if bound {
                        self.on_stream_lost(now, id);
                    } else if matches!(s.phase, Phase::Migrating { from, marker } if from == dead || marker == dead)
                    {
                        // The marker may have died with the stream (the
                        // stream the migration left, or the one a redirected
                        // migration's latest marker went out on): the peer
                        // may never follow, and the Resume exchange settles
                        // the session instead.
                        self.on_migration_abandoned(id);
                    }
                    // Rule 2: recover unconditionally.
                    if let Some(s) = self.sessions.get_mut(id) {
                        s.owed.resume = true;
                    }
                    if bound {
                        let to = self.best_stream(Some(dead));
                        self.rebind(id, to);
                    } else {
                        self.schedule_ctrl(id);
                    }
                }
            }
        }
    }

    /// Sends the marked announcements of closed sessions on a live stream,
    /// if there is one, otherwise when one comes up: a finished session's
    /// final counts (a Resume reply: the peer applies it like any Resume and
    /// never answers a reply), a reset session's Reset, a refused one's
    /// Response.
    pub(super) fn announce_closed(&mut self) {
        let Some(stream) = self.best_stream(None) else {
            return;
        };
        for (wire, ending) in self.time_wait.take_announcements() {
            let frame = match ending {
                Ending::Finished { received, consumed } => Frame::Resume {
                    session: wire,
                    received,
                    consumed,
                    reply: true,
                },
                // Our Reset may have died with the stream too.
                Ending::Reset => Frame::Reset { session: wire },
                Ending::Refused { code } => Frame::Response {
                    session: wire,
                    code,
                    buffer: 0,
                },
            };
            self.push_ctrl(Some(stream), frame);
        }
    }

    /// The peer's Resume (or reply) for a session, on `stream`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_resume(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        wire: u64,
        received: u64,
        consumed: u64,
        reply: bool,
    ) {
        let Some(id) = self.sessions.lookup(wire) else {
            if reply {
                return;
            }
            // A session we finished: answer with its final counts so the
            // peer sees its Fin acknowledged. Otherwise it is gone: Reset.
            let frame = match self.time_wait.get(wire).map(|tw| tw.ending) {
                Some(Ending::Finished { received, consumed }) => Frame::Resume {
                    session: wire,
                    received,
                    consumed,
                    reply: true,
                },
                _ => Frame::Reset { session: wire },
            };
            self.push_ctrl(Some(stream), frame);
            return;
        };
        let local_wins = self.local < self.peer;
        let arrival_usable = self.streams.get(stream).is_some_and(|st| st.is_usable());
        let tx_usable = |e: &PeerEngine, tx: Option<StreamId>| {
            tx.and_then(|t| e.streams.get(t))
                .is_some_and(|st| st.is_usable())
        };
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        if matches!(s.phase, Phase::Routing(_)) && !reply {
            // The responder resumes only sessions it accepted: its Response
            // was lost (on a stream that died at its end only, which ours
            // still thinks alive). Ask again where it resumes; it answers a
            // repeated Query with the Response and everything it had sent.
            if let Some(s) = self.sessions.get_mut(id) {
                s.owed.query = true;
            }
            self.rebind(id, Some(stream));
            return;
        }
        if matches!(s.phase, Phase::Pending { .. } | Phase::Routing(_)) {
            return;
        }
        // Our choice stands over the stream the Resume came on when: we are
        // migrating (our marker, newer than the Resume, moves the peer), we
        // have a Resume out and the lower node id (crossed Resumes), or the
        // Resume came on a stream being drained.
        let migrating = matches!(s.phase, Phase::Migrating { .. });
        let own_stands = tx_usable(self, s.tx)
            && (migrating || s.awaiting_resume && local_wins || !arrival_usable);
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if !reply {
            // A request goes out on the peer's sending stream.
            s.peer_tx = Some(stream);
        }
        if let Err(e) = s.send.on_credit(consumed) {
            self.session_violation(now, stream, id, e);
            return;
        }
        // Bytes sent on the stream the Resume came on are on their way.
        let live_from = if s.tx == Some(stream) {
            s.tx_since()
        } else {
            u64::MAX
        };
        let before = s.send.sent();
        if let Err(e) = s.send.retransmit_from(received, live_from) {
            self.session_violation(now, stream, id, e);
            return;
        }
        let resent = before.saturating_sub(s.send.sent());
        s.set_tx_since(s.tx_since().min(s.send.sent()));
        self.settle_send_charge(id);
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let mut reply_here = None;
        if reply {
            s.awaiting_resume = false;
        } else {
            // Rule 4: answer every Resume; the reply carries our counts, so
            // it also stands in for a Resume of ours not yet sent.
            s.owed.resume = false;
            if own_stands && s.tx != Some(stream) {
                // Answer where the Resume came: that stream carried the
                // peer's frame, ours may be half-open (dead at the peer's
                // end, which then never hears the reply and ends
                // `PeerUnreachable`: fuzz input
                // drain_ordering/unreachable-after-outage-9e3e9a66).
                let received = s.recv.received_mark();
                let consumed = s.recv.grant_resume();
                reply_here = Some(Frame::Resume {
                    session: wire,
                    received,
                    consumed,
                    reply: true,
                });
            } else {
                s.owed.resume_reply = true;
            }
        }
        if let Some(frame) = reply_here {
            self.push_ctrl(Some(stream), frame);
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let recovering = matches!(s.phase, Phase::Recovering { .. });
        let moved = !own_stands && s.tx != Some(stream);
        if moved && !reply {
            // Tell the peer where we send now: a flow frame after the reply
            // (`Session::peer_tx`), and a marker naming our new stream
            // with a new epoch, which the peer follows. The Resume that
            // moved us may be late: the peer may have sent a newer one on
            // another stream since (it moved during its recovery) and
            // stays there (the lower id's choice stands, or it is not
            // moved by our reply), while our frames from before this move
            // arrive after the Credit and leave its estimate stale; ours is
            // stale too, and neither end sees the crossing (fuzz inputs
            // migration_ordering/crossed-428b31ab and
            // drain_ordering/crossed-e4056e70). The marker makes the move
            // explicit; later markers and Resumes order by epoch.
            s.owed.credit = true;
            s.owed.restate = true;
        }
        if recovering {
            self.on_resumed(id, resent);
        } else if moved && !reply {
            self.on_moved_by_resume(id, resent);
        }
        // Rule 5: the stream the Resume came on is proven live; send there
        // from now on. Crossed Resumes (both sides recovered onto different
        // streams) would swap the two sides for good: the lower node id's
        // choice stands, so both directions end on one stream. A reply
        // binds nothing: it comes on the stream our own Resume went out on
        // (the peer answers there), where we sent from then on unless the
        // peer's own Resume has moved us since; going back would cross
        // the directions.
        if own_stands || reply {
            self.schedule_ctrl(id);
            self.schedule(id);
        } else {
            self.rebind(id, Some(stream));
        }
        self.touch(id, stream);
        self.signal_writable(id);
        self.maybe_finish(now, id);
    }
}
