//! Unit tests of window auto-tuning and the memory budget: two nodes over
//! in-memory links with a one-way latency (unlimited bandwidth unless a
//! rate is given), in virtual time. The simulator's suites cover the same with random
//! schedules; these pin single behaviours.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::{Config, Event, Identity, Node, SessionId, StreamId, Timestamp, WriteError};

const MS: Duration = Duration::from_millis(1);

/// A transport with a one-way latency and, optionally, a rate (bytes per
/// second each way) with an unbounded FIFO queue in front of it.
struct Wire {
    a: StreamId,
    b: StreamId,
    latency: Duration,
    rate: Option<u64>,
    /// When each direction's queue (a → b, b → a) has sent all it holds.
    busy: [Timestamp; 2],
    to_a: VecDeque<(Timestamp, Bytes)>,
    to_b: VecDeque<(Timestamp, Bytes)>,
    alive: bool,
}

/// Nodes `a` (lower id) and `b`; `b` accepts every query.
struct Net {
    a: Node,
    b: Node,
    wires: Vec<Wire>,
    now: Timestamp,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
}

impl Net {
    fn new(config: Config) -> Net {
        Net::with(config.clone(), config)
    }

    fn with(config_a: Config, config_b: Config) -> Net {
        let mut ids = [Identity::from_seed([1; 32]), Identity::from_seed([2; 32])];
        if ids[0].node_id() > ids[1].node_id() {
            ids.swap(0, 1);
        }
        let [ia, ib] = ids;
        Net {
            a: Node::new(ia, config_a, 1).unwrap(),
            b: Node::new(ib, config_b, 2).unwrap(),
            wires: Vec::new(),
            now: Timestamp::ZERO,
            events_a: Vec::new(),
            events_b: Vec::new(),
        }
    }

    /// A stream from `a` to `b` over a wire with `latency` one way, up and
    /// confirmed (and its first RTT sample taken).
    fn wire(&mut self, latency: Duration) -> usize {
        self.wire_at(latency, None)
    }

    /// As [`Net::wire`], with a rate limit of `rate` bytes per second.
    fn wire_at(&mut self, latency: Duration, rate: Option<u64>) -> usize {
        let a = self.a.connect(self.now, self.b.local_id()).unwrap();
        let b = self.b.accept(self.now).unwrap();
        self.wires.push(Wire {
            a,
            b,
            latency,
            rate,
            busy: [Timestamp::ZERO; 2],
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            alive: true,
        });
        self.run_for(latency * 8);
        self.wires.len() - 1
    }

    fn pull(&mut self) {
        let now = self.now;
        for w in self.wires.iter_mut().filter(|w| w.alive) {
            let mut out = BytesMut::new();
            // When bytes handed over now arrive: after the queue ahead of
            // them and their own serialisation, plus the latency.
            let arrival = |busy: &mut Timestamp, len: usize| {
                if let Some(rate) = w.rate {
                    let tx = Duration::from_nanos(len as u64 * 1_000_000_000 / rate.max(1));
                    *busy = (*busy).max(now) + tx;
                    *busy + w.latency
                } else {
                    now + w.latency
                }
            };
            // A rate-limited wire takes output in pieces, each arriving
            // once serialised (not the whole burst at the end of it).
            let piece = if w.rate.is_some() {
                16 * 1024
            } else {
                usize::MAX
            };
            loop {
                let n = self.a.poll_transmit(now, w.a, &mut out, piece);
                if n == 0 {
                    break;
                }
                let at = arrival(&mut w.busy[0], n);
                w.to_b.push_back((at, out.split().freeze()));
            }
            loop {
                let n = self.b.poll_transmit(now, w.b, &mut out, piece);
                if n == 0 {
                    break;
                }
                let at = arrival(&mut w.busy[1], n);
                w.to_a.push_back((at, out.split().freeze()));
            }
        }
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        for w in self.wires.iter_mut().filter(|w| w.alive) {
            while w.to_b.front().is_some_and(|(t, _)| *t <= now) {
                let (_, d) = w.to_b.pop_front().unwrap();
                self.b.handle_input(now, w.b, &d);
            }
            while w.to_a.front().is_some_and(|(t, _)| *t <= now) {
                let (_, d) = w.to_a.pop_front().unwrap();
                self.a.handle_input(now, w.a, &d);
            }
        }
    }

    fn collect(&mut self) {
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            if let Event::Query { session, .. } = &e {
                self.b.accept_query(self.now, *session).unwrap();
            }
            self.events_b.push(e);
        }
    }

    /// When the next thing happens (a delivery or a timer), if ever.
    fn next_time(&self) -> Option<Timestamp> {
        let wires = self
            .wires
            .iter()
            .filter(|w| w.alive)
            .flat_map(|w| w.to_a.front().into_iter().chain(w.to_b.front()))
            .map(|(t, _)| *t);
        wires
            .chain(self.a.poll_timeout())
            .chain(self.b.poll_timeout())
            .min()
    }

    /// One step: output onto the wires, time to the next thing, do it.
    fn step(&mut self, end: Timestamp) -> bool {
        self.pull();
        self.collect();
        let Some(next) = self.next_time() else {
            return false;
        };
        if next > end {
            return false;
        }
        self.now = self.now.max(next);
        self.deliver_due();
        for n in [&mut self.a, &mut self.b] {
            if n.poll_timeout().is_some_and(|t| t <= self.now) {
                n.handle_timeout(self.now);
            }
        }
        self.collect();
        true
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    fn session(&mut self) -> (SessionId, SessionId) {
        let s = self
            .a
            .open_session(self.now, self.b.local_id(), "q")
            .unwrap();
        let before = self.events_b.len();
        for _ in 0..10_000 {
            self.step(Timestamp::MAX);
            let got = self.events_b[before..].iter().find_map(|e| match e {
                Event::Query { session, .. } => Some(*session),
                _ => None,
            });
            if let Some(peer) = got {
                // Let the Response reach `a`.
                self.run_for(Duration::from_millis(500));
                return (s, peer);
            }
        }
        panic!("the query never arrived");
    }

    /// Streams `total` bytes from `a` to `b` (b reads everything at once);
    /// returns the virtual time it took.
    fn transfer(&mut self, sa: SessionId, sb: SessionId, total: u64) -> Duration {
        let start = self.now;
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let (mut written, mut read) = (0u64, 0u64);
        while read < total {
            while written < total {
                let n = chunk.len().min((total - written) as usize);
                match self.a.session(sa).unwrap().write_bytes(chunk.slice(..n)) {
                    Ok(k) => written += k as u64,
                    Err(WriteError::Blocked) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(self.step(Timestamp::MAX), "stalled at {read} of {total}");
            read += self.drain(sb);
        }
        self.now.saturating_duration_since(start)
    }

    /// Reads everything readable on `b`'s session.
    fn drain(&mut self, sb: SessionId) -> u64 {
        let mut n = 0;
        while let Some(mut h) = self.b.session(sb) {
            match h.read_chunk(usize::MAX) {
                Ok(Some(c)) => n += c.len() as u64,
                _ => break,
            }
        }
        n
    }
}

fn tuned(max: u32) -> Config {
    Config {
        recv_window: 16 * 1024,
        min_recv_window: 16 * 1024,
        max_recv_window: max,
        ..Config::default()
    }
}

#[test]
fn a_window_grows_to_fill_a_long_path() {
    let mut n = Net::new(tuned(1 << 20));
    n.wire(MS * 50);
    let (sa, sb) = n.session();
    // A fixed 16 KiB window moves 16 KiB per 100 ms round trip: 20 MiB
    // would take two minutes.
    let took = n.transfer(sa, sb, 20 << 20);
    let rx = n.b.session_info(sb).unwrap().stats;
    let tx = n.a.session_info(sa).unwrap().stats;
    assert_eq!(rx.local_window, 1 << 20, "grown to the cap");
    assert_eq!(rx.window_growths, 6, "16 KiB doubled six times");
    assert_eq!(
        tx.peer_window,
        1 << 20,
        "the sender learnt it (Window frames)"
    );
    // Ramp-up (six round trips) and about one window per round trip.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Credit never exceeds the window granted from what was read.
    assert!(tx.peer_limit <= rx.bytes_read + (1 << 20) + 1);
}

#[test]
fn a_window_stays_small_when_the_reader_is_slow() {
    let mut n = Net::new(tuned(1 << 20));
    n.wire(MS * 5);
    let (sa, sb) = n.session();
    let chunk = vec![1u8; 16 * 1024];
    // The reader takes 4 KiB every 100 ms: it never consumes a window
    // within two round trips.
    for _ in 0..100 {
        let _ = n.a.session(sa).unwrap().write(&chunk);
        n.run_for(MS * 100);
        let mut buf = [0u8; 4096];
        let _ = n.b.session(sb).unwrap().read(&mut buf);
    }
    let rx = n.b.session_info(sb).unwrap().stats;
    assert_eq!(rx.window_growths, 0);
    assert_eq!(rx.local_window, 16 * 1024);
}

#[test]
fn a_window_update_lost_with_its_stream_is_restated_after_recovery() {
    let mut n = Net::new(tuned(1 << 20));
    let w0 = n.wire(MS * 20);
    n.wire(MS * 20);
    let (sa, sb) = n.session();
    n.transfer(sa, sb, 8 << 20);
    let carrying = n.a.session_info(sa).unwrap().send_stream.unwrap();
    let on = n.wires.iter().position(|w| w.a == carrying).unwrap();
    assert_eq!(on, w0);
    // `b` reads a window's worth and its grant (a Window frame) is lost:
    // the stream dies with it in flight.
    let _ = n.a.session(sa).unwrap().write(&vec![2u8; 1 << 20]);
    n.run_for(MS * 25);
    n.drain(sb);
    n.pull();
    let lost: usize = n.wires[on].to_a.iter().map(|(_, d)| d.len()).sum();
    assert!(lost > 0, "the grant is in flight");
    let (ea, eb) = (n.wires[on].a, n.wires[on].b);
    n.wires[on].alive = false;
    n.a.handle_transport_closed(n.now, ea, "test");
    n.b.handle_transport_closed(n.now, eb, "test");
    n.run_for(Duration::from_millis(500));
    let rx = n.b.session_info(sb).unwrap().stats;
    let tx = n.a.session_info(sa).unwrap().stats;
    assert_eq!(
        tx.peer_limit,
        rx.bytes_read + u64::from(rx.local_window),
        "the Resume's Window restated the grant"
    );
    assert!(tx.peer_window > 16 * 1024);
}

#[test]
fn migrating_to_a_faster_stream_shrinks_the_window() {
    let mut n = Net::new(tuned(4 << 20));
    n.wire(MS * 50);
    let (sa, sb) = n.session();
    n.transfer(sa, sb, 16 << 20);
    let fast = n.wire(MS * 5);
    let before = n.b.session_info(sb).unwrap().stats;
    assert!(before.local_window >= 1 << 20, "{}", before.local_window);
    // `b` (the receiver) moves to the fast stream: 10 ms instead of 100 ms.
    let target = n.wires[fast].b;
    n.b.migrate(n.now, sb, target).unwrap();
    n.run_for(Duration::from_millis(200));
    let after = n.b.session_info(sb).unwrap().stats;
    assert_eq!(after.window_shrinks, before.window_shrinks + 1);
    assert!(
        after.local_window <= before.local_window / 5,
        "{} -> {}",
        before.local_window,
        after.local_window
    );
    // The transfer goes on at full speed on the new stream.
    n.transfer(sa, sb, 4 << 20);
}

#[test]
fn a_window_grows_again_when_its_path_delay_rises_for_good() {
    // 80 Mbit/s, 20 ms round trip (a bandwidth-delay product of 200 kB):
    // the window settles at 2-4 of them.
    let rate = 10_000_000u64;
    let mut n = Net::new(tuned(16 << 20));
    let w = n.wire_at(MS * 10, Some(rate));
    let (sa, sb) = n.session();
    n.transfer(sa, sb, 16 << 20);
    let settled = n.b.session_info(sb).unwrap().stats.local_window;
    assert!(
        (256 << 10..=1 << 20).contains(&settled),
        "{settled} B at 20 ms"
    );
    // A reroute: the path is 200 ms round trip from now on (2 MB in
    // flight fill it). The smallest sample the stream ever had stays
    // 20 ms; against it the window, consumed in a round trip of 200 ms,
    // never looks fast enough to grow.
    n.wires[w].latency = MS * 100;
    let rose = n.now;
    let mut trace = Vec::new();
    let mut grown_at = None;
    while grown_at.is_none() && n.now.saturating_duration_since(rose) < Duration::from_secs(20) {
        let took = n.transfer(sa, sb, 2 << 20);
        let window = n.b.session_info(sb).unwrap().stats.local_window;
        let since = n.now.saturating_duration_since(rose);
        trace.push((since.as_millis(), window >> 10, took.as_millis()));
        if window >= 2 << 20 {
            grown_at = Some(since);
        }
    }
    // Then the flow fills the link again (32 MiB at 10 MB/s: 3.4 s).
    let took = n.transfer(sa, sb, 32 << 20);
    let goodput = (32u64 << 20) * 1000 / took.as_millis().max(1) as u64;
    let window = n.b.session_info(sb).unwrap().stats.local_window;
    println!(
        "after the rise (ms, window KiB, ms per 2 MiB): {trace:?}; then {goodput} B/s \
         with a {} KiB window",
        window >> 10
    );
    // Once the old minimum ages out of the tuning window (10 s), the
    // window doubles within a few round trips to at least the new
    // bandwidth-delay product.
    let grown_at = grown_at.expect("the window grew to the new path");
    assert!(
        grown_at <= crate::window::TUNE_RTT_WINDOW + Duration::from_secs(2),
        "grew {grown_at:?} after the rise: {trace:?}"
    );
    assert!(goodput >= rate * 85 / 100, "{goodput} B/s");
}

#[test]
fn migrating_to_a_slower_stream_grows_the_window_to_its_path() {
    // 80 Mbit/s both; 10 ms round trip, then a move onto a 100 ms stream
    // (a bandwidth-delay product of 1 MB): the window is measured against
    // the new stream's own round trip at once, not against the old one.
    let rate = 10_000_000u64;
    let mut n = Net::new(tuned(16 << 20));
    n.wire_at(MS * 5, Some(rate));
    let (sa, sb) = n.session();
    n.transfer(sa, sb, 16 << 20);
    let before = n.b.session_info(sb).unwrap().stats.local_window;
    assert!(before <= 512 << 10, "{before} B at 10 ms");
    let slow = n.wire_at(MS * 50, Some(rate));
    let target = n.wires[slow].b;
    n.b.migrate(n.now, sb, target).unwrap();
    let moved = n.now;
    let mut trace = Vec::new();
    while n.now.saturating_duration_since(moved) < Duration::from_secs(3) {
        n.transfer(sa, sb, 1 << 20);
        let w = n.b.session_info(sb).unwrap().stats.local_window;
        trace.push((n.now.saturating_duration_since(moved).as_millis(), w >> 10));
    }
    println!("{before} B at 10 ms; after the move (ms, window KiB): {trace:?}");
    let tx = n.a.session_info(sa).unwrap().send_stream;
    assert_eq!(tx, Some(n.wires[slow].a), "the sender followed");
    // Within a few of the new round trips (10 ms ones would never see a
    // 100 ms window consumed fast enough).
    let grown = trace.iter().find(|(_, w)| *w >= 1024).map(|(t, _)| *t);
    assert!(
        grown.is_some_and(|t| t <= 1000),
        "{before} B, then {trace:?}"
    );
}

/// A budget small enough to run out: 4 sessions' worth above the floors.
fn budgeted() -> Config {
    Config {
        recv_window: 64 * 1024,
        min_recv_window: 16 * 1024,
        max_recv_window: 64 * 1024,
        send_buffer: 64 * 1024,
        peer_memory_budget: 4 * 48 * 1024,
        node_memory_budget: 4 * 48 * 1024,
        ..Config::default()
    }
}

#[test]
fn new_sessions_start_at_the_floor_once_the_budget_is_short() {
    let mut n = Net::new(budgeted());
    n.wire(MS);
    let mut windows = Vec::new();
    for _ in 0..6 {
        let (sa, _) = n.session();
        windows.push(n.a.session_info(sa).unwrap().stats.local_window);
        assert!(n.a.memory_reserved() <= 4 * 48 * 1024);
    }
    // The first sessions reserve 48 KiB each above the floor; once less
    // than an eighth of the budget is free, new ones get the floor.
    let k = 64 * 1024;
    let f = 16 * 1024;
    assert_eq!(windows, [k, k, k, k, f, f]);
    assert_eq!(n.a.memory_reserved(), 4 * 48 * 1024);
}

#[test]
fn writes_block_at_the_budget_and_every_session_still_progresses() {
    let mut n = Net::new(budgeted());
    n.wire(MS);
    // Sessions that write and are never read take the budget.
    let mut hogs = Vec::new();
    for _ in 0..6 {
        let (sa, sb) = n.session();
        let mut taken = 0;
        while let Ok(k) = n.a.session(sa).unwrap().write(&[9u8; 8192]) {
            taken += k;
        }
        n.run_for(MS * 10);
        hogs.push((sa, sb, taken));
    }
    let reserved = n.a.memory_reserved();
    assert!(reserved <= 4 * 48 * 1024, "{reserved}");
    // Each could queue at least its floor, and none more than its grant
    // plus `send_buffer`.
    for &(_, _, taken) in &hogs {
        assert!(taken >= 16 * 1024, "{taken}");
        assert!(taken <= 64 * 1024 + 64 * 1024, "{taken}");
    }
    // A new session still moves data through its floors, both ways.
    let (sa, sb) = n.session();
    let took = n.transfer(sa, sb, 1 << 20);
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Closing the hogs gives their reservations back (the new session
    // runs at its floors: it reserved nothing).
    for &(sa, sb, _) in &hogs {
        n.a.session(sa).unwrap().close();
        n.b.session(sb).unwrap().close();
    }
    n.run_for(Duration::from_secs(1));
    assert_eq!(n.a.memory_reserved(), 0);
    assert_eq!(n.b.memory_reserved(), 0);
}

#[test]
fn a_closed_session_gives_its_reservation_back() {
    let mut n = Net::new(tuned(1 << 20));
    n.wire(MS * 10);
    let (sa, sb) = n.session();
    n.transfer(sa, sb, 4 << 20);
    assert!(n.b.memory_reserved() > 0);
    n.a.session(sa).unwrap().close();
    n.b.session(sb).unwrap().close();
    n.run_for(Duration::from_secs(1));
    assert!(n.a.session_info(sa).is_none() && n.b.session_info(sb).is_none());
    assert_eq!(n.a.memory_reserved(), 0);
    assert_eq!(n.b.memory_reserved(), 0);
}

#[test]
fn an_untuned_peer_interoperates() {
    // `b` never grows its window (max = initial): it sends only Credits,
    // and `a` sends up to the base window from them.
    let fixed = Config {
        recv_window: 64 * 1024,
        max_recv_window: 64 * 1024,
        ..Config::default()
    };
    let mut n = Net::with(tuned(1 << 20), fixed);
    n.wire(MS * 10);
    let (sa, sb) = n.session();
    n.transfer(sa, sb, 2 << 20);
    let tx = n.a.session_info(sa).unwrap().stats;
    assert_eq!(tx.peer_window, 64 * 1024);
}

/// The fixed part of a session's cost (docs/FLOW.md, "What a node
/// promises"): its state in the engine's table, before any buffered byte.
/// Printed part by part; the bound is the measured size (x86-64), so any
/// growth of an idle session is a decision made in this test.
#[test]
fn per_session_state_is_bounded() {
    use std::mem::size_of;
    let state = size_of::<super::sessions::Session>();
    let parts = [
        ("Phase", size_of::<super::sessions::Phase>()),
        ("SendBuf", size_of::<crate::flow::SendBuf>()),
        ("RecvBuf", size_of::<crate::flow::RecvBuf>()),
        ("WindowTuner", size_of::<crate::window::WindowTuner>()),
        ("Charge", size_of::<super::budget::Charge>()),
        ("Owed", size_of::<super::sessions::Owed>()),
        ("Option<StreamId>", size_of::<Option<StreamId>>()),
        (
            "Option<Box<Moves>>",
            size_of::<Option<Box<super::sessions::Moves>>>(),
        ),
        (
            "Moves (boxed, moved sessions only)",
            size_of::<super::sessions::Moves>(),
        ),
    ];
    println!("size_of::<Session>() = {state} bytes");
    for (name, size) in parts {
        println!("  {name}: {size}");
    }
    if size_of::<usize>() == 8 {
        assert!(state <= 280, "Session grew to {state} bytes");
        assert_eq!(
            size_of::<Option<super::sessions::Session>>(),
            state,
            "slab slot niche"
        );
        assert!(size_of::<super::sessions::Phase>() <= 24);
        assert!(size_of::<crate::flow::SendBuf>() <= 72);
        assert!(size_of::<crate::window::WindowTuner>() <= 24);
    }
    assert!(state <= 1024, "{state}");
}

/// What only a busy or moved session needs is allocated on the way in and
/// (for the send queue) freed on the way out: an idle session that sent,
/// received and never moved holds neither; a migration allocates the move
/// bookkeeping, which then stays (it carries the epoch).
#[test]
fn idle_sessions_hold_no_send_queue_and_unmoved_ones_no_move_state() {
    let mut n = Net::new(Config::default());
    let w0 = n.wire(MS * 5);
    let (sa, sb) = n.session();
    let probe = |node: &mut Node, id: SessionId| {
        let e = node.engine_for_test(id.engine()).unwrap();
        let s = e.sessions.get(id).unwrap();
        (s.send.has_queue(), s.has_moves())
    };
    assert_eq!(
        probe(&mut n.a, sa),
        (false, false),
        "opened, nothing written"
    );
    n.a.session(sa).unwrap().write(&[1u8; 10_000]).unwrap();
    assert_eq!(
        probe(&mut n.a, sa),
        (true, false),
        "written: the queue exists"
    );
    n.transfer(sa, sb, 300_000);
    n.run_for(MS * 100);
    assert_eq!(
        probe(&mut n.a, sa),
        (false, false),
        "everything credited: the queue is freed"
    );
    assert_eq!(probe(&mut n.b, sb), (false, false));
    // A move allocates the bookkeeping, and the epoch it holds survives.
    let w1 = n.wire(MS * 5);
    let target = if n.a.session_info(sa).unwrap().send_stream == Some(n.wires[w0].a) {
        n.wires[w1].a
    } else {
        n.wires[w0].a
    };
    n.a.migrate(n.now, sa, target).unwrap();
    n.run_for(MS * 100);
    let info = n.a.session_info(sa).unwrap();
    assert_eq!(info.stats.migrations, 1);
    assert_eq!(info.send_stream, Some(target));
    assert_eq!(probe(&mut n.a, sa), (false, true));
    let e = n.a.engine_for_test(sa.engine()).unwrap();
    assert_eq!(e.sessions.get(sa).unwrap().epoch(), 1);
    n.transfer(sa, sb, 100_000);
}

#[test]
fn a_reader_that_never_reads_holds_at_most_the_budget_plus_floors() {
    // `a` opens sessions to `b` and writes without end; `b`'s application
    // never reads. What `b` buffers stays within its budget plus one floor
    // per session, and what it reserved within the budget. (`a` has a
    // large budget: with `b`'s, its own receive windows would take it and
    // leave it only its send floors.)
    let big = Config {
        peer_memory_budget: 64 << 20,
        node_memory_budget: 64 << 20,
        ..budgeted()
    };
    let mut n = Net::with(big, budgeted());
    n.wire(MS);
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(n.session());
    }
    for _ in 0..50 {
        for &(sa, _) in &sessions {
            while n.a.session(sa).unwrap().write(&[5u8; 4096]).is_ok() {}
        }
        n.run_for(MS * 20);
    }
    let buffered: u64 = sessions
        .iter()
        .map(|&(_, sb)| n.b.session_info(sb).unwrap().stats.bytes_buffered)
        .sum();
    let floors = sessions.len() as u64 * 16 * 1024;
    assert!(buffered > floors, "the writers filled more than the floors");
    assert!(
        buffered <= 4 * 48 * 1024 + floors,
        "{buffered} > budget + floors"
    );
    assert!(n.b.memory_reserved() <= 4 * 48 * 1024);
}
