//! The timer table: one ordered set of `(deadline, key)`.
//!
//! Entries are lazy: the owner re-checks its real deadline when an entry
//! fires and re-arms if it moved, so hot paths (a record arriving) never
//! touch the table. Ordering by key breaks ties deterministically.

use std::collections::BTreeSet;

use crate::{SessionId, StreamId, Timestamp};

/// Tag of a session's routing (or pending-decision) deadline; recovery
/// deadlines are tagged with the session's completed-recovery count.
pub(crate) const ROUTING_TAG: u16 = u16::MAX;

/// What a timer entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// Handshake deadline, keep-alive ping and dead-stream check.
    Stream(StreamId),
    /// Routing or recovery deadline of a session, tagged with the number of
    /// recoveries completed when armed.
    Session(SessionId, u16),
    /// Expiry of remembered closed sessions.
    TimeWait,
    /// Evaluation of the automatic migration policy.
    Policy,
    /// Delayed credit of sessions that consumed less than the batching
    /// threshold.
    LazyCredit,
}

#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    set: BTreeSet<(crate::Timestamp, TimerKey)>,
}

impl TimerTable {
    pub fn arm(&mut self, at: Timestamp, key: TimerKey) {
        if at != Timestamp::MAX {
            self.set.insert((at, key));
        }
    }

    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest entry due at `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, TimerKey)> {
        match self.set.first() {
            Some(&(t, _)) if t <= now => self.set.pop_first(),
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
        t.arm(Timestamp::from_nanos(20), TimerKey::Policy);
        t.arm(Timestamp::from_nanos(10), TimerKey::TimeWait);
        t.arm(Timestamp::MAX, TimerKey::Policy);
        assert_eq!(t.next_deadline(), Some(Timestamp::from_nanos(10)));
        assert_eq!(t.pop_due(Timestamp::from_nanos(5)), None);
        assert_eq!(
            t.pop_due(Timestamp::from_nanos(30)).map(|e| e.1),
            Some(TimerKey::TimeWait)
        );
        assert_eq!(
            t.pop_due(Timestamp::from_nanos(30)).map(|e| e.1),
            Some(TimerKey::Policy)
        );
        assert_eq!(t.len(), 0);
    }
}
