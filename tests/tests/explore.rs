//! Bounded exhaustive exploration of the real engine (see
//! `astral_sim::explore`): every interleaving of deliveries and of
//! kill/migrate/drain/reset/... events within each scenario's budgets, with
//! the oracle checked on every transition and at every quiet state.
//!
//! `ASTRAL_EXPLORE_BOUND=N` (default 0, the CI bound) raises data and
//! budgets; `ASTRAL_EXPLORE_PROGRESS=1` prints progress. The known-defect
//! exclusions (`KnownDefects::current_core`) are removed one by one with the
//! fixes; the counterexample tests below replay the shortest trace found for
//! each and pass once its defect is fixed.

use astral_core::CloseReason;
use astral_sim::explore::scenarios::{self, flow};
use astral_sim::explore::{
    explore, render, replay, Action, Action::*, KnownDefects, Outcome, Report, Scenario,
    WorldConfig,
};

fn scale() -> u8 {
    std::env::var("ASTRAL_EXPLORE_BOUND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn run(s: &Scenario) -> Report {
    let r = explore(s);
    eprintln!("{}", r.summary());
    for c in &r.counterexamples {
        eprintln!("counterexample ({} actions):", c.path.len());
        for a in &c.path {
            eprintln!("    {a}");
        }
        for p in &c.problems {
            eprintln!("  !! {p}");
        }
    }
    r
}

/// The CI bound: no violation outside the known defects, full coverage.
#[test]
fn bounded_exploration_of_the_real_engine() {
    let scale = scale();
    let known = KnownDefects::current_core();
    eprintln!("bound {scale}, excluded known defects: {known:?}");
    let mut failures = Vec::new();
    let mut states = 0;
    for s in scenarios::all(scale, known) {
        let r = run(&s);
        states += r.states;
        if r.states < s.min_states {
            failures.push(format!(
                "{}: {} states, fewer than the floor of {}",
                r.name, r.states, s.min_states
            ));
        }
        if r.truncated {
            failures.push(format!("{}: stopped at {} states", r.name, r.states));
        }
        for c in &r.counterexamples {
            failures.push(format!(
                "{}: counterexample {:?}: {:?}",
                r.name, c.path, c.problems
            ));
        }
        failures.extend(r.coverage_shortfall(&s.expect));
    }
    eprintln!("{states} states in all");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Everything, no exclusion: lists the shortest counterexamples of the
/// current core (run by hand: `cargo test -p astral-sim --test explore --
/// --ignored --nocapture without_exclusions`).
#[test]
#[ignore = "reports the known defects of the current core"]
fn without_exclusions() {
    for s in scenarios::all(scale(), KnownDefects::none()) {
        run(&s);
    }
}

/// Replays `path` in `config`, settles and checks the oracle.
fn assert_exact(config: &WorldConfig, path: &[Action]) {
    let mut w = replay(config, path);
    let settled = w.settle_and_check();
    let mut problems = settled.problems;
    problems.extend(settled.crossed);
    assert!(
        problems.is_empty(),
        "{problems:#?}\ntrace:\n{}",
        render(config, path)
    );
}

fn two_streams(flows: Vec<astral_sim::explore::FlowPlan>) -> WorldConfig {
    WorldConfig::small(2, scenarios::WINDOW, flows)
}

fn three_streams(flows: Vec<astral_sim::explore::FlowPlan>) -> WorldConfig {
    WorldConfig::small(3, scenarios::WINDOW, flows)
}

/// The explorer is deterministic: the same scenario gives the same counts.
#[test]
fn exploration_is_deterministic() {
    let s = scenarios::scenario(
        "determinism",
        2,
        vec![flow(0, 128, 64, true)],
        &[
            (astral_sim::explore::Kind::Migrate, 1),
            (astral_sim::explore::Kind::Kill, 1),
        ],
        KnownDefects::current_core(),
        Default::default(),
    );
    let (a, b) = (explore(&s), explore(&s));
    assert_eq!(
        (a.states, a.transitions, a.checked, a.max_depth),
        (b.states, b.transitions, b.checked, b.max_depth)
    );
    assert!(a.states > 100, "{}", a.summary());
}

// ----- Counterexamples of the current core (shortest found) -----------------
//
// Each is the first (hence shortest) counterexample the explorer reports for
// the scenario with that one exclusion removed. Nodes: A = 0, B = 1; links
// L0, L1 (and L2) exist from the start.

/// Issue 10 defect 1: B drains L0 before A's query arrives, the query binds
/// the new session to the draining L0, B migrates it to L1 after the
/// barrier; A's data sent on L0 dies with the Drained close and no Resume
/// rewinds it: 0 of 128 bytes ever arrive, both ends stay Open.
#[test]
fn regression_drain_then_migrate_loses_bytes() {
    let path = [
        Drain { link: 0, node: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Migrate {
            flow: 0,
            node: 1,
            link: 1,
        },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 1, to: 1 },
    ];
    assert_exact(&three_streams(vec![flow(0, 128, 64, true)]), &path);
}

/// Issue 10 defect 2 (drains are not re-checked after a Resume): B drains
/// L0, L1 dies meanwhile, both sides resume; the migration off L0 ends
/// through a Resume and the drain's barrier is never sent: L0 stays
/// draining at both nodes forever.
#[test]
fn regression_drain_with_a_death_never_completes() {
    let path = [
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Drain { link: 0, node: 1 },
        Deliver { link: 0, to: 1 },
        Kill { link: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 2, to: 0 },
        Deliver { link: 2, to: 1 },
        Deliver { link: 2, to: 0 },
        Deliver { link: 0, to: 0 },
    ];
    assert_exact(&three_streams(vec![flow(0, 128, 64, true)]), &path);
}

/// A drain whose only session closes gracefully before its migration is
/// confirmed never completes: A drains L0 while its session waits for the
/// last Credit; the Credit closes the session, nothing re-checks the drain,
/// the barrier is never sent and L0 stays draining at both nodes.
#[test]
fn regression_drain_never_completes_when_its_session_closes() {
    let path = [
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Drain { link: 0, node: 0 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
    ];
    assert_exact(&two_streams(vec![flow(0, 128, 64, false)]), &path);
}

/// B (the responder) migrates twice right after accepting: to L1 (epoch 1,
/// marker on L0), then back to L0 (epoch 2, marker on L1). The epoch-2
/// marker overtakes the Response and reaches A while A still waits for the
/// Response: A drops it, epoch and all; the epoch-1 marker then moves A to
/// L1 while B sends on L0, and nothing ever brings them together.
#[test]
fn regression_marker_before_response_leaves_directions_crossed() {
    let path = [
        Deliver { link: 0, to: 1 },
        Migrate {
            flow: 0,
            node: 1,
            link: 1,
        },
        Migrate {
            flow: 0,
            node: 1,
            link: 0,
        },
        Deliver { link: 1, to: 0 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 0, to: 0 },
    ];
    assert_exact(&two_streams(vec![flow(0, 128, 64, true)]), &path);
}

/// B, the responder, migrates the session twice before its Response
/// reaches A: to L1 (marker on L0, behind the Response), then to L2
/// (marker on L1). The second marker reaches A first, while A is still
/// `Routing`, and was dropped with its epoch; the first came after the
/// Response and won: A sent on L1, B stayed `Migrating` to L2 for good
/// (fuzz input migration_ordering/still-migrating-crossed-9f1e05be).
#[test]
fn regression_newer_marker_before_response_is_followed() {
    let path = [
        Deliver { link: 0, to: 1 },
        Migrate {
            flow: 0,
            node: 1,
            link: 1,
        },
        Migrate {
            flow: 0,
            node: 1,
            link: 2,
        },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 0 },
    ];
    assert_exact(&three_streams(vec![flow(0, 128, 64, true)]), &path);
}

/// A's query reaches B on L0, L0 dies before the Response: A re-sends the
/// query on L1. B resets the session meanwhile; the re-sent query then
/// arrives as a brand-new session (B keeps no memory of reset sessions), so
/// B's application is asked the same query twice.
#[test]
fn regression_query_resent_after_reset_opens_a_second_session() {
    let path = [
        Deliver { link: 0, to: 1 },
        Kill { link: 0 },
        Reset { flow: 0, node: 1 },
        Deliver { link: 1, to: 1 },
    ];
    assert_exact(&two_streams(vec![flow(0, 128, 64, false)]), &path);
}

/// B queries on L0; A accepts, and A's end of L0 dies (half-open: B is not
/// told) with the Response in it. A resumes on L1; B answers the Resume but
/// stays Routing (a Resume does not open a session), so it ends
/// RoutingTimeout and A ResetByPeer, though L1 was up throughout.
#[test]
fn regression_response_lost_on_half_open_stream() {
    let path = [
        Deliver { link: 0, to: 0 },
        KillOneSide { link: 0, node: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 1, to: 0 },
    ];
    assert_exact(&two_streams(vec![flow(1, 128, 64, true)]), &path);
}

/// Issue 10 defect 4 (bindings may not converge): A migrates to L2 and L0,
/// carrying the marker, dies. Both resume, A on L2 (its sending stream), B
/// on L1. Rule 5 makes each follow the stream of each Resume it receives:
/// requests cross, then replies cross back, and A ends sending on L2 while
/// B sends on L1, for good.
#[test]
fn regression_migration_and_death_leave_directions_crossed() {
    let path = [
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Migrate {
            flow: 0,
            node: 0,
            link: 2,
        },
        Kill { link: 0 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 2, to: 1 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 2, to: 0 },
    ];
    assert_exact(&three_streams(vec![flow(0, 128, 64, true)]), &path);
}

/// Found by the explorer on the engine core: B drains L0 while A's Query is
/// on its way there; B answered on L0 and both ends then sent on it, so the
/// drain's barrier (which waits for no session to send on L0) never went out
/// and L0 stayed draining at both nodes. A Query arriving on a draining
/// stream is now answered on a usable one.
#[test]
fn regression_query_on_a_draining_stream_is_answered_elsewhere() {
    let path = [
        Deliver { link: 0, to: 0 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 2, to: 0 },
        Deliver { link: 2, to: 1 },
        Deliver { link: 2, to: 0 },
        Deliver { link: 2, to: 1 },
        Drain { link: 0, node: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
    ];
    assert_exact(&three_streams(vec![flow(0, 128, 64, true)]), &path);
}

/// Issue 10 (fuzz input `migration_ordering/crossed-428b31ab`, minimised):
/// L0 goes silent and both ends resume, A (the higher id) on L1, B on L1
/// and then, once L1 is suspect too, on L2. B's Resume on L2 moves A there;
/// B's older Resume on L1, arriving after it, moves A back to L1. B stays
/// on L2 (the lower id's choice stands), and its estimate of where A sends
/// (`peer_tx`) is L2, from A's reply that came last; A's is L1. Both
/// estimates are stale, so neither end saw the crossing and the session
/// stayed crossed for good. Now an end that a Resume moved restates where
/// it sends (a marker with a new epoch, after its reply), so the peer
/// follows.
#[test]
fn regression_late_resume_leaves_directions_crossed_unseen() {
    let path = [
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 1, to: 1 },
        AdvanceToTimer,
        AdvanceToTimer,
        AdvanceToTimer,
        AdvanceToTimer,
        AdvanceToTimer,
        Deliver { link: 2, to: 0 },
    ];
    let flows = vec![astral_sim::explore::FlowPlan {
        opener: 0,
        up: 1000,
        down: 1000,
        write: 195,
        hold_fin: true,
    }];
    assert_exact(&WorldConfig::small(3, 256, flows), &path);
}

/// Found by the recovery fuzzer after session 3's restatement fix (fuzz
/// input `recovery_ordering/closed-reader-stall-00725b29`, minimised): B
/// opens flow 1 and closes it at once (it reads nothing more: what arrives
/// is discarded and credited). L1 dies at A's end only, L0 goes silent and
/// comes back, and B, once L1's ping timeout ends it, resumes on L0. A's
/// limit is then what B's Resume implies, its consumed count
/// plus the base window (256 bytes), below the quarter of B's grown window
/// (1,742 bytes) that makes a credit worth sending. A sends those 256
/// bytes and waits; B discards them and never credits them (a discard,
/// unlike a read, armed no delayed credit): the session stayed open for
/// good. A discard now defers its credit as a read does.
#[test]
fn regression_closed_reader_credits_what_it_discards() {
    let path = [
        Close { flow: 1, node: 1 },
        Wait { millis: 26417 },
        Reset { flow: 0, node: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 1, to: 0 },
        Deliver { link: 1, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 0 },
        KillOneSide { link: 1, node: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        AdvanceToTimer,
        AdvanceToTimer,
        AdvanceToTimer,
        AdvanceToTimer,
    ];
    let flow = |opener, up, down| astral_sim::explore::FlowPlan {
        opener,
        up,
        down,
        write: 256,
        hold_fin: true,
    };
    let flows = vec![
        flow(0, 3893, 8191),
        flow(1, 8191, 8191),
        flow(1, 8191, 8191),
    ];
    assert_exact(&WorldConfig::small(2, 256, flows), &path);
}

/// Found by the drain fuzzer on the first restatement fix (fuzz input
/// `drain_ordering/crossed-after-recovery-6e044062`, minimised; no drain
/// is needed): L0 goes silent and both ends resume on L1; a Resume of B's
/// arriving on L0 moves A back to L0, and A restates it there (a marker
/// with epoch 1, held in L0). L0 goes silent again at A, which resumes on
/// L1 (a Resume has no epoch). When L0 delivers, B follows A's old marker
/// onto L0 while A sends on L1, and both ends' estimates of where the
/// other sends agree with their own: crossed, unseen. Now a recovery that
/// ends restates where it leaves the session (a newer epoch), so the old
/// marker loses.
#[test]
fn regression_marker_from_before_a_recovery_leaves_directions_crossed() {
    let path = [
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Deliver { link: 0, to: 1 },
        Deliver { link: 0, to: 0 },
        Kill { link: 2 },
        Wait { millis: 640 },
        Deliver { link: 1, to: 1 },
        Wait { millis: 10353 },
        Deliver { link: 0, to: 0 },
        Wait { millis: 3749 },
        Wait { millis: 640 },
    ];
    let flow = |up, down, write| astral_sim::explore::FlowPlan {
        opener: 0,
        up,
        down,
        write,
        hold_fin: true,
    };
    let flows = vec![flow(4127, 5738, 3841), flow(7082, 2965, 1265)];
    assert_exact(&WorldConfig::small(3, 4096, flows), &path);
}

// ----- The oracle's outage measure ------------------------------------------
//
// A session may end by a timeout only after an outage as long as the timeout
// (docs/MIGRATION.md, "What recovery_timeout promises"). These tests check
// what the measure counts, on the world the explorer and the fuzzers share.

/// Time with a link up at both ends and nothing in flight counts as outage
/// while a node sends sessions on a half-open stream (closed at the other
/// end) that it does not suspect yet: `blind`. Once the silence makes both
/// ends suspect their streams, the sessions resume on the new link and the
/// time counts no more. (The schedule of fuzz input
/// `recovery_ordering/unreachable-near-timeout-bab1d85b`, reduced.)
#[test]
fn outage_counts_time_blind_on_a_half_open_stream() {
    use astral_sim::explore::World;
    use std::time::Duration;
    let config = two_streams(vec![flow(0, 128, 64, true)]);
    let mut w = World::new(&config);
    w.deliver_all();
    // B's end of L0 dies: B resumes on L1, A answers there (its reply
    // waits in L1); then A's end of L1 dies with the reply: A resumes on
    // L0, where B's end is gone. Each end now sends on a stream that is
    // dead at the other end, and neither knows it.
    assert_eq!(w.apply(KillOneSide { link: 0, node: 1 }), Outcome::Done);
    assert_eq!(w.apply(Deliver { link: 1, to: 0 }), Outcome::Done);
    assert_eq!(w.apply(KillOneSide { link: 1, node: 0 }), Outcome::Done);
    assert!(w.is_quiet() && w.is_blind());
    // A new link comes up: connected, and quiet once its handshake is done.
    assert_eq!(w.apply(Connect { dialer: 0 }), Outcome::Done);
    w.deliver_all();
    assert!(w.is_quiet() && w.is_blind());
    let before = (w.outage, w.blind, w.late, w.held);
    assert_eq!(w.apply(Wait { millis: 50 }), Outcome::Done);
    assert_eq!(w.blind - before.1, Duration::from_millis(50));
    assert_eq!(w.outage - before.0, Duration::from_millis(50));
    assert_eq!((w.late, w.held), (before.2, before.3));
    // The probes go unanswered, the streams become suspect, the sessions
    // resume on L2.
    for _ in 0..20 {
        if !w.is_blind() {
            break;
        }
        w.apply(AdvanceToTimer);
        w.deliver_all();
    }
    assert!(!w.is_blind(), "still blind after 20 timers");
    let blind = w.blind;
    w.deliver_all();
    assert!(w.is_quiet());
    w.apply(AdvanceToTimer);
    assert_eq!(w.blind, blind, "no longer blind: nothing more counts");
    let settled = w.settle_and_check();
    assert!(
        settled.problems.is_empty() && settled.crossed.is_empty(),
        "{:?} {:?}",
        settled.problems,
        settled.crossed
    );
    assert!(w.flows[0]
        .closed
        .iter()
        .all(|c| *c == Some(CloseReason::Graceful)));
}

/// A `Wait` that passes over a due timer, while connected, quiet and not
/// blind, counts the time from the timer's due time on as outage (`late`):
/// the engine could not probe, retransmit or notice anything meanwhile.
/// A wait that ends before the timer, and an advance to the timer itself,
/// count nothing.
#[test]
fn outage_counts_time_a_due_timer_waits() {
    use astral_sim::explore::World;
    use std::time::Duration;
    let config = two_streams(vec![flow(0, 128, 64, true)]);
    let mut w = World::new(&config);
    w.deliver_all();
    assert!(w.is_quiet() && !w.is_blind());
    let before = w.outage;
    w.apply(AdvanceToTimer);
    w.deliver_all();
    assert_eq!(w.outage, before, "an advance to the timer counts nothing");
    let left = |w: &World| {
        w.next_timer()
            .expect("a timer")
            .saturating_duration_since(w.now)
    };
    let half = u32::try_from(left(&w).as_millis() / 2).expect("a short wait");
    assert!(half > 0, "the next timer is {:?} away", left(&w));
    w.apply(Wait { millis: half });
    assert_eq!(w.outage, before, "a wait short of the timer counts nothing");
    let to_due = left(&w);
    let millis = u32::try_from(to_due.as_millis()).expect("a short wait") + 700;
    w.apply(Wait { millis });
    let late = Duration::from_millis(u64::from(millis)) - to_due;
    assert!(late >= Duration::from_millis(700));
    assert_eq!(w.late, late);
    assert_eq!(w.outage - before, late);
    assert_eq!((w.blind, w.held), (Duration::ZERO, Duration::ZERO));
}
