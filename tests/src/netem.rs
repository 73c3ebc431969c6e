//! Network emulation of one path, as a sans-IO component.
//!
//! A [`Netem`] is one direction of a reliable, ordered byte transport (what
//! TCP gives a node): bytes go in with [`Netem::handle_input`] and come out
//! with [`Netem::poll_output`] once their delivery time has come;
//! [`Netem::poll_timeout`] says when the next thing happens. Like a socket it
//! never loses or reorders bytes, so it models what a path does to *timing*:
//!
//! * one-way latency and **order-preserving jitter**: each chunk draws an
//!   extra delay in `0..=jitter`, but is never delivered before the chunk
//!   sent ahead of it (head-of-line blocking, as in TCP). Under steady
//!   traffic the effective delay therefore approaches `latency + jitter`;
//!   sparse traffic sees the whole spread;
//! * bandwidth: chunks are serialised one after another at `bandwidth`
//!   bytes per second;
//! * a transport buffer: [`Netem::room`] is what the sender may still put in
//!   flight, so a full path pushes back on the node (TCP send buffer);
//! * changes over time, scheduled in the [`LinkConfig`] (latency, jitter,
//!   bandwidth, partitions) or applied at once with [`Netem::apply`];
//! * silence (a partition, or one direction of a half-open path): nothing is
//!   delivered and nothing is closed; bytes wait, as TCP retransmits them,
//!   and arrive one latency after the path heals.
//!
//! A simulated link ([`crate::Link`]) is two of them, one per direction,
//! built from one [`LinkConfig`]. Presets: [`LinkConfig::lan`],
//! [`LinkConfig::wifi`], [`LinkConfig::cellular`], [`LinkConfig::tor`].
//!
//! ```
//! use std::time::Duration;
//! use astral_core::Timestamp;
//! use astral_sim::{Delivery, Direction, LinkConfig, Netem};
//!
//! let config = LinkConfig::default()
//!     .latency(Duration::from_millis(10))
//!     .unlimited_bandwidth();
//! let mut path = Netem::new(&config, Direction::AtoB, 1, Timestamp::ZERO);
//! path.handle_input(Timestamp::ZERO, bytes::Bytes::from_static(b"hello"));
//! let at = path.poll_timeout().unwrap();
//! assert_eq!(at, Timestamp::ZERO + Duration::from_millis(10));
//! assert!(path.poll_output(Timestamp::ZERO).is_none(), "not yet");
//! assert_eq!(path.poll_output(at), Some(Delivery::Data(bytes::Bytes::from_static(b"hello"))));
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use astral_core::Timestamp;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A change of a link's properties, applied at once or scheduled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// New one-way latency, both directions.
    Latency(Duration),
    /// New jitter bound, both directions.
    Jitter(Duration),
    /// New bandwidth in bytes per second (`None`: unlimited), both directions.
    Bandwidth(Option<u64>),
    /// Both directions go silent; the transport stays open.
    Partition,
    /// Both directions deliver again (ends a partition or a silence).
    Heal,
    /// One direction goes silent: a half-open path. `towards_b`: bytes from
    /// the dialer to the acceptor stop; otherwise the reverse direction.
    Silence {
        /// Which direction stops.
        towards_b: bool,
    },
}

/// Which way a [`Netem`] carries bytes within a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the dialer (`a`) to the acceptor (`b`).
    AtoB,
    /// From the acceptor to the dialer.
    BtoA,
}

/// Properties of a simulated transport (both directions alike), with a
/// builder and presets.
///
/// ```
/// use std::time::Duration;
/// use astral_sim::{LinkChange, LinkConfig};
/// // A Wi-Fi link whose latency jumps to 80 ms after 2 s and that drops
/// // out for a second at 5 s.
/// let config = LinkConfig::wifi()
///     .at(Duration::from_secs(2), LinkChange::Latency(Duration::from_millis(80)))
///     .at(Duration::from_secs(5), LinkChange::Partition)
///     .at(Duration::from_secs(6), LinkChange::Heal);
/// assert_eq!(config.schedule.len(), 3);
/// ```
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way latency.
    pub latency: Duration,
    /// Bytes per second per direction (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Transport send buffer: the node's output is pulled only while fewer
    /// bytes than this are in flight in that direction (TCP-like backpressure).
    pub buffer: usize,
    /// Extra delay per chunk, drawn uniformly from `0..=jitter`; delivery
    /// order is kept (see the module documentation).
    pub jitter: Duration,
    /// Changes at offsets from the moment the link is created.
    pub schedule: Vec<(Duration, LinkChange)>,
    /// Largest piece the bottleneck delivers at once (`None`: a chunk the
    /// node hands over, up to the whole buffer, arrives whole once all of
    /// it is serialised). A real bottleneck delivers packet by packet, so
    /// the first bytes of a 256 KiB burst arrive long before its last;
    /// tests that time what a receiver reads behind a standing queue set
    /// this (e.g. 16 KiB, a few packets).
    pub segment: Option<usize>,
}

impl Default for LinkConfig {
    /// 5 ms one way, 100 MB/s, 256 KiB buffer, no jitter.
    fn default() -> Self {
        LinkConfig {
            latency: Duration::from_millis(5),
            bandwidth: Some(100_000_000),
            buffer: 256 * 1024,
            jitter: Duration::ZERO,
            schedule: Vec::new(),
            segment: None,
        }
    }
}

impl LinkConfig {
    /// A link with the given one-way latency and default bandwidth.
    pub fn with_latency(latency: Duration) -> Self {
        LinkConfig::default().latency(latency)
    }

    /// A wired LAN: 0.25 ms one way (± 0.05 ms), 1 Gbit/s.
    pub fn lan() -> Self {
        LinkConfig {
            latency: Duration::from_micros(250),
            jitter: Duration::from_micros(50),
            bandwidth: Some(125_000_000),
            buffer: 256 * 1024,
            schedule: Vec::new(),
            segment: None,
        }
    }

    /// Wi-Fi: 3 ms one way plus up to 4 ms of jitter, 50 Mbit/s.
    pub fn wifi() -> Self {
        LinkConfig {
            latency: Duration::from_millis(3),
            jitter: Duration::from_millis(4),
            bandwidth: Some(6_250_000),
            buffer: 256 * 1024,
            schedule: Vec::new(),
            segment: None,
        }
    }

    /// Cellular (LTE-like): 35 ms one way plus up to 30 ms of jitter,
    /// 10 Mbit/s, a deep buffer (bufferbloat).
    pub fn cellular() -> Self {
        LinkConfig {
            latency: Duration::from_millis(35),
            jitter: Duration::from_millis(30),
            bandwidth: Some(1_250_000),
            buffer: 1024 * 1024,
            schedule: Vec::new(),
            segment: None,
        }
    }

    /// A Tor circuit: 250 ms one way plus up to 1.25 s of jitter, so round
    /// trips between 0.5 s and 3 s; 2 Mbit/s; a small buffer.
    pub fn tor() -> Self {
        LinkConfig {
            latency: Duration::from_millis(250),
            jitter: Duration::from_millis(1250),
            bandwidth: Some(250_000),
            buffer: 64 * 1024,
            schedule: Vec::new(),
            segment: None,
        }
    }

    /// Sets the one-way latency.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the jitter bound.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the bandwidth in bytes per second.
    pub fn bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.bandwidth = Some(bytes_per_sec);
        self
    }

    /// No bandwidth limit: chunks are only delayed by latency and jitter.
    pub fn unlimited_bandwidth(mut self) -> Self {
        self.bandwidth = None;
        self
    }

    /// Sets the transport buffer (bytes in flight per direction).
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Delivers what the node hands over in pieces of at most `bytes`, each
    /// as soon as it is serialised (see [`LinkConfig::segment`]).
    pub fn segment(mut self, bytes: usize) -> Self {
        self.segment = Some(bytes.max(1));
        self
    }

    /// Schedules `change` at `after` from the link's creation.
    pub fn at(mut self, after: Duration, change: LinkChange) -> Self {
        self.schedule.push((after, change));
        self
    }

    /// Largest round-trip time this configuration can show now (twice the
    /// latency plus the jitter bound), ignoring serialisation.
    pub fn max_rtt(&self) -> Duration {
        2 * (self.latency + self.jitter)
    }
}

/// What a [`Netem`] hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Bytes, in the order they went in.
    Data(Bytes),
    /// The sender closed its end; nothing follows (an orderly FIN).
    Closed,
}

struct Chunk {
    at: Timestamp,
    /// `None` is the close marker.
    data: Option<Bytes>,
}

/// One direction of a simulated reliable transport (see the module docs).
pub struct Netem {
    direction: Direction,
    latency: Duration,
    jitter: Duration,
    bandwidth: Option<u64>,
    buffer: usize,
    segment: Option<usize>,
    rng: ChaCha8Rng,
    queue: VecDeque<Chunk>,
    in_flight: usize,
    /// When the serialiser is free for the next chunk.
    free_at: Timestamp,
    /// Delivery time of the last chunk queued: later chunks never go before.
    last_at: Timestamp,
    silent: bool,
    closed: bool,
    changes: VecDeque<(Timestamp, LinkChange)>,
}

impl Netem {
    /// The `direction` half of a link configured by `config`, created at
    /// `start` (the schedule's offsets count from it); `seed` drives jitter.
    pub fn new(config: &LinkConfig, direction: Direction, seed: u64, start: Timestamp) -> Netem {
        let mut changes: Vec<(Timestamp, LinkChange)> = config
            .schedule
            .iter()
            .map(|(after, c)| (start + *after, c.clone()))
            .collect();
        // Stable: changes scheduled at the same offset apply in the order given.
        changes.sort_by_key(|(t, _)| *t);
        Netem {
            direction,
            latency: config.latency,
            jitter: config.jitter,
            bandwidth: config.bandwidth,
            buffer: config.buffer,
            segment: config.segment,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: VecDeque::new(),
            in_flight: 0,
            free_at: start,
            last_at: start,
            silent: false,
            closed: false,
            changes: changes.into(),
        }
    }

    /// Bytes the sender may put in flight now (0: the path pushes back).
    pub fn room(&self) -> usize {
        if self.closed {
            0
        } else {
            self.buffer.saturating_sub(self.in_flight)
        }
    }

    /// Bytes sent and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Current one-way latency.
    pub fn current_latency(&self) -> Duration {
        self.latency
    }

    /// Current jitter bound.
    pub fn current_jitter(&self) -> Duration {
        self.jitter
    }

    /// Whether the path is silent now (partition or one-way silence).
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// Whether nothing waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends `data` at `now`. Bytes after [`Netem::handle_close`] are
    /// dropped (a closed socket accepts nothing). The sender should respect
    /// [`Netem::room`]; the path takes what it is given.
    pub fn handle_input(&mut self, now: Timestamp, data: Bytes) {
        if self.closed || data.is_empty() {
            return;
        }
        let mut data = data;
        if let Some(seg) = self.segment {
            while data.len() > seg {
                let piece = data.split_to(seg);
                self.send_piece(now, piece);
            }
        }
        self.send_piece(now, data);
    }

    /// Serialises one piece after the ones before it and schedules its
    /// delivery.
    fn send_piece(&mut self, now: Timestamp, data: Bytes) {
        let n = data.len();
        let start = self.free_at.max(now);
        let serial = self.bandwidth.map_or(Duration::ZERO, |bw| {
            Duration::from_nanos((n as u128 * 1_000_000_000 / u128::from(bw.max(1))) as u64)
        });
        self.free_at = start + serial;
        let at = self.free_at + self.latency + self.draw_jitter();
        self.push(at, Some(data));
        self.in_flight += n;
    }

    /// The sender closed its end at `now`: the receiver sees
    /// [`Delivery::Closed`] after every byte already sent.
    pub fn handle_close(&mut self, now: Timestamp) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.push(now + self.latency, None);
    }

    fn push(&mut self, at: Timestamp, data: Option<Bytes>) {
        let at = at.max(self.last_at);
        self.last_at = at;
        self.queue.push_back(Chunk { at, data });
    }

    fn draw_jitter(&mut self) -> Duration {
        let bound = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        if bound == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.next_u64() % bound.saturating_add(1))
    }

    /// When something happens next: a delivery (unless silent) or a
    /// scheduled change.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let delivery = if self.silent {
            None
        } else {
            self.queue.front().map(|c| c.at)
        };
        let change = self.changes.front().map(|(t, _)| *t);
        match (delivery, change) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        }
    }

    /// Applies the scheduled changes due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some((t, _)) = self.changes.front() {
            if *t > now {
                break;
            }
            if let Some((_, change)) = self.changes.pop_front() {
                self.apply(now, &change);
            }
        }
    }

    /// Applies `change` at `now`. Latency and jitter changes affect bytes
    /// sent from now on (delivery order is kept); bandwidth changes the
    /// serialisation of later chunks.
    pub fn apply(&mut self, now: Timestamp, change: &LinkChange) {
        match change {
            LinkChange::Latency(l) => self.latency = *l,
            LinkChange::Jitter(j) => self.jitter = *j,
            LinkChange::Bandwidth(b) => self.bandwidth = *b,
            LinkChange::Partition => self.silent = true,
            LinkChange::Silence { towards_b } => {
                if *towards_b == (self.direction == Direction::AtoB) {
                    self.silent = true;
                }
            }
            LinkChange::Heal => {
                if self.silent {
                    self.silent = false;
                    // What waited is retransmitted now and arrives one
                    // latency later, still in order.
                    let floor = now + self.latency;
                    let mut last = floor;
                    for c in self.queue.iter_mut() {
                        c.at = c.at.max(last);
                        last = c.at;
                    }
                    self.last_at = self.last_at.max(last);
                    self.free_at = self.free_at.max(now);
                }
            }
        }
    }

    /// The next chunk due at `now`, if any (none while silent).
    pub fn poll_output(&mut self, now: Timestamp) -> Option<Delivery> {
        if self.silent || self.queue.front()?.at > now {
            return None;
        }
        self.pop()
    }

    /// The oldest chunk regardless of its delivery time (none while silent):
    /// lets a test or fuzzer choose the interleaving of several paths.
    pub fn poll_output_early(&mut self) -> Option<Delivery> {
        if self.silent {
            return None;
        }
        self.pop()
    }

    fn pop(&mut self) -> Option<Delivery> {
        let chunk = self.queue.pop_front()?;
        Some(match chunk.data {
            Some(data) => {
                self.in_flight -= data.len();
                Delivery::Data(data)
            }
            None => Delivery::Closed,
        })
    }

    /// Drops everything in flight (the transport was cut).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.in_flight = 0;
        self.closed = true;
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

    /// Delivers everything, returning (time, payload) pairs in order.
    fn drain(p: &mut Netem) -> Vec<(Timestamp, Delivery)> {
        let mut out = Vec::new();
        while let Some(at) = p.poll_timeout() {
            p.handle_timeout(at);
            while let Some(d) = p.poll_output(at) {
                out.push((at, d));
            }
            if out.len() > 100_000 {
                break;
            }
        }
        out
    }

    fn data(d: &Delivery) -> Vec<u8> {
        match d {
            Delivery::Data(b) => b.to_vec(),
            Delivery::Closed => Vec::new(),
        }
    }

    #[test]
    fn latency_and_bandwidth_set_delivery_times() {
        // 1000 B/s: a 100-byte chunk takes 100 ms to serialise.
        let cfg = LinkConfig::default().latency(ms(10)).bandwidth(1000);
        let mut p = Netem::new(&cfg, Direction::AtoB, 0, t(0));
        p.handle_input(t(0), Bytes::from(vec![1; 100]));
        p.handle_input(t(0), Bytes::from(vec![2; 100]));
        let out = drain(&mut p);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, t(110));
        assert_eq!(out[1].0, t(210), "serialised after the first chunk");
    }

    #[test]
    fn jitter_spreads_delays_but_keeps_order() {
        let cfg = LinkConfig::default()
            .latency(ms(10))
            .jitter(ms(50))
            .unlimited_bandwidth();
        let mut p = Netem::new(&cfg, Direction::AtoB, 7, t(0));
        let mut min_delay = Duration::MAX;
        let mut max_delay = Duration::ZERO;
        let mut sent_at = Vec::new();
        // Sparse traffic: one chunk every 100 ms, so clamping rarely hides
        // the spread.
        for i in 0..200u64 {
            let now = t(i * 100);
            p.handle_timeout(now);
            p.handle_input(now, Bytes::from(i.to_le_bytes().to_vec()));
            sent_at.push(now);
        }
        let out = drain(&mut p);
        assert_eq!(out.len(), 200);
        for (i, (at, d)) in out.iter().enumerate() {
            assert_eq!(data(d), (i as u64).to_le_bytes(), "in order");
            let delay = at.saturating_duration_since(sent_at[i]);
            min_delay = min_delay.min(delay);
            max_delay = max_delay.max(delay);
        }
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "monotone times");
        assert!(min_delay >= ms(10) && min_delay < ms(15), "{min_delay:?}");
        assert!(max_delay <= ms(60) && max_delay > ms(55), "{max_delay:?}");
    }

    #[test]
    fn same_seed_same_jitter() {
        let cfg = LinkConfig::wifi();
        let times = |seed| {
            let mut p = Netem::new(&cfg, Direction::BtoA, seed, t(0));
            for i in 0..50 {
                p.handle_input(t(i * 3), Bytes::from_static(b"x"));
            }
            drain(&mut p)
                .into_iter()
                .map(|(at, _)| at)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(1), times(1));
        assert_ne!(times(1), times(2));
    }

    #[test]
    fn a_segmented_link_delivers_a_burst_piece_by_piece() {
        // 1 MB/s, 1 ms one way: 4000 B in 1000 B pieces, each delivered
        // once serialised; unsegmented, all of it only after 4 ms.
        let cfg = LinkConfig::default()
            .latency(Duration::from_millis(1))
            .bandwidth(1_000_000);
        let mut whole = Netem::new(&cfg, Direction::AtoB, 1, Timestamp::ZERO);
        whole.handle_input(Timestamp::ZERO, Bytes::from(vec![7u8; 4000]));
        assert_eq!(
            whole.poll_timeout(),
            Some(Timestamp::ZERO + Duration::from_millis(5))
        );
        let mut seg = Netem::new(&cfg.segment(1000), Direction::AtoB, 1, Timestamp::ZERO);
        seg.handle_input(Timestamp::ZERO, Bytes::from(vec![7u8; 4000]));
        assert_eq!(seg.in_flight(), 4000);
        let mut got = Vec::new();
        while let Some(at) = seg.poll_timeout() {
            match seg.poll_output(at) {
                Some(Delivery::Data(d)) => got.push((at, d.len())),
                other => panic!("{other:?}"),
            }
        }
        let at = |n: u64| Timestamp::ZERO + Duration::from_millis(n);
        assert_eq!(
            got,
            vec![(at(2), 1000), (at(3), 1000), (at(4), 1000), (at(5), 1000)]
        );
        assert_eq!(seg.in_flight(), 0);
    }

    #[test]
    fn buffer_pushes_back() {
        let cfg = LinkConfig::default().buffer(1000);
        let mut p = Netem::new(&cfg, Direction::AtoB, 0, t(0));
        assert_eq!(p.room(), 1000);
        p.handle_input(t(0), Bytes::from(vec![0; 600]));
        assert_eq!(p.room(), 400);
        p.handle_input(t(0), Bytes::from(vec![0; 600]));
        assert_eq!(p.room(), 0);
        let out = drain(&mut p);
        assert_eq!(out.len(), 2);
        assert_eq!(p.room(), 1000);
    }

    #[test]
    fn partition_holds_bytes_and_heal_releases_them_in_order() {
        let cfg = LinkConfig::default()
            .latency(ms(10))
            .unlimited_bandwidth()
            .at(ms(5), LinkChange::Partition)
            .at(ms(500), LinkChange::Heal);
        let mut p = Netem::new(&cfg, Direction::AtoB, 0, t(0));
        p.handle_input(t(0), Bytes::from_static(b"a"));
        p.handle_input(t(1), Bytes::from_static(b"b"));
        // Sent during the partition.
        p.handle_timeout(t(100));
        assert!(p.is_silent());
        assert!(p.poll_output(t(100)).is_none());
        p.handle_input(t(100), Bytes::from_static(b"c"));
        let out = drain(&mut p);
        let got: Vec<_> = out.iter().map(|(at, d)| (*at, data(d))).collect();
        assert_eq!(
            got,
            vec![
                (t(510), b"a".to_vec()),
                (t(510), b"b".to_vec()),
                (t(510), b"c".to_vec())
            ],
            "nothing lost, nothing early, order kept"
        );
    }

    #[test]
    fn silence_is_one_way() {
        let cfg = LinkConfig::default();
        let mut ab = Netem::new(&cfg, Direction::AtoB, 0, t(0));
        let mut ba = Netem::new(&cfg, Direction::BtoA, 0, t(0));
        for p in [&mut ab, &mut ba] {
            p.apply(t(0), &LinkChange::Silence { towards_b: true });
            p.handle_input(t(0), Bytes::from_static(b"x"));
        }
        assert!(ab.is_silent() && !ba.is_silent());
        assert!(drain(&mut ab).is_empty());
        assert_eq!(drain(&mut ba).len(), 1);
    }

    #[test]
    fn close_follows_the_bytes_and_later_input_is_dropped() {
        let cfg = LinkConfig::default().latency(ms(10)).bandwidth(1000);
        let mut p = Netem::new(&cfg, Direction::AtoB, 0, t(0));
        p.handle_input(t(0), Bytes::from(vec![0; 100]));
        p.handle_close(t(0));
        p.handle_input(t(1), Bytes::from_static(b"late"));
        let out = drain(&mut p);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], (t(110), Delivery::Closed));
        assert_eq!(p.room(), 0);
    }

    #[test]
    fn scheduled_latency_change_applies_to_later_bytes_only() {
        let cfg = LinkConfig::default()
            .latency(ms(100))
            .unlimited_bandwidth()
            .at(ms(10), LinkChange::Latency(ms(1)));
        let mut p = Netem::new(&cfg, Direction::AtoB, 0, t(0));
        p.handle_input(t(0), Bytes::from_static(b"slow"));
        p.handle_timeout(t(20));
        p.handle_input(t(20), Bytes::from_static(b"fast"));
        let out = drain(&mut p);
        // The second chunk would arrive at 21 ms but may not overtake.
        assert_eq!(out[0].0, t(100));
        assert_eq!(out[1].0, t(100));
        assert_eq!(data(&out[1].1), b"fast");
        p.handle_input(t(200), Bytes::from_static(b"x"));
        assert_eq!(p.poll_timeout(), Some(t(201)));
    }

    #[test]
    fn tor_preset_round_trips_between_half_a_second_and_three_seconds() {
        let cfg = LinkConfig::tor().unlimited_bandwidth();
        let mut ab = Netem::new(&cfg, Direction::AtoB, 3, t(0));
        let mut ba = Netem::new(&cfg, Direction::BtoA, 4, t(0));
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for i in 0..300u64 {
            // A ping every 10 s (sparse: no head-of-line effects).
            let sent = t(i * 10_000);
            ab.handle_input(sent, Bytes::from_static(b"ping"));
            let there = ab.poll_timeout().unwrap();
            assert_eq!(
                ab.poll_output(there).map(|d| data(&d)),
                Some(b"ping".to_vec())
            );
            ba.handle_input(there, Bytes::from_static(b"pong"));
            let back = ba.poll_timeout().unwrap();
            ba.poll_output(back).unwrap();
            let rtt = back.saturating_duration_since(sent);
            lo = lo.min(rtt);
            hi = hi.max(rtt);
        }
        assert!(lo >= ms(500) && lo < ms(800), "min RTT {lo:?}");
        assert!(hi <= ms(3000) && hi > ms(2500), "max RTT {hi:?}");
    }

    #[test]
    fn presets_are_ordered_by_latency() {
        let rtts: Vec<_> = [
            LinkConfig::lan(),
            LinkConfig::wifi(),
            LinkConfig::cellular(),
            LinkConfig::tor(),
        ]
        .iter()
        .map(LinkConfig::max_rtt)
        .collect();
        assert!(rtts.windows(2).all(|w| w[0] < w[1]), "{rtts:?}");
        assert_eq!(LinkConfig::tor().max_rtt(), ms(3000));
    }
}
