//! Stream choice and automatic migration (design §9; `docs/MIGRATION.md`,
//! "Automatic placement").
//!
//! The engine asks a [`Policy`] which stream a new or recovering session
//! takes and, every `policy_interval`, whether the sessions of a stream
//! should move to another. It applies the answer to the sessions that may
//! move: open, pinned by neither end, and not moved within
//! `migrate_cooldown`. Each node decides for its own sending; the peer
//! follows its markers, and the migration tie-break settles races.
//! Policies must be deterministic: same inputs, same answers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::stream::StreamPreference;
use crate::{StreamId, Timestamp};

/// What a policy sees of one usable stream to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Candidate {
    /// The stream.
    pub id: StreamId,
    /// Smoothed RTT: the delay under load, queueing included (zero before
    /// the first sample).
    pub srtt: Duration,
    /// Path delay: windowed minimum that the stream's own traffic cannot
    /// raise (zero before the first sample).
    pub path: Duration,
    /// RTT samples taken so far.
    pub samples: u32,
    /// The highest RTT sample within the stream's last path window (zero:
    /// unknown): the top of its spread, jitter included. [`RttPolicy`]
    /// judges a candidate by the higher of this and `srtt`.
    pub peak: Duration,
    /// When the handshake completed.
    pub established_at: Timestamp,
    /// Sessions currently sending on it.
    pub sessions: usize,
    /// The stricter of both ends' preferences for it.
    pub preference: StreamPreference,
    /// False while `path` was just raised by a single drain-probe sample
    /// that a confirming probe has not checked yet (`engine/probe.rs`): a
    /// policy should not move sessions off the stream on it yet (one
    /// sample may be a scheduling hiccup or jitter; the confirmation comes
    /// within a drain and two round trips).
    pub path_settled: bool,
}

impl Candidate {
    /// A candidate with the given id and estimates (for tests and custom
    /// policies); no sessions, established at the epoch, no preference.
    pub fn new(id: StreamId, srtt: Duration, path: Duration, samples: u32) -> Candidate {
        Candidate {
            id,
            srtt,
            path,
            samples,
            peak: Duration::ZERO,
            established_at: Timestamp::ZERO,
            sessions: 0,
            preference: StreamPreference::NORMAL,
            path_settled: true,
        }
    }

    /// Its slowest recent round trip: the higher of `srtt` and `peak`
    /// ([`RttPolicy`] judges a candidate by it).
    pub fn slowest(&self) -> Duration {
        self.srtt.max(self.peak)
    }
}

/// Decides where sessions go. Implementations must be deterministic.
pub trait Policy: Send + std::fmt::Debug {
    /// The stream a new (or recovering) session should use, among usable
    /// streams to its peer (the engine never asks with none; `None` then).
    fn choose(&mut self, candidates: &[Candidate]) -> Option<StreamId>;

    /// Called every `policy_interval` for each stream that carries sessions
    /// free to move while other usable streams to the same peer exist.
    /// Returning `Some(target)` moves those sessions of `current` to
    /// `target`.
    fn migrate_target(
        &mut self,
        now: Timestamp,
        current: &Candidate,
        candidates: &[Candidate],
    ) -> Option<StreamId>;

    /// Forget state about a stream that went away.
    fn forget(&mut self, _stream: StreamId) {}
}

/// Default policy.
///
/// * New sessions take the lowest tier, then the lowest smoothed RTT plus
///   penalty (the delay a new session meets there now), then the oldest.
/// * A stream of a lower tier wins over the current one as soon as it has
///   `min_samples` samples.
/// * Within a tier, a candidate wins when even its *slowest* recent round
///   trip (the higher of its smoothed RTT and its [`Candidate::peak`], plus
///   penalty) is at least `gain` below the current stream's *path delay*
///   (plus penalty), at every evaluation for `sustain`. Comparing the
///   candidate's worst with the current stream's best is deliberately
///   lopsided: queueing that the session itself causes on the stream that
///   carries it can only make the current stream look better than it is;
///   and on a jittery path the current stream's estimate may rest on one
///   clean sample (a drain probe's, or the receiver's last before the
///   sender's data filled the stream), which can be any draw of the path's
///   spread, up to its top: an equal candidate's peak shows that top too,
///   so two equal paths never trade a session, however jittery (issue 17:
///   40 ms ± 50 % paths traded it twice in ten minutes on the srtt alone).
/// * Nothing moves off a stream whose path is not settled
///   ([`Candidate::path_settled`]); the sustain keeps counting meanwhile,
///   so a confirmed rise moves the sessions as soon as both hold.
#[derive(Debug, Clone)]
pub struct RttPolicy {
    /// Required relative improvement, e.g. 0.3 = the candidate's delay at
    /// most 70 % of the current path delay.
    pub gain: f64,
    /// How long the improvement must hold.
    pub sustain: Duration,
    /// Minimum RTT samples on both streams before comparing.
    pub min_samples: u32,
    better_since: BTreeMap<StreamId, (StreamId, Timestamp)>,
}

impl RttPolicy {
    /// A policy with the given hysteresis.
    pub fn new(gain: f64, sustain: Duration) -> Self {
        RttPolicy {
            gain,
            sustain,
            min_samples: 3,
            better_since: BTreeMap::new(),
        }
    }

    fn rank(c: &Candidate) -> (u8, u8, Duration, Timestamp, StreamId) {
        // Streams without an RTT sample rank after measured ones.
        (
            c.preference.tier,
            u8::from(c.samples == 0),
            c.srtt + c.preference.penalty,
            c.established_at,
            c.id,
        )
    }

    /// Whether `best` is clearly better than `current` now.
    fn clearly_better(&self, current: &Candidate, best: &Candidate) -> bool {
        if best.preference.tier < current.preference.tier {
            return true;
        }
        if current.samples < self.min_samples || current.path.is_zero() {
            return false;
        }
        // In parts per million, exactly (70 ms against 100 at gain 0.3 is
        // "at most 70 %", which floating point would get wrong).
        let keep = ((1.0 - self.gain.clamp(0.0, 1.0)) * 1e6).round() as u128;
        let theirs = (best.slowest() + best.preference.penalty).as_nanos();
        let ours = (current.path + current.preference.penalty).as_nanos();
        theirs * 1_000_000 <= ours * keep
    }
}

impl Policy for RttPolicy {
    fn choose(&mut self, candidates: &[Candidate]) -> Option<StreamId> {
        candidates
            .iter()
            .min_by_key(|c| Self::rank(c))
            .map(|c| c.id)
    }

    fn migrate_target(
        &mut self,
        now: Timestamp,
        current: &Candidate,
        candidates: &[Candidate],
    ) -> Option<StreamId> {
        let best = candidates
            .iter()
            .filter(|c| {
                c.id != current.id
                    && c.samples >= self.min_samples
                    && c.preference.tier <= current.preference.tier
            })
            .min_by_key(|c| Self::rank(c));
        let Some(best) = best.filter(|b| self.clearly_better(current, b)) else {
            self.better_since.remove(&current.id);
            return None;
        };
        match self.better_since.get(&current.id) {
            Some(&(target, since)) if target == best.id => {
                // An unsettled path keeps the sustain running but moves
                // nothing until it is confirmed.
                if now.saturating_duration_since(since) >= self.sustain && current.path_settled {
                    self.better_since.remove(&current.id);
                    Some(best.id)
                } else {
                    None
                }
            }
            _ => {
                self.better_since.insert(current.id, (best.id, now));
                if self.sustain.is_zero() && current.path_settled {
                    self.better_since.remove(&current.id);
                    return Some(best.id);
                }
                None
            }
        }
    }

    fn forget(&mut self, stream: StreamId) {
        self.better_since.remove(&stream);
        self.better_since.retain(|_, (target, _)| *target != stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A stream whose smoothed RTT and path delay are both `ms`.
    fn c(id: u64, ms: u64) -> Candidate {
        cp(id, ms, ms)
    }

    fn cp(id: u64, srtt: u64, path: u64) -> Candidate {
        let mut c = Candidate::new(
            StreamId::new(id).unwrap(),
            Duration::from_millis(srtt),
            Duration::from_millis(path),
            10,
        );
        c.established_at = Timestamp::from_nanos(id);
        c.sessions = 1;
        c
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_nanos(s * 1_000_000_000)
    }

    #[test]
    fn chooses_lowest_tier_then_rtt_then_oldest() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(5));
        assert_eq!(p.choose(&[c(1, 50), c(2, 10), c(3, 10)]), StreamId::new(2));
        let mut backup = c(2, 10);
        backup.preference = StreamPreference::backup();
        assert_eq!(p.choose(&[c(1, 50), backup]), StreamId::new(1));
        let mut tor = c(2, 10);
        tor.preference = StreamPreference::with_penalty(ms(100));
        assert_eq!(p.choose(&[c(1, 50), tor]), StreamId::new(1));
    }

    #[test]
    fn migrates_only_after_sustained_gain() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(5));
        let all = [c(1, 100), c(2, 10)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        assert_eq!(p.migrate_target(t(3), &all[0], &all), None);
        assert_eq!(p.migrate_target(t(5), &all[0], &all), StreamId::new(2));
    }

    #[test]
    fn an_unsettled_path_moves_nothing_but_keeps_the_sustain_running() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(1));
        // The carrying stream's path was just raised by one probe sample
        // (300 ms against a 120 ms candidate): the sustain starts...
        let mut raised = cp(1, 500, 300);
        raised.path_settled = false;
        let all = [raised, c(2, 120)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        // ...and is met, but nothing moves while the rise is unconfirmed.
        assert_eq!(p.migrate_target(t(1000), &all[0], &all), None);
        assert_eq!(p.migrate_target(t(1250), &all[0], &all), None);
        // Confirmed: it moves at once, the sustain having counted all along.
        raised.path_settled = true;
        let all = [raised, c(2, 120)];
        assert_eq!(p.migrate_target(t(1500), &all[0], &all), StreamId::new(2));
        // Without a sustain, likewise only once settled.
        let mut p = RttPolicy::new(0.3, Duration::ZERO);
        raised.path_settled = false;
        let all = [raised, c(2, 120)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        raised.path_settled = true;
        let all = [raised, c(2, 120)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
    }

    #[test]
    fn the_candidates_typical_delay_must_beat_the_current_path_delay() {
        let mut p = RttPolicy::new(0.3, Duration::ZERO);
        // The current stream is loaded (srtt 250 ms) on a 40 ms path; an
        // idle 40 ms candidate is no better.
        let all = [cp(1, 250, 40), c(2, 40)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        // Jitter: the candidate's best samples (path 20 ms) do not count,
        // its typical delay (40 ms) does.
        let all = [cp(1, 60, 40), cp(2, 40, 20)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        // A really faster path: 10 ms against 100.
        let all = [cp(1, 100, 100), c(2, 10)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
        // 30 % is the threshold: 70 ms wins over 100, 71 does not.
        let all = [c(1, 100), c(2, 70)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
        let all = [c(1, 100), c(2, 71)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
    }

    #[test]
    fn a_candidate_is_judged_by_its_slowest_recent_round_trip() {
        let mut p = RttPolicy::new(0.3, Duration::ZERO);
        // Two 40 ms ± 50 % paths: the carrying stream's estimate is one
        // drain-probe sample from the top of the spread (58 ms); the idle
        // one's srtt is 40 ms, but its samples of the last window reached
        // 55 ms. Judged by the srtt it would win (40 <= 0.7 * 58); by its
        // peak it does not.
        let mut idle = cp(2, 40, 24);
        idle.peak = ms(55);
        let all = [cp(1, 300, 58), idle];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        idle.peak = Duration::ZERO;
        let all = [cp(1, 300, 58), idle];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
        // A really faster path still wins once its peak is below the bar:
        // 10 ms with samples up to 12 ms against 100 ms.
        let mut fast = c(2, 10);
        fast.peak = ms(12);
        let all = [c(1, 100), fast];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
        // The peak counts only when above the srtt.
        assert_eq!(fast.slowest(), ms(12));
        fast.peak = ms(5);
        assert_eq!(fast.slowest(), ms(10));
    }

    #[test]
    fn tiers_and_penalties_are_honoured() {
        let mut p = RttPolicy::new(0.3, Duration::ZERO);
        // Never onto a higher tier, however fast.
        let mut backup = c(2, 1);
        backup.preference = StreamPreference::backup();
        let all = [c(1, 300), backup];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        // Always back to a lower tier, even a slower one.
        let mut on_backup = c(1, 10);
        on_backup.preference = StreamPreference::backup();
        let all = [on_backup, c(2, 80)];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
        // A penalty must be paid for: 100 ms + 200 ms penalty loses to 300.
        let mut tor = c(2, 100);
        tor.preference = StreamPreference::with_penalty(ms(200));
        let all = [c(1, 300), tor];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        let all = [c(1, 500), tor];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), StreamId::new(2));
    }

    #[test]
    fn too_few_samples_never_move() {
        let mut p = RttPolicy::new(0.3, Duration::ZERO);
        let mut fresh = c(2, 1);
        fresh.samples = 2;
        let all = [c(1, 300), fresh];
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
    }

    #[test]
    fn alternating_rtts_do_not_flap() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(5));
        for s in 0..60 {
            // Every other second the faster stream looks slow again.
            let other = if s % 2 == 0 { c(2, 10) } else { c(2, 100) };
            let all = [c(1, 100), other];
            assert_eq!(p.migrate_target(t(s), &all[0], &all), None, "second {s}");
        }
    }
}
