//! Handshake admission: which inbound handshakes the endpoint serves now,
//! which wait for their turn, and which it gives up when the node is full.
//!
//! An inbound transport is a stranger until message 3 of its handshake
//! names its identity, and strangers cost nothing to make. What the
//! endpoint knows of one before that is where it comes from: a [`Source`],
//! two opaque keys its driver derives from the peer's address (the address
//! itself and its network, a /24 for IPv4 or a /64 for IPv6, since one
//! party often holds a whole prefix). The model, like a listen backlog
//! with fair service per source:
//!
//! - **Active** handshakes have their Noise state and are served. At most
//!   `max_handshaking_streams` over the node, `max_handshakes_per_address`
//!   per address and `max_handshakes_per_prefix` per prefix.
//! - **Waiting** ones are accepted transports whose bytes (at most one
//!   handshake message) are kept without any Noise state, until a slot
//!   their source may use frees. The next one served is the one whose
//!   prefix, then address, holds the fewest active handshakes (then the
//!   oldest): a source that floods waits behind its own flood, and a
//!   newcomer from elsewhere is served at once.
//! - **Under pressure** (someone waits), an active handshake gets
//!   `handshake_timeout_under_pressure` from its activation instead of
//!   `handshake_timeout`, so stalled handshakes give their slot up quickly.
//! - **Eviction**: every handshake holds one of the node's `max_streams`
//!   stream slots. When none is free, a newcomer is not refused: the
//!   stalest handshake (the longest without progress) of the address that
//!   holds the most handshakes in the prefix that holds the most is
//!   evicted to make room. A flood from one place evicts itself.
//!
//! Transports without an address (`accept` instead of `accept_from`:
//! in-memory pipes, Unix sockets) share one anonymous source, bounded only
//! by the node-wide limit.
//!
//! Everything is ordered (`BTreeMap`, ties broken by stream id), so the
//! same inputs make the same decisions: the core stays deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::{Config, StreamId, Timestamp};

/// An opaque key naming where transports come from. The endpoint only
/// compares keys; [`Source::from_ip`] builds them from addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceKey(pub u128);

/// Where an inbound transport comes from, as its driver knows it: the
/// sender's address and the network it belongs to.
///
/// ```
/// use astral_core::Source;
/// let a = Source::from_ip("192.0.2.7".parse().unwrap());
/// let b = Source::from_ip("192.0.2.200".parse().unwrap());
/// let c = Source::from_ip("::ffff:192.0.2.7".parse().unwrap());
/// assert_ne!(a.host, b.host);
/// assert_eq!(a.prefix, b.prefix); // the same /24
/// assert_eq!(a, c); // an IPv4-mapped address is the IPv4 host
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// The sending host (its address).
    pub host: SourceKey,
    /// Its network (IPv4 /24, IPv6 /64).
    pub prefix: SourceKey,
}

impl Source {
    /// A source from keys the driver chose (for transports whose origin is
    /// not an IP address). Hosts of one prefix must share `prefix`.
    pub fn new(host: SourceKey, prefix: SourceKey) -> Source {
        Source { host, prefix }
    }

    /// The source of a peer at `ip`: the host is the address (an
    /// IPv4-mapped IPv6 address counts as its IPv4 address), the prefix its
    /// /24 (IPv4) or /64 (IPv6). IPv4 and IPv6 keys never collide.
    pub fn from_ip(ip: IpAddr) -> Source {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                // ::ffff:a.b.c.d; the prefix clears d. Its low 64 bits are
                // never zero, so it differs from every IPv6 /64 key.
                let host = u128::from(v4.to_ipv6_mapped());
                Source::new(SourceKey(host), SourceKey(host & !0xff))
            }
            IpAddr::V6(v6) => {
                let host = u128::from(v6);
                Source::new(SourceKey(host), SourceKey(host & !u128::from(u64::MAX)))
            }
        }
    }

    /// [`Source::from_ip`] of the address (the port does not matter).
    pub fn from_addr(addr: SocketAddr) -> Source {
        Source::from_ip(addr.ip())
    }
}

/// Counters of the endpoint's admission, for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Inbound handshakes being served now.
    pub active: usize,
    /// Inbound transports waiting for a handshake slot now.
    pub waiting: usize,
    /// Inbound transports admitted (active at once or after waiting).
    pub admitted: u64,
    /// Of those, how many had to wait for a slot.
    pub waited: u64,
    /// Handshakes evicted to make room for a newcomer.
    pub evicted: u64,
    /// Inbound handshakes that did not finish in time (either deadline).
    pub timed_out: u64,
    /// Of those, how many ran out of the shorter deadline under pressure.
    pub timed_out_under_pressure: u64,
    /// Inbound transports refused outright (every stream slot held by
    /// established streams or our own dials: nothing to evict).
    pub refused: u64,
    /// Handshakes that completed but whose identity the accept policy
    /// refused.
    pub not_allowed: u64,
    /// Inbound handshakes completed and handed to an engine.
    pub completed: u64,
}

/// What [`Admission::admit`] decided for a newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// It has a slot: start its handshake now.
    Active,
    /// It waits for a slot; keep its bytes.
    Waiting,
}

/// Active and waiting entries of one address or prefix.
#[derive(Clone, Copy, Debug, Default)]
struct Count {
    active: usize,
    waiting: usize,
}

impl Count {
    fn total(self) -> usize {
        self.active + self.waiting
    }
}

/// An inbound handshake the admission tracks.
#[derive(Clone, Copy, Debug)]
struct Entry {
    source: Option<Source>,
    arrived: Timestamp,
    /// When it got its slot; `None` while it waits.
    activated: Option<Timestamp>,
    /// The last time it advanced: arrival, or a handshake message read or
    /// written. Eviction takes the entry with the oldest.
    progress: Timestamp,
}

impl Entry {
    fn host(&self) -> Option<SourceKey> {
        self.source.map(|s| s.host)
    }

    fn prefix(&self) -> Option<SourceKey> {
        self.source.map(|s| s.prefix)
    }
}

/// The limits of [`Config`] the admission applies.
#[derive(Clone, Copy, Debug)]
struct Limits {
    active: usize,
    per_address: usize,
    per_prefix: usize,
    timeout: Duration,
    pressure_timeout: Duration,
}

/// The admission state of the endpoint's inbound handshakes. See the
/// module documentation.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    entries: BTreeMap<StreamId, Entry>,
    /// Counts by address (`None`: transports without an address).
    hosts: BTreeMap<Option<SourceKey>, Count>,
    /// Counts by prefix (`None` likewise).
    prefixes: BTreeMap<Option<SourceKey>, Count>,
    active: usize,
    /// Active entries by activation time: the first one's is the pressure
    /// deadline.
    by_activation: BTreeSet<(Timestamp, StreamId)>,
    /// Waiting entries per address, oldest first.
    queues: BTreeMap<Option<SourceKey>, VecDeque<StreamId>>,
    waiting: usize,
    stats: AdmissionStats,
}

impl Admission {
    pub fn new(config: &Config) -> Admission {
        Admission {
            limits: Limits {
                active: config.max_handshaking_streams,
                per_address: config.max_handshakes_per_address,
                per_prefix: config.max_handshakes_per_prefix,
                timeout: config.handshake_timeout,
                pressure_timeout: config
                    .handshake_timeout_under_pressure
                    .min(config.handshake_timeout),
            },
            entries: BTreeMap::new(),
            hosts: BTreeMap::new(),
            prefixes: BTreeMap::new(),
            active: 0,
            by_activation: BTreeSet::new(),
            queues: BTreeMap::new(),
            waiting: 0,
            stats: AdmissionStats::default(),
        }
    }

    /// Registers a newcomer and decides whether it is served now.
    pub fn admit(&mut self, now: Timestamp, id: StreamId, source: Option<Source>) -> Admitted {
        let entry = Entry {
            source,
            arrived: now,
            activated: None,
            progress: now,
        };
        self.entries.insert(id, entry);
        self.stats.admitted += 1;
        if self.may_activate(&entry) {
            self.activate(now, id);
            Admitted::Active
        } else {
            self.count(&entry, |c| c.waiting += 1);
            self.waiting += 1;
            self.queues.entry(entry.host()).or_default().push_back(id);
            self.stats.waited += 1;
            Admitted::Waiting
        }
    }

    /// Whether a slot is free for an entry from `e`'s source.
    fn may_activate(&self, e: &Entry) -> bool {
        if self.active >= self.limits.active {
            return false;
        }
        if e.source.is_none() {
            // Nothing to tell anonymous transports apart: node-wide only.
            return true;
        }
        let host = self.hosts.get(&e.host()).map_or(0, |c| c.active);
        let prefix = self.prefixes.get(&e.prefix()).map_or(0, |c| c.active);
        host < self.limits.per_address && prefix < self.limits.per_prefix
    }

    fn count(&mut self, e: &Entry, f: impl Fn(&mut Count)) {
        f(self.hosts.entry(e.host()).or_default());
        f(self.prefixes.entry(e.prefix()).or_default());
    }

    /// Gives `id` its slot (it must be registered and not active).
    fn activate(&mut self, now: Timestamp, id: StreamId) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        e.activated = Some(now);
        e.progress = now;
        let e = *e;
        self.count(&e, |c| c.active += 1);
        self.active += 1;
        self.by_activation.insert((now, id));
    }

    /// The next waiting entry a free slot serves, if any may be served:
    /// the one whose prefix, then address, holds the fewest active
    /// handshakes, then the oldest. Marks it active.
    pub fn promote(&mut self, now: Timestamp) -> Option<StreamId> {
        if self.waiting == 0 || self.active >= self.limits.active {
            return None;
        }
        // (prefix's active, address's active, arrival, id)
        let mut best: Option<(usize, usize, Timestamp, StreamId)> = None;
        for queue in self.queues.values() {
            let Some(&id) = queue.front() else {
                continue;
            };
            let Some(e) = self.entries.get(&id) else {
                continue;
            };
            if !self.may_activate(e) {
                continue;
            }
            let key = (
                self.prefixes.get(&e.prefix()).map_or(0, |c| c.active),
                self.hosts.get(&e.host()).map_or(0, |c| c.active),
                e.arrived,
                id,
            );
            if best.is_none_or(|k| key < k) {
                best = Some(key);
            }
        }
        let (_, _, _, id) = best?;
        let e = *self.entries.get(&id)?;
        if let Some(q) = self.queues.get_mut(&e.host()) {
            q.pop_front();
            if q.is_empty() {
                self.queues.remove(&e.host());
            }
        }
        self.count(&e, |c| c.waiting -= 1);
        self.waiting -= 1;
        self.activate(now, id);
        Some(id)
    }

    /// The handshake of `id` advanced (a message read or written).
    pub fn progress(&mut self, now: Timestamp, id: StreamId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.progress = now;
        }
    }

    /// Forgets `id` (completed, failed, timed out or evicted); returns its
    /// source if it was an inbound handshake.
    pub fn remove(&mut self, id: StreamId) -> Option<Option<Source>> {
        let e = self.entries.remove(&id)?;
        match e.activated {
            Some(at) => {
                self.count(&e, |c| c.active -= 1);
                self.active -= 1;
                self.by_activation.remove(&(at, id));
            }
            None => {
                self.count(&e, |c| c.waiting -= 1);
                self.waiting -= 1;
                if let Some(q) = self.queues.get_mut(&e.host()) {
                    q.retain(|x| *x != id);
                    if q.is_empty() {
                        self.queues.remove(&e.host());
                    }
                }
            }
        }
        if self.hosts.get(&e.host()).is_some_and(|c| c.total() == 0) {
            self.hosts.remove(&e.host());
        }
        if self
            .prefixes
            .get(&e.prefix())
            .is_some_and(|c| c.total() == 0)
        {
            self.prefixes.remove(&e.prefix());
        }
        Some(e.source)
    }

    /// The handshake to evict so that a newcomer gets a stream slot: the
    /// stalest entry of the busiest address of the busiest prefix. `None`
    /// when there is no inbound handshake at all.
    pub fn victim(&self) -> Option<StreamId> {
        let (&prefix, _) = self
            .prefixes
            .iter()
            .max_by(|a, b| a.1.total().cmp(&b.1.total()).then(b.0.cmp(a.0)))?;
        // (busiest address first, then oldest progress, then lowest id)
        let mut best: Option<(std::cmp::Reverse<usize>, Timestamp, StreamId)> = None;
        for (&id, e) in &self.entries {
            if e.prefix() != prefix {
                continue;
            }
            let host = self.hosts.get(&e.host()).map_or(0, |c| c.total());
            let key = (std::cmp::Reverse(host), e.progress, id);
            if best.is_none_or(|k| key < k) {
                best = Some(key);
            }
        }
        best.map(|(_, _, id)| id)
    }

    /// When `id`'s handshake must have finished: `handshake_timeout` after
    /// its arrival while it waits, after its activation once served. (The
    /// shorter deadline under pressure is [`Admission::pressure_deadline`].)
    pub fn deadline(&self, id: StreamId) -> Option<Timestamp> {
        let e = self.entries.get(&id)?;
        Some(e.activated.unwrap_or(e.arrived) + self.limits.timeout)
    }

    /// The next active handshake to run out of
    /// `handshake_timeout_under_pressure`, and when: the oldest of those
    /// someone waits for, i.e. every active one while the node-wide cap
    /// holds newcomers back, otherwise those whose address or prefix has
    /// streams waiting. (A handshake nobody waits for keeps its full
    /// deadline: a stalled source does not shorten others' deadlines.)
    pub fn pressure_deadline(&self) -> Option<(Timestamp, StreamId)> {
        if self.waiting == 0 {
            return None;
        }
        let node_full = self.active >= self.limits.active;
        let waits = |map: &BTreeMap<Option<SourceKey>, Count>, k| {
            map.get(&k).is_some_and(|c: &Count| c.waiting > 0)
        };
        self.by_activation.iter().find_map(|&(at, id)| {
            let e = self.entries.get(&id)?;
            (node_full || waits(&self.hosts, e.host()) || waits(&self.prefixes, e.prefix()))
                .then_some((at + self.limits.pressure_timeout, id))
        })
    }

    /// Counts an event in the statistics.
    pub fn stats_mut(&mut self) -> &mut AdmissionStats {
        &mut self.stats
    }

    /// The counters, with the current active and waiting counts.
    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            active: self.active,
            waiting: self.waiting,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            max_handshaking_streams: 4,
            max_handshakes_per_address: 2,
            max_handshakes_per_prefix: 3,
            handshake_timeout: Duration::from_secs(10),
            handshake_timeout_under_pressure: Duration::from_secs(2),
            ..Config::default()
        }
    }

    fn ip(s: &str) -> Option<Source> {
        Some(Source::from_ip(s.parse().unwrap()))
    }

    fn sid(n: u64) -> StreamId {
        StreamId::new(n).unwrap()
    }

    fn at(s: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_secs(s)
    }

    #[test]
    fn source_keys_follow_prefixes_and_never_mix_families() {
        let a = Source::from_ip("10.1.2.3".parse().unwrap());
        let b = Source::from_ip("10.1.2.4".parse().unwrap());
        let c = Source::from_ip("10.1.3.3".parse().unwrap());
        assert_eq!(a.prefix, b.prefix);
        assert_ne!(a.prefix, c.prefix);
        let v6a = Source::from_ip("2001:db8::1".parse().unwrap());
        let v6b = Source::from_ip("2001:db8::ffff:1".parse().unwrap());
        let v6c = Source::from_ip("2001:db8:0:1::1".parse().unwrap());
        assert_ne!(v6a.host, v6b.host);
        assert_eq!(v6a.prefix, v6b.prefix, "one /64");
        assert_ne!(v6a.prefix, v6c.prefix);
        // 0.0.0.0/24 against ::/64: different keys.
        let zero4 = Source::from_ip("0.0.0.1".parse().unwrap());
        let zero6 = Source::from_ip("::2".parse().unwrap());
        assert_ne!(zero4.prefix, zero6.prefix);
        assert_ne!(zero4.host, zero6.host);
        let mapped = Source::from_addr("[::ffff:10.1.2.3]:9".parse().unwrap());
        assert_eq!(mapped, a);
    }

    #[test]
    fn per_address_prefix_and_node_caps_make_newcomers_wait() {
        let mut a = Admission::new(&config());
        let t = at(0);
        assert_eq!(a.admit(t, sid(1), ip("10.0.0.1")), Admitted::Active);
        assert_eq!(a.admit(t, sid(2), ip("10.0.0.1")), Admitted::Active);
        // Per address: 2.
        assert_eq!(a.admit(t, sid(3), ip("10.0.0.1")), Admitted::Waiting);
        // Per prefix: 3.
        assert_eq!(a.admit(t, sid(4), ip("10.0.0.2")), Admitted::Active);
        assert_eq!(a.admit(t, sid(5), ip("10.0.0.3")), Admitted::Waiting);
        // Another prefix is served; then the node-wide cap of 4 binds.
        assert_eq!(a.admit(t, sid(6), ip("10.9.0.1")), Admitted::Active);
        assert_eq!(a.admit(t, sid(7), ip("10.8.0.1")), Admitted::Waiting);
        assert_eq!(a.admit(t, sid(8), None), Admitted::Waiting);
        let s = a.stats();
        assert_eq!((s.active, s.waiting, s.admitted, s.waited), (4, 4, 8, 4));
    }

    #[test]
    fn a_freed_slot_serves_the_source_with_fewest_active_first() {
        let mut a = Admission::new(&config());
        let t = at(0);
        for n in 1..=3 {
            a.admit(t, sid(n), ip("10.0.0.1"));
        }
        a.admit(t, sid(4), ip("10.0.0.2")); // active (prefix 2 of 3)
        a.admit(t, sid(5), ip("10.7.0.1")); // active (node 4 of 4)
        a.admit(at(1), sid(6), ip("10.6.0.1")); // waits, later, other prefix
        assert_eq!(a.promote(at(2)), None, "no slot free");
        a.remove(sid(4));
        // 10.0.0.1's stream 3 waited longer, but its prefix holds 2 active
        // and 10.6.0.0/24 none.
        assert_eq!(a.promote(at(2)), Some(sid(6)));
        a.remove(sid(5));
        assert_eq!(a.promote(at(2)), None, "10.0.0.1 is at its cap of 2");
        a.remove(sid(1));
        assert_eq!(a.promote(at(3)), Some(sid(3)));
        assert_eq!(a.stats().waiting, 0);
        assert!(a.queues.is_empty());
    }

    #[test]
    fn the_victim_is_the_stalest_of_the_busiest_source() {
        let mut a = Admission::new(&config());
        a.admit(at(0), sid(1), ip("10.0.0.9"));
        a.admit(at(1), sid(2), ip("10.0.0.1"));
        a.admit(at(2), sid(3), ip("10.0.0.1"));
        a.admit(at(3), sid(4), ip("10.0.0.1")); // waits
        a.admit(at(0), sid(5), ip("10.5.0.1"));
        // Busiest prefix 10.0.0.0/24 (4), busiest address in it 10.0.0.1
        // (3): its stalest is stream 2, though stream 1 is older.
        assert_eq!(a.victim(), Some(sid(2)));
        a.progress(at(5), sid(2));
        assert_eq!(a.victim(), Some(sid(3)));
        let empty = Admission::new(&config());
        assert_eq!(empty.victim(), None);
    }

    #[test]
    fn pressure_shortens_the_deadline_of_active_handshakes() {
        let mut a = Admission::new(&config());
        a.admit(at(0), sid(1), ip("10.0.0.1"));
        a.admit(at(1), sid(2), ip("10.0.0.1"));
        assert_eq!(a.pressure_deadline(), None, "nobody waits");
        assert_eq!(a.deadline(sid(1)), Some(at(10)));
        a.admit(at(4), sid(3), ip("10.0.0.1"));
        assert_eq!(a.pressure_deadline(), Some((at(2), sid(1))));
        assert_eq!(a.deadline(sid(3)), Some(at(14)), "waiting: from arrival");
        a.remove(sid(1));
        assert_eq!(a.promote(at(5)), Some(sid(3)));
        assert_eq!(a.deadline(sid(3)), Some(at(15)), "served: from activation");
        assert_eq!(a.pressure_deadline(), None);
    }

    #[test]
    fn pressure_applies_to_the_handshakes_someone_waits_for() {
        let mut a = Admission::new(&config());
        a.admit(at(0), sid(1), ip("10.9.0.1")); // another prefix, oldest
        a.admit(at(1), sid(2), ip("10.0.0.1"));
        a.admit(at(1), sid(3), ip("10.0.0.1"));
        a.admit(at(2), sid(4), ip("10.0.0.1")); // waits for 10.0.0.1's cap
        assert_eq!(
            a.pressure_deadline(),
            Some((at(3), sid(2))),
            "stream 1 holds nothing anyone waits for"
        );
        a.admit(at(2), sid(5), ip("10.8.0.1")); // the node's 4th slot
        a.admit(at(2), sid(6), ip("10.7.0.1")); // waits for the node cap
        assert_eq!(a.pressure_deadline(), Some((at(2), sid(1))));
    }

    #[test]
    fn counts_return_to_zero() {
        let mut a = Admission::new(&config());
        for n in 1..=20 {
            let src = if n % 3 == 0 {
                None
            } else {
                ip(&format!("10.{}.0.{}", n % 2, n % 5))
            };
            a.admit(at(n), sid(n), src);
        }
        for n in (1..=20).rev() {
            a.remove(sid(n));
            while a.promote(at(30)).is_some() {}
        }
        assert_eq!((a.active, a.waiting), (0, 0));
        assert!(a.hosts.is_empty() && a.prefixes.is_empty() && a.queues.is_empty());
        assert!(a.by_activation.is_empty() && a.entries.is_empty());
    }
}
