//! Node-wide limits (issue 13): `max_sessions`, `max_pending_queries` and
//! `max_streams` hold over all peers together, on every path that takes a
//! unit (open, inbound query, dial, accept, handshake completion), and
//! every way out gives the unit back.

use astral_core::frame::Frame;
use astral_core::{
    codes, Config, ConnectError, Event, Identity, Node, OpenError, StreamCloseReason, Timestamp,
};
use astral_sim::raw::RawPeer;

const T0: Timestamp = Timestamp::ZERO;

fn node(config: Config) -> Node {
    Node::new(Identity::from_seed([9; 32]), config, 9).expect("valid config")
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

fn query(session: u64) -> Frame {
    Frame::Query {
        session,
        buffer: 100,
        query: "q".into(),
    }
}

fn response(frames: &[Frame], session: u64) -> Option<u8> {
    frames.iter().find_map(|f| match f {
        Frame::Response {
            session: s, code, ..
        } if *s == session => Some(*code),
        _ => None,
    })
}

/// Sends query `wire` from `p`; the node's application accepts it.
/// Returns the node's answer code.
fn ask(n: &mut Node, p: &mut RawPeer, wire: u64, accept: bool) -> u8 {
    p.send(n, T0, &[query(wire)]);
    for e in events(n) {
        if let Event::Query { session, .. } = e {
            if accept {
                n.accept_query(T0, session).unwrap();
            }
        }
    }
    let frames = p.recv(n, T0);
    response(&frames, wire).unwrap_or(u8::MAX)
}

#[test]
fn max_sessions_holds_over_all_peers_for_inbound_and_outbound() {
    let mut n = node(Config {
        max_sessions: 3,
        ..Config::default()
    });
    let mut a = RawPeer::connect(&mut n, T0, 1);
    let mut b = RawPeer::connect(&mut n, T0, 2);
    assert_eq!(ask(&mut n, &mut a, 1, true), codes::ACCEPTED);
    assert_eq!(ask(&mut n, &mut b, 1, true), codes::ACCEPTED);
    // The node's own open takes the third.
    let mine = n.open_session(T0, a.identity.node_id(), "x").unwrap();
    assert_eq!(n.session_count(), 3);
    // Inbound from either peer: LIMIT. Outbound to either: refused.
    assert_eq!(ask(&mut n, &mut b, 2, true), codes::LIMIT);
    assert_eq!(ask(&mut n, &mut a, 2, true), codes::LIMIT);
    assert_eq!(
        n.open_session(T0, b.identity.node_id(), "x"),
        Err(OpenError::NodeSessionLimit)
    );
    // A third peer that has no stream yet: refused too, and no engine is
    // left behind for it.
    let c = Identity::from_seed([3; 32]).node_id();
    let peers = n.peer_count();
    assert_eq!(n.open_session(T0, c, "x"), Err(OpenError::NodeSessionLimit));
    assert_eq!(n.peer_count(), peers);
    // Closing one gives its unit back.
    n.session(mine).unwrap().reset(T0);
    events(&mut n);
    assert_eq!(ask(&mut n, &mut b, 3, true), codes::ACCEPTED);
    assert_eq!(n.session_count(), 3);
}

#[test]
fn max_pending_queries_holds_over_all_peers() {
    let mut n = node(Config {
        max_pending_queries: 2,
        ..Config::default()
    });
    let mut a = RawPeer::connect(&mut n, T0, 1);
    let mut b = RawPeer::connect(&mut n, T0, 2);
    a.send(&mut n, T0, &[query(1)]);
    b.send(&mut n, T0, &[query(1)]);
    // Two pending (one per peer): a third from either is BUSY.
    b.send(&mut n, T0, &[query(2)]);
    assert_eq!(response(&b.recv(&mut n, T0), 2), Some(codes::BUSY));
    a.send(&mut n, T0, &[query(2)]);
    assert_eq!(response(&a.recv(&mut n, T0), 2), Some(codes::BUSY));
    // Accepting one frees its place (a pending query becomes a session).
    let first = events(&mut n)
        .into_iter()
        .find_map(|e| match e {
            Event::Query { session, .. } => Some(session),
            _ => None,
        })
        .unwrap();
    n.accept_query(T0, first).unwrap();
    assert_eq!(
        ask(&mut n, &mut b, 3, false),
        u8::MAX,
        "pending, unanswered"
    );
    a.send(&mut n, T0, &[query(4)]);
    assert_eq!(response(&a.recv(&mut n, T0), 4), Some(codes::BUSY));
}

#[test]
fn max_streams_holds_over_dials_accepts_and_established_streams() {
    let mut n = node(Config {
        max_streams: 3,
        ..Config::default()
    });
    let a = RawPeer::connect(&mut n, T0, 1);
    let _b = RawPeer::connect(&mut n, T0, 2);
    // A dial takes the third slot while it handshakes.
    let c = Identity::from_seed([3; 32]).node_id();
    let dial = n.connect(T0, c).unwrap();
    let d = Identity::from_seed([4; 32]).node_id();
    assert_eq!(n.connect(T0, d), Err(ConnectError::Limit("max_streams")));
    // An inbound transport finds nothing to evict (no inbound handshake).
    assert_eq!(n.accept(T0), Err(ConnectError::Limit("max_streams")));
    assert_eq!(n.admission_stats().refused, 1);
    // The dial fails: its slot comes back.
    n.handle_transport_closed(T0, dial, "refused");
    let s = n.accept(T0).unwrap();
    // That handshake holds the slot: a newcomer evicts it (the only one).
    let t = n.accept(T0).unwrap();
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown { stream, reason: StreamCloseReason::HandshakeEvicted, .. } if *stream == s
    )));
    // An established stream closing gives its slot back.
    n.close_stream(T0, a.stream);
    events(&mut n);
    assert!(n.connect(T0, d).is_ok());
    assert!(n.stream_info(t).is_some());
}

#[test]
fn a_stream_refused_by_a_per_peer_limit_gives_its_node_slot_back() {
    let mut n = node(Config {
        max_streams: 2,
        max_streams_per_peer: 1,
        ..Config::default()
    });
    let _a = RawPeer::connect(&mut n, T0, 1);
    // The same identity again: the handshake completes, its engine refuses
    // the second stream.
    let _again = RawPeer::connect(&mut n, T0, 1);
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::LimitExceeded("max_streams_per_peer"),
            ..
        }
    )));
    // Its node-wide slot is free again: another identity gets in.
    let b = RawPeer::connect(&mut n, T0, 2);
    assert!(n.stream_info(b.stream).is_some());
}

#[test]
fn defaults_are_bounded() {
    // Issue 13: every node-wide limit exists and is finite by default;
    // per-peer limits are below the node-wide ones so one identity cannot
    // take everything.
    let c = Config::default();
    assert!(c.max_sessions <= 4096, "{}", c.max_sessions);
    assert!(c.max_sessions_per_peer < c.max_sessions);
    assert!(c.max_pending_queries <= c.max_sessions);
    assert!(c.max_streams <= 4096);
    assert!(c.max_streams_per_peer < c.max_streams);
    assert!(c.max_handshaking_streams < c.max_streams);
    assert!(c.max_handshakes_per_prefix < c.max_handshaking_streams);
    assert!(c.max_handshakes_per_address < c.max_handshakes_per_prefix);
    assert!(c.handshake_timeout_under_pressure < c.handshake_timeout);
}
