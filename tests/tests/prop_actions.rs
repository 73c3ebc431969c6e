//! Randomised schedules with every action (issue 10): migrations from
//! either end and from both at once, drains from both ends (and defect 1's
//! drain-then-migrate pattern), kills at both ends or one, application
//! stream closes, new streams, latency changes, partitions and one-way
//! silences (healed or not), resets, half-closes and new sessions, over
//! windows from 1 byte to 256 KiB and links from LAN to Tor-like, with
//! bulk and application-paced (interactive) sessions.
//!
//! Every suite prints its coverage and fails if a counter falls below its
//! threshold (`support::suite`; thresholds are about two thirds of what the
//! default case counts reach, so a change that makes the schedules reach
//! less fails the suite). Oracles:
//!
//! * *settled* (`Sim::settle_and_check`): after the last action plus a
//!   settle time (two dead-stream timeouts and ten round trips), every
//!   session is open on one live stream at both ends and no stream is
//!   draining; then every byte arrives exactly once and in order and every
//!   session ends as planned (graceful, or reset by the action that reset
//!   it);
//! * *exact*: the same without the convergence check;
//! * *closed with a reason* (paths lost for good): every session ends, with
//!   a reason, and what arrived is exact.
//!
//! Every suite failed on the engine as it was when issue 10 was filed (drain
//! holes, crossed bindings, sessions left on no stream); they pass since
//! the fixes. `ASTRAL_SUITE_SURVEY=1` runs a failing suite to the end and
//! counts the failures instead (see `support`). Coverage thresholds are
//! about two thirds of what each suite reaches with the fixed engine (in
//! which only sessions whose sending stream died go through `Recovering`,
//! so fewer recoveries are counted than before).

mod support;

use std::time::Duration;

use astral_core::Config;
use support::{
    run_closed, run_exact, run_settled, run_settled_with, script_config, scripts, suite,
    tuned_config, LinkKind, Mix, Shape,
};

/// Replays one failing script (the JSON a failure prints) with its whole
/// trace: `ASTRAL_REPLAY='<json>' cargo test -p astral-sim --test
/// prop_actions replay -- --ignored --nocapture`.
#[test]
#[ignore = "run by hand with ASTRAL_REPLAY"]
fn replay() {
    let script = support::replay_script().expect("set ASTRAL_REPLAY to a failing script's JSON");
    support::replay(&script);
}

/// Regression (issue 10 defect 4, found by seed exploration:
/// `PROPTEST_RNG_SEED=218776195937441` on `tiny_windows_but_drains`): the
/// stream carrying two fresh Queries dies; the querier re-sends them on
/// one stream, and again on another where the responder's Resume came.
/// The responder answers each repeated Query where it came and sends
/// there; the querier opens on the first Response. Both directions stayed
/// on different streams for good (1-byte window, bytes in flight); now
/// the higher node id realigns its sending direction (`realign_crossed`).
#[test]
fn regression_repeated_queries_leave_directions_crossed() {
    let script: support::Script = serde_json::from_str(
        r#"{"seed":381127453404376018,"window":1,"links":[[false,{"Plain":[31,0]}],[false,{"Plain":[28,5]}],[true,{"Plain":[29,4]}]],"flows":[{"from_b":false,"up":0,"down":0,"max_write":1,"max_read":1,"interval_ms":null},{"from_b":false,"up":0,"down":61,"max_write":1,"max_read":1,"interval_ms":null}],"ops":[[55,{"Connect":{"from_b":false,"kind":{"Plain":[11,3]}}}],[94,{"Kill":204}]],"heal_at_end":true,"keepalive_ms":250,"dead_ms":1000}"#,
    )
    .expect("a script");
    let (result, _) = support::run_settled(&script);
    assert_eq!(result, Ok(()));
}

fn no_drains() -> Mix {
    Mix {
        drain: 0,
        drain_and_migrate: 0,
        ..Mix::everything()
    }
}

/// Every action, windows of 4 KiB to 256 KiB, plain links with jitter.
#[test]
fn every_action_settles() {
    suite(
        "every_action",
        600,
        scripts(Shape::default()),
        EVERY,
        run_settled,
    );
}

/// The same without drains: fails only by crossed bindings today.
#[test]
fn every_action_but_drains_settles() {
    let shape = Shape {
        mix: no_drains(),
        ..Shape::default()
    };
    suite(
        "every_action_but_drains",
        600,
        scripts(shape),
        EVERY_ND,
        run_settled,
    );
}

/// Every action but drains, exactness only: runs on today's engine.
#[test]
fn every_action_but_drains_is_exact() {
    let shape = Shape {
        mix: no_drains(),
        ..Shape::default()
    };
    suite(
        "every_action_but_drains_exact",
        600,
        scripts(shape),
        EVERY_ND_X,
        run_exact,
    );
}

/// Auto-tuned windows (issue 11) under every action: windows start at
/// 4-64 KiB and grow towards 1 MiB while sessions migrate, recover and
/// drain, within budgets the flows run into (so windows also stop growing
/// and shrink, and writes block at the budget). Strong oracle: every byte
/// exactly once and in order while the windows change under it.
#[test]
fn autotuned_windows_settle() {
    let shape = Shape {
        windows: vec![4096, 16_384, 65_536],
        max_bytes: 1_000_000,
        max_io: 32_000,
        ..Shape::default()
    };
    suite("autotuned_windows", 200, scripts(shape), TUNED, |s| {
        run_settled_with(s, tuned_config(s))
    });
}

fn tiny() -> Shape {
    Shape {
        windows: vec![1, 16, 4096],
        links: 2..=3,
        flows: 1..=3,
        max_bytes: 3000,
        max_io: 64,
        paced_chunk: 16,
        ops: 2..=8,
        span_ms: 1500,
        ..Shape::default()
    }
}

/// Windows of 1 byte, 16 bytes and 4 KiB: credit is the bottleneck, every
/// frame carries little, many records are in flight during every action.
#[test]
fn tiny_windows_settle() {
    suite("tiny_windows", 300, scripts(tiny()), TINY, run_settled);
}

/// Tiny windows, every action but drains, strong oracle.
#[test]
fn tiny_windows_but_drains_settle() {
    let shape = Shape {
        mix: no_drains(),
        ..tiny()
    };
    suite(
        "tiny_windows_but_drains",
        300,
        scripts(shape),
        TINY_ND,
        run_settled,
    );
}

/// Drains from both ends mixed with migrations (onto the draining stream
/// and off it again: defect 1's pattern), kills and new streams.
#[test]
fn drains_with_migrations_and_kills_settle() {
    let shape = Shape {
        windows: vec![4096, 16_384],
        links: 3..=4,
        flows: 2..=4,
        max_bytes: 200_000,
        max_io: 8000,
        ops: 3..=10,
        span_ms: 1200,
        mix: Mix {
            migrate: 4,
            migrate_both: 2,
            drain: 4,
            drain_and_migrate: 6,
            kill: 2,
            kill_one_side: 2,
            connect: 3,
            ..Mix::none()
        },
        ..Shape::default()
    };
    suite("drains", 400, scripts(shape), DRAINS, run_settled);
}

/// Wide-area paths (LAN, Wi-Fi, cellular, Tor-like with round trips up to
/// 3 s, all with jitter) with latency changes, partitions and one-way
/// silences. Liveness timers suit such paths (1 s keep-alive, 8 s dead).
#[test]
fn wan_paths_settle() {
    let shape = Shape {
        windows: vec![16_384, 65_536],
        links: 2..=3,
        kinds: vec![
            LinkKind::Lan,
            LinkKind::Wifi,
            LinkKind::Cellular,
            LinkKind::Tor,
        ],
        flows: 1..=3,
        max_bytes: 100_000,
        max_io: 16_000,
        pace_ms: 50..=400,
        paced_chunk: 1000,
        keepalive_ms: 1000,
        dead_ms: 8000,
        ops: 2..=8,
        span_ms: 6000,
        mix: Mix {
            migrate: 4,
            migrate_both: 2,
            kill: 1,
            kill_one_side: 1,
            connect: 1,
            set_latency: 2,
            partition: 2,
            silence: 2,
            ..Mix::none()
        },
        ..Shape::default()
    };
    suite("wan", 150, scripts(shape), WAN, run_settled);
}

fn lost(mix: Mix) -> Shape {
    Shape {
        windows: vec![4096, 65_536],
        links: 1..=3,
        flows: 1..=3,
        max_bytes: 200_000,
        max_io: 16_000,
        ops: 1..=8,
        span_ms: 1500,
        mix,
        heal_at_end: false,
        ..Shape::default()
    }
}

fn lost_config(s: &support::Script) -> Config {
    Config {
        recovery_timeout: Duration::from_secs(3),
        routing_timeout: Duration::from_secs(5),
        ..script_config(s)
    }
}

/// Paths lost for good (no fresh link at the end, a 3 s recovery
/// timeout): sessions may end unreachable, but every one must end, with a
/// reason, and what arrived must be exact.
#[test]
fn paths_lost_for_good_end_every_session_with_a_reason() {
    let shape = lost(Mix {
        migrate: 2,
        kill: 4,
        kill_one_side: 3,
        close_stream: 2,
        partition: 2,
        silence: 2,
        reset: 1,
        ..Mix::none()
    });
    suite("paths_lost", 400, scripts(shape), LOST, |s| {
        run_closed(s, lost_config(s))
    });
}

/// The same with drains: a drained stream whose alternative dies is the
/// only path left, but recovery will not use it, so one end gives up
/// (`PeerUnreachable`) and the other, waiting for credit, never learns.
#[test]
fn paths_lost_with_drains_end_every_session_with_a_reason() {
    let shape = lost(Mix {
        migrate: 2,
        drain: 2,
        kill: 4,
        kill_one_side: 3,
        close_stream: 2,
        partition: 2,
        silence: 2,
        reset: 1,
        ..Mix::none()
    });
    // 600 cases (400 before issue 12): suspect streams move sessions off a
    // silent path before the scripted migrate/kill lands, so fewer of them
    // hit a migration in flight; more cases keep the floors below.
    suite(
        "paths_lost_with_drains",
        600,
        scripts(shape),
        LOST_DR,
        |s| run_closed(s, lost_config(s)),
    );
}

// Coverage thresholds: about two thirds of what each suite reached at its
// default case count on the engine of issue 10 (deterministic: fixed
// proptest seeds), rounded down.

const EVERY: &[(&str, u64)] = &[
    ("migrations_started", 390),
    ("migrations_with_bytes_in_flight", 370),
    ("concurrent_migrations", 50),
    ("migrations_onto_draining", 37),
    ("drains_from_dialer", 130),
    ("drains_from_acceptor", 120),
    ("drains_completed", 240),
    ("kills", 150),
    ("one_sided_kills", 130),
    ("kills_during_migration", 6),
    ("kills_during_drain", 12),
    ("kills_during_recovery", 3),
    ("connects", 600),
    ("stream_closes", 64),
    ("partitions", 77),
    ("silences", 59),
    ("heals", 70),
    ("link_changes", 150),
    ("recoveries_completed", 718),
    ("resumes_with_retransmit", 390),
    ("sessions_opened", 200),
    ("resets", 58),
    ("half_closes", 56),
];

const EVERY_ND: &[(&str, u64)] = &[
    ("migrations_started", 440),
    ("migrations_with_bytes_in_flight", 420),
    ("concurrent_migrations", 64),
    ("kills", 170),
    ("one_sided_kills", 180),
    ("kills_during_migration", 14),
    ("kills_during_recovery", 6),
    ("connects", 640),
    ("stream_closes", 97),
    ("partitions", 79),
    ("silences", 100),
    ("heals", 100),
    ("link_changes", 180),
    ("recoveries_completed", 889),
    ("resumes_with_retransmit", 470),
    ("sessions_opened", 210),
    ("resets", 76),
    ("half_closes", 75),
];

const EVERY_ND_X: &[(&str, u64)] = &[
    ("migrations_started", 410),
    ("migrations_with_bytes_in_flight", 390),
    ("concurrent_migrations", 66),
    ("kills", 170),
    ("one_sided_kills", 180),
    ("kills_during_migration", 9),
    // 5 reached since the higher node id realigns crossed sessions (issue 10
    // defect 4) and a receiver that only granted credit no longer suspects
    // its stream (issue 12): fewer long recoveries for a kill to land in;
    // the floor was 6.
    ("kills_during_recovery", 3),
    ("connects", 630),
    ("stream_closes", 94),
    ("partitions", 91),
    ("silences", 92),
    ("heals", 92),
    ("link_changes", 180),
    ("recoveries_completed", 821),
    ("resumes_with_retransmit", 410),
    ("sessions_opened", 240),
    ("resets", 92),
    ("half_closes", 73),
];

const TUNED: &[(&str, u64)] = &[
    ("window_growths", 1000),
    ("window_shrinks", 10),
    ("migrations_started", 110),
    ("migrations_with_bytes_in_flight", 100),
    ("drains_completed", 70),
    ("kills", 55),
    ("recoveries_completed", 190),
    ("resumes_with_retransmit", 70),
];

const TINY: &[(&str, u64)] = &[
    ("migrations_started", 160),
    ("migrations_with_bytes_in_flight", 140),
    ("concurrent_migrations", 27),
    ("migrations_onto_draining", 12),
    ("drains_from_dialer", 41),
    ("drains_from_acceptor", 42),
    ("drains_completed", 70),
    ("kills", 62),
    ("one_sided_kills", 53),
    ("kills_during_migration", 5),
    ("kills_during_drain", 7),
    ("kills_during_recovery", 2),
    ("connects", 270),
    ("stream_closes", 32),
    ("partitions", 23),
    ("silences", 30),
    ("heals", 26),
    ("link_changes", 68),
    ("recoveries_completed", 304),
    ("resumes_with_retransmit", 160),
    ("sessions_opened", 78),
    ("resets", 32),
    ("half_closes", 32),
];

const TINY_ND: &[(&str, u64)] = &[
    ("migrations_started", 160),
    ("migrations_with_bytes_in_flight", 140),
    ("concurrent_migrations", 27),
    ("kills", 68),
    ("one_sided_kills", 80),
    ("kills_during_migration", 3),
    ("connects", 270),
    ("stream_closes", 36),
    ("partitions", 27),
    ("silences", 36),
    ("heals", 33),
    ("link_changes", 71),
    ("recoveries_completed", 334),
    ("resumes_with_retransmit", 150),
    ("sessions_opened", 82),
    ("resets", 30),
    ("half_closes", 32),
];

const DRAINS: &[(&str, u64)] = &[
    ("migrations_started", 255),
    ("migrations_with_bytes_in_flight", 239),
    ("concurrent_migrations", 28),
    ("migrations_onto_draining", 160),
    ("drains_from_dialer", 230),
    ("drains_from_acceptor", 210),
    ("drains_completed", 400),
    ("kills", 100),
    ("one_sided_kills", 110),
    ("kills_during_migration", 18),
    ("kills_during_drain", 29),
    ("kills_during_recovery", 2),
    ("connects", 490),
    ("recoveries_completed", 400),
    ("resumes_with_retransmit", 110),
];

const WAN: &[(&str, u64)] = &[
    ("migrations_started", 71),
    ("migrations_with_bytes_in_flight", 35),
    ("concurrent_migrations", 5),
    ("kills", 31),
    ("one_sided_kills", 32),
    ("kills_during_migration", 3),
    ("connects", 120),
    ("partitions", 66),
    ("silences", 54),
    ("heals", 80),
    ("link_changes", 56),
    ("recoveries_completed", 128),
    ("resumes_with_retransmit", 34),
];

const LOST: &[(&str, u64)] = &[
    ("migrations_started", 19),
    ("migrations_with_bytes_in_flight", 19),
    ("kills", 160),
    ("one_sided_kills", 130),
    ("kills_during_migration", 2),
    ("kills_during_recovery", 7),
    ("stream_closes", 80),
    ("partitions", 78),
    ("silences", 76),
    ("heals", 57),
    ("recoveries_completed", 232),
    ("resumes_with_retransmit", 120),
    ("resets", 47),
    ("closed_other", 530),
];

const LOST_DR: &[(&str, u64)] = &[
    ("migrations_started", 12),
    ("migrations_with_bytes_in_flight", 10),
    ("drains_from_dialer", 19),
    ("drains_from_acceptor", 20),
    ("drains_completed", 28),
    ("kills", 130),
    ("one_sided_kills", 100),
    ("kills_during_migration", 2),
    ("kills_during_drain", 4),
    ("kills_during_recovery", 4),
    ("stream_closes", 76),
    ("partitions", 68),
    ("silences", 66),
    ("heals", 57),
    ("recoveries_completed", 234),
    ("resumes_with_retransmit", 100),
    ("resets", 45),
    ("closed_other", 540),
];
