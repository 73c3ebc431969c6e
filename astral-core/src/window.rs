//! Receive-window auto-tuning of one session direction.
//!
//! A session starts with a small window (`Config::recv_window`) and grows it
//! towards the bandwidth-delay product of its path, the way Linux tunes a
//! TCP receive buffer and rust-yamux or Chromium's QUIC tune their stream
//! windows: the receiver measures how long the peer takes to fill (and the
//! application to consume) one whole window, from the grant that opened it.
//! A window consumed within [`GROW_RTTS`] round trips was the limit of the
//! flow, so it doubles, up to `Config::max_recv_window`; a window that takes
//! longer was not the limit, and stays. Timing from the grant, not from the
//! window's first byte, matters when sessions share a stream: each is sent
//! in turns, its window arrives as one burst a whole turn after the grant,
//! and a burst timed from its first byte always looks fast.
//!
//! The round trip is the stream's smallest sample of the last
//! [`TUNE_RTT_WINDOW`] (the engine's `tuning_rtt`), floored at
//! [`MIN_TUNE_RTT`]: the smoothed RTT grows with the data queued ahead of a
//! receiver's pings, that is with the window itself; the smallest sample
//! ever would never see a path whose delay rose for good as slower.
//!
//! Under memory pressure windows stop growing, and a window that takes more
//! than [`SHRINK_RTTS`] round trips to be consumed (the flow does not need
//! it) halves, never below the session's base window. Shrinking only
//! changes future grants: the limit already granted stays (the wire rule
//! of `crate::flow`).
//!
//! After a migration the window is re-tuned to the new stream: scaled by
//! the ratio of the round-trip times when the new stream is faster (a
//! window sized for a long path is too big for a short one), and measured
//! afresh either way.
//!
//! The tuner only decides; the engine takes what a larger window costs out
//! of the memory budget and may grant less (`engine::budget`).

use std::time::Duration;

use crate::Timestamp;

/// A window consumed within this many round trips was the flow's limit.
pub(crate) const GROW_RTTS: u32 = 2;
/// Under pressure, a window that takes longer than this many round trips
/// to be consumed is larger than the flow needs.
pub(crate) const SHRINK_RTTS: u32 = 8;
/// The tuning round trip is the smallest sample of this long a window
/// (BBR's min-RTT filter, 10 s): long enough that a saturating transfer
/// rarely goes without one sample that its own queue did not lengthen,
/// short enough that a path whose delay rose for good is seen as slower
/// within seconds.
pub(crate) const TUNE_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Round-trip time assumed before a stream has a sample.
pub(crate) const INITIAL_RTT: Duration = Duration::from_millis(100);
/// Floor of the round-trip time used for tuning: on loopback or a LAN the
/// measured RTT (tens of microseconds) is below the scheduling delays of
/// the two processes, which a window must also cover. At 250 µs a loopback
/// session settles at 1–2 MiB, the fastest window there; 1 ms took it to
/// 4–16 MiB, where cache misses cost more than the window buys
/// (docs/FLOW.md, "What the tuner reaches").
pub(crate) const MIN_TUNE_RTT: Duration = Duration::from_micros(250);

/// What the tuner needs to know at a grant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TuneInput {
    pub now: Timestamp,
    /// The credit value about to be granted from (consumed bytes).
    pub consumed: u64,
    /// The window in force.
    pub window: u32,
    /// The session's base window: never shrink below it.
    pub base: u32,
    /// The largest window allowed.
    pub cap: u32,
    /// Round trip of the stream the peer's data comes on (its smallest
    /// recent sample), if sampled.
    pub rtt: Option<Duration>,
    /// The memory budget is short.
    pub pressure: bool,
}

/// Measurement state of one receiving direction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowTuner {
    /// When the current measurement began: the grant that opened it, or
    /// for the first measurement (and the first after a move) its first
    /// data. [`ARMED`] while such an epoch waits for its first data (so
    /// idle time before a transfer does not count against the window); a
    /// sentinel rather than a flag keeps an idle session 8 bytes smaller.
    epoch_start: Timestamp,
    /// Consumed count when it began.
    epoch_mark: u64,
    /// Growths so far.
    pub growths: u32,
    /// Shrinks so far (pressure and migration re-tuning).
    pub shrinks: u32,
}

/// `epoch_start` of an epoch that waits for its first data (no data ever
/// arrives at the end of time).
const ARMED: Timestamp = Timestamp::MAX;

impl Default for WindowTuner {
    fn default() -> Self {
        WindowTuner {
            epoch_start: ARMED,
            epoch_mark: 0,
            growths: 0,
            shrinks: 0,
        }
    }
}

fn tune_rtt(rtt: Option<Duration>) -> Duration {
    rtt.unwrap_or(INITIAL_RTT).max(MIN_TUNE_RTT)
}

impl WindowTuner {
    /// Data arrived at `now`: starts the epoch's clock if it waits for it.
    #[inline]
    pub fn on_data(&mut self, now: Timestamp) {
        if self.epoch_start == ARMED {
            // Data at `Timestamp::MAX` itself would leave the epoch armed:
            // it is only measured from the next data on.
            self.epoch_start = now;
        }
    }

    /// Begins a new measurement from `consumed`, timed from its first data.
    pub fn restart(&mut self, consumed: u64) {
        self.epoch_mark = consumed;
        self.epoch_start = ARMED;
    }

    /// Begins the next measurement at a grant: from `consumed`, timed from
    /// `now`, the grant that opens it.
    fn restart_at(&mut self, now: Timestamp, consumed: u64) {
        self.epoch_mark = consumed;
        self.epoch_start = now;
    }

    /// The window to grant now (before the budget has its say).
    pub fn decide(&mut self, i: TuneInput) -> u32 {
        if self.epoch_start == ARMED {
            // No data since the last grant: nothing measured.
            return i.window;
        }
        let rtt = tune_rtt(i.rtt);
        let elapsed = i.now.saturating_duration_since(self.epoch_start);
        let used = i.consumed.saturating_sub(self.epoch_mark);
        let window = u64::from(i.window);
        // Grants go out as reading frees a quarter of the window, counted
        // from the last credit, in whole records: the grant that closes a
        // window may come a few bytes short of it. Taken as complete then
        // (the next grant is a quarter window later: a window that filled
        // in time would look slow), and judged by its pace: the time a
        // whole window takes at the rate it was consumed.
        let complete = used >= window - window / 8;
        let slow = elapsed > rtt * SHRINK_RTTS;
        let whole = elapsed.as_nanos() * u128::from(window) / u128::from(used.max(1));
        let fast = whole < (rtt * GROW_RTTS).as_nanos();
        if complete && fast && !i.pressure && i.window < i.cap {
            self.restart_at(i.now, i.consumed);
            self.growths = self.growths.saturating_add(1);
            return i.window.saturating_mul(2).min(i.cap);
        }
        if i.pressure && slow && i.window > i.base {
            self.restart_at(i.now, i.consumed);
            self.shrinks = self.shrinks.saturating_add(1);
            return (i.window / 2).max(i.base);
        }
        if complete {
            self.restart_at(i.now, i.consumed);
        }
        i.window
    }

    /// The session's data moved from a stream with round-trip time `from`
    /// to one with `to`: the window to use from now on, and a fresh
    /// measurement. Without both samples (the old stream died and is
    /// forgotten, the new one was never measured) the window stays.
    pub fn retune(
        &mut self,
        consumed: u64,
        window: u32,
        base: u32,
        from: Option<Duration>,
        to: Option<Duration>,
    ) -> u32 {
        self.restart(consumed);
        let (Some(from), Some(to)) = (from, to) else {
            return window;
        };
        let (from, to) = (from.max(MIN_TUNE_RTT), to.max(MIN_TUNE_RTT));
        if to >= from || window <= base {
            return window;
        }
        // Scale by to/from (< 1), in integer arithmetic on nanoseconds.
        let scaled = u128::from(window) * to.as_nanos() / from.as_nanos().max(1);
        let next = u32::try_from(scaled).unwrap_or(window).max(base);
        if next < window {
            self.shrinks = self.shrinks.saturating_add(1);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Timestamp {
        Timestamp::ZERO + MS * ms as u32
    }

    fn input(now: u64, consumed: u64, window: u32) -> TuneInput {
        TuneInput {
            now: at(now),
            consumed,
            window,
            base: 1000,
            cap: 16_000,
            rtt: Some(MS * 100),
            pressure: false,
        }
    }

    #[test]
    fn a_window_consumed_within_two_rtts_doubles_up_to_the_cap() {
        let mut t = WindowTuner::default();
        t.on_data(at(0));
        // A quarter consumed: not complete, nothing changes.
        assert_eq!(t.decide(input(30, 250, 1000)), 1000);
        // The whole window after 150 ms < 2 × 100 ms: double.
        assert_eq!(t.decide(input(150, 1000, 1000)), 2000);
        assert_eq!(t.growths, 1);
        // The next epoch is timed from that grant, not from its first data.
        assert_eq!(t.decide(input(160, 2000, 2000)), 2000, "incomplete");
        t.on_data(at(170));
        assert_eq!(
            t.decide(input(300, 3000, 2000)),
            4000,
            "150 ms after the grant"
        );
        let mut w = 4000;
        let mut now = 300;
        let mut consumed = 3000;
        for _ in 0..5 {
            t.on_data(at(now));
            now += 100;
            consumed += u64::from(w);
            w = t.decide(input(now, consumed, w));
        }
        assert_eq!(w, 16_000, "capped");
        assert_eq!(t.growths, 4);
    }

    #[test]
    fn a_window_that_takes_longer_is_kept() {
        let mut t = WindowTuner::default();
        t.on_data(at(0));
        assert_eq!(t.decide(input(250, 1000, 1000)), 1000);
        assert_eq!(t.growths, 0);
        // The measurement restarted at the completed window's grant.
        t.on_data(at(260));
        assert_eq!(t.decide(input(400, 2000, 1000)), 2000);
    }

    #[test]
    fn idle_time_before_data_does_not_count() {
        let mut t = WindowTuner::default();
        // Granted at 0, nothing arrives for 10 s, then a fast transfer.
        t.on_data(at(10_000));
        assert_eq!(t.decide(input(10_120, 1000, 1000)), 2000);
    }

    #[test]
    fn pressure_stops_growth_and_halves_unneeded_windows() {
        let mut t = WindowTuner::default();
        t.on_data(at(0));
        let mut i = input(100, 8000, 8000);
        i.pressure = true;
        assert_eq!(t.decide(i), 8000, "no growth under pressure");
        t.on_data(at(100));
        let mut i = input(1000, 9000, 8000);
        i.pressure = true;
        // 900 ms > 8 RTT for one eighth of the window: halve.
        assert_eq!(t.decide(i), 4000);
        assert_eq!(t.shrinks, 1);
        t.on_data(at(1000));
        let mut i = input(5000, 9100, 1500);
        i.pressure = true;
        assert_eq!(t.decide(i), 1000, "never below the base window");
        // Without pressure a slow window stays.
        t.on_data(at(5000));
        assert_eq!(t.decide(input(9000, 9200, 4000)), 4000);
    }

    #[test]
    fn retune_scales_down_to_a_faster_stream_only() {
        let mut t = WindowTuner::default();
        let w = t.retune(0, 8000, 1000, Some(MS * 100), Some(MS * 25));
        assert_eq!(w, 2000);
        assert_eq!(t.shrinks, 1);
        let w = t.retune(0, 8000, 1000, Some(MS * 10), Some(MS * 100));
        assert_eq!(w, 8000, "a slower stream grows by measurement");
        let w = t.retune(0, 1500, 1000, Some(MS * 100), Some(MS * 10));
        assert_eq!(w, 1000, "floored at the base window");
        let w = t.retune(0, 8000, 1000, None, Some(MS * 10));
        assert_eq!(w, 8000, "the old stream's RTT is unknown");
        // The measurement restarts: a window completed right after the
        // move is timed from the move's first data.
        t.on_data(at(50));
        let mut i = input(100, 1000, 1000);
        i.rtt = Some(MS * 30);
        assert_eq!(t.decide(i), 2000);
    }

    #[test]
    fn without_a_sample_the_initial_rtt_applies_and_tiny_rtts_are_floored() {
        let mut t = WindowTuner::default();
        t.on_data(at(0));
        let mut i = input(150, 1000, 1000);
        i.rtt = None;
        assert_eq!(t.decide(i), 2000, "150 ms < 2 × INITIAL_RTT");
        let mut i = input(150, 3000, 2000);
        i.now = at(150) + Duration::from_micros(400);
        i.rtt = Some(Duration::from_micros(20));
        assert_eq!(t.decide(i), 4000, "0.4 ms < 2 × MIN_TUNE_RTT");
        let mut i = input(150, 7000, 4000);
        i.now = at(151);
        i.rtt = Some(Duration::from_micros(20));
        assert_eq!(t.decide(i), 4000, "0.6 ms >= 2 × MIN_TUNE_RTT");
    }

    #[test]
    fn a_window_that_arrives_as_a_late_burst_is_kept() {
        // Sessions sharing a stream are sent in turns: a session's window
        // arrives as one burst, long after its grant, and is consumed at
        // once. Timed from its first byte it would look fast; from the
        // grant it took a whole turn of the other sessions.
        let mut t = WindowTuner::default();
        t.on_data(at(0));
        let rtt = |mut i: TuneInput| {
            i.rtt = Some(MS * 10);
            i
        };
        assert_eq!(t.decide(rtt(input(15, 1000, 1000))), 2000);
        t.on_data(at(60));
        assert_eq!(
            t.decide(rtt(input(61, 3000, 2000))),
            2000,
            "46 ms after its grant"
        );
        assert_eq!(t.growths, 1);
        // The same window right after its grant grows.
        t.on_data(at(62));
        assert_eq!(
            t.decide(rtt(input(70, 5000, 2000))),
            4000,
            "9 ms after its grant"
        );
    }

    #[test]
    fn a_window_closed_a_few_bytes_short_is_judged_by_its_pace() {
        // Grants go out as reading frees a quarter of the window since the
        // last credit, in whole records: the grant that closes a window
        // may come a few bytes short of it (74 B on a rate-limited wire in
        // `flow_tests`), and the next one a quarter later. Waiting for it
        // made every such window look slow (26.6 ms for 64 KiB against
        // 2 x 20 ms, then 53 ms): the window never grew past 64 KiB.
        let mut t = WindowTuner::default();
        t.on_data(at(0));
        assert_eq!(t.decide(input(150, 926, 1000)), 2000, "162 ms a window");
        assert_eq!(t.growths, 1);
        // Less than 7/8 of it is not a window yet: nothing is decided and
        // the measurement goes on from the same grant.
        assert_eq!(t.decide(input(160, 926 + 1700, 2000)), 2000);
        // 1900 B in 190 ms: 200 ms a window, not under 2 x 100 ms: kept.
        assert_eq!(t.decide(input(340, 926 + 1900, 2000)), 2000);
        assert_eq!(t.growths, 1);
        // A window consumed more than whole is judged by its pace too:
        // 2500 B in 240 ms is 192 ms a window.
        assert_eq!(t.decide(input(580, 926 + 1900 + 2500, 2000)), 4000);
    }
}
