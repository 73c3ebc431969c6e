//! The simulator's own machinery: actions record their outcomes and count
//! coverage, and the oracles fail when they should.

use std::time::Duration;

use astral_core::{CloseReason, Config, MigrateError};
use astral_sim::{Action, ActionError, FlowSpec, LinkChange, LinkConfig, Sim};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> Config {
    Config {
        recv_window: 16_384,
        // Fixed (no auto-tuning): the tests time actions against transfers.
        max_recv_window: 16_384,
        send_buffer: 16_384,
        keepalive_interval: ms(250),
        dead_timeout: Duration::from_secs(1),
        auto_migrate: false,
        offer_aes_gcm: false,
        ..Config::default()
    }
}

fn paced(opener: usize, bytes: u64) -> FlowSpec {
    FlowSpec {
        max_write: 200,
        write_interval: Some(ms(10)),
        ..FlowSpec::new(opener, 1 - opener, bytes, bytes)
    }
}

#[test]
fn every_action_records_its_outcome_and_counts_coverage() {
    let mut sim = Sim::new(1, 2, config());
    for _ in 0..3 {
        sim.link(0, 1, LinkConfig::with_latency(ms(5)));
    }
    // Paced flows (about 2 s each) so sessions are open during the script.
    sim.open_flows(&[paced(0, 20_000), paced(1, 20_000), paced(0, 20_000)]);
    sim.run_until(Sim::t(ms(200)));
    let current = {
        let sid = sim.flows[0].at_opener.unwrap();
        let stream = sim.nodes[0].session_info(sid).unwrap().send_stream;
        sim.link_of(0, stream).unwrap()
    };
    let other = (current + 1) % 3;
    let spare = (current + 2) % 3;
    let script = [
        (
            210,
            Action::Migrate {
                flow: 0,
                responder: false,
                link: current,
            },
        ),
        (
            220,
            Action::Migrate {
                flow: 0,
                responder: false,
                link: other,
            },
        ),
        (
            222,
            Action::Migrate {
                flow: 0,
                responder: true,
                link: spare,
            },
        ),
        (
            400,
            Action::Reset {
                flow: 1,
                responder: true,
            },
        ),
        (
            401,
            Action::Reset {
                flow: 1,
                responder: false,
            },
        ),
        (
            450,
            Action::Finish {
                flow: 2,
                responder: false,
            },
        ),
        (500, Action::Partition(spare)),
        (510, Action::ChangeLink(other, LinkChange::Jitter(ms(3)))),
        (700, Action::Heal(spare)),
        (800, Action::Open(paced(1, 5_000))),
        (900, Action::Connect(1, 0, LinkConfig::wifi())),
        (1500, Action::Kill(current)),
        (1510, Action::Kill(current)),
        (1600, Action::Open(FlowSpec::new(0, 7, 1, 1))),
    ];
    for (t, a) in script {
        sim.at(Sim::t(ms(t)), a);
    }
    sim.settle_and_check(Duration::from_secs(3), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", sim.dump()));

    let outcomes: Vec<_> = sim
        .outcomes
        .iter()
        .map(|r| (r.action.kind(), r.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (
                "migrate",
                Err(ActionError::Migrate(MigrateError::TargetIsCurrent))
            ),
            ("migrate", Ok(())),
            ("migrate", Ok(())),
            ("reset", Ok(())),
            ("reset", Err(ActionError::NoSession(1))),
            ("finish", Ok(())),
            ("partition", Ok(())),
            ("change_link", Ok(())),
            ("heal", Ok(())),
            ("open", Ok(())),
            ("connect", Ok(())),
            ("kill", Ok(())),
            ("kill", Err(ActionError::LinkDown(current))),
            ("open", Err(ActionError::NoSuchNode(7))),
        ]
    );
    let c = &sim.coverage;
    assert_eq!((c.actions, c.actions_refused), (14, 4));
    assert_eq!(c.migrations_started, 2);
    assert_eq!(
        c.migrations_with_bytes_in_flight, 2,
        "paced flows have bytes in flight"
    );
    assert_eq!(
        c.concurrent_migrations, 1,
        "the acceptor moved 2 ms after the opener"
    );
    assert_eq!((c.resets, c.half_closes), (1, 1));
    assert_eq!((c.partitions, c.heals, c.link_changes), (1, 1, 1));
    assert_eq!((c.sessions_opened, c.connects, c.kills), (1, 1, 1));
    assert_eq!(c.refusals.get("migrate: TargetIsCurrent"), Some(&1));
    // The reset flow ended as a reset, the half-closed one with fewer bytes.
    let f = &sim.flows[1];
    assert_eq!(f.closed_acceptor, Some(CloseReason::ResetLocally));
    assert_eq!(f.closed_opener, Some(CloseReason::ResetByPeer));
    let f = &sim.flows[2];
    assert!(f.up.total < 20_000 && f.up.read == f.up.total && f.up.eof);
}

#[test]
fn oracles_fail_on_unfinished_and_unsettled_runs() {
    let mut sim = Sim::new(2, 2, config());
    sim.link(0, 1, LinkConfig::with_latency(ms(20)));
    sim.link(0, 1, LinkConfig::with_latency(ms(20)));
    sim.open_flows(&[FlowSpec::new(0, 1, 2_000_000, 2_000_000)]);
    sim.run_until(Sim::t(ms(300)));
    let err = sim.check().unwrap_err();
    assert!(err.contains("flow 0 up: read"), "{err}");
    // Mid-migration: the initiator is Migrating and the ends disagree.
    let sid = sim.flows[0].at_opener.unwrap();
    let stream = sim.nodes[0].session_info(sid).unwrap().send_stream;
    let target = 1 - sim.link_of(0, stream).unwrap();
    sim.act(Action::Migrate {
        flow: 0,
        responder: false,
        link: target,
    });
    let err = sim.check_converged().unwrap_err();
    assert!(err.contains("Migrating"), "{err}");
    sim.run_for(ms(200));
    sim.check_converged().unwrap();
    // Mid-drain: the drained stream is reported until it closes.
    sim.act(Action::Drain {
        link: target,
        from_b: false,
    });
    let err = sim.check_converged().unwrap_err();
    assert!(err.contains("still draining"), "{err}");
    assert!(sim.run_until_done(Duration::from_secs(60)));
    sim.check().unwrap();
    sim.check_converged().unwrap();
    assert_eq!(sim.coverage.drains_completed, 1);
}

#[test]
fn a_run_that_never_finishes_fails_the_strong_oracle() {
    let mut sim = Sim::new(3, 2, config());
    let link = sim.link(0, 1, LinkConfig::with_latency(ms(5)));
    sim.open_flows(&[FlowSpec::new(0, 1, 500_000, 0)]);
    // A partition that never heals, and the recovery timeout far away: the
    // session can neither finish nor give up within the limit.
    sim.at(Sim::t(ms(100)), Action::Partition(link));
    let err = sim
        .settle_and_check(Duration::from_secs(1), Duration::from_secs(5))
        .unwrap_err();
    assert!(
        err.contains("not converged") || err.contains("did not finish"),
        "{err}"
    );
}
