//! Stream choice and automatic migration (design §9).
//!
//! The engine asks a [`Policy`] which stream a new or recovering session
//! takes and, every `policy_interval`, whether sessions should move to a
//! better stream. Policies must be deterministic: same inputs, same answers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{StreamId, Timestamp};

/// What a policy sees of one usable stream to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The stream.
    pub id: StreamId,
    /// Smoothed RTT (zero before the first sample).
    pub srtt: Duration,
    /// RTT samples taken so far.
    pub samples: u32,
    /// When the handshake completed.
    pub established_at: Timestamp,
    /// Sessions currently sending on it.
    pub sessions: usize,
}

/// Decides where sessions go. Implementations must be deterministic.
pub trait Policy: Send + std::fmt::Debug {
    /// The stream a new (or recovering) session should use, among usable
    /// streams to its peer (the engine never asks with none; `None` then).
    fn choose(&mut self, candidates: &[Candidate]) -> Option<StreamId>;

    /// Called every `policy_interval` for each stream that carries sessions
    /// while other usable streams to the same peer exist. Returning
    /// `Some(target)` moves every open session of `current` to `target`.
    fn migrate_target(
        &mut self,
        now: Timestamp,
        current: &Candidate,
        candidates: &[Candidate],
    ) -> Option<StreamId>;

    /// Forget state about a stream that went away.
    fn forget(&mut self, _stream: StreamId) {}
}

/// Default policy: lowest smoothed RTT, then oldest; migrate only to a
/// stream that has been at least `gain` faster for `sustain` (hysteresis).
#[derive(Debug, Clone)]
pub struct RttPolicy {
    /// Required relative improvement, e.g. 0.3 = 30 % lower smoothed RTT.
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

    fn rank(c: &Candidate) -> (u8, Duration, Timestamp, StreamId) {
        // Streams without an RTT sample rank after measured ones.
        (u8::from(c.samples == 0), c.srtt, c.established_at, c.id)
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
            .filter(|c| c.id != current.id && c.samples >= self.min_samples)
            .min_by_key(|c| Self::rank(c))?;
        let clearly_better = current.samples >= self.min_samples
            && best.srtt.as_secs_f64() < current.srtt.as_secs_f64() * (1.0 - self.gain);
        if !clearly_better {
            self.better_since.remove(&current.id);
            return None;
        }
        match self.better_since.get(&current.id) {
            Some(&(target, since)) if target == best.id => {
                if now.saturating_duration_since(since) >= self.sustain {
                    self.better_since.remove(&current.id);
                    Some(best.id)
                } else {
                    None
                }
            }
            _ => {
                self.better_since.insert(current.id, (best.id, now));
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

    fn c(id: u64, ms: u64) -> Candidate {
        Candidate {
            id: StreamId::new(id).unwrap(),
            srtt: Duration::from_millis(ms),
            samples: 10,
            established_at: Timestamp::from_nanos(id),
            sessions: 1,
        }
    }

    #[test]
    fn chooses_lowest_rtt_then_oldest() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(5));
        assert_eq!(p.choose(&[c(1, 50), c(2, 10), c(3, 10)]), StreamId::new(2));
    }

    #[test]
    fn migrates_only_after_sustained_gain() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(5));
        let all = [c(1, 100), c(2, 10)];
        let t = |s: u64| Timestamp::from_nanos(s * 1_000_000_000);
        assert_eq!(p.migrate_target(t(0), &all[0], &all), None);
        assert_eq!(p.migrate_target(t(3), &all[0], &all), None);
        assert_eq!(p.migrate_target(t(5), &all[0], &all), StreamId::new(2));
    }

    #[test]
    fn alternating_rtts_do_not_flap() {
        let mut p = RttPolicy::new(0.3, Duration::from_secs(5));
        let t = |s: u64| Timestamp::from_nanos(s * 1_000_000_000);
        for s in 0..60 {
            // Every other second the faster stream looks slow again.
            let other = if s % 2 == 0 { c(2, 10) } else { c(2, 100) };
            let all = [c(1, 100), other];
            assert_eq!(p.migrate_target(t(s), &all[0], &all), None, "second {s}");
        }
    }
}
