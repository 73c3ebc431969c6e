//! Unit tests of the engine: two nodes in memory, links as byte queues,
//! time moved by hand. The simulator (`astral-sim`) covers the same ground
//! with latencies and random schedules; these pin single behaviours.

use std::time::Duration;

use bytes::BytesMut;

use crate::event::{CloseReason, Event, StreamCloseReason};
use crate::{Config, Identity, MigrateError, Node, SessionId, SessionState, StreamId, Timestamp};

/// One in-memory transport: a stream handle at each end and the bytes in
/// flight each way.
struct Link {
    a: StreamId,
    b: StreamId,
    to_a: BytesMut,
    to_b: BytesMut,
    alive: bool,
    /// Bytes wait in the link and are not delivered (a path that went
    /// silent without closing; TCP would retransmit them after a heal).
    silent: bool,
    /// The node at `b` is not the one that made this link (it restarted):
    /// its stream handles mean something else now.
    b_gone: bool,
}

/// Two nodes, `a` (lower id: it wins ties) and `b`.
struct Pair {
    a: Node,
    b: Node,
    links: Vec<Link>,
    now: Timestamp,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
}

/// Small fixed windows (no auto-tuning: these tests pin behaviours that
/// depend on how many records a transfer takes).
fn config() -> Config {
    Config {
        recv_window: 4096,
        max_recv_window: 4096,
        send_buffer: 4096,
        ..Config::default()
    }
}

impl Pair {
    fn new(config: Config) -> Pair {
        let mut ids = [Identity::from_seed([1; 32]), Identity::from_seed([2; 32])];
        if ids[0].node_id() > ids[1].node_id() {
            ids.swap(0, 1);
        }
        let [ia, ib] = ids;
        Pair {
            a: Node::new(ia, config.clone(), 1).unwrap(),
            b: Node::new(ib, config, 2).unwrap(),
            links: Vec::new(),
            now: Timestamp::ZERO,
            events_a: Vec::new(),
            events_b: Vec::new(),
        }
    }

    /// A new stream from `a` to `b`, handshake completed.
    fn link(&mut self) -> usize {
        let a = self.a.connect(self.now, self.b.local_id()).unwrap();
        let b = self.b.accept(self.now).unwrap();
        self.links.push(Link {
            a,
            b,
            to_a: BytesMut::new(),
            to_b: BytesMut::new(),
            alive: true,
            silent: false,
            b_gone: false,
        });
        self.settle();
        self.links.len() - 1
    }

    /// Pulls every output into the links.
    fn pull(&mut self) {
        for l in self.links.iter_mut().filter(|l| l.alive) {
            self.a.poll_transmit(self.now, l.a, &mut l.to_b, usize::MAX);
            if !l.b_gone {
                self.b.poll_transmit(self.now, l.b, &mut l.to_a, usize::MAX);
            }
        }
    }

    /// Delivers what is in flight on link `i` towards `b` (or `a`).
    fn deliver(&mut self, i: usize, to_b: bool) {
        let l = &mut self.links[i];
        if !l.alive || l.silent {
            return;
        }
        if to_b {
            let data = l.to_b.split();
            self.b.handle_input(self.now, l.b, &data);
        } else {
            let data = l.to_a.split();
            self.a.handle_input(self.now, l.a, &data);
        }
    }

    fn collect(&mut self) {
        while let Some(e) = self.a.poll_event() {
            if let Event::StreamDown { stream, .. } = &e {
                for l in self.links.iter_mut().filter(|l| l.a == *stream) {
                    l.alive = false;
                }
            }
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            if let Event::StreamDown { stream, .. } = &e {
                for l in self.links.iter_mut().filter(|l| l.b == *stream) {
                    l.alive = false;
                }
            }
            if let Event::Query { session, .. } = &e {
                self.b.accept_query(self.now, *session).unwrap();
            }
            self.events_b.push(e);
        }
    }

    /// Runs until nothing moves (no time passes).
    fn settle(&mut self) {
        for _ in 0..200 {
            self.pull();
            let busy = self
                .links
                .iter()
                .any(|l| l.alive && !l.silent && (!l.to_a.is_empty() || !l.to_b.is_empty()));
            for i in 0..self.links.len() {
                self.deliver(i, true);
                self.deliver(i, false);
            }
            self.collect();
            if !busy {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.collect();
        self.settle();
    }

    /// Cuts link `i` at both ends.
    fn kill(&mut self, i: usize) {
        let (sa, sb) = (self.links[i].a, self.links[i].b);
        self.links[i].alive = false;
        self.a.handle_transport_closed(self.now, sa, "test");
        self.b.handle_transport_closed(self.now, sb, "test");
        self.collect();
    }

    /// A session opened by `a` and accepted by `b`: (a's id, b's id).
    fn session(&mut self) -> (SessionId, SessionId) {
        let s = self
            .a
            .open_session(self.now, self.b.local_id(), "q")
            .unwrap();
        self.settle();
        let peer = self
            .events_b
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Query { session, .. } => Some(*session),
                _ => None,
            })
            .unwrap();
        (s, peer)
    }

    fn write_a(&mut self, s: SessionId, data: &[u8]) -> usize {
        self.a.session(s).unwrap().write(data).unwrap_or(0)
    }

    fn read_b(&mut self, s: SessionId) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(mut h) = self.b.session(s) {
            match h.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn open_write_read() {
    let mut p = Pair::new(config());
    p.link();
    let (sa, sb) = p.session();
    assert_eq!(p.write_a(sa, b"hello"), 5);
    p.settle();
    assert_eq!(p.read_b(sb), b"hello");
    assert_eq!(p.a.session_info(sa).unwrap().state, SessionState::Open);
}

#[test]
fn invalid_config_is_refused_at_construction() {
    // Issue 10, defect 6: a zero window used to stall a session silently.
    let bad = Config {
        recv_window: 0,
        ..Config::default()
    };
    let err = Node::new(Identity::from_seed([1; 32]), bad, 1).unwrap_err();
    assert!(err.to_string().contains("recv_window"), "{err}");
}

#[test]
fn migrate_refuses_a_draining_target() {
    // Issue 10, defect 1: bytes bound to a drained stream after its barrier
    // died with it.
    let mut p = Pair::new(config());
    let l0 = p.link();
    let l1 = p.link();
    let l2 = p.link();
    let (sa, _) = p.session();
    let target = p.links[l2].a;
    // `b` drains l2; once `a` has seen the Drain, `a` may not move onto it.
    let drained = p.links[l2].b;
    p.b.drain_stream(p.now, drained).unwrap();
    p.pull();
    p.deliver(l2, false);
    assert_eq!(
        p.a.migrate(p.now, sa, target),
        Err(MigrateError::TargetDraining)
    );
    let _ = (l0, l1);
}

#[test]
fn drain_during_traffic_delivers_every_byte_exactly_once() {
    let mut p = Pair::new(config());
    let l0 = p.link();
    p.link();
    let (sa, sb) = p.session();
    let data = pattern(40_000);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut drained = false;
    for round in 0..400 {
        sent += p.write_a(sa, &data[sent..]);
        p.pull();
        for i in 0..p.links.len() {
            p.deliver(i, true);
            p.deliver(i, false);
        }
        p.collect();
        got.extend(p.read_b(sb));
        if round == 3 && !drained {
            let s = p.links[l0].a;
            p.a.drain_stream(p.now, s).unwrap();
            drained = true;
        }
        if got.len() == data.len() {
            break;
        }
    }
    assert_eq!(got, data);
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::Drained,
            ..
        }
    )));
}

#[test]
fn a_drain_completes_when_the_migration_ends_through_a_resume() {
    // Issue 10, defect 2: a migration settled by the peer's Resume (not by a
    // Credit on the target) never re-checked drains: the stream stayed
    // draining for good.
    let mut p = Pair::new(config());
    let l0 = p.link();
    let l1 = p.link();
    let l2 = p.link();
    let (sa, _) = p.session();
    let on = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let drained_link = p.links.iter().position(|l| l.a == on).unwrap();
    // Start the drain, then kill another stream before anything is
    // delivered: the migration now ends through the Resume exchange.
    p.a.drain_stream(p.now, on).unwrap();
    let other = [l0, l1, l2]
        .into_iter()
        .find(|&i| {
            i != drained_link && p.links[i].a != p.a.session_info(sa).unwrap().send_stream.unwrap()
        })
        .unwrap();
    p.kill(other);
    p.settle();
    p.advance(Duration::from_millis(10));
    assert!(
        p.a.stream_info(on).is_none(),
        "the drained stream closed: {:?}",
        p.a.stream_info(on)
    );
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, Event::Migrated { session, .. } if *session == sa)));
}

#[test]
fn a_stale_recovery_deadline_never_closes_a_later_recovery() {
    // Issue 10, defect 3: the deadline tag saturated after 65,535
    // recoveries, so an earlier recovery's deadline closed a later one.
    let mut p = Pair::new(Config {
        recovery_timeout: Duration::from_secs(10),
        ..config()
    });
    let l0 = p.link();
    p.link();
    let (sa, _) = p.session();
    // Pretend the session recovered a great many times already.
    let eid = sa.engine();
    if let Some(e) = p.a.engine_for_test(eid) {
        if let Some(s) = e.sessions.get_mut(sa) {
            s.moves_mut().recoveries = u32::from(u16::MAX) + 5;
        }
    }
    let first = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let first_link = p.links.iter().position(|l| l.a == first).unwrap();
    p.kill(first_link);
    p.settle(); // recovered on the other stream
    p.advance(Duration::from_secs(6));
    // A new stream, then the second recovery, 6 s after the first.
    let l2 = p.link();
    let second = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let second_link = p.links.iter().position(|l| l.a == second).unwrap();
    // Recover into limbo: block delivery so this recovery stays open.
    for l in &mut p.links {
        if l.alive && l.a != second {
            l.alive = false;
        }
    }
    p.kill(second_link);
    assert_eq!(
        p.a.session_info(sa).unwrap().state,
        SessionState::Recovering
    );
    // The first recovery's deadline (t = 10 s) passes: still recovering.
    p.advance(Duration::from_secs(5));
    assert_eq!(
        p.a.session_info(sa).map(|s| s.state),
        Some(SessionState::Recovering)
    );
    // Its own deadline (t = 16 s) closes it.
    p.advance(Duration::from_secs(6));
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::SessionClosed { session, reason: CloseReason::PeerUnreachable } if *session == sa
    )));
    let _ = (l0, l2);
}

#[test]
fn idle_peers_are_forgotten() {
    // Issue 10, defect 5: the peer table kept an entry for every identity
    // ever seen.
    let mut p = Pair::new(Config {
        routing_timeout: Duration::from_secs(1),
        ..config()
    });
    // A session to a peer with no stream: the engine lives while it does.
    let s = p.a.open_session(p.now, p.b.local_id(), "q").unwrap();
    assert_eq!(p.a.peer_count(), 1);
    p.advance(Duration::from_secs(2));
    assert!(p.a.session_info(s).is_none());
    assert_eq!(p.a.peer_count(), 0);
    // A stream that comes and goes.
    let l = p.link();
    assert_eq!(p.b.peer_count(), 1);
    p.kill(l);
    assert_eq!(p.a.peer_count(), 0);
    assert_eq!(p.b.peer_count(), 0);
}

#[test]
fn crossed_resumes_converge_on_one_stream() {
    // Issue 10, defect 4: both sides recovered onto different streams and
    // rule 5 swapped them for good.
    let mut p = Pair::new(config());
    let l0 = p.link();
    let l1 = p.link();
    let l2 = p.link();
    let (sa, sb) = p.session();
    let on = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let dead = p.links.iter().position(|l| l.a == on).unwrap();
    // Make each side prefer a different surviving stream.
    let others: Vec<usize> = [l0, l1, l2].into_iter().filter(|&i| i != dead).collect();
    p.kill(dead);
    // Rebind by hand: a on the first survivor, b on the second (as two
    // policies with different RTT views would).
    let (xa, yb) = (p.links[others[0]].a, p.links[others[1]].b);
    for (node, id, to) in [(&mut p.a, sa, xa), (&mut p.b, sb, yb)] {
        let eid = id.engine();
        if let Some(e) = node.engine_for_test(eid) {
            e.rebind(id, Some(to));
        }
    }
    p.settle();
    let ia = p.a.session_info(sa).unwrap();
    let ib = p.b.session_info(sb).unwrap();
    let link_of_a = p.links.iter().position(|l| Some(l.a) == ia.send_stream);
    let link_of_b = p.links.iter().position(|l| Some(l.b) == ib.send_stream);
    assert_eq!(
        link_of_a, link_of_b,
        "both directions on one stream: {ia:?} {ib:?}"
    );
    assert_eq!(ia.state, SessionState::Open);
    assert_eq!(ib.state, SessionState::Open);
}

#[test]
fn epochs_compare_across_wrap_around() {
    use super::epoch_newer;
    assert!(epoch_newer(1, 0));
    assert!(!epoch_newer(0, 1));
    assert!(!epoch_newer(5, 5));
    assert!(epoch_newer(0, u32::MAX));
    assert!(epoch_newer(3, u32::MAX - 2));
    assert!(!epoch_newer(u32::MAX, 0));
}

#[test]
fn a_restarted_peer_ends_old_sessions_at_once() {
    let mut p = Pair::new(config());
    let l = p.link();
    let (sa, _) = p.session();
    // b restarts: same key, new node (new incarnation), no state.
    let ib = [[1; 32], [2; 32]]
        .into_iter()
        .map(Identity::from_seed)
        .find(|i| i.node_id() == p.b.local_id())
        .unwrap();
    p.kill(l);
    assert_eq!(
        p.a.session_info(sa).unwrap().state,
        SessionState::Recovering
    );
    p.b = Node::new(ib, config(), 99).unwrap();
    p.link();
    assert!(
        p.events_a.iter().any(|e| matches!(
            e,
            Event::SessionClosed { session, reason: CloseReason::PeerRestarted } if *session == sa
        )),
        "{:?}",
        p.events_a
    );
}

/// Advances `p` in `step`s until `done` holds or `limit` passed; returns
/// the time it took.
fn run_until(
    p: &mut Pair,
    step: Duration,
    limit: Duration,
    mut done: impl FnMut(&Pair) -> bool,
) -> Duration {
    let start = p.now;
    while !done(p) {
        assert!(
            p.now.saturating_duration_since(start) < limit,
            "not within {limit:?}: a {:?} / b {:?}",
            p.events_a,
            p.events_b
        );
        p.advance(step);
    }
    p.now.saturating_duration_since(start)
}

fn suspected(events: &[Event], stream: StreamId) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::StreamSuspect { stream: s } if *s == stream))
}

#[test]
fn a_silent_stream_becomes_suspect_and_its_sessions_resume_elsewhere() {
    let mut p = Pair::new(config());
    p.link();
    p.link();
    let (sa, sb) = p.session();
    let data = pattern(20_000);
    let mut sent = p.write_a(sa, &data[..1000]);
    p.settle();
    let mut got = p.read_b(sb);
    let on = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let li = p.links.iter().position(|l| l.a == on).unwrap();
    // The carrying path goes silent: nothing is closed, nothing arrives.
    p.links[li].silent = true;
    sent += p.write_a(sa, &data[sent..]);
    p.pull();
    // RTT ~0 here, so RTO is its 100 ms floor: probe at 100 ms, suspect at
    // 200 ms (10 ms steps).
    let took = run_until(
        &mut p,
        Duration::from_millis(10),
        Duration::from_secs(1),
        |p| suspected(&p.events_a, on),
    );
    assert!(took <= Duration::from_millis(210), "suspect after {took:?}");
    let info = p.a.stream_info(on).unwrap();
    assert!(info.suspect && !info.draining, "{info:?}");
    assert_ne!(p.a.session_info(sa).unwrap().send_stream, Some(on));
    // The data goes on over the other stream, exactly once.
    for _ in 0..200 {
        sent += p.write_a(sa, &data[sent..]);
        p.settle();
        got.extend(p.read_b(sb));
        if got.len() == data.len() {
            break;
        }
        p.advance(Duration::from_millis(10));
    }
    assert_eq!(got, data);
    assert!(p.a.stream_info(on).is_some(), "kept until dead_timeout");
    // The path heals: what waited in it arrives (duplicates, dropped by
    // offset) and the stream is healthy again.
    p.links[li].silent = false;
    p.settle();
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, Event::StreamHealthy { stream } if *stream == on)));
    assert!(!p.a.stream_info(on).unwrap().suspect);
    assert!(p.read_b(sb).is_empty(), "nothing delivered twice");
    assert_eq!(p.a.session_info(sa).unwrap().state, SessionState::Open);
}

#[test]
fn a_receiver_that_only_granted_credit_waits_for_nothing() {
    // Regression (sim_placement backup/pinned): the receiver's credit
    // started its silence clock, so a sender that paused (or whose burst
    // was still on the wire) made the receiver suspect a healthy stream.
    let mut p = Pair::new(config());
    p.link();
    let (sa, sb) = p.session();
    let on = p.b.session_info(sb).unwrap().send_stream.unwrap();
    let li = p.links.iter().position(|l| l.b == on).unwrap();
    let data = pattern(4096);
    assert_eq!(p.write_a(sa, &data), data.len());
    p.settle();
    assert_eq!(p.read_b(sb), data);
    // b's credit goes out; then the path towards b goes silent (a sender
    // with nothing more to say looks the same to b).
    p.settle();
    p.links[li].silent = true;
    for _ in 0..300 {
        p.advance(Duration::from_millis(10));
    }
    assert!(
        !suspected(&p.events_b, on),
        "{:?}\n{:?}",
        p.events_b,
        p.events_a
    );
    // Its keep-alive ping is owed, though: once that is out (5 s) and
    // unanswered, the stream is suspect.
    let took = run_until(
        &mut p,
        Duration::from_millis(10),
        Duration::from_secs(6),
        |p| suspected(&p.events_b, on),
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_lone_suspect_stream_keeps_its_sessions_until_it_comes_back() {
    let mut p = Pair::new(config());
    let l = p.link();
    let (sa, sb) = p.session();
    let on = p.links[l].a;
    p.links[l].silent = true;
    let data = pattern(3000);
    assert_eq!(p.write_a(sa, &data), data.len());
    p.pull();
    run_until(
        &mut p,
        Duration::from_millis(10),
        Duration::from_secs(1),
        |p| suspected(&p.events_a, on),
    );
    // Nowhere better to go: the session stays, open, on its stream.
    let info = p.a.session_info(sa).unwrap();
    assert_eq!(info.send_stream, Some(on));
    assert_eq!(info.state, SessionState::Open);
    p.links[l].silent = false;
    p.settle();
    assert_eq!(p.read_b(sb), data);
    assert!(!p.a.stream_info(on).unwrap().suspect);
}

#[test]
fn sessions_left_on_a_suspect_stream_move_to_a_new_one() {
    let mut p = Pair::new(config());
    let l = p.link();
    let (sa, sb) = p.session();
    let on = p.links[l].a;
    p.links[l].silent = true;
    let data = pattern(3000);
    p.write_a(sa, &data);
    p.pull();
    run_until(
        &mut p,
        Duration::from_millis(10),
        Duration::from_secs(1),
        |p| suspected(&p.events_a, on),
    );
    // A new stream comes up (the driver dialed again): the session resumes
    // on it while the old one is still silent.
    let fresh = p.link();
    p.advance(Duration::from_millis(10));
    assert_eq!(
        p.a.session_info(sa).unwrap().send_stream,
        Some(p.links[fresh].a)
    );
    assert_eq!(p.read_b(sb), data);
}

#[test]
fn shutdown_says_goodbye_and_both_sides_end_at_once() {
    let mut p = Pair::new(config());
    p.link();
    p.link();
    let (sa, sb) = p.session();
    p.write_a(sa, b"unsent at shutdown");
    p.a.shutdown(p.now);
    p.collect();
    // Locally at once; the streams close once the Goodbye is pulled.
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::SessionClosed { session, reason: CloseReason::Shutdown } if *session == sa
    )));
    p.settle();
    assert!(p.events_b.iter().any(|e| matches!(
        e,
        Event::SessionClosed { session, reason: CloseReason::PeerShutdown } if *session == sb
    )));
    let downs = |events: &[Event], want: StreamCloseReason| {
        events
            .iter()
            .filter(|e| matches!(e, Event::StreamDown { reason, .. } if *reason == want))
            .count()
    };
    assert_eq!(downs(&p.events_a, StreamCloseReason::Shutdown), 2);
    assert_eq!(downs(&p.events_b, StreamCloseReason::PeerShutdown), 2);
    assert_eq!(p.b.peer_count(), 0, "nothing left of the peer");
    assert_eq!(p.a.peer_count(), 0);
    assert_eq!(
        p.a.open_session(p.now, p.b.local_id(), "q"),
        Err(crate::OpenError::ShutDown)
    );
    assert_eq!(
        p.a.connect(p.now, p.b.local_id()),
        Err(crate::ConnectError::ShutDown)
    );
    assert!(p.a.is_shut_down());
}

#[test]
fn a_shutdown_stream_that_takes_nothing_closes_after_the_flush_bound() {
    let mut p = Pair::new(config());
    let l = p.link();
    p.session();
    p.a.shutdown(p.now);
    // The driver never pulls (a full socket): the core gives up after 2 s.
    p.links[l].alive = false;
    p.now += Duration::from_millis(1999);
    p.a.handle_timeout(p.now);
    p.collect();
    assert!(p.a.stream_info(p.links[l].a).is_some());
    p.now += Duration::from_millis(1);
    p.a.handle_timeout(p.now);
    p.collect();
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::Shutdown,
            ..
        }
    )));
    assert_eq!(p.a.peer_count(), 0);
}

#[test]
fn a_restarted_peer_whose_old_stream_went_silent_ends_old_sessions_within_an_rto() {
    let mut p = Pair::new(config());
    let l = p.link();
    let (sa, _) = p.session();
    // b's process vanished without closing its transport; a new process
    // with the same key connects.
    p.links[l].silent = true;
    p.links[l].b_gone = true;
    let ib = [[1; 32], [2; 32]]
        .into_iter()
        .map(Identity::from_seed)
        .find(|i| i.node_id() == p.b.local_id())
        .unwrap();
    p.b = Node::new(ib, config(), 99).unwrap();
    p.link();
    let took = run_until(
        &mut p,
        Duration::from_millis(10),
        Duration::from_secs(1),
        |p| {
            p.events_a.iter().any(|e| matches!(
            e,
            Event::SessionClosed { session, reason: CloseReason::PeerRestarted } if *session == sa
        ))
        },
    );
    // RTO is 100 ms here (its floor).
    assert!(took <= Duration::from_millis(110), "{took:?}");
    assert!(p.a.stream_info(p.links[l].a).is_none());
}

fn closed_with(events: &[Event], id: SessionId) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        Event::SessionClosed { session, reason } if *session == id => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn releasing_a_session_with_unread_bytes_resets_it() {
    let mut p = Pair::new(config());
    p.link();
    let (sa, sb) = p.session();
    p.write_a(sa, b"never read");
    p.settle();
    p.b.session(sb).unwrap().release(p.now);
    p.settle();
    assert_eq!(
        closed_with(&p.events_b, sb),
        Some(CloseReason::ResetLocally)
    );
    assert_eq!(closed_with(&p.events_a, sa), Some(CloseReason::ResetByPeer));
}

#[test]
fn a_writer_to_a_released_session_learns_it() {
    let mut p = Pair::new(config());
    p.link();
    let (sa, sb) = p.session();
    p.b.session(sb).unwrap().write(b"bye").unwrap();
    p.b.session(sb).unwrap().release(p.now);
    p.settle();
    // b's bytes and Fin arrive; a keeps writing: b resets.
    assert!(closed_with(&p.events_a, sa).is_none());
    p.write_a(sa, b"anyone there?");
    p.settle();
    assert_eq!(closed_with(&p.events_a, sa), Some(CloseReason::ResetByPeer));
}

#[test]
fn a_released_session_whose_peer_only_finishes_closes_gracefully() {
    let mut p = Pair::new(config());
    p.link();
    let (sa, sb) = p.session();
    p.b.session(sb).unwrap().write(b"reply").unwrap();
    p.b.session(sb).unwrap().release(p.now);
    p.settle();
    let mut buf = [0u8; 16];
    let n = p.a.session(sa).unwrap().read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
    assert_eq!(p.a.session(sa).unwrap().read(&mut buf).unwrap(), 0);
    p.a.session(sa).unwrap().finish();
    p.settle();
    p.advance(Duration::from_millis(50));
    assert_eq!(closed_with(&p.events_a, sa), Some(CloseReason::Graceful));
    assert_eq!(closed_with(&p.events_b, sb), Some(CloseReason::Graceful));
}

/// Moves the clock without firing timers (no pings), so that a test
/// decides exactly which probes are in flight.
fn wait(p: &mut Pair, ms: u64) {
    p.now += Duration::from_millis(ms);
}

fn rtt_of(node: &Node, stream: StreamId) -> crate::Rtt {
    node.stream_info(stream).unwrap().rtt
}

#[test]
fn credited_data_yields_rtt_samples_of_its_own_stream() {
    let mut p = Pair::new(config());
    let l = p.link();
    let (sa, sb) = p.session();
    let sa_stream = p.links[l].a;
    let before = rtt_of(&p.a, sa_stream);
    // 4000 bytes leave at t, reach b 30 ms later, b reads at once (a
    // credit is due), the credit is back 20 ms after that.
    assert_eq!(p.write_a(sa, &pattern(4000)), 4000);
    p.pull();
    wait(&mut p, 30);
    p.deliver(l, true);
    assert_eq!(p.read_b(sb).len(), 4000);
    p.pull();
    wait(&mut p, 20);
    p.deliver(l, false);
    let after = rtt_of(&p.a, sa_stream);
    assert_eq!(after.samples, before.samples + 1, "one credit, one sample");
    assert_eq!(after.latest, Duration::from_millis(50));
    // Zero: unknown (the handshake-time ping, answered in no time behind
    // the peer's first bytes, did not count).
    let expected = if before.path.is_zero() {
        Duration::from_millis(50)
    } else {
        before.path.min(Duration::from_millis(50))
    };
    assert_eq!(after.path, expected);
}

#[test]
fn retransmitted_bytes_are_never_sampled() {
    // Karn: after a stream death the resumed bytes' credit says nothing
    // about when they left.
    let mut p = Pair::new(config());
    let l0 = p.link();
    let l1 = p.link();
    let (sa, sb) = p.session();
    let on = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let dead = [l0, l1].into_iter().find(|&i| p.links[i].a == on).unwrap();
    let live = if dead == l0 { l1 } else { l0 };
    let live_a = p.links[live].a;
    assert_eq!(p.write_a(sa, &pattern(4000)), 4000);
    p.pull();
    // The bytes die with their stream; the Resume exchange runs on the
    // other one and a retransmits everything there.
    p.kill(dead);
    p.settle();
    assert_eq!(p.a.session_info(sa).unwrap().send_stream, Some(live_a));
    let before = rtt_of(&p.a, live_a);
    // Only now does b read and credit them, 400 ms later.
    wait(&mut p, 400);
    assert_eq!(p.read_b(sb), pattern(4000));
    p.settle();
    assert_eq!(
        p.a.session_info(sa).unwrap().stats.bytes_acked,
        4000,
        "the credit arrived"
    );
    assert_eq!(rtt_of(&p.a, live_a).samples, before.samples, "no sample");
    // New bytes on the same stream are sampled.
    assert_eq!(p.write_a(sa, &pattern(4000)), 4000);
    p.pull();
    wait(&mut p, 40);
    p.deliver(live, true);
    p.read_b(sb);
    p.pull();
    p.deliver(live, false);
    let now = rtt_of(&p.a, live_a);
    assert_eq!(now.samples, before.samples + 1);
    assert_eq!(now.latest, Duration::from_millis(40));
}

#[test]
fn pins_reach_the_peer_and_end_with_their_stream() {
    let mut p = Pair::new(config());
    let l0 = p.link();
    let l1 = p.link();
    let (sa, sb) = p.session();
    assert_eq!(p.a.session_pins(sa), Some((false, false)));
    p.a.pin_session(p.now, sa, true).unwrap();
    p.settle();
    assert_eq!(p.a.session_pins(sa), Some((true, false)));
    assert_eq!(p.b.session_pins(sb), Some((false, true)));
    p.a.pin_session(p.now, sa, false).unwrap();
    p.settle();
    assert_eq!(p.b.session_pins(sb), Some((false, false)));
    // An explicit migration pins too.
    let on = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let to = if p.links[l0].a == on { l1 } else { l0 };
    p.a.migrate(p.now, sa, p.links[to].a).unwrap();
    p.settle();
    assert_eq!(p.a.session_pins(sa), Some((true, false)));
    assert_eq!(p.b.session_pins(sb), Some((false, true)));
    // The stream it was pinned to dies: the pin is gone at both ends.
    p.kill(to);
    p.settle();
    assert_eq!(p.a.session_pins(sa), Some((false, false)));
    assert_eq!(p.b.session_pins(sb), Some((false, false)));
}

#[test]
fn preferences_are_announced_and_the_stricter_one_counts() {
    let mut p = Pair::new(config());
    let l0 = p.link();
    let (sa0, sb0) = (p.links[l0].a, p.links[l0].b);
    p.a.set_stream_preference(p.now, sa0, crate::StreamPreference::backup())
        .unwrap();
    p.b.set_stream_preference(
        p.now,
        sb0,
        crate::StreamPreference::with_penalty(Duration::from_millis(300)),
    )
    .unwrap();
    p.settle();
    let ia = p.a.stream_info(sa0).unwrap();
    assert_eq!(ia.preference, crate::StreamPreference::backup());
    assert_eq!(
        ia.peer_preference,
        crate::StreamPreference::with_penalty(Duration::from_millis(300))
    );
    let ib = p.b.stream_info(sb0).unwrap();
    assert_eq!(ib.peer_preference, crate::StreamPreference::backup());
    // New sessions avoid the backup stream while a normal one is up.
    let l1 = p.link();
    let (sa, _) = p.session();
    assert_eq!(
        p.a.session_info(sa).unwrap().send_stream,
        Some(p.links[l1].a)
    );
}

#[test]
fn a_migration_whose_latest_marker_died_is_abandoned() {
    // Issue 10 (fuzz input recovery_ordering/still-migrating-8afe9e3c):
    // `b` migrated to stream J and at once back to its first stream I, so
    // its latest marker went out on J. J died with the marker: only a
    // death of I (where the migration started) abandoned the migration,
    // so `b` waited for `a`'s traffic on I for ever while `a` recovered
    // onto a third stream K and stayed there.
    let mut p = Pair::new(config());
    let links = [p.link(), p.link(), p.link()];
    let (sa, sb) = p.session();
    let on_b = p.b.session_info(sb).unwrap().send_stream.unwrap();
    let i = p.links.iter().position(|l| l.b == on_b).unwrap();
    let others: Vec<usize> = links.into_iter().filter(|&l| l != i).collect();
    let (j, k) = (others[0], others[1]);
    // Nothing is delivered between these.
    let (ja, jb, ib) = (p.links[j].a, p.links[j].b, p.links[i].b);
    p.a.migrate(p.now, sa, ja).unwrap();
    p.b.migrate(p.now, sb, jb).unwrap();
    p.b.migrate(p.now, sb, ib).unwrap();
    assert_eq!(p.b.session_info(sb).unwrap().state, SessionState::Migrating);
    p.kill(j);
    // `a` recovers onto K (as a policy with its own RTT view may choose).
    let ka = p.links[k].a;
    if let Some(e) = p.a.engine_for_test(sa.engine()) {
        e.rebind(sa, Some(ka));
    }
    p.settle();
    p.advance(Duration::from_millis(10));
    let ia = p.a.session_info(sa).unwrap();
    let ib = p.b.session_info(sb).unwrap();
    assert_eq!(ia.state, SessionState::Open, "{ia:?}");
    assert_eq!(ib.state, SessionState::Open, "{ib:?}");
    let link_of_a = p.links.iter().position(|l| Some(l.a) == ia.send_stream);
    let link_of_b = p.links.iter().position(|l| Some(l.b) == ib.send_stream);
    assert_eq!(
        link_of_a, link_of_b,
        "both directions on one stream: {ia:?} {ib:?}"
    );
    // Bytes still flow, exactly once.
    let data = pattern(3000);
    assert_eq!(p.write_a(sa, &data), data.len());
    p.settle();
    assert_eq!(p.read_b(sb), data);
}

#[test]
fn a_migration_overridden_by_a_marker_to_a_dead_stream_is_abandoned() {
    // Issue 10 (fuzz input drain_ordering/overridden-migration-2fd9791b):
    // both ends migrated at the same epoch; `a`'s marker won the tie-break
    // but named a stream that had died at `b`, so `b` ignored it and
    // stayed `Migrating` with a marker `a` never follows.
    let mut p = Pair::new(config());
    let links = [p.link(), p.link(), p.link()];
    let (sa, sb) = p.session();
    let on_a = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let i = p.links.iter().position(|l| l.a == on_a).unwrap();
    let others: Vec<usize> = links.into_iter().filter(|&l| l != i).collect();
    let (j, k) = (others[0], others[1]);
    let (ja, kb, ia) = (p.links[j].a, p.links[k].b, p.links[i].a);
    p.a.migrate(p.now, sa, ja).unwrap();
    p.b.migrate(p.now, sb, kb).unwrap();
    p.kill(j);
    // `a` recovers onto I (its first stream).
    if let Some(e) = p.a.engine_for_test(sa.engine()) {
        e.rebind(sa, Some(ia));
    }
    p.settle();
    p.advance(Duration::from_millis(10));
    let ia = p.a.session_info(sa).unwrap();
    let ib = p.b.session_info(sb).unwrap();
    assert_eq!(ia.state, SessionState::Open, "{ia:?}");
    assert_eq!(ib.state, SessionState::Open, "{ib:?}");
    let link_of_a = p.links.iter().position(|l| Some(l.a) == ia.send_stream);
    let link_of_b = p.links.iter().position(|l| Some(l.b) == ib.send_stream);
    assert_eq!(
        link_of_a, link_of_b,
        "both directions on one stream: {ia:?} {ib:?}"
    );
    let data = pattern(3000);
    assert_eq!(p.write_a(sa, &data), data.len());
    p.settle();
    assert_eq!(p.read_b(sb), data);
}

#[test]
fn a_drain_completes_when_its_last_session_leaves_by_rebinding() {
    // Issue 10 (fuzz input drain_ordering/still-draining-87426ecc): a
    // session bound to a draining stream because it was the last one left
    // it by a rebind (here: a new stream came up while it was recovering),
    // not by a settled migration. Nothing re-checked the drain, so the
    // stream stayed draining at both ends for as long as the session
    // lived.
    let mut p = Pair::new(config());
    let i = p.link();
    let j = p.link();
    let (sa, sb) = p.session();
    let on_a = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let (i, j) = if p.links[i].a == on_a { (i, j) } else { (j, i) };
    // `a` drains I: the session migrates to J; J dies before anything is
    // delivered, so the session recovers onto I, the only stream left.
    let drained = p.links[i].a;
    p.a.drain_stream(p.now, drained).unwrap();
    p.kill(j);
    assert_eq!(
        p.a.session_info(sa).unwrap().send_stream,
        Some(drained),
        "recovering on the draining stream (the last one)"
    );
    // A new stream comes up before I carries anything: the recovering
    // session moves there by a rebind.
    p.links[i].alive = false;
    let k = p.link();
    p.links[i].alive = true;
    assert_eq!(
        p.a.session_info(sa).unwrap().send_stream,
        Some(p.links[k].a)
    );
    p.settle();
    p.advance(Duration::from_millis(10));
    p.advance(Duration::from_millis(10));
    assert!(
        p.a.stream_info(drained).is_none(),
        "the drain completed at a: {:?}",
        p.a.stream_info(drained)
    );
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::StreamDown {
            stream,
            reason: StreamCloseReason::Drained,
            ..
        } if *stream == drained
    )));
    // The session works on K, exactly.
    let data = pattern(3000);
    assert_eq!(p.write_a(sa, &data), data.len());
    p.settle();
    assert_eq!(p.read_b(sb), data);
}

#[test]
fn a_resume_reply_goes_where_the_resume_came_not_onto_a_half_open_stream() {
    // Issue 10 (fuzz input drain_ordering/unreachable-after-outage-9e3e9a66):
    // both ends recover onto stream S; S then dies at b's end only
    // (half-open), with a's Resume in it. b resumes on a new stream T. a,
    // the lower id with a Resume of its own out, keeps S (crossed-Resume
    // tie-break) and answered on S: lost, so b waited in `Recovering`
    // until its deadline and closed `PeerUnreachable` though T was up.
    let mut p = Pair::new(config());
    let l0 = p.link();
    let s = p.link();
    let (sa, sb) = p.session();
    let on_a = p.a.session_info(sa).unwrap().send_stream.unwrap();
    let (l0, s) = if p.links[l0].a == on_a {
        (l0, s)
    } else {
        (s, l0)
    };
    p.kill(l0);
    assert_eq!(
        p.a.session_info(sa).unwrap().state,
        SessionState::Recovering
    );
    assert_eq!(
        p.b.session_info(sb).unwrap().state,
        SessionState::Recovering
    );
    // a's Resume goes out on S and is lost there: S dies at b's end only.
    p.pull();
    p.links[s].to_b.clear();
    p.links[s].to_a.clear();
    let sb_stream = p.links[s].b;
    p.links[s].alive = false;
    p.b.handle_transport_closed(p.now, sb_stream, "half-open");
    p.collect();
    // b resumes on a new stream T; a hears it there.
    let t = p.link();
    p.settle();
    let ib = p.b.session_info(sb).unwrap();
    assert_eq!(ib.state, SessionState::Open, "b heard a's reply: {ib:?}");
    assert_eq!(ib.send_stream, Some(p.links[t].b));
    // Long after b's recovery deadline, the session is still open.
    p.advance(Duration::from_secs(10));
    assert!(p.b.session_info(sb).is_some(), "b's session still open");
    assert!(!p.events_b.iter().any(|e| matches!(
        e,
        Event::SessionClosed {
            reason: CloseReason::PeerUnreachable,
            ..
        }
    )));
}

#[test]
fn a_marker_older_than_the_peers_epoch_is_answered_with_the_peers_binding() {
    // Issue 10: `b` had seen a newer epoch than `a` (markers of `b`'s that
    // died with a stream). `a`'s migration then carried an older epoch:
    // `b` ignored it, and `a` waited in `Migrating` for `b`'s traffic on
    // the target for ever. Now `b` restates where it sends, with its
    // epoch, and `a` follows.
    let mut p = Pair::new(config());
    let links = [p.link(), p.link()];
    let (sa, sb) = p.session();
    let on_b = p.b.session_info(sb).unwrap().send_stream.unwrap();
    let i = p.links.iter().position(|l| l.b == on_b).unwrap();
    let j = links.into_iter().find(|&l| l != i).unwrap();
    if let Some(e) = p.b.engine_for_test(sb.engine()) {
        if let Some(s) = e.sessions.get_mut(sb) {
            s.set_epoch(7);
        }
    }
    let ja = p.links[j].a;
    p.a.migrate(p.now, sa, ja).unwrap();
    p.settle();
    p.advance(Duration::from_millis(10));
    let ia = p.a.session_info(sa).unwrap();
    let ib = p.b.session_info(sb).unwrap();
    assert_eq!(ia.state, SessionState::Open, "{ia:?}");
    assert_eq!(ib.state, SessionState::Open, "{ib:?}");
    let link_of_a = p.links.iter().position(|l| Some(l.a) == ia.send_stream);
    let link_of_b = p.links.iter().position(|l| Some(l.b) == ib.send_stream);
    assert_eq!(link_of_a, link_of_b, "one stream: {ia:?} {ib:?}");
    let data = pattern(3000);
    assert_eq!(p.write_a(sa, &data), data.len());
    p.settle();
    assert_eq!(p.read_b(sb), data);
}
