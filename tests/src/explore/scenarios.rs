//! The configurations the explorer runs in CI, and bigger ones.
//!
//! Each covers something the reference model (`shared/model`) lacks: drains,
//! session close (graceful, early finish, close, reset), three streams,
//! several deaths and new streams, timers, half-open streams, and the two
//! rules fuzzing added (rule 6: a session is not finished while it owes a
//! frame; rule 7: closed sessions re-announce their final counts after a
//! stream death). `scale` 1 is the CI bound; each step up adds a data record
//! per direction and raises the budgets (`ASTRAL_EXPLORE_BOUND`).

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
    }
}

/// The scenario set at `scale` (1 = CI), with `known` excluded.
pub fn all(scale: u8, known: KnownDefects) -> Vec<Scenario> {
    let s = scale.max(1);
    let extra = s - 1;
    // Data records per direction: 2 up and 1 down at scale 1.
    let up = 64 * (2 + u64::from(extra));
    let down = 64 * (1 + u64::from(extra));
    let at_least = |c: Coverage| c;
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
        ),
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
        ),
        scenario(
            "drains, a migration and a death over three streams",
            3,
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
        ),
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
        ),
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
        ),
        scenario(
            "two sessions: reset, early finish, close and a death",
            2,
            vec![flow(0, 64, 64, false), flow(1, up + 64, 64, false)],
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
        ),
    ]
}
