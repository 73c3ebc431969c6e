//! The configurations the explorer runs in CI, and bigger ones.
//!
//! Each covers something the reference model (`shared/model`) lacks: drains,
//! session close (graceful, early finish, close, reset), three streams,
//! several deaths and new streams, timers, half-open streams, and the two
//! rules fuzzing added (rule 6: a session is not finished while it owes a
//! frame; rule 7: closed sessions re-announce their final counts after a
//! stream death). `scale` 0 is the CI bound (one data record each way);
//! scale 1 adds a record upwards, each step after that a record per
//! direction and one more of some events (`ASTRAL_EXPLORE_BOUND`).

use super::world::{FlowPlan, WorldConfig};
use super::{Bound, Coverage, Kind, KnownDefects, Scenario};

/// Window per session and direction, and write size: one record of data
/// per 64 bytes.
pub const WINDOW: u32 = 64;

/// A session of `up` bytes from `opener` and `down` bytes back.
pub fn flow(opener: usize, up: u64, down: u64, hold_fin: bool) -> FlowPlan {
    FlowPlan {
        opener,
        up,
        down,
        write: WINDOW as usize,
        hold_fin,
    }
}

/// A scenario over `streams` initial streams with `budgets`.
pub fn scenario(
    name: &str,
    streams: usize,
    flows: Vec<FlowPlan>,
    budgets: &[(Kind, u8)],
    known: KnownDefects,
    expect: Coverage,
) -> Scenario {
    let mut bound = Bound::deliveries_only();
    for &(k, n) in budgets {
        bound = bound.with(k, n);
    }
    Scenario {
        name: name.to_string(),
        world: WorldConfig::small(streams, WINDOW, flows),
        bound,
        known,
        max_counterexamples: 3,
        expect,
        min_states: 0,
    }
}

/// The scenario set at `scale` (0 = CI), with `known` excluded.
pub fn all(scale: u8, known: KnownDefects) -> Vec<Scenario> {
    let extra = scale.saturating_sub(1);
    // Data records per direction: 1 each way at scale 0, 2 up and 1 down at
    // scale 1, one more each way per step after that.
    let up = 64 * (1 + u64::from(scale.min(1)) + u64::from(extra));
    let down = 64 * (1 + u64::from(extra));
    let at_least = |c: Coverage| c;
    // `with_floor`: about 90 % of the distinct states each reaches at the CI
    // bound (more at higher bounds), asserted by `tests/explore.rs`.
    vec![
        scenario(
            "migrations by both sides and a death (2 streams, session held open)",
            2,
            vec![flow(0, up, down, true)],
            &[(Kind::Migrate, 2 + extra), (Kind::Kill, 1)],
            known,
            at_least(Coverage {
                migrated: 1,
                recovered: 1,
                all_graceful: 1,
                ..Coverage::default()
            }),
        )
        .with_floor(6500),
        scenario(
            "two sessions closing gracefully while both streams die (rules 6 and 7)",
            2,
            vec![flow(0, up, down, false), flow(1, down, up, false)],
            &[(Kind::Kill, 2), (Kind::Connect, extra)],
            known,
            at_least(Coverage {
                recovered: 1,
                connected: 1,
                all_graceful: 1,
                final_counts_announced: 1,
                reply_owed_while_finishing: 1,
                ..Coverage::default()
            }),
        )
        .with_floor(800),
        scenario(
            "drains, a migration and a death over three streams (two at the CI bound)",
            if scale == 0 { 2 } else { 3 },
            vec![flow(0, up, down, true)],
            &[
                (Kind::Drain, 1 + extra),
                (Kind::Migrate, 1),
                (Kind::Kill, 1),
            ],
            known,
            at_least(Coverage {
                migrated: 1,
                recovered: 1,
                drained: 1,
                all_graceful: 1,
                ..Coverage::default()
            }),
        )
        .with_floor(18000),
        scenario(
            "half-open stream and a new stream (B opens)",
            2,
            vec![flow(1, up, down, true)],
            &[
                (Kind::KillOneSide, 1),
                (Kind::Connect, 1),
                (Kind::Migrate, extra),
            ],
            known,
            at_least(Coverage {
                recovered: 1,
                connected: 1,
                all_graceful: 1,
                ..Coverage::default()
            }),
        )
        .with_floor(8500),
        scenario(
            "half-open stream and time passing (keep-alives, credit delay, ping timeout)",
            2,
            vec![flow(1, up, down, true)],
            &[(Kind::KillOneSide, 1), (Kind::Advance, 1 + extra)],
            known,
            at_least(Coverage {
                recovered: 1,
                all_graceful: 1,
                ..Coverage::default()
            }),
        )
        // 5939 states with suspect streams (issue 12; 6079 after the crossed
        // bindings fix of issue 10), 19000+ before: a
        // half-open stream with data or a ping in flight is now suspect
        // after two RTOs (probe, then suspicion) and its session resumes on
        // the other stream at once, so time passing reaches the recovered
        // end states in far fewer steps than through the 20 s ping
        // timeout. Same coverage (recovered, all graceful), no
        // counterexample. Floor at about two thirds of the measured count.
        .with_floor(4000),
        scenario(
            "two sessions: reset, early finish, close and a death",
            2,
            vec![
                flow(0, 64, 64, false),
                flow(1, up + 64 * u64::from(scale.min(1)), 64, false),
            ],
            &[
                (Kind::Reset, 1),
                (Kind::Finish, 1),
                (Kind::Close, 1),
                (Kind::Kill, 1 + extra),
            ],
            known,
            at_least(Coverage {
                recovered: 1,
                all_graceful: 1,
                other_close: 1,
                final_counts_announced: 1,
                ..Coverage::default()
            }),
        )
        .with_floor(65000),
    ]
}
