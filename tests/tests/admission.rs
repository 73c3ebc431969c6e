//! Handshake admission and the accept policy (issue 13), in virtual time
//! against the real core: slowloris handshakes from one address or one
//! prefix never hold a newcomer from elsewhere back; a burst of legitimate
//! handshakes all completes (queueing, no failures); a full node evicts the
//! busiest source's stalest handshake instead of refusing; pressure
//! shortens stalled handshakes' deadlines; refused identities leave no
//! peer state. Each test prints the admission counters it asserts.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use astral_core::{
    AdmissionStats, AllowList, Config, Event, Identity, Node, NodeId, Source, StreamCloseReason,
    StreamId, Timestamp,
};
use astral_sim::raw::{DialerState, RawDialer};

const T0: Timestamp = Timestamp::ZERO;

fn node(config: Config) -> Node {
    Node::new(Identity::from_seed([9; 32]), config, 9).expect("valid config")
}

fn identity(n: u64) -> Identity {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8] = 0xad;
    Identity::from_seed(seed)
}

fn src(ip: &str) -> Option<Source> {
    Some(Source::from_ip(ip.parse::<IpAddr>().expect("address")))
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

fn downs(evs: &[Event]) -> Vec<(StreamId, StreamCloseReason)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::StreamDown { stream, reason, .. } => Some((*stream, reason.clone())),
            _ => None,
        })
        .collect()
}

fn ups(evs: &[Event]) -> BTreeSet<StreamId> {
    evs.iter()
        .filter_map(|e| match e {
            Event::StreamUp { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect()
}

/// `n` slowloris dialers from `sources` (round robin): each sends 22 bytes
/// of message 1 and stalls.
fn slowloris(node: &mut Node, now: Timestamp, n: usize, sources: &[&str]) -> Vec<RawDialer> {
    (0..n)
        .map(|i| {
            let mut d = RawDialer::accept(
                node,
                now,
                identity(10_000 + i as u64),
                src(sources[i % sources.len()]),
            )
            .expect("accepted");
            d.send_msg1_part(node, now, 22);
            d
        })
        .collect()
}

/// Runs one legitimate dialer to completion at `now` (no time passes):
/// whether its stream came up.
fn legit(node: &mut Node, now: Timestamp, id: u64, from: &str) -> bool {
    let Some(mut d) = RawDialer::accept(node, now, identity(id), src(from)) else {
        return false;
    };
    d.send_msg1(node, now);
    for _ in 0..4 {
        if d.step(node, now) == DialerState::Complete {
            break;
        }
    }
    node.stream_info(d.stream).is_some_and(|s| {
        s.peer == Some(identity(id).node_id()) && s.state == astral_core::StreamState::Established
    })
}

fn print(what: &str, s: &AdmissionStats) {
    println!(
        "{what}: active {} waiting {} admitted {} waited {} evicted {} timed-out {} (pressure {}) refused {} not-allowed {} completed {}",
        s.active, s.waiting, s.admitted, s.waited, s.evicted, s.timed_out, s.timed_out_under_pressure, s.refused, s.not_allowed, s.completed
    );
}

#[test]
fn slowloris_from_one_address_never_delays_a_newcomer_from_elsewhere() {
    let mut n = node(Config::default());
    let _attack = slowloris(&mut n, T0, 1000, &["127.0.1.1"]);
    let s = n.admission_stats();
    print("1,000 slowloris from 1 address", &s);
    let per_address = n.config().max_handshakes_per_address;
    assert_eq!((s.active, s.waiting), (per_address, 1000 - per_address));
    for i in 0..100 {
        assert!(legit(&mut n, T0, i, "127.0.0.2"), "legitimate try {i}");
    }
    let s = n.admission_stats();
    print("after 100 legitimate tries", &s);
    assert_eq!((s.completed, s.evicted, s.refused), (100, 0, 0));
}

#[test]
fn slowloris_from_sixteen_addresses_of_one_prefix_never_delays_another_prefix() {
    let mut n = node(Config::default());
    let sources: Vec<String> = (1..=16).map(|i| format!("127.0.1.{i}")).collect();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    let _attack = slowloris(&mut n, T0, 1000, &sources);
    let s = n.admission_stats();
    print("1,000 slowloris from 16 addresses", &s);
    assert_eq!(s.active, n.config().max_handshakes_per_prefix);
    for i in 0..100 {
        assert!(legit(&mut n, T0, i, "127.0.0.2"), "legitimate try {i}");
    }
    assert_eq!(n.admission_stats().completed, 100);
}

#[test]
fn two_thousand_concurrent_handshakes_from_eight_addresses_all_complete() {
    let mut n = node(Config::default());
    let mut dialers: Vec<RawDialer> = (0..2000)
        .map(|i| {
            let from = format!("127.0.1.{}", 1 + i % 8);
            let mut d =
                RawDialer::accept(&mut n, T0, identity(i as u64), src(&from)).expect("accepted");
            d.send_msg1(&mut n, T0);
            d
        })
        .collect();
    let s = n.admission_stats();
    print("2,000 handshakes at once", &s);
    assert!(s.waiting > 0, "the prefix limit makes most of them wait");
    let mut now = T0;
    let mut rounds = 0;
    let mut up = BTreeSet::new();
    let mut down = Vec::new();
    while up.len() + down.len() < 2000 {
        rounds += 1;
        assert!(rounds < 1000, "no progress");
        // One round trip per round, 1 ms each.
        now += Duration::from_millis(1);
        for d in dialers.iter_mut() {
            d.step(&mut n, now);
        }
        n.handle_timeout(now);
        let evs = events(&mut n);
        up.extend(ups(&evs));
        down.extend(downs(&evs));
    }
    let s = n.admission_stats();
    print("after the burst", &s);
    println!("rounds (1 ms each): {rounds}");
    assert!(
        down.is_empty(),
        "failures: {:?}",
        &down[..down.len().min(5)]
    );
    assert_eq!(up.len(), 2000);
    assert_eq!((s.completed, s.evicted, s.timed_out), (2000, 0, 0));
    assert!(s.waited > 1000);
}

#[test]
fn a_waiting_stream_keeps_its_message_and_is_served_in_turn() {
    let mut n = node(Config {
        max_handshakes_per_address: 1,
        ..Config::default()
    });
    let mut first = RawDialer::accept(&mut n, T0, identity(1), src("10.0.0.1")).unwrap();
    let mut second = RawDialer::accept(&mut n, T0, identity(2), src("10.0.0.1")).unwrap();
    second.send_msg1(&mut n, T0);
    assert_eq!(n.admission_stats().waiting, 1);
    assert!(!n.wants_transmit(second.stream), "nothing before its turn");
    assert_eq!(second.step(&mut n, T0), DialerState::AwaitingMessage2);
    first.send_msg1(&mut n, T0);
    while first.step(&mut n, T0) != DialerState::Complete {}
    // The first one's slot went to the second, whose message 1 waited.
    assert!(n.wants_transmit(second.stream));
    while second.step(&mut n, T0) != DialerState::Complete {}
    assert_eq!(ups(&events(&mut n)).len(), 2);
}

#[test]
fn a_waiting_stream_that_sends_garbage_fails_at_once() {
    let mut n = node(Config {
        max_handshakes_per_address: 1,
        ..Config::default()
    });
    let _first = RawDialer::accept(&mut n, T0, identity(1), src("10.0.0.1")).unwrap();
    let junk = n.accept_from(T0, src("10.0.0.1")).unwrap();
    n.handle_input(T0, junk, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let evs = events(&mut n);
    assert!(
        matches!(&downs(&evs)[..], [(s, StreamCloseReason::HandshakeFailed(_))] if *s == junk),
        "{evs:?}"
    );
    assert_eq!(n.admission_stats().waiting, 0);
    // More than one message before message 2: also not a dialer.
    let eager = n.accept_from(T0, src("10.0.0.1")).unwrap();
    let mut two = vec![0u8, 48];
    two.extend_from_slice(&[1; 48]);
    two.extend_from_slice(&[0, 1, 9]);
    n.handle_input(T0, eager, &two);
    assert_eq!(downs(&events(&mut n)).len(), 1);
}

#[test]
fn a_full_node_evicts_the_stalest_handshake_of_the_busiest_source() {
    let mut n = node(Config {
        max_streams: 8,
        ..Config::default()
    });
    let t1 = T0 + Duration::from_millis(100);
    let attack = slowloris(&mut n, T0, 6, &["10.0.0.1"]);
    let mut other = RawDialer::accept(&mut n, t1, identity(50), src("10.0.0.2")).unwrap();
    other.send_msg1_part(&mut n, t1, 10);
    let late = RawDialer::accept(&mut n, t1, identity(51), src("10.0.0.1")).unwrap();
    assert!(events(&mut n).is_empty(), "8 of 8 slots, no eviction yet");
    // A newcomer from elsewhere: 10.0.0.1 holds 7 of the 8; its stalest
    // (the first attacker: oldest progress, lowest id) goes.
    let t2 = T0 + Duration::from_millis(200);
    assert!(legit(&mut n, t2, 1, "192.0.2.1"), "the newcomer is served");
    let evs = events(&mut n);
    let d = downs(&evs);
    assert_eq!(
        d,
        vec![(attack[0].stream, StreamCloseReason::HandshakeEvicted)],
        "{evs:?}"
    );
    // The newcomer's stream is established now and holds its slot: the
    // next newcomer evicts again, never the established stream.
    assert!(legit(&mut n, t2, 2, "192.0.2.2"));
    let d = downs(&events(&mut n));
    assert_eq!(
        d,
        vec![(attack[1].stream, StreamCloseReason::HandshakeEvicted)]
    );
    let s = n.admission_stats();
    print("full node", &s);
    assert_eq!((s.evicted, s.refused, s.completed), (2, 0, 2));
    let _ = (late, other);
}

#[test]
fn a_node_full_of_established_streams_refuses_with_max_streams() {
    let mut n = node(Config {
        max_streams: 2,
        ..Config::default()
    });
    assert!(legit(&mut n, T0, 1, "10.0.0.1"));
    assert!(legit(&mut n, T0, 2, "10.0.0.2"));
    assert_eq!(
        n.accept_from(T0, src("10.0.0.3")).err(),
        Some(astral_core::ConnectError::Limit("max_streams"))
    );
    assert_eq!(
        n.connect(T0, identity(3).node_id()).err(),
        Some(astral_core::ConnectError::Limit("max_streams"))
    );
    assert_eq!(n.admission_stats().refused, 1);
}

#[test]
fn pressure_shortens_stalled_handshakes_and_spares_the_others() {
    let config = Config::default();
    let (short, full) = (
        config.handshake_timeout_under_pressure,
        config.handshake_timeout,
    );
    let mut n = node(config);
    // A slow but honest dialer elsewhere, then a flood that waits.
    // (Message 2 waits in the node until the dialer reads it, at 5 s.)
    let mut slow = RawDialer::accept(&mut n, T0, identity(7), src("192.0.2.9")).unwrap();
    slow.send_msg1(&mut n, T0);
    let attack = slowloris(&mut n, T0, 40, &["10.0.0.1"]);
    assert!(n.admission_stats().waiting > 0);
    assert_eq!(n.poll_timeout(), Some(T0 + short));
    n.handle_timeout(T0 + short);
    let evs = events(&mut n);
    let per_address = n.config().max_handshakes_per_address;
    let timed_out: Vec<StreamId> = downs(&evs)
        .into_iter()
        .map(|(s, r)| {
            assert_eq!(r, StreamCloseReason::HandshakeTimeout);
            s
        })
        .collect();
    assert_eq!(timed_out.len(), per_address, "the flood's active ones");
    assert!(timed_out
        .iter()
        .all(|s| attack.iter().any(|a| a.stream == *s)));
    assert!(
        n.stream_info(slow.stream).is_some(),
        "nobody waits for its slot"
    );
    let s = n.admission_stats();
    print("after one pressure deadline", &s);
    assert_eq!(s.timed_out_under_pressure, per_address as u64);
    // Its full deadline still holds: it completes after 5 s.
    let t5 = T0 + Duration::from_secs(5);
    n.handle_timeout(t5);
    while slow.step(&mut n, t5) != DialerState::Complete {}
    assert!(ups(&events(&mut n)).contains(&slow.stream));
    // The waiting ones time out from their arrival, the last served ones
    // from their activation.
    n.handle_timeout(T0 + full);
    let s = n.admission_stats();
    print("after the full deadline", &s);
    assert!(s.waiting == 0 && s.active <= per_address, "{s:?}");
}

#[test]
fn admission_is_deterministic() {
    fn run() -> Vec<u8> {
        let mut n = node(Config {
            max_handshakes_per_address: 2,
            max_streams: 20,
            ..Config::default()
        });
        let mut out = Vec::new();
        let mut dialers = Vec::new();
        for i in 0..30u64 {
            let t = T0 + Duration::from_millis(i * 10);
            let from = format!("10.0.{}.{}", i % 3, i % 5);
            if let Some(mut d) = RawDialer::accept(&mut n, t, identity(i), src(&from)) {
                if i % 4 != 0 {
                    d.send_msg1(&mut n, t);
                }
                dialers.push(d);
            }
            for d in dialers.iter_mut().filter(|_| i % 2 == 0) {
                d.step(&mut n, t);
            }
            n.handle_timeout(t + Duration::from_secs(1));
            for e in events(&mut n) {
                out.extend_from_slice(format!("{e:?}\n").as_bytes());
            }
        }
        out.extend_from_slice(format!("{:?}", n.admission_stats()).as_bytes());
        out
    }
    assert_eq!(run(), run());
}

// ----- the accept policy ---------------------------------------------------

#[test]
fn a_refused_identity_holds_no_session_and_no_peer_entry() {
    let mut n = node(Config::default());
    let friend = identity(1).node_id();
    let list: AllowList = [friend].into_iter().collect();
    n.set_accept_policy(Some(Arc::new(list)));
    for i in 0..10 {
        assert!(!legit(&mut n, T0, 100 + i, "10.0.0.1"), "stranger {i}");
    }
    let evs = events(&mut n);
    let refused: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::StreamDown {
                peer: Some(p),
                reason: StreamCloseReason::NotAllowed,
                ..
            } => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 10);
    assert!(refused.iter().all(|p| *p != friend));
    assert!(ups(&evs).is_empty(), "no StreamUp for a stranger");
    assert!(!evs.iter().any(|e| matches!(e, Event::Linked(_))));
    assert_eq!((n.peer_count(), n.session_count()), (0, 0));
    assert_eq!(n.streams().count(), 0, "and no stream");
    assert!(legit(&mut n, T0, 1, "10.0.0.1"), "the friend is let in");
    assert_eq!(n.peer_count(), 1);
    let s = n.admission_stats();
    print("allow-list", &s);
    assert_eq!((s.not_allowed, s.completed), (10, 1));
    // Dropping the policy lets anyone in again.
    n.set_accept_policy(None);
    assert!(legit(&mut n, T0, 100, "10.0.0.1"));
}

#[test]
fn the_policy_sees_the_source_and_a_closure_is_a_policy() {
    let mut n = node(Config::default());
    let lan = Source::from_ip("10.1.2.3".parse().unwrap()).prefix;
    n.set_accept_policy(Some(Arc::new(move |_: &NodeId, s: Option<&Source>| {
        s.is_some_and(|s| s.prefix == lan)
    })));
    assert!(legit(&mut n, T0, 1, "10.1.2.200"));
    assert!(!legit(&mut n, T0, 2, "10.1.3.1"));
    let mut anon = RawDialer::accept(&mut n, T0, identity(3), None).unwrap();
    anon.send_msg1(&mut n, T0);
    while anon.step(&mut n, T0) != DialerState::Complete {}
    assert!(n.stream_info(anon.stream).is_none(), "no source, refused");
}

#[test]
fn streams_this_node_dials_are_not_asked() {
    // Two nodes in memory: a dials b; a's policy refuses everyone.
    let mut a = node(Config::default());
    let mut b = Node::new(identity(2), Config::default(), 2).unwrap();
    a.set_accept_policy(Some(Arc::new(AllowList::new())));
    let sa = a.connect(T0, b.local_id()).unwrap();
    let sb = b.accept(T0).unwrap();
    let mut buf = bytes::BytesMut::new();
    for _ in 0..4 {
        a.poll_transmit(T0, sa, &mut buf, usize::MAX);
        b.handle_input(T0, sb, &buf.split());
        b.poll_transmit(T0, sb, &mut buf, usize::MAX);
        a.handle_input(T0, sa, &buf.split());
    }
    assert!(ups(&events(&mut a)).contains(&sa));
    assert_eq!(a.peer_streams(b.local_id()), vec![sa]);
}
