//! Migration and recovery scenarios in the simulator (design §7–§8).

use std::time::Duration;

use astral_core::{Config, Event, SessionState};
use astral_sim::{Action, FlowSpec, LinkConfig, Sim};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn two_links(seed: u64, config: Config) -> Sim {
    let mut sim = Sim::new(seed, 2, config);
    sim.link(0, 1, LinkConfig::with_latency(ms(5)));
    sim.link(0, 1, LinkConfig::with_latency(ms(20)));
    sim
}

fn migrated_events(sim: &Sim) -> usize {
    sim.events_matching(|e| matches!(e, Event::Migrated { .. }))
        .len()
}

#[test]
fn migrate_mid_transfer_from_opener() {
    let mut sim = two_links(1, Config::default());
    sim.open_flows(&[FlowSpec::new(0, 1, 20_000_000, 20_000_000)]);
    sim.at(
        Sim::t(ms(200)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 1,
        },
    );
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
    // Both ends report it.
    assert_eq!(migrated_events(&sim), 2);
}

#[test]
fn migrate_mid_transfer_from_acceptor_and_back() {
    let mut sim = two_links(2, Config::default());
    sim.open_flows(&[FlowSpec::new(0, 1, 10_000_000, 10_000_000)]);
    sim.at(
        Sim::t(ms(100)),
        Action::Migrate {
            flow: 0,
            responder: true,
            link: 1,
        },
    );
    sim.at(
        Sim::t(ms(400)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 0,
        },
    );
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
    assert_eq!(migrated_events(&sim), 4);
}

#[test]
fn concurrent_migrations_same_and_different_targets_settle() {
    for (seed, a_target, b_target) in [(3, 1, 1), (4, 1, 2), (5, 2, 1)] {
        let mut sim = Sim::new(seed, 2, Config::default());
        sim.link(0, 1, LinkConfig::with_latency(ms(5)));
        sim.link(0, 1, LinkConfig::with_latency(ms(9)));
        sim.link(1, 0, LinkConfig::with_latency(ms(13)));
        sim.open_flows(&[FlowSpec::new(0, 1, 40_000_000, 40_000_000)]);
        sim.at(
            Sim::t(ms(150)),
            Action::Migrate {
                flow: 0,
                responder: false,
                link: a_target,
            },
        );
        sim.at(
            Sim::t(ms(150)),
            Action::Migrate {
                flow: 0,
                responder: true,
                link: b_target,
            },
        );
        // Snapshot bindings after the migrations settle but before the end.
        sim.run_for(ms(600));
        let f = &sim.flows[0];
        let (sa, sb) = (f.at_opener.unwrap(), f.at_acceptor.unwrap());
        let ia = sim.nodes[0].session_info(sa).unwrap();
        let ib = sim.nodes[1].session_info(sb).unwrap();
        assert_ne!(ia.state, SessionState::Migrating, "seed {seed}");
        assert_ne!(ib.state, SessionState::Migrating, "seed {seed}");
        let wa = sim.nodes[0]
            .stream_info(ia.send_stream.unwrap())
            .unwrap()
            .wire_id;
        let wb = sim.nodes[1]
            .stream_info(ib.send_stream.unwrap())
            .unwrap()
            .wire_id;
        assert_eq!(wa, wb, "seed {seed}: both directions end on one stream");
        assert!(sim.run_until_done(Duration::from_secs(60)));
        sim.check().unwrap();
    }
}

#[test]
fn migration_started_while_previous_in_flight() {
    let mut sim = Sim::new(6, 2, Config::default());
    sim.link(0, 1, LinkConfig::with_latency(ms(50)));
    sim.link(0, 1, LinkConfig::with_latency(ms(50)));
    sim.link(0, 1, LinkConfig::with_latency(ms(50)));
    sim.open_flows(&[FlowSpec::new(0, 1, 5_000_000, 5_000_000)]);
    sim.at(
        Sim::t(ms(500)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 1,
        },
    );
    sim.at(
        Sim::t(ms(510)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 2,
        },
    );
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
}

#[test]
fn target_dies_mid_migration_session_recovers() {
    let mut sim = two_links(7, Config::default());
    sim.open_flows(&[FlowSpec::new(0, 1, 10_000_000, 10_000_000)]);
    sim.at(
        Sim::t(ms(200)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 1,
        },
    );
    sim.at(Sim::t(ms(205)), Action::Kill(1));
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
}

#[test]
fn old_stream_dies_mid_migration_session_recovers() {
    let mut sim = two_links(8, Config::default());
    sim.open_flows(&[FlowSpec::new(0, 1, 10_000_000, 10_000_000)]);
    sim.at(
        Sim::t(ms(200)),
        Action::Migrate {
            flow: 0,
            responder: false,
            link: 1,
        },
    );
    sim.at(Sim::t(ms(202)), Action::Kill(0));
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
    assert!(!sim
        .events_matching(|e| matches!(e, Event::Recovered { .. }))
        .is_empty());
}

#[test]
fn ten_thousand_sessions_migrate_in_one_round_trip() {
    let config = Config {
        max_pending_queries: 20_000,
        max_sessions: 20_000,
        max_sessions_per_peer: 20_000,
        ..Config::default()
    };
    let mut sim = Sim::new(9, 2, config);
    sim.manual_queries = true;
    sim.link(0, 1, LinkConfig::with_latency(ms(10)));
    sim.link(0, 1, LinkConfig::with_latency(ms(10)));
    // Idle sessions: tiny payloads, sent late so they stay open meanwhile.
    let specs: Vec<_> = (0..10_000).map(|_| FlowSpec::new(0, 1, 0, 0)).collect();
    // Keep them open: write nothing yet by opening and running until open.
    sim.open_flows(&specs[..0]);
    let peer = sim.id(1);
    let now = sim.now;
    let ids: Vec<_> = (0..10_000)
        .map(|i| {
            sim.nodes[0]
                .open_session(now, peer, &format!("idle{i}"))
                .unwrap()
        })
        .collect();
    // Accept them all at node 1 by hand.
    sim.run_for(ms(100));
    let mut accepted = 0;
    for (_, n, e) in sim.log.clone() {
        if let (1, Event::Query { session, .. }) = (n, e) {
            sim.nodes[1].accept_query(sim.now, session).unwrap();
            accepted += 1;
        }
    }
    assert_eq!(accepted, 10_000);
    sim.run_for(ms(100));
    assert!(ids
        .iter()
        .all(|id| sim.nodes[0].session_info(*id).unwrap().state == SessionState::Open));
    let target = sim.links[1].sa;
    let start = sim.now;
    for id in &ids {
        sim.nodes[0].migrate(start, *id, target).unwrap();
    }
    let before = sim.log.len();
    // One round trip is 20 ms; allow for serialisation of 10k markers.
    sim.run_for(ms(25));
    let done = sim.log[before..]
        .iter()
        .filter(|(_, n, e)| *n == 0 && matches!(e, Event::Migrated { .. }))
        .count();
    assert_eq!(done, 10_000, "all migrations complete within ~one RTT");
    assert!(ids
        .iter()
        .all(|id| sim.nodes[0].session_info(*id).unwrap().state == SessionState::Open));
}

#[test]
fn kill_mid_transfer_with_second_stream_loses_nothing() {
    let mut sim = two_links(10, Config::default());
    let specs: Vec<_> = (0..20)
        .map(|i| FlowSpec::new(i % 2, 1 - i % 2, 2_000_000, 1_000_000))
        .collect();
    sim.open_flows(&specs);
    sim.at(Sim::t(ms(150)), Action::Kill(0));
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
    let recovered = sim
        .events_matching(|e| matches!(e, Event::Recovered { .. }))
        .len();
    assert!(recovered >= 20, "recovered {recovered}");
}

#[test]
fn half_open_stream_detected_by_timeout_then_recovered() {
    let config = Config {
        keepalive_interval: ms(200),
        dead_timeout: ms(1000),
        ..Config::default()
    };
    let mut sim = two_links(11, config);
    sim.open_flows(&[FlowSpec::new(0, 1, 3_000_000, 3_000_000)]);
    // Only node 1 notices; node 0 keeps sending into the void until its
    // dead-stream timer fires.
    sim.at(Sim::t(ms(100)), Action::KillOneSide(0, true));
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
}

#[test]
fn partition_and_heal_within_timeout() {
    let config = Config {
        recovery_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut sim = Sim::new(12, 2, config);
    sim.link(0, 1, LinkConfig::default());
    sim.open_flows(&[
        FlowSpec::new(0, 1, 4_000_000, 4_000_000),
        FlowSpec::new(1, 0, 1_000_000, 0),
    ]);
    sim.at(Sim::t(ms(100)), Action::Kill(0));
    sim.at(
        Sim::t(ms(3000)),
        Action::Connect(1, 0, LinkConfig::default()),
    );
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
}

#[test]
fn drain_moves_sessions_and_closes_stream_without_recovery() {
    let mut sim = two_links(13, Config::default());
    let specs: Vec<_> = (0..10)
        .map(|_| FlowSpec::new(0, 1, 3_000_000, 3_000_000))
        .collect();
    sim.open_flows(&specs);
    sim.at(
        Sim::t(ms(200)),
        Action::Drain {
            link: 0,
            from_b: false,
        },
    );
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
    assert!(sim
        .events_matching(|e| matches!(e, Event::Recovering { .. }))
        .is_empty());
    let downs = sim.events_matching(|e| {
        matches!(
            e,
            Event::StreamDown {
                reason: astral_core::StreamCloseReason::Drained,
                ..
            }
        )
    });
    assert_eq!(downs.len(), 2, "both ends close the drained stream");
}

#[test]
fn routing_deadline_does_not_cut_a_later_recovery_short() {
    // The routing timer of an opened session fires during a recovery: it
    // must not be taken for the recovery deadline.
    let config = Config {
        routing_timeout: Duration::from_secs(2),
        recovery_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut sim = Sim::new(14, 2, config);
    sim.link(0, 1, LinkConfig::default());
    sim.open_flows(&[FlowSpec::new(0, 1, 200_000_000, 1_000)]);
    sim.at(Sim::t(ms(1000)), Action::Kill(0));
    sim.at(
        Sim::t(ms(4000)),
        Action::Connect(0, 1, LinkConfig::default()),
    );
    assert!(sim.run_until_done(Duration::from_secs(120)));
    sim.check().unwrap();
}

#[test]
fn migrate_api_errors_are_typed() {
    use astral_core::MigrateError;
    let mut sim = Sim::new(15, 3, Config::default());
    sim.link(0, 1, LinkConfig::default());
    sim.link(0, 1, LinkConfig::default());
    let other_peer = sim.link(0, 2, LinkConfig::default());
    sim.open_flows(&[FlowSpec::new(0, 1, 50_000_000, 0)]);
    sim.run_for(ms(100));
    let s = sim.flows[0].at_opener.unwrap();
    let (l0, l1, l2) = (sim.links[0].sa, sim.links[1].sa, sim.links[other_peer].sa);
    let now = sim.now;
    let n = &mut sim.nodes[0];
    let current = n.session_info(s).unwrap().send_stream.unwrap();
    let other = if current == l0 { l1 } else { l0 };
    // A handle that no longer names a session (opened, then reset).
    let peer = n.session_info(s).unwrap().peer;
    let stale = n.open_session(now, peer, "flow:998").unwrap();
    n.session(stale).unwrap().reset(now);
    let unknown_stream = sim.links.iter().map(|l| l.sa.get()).max().unwrap() + 1000;
    assert_eq!(
        n.migrate(now, stale, other),
        Err(MigrateError::UnknownSession)
    );
    assert_eq!(
        n.migrate(now, s, astral_core::StreamId::new(unknown_stream).unwrap()),
        Err(MigrateError::TargetUnknown)
    );
    assert_eq!(
        n.migrate(now, s, current),
        Err(MigrateError::TargetIsCurrent)
    );
    assert_eq!(n.migrate(now, s, l2), Err(MigrateError::WrongPeer));
    // A session still waiting for its answer is not open.
    let routing = n.open_session(now, peer, "flow:999").unwrap();
    assert_eq!(
        n.migrate(now, routing, other),
        Err(MigrateError::SessionNotOpen)
    );
    // A stream the peer has not confirmed yet (handshake just finished on
    // our side, no record from the peer yet) cannot be a target.
    let fresh = sim.link(0, 1, LinkConfig::with_latency(ms(50)));
    let mut confirmed_before = None;
    for _ in 0..10_000 {
        sim.step(sim.now + ms(200));
        let sa = sim.links[fresh].sa;
        if let Some(info) = sim.nodes[0].stream_info(sa) {
            if info.state == astral_core::StreamState::Established {
                confirmed_before = Some(info.confirmed);
                if !info.confirmed {
                    let now = sim.now;
                    assert_eq!(
                        sim.nodes[0].migrate(now, s, sa),
                        Err(MigrateError::TargetNotConfirmed)
                    );
                }
                break;
            }
        }
    }
    assert_eq!(
        confirmed_before,
        Some(false),
        "the dialer is established before the peer confirms"
    );
    // Once confirmed, the same call works.
    sim.run_for(ms(200));
    let sa = sim.links[fresh].sa;
    let now = sim.now;
    assert_eq!(sim.nodes[0].migrate(now, s, sa), Ok(()));
}

#[test]
fn policy_moves_sessions_to_a_clearly_faster_stream() {
    let config = Config {
        keepalive_interval: ms(200),
        policy_interval: ms(500),
        migrate_sustain: Duration::from_secs(2),
        ..Config::default()
    };
    let mut sim = Sim::new(16, 2, config);
    sim.link(0, 1, LinkConfig::with_latency(ms(60)));
    sim.open_flows(&[
        FlowSpec::new(0, 1, 400_000_000, 0),
        FlowSpec::new(1, 0, 400_000_000, 0),
    ]);
    sim.run_for(ms(500));
    sim.link(0, 1, LinkConfig::with_latency(ms(5)));
    sim.run_for(Duration::from_secs(5));
    let fast = sim.links[1].sa;
    for f in &sim.flows {
        let info = sim.nodes[0].session_info(f.at_opener.or(f.at_acceptor).unwrap());
        if let Some(info) = info {
            assert_eq!(
                info.send_stream,
                Some(fast),
                "sessions moved to the 5 ms stream"
            );
        }
    }
}

#[test]
fn alternating_rtts_do_not_make_sessions_flap() {
    let config = Config {
        keepalive_interval: ms(100),
        policy_interval: ms(250),
        migrate_sustain: Duration::from_secs(2),
        ..Config::default()
    };
    let mut sim = Sim::new(17, 2, config);
    sim.link(0, 1, LinkConfig::with_latency(ms(20)));
    sim.link(0, 1, LinkConfig::with_latency(ms(20)));
    sim.open_flows(&[FlowSpec::new(0, 1, 2_000_000_000, 0)]);
    // Every second the two streams swap latencies (5 ms / 60 ms): neither is
    // better for long enough, so nothing should move.
    for s in 1..20u64 {
        let (fast, slow) = if s % 2 == 0 { (0, 1) } else { (1, 0) };
        sim.at(
            Sim::t(Duration::from_secs(s)),
            Action::SetLatency(fast, ms(5)),
        );
        sim.at(
            Sim::t(Duration::from_secs(s)),
            Action::SetLatency(slow, ms(60)),
        );
    }
    sim.run_for(Duration::from_secs(20));
    let moves = sim
        .events_matching(|e| matches!(e, Event::Migrated { .. }))
        .len();
    assert!(moves <= 2, "{moves} migrations: flapping");
}
