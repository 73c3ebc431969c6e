//! Liveness of established streams (design §6 and §13): keep-alive pings
//! and the round-trip samples they give, suspicion of a stream whose path
//! went silent, its return, and its death.
//!
//! **What a stream waits for.** A stream is silent only for the side that
//! waits for something from the peer on it: the answer to its own ping or
//! probe that left, or the confirmation (a credit or pong covering it) of
//! a record it sent that asks for one: session data or a Fin, a Query, a
//! Resume that is not a reply. Credit, pongs, Responses, Resume replies,
//! markers and the other control frames ask for nothing, so the receiver
//! of a transfer, which only grants credit, waits for nothing unless its
//! own keep-alive ping is out. The clock (`awaiting_since`) starts when the
//! first such record is handed over, and *every* authenticated record on
//! the stream restarts it while something is still owed (and stops it when
//! nothing is): a stream on which the peer is heard is not silent, however
//! long its own answers take behind the peer's data. Nothing the peer
//! sends on *another* stream counts: a session's credit may come back on
//! any stream, so only a record on the stream itself proves that its path
//! works, and the probe (a Ping, which the peer answers at once on the same
//! stream) is what asks for one.
//!
//! **Suspicion.** Two estimates, both over the stream's round-trip
//! samples (pongs and credit, including the long credit samples the
//! reported RTT leaves out):
//!
//! * the *loaded* RTO, `Liveness::silence` over every sample (RFC 6298:
//!   `srtt + 4·rttvar`, floored at 100 ms, capped at 60 s): on a saturated
//!   stream it is mostly the standing queue of our own data, and its
//!   variance is the queue's (a drain probe's 5 ms samples among 150 ms
//!   loaded ones gave 4·rttvar ≈ 200 ms);
//! * the *clean* timeout, `Liveness::clean` over the clean samples only
//!   (`Measured::is_clean`: what was ahead of them explains at most a
//!   quarter), `srtt + 4·rttvar`: the path and its jitter without the
//!   queue.
//!
//! Then, with `behind` the wait ahead of the probe's answer (below):
//!
//! 1. awaiting for `min(loaded RTO, max(clean, 100 ms))` with nothing
//!    heard and no probe out: a probe goes out (a false one costs a
//!    ping). Not while a keep-alive or drain-probe ping is out, until that
//!    ping is overdue by rule 2: the path meter times one ping at a time,
//!    and a probe beside a drain probe's ping would take its sample;
//! 2. the probe handed to the transport `min(loaded RTO + behind,
//!    max(clean + clean srtt + behind, loaded srtt + rttvar, 100 ms))` ago
//!    (one more clean round trip: the path delay may have doubled since
//!    the clean samples; the loaded round trip: it may have risen unseen
//!    behind our queue, issue 17), the silence at least rule 1's timeout,
//!    and still nothing heard: the stream is *suspect*
//!    (`Event::StreamSuspect`). A probe counts until it is answered,
//!    whenever it left: the peer answers at once on an ordered transport,
//!    so it is due by its own timeout whatever was heard after it, and a
//!    second one would only wait behind the same queue. `behind` is the time
//!    our own unconfirmed output ahead of the probe takes to drain at the
//!    measured delivery rate (`PathMeter::queueing_ahead`: a saturated
//!    stream's probe waits behind its queue; a receiver's credits alone
//!    are no queue) plus the peer's data queued
//!    ahead of its answer (`peer_queue`). Unconfirmed is not unreceived:
//!    the peer credits a quarter window at a time, so up to that much of
//!    each session's output beyond its newest credit may have arrived,
//!    and of that, what the path delivered at our measured rate since the
//!    newest confirmation came back is left out (`uncredited`; simulator,
//!    5 ms and 20 Mbit/s with 104 ms of queue: 287 -> 254 ms). A path that
//!    confirms more of our output while the probe is out drains the queue
//!    ahead of it: the suspicion then waits for what is still ahead, with
//!    the same margins, from that confirmation (`PingOut::progress`), so a
//!    probe timed short on a healthy, saturated stream is not called
//!    unanswered while the queue ahead of it moves (the saturated 40 ms /
//!    2 Mbit/s stream gave 4 false suspicions in 600 s without this). So
//!    the queue counts once: the
//!    loaded RTO already holds it, and the earlier rule (the loaded RTO
//!    before the probe and again, plus `behind`, after it) waited for it
//!    three times (simulator, 5 ms and 20 Mbit/s with 104 ms of queue:
//!    data resumed 667 ms after a blackhole, 280 ms with this rule). Until
//!    the stream has a clean sample (a receiver whose every pong waits
//!    behind the peer's bulk data) both timeouts are the loaded ones, as
//!    before; they are never longer than those. If another
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
//! suspected falsely. On a path with jitter the clean `4·rttvar` term
//! keeps the timeouts above the slowest round trip (see `docs/MIGRATION.md`
//! for the simulated ten minutes at 2 s ± 50 %). Clean samples only, not
//! every sample with its estimated queueing taken out: bytes in flight
//! look like queue to that estimate (Little's law), so on the 2 s ± 50 %
//! bulk path such "unqueued" samples averaged 87 ms and gave 30 false
//! suspect events in ten minutes (60 in session 3's variant).
//!
//! **Superseded engines.** When the peer came back with a new incarnation
//! that did not name this one as gone (`handle_superseded` with
//! `Supersession::Presumed`: it may be a twin), the old incarnation's
//! streams are probed at once (`must_answer`); one that stays silent for an
//! RTO after its probe belonged to the process that is gone and is closed
//! at once instead of becoming suspect (also when it was suspect already),
//! so its sessions end about one RTO after the new handshake. A new
//! incarnation that named this one (`Supersession::Announced`) ends it
//! without a probe (`lifecycle.rs`).
//!
//! **Timers.** Each stream keeps the earliest deadline it has in the
//! engine's timer table (`armed`); a new deadline is inserted only when it
//! is earlier, so a busy stream costs about one timer entry per RTO, not
//! one per record.

use std::time::Duration;

use rand_core::RngCore;

use super::sessions::SessionTable;
use super::PeerEngine;
use crate::event::{Event, StreamCloseReason};
use crate::frame::Frame;
use crate::path::{drain_time, WindowedMax, WindowedMin, MIN_RATE};
use crate::stream::{Rtt, RTO_CAP, RTO_FLOOR};
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
    /// How long the answer can wait behind queued bytes: our own output
    /// handed over before it and not yet confirmed by the peer, drained at
    /// our measured delivery rate (`PathMeter::queueing_ahead`), plus the
    /// peer's data we granted and it may have queued ahead of its answer
    /// (`PeerEngine::peer_queue`). The answer cannot come sooner, so the
    /// suspicion waits that much longer.
    pub behind: Duration,
    /// The part of `behind` that is the peer's data (`peer_queue`).
    pub peer: Duration,
    /// Output position just after the record that carried it: its answer
    /// confirms everything before.
    pub pos: u64,
    /// The newest confirmation of our output ahead of it heard while it
    /// is out: when, the position confirmed, and how long what is still
    /// ahead of it takes from then (`PeerEngine::settle_silence`). A path
    /// that confirms progress towards the probe is draining the queue
    /// ahead of it, so the suspicion waits for the rest from then on.
    pub progress: Option<(Timestamp, u64, Duration)>,
}

impl PingOut {
    pub(crate) fn new(nonce: u64, now: Timestamp) -> PingOut {
        PingOut {
            nonce,
            queued: now,
            sent: None,
            behind: Duration::ZERO,
            peer: Duration::ZERO,
            pos: u64::MAX,
            progress: None,
        }
    }

    /// When it left, or was queued if it has not left yet.
    fn since(&self) -> Timestamp {
        self.sent.unwrap_or(self.queued)
    }
}

/// What a silence waits for next (`Liveness::due`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// A probe goes out then.
    Probe(Timestamp),
    /// The unanswered probe makes the stream suspect then.
    Suspect(Timestamp),
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
    /// The clean samples alone (our own and the peer's traffic ahead of
    /// them explains at most a quarter: `Measured::is_clean`): the path's
    /// round trip and its jitter without the queue. The probe timeouts use
    /// it with the queue ahead of the probe added once (`timeouts`).
    pub clean: Rtt,
    /// The smallest of the samples `rtt` took in the last
    /// [`TUNE_RTT_WINDOW`](crate::window::TUNE_RTT_WINDOW) (BBR's min-RTT
    /// filter): the round trip that tunes the receive windows of the
    /// sessions whose data arrives here (`PeerEngine::tuning_rtt`). Unlike
    /// `rtt.min`, the smallest sample ever, it follows a path whose delay
    /// rose for good (a reroute) once the old minimum ages out.
    tune_min: WindowedMin,
    /// Its value as of the last sample; zero before the first.
    pub tune_rtt: Duration,
    /// The keep-alive (or first) ping in flight. One at a time: the
    /// transport is reliable and ordered, so every ping is answered in
    /// turn, and a second one would only measure the same queue.
    pub ping: Option<PingOut>,
    /// The latest probe (a ping sent because the stream went silent).
    pub probe: Option<PingOut>,
    /// The probe a newer one replaced while it was out: its answer still
    /// confirms what was sent before it.
    pub stale: Option<PingOut>,
    /// Output position the peer confirmed by answering a ping.
    pub confirmed: u64,
    /// When session data of the peer last arrived on the stream.
    pub data_in_at: Option<Timestamp>,
    /// Incoming byte rate: bytes received since `rx_mark`, measured over
    /// intervals of at least [`RX_RATE_INTERVAL`], best of the last
    /// [`RX_RATE_WINDOW`].
    rx_rate: WindowedMax,
    rx_mark: (Timestamp, u64),
    /// When the next keep-alive ping is due.
    pub next_ping: Timestamp,
    /// Last authenticated record from the peer.
    pub last_rx: Timestamp,
    /// Since when this side waits for the peer on this stream with nothing
    /// heard: set when a record that asks for something is handed over and
    /// nothing was awaited, restarted by every authenticated record while
    /// something is still owed (`owed`), cleared when nothing is.
    pub awaiting_since: Option<Timestamp>,
    /// Output position (`PathMeter::position`) just after the last record
    /// that asked for something: owed until the peer confirms it.
    pub asked_upto: u64,
    /// When the stream became suspect.
    pub suspect_since: Option<Timestamp>,
    /// The peer came back with a new incarnation and this stream was
    /// probed for it (`probe_all`): an unanswered probe closes it even if
    /// it was suspect already (a stream otherwise turns suspect once).
    pub must_answer: bool,
    /// Earliest liveness timer entry known to be pending for this stream.
    armed: Timestamp,
}

impl Liveness {
    /// A stream that just came up, with its first ping (`nonce`) queued.
    pub fn new(now: Timestamp, nonce: u64, keepalive: Duration) -> Liveness {
        Liveness {
            rtt: Rtt::default(),
            silence: Rtt::default(),
            clean: Rtt::default(),
            tune_min: WindowedMin::default(),
            tune_rtt: Duration::ZERO,
            ping: Some(PingOut::new(nonce, now)),
            probe: None,
            stale: None,
            confirmed: 0,
            data_in_at: None,
            rx_rate: WindowedMax::default(),
            rx_mark: (now, 0),
            next_ping: now + keepalive,
            last_rx: now,
            awaiting_since: None,
            asked_upto: 0,
            suspect_since: None,
            must_answer: false,
            armed: Timestamp::MAX,
        }
    }

    /// Feeds a sample that `rtt` took at `now` to the tuning minimum.
    pub fn sample_tune_rtt(&mut self, now: Timestamp, r: Duration) {
        let window = crate::window::TUNE_RTT_WINDOW;
        let nanos = u64::try_from(r.as_nanos()).unwrap_or(u64::MAX);
        self.tune_min.update(now, nanos, window);
        // `update` keeps the bucket it just fed, so the filter is never
        // empty here; `r` is the fallback all the same.
        let min = self.tune_min.get(now, window).unwrap_or(nanos);
        self.tune_rtt = Duration::from_nanos(min);
    }

    /// Whether an unanswered probe still has an effect: the stream turns
    /// suspect (once), or, probed for a superseded engine, is closed.
    fn may_turn_suspect(&self) -> bool {
        self.suspect_since.is_none() || self.must_answer
    }

    /// Whether the peer owes this side something on this stream: an answer
    /// to a ping or probe that left, or the confirmation of output that
    /// asked for one (`delivered`: the position the peer confirmed).
    fn owed(&self, delivered: u64) -> bool {
        let left = |p: &Option<PingOut>| p.is_some_and(|p| p.sent.is_some());
        left(&self.ping) || left(&self.probe) || self.asked_upto > delivered.max(self.confirmed)
    }

    /// The incoming byte rate measured on the stream (none before a whole
    /// interval of input).
    pub fn rx_rate(&self, now: Timestamp) -> Option<u64> {
        self.rx_rate.get(now, RX_RATE_WINDOW)
    }

    /// Ciphertext arrived on the stream at `now` (perhaps only part of a
    /// record): the path delivers, so a silence under way starts again.
    /// It does not clear a suspicion nor count as hearing the peer
    /// (`last_rx`): only an authenticated record does that, and bytes that
    /// are not the peer's fail authentication and close the stream.
    /// `bytes_in`: the stream's received total, these bytes included.
    pub fn on_bytes(&mut self, now: Timestamp, bytes_in: u64) {
        let (at, mark) = self.rx_mark;
        let interval = now.saturating_duration_since(at);
        if interval >= RX_RATE_INTERVAL {
            let ns = u64::try_from(interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
            let rate = u128::from(bytes_in.saturating_sub(mark)) * 1_000_000_000 / u128::from(ns);
            let rate = u64::try_from(rate).unwrap_or(u64::MAX);
            self.rx_rate.update(now, rate, RX_RATE_WINDOW);
            self.rx_mark = (now, bytes_in);
        }
        if self.suspect_since.is_none() {
            if let Some(since) = self.awaiting_since.as_mut() {
                *since = now;
            }
        }
    }

    /// The loaded RTO (over every sample), once the stream has one.
    fn rto(&self) -> Option<Duration> {
        (self.silence.samples > 0).then(|| self.silence.rto(Duration::ZERO))
    }

    /// The two timeouts of a silence, once the stream has an RTT sample:
    /// how long nothing heard sends a probe, and how long after the probe
    /// left, `behind` being what waits ahead of its answer, the stream
    /// turns suspect (see the module documentation).
    fn timeouts(&self, behind: Duration) -> Option<(Duration, Duration)> {
        let loaded = self.rto()?;
        if self.clean.samples == 0 {
            return Some((loaded, loaded + behind));
        }
        let clean = self.clean.srtt + self.clean.rttvar * 4;
        let floored = |d: Duration| d.clamp(RTO_FLOOR, RTO_CAP);
        // The probe's answer may take a path delay that doubled since the
        // clean samples (a route change, or a rise hidden behind our
        // queue: issue 17), or the loaded round trip: it is not late
        // before either.
        let answer =
            (clean + self.clean.srtt + behind).max(self.silence.srtt + self.silence.rttvar);
        Some((
            floored(clean).min(loaded),
            floored(answer).min(loaded + behind),
        ))
    }

    /// What the silence under way waits for, once the stream has an RTT
    /// sample: the moment a probe goes out, or, while a probe is
    /// unanswered, the moment the stream turns suspect. An unanswered probe
    /// counts whenever it left (also before the records heard since):
    /// the peer answers a Ping at once and the transport is ordered, so it
    /// is due by its own timeout whatever was heard after it, and a new
    /// probe while it is out would only wait behind the same queue (and
    /// replace the ping the path meter is timing). It makes the stream
    /// suspect once it is overdue *and* the silence has lasted a probe
    /// timeout.
    fn due(&self) -> Option<Due> {
        let since = self.awaiting_since?;
        let (probe_after, _) = self.timeouts(Duration::ZERO)?;
        let silent = since + probe_after;
        Some(match self.probe {
            // A ping out (keep-alive, drain probe): a probe beside it
            // would take its place in the path meter (a drain probe would
            // lose its sample), so it waits until that ping is overdue.
            None => match self.ping.filter(|p| p.sent.is_some()) {
                Some(p) => {
                    let (_, overdue) = self.timeouts(p.behind)?;
                    Due::Probe(silent.max(p.since() + overdue))
                }
                None => Due::Probe(silent),
            },
            Some(p) => {
                let (_, suspect_after) = self.timeouts(p.behind)?;
                let mut at = silent.max(p.since() + suspect_after);
                if let Some((heard, _, rest)) = p.progress {
                    let (_, after) = self.timeouts(rest)?;
                    at = at.max(heard + after);
                }
                Due::Suspect(at)
            }
        })
    }

    /// The next moment something is due: a keep-alive ping, a probe, the
    /// suspicion check, death, or the end of a shutdown's flush.
    fn next_deadline(&self, dead: Duration, leaving: Option<Timestamp>) -> Timestamp {
        let mut next = self.next_ping.min(self.last_rx + dead);
        if let Some(d) = leaving {
            next = next.min(d);
        }
        match self.due() {
            Some(Due::Probe(at)) => next = next.min(at),
            Some(Due::Suspect(at)) if self.may_turn_suspect() => next = next.min(at),
            _ => {}
        }
        next
    }

    /// A Ping with `nonce` was just built into a record.
    /// `behind`: the drain time of our unconfirmed output ahead of it (the
    /// peer's queue is added when the record is complete: `on_ping_record`).
    pub fn on_ping_sent(&mut self, nonce: u64, now: Timestamp, behind: Duration) {
        for p in [&mut self.ping, &mut self.probe].into_iter().flatten() {
            if p.nonce == nonce && p.sent.is_none() {
                p.sent = Some(now);
                p.behind = behind;
            }
        }
    }

    /// The record carrying ping `nonce` ended at output position `pos`;
    /// the peer's data queued ahead of its answer drains in `peer`.
    fn on_ping_record(&mut self, nonce: u64, pos: u64, peer: Duration) {
        for p in [&mut self.ping, &mut self.probe].into_iter().flatten() {
            if p.nonce == nonce && p.pos == u64::MAX {
                p.pos = pos;
                p.behind += peer;
                p.peer = peer;
            }
        }
    }

    /// A pong with `nonce` arrived: the round trip of the ping it answers,
    /// if it answers one of ours.
    pub fn take_pong(&mut self, nonce: u64, now: Timestamp) -> Option<Duration> {
        for slot in [&mut self.ping, &mut self.probe, &mut self.stale] {
            if let Some(p) = slot.filter(|p| p.nonce == nonce) {
                *slot = None;
                if p.pos != u64::MAX {
                    self.confirmed = self.confirmed.max(p.pos);
                }
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

/// The incoming rate is measured over intervals at least this long: a
/// transport hands bytes over in bursts, and a burst read just after the
/// previous one would look like any rate at all.
const RX_RATE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a measured incoming rate is remembered.
const RX_RATE_WINDOW: Duration = Duration::from_secs(10);
/// The peer's data counts as queued ahead of its answers only while it is
/// sending on the stream: session data arrived within this long (or two
/// smoothed round trips, if longer).
const PEER_SENDING: Duration = Duration::from_secs(1);

/// How many of our unconfirmed bytes on `stream` the peer may hold
/// without having credited them yet, so that they are not ahead of a probe
/// sent now: for each session sending on the stream, what it sent beyond
/// the peer's latest credit, up to a quarter of the window the peer granted
/// (a receiver credits as soon as it consumed a quarter window:
/// `RecvBuf::credit_due`). That is the most the peer can hold uncredited,
/// so the rest of our unconfirmed output is the least that can be ahead of
/// the probe; the suspicion's floor, the loaded round trip (`srtt +
/// rttvar` over the credit samples, each of which timed a record through
/// the whole queue), covers a queue this leaves out. Zero for a superseded
/// engine's probes (`superseded`), which are timed as before.
pub(super) fn uncredited(sessions: &SessionTable, stream: StreamId, superseded: bool) -> u64 {
    if superseded {
        return 0;
    }
    sessions
        .iter()
        .filter(|(_, s)| s.tx == Some(stream))
        .map(|(_, s)| {
            let batch = u64::from(s.send.peer_window() / 4);
            s.send.sent_max().saturating_sub(s.send.acked()).min(batch)
        })
        .fold(0u64, u64::saturating_add)
}

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
        if l.suspect_since.take().is_some() {
            self.events.push_back(Event::StreamHealthy { stream });
            self.on_stream_usable(now);
        }
    }

    /// The record heard on `stream` was dispatched: the silence clock
    /// starts again from now if the peer still owes something, and stops
    /// if it owes nothing (a receiver that only granted credit waits for
    /// nothing).
    pub(super) fn settle_silence(&mut self, now: Timestamp, stream: StreamId) {
        let floor = self.queueing_floor();
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        let delivered = st.meter.delivered();
        let l = &mut st.liveness;
        l.awaiting_since = l.owed(delivered).then_some(now);
        if let Some(p) = l.probe.as_mut() {
            let newest = p.progress.map_or(0, |(_, at, _)| at);
            if p.sent.is_some() && delivered > newest && delivered < p.pos {
                let rest = st.meter.drain(now, p.pos - delivered, floor);
                p.progress = Some((now, delivered, rest + p.peer));
            }
        }
        self.start_liveness(stream);
    }

    /// The peer just moved a session's sending onto `stream` (its MigrateTo
    /// marker arrived on another stream): its answers to what we sent there
    /// now wait behind the backlog it queues there, so a silence under way
    /// starts again from now (the earlier probe no longer counts; a new one
    /// goes out one RTO later, and waits for that backlog: `peer_queue`).
    pub(super) fn restart_silence(&mut self, now: Timestamp, stream: StreamId) {
        if let Some(st) = self.streams.get_mut(stream) {
            let l = &mut st.liveness;
            if l.suspect_since.is_none() && l.awaiting_since.is_some() {
                l.awaiting_since = Some(now);
                // Its answer still confirms what went before it, but its
                // timeout did not allow for the backlog.
                if let Some(old) = l.probe.take().filter(|p| p.sent.is_some()) {
                    l.stale = Some(old);
                }
            }
        }
        self.start_liveness(stream);
    }

    /// A record was handed to the driver on `stream`; `asks` unless it held
    /// only pongs. Starts the silence clock and arms the probe timer.
    /// `ping`: the nonce of the ping it carried, if any.
    pub(super) fn after_record_sent(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        asks: bool,
        ping: Option<u64>,
    ) {
        let dead = self.shared.config.dead_timeout;
        let peer = match ping {
            Some(_) => self.peer_queue(now, stream),
            None => Duration::ZERO,
        };
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        if let Some(nonce) = ping {
            let pos = st.meter.position();
            st.liveness.on_ping_record(nonce, pos, peer);
        }
        if asks {
            st.liveness.asked_upto = st.meter.position();
            st.liveness.awaiting_since.get_or_insert(now);
        }
        let next = st.liveness.next_deadline(dead, st.leaving);
        if next < st.liveness.armed {
            self.ensure_liveness_timer(stream, next);
        }
    }

    /// How long the peer's data that may be queued ahead of its answer on
    /// `stream` takes to arrive. While the peer sends session data (on any
    /// stream: a session it moves sends on the new stream before its
    /// marker reaches us on the old one), every byte we granted and have
    /// not received may be queued ahead of its answer, and a transport may
    /// hand that queue over in one burst, so hearing nothing for that long
    /// says nothing about the path. Drained at the incoming rate measured
    /// on the stream (at least 1 Mbit/s). A receiver's ping waits behind
    /// the sender's queue as the sender's waits behind its own
    /// (`PathMeter::queueing_ahead`). The sender of a one-way transfer
    /// receives no data, so its suspicion is not delayed.
    ///
    /// Not for a superseded engine (the peer came back with a new
    /// incarnation): its streams lead to the old process, and one that is
    /// still alive (a twin sharing the key) proves it with every byte it
    /// sends, which restarts the silence; a dead one sends nothing, and
    /// its sessions should end within an RTO of the new handshake.
    pub(super) fn peer_queue(&self, now: Timestamp, stream: StreamId) -> Duration {
        let Some(st) = self.streams.get(stream).filter(|_| !self.superseded) else {
            return Duration::ZERO;
        };
        let recent = PEER_SENDING.max(st.liveness.rtt.srtt * 2);
        let sending = self.streams.iter().any(|o| {
            o.liveness
                .data_in_at
                .is_some_and(|t| now.saturating_duration_since(t) <= recent)
        });
        if !sending {
            return Duration::ZERO;
        }
        let granted: u64 = self
            .sessions
            .iter()
            .map(|(_, s)| s.recv.may_still_arrive())
            .fold(0u64, u64::saturating_add);
        let rate = st.liveness.rx_rate(now).unwrap_or(0).max(MIN_RATE);
        drain_time(granted, rate)
    }

    /// The least delivery rate at which our own queued output is assumed
    /// to drain ahead of a probe (`PathMeter::queueing_ahead`): the
    /// measured rate alone, except for a superseded engine's probes, which
    /// must not wait seconds behind a few bytes of credit (its streams
    /// lead to a process that restarted, or to a live twin that answers
    /// within a round trip).
    pub(super) fn queueing_floor(&self) -> u64 {
        if self.superseded {
            MIN_RATE
        } else {
            0
        }
    }

    /// Queues a probe on `stream` now (a ping with a fresh nonce). Until
    /// the transport takes it, it counts from now and waits for what is
    /// queued ahead of it now: a transport that takes nothing for that long
    /// while nothing arrives (a blackholed path with a full send buffer)
    /// is as silent as one that lost the probe.
    fn queue_probe(&mut self, now: Timestamp, stream: StreamId) {
        let nonce = self.rng.next_u64();
        let peer = self.peer_queue(now, stream);
        let floor = self.queueing_floor();
        let arrived = uncredited(&self.sessions, stream, self.superseded);
        if let Some(st) = self.streams.get_mut(stream) {
            if let Some(old) = st.liveness.probe.filter(|p| p.sent.is_some()) {
                st.liveness.stale = Some(old);
            }
            let mut probe = PingOut::new(nonce, now);
            probe.behind = st.meter.queueing_ahead(now, floor, arrived) + peer;
            st.liveness.probe = Some(probe);
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
                st.liveness.must_answer = true;
            }
            // Its deadline counts from now even if the transport takes
            // nothing (a blackholed path with a full buffer), so it is
            // armed now, not when the record leaves.
            self.start_liveness(id);
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
        let l = &st.liveness;
        let (probe, suspect) = match l.due() {
            Some(Due::Probe(at)) => (now >= at, false),
            Some(Due::Suspect(at)) => (false, l.may_turn_suspect() && now >= at),
            None => (false, false),
        };
        if suspect {
            if let Some(p) = l.probe {
                tracing::debug!(
                    stream = %id,
                    silent_since = ?l.awaiting_since,
                    probe_since = ?p.since(),
                    timeouts = ?l.timeouts(p.behind),
                    rto_loaded = ?l.rto(),
                    srtt_clean = ?l.clean.srtt,
                    rttvar_clean = ?l.clean.rttvar,
                    behind = ?p.behind,
                    progress = ?p.progress,
                    "probe unanswered"
                );
            }
        }
        if probe {
            self.queue_probe(now, id);
        }
        if suspect {
            if let Some(st) = self.streams.get_mut(id) {
                st.liveness.suspect_since.get_or_insert(now);
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
        // The probe is queued at 1150: until the transport takes it, it
        // counts from then.
        l.probe = Some(PingOut::new(9, t(1150)));
        assert_eq!(l.next_deadline(ms(20_000), None), t(1300), "not sent yet");
        // It leaves at 1160.
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

    /// A saturated 5 ms stream: loaded samples of 30 and 150 ms (a
    /// standing queue and the drain probes that empty it), one clean 5 ms
    /// sample.
    fn saturated_5ms() -> Liveness {
        let mut l = Liveness::new(t(0), 1, ms(5000));
        l.ping = None;
        l.clean.sample(ms(5));
        l.silence.sample(ms(5));
        for _ in 0..8 {
            l.silence.sample(ms(150));
            l.silence.sample(ms(30));
        }
        l
    }

    #[test]
    fn behind_a_standing_queue_the_queue_counts_once() {
        let mut l = saturated_5ms();
        let loaded = l.rto().unwrap();
        assert!(loaded > ms(250), "the queue's variance: {loaded:?}");
        // The loaded round trip (srtt + rttvar), which the path delay may
        // have reached unseen: about 100 ms here.
        let path = l.silence.srtt + l.silence.rttvar;
        assert!(path > ms(80) && path < ms(150), "{path:?}");
        l.awaiting_since = Some(t(1000));
        // The probe goes out after the clean timeout (5 ms + 4 × 2.5 ms,
        // floored at 100 ms), not after the loaded RTO.
        assert_eq!(l.timeouts(Duration::ZERO).map(|t| t.0), Some(ms(100)));
        assert_eq!(l.due(), Some(Due::Probe(t(1100))));
        assert_eq!(l.next_deadline(ms(20_000), None), t(1100));
        l.probe = Some(PingOut::new(9, t(1100)));
        // 150 ms of our output ahead of it: suspect once the clean timeout,
        // one more clean round trip and that queue passed (15 + 5 + 150
        // ms), not the loaded RTO plus the queue.
        l.on_ping_sent(9, t(1100), ms(150));
        assert_eq!(l.due(), Some(Due::Suspect(t(1100 + 170))));
        assert_eq!(l.next_deadline(ms(20_000), None), t(1270));
        // A short queue: the loaded round trip (or the 100 ms floor).
        l.probe = Some(PingOut::new(10, t(1100)));
        l.on_ping_sent(10, t(1100), ms(20));
        assert_eq!(l.due(), Some(Due::Suspect(t(1100) + path.max(ms(100)))));
    }

    #[test]
    fn no_probe_goes_out_beside_a_ping_until_that_ping_is_overdue() {
        let mut l = saturated_5ms();
        l.awaiting_since = Some(t(1000));
        // A keep-alive (or drain probe) ping left at 990 behind 150 ms.
        l.ping = Some(PingOut::new(5, t(990)));
        l.on_ping_sent(5, t(990), ms(150));
        assert_eq!(l.due(), Some(Due::Probe(t(990 + 170))));
        // Answered: the silence's own timeout again.
        assert!(l.take_pong(5, t(1050)).is_some());
        assert_eq!(l.due(), Some(Due::Probe(t(1100))));
    }

    #[test]
    fn the_clean_timeouts_are_never_longer_than_the_loaded_ones() {
        // A clean sample of a slow moment (2 s: its first sample's
        // variance makes 6 s) on a stream whose samples are 200 ms.
        let mut l = sampled(200);
        l.clean.sample(ms(2000));
        let loaded = l.rto().unwrap();
        assert_eq!(loaded, ms(600));
        assert_eq!(
            l.timeouts(ms(50)),
            Some((loaded, loaded + ms(50))),
            "capped by the loaded rule"
        );
        // No clean sample: the loaded rule.
        let l = sampled(50);
        assert_eq!(l.timeouts(ms(30)), Some((ms(150), ms(180))));
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
    fn an_unanswered_probe_of_an_earlier_silence_still_counts() {
        let mut l = sampled(50);
        l.probe = Some(PingOut {
            nonce: 3,
            queued: t(100),
            sent: Some(t(100)),
            behind: Duration::ZERO,
            peer: Duration::ZERO,
            pos: 10,
            progress: None,
        });
        // Records were heard after it, and the stream is silent again
        // since 2000: the probe was due at 250, so the stream turns
        // suspect once the silence lasted a probe timeout, with no new
        // probe behind the same queue.
        l.awaiting_since = Some(t(2000));
        assert_eq!(l.due(), Some(Due::Suspect(t(2150))));
        // A probe that left just before the silence is waited for.
        l.probe = Some(PingOut::new(4, t(1990)));
        l.on_ping_sent(4, t(1990), ms(300));
        assert_eq!(l.due(), Some(Due::Suspect(t(1990 + 450))));
        // Answered: the next silence probes again.
        assert!(l.take_pong(4, t(2100)).is_some());
        assert_eq!(l.due(), Some(Due::Probe(t(2150))));
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
    fn bytes_arriving_restart_a_silence_but_do_not_clear_a_suspicion() {
        let mut l = sampled(50);
        l.awaiting_since = Some(t(1000));
        l.on_bytes(t(1100), 500);
        assert_eq!(l.awaiting_since, Some(t(1100)));
        assert_eq!(l.next_deadline(ms(20_000), None), t(1250));
        l.suspect_since = Some(t(1300));
        l.on_bytes(t(1400), 900);
        assert_eq!(l.awaiting_since, Some(t(1100)), "suspect: unchanged");
        assert_eq!(l.suspect_since, Some(t(1300)), "only a record clears it");
    }

    #[test]
    fn nothing_is_owed_once_the_peer_confirmed_what_asked() {
        let mut l = sampled(50);
        assert!(!l.owed(0));
        // A record that asked for something ended at position 300.
        l.asked_upto = 300;
        assert!(l.owed(200));
        assert!(!l.owed(300), "a credit covered it");
        // Or a pong of a ping sent after it: the transport is ordered.
        l.ping = Some(PingOut::new(4, t(10)));
        l.on_ping_sent(4, t(10), Duration::ZERO);
        assert!(l.owed(0), "the ping itself is owed");
        l.on_ping_record(4, 340, Duration::ZERO);
        assert!(l.take_pong(4, t(60)).is_some());
        assert!(!l.owed(0));
        assert_eq!(l.confirmed, 340);
    }

    #[test]
    fn a_replaced_probe_still_confirms_what_went_before_it() {
        let mut l = sampled(50);
        l.asked_upto = 500;
        l.stale = Some(PingOut {
            nonce: 7,
            queued: t(0),
            sent: Some(t(0)),
            behind: Duration::ZERO,
            peer: Duration::ZERO,
            pos: 520,
            progress: None,
        });
        assert!(l.take_pong(7, t(90)).is_some());
        assert!(!l.owed(0));
    }

    #[test]
    fn confirmed_progress_towards_the_probe_waits_for_the_rest_from_then() {
        let mut l = saturated_5ms();
        l.awaiting_since = Some(t(1000));
        l.probe = Some(PingOut::new(9, t(1100)));
        // 40 ms of our output counted ahead of it: due at 1100 + the
        // loaded round trip (the floor).
        l.on_ping_sent(9, t(1100), ms(40));
        l.on_ping_record(9, 500_000, Duration::ZERO);
        let path = l.silence.srtt + l.silence.rttvar;
        assert_eq!(l.due(), Some(Due::Suspect(t(1100) + path)));
        // A credit at 1150 confirms output short of the probe, 150 ms of
        // it still ahead: the path drains towards it, so the rest is
        // waited for from then (15 + 5 + 150 ms).
        l.probe.as_mut().unwrap().progress = Some((t(1150), 100_000, ms(150)));
        assert_eq!(l.due(), Some(Due::Suspect(t(1150 + 170))));
        // Almost nothing left ahead: still the floor, from the progress
        // (the path delivered then).
        l.probe.as_mut().unwrap().progress = Some((t(1150), 490_000, ms(1)));
        assert_eq!(l.due(), Some(Due::Suspect(t(1150) + path)));
    }

    #[test]
    fn the_peer_queue_delays_the_suspicion() {
        let mut l = sampled(50);
        l.awaiting_since = Some(t(1000));
        l.probe = Some(PingOut::new(9, t(1150)));
        l.on_ping_sent(9, t(1150), ms(10));
        // 1 MB granted to the peer, drained at 1 Mbit/s: 8 s.
        l.on_ping_record(9, 100, Duration::from_secs(8));
        assert_eq!(
            l.next_deadline(ms(20_000), None),
            t(5000),
            "keep-alive first"
        );
        assert_eq!(l.probe.map(|p| p.behind), Some(ms(8010)));
    }

    #[test]
    fn the_incoming_rate_is_measured_over_whole_intervals() {
        let mut l = sampled(50);
        l.on_bytes(t(500), 1_000_000);
        assert_eq!(l.rx_rate(t(500)), None, "half an interval");
        l.on_bytes(t(1000), 2_000_000);
        assert_eq!(l.rx_rate(t(1000)), Some(2_000_000));
    }

    #[test]
    fn leaving_and_death_bound_the_deadline() {
        let l = sampled(50);
        assert_eq!(l.next_deadline(ms(20_000), Some(t(300))), t(300));
        assert_eq!(l.next_deadline(ms(1000), None), t(1000));
    }
}
