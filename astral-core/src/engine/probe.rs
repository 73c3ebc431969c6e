//! The drain probe (BBR's ProbeRTT; issue 17): a sender whose carrying
//! stream's path delay went stale under its own standing queue withholds
//! new data on that stream until everything it sent is known delivered,
//! then sends one ping alone, from the empty queue, with the data right
//! behind it. Its clean sample replaces the stale estimate (`path.rs`,
//! "Clean samples and the drain probe").
//!
//! Without it a saturating transfer explains every one of its samples by
//! its own bytes ahead (they always drain in about a round trip), so a
//! carrying path that became three times slower under a 20 Mbit/s
//! transfer kept the session for good.
//!
//! The probe ping leaves in a write of its own (`transmit.rs` stops after
//! its record): a transport or forwarder that took it in one chunk with
//! the data behind it would make it wait for that data (the simulator
//! delivered a ping written in one call with 256 KiB of data 1.05 s late),
//! and an inflated sample would pass for the path's. The data behind it
//! cannot delay it: the transport is ordered.
//!
//! **Confirming a rise.** One sample can be unlucky: delayed by a
//! scheduling hiccup (a 40 ms path read 49 ms on a loaded machine) or by
//! jitter (two pings both read 2.7 s on a 2 s ± 50 % path), and the
//! carrying stream would look slower than an identical idle stream, whose
//! estimate is the minimum of a ping every 250 ms. So after a probe sample
//! raised the estimate, the lowest estimate since the last confirmation
//! stays the trusted one; while the raised value would let another stream
//! win by the policy's gain and the trusted one would not, the stream's
//! path is *unsettled* ([`Candidate::path_settled`]: the policy keeps
//! counting its sustain but moves nothing off the stream) and a confirming
//! probe starts at once: a drain, then [`CONFIRM_PINGS`] pings one after
//! another with the data withheld, whose samples lower the estimate if the
//! first was unlucky (the minimum of three, as every probe took before).
//! The answer to its last ping settles the path. Rises that decide a move
//! are rare (a path that really changed), so the dearer probe is too.
//!
//! **Backing off.** While probes keep finding the estimate unchanged
//! (within a quarter), each waits twice as long as the last: one path
//! window (2 s, or 8 path delays), then 2, then 4 ([`MAX_BACKOFF`]). The
//! short interval returns as soon as a loaded signal moves: the stream's
//! srtt by more than an eighth or its delivery rate by more than a quarter
//! since the last probe started, or the best other usable stream's srtt by
//! more than a quarter (a path that got slower under the standing queue
//! shows in the loaded round trip or the rate: 386 → 495 ms within a
//! second in the simulator's saturated 100 → 300 ms case).
//!
//! Cost: the link idles for about one path delay per probe (from the last
//! queued byte leaving the bottleneck until the drain ping's answer lets
//! the probe ping and the data go), plus a confirming probe's drain and
//! two round trips after a rise; at most once per path window, and only
//! while the peer has another usable stream to move to: the policy is the
//! only reader of the estimate. Counted per stream in
//! `StreamStats::drain_probes` and `drain_withheld`.
//!
//! [`Candidate::path_settled`]: crate::Candidate::path_settled

use std::time::Duration;

use rand_core::RngCore;

use super::liveness::PingOut;
use super::PeerEngine;
use crate::frame::Frame;
use crate::{StreamId, StreamPreference, Timestamp};

/// A probe starts only while at least this much of the stream's output is
/// unconfirmed: the stream carries a load (a receiver's credit and pongs do
/// not).
const LOADED: u64 = 16 * 1024;

/// Drained: at most this much output (control records sent during the
/// drain) is still unconfirmed.
const DRAINED: u64 = 1500;

/// Pings of a confirming probe (after the one of the probe that raised the
/// estimate), one after another on the drained stream.
pub(crate) const CONFIRM_PINGS: u8 = 2;

/// Unchanged probes in a row double the interval up to this many times
/// (one path window, then 2, then 4).
pub(crate) const MAX_BACKOFF: u8 = 2;

/// A probe that has not finished after this many smoothed round trips
/// (at least [`MIN_LIMIT`]) is given up; the next may start a path window
/// after it started.
const LIMIT_SRTTS: u32 = 3;
const MIN_LIMIT: Duration = Duration::from_millis(500);

/// Where a stream's drain probe stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ProbeState {
    /// Data flows.
    #[default]
    Idle,
    /// New data is withheld until everything sent is known delivered.
    Draining,
    /// Drained: probe pings go one after another; `nonce` is the one
    /// queued or out (none while an older ping is still out), `left` how
    /// many follow it. Data resumes behind the last.
    Probing { nonce: Option<u64>, left: u8 },
}

/// The loaded signals when a probe started: a shift re-arms the short
/// interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Signals {
    /// The stream's smoothed RTT (the delay under load).
    pub srtt: Duration,
    /// Its delivery rate, bytes/s.
    pub rate: u64,
    /// The lowest srtt of the peer's other usable streams (zero: none).
    pub other: Duration,
}

impl Signals {
    /// Whether `now` moved away from `self`: srtt by more than an eighth,
    /// the rate or the other streams' best srtt by more than a quarter.
    fn shifted(&self, now: &Signals) -> bool {
        fn off(was: u64, is: u64, frac: u64) -> bool {
            was.abs_diff(is) > was / frac
        }
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        off(ns(self.srtt), ns(now.srtt), 8)
            || off(self.rate, now.rate, 4)
            || off(ns(self.other), ns(now.other), 4)
    }
}

/// A stream's drain probe.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DrainProbe {
    pub state: ProbeState,
    /// When the current or last probe started.
    pub started: Option<Timestamp>,
    /// The last probe ping sent, until its answer (or the probe's limit).
    last_ping: Option<u64>,
    /// The probe under way (or whose last ping is out) confirms a rise.
    confirming: bool,
    /// While probe samples raised the path delay since the last
    /// confirmation: the lowest estimate since then (the trusted one).
    base: Option<Duration>,
    /// The raise is what would let another stream win: the path is
    /// unsettled until a confirming probe answers (set at each tick).
    unsettled: bool,
    /// Probes in a row that found the estimate unchanged (at most
    /// [`MAX_BACKOFF`]).
    unchanged: u8,
    /// The loaded signals when the last probe started.
    signals: Signals,
    /// The path delay is stale and this side cannot refresh it: it carries
    /// no load of its own to drain and no probe is under way (set at each
    /// tick). A receiver whose every pong waits behind the peer's bulk
    /// data holds the estimate it had before the transfer, possibly one
    /// unlucky sample on a jittery path; the policy treats it as unknown
    /// and leaves the decision to the sender, whose probes keep its own
    /// estimate fresh.
    blind: bool,
}

impl DrainProbe {
    /// Whether new session data is held back from the stream.
    pub fn withholds(&self) -> bool {
        self.state != ProbeState::Idle
    }

    /// Whether the path delay is settled: no unconfirmed probe sample is
    /// what would let another stream win.
    pub fn path_settled(&self) -> bool {
        !self.unsettled
    }

    /// Whether the path delay is stale and this side cannot refresh it (a
    /// receiver behind the peer's bulk data): the policy treats it as
    /// unknown.
    pub fn is_blind(&self) -> bool {
        self.blind
    }

    /// How long after the last probe started the next may start: one path
    /// `window`, doubled per unchanged probe, unless the loaded signals
    /// moved since (`now`).
    fn interval(&self, window: Duration, now: &Signals) -> Duration {
        if self.signals.shifted(now) {
            window
        } else {
            window * (1u32 << self.unchanged.min(MAX_BACKOFF))
        }
    }
}

impl PeerEngine {
    /// At a policy tick: gives up probes that took too long and, if
    /// `start` (the peer has another usable stream and sessions), starts
    /// one on each loaded carrying stream whose path delay is stale, or at
    /// once on a stream whose path a probe sample raised (the confirming
    /// probe).
    pub(super) fn tick_drain_probes(&mut self, now: Timestamp, start: bool) {
        // (id, srtt, slowest recent round trip as the policy judges a
        // candidate, preference).
        #[allow(clippy::type_complexity)]
        let usable: smallvec::SmallVec<
            [(StreamId, Duration, Duration, StreamPreference); 4],
        > = self
            .streams
            .iter()
            .filter(|s| s.is_usable() && s.liveness.rtt.samples > 0)
            .map(|s| {
                let r = &s.liveness.rtt;
                (s.id, r.srtt, r.srtt.max(r.peak), s.preference())
            })
            .collect();
        // The policy's threshold, in parts per million (as `RttPolicy`).
        let keep =
            ((1.0 - self.shared.config.migrate_rtt_gain.clamp(0.0, 1.0)) * 1e6).round() as u128;
        let mut ping = Vec::new();
        for st in self.streams.iter_mut() {
            st.probe.blind = st.meter.is_stale(now)
                && st.meter.unconfirmed() < LOADED
                && !st.probe.withholds()
                && st.probe.last_ping.is_none();
            let window = st.meter.path_window(now);
            let since = st.probe.started.map(|at| now.saturating_duration_since(at));
            let limit = (st.liveness.rtt.srtt * LIMIT_SRTTS).max(MIN_LIMIT);
            if st.probe.withholds() {
                if !st.is_usable() || since.is_some_and(|d| d >= limit) {
                    st.end_probe(now);
                    st.probe.last_ping = None;
                    st.probe.settle();
                }
                continue;
            }
            if st.probe.last_ping.is_some() && (!st.is_usable() || since.is_none_or(|d| d >= limit))
            {
                // The last ping went unanswered: a path that slow settles
                // as it is.
                st.probe.last_ping = None;
                st.probe.settle();
            }
            if !start || !st.is_usable() || st.senders == 0 {
                // Nothing to confirm it for.
                st.probe.base = None;
            }
            // A rise needs confirming only if it is what would let another
            // stream of the same or a lower tier win by the policy's gain:
            // at the trusted estimate none would. (A path that looks worse
            // only by a jittery sample that changes nothing costs no second
            // drain; one whose rivals are far better anyway is left alone.)
            let pref = st.preference();
            let id = st.id;
            let matters = |path: Duration| {
                let ours = (path + pref.penalty).as_nanos();
                usable.iter().any(|(other, _, slowest, p)| {
                    *other != id
                        && p.tier <= pref.tier
                        && (*slowest + p.penalty).as_nanos() * 1_000_000 <= ours * keep
                })
            };
            let path = st.liveness.rtt.path;
            if st.probe.base.is_some_and(|b| path <= b) {
                st.probe.base = None;
            }
            st.probe.unsettled = st.probe.base.is_some_and(|b| matters(path) && !matters(b));
            let signals = Signals {
                srtt: st.liveness.rtt.srtt,
                rate: st.meter.delivery_rate(),
                other: usable
                    .iter()
                    .filter(|(id, ..)| *id != st.id)
                    .map(|(_, srtt, ..)| *srtt)
                    .min()
                    .unwrap_or_default(),
            };
            let confirm =
                st.probe.unsettled && !st.probe.confirming && st.probe.last_ping.is_none();
            let due = start
                && st.is_usable()
                && st.senders > 0
                && st.meter.unconfirmed() >= LOADED
                && st.meter.is_stale(now)
                && since.is_none_or(|d| d >= st.probe.interval(window, &signals));
            if confirm || due {
                if !confirm {
                    if st.probe.signals.shifted(&signals) {
                        st.probe.unchanged = 0;
                    }
                    st.probe.signals = signals;
                }
                st.probe.state = ProbeState::Draining;
                st.probe.started = Some(now);
                st.probe.confirming = confirm;
                st.probe.last_ping = None;
                st.stats.drain_probes += 1;
                st.stats.drain_confirms += u64::from(confirm);
                if st.liveness.ping.is_none() {
                    ping.push(st.id);
                }
            }
        }
        for id in ping {
            self.queue_ping(now, id);
        }
    }

    /// A pong (of `pong`) or a credit arrived on `stream`: a drain under
    /// way may be complete (then the first probe ping is queued), or need
    /// a ping behind the last data to prove it; a probe ping's answer
    /// queues the next.
    pub(super) fn on_probe_progress(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        pong: Option<u64>,
    ) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        let ping_out = st.liveness.ping.is_some();
        let pings = if st.probe.confirming {
            CONFIRM_PINGS
        } else {
            1
        };
        let next = match st.probe.state {
            ProbeState::Idle => return,
            ProbeState::Draining if st.meter.unconfirmed() > DRAINED => {
                if !ping_out {
                    self.queue_ping(now, stream);
                }
                return;
            }
            ProbeState::Draining => pings,
            ProbeState::Probing { nonce: None, left } => left + 1,
            ProbeState::Probing {
                nonce: Some(n),
                left,
            } if pong == Some(n) && left > 0 => left,
            ProbeState::Probing { .. } => return,
        };
        // Drained, or the previous probe ping answered: the next one. A
        // ping still out was sent behind a queue: its answer comes first.
        st.probe.state = ProbeState::Probing {
            nonce: None,
            left: next - 1,
        };
        if !ping_out {
            let nonce = self.queue_ping(now, stream);
            if let Some(st) = self.streams.get_mut(stream) {
                st.probe.state = ProbeState::Probing {
                    nonce,
                    left: next - 1,
                };
            }
        }
    }

    /// Queues a ping on `stream` (none may be out); returns its nonce.
    fn queue_ping(&mut self, now: Timestamp, stream: StreamId) -> Option<u64> {
        let nonce = self.rng.next_u64();
        let st = self.streams.get_mut(stream)?;
        st.liveness.ping = Some(PingOut::new(nonce, now));
        st.tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
        Some(nonce)
    }
}

impl DrainProbe {
    /// A confirming probe answered, or gave up: the path is settled.
    fn settle(&mut self) {
        if self.confirming {
            self.confirming = false;
            self.base = None;
            self.unsettled = false;
        }
    }
}

impl super::streams::PeerStream {
    /// Whether `nonce` is a probe ping out now.
    pub(super) fn is_probe_ping(&self, nonce: u64) -> bool {
        self.probe.last_ping == Some(nonce)
            || matches!(self.probe.state, ProbeState::Probing { nonce: Some(n), .. } if n == nonce)
    }

    /// Whether a probe ping is queued: the record that carries it leaves
    /// alone (`transmit.rs`).
    pub(super) fn probe_ping_due(&self) -> bool {
        matches!(self.probe.state, ProbeState::Probing { nonce: Some(n), .. }
            if self.tx.ctrl.iter().any(|f| matches!(f, Frame::Ping { nonce, pong: false } if *nonce == n)))
    }

    /// A record carrying the ping `nonce` was built: if it is the last
    /// probe ping, data resumes behind it.
    pub(super) fn on_probe_ping_sent(&mut self, now: Timestamp, nonce: u64) {
        if self.probe.state
            == (ProbeState::Probing {
                nonce: Some(nonce),
                left: 0,
            })
        {
            self.probe.last_ping = Some(nonce);
            self.end_probe(now);
        }
    }

    /// The sample of the probe ping `nonce` was folded; `before` is the
    /// path delay it found (zero: unknown). A probe's sample that raised
    /// it leaves the estimate unconfirmed (the lowest since the last
    /// confirmation is kept; `tick_drain_probes` decides whether the rise
    /// matters); one within a quarter backs the interval off. The answer
    /// to a confirming probe's last ping settles the path.
    pub(super) fn on_probe_sample(&mut self, now: Timestamp, nonce: u64, before: Duration) {
        let after = self.liveness.rtt.path;
        let last = self.probe.last_ping == Some(nonce);
        if self.probe.confirming {
            if last {
                self.probe.last_ping = None;
                self.probe.settle();
            }
            return;
        }
        if last {
            self.probe.last_ping = None;
        }
        let refreshed = !self.meter.is_stale(now);
        if !before.is_zero() && after > before {
            self.probe.base = Some(self.probe.base.map_or(before, |b| b.min(before)));
        }
        if !before.is_zero() && after > before + before / 4 {
            self.probe.unchanged = 0;
        } else if refreshed && !before.is_zero() && after + before / 4 >= before {
            self.probe.unchanged = (self.probe.unchanged + 1).min(MAX_BACKOFF);
        } else {
            self.probe.unchanged = 0;
        }
    }

    /// Data resumes.
    pub(super) fn end_probe(&mut self, now: Timestamp) {
        if let Some(at) = self.probe.started {
            self.stats.drain_withheld += now.saturating_duration_since(at);
        }
        self.probe.state = ProbeState::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn signals(srtt: u64, rate: u64, other: u64) -> Signals {
        Signals {
            srtt: ms(srtt),
            rate,
            other: ms(other),
        }
    }

    #[test]
    fn unchanged_probes_back_off_and_a_moved_signal_rearms_the_window() {
        let window = ms(2000);
        let base = signals(1000, 250_000, 40);
        let mut p = DrainProbe {
            signals: base,
            ..DrainProbe::default()
        };
        // One window, then two, then four at most.
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(p.interval(window, &base));
            p.unchanged = (p.unchanged + 1).min(MAX_BACKOFF);
        }
        assert_eq!(got, [ms(2000), ms(4000), ms(8000), ms(8000), ms(8000)]);
        // Within the bands: still backed off.
        for quiet in [
            signals(1125, 250_000, 40),
            signals(875, 250_000, 40),
            signals(1000, 312_500, 40),
            signals(1000, 187_500, 40),
            signals(1000, 250_000, 50),
            signals(1000, 250_000, 30),
        ] {
            assert_eq!(p.interval(window, &quiet), ms(8000), "{quiet:?}");
        }
        // The loaded round trip by more than an eighth, the rate or the
        // best other stream by more than a quarter, either way: one window.
        for moved in [
            signals(1126, 250_000, 40),
            signals(874, 250_000, 40),
            signals(1000, 312_501, 40),
            signals(1000, 187_499, 40),
            signals(1000, 250_000, 51),
            signals(1000, 250_000, 29),
        ] {
            assert_eq!(p.interval(window, &moved), window, "{moved:?}");
        }
    }

    #[test]
    fn a_confirming_probe_settles_the_path_and_nothing_else_does() {
        let mut p = DrainProbe {
            base: Some(ms(40)),
            unsettled: true,
            ..DrainProbe::default()
        };
        assert!(!p.path_settled());
        // A first probe giving up (not a confirmation) leaves it unsettled.
        p.settle();
        assert!(!p.path_settled());
        p.confirming = true;
        p.settle();
        assert!(p.path_settled());
        assert!(!p.confirming);
        assert_eq!(p.base, None);
    }
}
