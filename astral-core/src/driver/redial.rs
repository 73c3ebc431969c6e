//! Redialing: the backoff, and which remembered dials are due.
//!
//! The rule, the same in every driver: a dial the application made
//! (`connect`) is remembered once its first stream came up. When a stream
//! of a remembered dial ends for any reason but the application closing or
//! draining it on purpose, the address is dialed again after
//! [`Backoff::delay`] (the attempt counting failures since the dial was
//! last up), until a stream for it is up again or the dial is retired. A
//! dial whose first stream never came up is forgotten: the application saw
//! the error from its `connect`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{NodeId, StreamId, Timestamp};

/// Exponential backoff with jitter for redialing a remembered address.
///
/// ```
/// use astral_core::driver::Backoff;
/// use std::time::Duration;
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!(b.delay(0, 0), Duration::from_millis(100));
/// assert_eq!(b.delay(10, 0), Duration::from_secs(5));
/// assert!(b.delay(2, u64::MAX) <= Duration::from_millis(500));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Delays from `min` doubling to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
        }
    }

    /// The delay before attempt `attempt` (0 = the first redial), with up
    /// to +25 % jitter drawn from `random` (use the node's generator, so
    /// runs stay reproducible), never above `max`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let jitter = base / 4;
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(random % (jitter.as_nanos() as u64).max(1))
        };
        (base + extra).min(self.max)
    }
}

/// A dial the application asked for ([`Redialer::dial`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DialId(u64);

/// Where a remembered dial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialState {
    /// The driver is connecting its transport (no stream yet).
    Connecting,
    /// A stream carries it (handshaking or established).
    Carried(StreamId),
    /// Its stream ended: dial again at this time.
    Waiting(Timestamp),
}

#[derive(Debug)]
struct Dial<A> {
    peer: NodeId,
    addr: A,
    state: DialState,
    /// A stream of this dial came up at least once.
    was_up: bool,
    /// Attempts that failed since it was last up.
    failures: u32,
}

/// The dials a driver keeps up, and when to redial them (see the module
/// documentation for the rule). Sans-IO: the driver connects, and reports
/// what happened; `A` is its address type.
///
/// ```
/// use astral_core::driver::{Backoff, Redialer};
/// use astral_core::{Identity, StreamId, Timestamp};
/// use std::time::Duration;
/// let peer = Identity::from_seed([2; 32]).node_id();
/// let stream = StreamId::new(1).unwrap();
/// let mut r = Redialer::new(Some(Backoff::new(Duration::from_millis(100), Duration::from_secs(5))));
/// let d = r.dial(peer, "10.0.0.2:4000");
/// r.attached(d, stream);
/// r.up(stream);
/// r.stream_down(Timestamp::ZERO, stream, 0); // it broke
/// assert_eq!(r.next_deadline(), Some(Timestamp::ZERO + Duration::from_millis(100)));
/// let due = Timestamp::ZERO + Duration::from_millis(100);
/// assert_eq!(r.poll_due(due), Some((d, peer, "10.0.0.2:4000")));
/// ```
#[derive(Debug)]
pub struct Redialer<A> {
    backoff: Option<Backoff>,
    next: u64,
    dials: BTreeMap<DialId, Dial<A>>,
    by_stream: BTreeMap<StreamId, DialId>,
}

impl<A: Clone> Redialer<A> {
    /// Redials with `backoff`; `None` never redials.
    pub fn new(backoff: Option<Backoff>) -> Redialer<A> {
        Redialer {
            backoff,
            next: 0,
            dials: BTreeMap::new(),
            by_stream: BTreeMap::new(),
        }
    }

    /// Changes the backoff; `None` stops redialing (dials waiting for their
    /// next attempt are forgotten).
    pub fn set_backoff(&mut self, backoff: Option<Backoff>) {
        self.backoff = backoff;
        if backoff.is_none() {
            self.dials
                .retain(|_, d| !matches!(d.state, DialState::Waiting(_)));
        }
    }

    /// The backoff in force.
    pub fn backoff(&self) -> Option<Backoff> {
        self.backoff
    }

    /// The application dials `peer` at `addr`; the driver is connecting.
    pub fn dial(&mut self, peer: NodeId, addr: A) -> DialId {
        let id = DialId(self.next);
        self.next += 1;
        self.dials.insert(
            id,
            Dial {
                peer,
                addr,
                state: DialState::Connecting,
                was_up: false,
                failures: 0,
            },
        );
        id
    }

    /// The transport of dial `d` connected and carries `stream` (its
    /// handshake started).
    pub fn attached(&mut self, d: DialId, stream: StreamId) {
        if let Some(dial) = self.dials.get_mut(&d) {
            dial.state = DialState::Carried(stream);
            self.by_stream.insert(stream, d);
        }
    }

    /// `stream` is up (established and confirmed): its dial is remembered
    /// and its failures are forgotten.
    pub fn up(&mut self, stream: StreamId) {
        if let Some(dial) = self
            .by_stream
            .get(&stream)
            .and_then(|d| self.dials.get_mut(d))
        {
            dial.was_up = true;
            dial.failures = 0;
        }
    }

    /// Connecting the transport of dial `d` failed (no stream existed).
    /// `random` feeds the jitter (use the node's generator).
    pub fn failed(&mut self, now: Timestamp, d: DialId, random: u64) {
        self.reschedule(now, d, random);
    }

    /// `stream` ended (`Event::StreamDown`). If it carried a remembered
    /// dial, the dial waits for its next attempt.
    pub fn stream_down(&mut self, now: Timestamp, stream: StreamId, random: u64) {
        if let Some(d) = self.by_stream.remove(&stream) {
            if self
                .dials
                .get(&d)
                .is_some_and(|x| x.state == DialState::Carried(stream))
            {
                self.reschedule(now, d, random);
            }
        }
    }

    fn reschedule(&mut self, now: Timestamp, d: DialId, random: u64) {
        let Some(dial) = self.dials.get_mut(&d) else {
            return;
        };
        match self.backoff {
            Some(b) if dial.was_up => {
                dial.state = DialState::Waiting(now + b.delay(dial.failures, random));
                dial.failures = dial.failures.saturating_add(1);
            }
            // Never up: the application saw the failure; or no redial.
            _ => {
                self.dials.remove(&d);
            }
        }
    }

    /// The application closed or drained `stream` on purpose: its dial is
    /// forgotten. Returns whether it carried one.
    pub fn retire_stream(&mut self, stream: StreamId) -> bool {
        match self.by_stream.remove(&stream) {
            Some(d) => {
                self.dials.remove(&d);
                true
            }
            None => false,
        }
    }

    /// Forgets dial `d`.
    pub fn retire(&mut self, d: DialId) {
        if let Some(dial) = self.dials.remove(&d) {
            if let DialState::Carried(s) = dial.state {
                self.by_stream.remove(&s);
            }
        }
    }

    /// When [`Redialer::poll_due`] next has something.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.dials
            .values()
            .filter_map(|d| match d.state {
                DialState::Waiting(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// A dial whose wait is over, to connect now (it is then connecting:
    /// report [`Redialer::attached`] or [`Redialer::failed`]).
    pub fn poll_due(&mut self, now: Timestamp) -> Option<(DialId, NodeId, A)> {
        let (&id, dial) = self
            .dials
            .iter_mut()
            .filter(|(_, d)| matches!(d.state, DialState::Waiting(t) if t <= now))
            .min_by_key(|(_, d)| match d.state {
                DialState::Waiting(t) => t,
                _ => Timestamp::MAX,
            })?;
        dial.state = DialState::Connecting;
        Some((id, dial.peer, dial.addr.clone()))
    }

    /// Whether a dial of `peer` is remembered (connecting, carried by a
    /// stream, or waiting for its next attempt): a stream to it may come
    /// up without the application dialing again.
    pub fn dialing(&self, peer: NodeId) -> bool {
        self.dials.values().any(|d| d.peer == peer)
    }

    /// Number of remembered dials (waiting, connecting or carried).
    pub fn len(&self) -> usize {
        self.dials.len()
    }

    /// Whether no dial is remembered.
    pub fn is_empty(&self) -> bool {
        self.dials.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(b.delay(1, 0), Duration::from_millis(200));
        for r in [1, 7, u64::MAX] {
            let d = b.delay(3, r);
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
        }
        assert_eq!(b.delay(40, 3), Duration::from_secs(5));
    }

    fn sid(n: u64) -> StreamId {
        StreamId::new(n).unwrap()
    }

    fn peer() -> NodeId {
        crate::Identity::from_seed([9; 32]).node_id()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn dialing_covers_every_state_of_a_remembered_dial() {
        let mut r = Redialer::new(Some(Backoff::new(ms(100), ms(1000))));
        let other = crate::Identity::from_seed([8; 32]).node_id();
        assert!(!r.dialing(peer()));
        let d = r.dial(peer(), "a");
        assert!(r.dialing(peer()) && !r.dialing(other), "connecting");
        r.attached(d, sid(1));
        r.up(sid(1));
        assert!(r.dialing(peer()), "carried");
        r.stream_down(Timestamp::ZERO, sid(1), 0);
        assert!(r.dialing(peer()), "waiting");
        r.retire(d);
        assert!(!r.dialing(peer()), "retired");
    }

    #[test]
    fn a_broken_stream_is_redialed_with_growing_delays_until_up() {
        let t0 = Timestamp::ZERO;
        let mut r = Redialer::new(Some(Backoff::new(ms(100), ms(1000))));
        let d = r.dial(peer(), 7u16);
        r.attached(d, sid(1));
        r.up(sid(1));
        r.stream_down(t0, sid(1), 0);
        assert_eq!(r.next_deadline(), Some(t0 + ms(100)));
        assert_eq!(r.poll_due(t0 + ms(99)), None);
        assert_eq!(r.poll_due(t0 + ms(100)), Some((d, peer(), 7)));
        assert_eq!(r.next_deadline(), None, "connecting");
        r.failed(t0 + ms(100), d, 0);
        assert_eq!(r.next_deadline(), Some(t0 + ms(300)), "doubled");
        assert!(r.poll_due(t0 + ms(300)).is_some());
        r.attached(d, sid(2));
        r.stream_down(t0 + ms(300), sid(2), 0); // handshake failed
        assert_eq!(r.next_deadline(), Some(t0 + ms(700)));
        assert!(r.poll_due(t0 + ms(700)).is_some());
        r.attached(d, sid(3));
        r.up(sid(3));
        r.stream_down(t0 + ms(800), sid(3), 0);
        assert_eq!(r.next_deadline(), Some(t0 + ms(900)), "reset once up");
    }

    #[test]
    fn dials_never_up_or_closed_on_purpose_are_forgotten() {
        let t0 = Timestamp::ZERO;
        let mut r = Redialer::new(Some(Backoff::default()));
        let a = r.dial(peer(), 1u8);
        r.failed(t0, a, 0);
        let b = r.dial(peer(), 2u8);
        r.attached(b, sid(5));
        r.stream_down(t0, sid(5), 0);
        assert!(r.is_empty(), "the application saw these fail");
        let c = r.dial(peer(), 3u8);
        r.attached(c, sid(6));
        r.up(sid(6));
        assert!(r.retire_stream(sid(6)));
        r.stream_down(t0, sid(6), 0);
        assert!(r.is_empty());
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn no_backoff_no_redial() {
        let t0 = Timestamp::ZERO;
        let mut r = Redialer::new(Some(Backoff::default()));
        let d = r.dial(peer(), ());
        r.attached(d, sid(1));
        r.up(sid(1));
        r.stream_down(t0, sid(1), 0);
        assert_eq!(r.len(), 1);
        r.set_backoff(None);
        assert!(r.is_empty());
        let d = r.dial(peer(), ());
        r.attached(d, sid(2));
        r.up(sid(2));
        r.stream_down(t0, sid(2), 0);
        assert!(r.is_empty());
    }
}
