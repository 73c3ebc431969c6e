//! Liveness of established streams (design §6 and §13): keep-alive pings
//! and the round-trip samples they give, suspicion of a stream whose path
//! went silent, its return, and its death.
//!
//! **What a stream waits for.** A stream is *awaiting* from the first
//! record this side sends on it after it last heard from the peer on it,
//! unless that record holds only pongs (which ask for nothing). Data,
//! credit, control frames and pings are all traffic whose loss matters, so
//! "unacknowledged data" of a stream is simply "anything sent on it since
//! the peer was last heard on it". Nothing the peer sends on *another*
//! stream counts: a session's credit may come back on any stream, so only
//! an authenticated record on the stream itself proves that its path
//! works, and the probe (a Ping, which the peer answers at once on the same
//! stream) is what asks for one.
//!
//! **Suspicion.** With `RTO = Rtt::rto()` (RFC 6298: `srtt + 4·rttvar`,
//! floored at 100 ms, capped at 60 s) over *every* round-trip sample of the
//! stream (`Liveness::silence`: pongs and credit, including the long credit
//! samples the reported RTT leaves out, so the queueing delay of a saturated
//! stream raises it):
//!
//! 1. awaiting for one RTO and nothing heard: a probe goes out;
//! 2. the probe handed to the transport one RTO ago (plus the time our own
//!    unconfirmed output ahead of it takes to drain at the measured delivery
//!    rate, `PathMeter::queueing_ahead`: a saturated stream's probe waits
//!    behind its queue) and still nothing heard: the stream is *suspect* (`Event::StreamSuspect`). If another
//!    usable stream to the peer exists, every session runs the recovery
//!    rules against the suspect stream at once, as if it had died
//!    (`recovery.rs`): the sessions sending on it resume elsewhere with a
//!    Resume exchange, so what was sent on the suspect stream is resent
//!    exactly once by offset. Otherwise they stay: there is nowhere better,
//!    and they move as soon as a usable stream appears;
//!    When the peer's MigrateTo marker (on another stream) moves a session
//!    onto the stream, a silence under way there starts again: the peer's
//!    answers now wait behind the backlog it queues there;
//! 3. any authenticated record on the stream clears the suspicion
//!    (`Event::StreamHealthy`); sessions that moved stay where they are;
//! 4. nothing heard for `dead_timeout`: the stream is closed
//!    (`PingTimeout`), as before.
//!
//! The clocks start when records are *handed to the driver*
//! (`poll_transmit`), never when they are queued, so a transport that
//! pushes back (a full socket) does not look like a silent path. A stream
//! without an RTT sample yet (its first ping unanswered) is never suspected:
//! its RTO would be a guess, and a slow path (Tor: 0.5–3 s) would be
//! suspected falsely. On a path with jitter the `4·rttvar` term keeps two
//! RTOs well above the slowest round trip (see `docs/MIGRATION.md` for the
//! simulated ten minutes at 2 s ± 50 %).
//!
//! **Superseded engines.** When the peer came back with a new incarnation
//! (`handle_superseded`), the old incarnation's streams are probed at once;
//! one that stays silent for an RTO after its probe belonged to the process
//! that is gone and is closed at once instead of becoming suspect, so its
//! sessions end about one RTO after the new handshake.
//!
//! **Timers.** Each stream keeps the earliest deadline it has in the
//! engine's timer table (`armed`); a new deadline is inserted only when it
//! is earlier, so a busy stream costs about one timer entry per RTO, not
//! one per record.

use std::time::Duration;

use rand_core::RngCore;

use super::PeerEngine;
use crate::event::{Event, StreamCloseReason};
use crate::frame::Frame;
use crate::stream::Rtt;
use crate::timer::EngineTimer;
use crate::{StreamId, Timestamp};

/// A ping this side queued whose pong has not come back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PingOut {
    pub nonce: u64,
    /// When it was queued.
    pub queued: Timestamp,
    /// When it was built into a record (handed to the driver).
    pub sent: Option<Timestamp>,
    /// How long our own output handed over before it, not yet confirmed by
    /// the peer, takes to drain (`PathMeter::queueing_ahead`): the answer
    /// cannot come sooner, so the suspicion waits that much longer.
    pub behind: Duration,
}

impl PingOut {
    pub(crate) fn new(nonce: u64, now: Timestamp) -> PingOut {
        PingOut {
            nonce,
            queued: now,
            sent: None,
            behind: Duration::ZERO,
        }
    }

    /// When it left, or was queued if it has not left yet.
    fn since(&self) -> Timestamp {
        self.sent.unwrap_or(self.queued)
    }
}

/// Liveness of one stream: pings, RTT, silence, suspicion.
#[derive(Debug)]
pub(crate) struct Liveness {
    pub rtt: Rtt,
    /// The estimate the probe timeout uses: every round-trip sample, credit
    /// samples longer than the RTO included. `rtt` leaves those out (a
    /// receiver that read late is not the path), but on a saturated stream
    /// they are the queueing delay every record of ours, the probe too,
    /// waits behind, and a timeout that ignores it suspects a healthy
    /// stream.
    pub silence: Rtt,
    /// The keep-alive (or first) ping in flight. One at a time: the
    /// transport is reliable and ordered, so every ping is answered in
    /// turn, and a second one would only measure the same queue.
    pub ping: Option<PingOut>,
    /// The latest probe (a ping sent because the stream went silent).
    pub probe: Option<PingOut>,
    /// When the next keep-alive ping is due.
    pub next_ping: Timestamp,
    /// Last authenticated record from the peer.
    pub last_rx: Timestamp,
    /// When this side first sent something other than pongs since it last
    /// heard from the peer on this stream.
    pub awaiting_since: Option<Timestamp>,
    /// When the stream became suspect.
    pub suspect_since: Option<Timestamp>,
    /// Earliest liveness timer entry known to be pending for this stream.
    armed: Timestamp,
}

impl Liveness {
    /// A stream that just came up, with its first ping (`nonce`) queued.
    pub fn new(now: Timestamp, nonce: u64, keepalive: Duration) -> Liveness {
        Liveness {
            rtt: Rtt::default(),
            silence: Rtt::default(),
            ping: Some(PingOut::new(nonce, now)),
            probe: None,
            next_ping: now + keepalive,
            last_rx: now,
            awaiting_since: None,
            suspect_since: None,
            armed: Timestamp::MAX,
        }
    }

    /// The probe timeout, once the stream has an RTT sample.
    fn rto(&self) -> Option<Duration> {
        (self.silence.samples > 0).then(|| self.silence.rto(Duration::ZERO))
    }

    /// The probe sent (or queued) for the current silence, if any.
    fn current_probe(&self) -> Option<PingOut> {
        let since = self.awaiting_since?;
        self.probe.filter(|p| p.since() >= since)
    }

    /// The next moment something is due: a keep-alive ping, a probe, the
    /// suspicion check, death, or the end of a shutdown's flush.
    fn next_deadline(&self, dead: Duration, leaving: Option<Timestamp>) -> Timestamp {
        let mut next = self.next_ping.min(self.last_rx + dead);
        if let Some(d) = leaving {
            next = next.min(d);
        }
        if let (Some(rto), Some(since)) = (self.rto(), self.awaiting_since) {
            match self.current_probe() {
                None => next = next.min(since + rto),
                Some(PingOut {
                    sent: Some(t),
                    behind,
                    ..
                }) if self.suspect_since.is_none() => next = next.min(t + rto + behind),
                Some(_) => {}
            }
        }
        next
    }

    /// A Ping with `nonce` was just built into a record.
    /// `behind`: the drain time of our unconfirmed output ahead of it.
    pub fn on_ping_sent(&mut self, nonce: u64, now: Timestamp, behind: Duration) {
        for p in [&mut self.ping, &mut self.probe].into_iter().flatten() {
            if p.nonce == nonce && p.sent.is_none() {
                p.sent = Some(now);
                p.behind = behind;
            }
        }
    }

    /// A pong with `nonce` arrived: the round trip of the ping it answers,
    /// if it answers one of ours.
    pub fn take_pong(&mut self, nonce: u64, now: Timestamp) -> Option<Duration> {
        for slot in [&mut self.ping, &mut self.probe] {
            if let Some(p) = slot.filter(|p| p.nonce == nonce) {
                *slot = None;
                return Some(now.saturating_duration_since(p.since()));
            }
        }
        None
    }
}

/// How long a shutting-down stream may take to flush its Goodbye before it
/// is closed anyway (a transport that takes nothing, e.g. a blackholed
/// path with a full socket buffer).
pub(crate) const GOODBYE_FLUSH: Duration = Duration::from_secs(2);

impl PeerEngine {
    /// Arms `stream`'s liveness timer at `at` unless an entry at least as
    /// early is pending.
    fn ensure_liveness_timer(&mut self, stream: StreamId, at: Timestamp) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if at < st.liveness.armed {
            st.liveness.armed = at;
            self.timers.arm(at, EngineTimer::Liveness(stream));
        }
    }

    /// Arms the liveness timer of a stream that just came up.
    pub(super) fn start_liveness(&mut self, stream: StreamId) {
        let dead = self.shared.config.dead_timeout;
        if let Some(st) = self.streams.get(stream) {
            let next = st.liveness.next_deadline(dead, st.leaving);
            self.ensure_liveness_timer(stream, next);
        }
    }

    /// An authenticated record arrived on `stream`: the path works (in
    /// this direction at least), so the silence is over and a suspicion is
    /// cleared.
    pub(super) fn on_heard(&mut self, now: Timestamp, stream: StreamId) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        let l = &mut st.liveness;
        l.last_rx = now;
        l.awaiting_since = None;
        if l.suspect_since.take().is_some() {
            self.events.push_back(Event::StreamHealthy { stream });
            self.on_stream_usable(now);
        }
    }

    /// The peer just moved a session's sending onto `stream` (its MigrateTo
    /// marker arrived on another stream): its answers to what we sent there
    /// now wait behind the backlog it queues there, which we cannot
    /// measure, so a silence under way starts again from now (the earlier
    /// probe no longer counts; a new one goes out one RTO later).
    pub(super) fn restart_silence(&mut self, now: Timestamp, stream: StreamId) {
        if let Some(st) = self.streams.get_mut(stream) {
            if st.liveness.suspect_since.is_none() && st.liveness.awaiting_since.is_some() {
                st.liveness.awaiting_since = Some(now);
            }
        }
        self.start_liveness(stream);
    }

    /// A record was handed to the driver on `stream`; `asks` unless it held
    /// only pongs. Starts the silence clock and arms the probe timer.
    pub(super) fn after_record_sent(&mut self, now: Timestamp, stream: StreamId, asks: bool) {
        let dead = self.shared.config.dead_timeout;
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if asks && st.liveness.awaiting_since.is_none() {
            st.liveness.awaiting_since = Some(now);
        }
        let next = st.liveness.next_deadline(dead, st.leaving);
        if next < st.liveness.armed {
            self.ensure_liveness_timer(stream, next);
        }
    }

    /// Queues a probe on `stream` now (a ping with a fresh nonce).
    fn queue_probe(&mut self, now: Timestamp, stream: StreamId) {
        let nonce = self.rng.next_u64();
        if let Some(st) = self.streams.get_mut(stream) {
            st.liveness.probe = Some(PingOut::new(nonce, now));
            st.tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
        }
    }

    /// Probes every stream at once: the peer restarted (or a second
    /// process shares its key), and the streams of this incarnation must
    /// prove within an RTO that they still lead somewhere.
    pub(super) fn probe_all(&mut self, now: Timestamp) {
        for id in self.streams.ids() {
            self.queue_probe(now, id);
            if let Some(st) = self.streams.get_mut(id) {
                st.liveness.awaiting_since.get_or_insert(now);
            }
        }
    }

    /// A stream timer: keep-alive ping, probe, suspicion, death, and the
    /// end of a shutdown's flush.
    pub(super) fn on_liveness_timer(&mut self, now: Timestamp, id: StreamId) {
        let keepalive = self.shared.config.keepalive_interval;
        let dead = self.shared.config.dead_timeout;
        let Some(st) = self.streams.get_mut(id) else {
            return;
        };
        if st.liveness.armed <= now {
            st.liveness.armed = Timestamp::MAX;
        }
        if st.leaving.is_some_and(|d| now >= d) {
            self.kill_stream(now, id, StreamCloseReason::Shutdown);
            return;
        }
        if now >= st.liveness.last_rx + dead {
            self.kill_stream(now, id, StreamCloseReason::PingTimeout);
            return;
        }
        if now >= st.liveness.next_ping {
            if st.liveness.ping.is_none() {
                let nonce = self.rng.next_u64();
                st.liveness.ping = Some(PingOut::new(nonce, now));
                st.tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
            }
            st.liveness.next_ping = now + keepalive;
        }
        let mut probe = false;
        let mut suspect = false;
        if let (Some(rto), Some(since)) = (st.liveness.rto(), st.liveness.awaiting_since) {
            match st.liveness.current_probe() {
                None => probe = now >= since + rto,
                Some(PingOut {
                    sent: Some(t),
                    behind,
                    ..
                }) => {
                    suspect = st.liveness.suspect_since.is_none() && now >= t + rto + behind;
                }
                Some(_) => {}
            }
        }
        if probe {
            self.queue_probe(now, id);
        }
        if suspect {
            if let Some(st) = self.streams.get_mut(id) {
                st.liveness.suspect_since = Some(now);
            }
        }
        if let Some(st) = self.streams.get(id) {
            let next = st.liveness.next_deadline(dead, st.leaving);
            self.ensure_liveness_timer(id, next);
        }
        if suspect {
            self.on_suspect(now, id);
        }
    }

    /// `stream` became suspect: its sessions resume on another usable
    /// stream by the recovery rules, if one exists.
    fn on_suspect(&mut self, now: Timestamp, stream: StreamId) {
        if self.superseded {
            // An older incarnation's stream that does not answer: the
            // process behind it is gone.
            self.kill_stream(now, stream, StreamCloseReason::PingTimeout);
            return;
        }
        tracing::debug!(%stream, peer = %self.peer, "stream suspect");
        self.events.push_back(Event::StreamSuspect { stream });
        self.recover_off_suspect(now, stream);
    }

    /// Whether a usable stream other than `stream` exists.
    fn has_usable_alternative(&self, stream: StreamId) -> bool {
        self.streams.iter().any(|s| s.id != stream && s.is_usable())
    }

    /// Runs recovery against suspect `stream` (rule 2: every session
    /// exchanges its counts; those sending on it move) if a usable
    /// alternative exists.
    pub(super) fn recover_off_suspect(&mut self, now: Timestamp, stream: StreamId) {
        if self.has_usable_alternative(stream) {
            self.on_stream_gone(now, stream, false);
        }
    }

    /// Suspect streams that still carry sessions: when a usable stream
    /// appears, those sessions resume on it.
    pub(super) fn suspects_with_senders(&self) -> smallvec::SmallVec<[StreamId; 4]> {
        self.streams
            .iter()
            .filter(|s| s.is_suspect() && s.senders > 0)
            .map(|s| s.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn t(n: u64) -> Timestamp {
        Timestamp::ZERO + ms(n)
    }

    fn sampled(rtt_ms: u64) -> Liveness {
        let mut l = Liveness::new(t(0), 1, ms(5000));
        l.silence.sample(ms(rtt_ms));
        l.ping = None;
        l
    }

    #[test]
    fn no_probe_deadline_before_the_first_sample() {
        let mut l = Liveness::new(t(0), 1, ms(5000));
        l.awaiting_since = Some(t(0));
        assert_eq!(l.next_deadline(ms(20_000), None), t(5000));
    }

    #[test]
    fn probe_then_suspicion_one_rto_apart() {
        let mut l = sampled(50);
        // First sample: srtt 50 ms, rttvar 25 ms, RTO 150 ms.
        assert_eq!(l.rto(), Some(ms(150)));
        l.awaiting_since = Some(t(1000));
        assert_eq!(l.next_deadline(ms(20_000), None), t(1150));
        // The probe is queued at 1150 and leaves at 1160.
        l.probe = Some(PingOut::new(9, t(1150)));
        assert_eq!(l.next_deadline(ms(20_000), None), t(5000), "not sent yet");
        l.on_ping_sent(9, t(1160), Duration::ZERO);
        assert_eq!(l.next_deadline(ms(20_000), None), t(1310));
        // Suspect: nothing more to check until keep-alive or death.
        l.suspect_since = Some(t(1310));
        assert_eq!(l.next_deadline(ms(20_000), None), t(5000));
    }

    #[test]
    fn a_probe_behind_our_queue_waits_for_it_too() {
        let mut l = sampled(50);
        l.awaiting_since = Some(t(1000));
        l.probe = Some(PingOut::new(9, t(1150)));
        // 2 s of our own unconfirmed output ahead of the probe.
        l.on_ping_sent(9, t(1150), ms(2000));
        assert_eq!(l.next_deadline(ms(20_000), None), t(3300));
    }

    #[test]
    fn long_credit_samples_raise_the_probe_timeout_but_not_the_rtt() {
        let mut l = sampled(50);
        l.rtt.sample(ms(50));
        // A saturated stream: credit comes back after 900 ms of queueing.
        for _ in 0..8 {
            l.silence.sample(ms(900));
        }
        assert!(l.rto().is_some_and(|r| r > ms(900)), "{:?}", l.rto());
    }

    #[test]
    fn a_probe_of_an_earlier_silence_does_not_count() {
        let mut l = sampled(50);
        l.probe = Some(PingOut {
            nonce: 3,
            queued: t(100),
            sent: Some(t(100)),
            behind: Duration::ZERO,
        });
        l.awaiting_since = Some(t(2000));
        assert!(l.current_probe().is_none());
        assert_eq!(l.next_deadline(ms(20_000), None), t(2150));
    }

    #[test]
    fn pongs_answer_either_slot_from_their_send_time() {
        let mut l = sampled(50);
        l.ping = Some(PingOut::new(1, t(0)));
        l.on_ping_sent(1, t(10), Duration::ZERO);
        l.probe = Some(PingOut::new(2, t(20)));
        assert_eq!(l.take_pong(2, t(70)), Some(ms(50)), "unsent: from queueing");
        assert_eq!(l.take_pong(1, t(90)), Some(ms(80)));
        assert_eq!(l.take_pong(1, t(95)), None, "answered once");
        assert!(l.ping.is_none() && l.probe.is_none());
    }

    #[test]
    fn leaving_and_death_bound_the_deadline() {
        let l = sampled(50);
        assert_eq!(l.next_deadline(ms(20_000), Some(t(300))), t(300));
        assert_eq!(l.next_deadline(ms(1000), None), t(1000));
    }
}
