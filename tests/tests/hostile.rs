//! Hostile and malformed input (design §10): each violation has the right
//! consequence and nothing panics. Also: every configured limit is enforced.

use std::time::Duration;

use astral_core::frame::Frame;
use astral_core::{
    codes, CloseReason, Config, Event, Identity, Node, OpenError, StreamCloseReason, Timestamp,
};
use astral_sim::raw::RawPeer;

fn node(config: Config) -> Node {
    Node::new(Identity::from_seed([9; 32]), config, 9).expect("valid config")
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

const T0: Timestamp = Timestamp::ZERO;

/// Opens session `wire` from the raw peer and lets the node accept it.
fn open(n: &mut Node, p: &mut RawPeer, wire: u64) -> astral_core::SessionId {
    p.send(
        n,
        T0,
        &[Frame::Query {
            session: wire,
            buffer: 1000,
            query: "q".into(),
        }],
    );
    let id = events(n)
        .into_iter()
        .find_map(|e| match e {
            Event::Query { session, .. } => Some(session),
            _ => None,
        })
        .expect("query event");
    n.accept_query(T0, id).unwrap();
    let frames = p.recv(n, T0);
    assert!(frames.contains(&Frame::Response {
        session: wire,
        code: 0,
        buffer: n.config().recv_window
    }));
    id
}

#[test]
fn data_beyond_credit_resets_the_session_only() {
    let mut n = node(Config {
        recv_window: 100,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, T0, 1);
    let id = open(&mut n, &mut p, 5);
    events(&mut n);
    p.send(
        &mut n,
        T0,
        &[Frame::DataAt {
            session: 5,
            offset: 0,
            payload: vec![0u8; 101].into(),
        }],
    );
    let ev = events(&mut n);
    assert!(ev.iter().any(|e| matches!(e, Event::SessionClosed { session, reason: CloseReason::ProtocolError(_) } if *session == id)), "{ev:?}");
    assert!(p.recv(&mut n, T0).contains(&Frame::Reset { session: 5 }));
    // The stream survives.
    assert!(n.stream_info(p.stream).is_some());
}

#[test]
fn credit_beyond_sent_and_bad_fin_are_session_errors() {
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    open(&mut n, &mut p, 5);
    p.send(
        &mut n,
        T0,
        &[Frame::Credit {
            session: 5,
            consumed: 10,
        }],
    );
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::SessionClosed {
            reason: CloseReason::ProtocolError(_),
            ..
        }
    )));
    open(&mut n, &mut p, 6);
    p.send(
        &mut n,
        T0,
        &[
            Frame::DataAt {
                session: 6,
                offset: 0,
                payload: vec![1u8; 10].into(),
            },
            Frame::Fin {
                session: 6,
                offset: 5,
            },
        ],
    );
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::SessionClosed {
            reason: CloseReason::ProtocolError(_),
            ..
        }
    )));
}

#[test]
fn base_frames_close_the_stream_with_a_protocol_error() {
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    events(&mut n);
    p.send(
        &mut n,
        T0,
        &[Frame::Data {
            session: 1,
            payload: vec![1].into(),
        }],
    );
    let ev = events(&mut n);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::StreamDown {
                reason: StreamCloseReason::ProtocolError(_),
                ..
            }
        )),
        "{ev:?}"
    );
}

#[test]
fn forged_and_oversize_records_close_the_stream() {
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    events(&mut n);
    p.send_raw(
        &mut n,
        T0,
        &[
            0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        ],
    );
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::BadRecord(_),
            ..
        }
    )));
    let mut p = RawPeer::connect(&mut n, T0, 2);
    events(&mut n);
    p.send_raw(&mut n, T0, &[0, 3, 1, 2, 3]);
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::BadRecord(_),
            ..
        }
    )));
}

#[test]
fn garbage_handshake_closes_with_reason() {
    let mut n = node(Config::default());
    let s = n.accept(T0).unwrap();
    n.handle_input(
        T0,
        s,
        &[0, 48]
            .iter()
            .chain([7u8; 48].iter())
            .copied()
            .collect::<Vec<_>>(),
    );
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::HandshakeFailed(_),
            ..
        }
    )));
}

#[test]
fn markers_naming_unknown_streams_or_sessions_are_ignored() {
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    let id = open(&mut n, &mut p, 5);
    events(&mut n);
    p.send(
        &mut n,
        T0,
        &[
            Frame::MigrateTo {
                session: 5,
                target: 0xdead,
                epoch: 1,
            },
            Frame::MigrateTo {
                session: 77,
                target: p.wire,
                epoch: 1,
            },
        ],
    );
    assert!(events(&mut n).is_empty());
    let info = n.session_info(id).unwrap();
    assert_eq!(info.state, astral_core::SessionState::Open);
    assert_eq!(info.send_stream, Some(p.stream));
}

#[test]
fn marker_naming_another_peers_stream_is_ignored() {
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    let q = RawPeer::connect(&mut n, T0, 2);
    let id = open(&mut n, &mut p, 5);
    p.send(
        &mut n,
        T0,
        &[Frame::MigrateTo {
            session: 5,
            target: q.wire,
            epoch: 1,
        }],
    );
    assert_eq!(n.session_info(id).unwrap().send_stream, Some(p.stream));
}

#[test]
fn unknown_sessions_get_rate_limited_resets() {
    let mut n = node(Config {
        unknown_session_resets_per_sec: 3,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, Timestamp::from_nanos(2_000_000_000), 1);
    let now = Timestamp::from_nanos(2_000_000_000);
    let frames: Vec<Frame> = (100..110)
        .map(|s| Frame::Credit {
            session: s,
            consumed: 1,
        })
        .collect();
    p.send(&mut n, now, &frames);
    let resets = p
        .recv(&mut n, now)
        .iter()
        .filter(|f| matches!(f, Frame::Reset { .. }))
        .count();
    assert_eq!(resets, 3);
}

#[test]
fn limit_query_length() {
    let mut n = node(Config {
        max_query_len: 8,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, T0, 1);
    // Longer than the limit: refused for that session, the stream stays.
    p.send(
        &mut n,
        T0,
        &[Frame::Query {
            session: 1,
            buffer: 10,
            query: "a".repeat(9),
        }],
    );
    assert!(p.recv(&mut n, T0).contains(&Frame::Response {
        session: 1,
        code: codes::LIMIT,
        buffer: 0
    }));
    assert!(n.stream_info(p.stream).is_some());
    let mut n2 = node(Config {
        max_query_len: 8,
        ..Config::default()
    });
    assert_eq!(
        n2.open_session(T0, Identity::from_seed([1; 32]).node_id(), "123456789"),
        Err(OpenError::QueryTooLong(9))
    );
}

#[test]
fn limit_pending_queries() {
    let mut n = node(Config {
        max_pending_queries: 2,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, T0, 1);
    let q = |s| Frame::Query {
        session: s,
        buffer: 10,
        query: "x".into(),
    };
    p.send(&mut n, T0, &[q(1), q(2), q(3)]);
    let frames = p.recv(&mut n, T0);
    assert!(frames.contains(&Frame::Response {
        session: 3,
        code: codes::BUSY,
        buffer: 0
    }));
}

#[test]
fn limit_sessions_per_peer() {
    let mut n = node(Config {
        max_sessions_per_peer: 2,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, T0, 1);
    let q = |s| Frame::Query {
        session: s,
        buffer: 10,
        query: "x".into(),
    };
    p.send(&mut n, T0, &[q(1), q(2), q(3)]);
    assert!(p.recv(&mut n, T0).contains(&Frame::Response {
        session: 3,
        code: codes::LIMIT,
        buffer: 0
    }));
    let peer = p.identity.node_id();
    assert_eq!(
        n.open_session(T0, peer, "x"),
        Err(OpenError::TooManySessions)
    );
}

#[test]
fn limit_streams_per_peer_and_handshakes() {
    let mut n = node(Config {
        max_streams_per_peer: 1,
        max_handshaking_streams: 2,
        ..Config::default()
    });
    let _p = RawPeer::connect(&mut n, T0, 1);
    events(&mut n);
    let _p2 = RawPeer::connect(&mut n, T0, 1);
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::LimitExceeded(_),
            ..
        }
    )));
    let peer = Identity::from_seed([1; 32]).node_id();
    assert!(
        n.connect(T0, peer).is_err(),
        "one established stream already"
    );
    n.accept(T0).unwrap();
    n.accept(T0).unwrap();
    // Beyond two handshakes at once a newcomer waits for a slot instead
    // of being refused (admission: tests/admission.rs).
    n.accept(T0).unwrap();
    let s = n.admission_stats();
    assert_eq!((s.active, s.waiting), (2, 1));
}

#[test]
fn handshake_and_routing_timeouts() {
    let config = Config {
        handshake_timeout: Duration::from_secs(1),
        routing_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut n = node(config);
    n.accept(T0).unwrap();
    n.handle_timeout(T0 + Duration::from_secs(1));
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::HandshakeTimeout,
            ..
        }
    )));
    let peer = Identity::from_seed([1; 32]).node_id();
    let id = n.open_session(T0, peer, "x").unwrap();
    n.handle_timeout(T0 + Duration::from_secs(2));
    assert!(events(&mut n).contains(&Event::SessionClosed {
        session: id,
        reason: CloseReason::RoutingTimeout
    }));
    // An inbound query the application ignores is answered with TIMEOUT.
    let mut p = RawPeer::connect(&mut n, T0 + Duration::from_secs(3), 1);
    let t = T0 + Duration::from_secs(3);
    p.send(
        &mut n,
        t,
        &[Frame::Query {
            session: 1,
            buffer: 10,
            query: "x".into(),
        }],
    );
    n.handle_timeout(t + Duration::from_secs(2));
    assert!(p
        .recv(&mut n, t + Duration::from_secs(2))
        .contains(&Frame::Response {
            session: 1,
            code: codes::TIMEOUT,
            buffer: 0
        }));
}

#[test]
fn dead_stream_timeout_and_pings() {
    let config = Config {
        keepalive_interval: Duration::from_secs(1),
        dead_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let mut n = node(config);
    let mut p = RawPeer::connect(&mut n, T0, 1);
    let frames = p.recv(&mut n, T0);
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::Ping { pong: false, .. })),
        "pings at once: {frames:?}"
    );
    n.handle_timeout(T0 + Duration::from_secs(3));
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::PingTimeout,
            ..
        }
    )));
}

#[test]
fn rejected_queries_free_their_pending_slot() {
    // Regression: rejecting (or timing out) a pending query must release its
    // place under max_pending_queries, or the node ends up refusing all.
    let mut n = node(Config {
        max_pending_queries: 2,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, T0, 1);
    for s in 1..=10u64 {
        p.send(
            &mut n,
            T0,
            &[Frame::Query {
                session: s,
                buffer: 10,
                query: "x".into(),
            }],
        );
        let id = events(&mut n)
            .into_iter()
            .find_map(|e| match e {
                Event::Query { session, .. } => Some(session),
                _ => None,
            })
            .unwrap_or_else(|| panic!("query {s} refused"));
        n.reject_query(T0, id, 9).unwrap();
        assert!(p.recv(&mut n, T0).contains(&Frame::Response {
            session: s,
            code: 9,
            buffer: 0
        }));
    }
}

#[test]
fn limit_control_queue_against_a_ping_flood() {
    // The driver does not drain output; the peer keeps pinging.
    let mut n = node(Config {
        max_control_queue: 100,
        ..Config::default()
    });
    let mut p = RawPeer::connect(&mut n, T0, 1);
    events(&mut n);
    let pings: Vec<Frame> = (0..150)
        .map(|i| Frame::Ping {
            nonce: i,
            pong: false,
        })
        .collect();
    p.send(&mut n, T0, &pings);
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::LimitExceeded(_),
            ..
        }
    )));
}

#[test]
fn data_for_a_pending_session_at_the_top_of_the_offset_space() {
    // Regression (fuzz crash in stream_input): the credit check of a session
    // still awaiting the application's decision computed `offset + len`
    // without overflow protection.
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    p.send(
        &mut n,
        T0,
        &[Frame::Query {
            session: 3,
            buffer: 10,
            query: "q".into(),
        }],
    );
    events(&mut n);
    p.send(
        &mut n,
        T0,
        &[Frame::DataAt {
            session: 3,
            offset: u64::MAX - 2,
            payload: vec![7u8; 10].into(),
        }],
    );
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::SessionClosed {
            reason: CloseReason::ProtocolError(_),
            ..
        }
    )));
    assert!(p.recv(&mut n, T0).contains(&Frame::Reset { session: 3 }));
}

#[test]
fn data_at_the_top_of_the_offset_space_for_an_open_session() {
    let mut n = node(Config::default());
    let mut p = RawPeer::connect(&mut n, T0, 1);
    open(&mut n, &mut p, 4);
    events(&mut n);
    p.send(
        &mut n,
        T0,
        &[Frame::DataAt {
            session: 4,
            offset: u64::MAX - 2,
            payload: vec![7u8; 10].into(),
        }],
    );
    assert!(events(&mut n).iter().any(|e| matches!(
        e,
        Event::SessionClosed {
            reason: CloseReason::ProtocolError(_),
            ..
        }
    )));
}
