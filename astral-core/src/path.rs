//! Path measurement of one stream: round-trip samples from credited data
//! and from pings, the path delay kept apart from the queueing that the
//! session's own traffic causes, and delivery rates.
//!
//! # Samples
//!
//! Every record that carries new session data is logged when it leaves: its
//! time, its position in the stream's output, and the stream's counters at
//! that moment (a fixed ring per stream: nothing is allocated per record).
//! A cumulative Credit of that session that covers the record's last byte
//! acknowledges it: one sample, so a busy stream yields a sample per credit
//! (several per round trip). The ping in flight is logged the same way when
//! it leaves the engine. Retransmitted bytes are never logged (Karn), and a
//! credit only matches records sent on the stream it arrived on.
//!
//! # Path delay and self-induced queueing
//!
//! A sample measures the path *and* whatever waited ahead of the probe: our
//! own bytes queued at the bottleneck (a saturating transfer keeps a
//! standing queue there), the peer's bytes ahead of its answer, and jitter.
//! A plain windowed minimum forgets the idle delay after one window of
//! saturation, and the loaded stream then always looks slower than an idle
//! one (issue 17: sessions traded between two identical paths every 25 s).
//!
//! So each sample also carries a bound on how much of it the session's own
//! traffic can explain: the bytes of ours that were ahead of the probe and
//! not yet known delivered, drained at the best delivery rate seen (at least
//! 1 Mbit/s), plus the peer's bytes that arrived during the round trip,
//! drained at 1 Mbit/s (bytes read in bursts have no trustworthy rate). A
//! sample whose excess over the current path delay fits in that bound says
//! nothing new about the path: it *holds* the estimate (it is fed
//! to the window as the current estimate, so saturation never ages it out).
//! A sample that the session's traffic cannot explain is evidence that the
//! path itself changed: it goes into the window as it is, and once a whole
//! window of such samples has passed, the path delay has risen. Lower
//! samples always lower it at once. The first estimate comes only from a
//! sample that traffic explains at most half of: a side whose every probe
//! waits behind the peer's bulk data (the receiver of a transfer) leaves
//! the delay unknown rather than start it at the queue, and the policy
//! never moves a session off a stream whose delay it does not know (the
//! sender, which measures it, does).
//!
//! # Clean samples and the drain probe
//!
//! Holding has a blind spot: a rise of the carrying path's delay that stays
//! below the session's own standing queue. In a saturating, ack-clocked
//! transfer the bytes not yet known delivered always drain in about one
//! round trip (Little's law), so every loaded sample is explained whatever
//! the path delay is (issue 17: a 100 ms path that became 300 ms under a
//! 20 Mbit/s transfer kept the session for good). Only a sample with
//! nothing of ours ahead of it tells the path delay again. So a sample that
//! our traffic explains at most a quarter of is *clean*, and the estimate
//! is *stale* once a path window passed without a clean sample that agrees
//! with it (within a quarter; [`PathMeter::is_stale`]). A sender whose
//! loaded carrying stream went stale drains its own queue and sends probe
//! pings (BBR's ProbeRTT; `engine/probe.rs`): the first probe sample
//! replaces the estimate, higher or lower (BBR's min-RTT expiry), capped
//! at the loaded srtt; later ones lower it as usual. No other sample
//! replaces it: a lone clean sample may be a scheduling hiccup.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Timestamp;

/// Records remembered per stream for credit samples. A credit usually
/// covers several records; only the newest it covers yields a sample, so a
/// few dozen cover more than a window in flight.
const LOG_CAPACITY: usize = 32;

/// The best value of a time series over a sliding window, kept as the best
/// of each quarter of the window: O(1) memory, and a value stays between
/// three quarters of a window and a whole window after it was fed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windowed<const MAX: bool> {
    /// Quarter-window buckets, oldest first: (start, best value in nanos or
    /// bytes per second).
    buckets: [(Timestamp, u64); 5],
    len: usize,
}

/// Windowed minimum.
pub(crate) type WindowedMin = Windowed<false>;
/// Windowed maximum.
pub(crate) type WindowedMax = Windowed<true>;

impl<const MAX: bool> Default for Windowed<MAX> {
    fn default() -> Self {
        Windowed {
            buckets: [(Timestamp::ZERO, 0); 5],
            len: 0,
        }
    }
}

impl<const MAX: bool> Windowed<MAX> {
    fn better(a: u64, b: u64) -> bool {
        if MAX {
            a > b
        } else {
            a < b
        }
    }

    fn expire(&mut self, now: Timestamp, window: Duration) {
        let mut drop = 0;
        while drop < self.len && now.saturating_duration_since(self.buckets[drop].0) >= window {
            drop += 1;
        }
        if drop > 0 {
            self.buckets.copy_within(drop..self.len, 0);
            self.len -= drop;
        }
    }

    /// Feeds `value` observed at `now`.
    pub fn update(&mut self, now: Timestamp, value: u64, window: Duration) {
        self.expire(now, window);
        let quarter = window / 4;
        if self.len > 0 {
            let last = &mut self.buckets[self.len - 1];
            if now.saturating_duration_since(last.0) < quarter {
                if Self::better(value, last.1) {
                    last.1 = value;
                }
                return;
            }
        }
        if self.len == self.buckets.len() {
            // A quarter or more passed since every bucket started: the
            // oldest is at least a whole window old by now.
            self.buckets.copy_within(1.., 0);
            self.len -= 1;
        }
        self.buckets[self.len] = (now, value);
        self.len += 1;
    }

    /// The best value fed within the last `window` (none if nothing was).
    pub fn get(&self, now: Timestamp, window: Duration) -> Option<u64> {
        self.buckets[..self.len]
            .iter()
            .filter(|(start, _)| now.saturating_duration_since(*start) < window)
            .map(|(_, v)| *v)
            .reduce(|a, b| if Self::better(b, a) { b } else { a })
    }
}

/// The state of the stream when a probe (a data record or a ping) left.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Timestamp,
    /// Output position just after the probe's record.
    pos: u64,
    /// Output ahead of the record not yet known to have arrived.
    ahead: u64,
    /// The probe's own record: the credit covering its last byte comes
    /// only after all of it crossed the bottleneck (a 64 KiB record is
    /// 65 ms at 8 Mbit/s), so it queues like the bytes ahead.
    len: u64,
    /// Output position known to have arrived, and since when.
    delivered: u64,
    delivered_at: Timestamp,
    /// When the probe that proved `delivered` left.
    delivered_sent: Timestamp,
    /// Bytes received on the stream so far.
    rx: u64,
}

/// A logged data record: the session (wire id) and the offset one past its
/// last new byte in the record.
#[derive(Clone, Copy, Debug)]
struct Sent {
    session: u64,
    end: u64,
    mark: Mark,
}

/// One round-trip sample with the part of it the session's own traffic
/// could explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Measured {
    /// The round trip.
    pub rtt: Duration,
    /// Upper bound of the queueing our own and the peer's bytes ahead of
    /// the probe, and the probe's own record, can have caused.
    pub queueing: Duration,
    /// The part of `queueing` that is the probe's own record.
    pub own: Duration,
}

impl Measured {
    /// Whether the traffic ahead of the probe explains at most a quarter
    /// of the sample: it measured the path, not a queue (see the module
    /// documentation).
    pub fn is_clean(&self) -> bool {
        self.queueing <= self.rtt / 4
    }
}

/// Path measurement of one stream (see the module documentation).
#[derive(Debug)]
pub(crate) struct PathMeter {
    log: VecDeque<Sent>,
    /// The keep-alive or probe ping in flight, once it left.
    ping: Option<(u64, Mark)>,
    /// Ciphertext bytes handed to the transport.
    pos: u64,
    /// Output position known to have arrived at the peer (a pong or a
    /// credit covering a record proves everything before it arrived: the
    /// transport is ordered), and when that was learnt.
    delivered: u64,
    delivered_at: Timestamp,
    /// Output position just after the last record that carried session
    /// data (new or resent): output beyond it is control alone (credits,
    /// pongs), which forms no queue of its own.
    data_end: u64,
    /// When the probe that proved `delivered` left.
    delivered_sent: Timestamp,
    /// Delivery rate of our output, bytes/s: the windowed maximum of
    /// `fwd_avg`.
    fwd_rate: WindowedMax,
    /// Moving average (gain 1/8) of the per-sample delivery rates: a
    /// single sample inflated by a burst (buffers filling at loopback
    /// speed, acknowledgements bunched) must not set the drain rate for a
    /// whole rate window (issue 17: one 1.26 MB/s sample on a 1 MB/s path
    /// made every bound 20 % short).
    fwd_avg: u64,
    /// The path delay filter, nanoseconds.
    path: WindowedMin,
    /// The highest round trip of the last path window, nanoseconds: how
    /// slow the stream can look within its own spread (see
    /// [`PathMeter::peak`]).
    peak: WindowedMax,
    has_path: bool,
    /// When the last clean sample was folded (see the module docs).
    clean_at: Option<Timestamp>,
    /// Shortest window of the path delay filter.
    window: Duration,
}

/// Rates are remembered for this many path windows (at least
/// [`RATE_WINDOW_MIN`]): longer than the path window, so that when a
/// window-limited transfer slows down because its path got slower, the
/// earlier, faster rate still says that the longer round trips are not
/// queueing of ours.
const RATE_WINDOWS: u32 = 4;
const RATE_WINDOW_MIN: Duration = Duration::from_secs(10);

/// The slowest capacity assumed when bytes ahead of a probe are turned into
/// queueing (1 Mbit/s): a path slower than this with a standing queue of
/// ours can look slower than it is.
pub(crate) const MIN_RATE: u64 = 125_000;

/// The path window grows with the path: at least this many round trips.
const WINDOW_RTTS: u32 = 8;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Bytes per second of `bytes` over `d` (0 for an empty interval).
fn rate(bytes: u64, d: Duration) -> u64 {
    let ns = d.as_nanos();
    if ns == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
}

/// Bytes moved in `d` at `rate` bytes per second.
fn bytes_in(d: Duration, rate: u64) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// Time to move `bytes` at `rate` bytes per second (0 if the rate is unknown).
pub(crate) fn drain_time(bytes: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let ns = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

impl PathMeter {
    /// A meter for a stream established at `now`; `window` is the shortest
    /// path delay window (`Config::path_window`).
    pub fn new(now: Timestamp, window: Duration) -> Self {
        PathMeter {
            log: VecDeque::with_capacity(LOG_CAPACITY),
            ping: None,
            pos: 0,
            delivered: 0,
            delivered_at: now,
            data_end: 0,
            delivered_sent: now,
            fwd_rate: WindowedMax::default(),
            fwd_avg: 0,
            path: WindowedMin::default(),
            peak: WindowedMax::default(),
            has_path: false,
            clean_at: None,
            window,
        }
    }

    /// The path delay window now: the configured one, or more round trips
    /// of a long path.
    pub(crate) fn path_window(&self, now: Timestamp) -> Duration {
        let path = self.path_delay(now).unwrap_or_default();
        self.window.max(path * WINDOW_RTTS)
    }

    fn rate_window(&self, now: Timestamp) -> Duration {
        (self.path_window(now) * RATE_WINDOWS).max(RATE_WINDOW_MIN)
    }

    /// The path delay estimate (none before the first sample).
    pub fn path_delay(&self, now: Timestamp) -> Option<Duration> {
        if !self.has_path {
            return None;
        }
        // The window is at least `self.window` and grows with the value;
        // the estimate is read with the longest window it could have.
        self.path.get(now, Duration::MAX).map(Duration::from_nanos)
    }

    /// The highest round trip sampled within the last path window (none
    /// before the first sample, or after a window without one). On an idle
    /// stream, pinged every policy interval, it is the top of the path's
    /// own spread: jitter and scheduling noise included. The policy judges
    /// a candidate by it (`RttPolicy`), so that one high draw of the
    /// current stream's path delay, which on a jittery path may be its only
    /// recent clean sample, never passes for a slower path.
    pub fn peak(&self, now: Timestamp) -> Option<Duration> {
        self.peak
            .get(now, self.path_window(now))
            .map(Duration::from_nanos)
    }

    /// Whether the path delay estimate has gone a whole path window
    /// without a clean sample (one our traffic explains at most a quarter
    /// of): under a standing queue of ours it may be out of date, and only
    /// a sample taken with that queue drained tells (the next clean sample
    /// replaces it). False while the delay is unknown.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.has_path
            && self
                .clean_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.path_window(now))
    }

    /// The smoothed delivery rate of our output, bytes/s (0 before one is
    /// measured).
    pub fn delivery_rate(&self) -> u64 {
        self.fwd_avg
    }

    /// Output handed to the transport and not yet known to have arrived.
    pub fn unconfirmed(&self) -> u64 {
        self.pos.saturating_sub(self.delivered)
    }

    /// Ciphertext bytes handed to the transport so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Output position known to have arrived at the peer.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// How long output handed to the transport but not yet known to have
    /// arrived takes to drain at our measured delivery rate, at least
    /// `min_rate`: what a record sent now waits behind before it can be
    /// answered. Zero while no rate is measured and `min_rate` is 0 (a
    /// guess would only delay the suspicion of a dead path). The measured
    /// rate is a path's when our traffic fills it; a side that sends only
    /// credit measures its own traffic, and its few bytes ahead then look
    /// like seconds of queue (callers that must not wait for that pass
    /// [`MIN_RATE`]).
    ///
    /// Zero while everything unconfirmed is control (no record with
    /// session data since the last confirmed position): a receiver's
    /// credits are a trickle that queues nowhere, and until a pong confirms
    /// them (one per keep-alive interval) they add up. Counted, every grant
    /// of a smaller window (more grants) delayed a receiver's suspicion of
    /// a dead stream: 95 ms behind 3 s of credits on a 5 ms path
    /// (`sim_failover`, restart at 5 ms).
    ///
    /// `uncredited`: how many of the unconfirmed bytes the peer may hold
    /// without having confirmed them (credit is batched). Those it
    /// received are not ahead; it can have received at most what the path
    /// delivers, at our measured rate, since the newest confirmation
    /// arrived, so that many (at most `uncredited`) are not counted.
    pub fn queueing_ahead(&self, now: Timestamp, min_rate: u64, uncredited: u64) -> Duration {
        if self.data_end <= self.delivered {
            return Duration::ZERO;
        }
        let rate = self.windowed_rate(now);
        let since = now.saturating_duration_since(self.delivered_at);
        let arrived = uncredited.min(bytes_in(since, rate));
        let ahead = self
            .pos
            .saturating_sub(self.delivered)
            .saturating_sub(arrived);
        drain_time(ahead, rate.max(min_rate))
    }

    /// How long `bytes` of our output take to drain at our measured
    /// delivery rate, at least `min_rate` (zero while neither is known).
    pub fn drain(&self, now: Timestamp, bytes: u64, min_rate: u64) -> Duration {
        drain_time(bytes, self.windowed_rate(now).max(min_rate))
    }

    /// The best delivery rate of the last rate window (0 while unknown).
    fn windowed_rate(&self, now: Timestamp) -> u64 {
        self.fwd_rate.get(now, self.rate_window(now)).unwrap_or(0)
    }

    /// A record of `len` ciphertext bytes left at `now`, when `rx` bytes had
    /// been received on the stream. `data`: the session (wire id) and end
    /// offset of its last new data in the record, if it carried new data;
    /// `ping`: the nonce of the liveness ping it carried, if any.
    pub fn on_record(
        &mut self,
        now: Timestamp,
        len: usize,
        rx: u64,
        data: Option<(u64, u64)>,
        ping: Option<u64>,
    ) {
        let ahead = self.pos.saturating_sub(self.delivered);
        self.pos = self.pos.saturating_add(len as u64);
        let mark = Mark {
            at: now,
            pos: self.pos,
            ahead,
            len: len as u64,
            delivered: self.delivered,
            delivered_at: self.delivered_at,
            delivered_sent: self.delivered_sent,
            rx,
        };
        if let Some((session, end)) = data {
            if self.log.len() == LOG_CAPACITY {
                self.log.pop_front();
            }
            self.log.push_back(Sent { session, end, mark });
        }
        if let Some(nonce) = ping {
            self.ping = Some((nonce, mark));
        }
    }

    /// The record just logged by [`PathMeter::on_record`] carried session
    /// data (new or resent).
    pub fn on_data_record(&mut self) {
        self.data_end = self.pos;
    }

    /// A cumulative credit `consumed` of `session` arrived on this stream at
    /// `now` (`rx`: bytes received so far). Returns the sample of the newest
    /// logged record it covers, and forgets every record of the session it
    /// covers.
    pub fn on_credit(
        &mut self,
        now: Timestamp,
        session: u64,
        consumed: u64,
        rx: u64,
    ) -> Option<Measured> {
        let newest = self
            .log
            .iter()
            .rev()
            .find(|s| s.session == session && s.end <= consumed)
            .map(|s| s.mark)?;
        self.log
            .retain(|s| s.session != session || s.end > consumed);
        Some(self.measure(now, newest, rx))
    }

    /// The pong of `nonce` arrived at `now`. Returns its sample if the ping
    /// was logged when it left.
    pub fn on_pong(&mut self, now: Timestamp, nonce: u64, rx: u64) -> Option<Measured> {
        match self.ping {
            Some((n, mark)) if n == nonce => {
                self.ping = None;
                Some(self.measure(now, mark, rx))
            }
            _ => None,
        }
    }

    /// Forgets the logged records of `session` (it sends elsewhere now: a
    /// credit arriving here much later must not match an old record).
    pub fn forget(&mut self, session: u64) {
        self.log.retain(|s| s.session != session);
    }

    /// Turns an acknowledged probe into a sample, updating what arrived and
    /// the rates.
    fn measure(&mut self, now: Timestamp, mark: Mark, rx: u64) -> Measured {
        let rtt = now.saturating_duration_since(mark.at);
        if mark.pos > self.delivered {
            self.delivered = mark.pos;
            self.delivered_at = now;
            self.delivered_sent = mark.at;
        }
        let window = self.rate_window(now);
        // BBR's delivery rate: what arrived since the probe's send-time
        // snapshot, over the longer of the time since that snapshot was
        // learnt (never shorter than the round trip, so bunched
        // acknowledgements do not inflate it) and the time those bytes took
        // to send (a ping behind bytes that arrived long ago but were not
        // credited yet, a receiver crediting a quarter window at a time,
        // confirms them all in one round trip: 196 kB in 40 ms read as
        // 4.9 MB/s on a 250 kB/s path while a drain probe held data back).
        let fwd = rate(
            self.delivered.saturating_sub(mark.delivered),
            now.saturating_duration_since(mark.delivered_at)
                .max(mark.at.saturating_duration_since(mark.delivered_sent)),
        );
        if fwd > 0 {
            self.fwd_avg = if self.fwd_avg == 0 {
                fwd
            } else {
                self.fwd_avg - self.fwd_avg / 8 + fwd / 8
            };
            self.fwd_rate.update(now, self.fwd_avg, window);
        }
        let rev_bytes = rx.saturating_sub(mark.rx);
        // A stream that never carried much has measured far less than its
        // capacity: draining its few bytes at that rate would explain any
        // round trip. Rates count as at least MIN_RATE.
        let fwd_best = self.fwd_rate.get(now, window).unwrap_or(0).max(MIN_RATE);
        // The peer's bytes that arrived during the round trip may all have
        // been ahead of its answer. Their rate is not measured: a
        // transport hands bytes over in bursts, and a burst read at once
        // looks like any rate at all, which would explain too little. They
        // drain at MIN_RATE: a side whose answers wait behind the peer's
        // bulk data holds its estimate (the sender, whose credit samples
        // see the path, decides about it).
        let own = drain_time(mark.len, fwd_best);
        let queueing = drain_time(mark.ahead, fwd_best) + own + drain_time(rev_bytes, MIN_RATE);
        Measured { rtt, queueing, own }
    }

    /// Folds a sample into the path delay; returns the new estimate (zero
    /// while it is unknown).
    #[cfg(test)]
    pub fn fold(&mut self, now: Timestamp, m: Measured) -> Duration {
        self.fold_with(now, m, Duration::MAX, false)
    }

    /// Folds a sample into the path delay, `srtt` being the stream's
    /// smoothed RTT with the sample (the delay under load) and `probe`
    /// whether it answers a drain probe's ping; returns the new estimate
    /// (zero while it is unknown).
    ///
    /// Only a drain probe's clean sample replaces a stale estimate: its
    /// sender emptied its queue for it and takes several. Any other clean
    /// sample after a stale window is one alone (the receiver of a bulk
    /// transfer gets one whenever the sender drains), and one delayed by a
    /// scheduling hiccup would make its stream look slower than it is.
    pub fn fold_with(
        &mut self,
        now: Timestamp,
        m: Measured,
        srtt: Duration,
        probe: bool,
    ) -> Duration {
        let window = self.path_window(now);
        self.peak.update(now, nanos(m.rtt), window);
        let clean = m.is_clean();
        let mut m = m;
        if probe && clean && self.is_stale(now) {
            // Nothing of ours ahead of it after a window without such a
            // sample: the path delay now, whatever it was before. At most
            // the delay under load, though: a path is never slower idle
            // than loaded, and the few samples a drain probe takes may all
            // be unlucky on a jittery path (2 s ± 50 %: two probe pings
            // both read 2.7 s where the loaded srtt was 2.3 s, and the
            // session left for an identical path).
            if !srtt.is_zero() {
                m.rtt = m.rtt.min(srtt);
            }
            self.path = WindowedMin::default();
        }
        // A clean sample refreshes the estimate if it is a probe's, or
        // agrees with it (within a quarter): one far above it is news the
        // next drain probe must check.
        let agrees = self.path_delay(now).is_none_or(|p| m.rtt <= p + p / 4);
        if clean && (probe || agrees) {
            self.clean_at = Some(now);
        }
        let value = match self.path_delay(now) {
            // A first estimate needs a sample that traffic explains at most
            // half of: one taken behind a standing queue (the peer's bulk
            // data ahead of every pong we get back) would start the
            // estimate at the queue, and holding would keep it there. Until
            // then the path delay is unknown, and the policy never moves a
            // session off a stream whose delay it does not know.
            // (The probe's own record does not count: before a rate is
            // measured it drains at MIN_RATE, far slower than most paths.)
            None if m.queueing.saturating_sub(m.own) > m.rtt / 2 => return Duration::ZERO,
            None => m.rtt,
            // Explained by our own traffic: holds the estimate (and lowers
            // it if lower).
            Some(path) if m.rtt.saturating_sub(m.queueing) <= path => m.rtt.min(path),
            // Not explained: evidence about the path, taken as it is.
            Some(_) => m.rtt,
        };
        self.path.update(now, nanos(value), window);
        self.has_path = true;
        self.path_delay(now).unwrap_or(value)
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

    #[test]
    fn a_first_sample_behind_a_queue_leaves_the_path_unknown() {
        let mut m = PathMeter::new(t(0), ms(2000));
        let queued = Measured {
            rtt: ms(540),
            queueing: ms(520),
            own: Duration::ZERO,
        };
        assert_eq!(m.fold(t(540), queued), Duration::ZERO);
        assert_eq!(m.path_delay(t(540)), None);
        // Half explained at most: taken.
        let clean = Measured {
            rtt: ms(40),
            queueing: ms(20),
            own: Duration::ZERO,
        };
        assert_eq!(m.fold(t(600), clean), ms(40));
        // From then on, queued samples hold it.
        assert_eq!(m.fold(t(1200), queued), ms(40));
    }

    #[test]
    fn windowed_min_keeps_a_value_between_three_quarters_and_one_window() {
        let w = ms(1000);
        let mut f = WindowedMin::default();
        f.update(t(0), 10, w);
        for i in 1..=19u64 {
            f.update(t(i * 50), 50, w);
        }
        // Fed at 0: still there at 999 ms, gone at 1000 ms.
        assert_eq!(f.get(t(999), w), Some(10));
        assert_eq!(f.get(t(1000), w), Some(50));
        // A lower value wins at once.
        f.update(t(1001), 5, w);
        assert_eq!(f.get(t(1001), w), Some(5));
        let mut g = WindowedMax::default();
        g.update(t(0), 7, w);
        g.update(t(300), 3, w);
        assert_eq!(g.get(t(900), w), Some(7));
        assert_eq!(g.get(t(1200), w), Some(3));
        assert_eq!(g.get(t(5000), w), None);
    }

    #[test]
    fn windowed_filter_never_holds_more_than_five_buckets() {
        let w = ms(100);
        let mut f = WindowedMin::default();
        for i in 0..10_000u64 {
            f.update(t(i * 7), 1000 - (i % 1000), w);
            assert!(f.len <= 5);
        }
    }

    /// A meter that sent one record of `len` bytes at `at` carrying data of
    /// session 1 up to `end`.
    fn send(m: &mut PathMeter, at: u64, len: usize, end: u64, rx: u64) {
        m.on_record(t(at), len, rx, Some((1, end)), None);
        m.on_data_record();
    }

    #[test]
    fn unconfirmed_control_alone_is_no_queue() {
        let mut m = PathMeter::new(t(0), ms(2000));
        // One data record, confirmed by a pong 20 ms later: a rate.
        send(&mut m, 0, 1000, 1000, 0);
        m.on_record(t(0), 40, 0, None, Some(1));
        assert!(m.on_pong(t(20), 1, 0).is_some());
        assert!(m.delivery_rate() > 0);
        // Then only credits, a few thousand of them, none confirmed.
        for i in 0..2000 {
            m.on_record(t(30 + i), 40, 0, None, None);
        }
        assert_eq!(m.unconfirmed(), 80_000);
        assert_eq!(m.queueing_ahead(t(2100), 0, 0), Duration::ZERO);
        // A data record among them: what is unconfirmed is a queue again.
        send(&mut m, 2100, 1000, 2000, 0);
        assert!(m.queueing_ahead(t(2100), 0, 0) > Duration::ZERO);
    }

    #[test]
    fn a_credit_samples_the_newest_record_it_covers_and_forgets_the_rest() {
        let mut m = PathMeter::new(t(0), ms(2000));
        send(&mut m, 0, 1000, 1000, 0);
        send(&mut m, 10, 1000, 2000, 0);
        send(&mut m, 20, 1000, 3000, 0);
        // Covers the first two records: the sample is the second's.
        let s = m.on_credit(t(110), 1, 2500, 0).unwrap();
        assert_eq!(s.rtt, ms(100));
        assert_eq!(m.log.len(), 1);
        // Another session's credit matches nothing; an old credit neither.
        assert_eq!(m.on_credit(t(120), 2, 9999, 0), None);
        assert_eq!(m.on_credit(t(120), 1, 2500, 0), None);
        m.forget(1);
        assert_eq!(m.on_credit(t(130), 1, 3000, 0), None);
    }

    #[test]
    fn the_log_is_bounded() {
        let mut m = PathMeter::new(t(0), ms(2000));
        for i in 0..1000u64 {
            send(&mut m, i, 100, (i + 1) * 100, 0);
        }
        assert_eq!(m.log.len(), LOG_CAPACITY);
        assert!(m.log.capacity() < 2 * LOG_CAPACITY);
    }

    #[test]
    fn bytes_the_peer_may_hold_uncredited_are_not_ahead_of_a_probe() {
        let mut m = PathMeter::new(t(0), ms(2000));
        // 10 kB records every 100 ms, each credited 50 ms later (the best
        // rate measured: 200 kB/s, the first record's).
        for i in 0..20u64 {
            send(&mut m, i * 100, 10_000, (i + 1) * 10_000, 0);
            assert!(m
                .on_credit(t(i * 100 + 50), 1, (i + 1) * 10_000, 0)
                .is_some());
        }
        let rate = m.fwd_rate.get(t(2000), m.rate_window(t(2000))).unwrap();
        assert_eq!(rate, 200_000);
        // Then 30 kB more at 2000, nothing confirmed since the credit that
        // arrived at 1950.
        send(&mut m, 2000, 30_000, 230_000, 0);
        assert_eq!(m.unconfirmed(), 30_000);
        let all = m.drain(t(2000), 30_000, 0);
        assert_eq!(m.queueing_ahead(t(2000), 0, 0), all);
        // The peer may hold up to 25 kB uncredited, but the path delivered
        // at most 50 ms worth since the newest confirmation arrived.
        let in_50ms = rate / 20;
        assert_eq!(
            m.queueing_ahead(t(2000), 0, 25_000),
            m.drain(t(2000), 30_000 - in_50ms, 0)
        );
        // 300 ms later it may hold the whole 25 kB: no more is left out.
        assert_eq!(
            m.queueing_ahead(t(2250), 0, 25_000),
            m.drain(t(2250), 5_000, 0)
        );
        assert_eq!(m.queueing_ahead(t(2250), 0, 40_000), Duration::ZERO);
        // The floor rate still applies to what is left.
        assert_eq!(
            m.queueing_ahead(t(2250), 1_000_000_000, 25_000),
            drain_time(5_000, 1_000_000_000)
        );
    }

    #[test]
    fn pongs_sample_from_when_the_ping_left() {
        let mut m = PathMeter::new(t(0), ms(2000));
        m.on_record(t(5), 40, 0, None, Some(77));
        assert_eq!(m.on_pong(t(50), 78, 0), None, "another nonce");
        let s = m.on_pong(t(45), 77, 0).unwrap();
        assert_eq!(s.rtt, ms(40));
        // Nothing was ahead of it: only its own 40 bytes.
        assert_eq!(s.queueing, drain_time(40, MIN_RATE));
        assert_eq!(m.on_pong(t(60), 77, 0), None, "answered once");
    }

    /// A transfer: one 10 kB record of session 1 every `gap` ms from
    /// `from` to `to`, each credited `rtt` ms after it left (credits are
    /// handled in time order with the sends). Returns the path estimate
    /// after each sample, with its time.
    struct Transfer {
        end: u64,
        pending: VecDeque<(u64, u64)>,
    }

    impl Transfer {
        fn new() -> Self {
            Transfer {
                end: 0,
                pending: VecDeque::new(),
            }
        }

        fn run(
            &mut self,
            m: &mut PathMeter,
            from: u64,
            to: u64,
            gap: u64,
            rtt: u64,
        ) -> Vec<(u64, Duration)> {
            let mut out = Vec::new();
            let mut at = from;
            while at < to {
                while let Some(&(back, end)) = self.pending.front() {
                    if back > at {
                        break;
                    }
                    self.pending.pop_front();
                    if let Some(s) = m.on_credit(t(back), 1, end, 0) {
                        out.push((back, m.fold(t(back), s)));
                    }
                }
                self.end += 10_000;
                send(m, at, 10_000, self.end, 0);
                self.pending.push_back((at + rtt, self.end));
                at += gap;
            }
            out
        }
    }

    #[test]
    fn saturation_holds_the_idle_path_delay() {
        let mut m = PathMeter::new(t(0), ms(2000));
        // An idle ping first: 40 ms.
        m.on_record(t(0), 40, 0, None, Some(1));
        let s = m.on_pong(t(40), 1, 0).unwrap();
        assert_eq!(m.fold(t(40), s), ms(40));
        // Ten minutes of a transfer at 1000 B/ms keeping 200 kB queued at
        // the bottleneck: every sample is 240 ms, all of it explained by
        // our own bytes ahead.
        let samples = Transfer::new().run(&mut m, 100, 600_000, 10, 240);
        assert!(samples.len() > 50_000);
        let worst = samples.iter().map(|(_, p)| *p).max().unwrap();
        assert_eq!(worst, ms(40));
    }

    #[test]
    fn a_slower_path_shows_within_a_window_even_under_load() {
        let mut m = PathMeter::new(t(0), ms(2000));
        let mut tr = Transfer::new();
        // Window-limited, no queueing: 100 kB in flight, 100 ms round trips.
        let before = tr.run(&mut m, 0, 20_000, 10, 100);
        assert_eq!(before.last().unwrap().1, ms(100));
        // The path becomes 300 ms with the same bytes in flight (a third of
        // the throughput): every sample now exceeds what our bytes explain.
        let after = tr.run(&mut m, 20_000, 30_000, 30, 300);
        let risen = after
            .iter()
            .find(|(_, p)| *p >= ms(300))
            .map(|(at, _)| at - 20_000)
            .unwrap();
        assert!(risen <= 2_400, "rose {risen} ms after the change");
        assert!(after.iter().all(|(_, p)| *p <= ms(300)));
    }

    /// A saturating sender through a bottleneck as on the emulated paths
    /// (issue 17, `astral-wan-placement identical`): 64 KiB records, a
    /// 40 ms path capped at 1000 B/ms with a standing queue of ours, the
    /// receiver crediting every fourth record (a quarter window), and a
    /// first second in which the bottleneck takes bytes 30 % faster (the
    /// kernel and forwarder buffers filling). Returns the highest path
    /// estimate after `settle` ms and the samples taken.
    fn saturated_bottleneck(m: &mut PathMeter, end: u64, settle: u64) -> (Duration, u64) {
        const REC: u64 = 65_536;
        const IN_FLIGHT: u64 = 7 * REC;
        // The idle round trip first.
        m.on_record(t(0), 40, 0, None, Some(1));
        let s = m.on_pong(t(40), 1, 0).unwrap();
        assert_eq!(m.fold(t(40), s), ms(40));
        let (mut pos, mut credited, mut sent) = (0u64, 0u64, 0u64);
        // Bottleneck free from (µs); credits on their way: (arrival µs, consumed).
        let mut free_at = 0u64;
        let mut credits: VecDeque<(u64, u64)> = VecDeque::new();
        let (mut worst, mut samples) = (Duration::ZERO, 0u64);
        for now in 100..end {
            while let Some(&(at, consumed)) = credits.front() {
                if at > now * 1000 {
                    break;
                }
                credits.pop_front();
                credited = consumed;
                if let Some(s) = m.on_credit(t(now), 1, consumed, 0) {
                    samples += 1;
                    let path = m.fold(t(now), s);
                    if now >= settle {
                        worst = worst.max(path);
                    }
                }
            }
            while pos - credited < IN_FLIGHT {
                pos += REC;
                sent += 1;
                m.on_record(t(now), REC as usize, 0, Some((1, pos)), None);
                let rate = if now < 1_100 { 1_300 } else { 1_000 };
                // 20 ms to the bottleneck and from it to the receiver,
                // which credits every fourth record at once; 20 ms back.
                let start = free_at.max(now * 1000);
                free_at = start + REC * 1000 / rate;
                if sent % 4 == 0 {
                    credits.push_back((free_at + 40_000, pos));
                }
            }
        }
        (worst, samples)
    }

    #[test]
    fn a_standing_queue_of_whole_records_holds_the_idle_path_delay() {
        let mut m = PathMeter::new(t(0), ms(2000));
        let (worst, samples) = saturated_bottleneck(&mut m, 120_000, 2_000);
        println!("{samples} samples, highest path delay after 2 s {worst:?}");
        assert!(samples > 400, "{samples}");
        // The probe's own record (65 ms at this rate) and the early burst
        // are ours, not the path's.
        assert!(worst <= ms(45), "path delay rose to {worst:?}");
    }

    #[test]
    fn a_clean_sample_after_a_stale_window_replaces_the_path_delay() {
        let mut m = PathMeter::new(t(0), ms(2000));
        let ping = |m: &mut PathMeter, at: u64, rtt: u64, n: u64| {
            m.on_record(t(at), 40, 0, None, Some(n));
            let s = m.on_pong(t(at + rtt), n, 0).unwrap();
            m.fold(t(at + rtt), s)
        };
        assert_eq!(ping(&mut m, 0, 100, 1), ms(100));
        assert!(!m.is_stale(t(100)));
        // A saturating transfer behind a standing queue: every sample is
        // explained by our own bytes ahead, so it holds 100 ms, and none is
        // clean.
        let loaded = Measured {
            rtt: ms(500),
            queueing: ms(450),
            own: ms(20),
        };
        for i in 0..10u64 {
            assert_eq!(m.fold(t(200 + i * 100), loaded), ms(100));
        }
        assert!(!m.is_stale(t(2099)));
        assert!(m.is_stale(t(2100)), "a window without a clean sample");
        // The path became 300 ms meanwhile. A clean sample that is no drain
        // probe's holds the estimate (and does not refresh it)...
        m.on_record(t(2150), 40, 0, None, Some(2));
        let s = m.on_pong(t(2450), 2, 0).unwrap();
        assert_eq!(m.fold_with(t(2450), s, ms(500), false), ms(100));
        assert!(m.is_stale(t(2450)));
        // ...the drained probe's replaces it at once (at most the loaded
        // srtt).
        m.on_record(t(2500), 40, 0, None, Some(3));
        let s = m.on_pong(t(2800), 3, 0).unwrap();
        assert_eq!(m.fold_with(t(2800), s, ms(280), true), ms(280));
        m.on_record(t(2800), 40, 0, None, Some(4));
        let s = m.on_pong(t(3100), 4, 0).unwrap();
        assert_eq!(m.fold_with(t(3100), s, ms(500), true), ms(280));
        assert!(!m.is_stale(t(3100)));
        // Loaded samples hold the new value.
        assert_eq!(m.fold(t(3200), loaded), ms(280));
        // While fresh, a higher clean sample does not replace it (the
        // windowed minimum, as before)...
        assert_eq!(ping(&mut m, 3300, 400, 5), ms(280));
        // ...and a lower one lowers it at once.
        assert_eq!(ping(&mut m, 3800, 250, 6), ms(250));
    }

    #[test]
    fn a_ping_confirming_bytes_sent_long_ago_does_not_inflate_the_rate() {
        let mut m = PathMeter::new(t(0), ms(2000));
        // 200 kB sent over the first second (50 ms apart, 10 kB each), then
        // nothing (a drain probe): the receiver credited only the first
        // record (it credits a quarter window at a time). A ping at
        // 1,000 ms is answered 40 ms later and proves all of it delivered.
        for i in 0..20u64 {
            m.on_record(t(i * 50), 10_000, 0, Some((1, (i + 1) * 10_000)), None);
        }
        // The first record's credit came just before.
        let s = m.on_credit(t(999), 1, 10_000, 0).unwrap();
        m.fold(t(999), s);
        m.on_record(t(1000), 40, 0, None, Some(9));
        let s = m.on_pong(t(1040), 9, 0).unwrap();
        m.fold(t(1040), s);
        // 200 kB over the second they took to send, not over the 40 ms
        // round trip (5 MB/s).
        assert!(m.fwd_avg <= 210_000, "{} B/s", m.fwd_avg);
        assert_eq!(m.unconfirmed(), 0);
    }

    #[test]
    fn the_peers_bytes_ahead_of_a_pong_count_as_its_queueing() {
        let mut m = PathMeter::new(t(0), ms(2000));
        // Idle: 40 ms.
        m.on_record(t(0), 40, 0, None, Some(1));
        let s = m.on_pong(t(40), 1, 0).unwrap();
        m.fold(t(40), s);
        // The peer saturates its direction at 1000 B/ms: pongs come back
        // 240 ms later, behind 240 KB of its data.
        let mut rx = 0u64;
        let mut path = Duration::ZERO;
        for i in 0..200u64 {
            let at = 100 + i * 300;
            m.on_record(t(at), 40, rx, None, Some(i + 2));
            rx += 240_000;
            let s = m.on_pong(t(at + 240), i + 2, rx).unwrap();
            assert!(s.queueing >= ms(240), "{:?}", s.queueing);
            path = m.fold(t(at + 240), s);
        }
        assert_eq!(path, ms(40), "the peer's queue is not the path");
    }

    #[test]
    fn the_peak_is_the_highest_sample_of_the_last_path_window() {
        let mut m = PathMeter::new(t(0), ms(2000));
        assert_eq!(m.peak(t(0)), None);
        let ping = |m: &mut PathMeter, at: u64, rtt: u64, n: u64| {
            m.on_record(t(at), 40, 0, None, Some(n));
            let s = m.on_pong(t(at + rtt), n, 0).unwrap();
            m.fold(t(at + rtt), s);
        };
        // A jittery 40 ms path, pinged every 250 ms: 20..60 ms.
        for (i, rtt) in [40u64, 58, 22, 35, 47, 30, 44, 39].into_iter().enumerate() {
            ping(&mut m, i as u64 * 250, rtt, i as u64);
        }
        assert_eq!(m.peak(t(1800)), Some(ms(58)));
        assert_eq!(m.path_delay(t(1800)), Some(ms(22)));
        // The path becomes a steady 10 ms: the old spread is forgotten
        // within a window (between three quarters of one and one).
        let mut at = 2000;
        while m.peak(t(at)) > Some(ms(10)) {
            ping(&mut m, at, 10, at);
            at += 250;
            assert!(at <= 2000 + 2250, "{:?}", m.peak(t(at)));
        }
        assert_eq!(m.path_delay(t(at)), Some(ms(10)));
    }

    #[test]
    fn an_idle_stream_follows_its_path_both_ways() {
        let mut m = PathMeter::new(t(0), ms(1000));
        let ping = |m: &mut PathMeter, at: u64, rtt: u64, n: u64| {
            m.on_record(t(at), 40, 0, None, Some(n));
            let s = m.on_pong(t(at + rtt), n, 0).unwrap();
            m.fold(t(at + rtt), s)
        };
        let mut path = Duration::ZERO;
        for i in 0..20 {
            path = ping(&mut m, i * 250, 100, i);
        }
        assert_eq!(path, ms(100));
        // Faster: at once.
        assert_eq!(ping(&mut m, 5000, 10, 100), ms(10));
        // Slower: after a window.
        let mut at = 5250;
        let mut n = 101;
        while ping(&mut m, at, 50, n) < ms(50) {
            at += 250;
            n += 1;
            assert!(at < 7000);
        }
        assert!(at - 5000 >= 750 && at - 5000 <= 1250, "{}", at - 5000);
    }
}
