//! Timer tables: one ordered set of `(deadline, timer)` per owner.
//!
//! Entries are lazy: when one fires, its owner re-checks the real deadline
//! (kept in the state it belongs to, e.g. a session's `Recovering` phase)
//! and ignores a stale entry, so hot paths (a record arriving) never touch
//! the table. Ties are broken by the timer's order: deterministic.

use std::collections::BTreeSet;

use crate::{SessionId, StreamId, Timestamp};

/// Timers of a per-peer engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EngineTimer {
    /// Keep-alive ping, probe and dead-stream check of one stream.
    Liveness(StreamId),
    /// Routing, pending-decision or recovery deadline of a session; the
    /// deadline itself lives in the session's phase.
    SessionDeadline(SessionId),
    /// Expiry of remembered closed sessions.
    TimeWait,
    /// Evaluation of the automatic migration policy.
    Policy,
    /// Delayed credit of sessions that consumed less than the batching
    /// threshold.
    LazyCredit,
}

/// Timers of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EndpointTimer {
    /// Deadline of one stream's handshake.
    Handshake(StreamId),
}

/// An ordered set of `(deadline, timer)`.
#[derive(Debug)]
pub(crate) struct TimerTable<K> {
    set: BTreeSet<(Timestamp, K)>,
}

impl<K> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            set: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// Arms `key` at `at` ([`Timestamp::MAX`] means never).
    pub fn arm(&mut self, at: Timestamp, key: K) {
        if at != Timestamp::MAX {
            self.set.insert((at, key));
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest entry due at `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<K> {
        match self.set.first() {
            Some(&(t, _)) if t <= now => self.set.pop_first().map(|(_, k)| k),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_and_only_when_due() {
        let mut t = TimerTable::default();
        t.arm(Timestamp::from_nanos(20), EngineTimer::Policy);
        t.arm(Timestamp::from_nanos(10), EngineTimer::TimeWait);
        t.arm(Timestamp::MAX, EngineTimer::Policy);
        assert_eq!(t.next_deadline(), Some(Timestamp::from_nanos(10)));
        assert_eq!(t.pop_due(Timestamp::from_nanos(5)), None);
        assert_eq!(
            t.pop_due(Timestamp::from_nanos(30)),
            Some(EngineTimer::TimeWait)
        );
        assert_eq!(
            t.pop_due(Timestamp::from_nanos(30)),
            Some(EngineTimer::Policy)
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn same_deadline_orders_by_timer() {
        let mut t = TimerTable::default();
        let at = Timestamp::from_nanos(1);
        t.arm(at, EngineTimer::LazyCredit);
        t.arm(at, EngineTimer::TimeWait);
        assert_eq!(t.pop_due(at), Some(EngineTimer::TimeWait));
        assert_eq!(t.pop_due(at), Some(EngineTimer::LazyCredit));
    }
}
