//! Bounded exhaustive exploration of the real engine.
//!
//! Two real [`astral_core::Node`]s in a [`World`] where nothing happens
//! unless an [`Action`] says so. From the initial state the explorer tries
//! every action enabled in every reachable state, breadth first: every
//! delivery order of the records in flight on every link and direction,
//! interleaved with kills (both ends or one end), new streams, migrations
//! and drains started by either node, application resets, early finishes
//! and closes, and timers firing, each kind up to a budget ([`Bound`]).
//!
//! `Node` cannot be cloned, so a state is stored as the path of actions
//! that reaches it and rebuilt by replaying the path (the world is
//! deterministic). States are deduplicated by [`digest::digest`] together
//! with the budget left; a state whose world was already reached with at
//! least as much budget of every kind is skipped (it can do nothing the
//! earlier one could not).
//!
//! The oracle runs on every transition (each byte read is checked against
//! the writer's pattern: exactly once, in order) and at every *quiet* state
//! (nothing in flight), where [`World::settle_and_check`] lets the network
//! run on its own and checks that every session converges to one live
//! stream, nothing is stuck, and every session closes, gracefully with every
//! byte unless a reset or a long disconnection explains otherwise. Because
//! the search is breadth first, the first counterexample found has the
//! fewest actions.

pub mod digest;
pub mod known;
pub mod scenarios;
pub mod world;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use astral_core::stream::StreamState;
use astral_core::SessionState;

pub use known::KnownDefects;
pub use world::{Action, FlowPlan, Outcome, Settled, World, WorldConfig};

/// Kinds of actions that have a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// [`Action::Kill`].
    Kill = 0,
    /// [`Action::KillOneSide`].
    KillOneSide,
    /// [`Action::Connect`].
    Connect,
    /// [`Action::Migrate`].
    Migrate,
    /// [`Action::Drain`].
    Drain,
    /// [`Action::Reset`].
    Reset,
    /// [`Action::Finish`].
    Finish,
    /// [`Action::Close`].
    Close,
    /// [`Action::AdvanceToTimer`].
    Advance,
}

const KINDS: usize = 9;

impl Kind {
    /// The budgeted kind of `a` (`None` for deliveries, which are bounded by
    /// what is in flight).
    pub fn of(a: &Action) -> Option<Kind> {
        Some(match a {
            Action::Deliver { .. } => return None,
            Action::AdvanceToTimer | Action::Wait { .. } => Kind::Advance,
            Action::Kill { .. } => Kind::Kill,
            Action::KillOneSide { .. } => Kind::KillOneSide,
            Action::Connect { .. } => Kind::Connect,
            Action::Migrate { .. } => Kind::Migrate,
            Action::Drain { .. } => Kind::Drain,
            Action::Reset { .. } => Kind::Reset,
            Action::Finish { .. } => Kind::Finish,
            Action::Close { .. } => Kind::Close,
        })
    }
}

/// How many actions of each kind one path may contain, and safety limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Budget per [`Kind`], indexed by `Kind as usize`.
    pub budget: [u8; KINDS],
    /// Paths longer than this are not extended (their last state is checked
    /// as if it were terminal). A safety net: budgets and the finite
    /// workload bound the depth already.
    pub max_depth: usize,
    /// Stop after this many distinct states (the report says so).
    pub max_states: usize,
}

impl Bound {
    /// No events, deliveries only.
    pub fn deliveries_only() -> Bound {
        Bound {
            budget: [0; KINDS],
            max_depth: 400,
            max_states: 2_000_000,
        }
    }

    /// `self` with a budget of `n` for `kind`.
    pub fn with(mut self, kind: Kind, n: u8) -> Bound {
        self.budget[kind as usize] = n;
        self
    }
}

/// One configuration to explore.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name in reports.
    pub name: String,
    /// The world.
    pub world: WorldConfig,
    /// The bound.
    pub bound: Bound,
    /// Excluded known-defect patterns.
    pub known: KnownDefects,
    /// Stop after this many counterexamples.
    pub max_counterexamples: usize,
    /// Least coverage the exploration must reach ([`Report::coverage_shortfall`]).
    pub expect: Coverage,
    /// Least number of distinct states the exploration must reach (a floor
    /// under the CI bound's count: a change that makes the explorer see
    /// less fails instead of passing quietly).
    pub min_states: usize,
}

impl Scenario {
    /// `self` with a floor of `n` distinct states.
    pub fn with_floor(mut self, n: usize) -> Scenario {
        self.min_states = n;
        self
    }
}

/// A path that breaks the oracle.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// The actions from the initial state.
    pub path: Vec<Action>,
    /// What the oracle found.
    pub problems: Vec<String>,
}

/// What an exploration did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Distinct states reached (after deduplication).
    pub states: usize,
    /// Actions applied (each from a replayed state).
    pub transitions: usize,
    /// Transitions whose target state had been seen (or was subsumed).
    pub deduplicated: usize,
    /// Actions the engine refused (pre-checks make this rare).
    pub refused: usize,
    /// Quiet states settled and checked.
    pub checked: usize,
    /// Longest path.
    pub max_depth: usize,
    /// Checked states that ended with an open session's two directions on
    /// different streams (each a failure).
    pub crossed: usize,
    /// Transitions per budgeted kind (and deliveries at the end).
    pub by_kind: [usize; KINDS + 1],
    /// Quiet states whose settle saw at least one completed migration,
    /// recovery, completed drain, new stream, graceful close.
    pub checked_with: Coverage,
    /// Worlds rebuilt from a path, and the actions those replays applied.
    pub replays: usize,
    /// Actions applied by replays.
    pub replayed_actions: usize,
    /// Stopped at `max_states`.
    pub truncated: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// Counterexamples, shortest first.
    pub counterexamples: Vec<Counterexample>,
}

/// Coverage of the checked states: how many had seen each kind of event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// At least one `Migrated`.
    pub migrated: usize,
    /// At least one `Recovered`.
    pub recovered: usize,
    /// At least one stream closed `Drained`.
    pub drained: usize,
    /// At least one stream connected by a real handshake.
    pub connected: usize,
    /// Every session closed gracefully at both ends.
    pub all_graceful: usize,
    /// At least one session closed otherwise (reset, unreachable).
    pub other_close: usize,
    /// At least one Resume reply with the final counts of a closed session
    /// (rule 7).
    pub final_counts_announced: usize,
    /// At least one Resume reply owed by a session with both directions
    /// finished (rule 6).
    pub reply_owed_while_finishing: usize,
}

impl Report {
    /// What of `expect` the checked states did not reach (empty when all).
    pub fn coverage_shortfall(&self, expect: &Coverage) -> Vec<String> {
        let got = &self.checked_with;
        let pairs = [
            ("migrated", got.migrated, expect.migrated),
            ("recovered", got.recovered, expect.recovered),
            ("drained", got.drained, expect.drained),
            ("connected", got.connected, expect.connected),
            ("all graceful", got.all_graceful, expect.all_graceful),
            ("other close", got.other_close, expect.other_close),
            (
                "final counts re-announced",
                got.final_counts_announced,
                expect.final_counts_announced,
            ),
            (
                "reply owed while finishing",
                got.reply_owed_while_finishing,
                expect.reply_owed_while_finishing,
            ),
        ];
        pairs
            .iter()
            .filter(|(_, g, e)| g < e)
            .map(|(name, g, e)| {
                format!(
                    "{}: {name} in {g} checked states, expected at least {e}",
                    self.name
                )
            })
            .collect()
    }

    /// One line of figures.
    pub fn summary(&self) -> String {
        let kinds = [
            "kill", "kill1", "connect", "migrate", "drain", "reset", "finish", "close", "advance",
            "deliver",
        ];
        let mut by_kind = String::new();
        for (k, n) in kinds.iter().zip(self.by_kind) {
            if n > 0 {
                let _ = write!(by_kind, " {k}={n}");
            }
        }
        let c = &self.checked_with;
        format!(
            "{}: {} states, {} transitions ({} deduplicated, {} refused), {} quiet states checked ({} with crossed bindings), max depth {}, {} replays of {:.1} actions on average, {:.1} s{}; transitions by kind:{}; checked states that saw: migrated {}, recovered {}, drained {}, connected {}, all graceful {}, other close {}, final counts re-announced {}, reply owed while finishing {}; {} counterexamples",
            self.name,
            self.states,
            self.transitions,
            self.deduplicated,
            self.refused,
            self.checked,
            self.crossed,
            self.max_depth,
            self.replays,
            self.replayed_actions as f64 / self.replays.max(1) as f64,
            self.elapsed.as_secs_f64(),
            if self.truncated { " (TRUNCATED)" } else { "" },
            by_kind,
            c.migrated,
            c.recovered,
            c.drained,
            c.connected,
            c.all_graceful,
            c.other_close,
            c.final_counts_announced,
            c.reply_owed_while_finishing,
            self.counterexamples.len()
        )
    }
}

/// Rebuilds the world reached by `path`.
pub fn replay(config: &WorldConfig, path: &[Action]) -> World {
    let mut w = World::new(config);
    for a in path {
        w.apply(*a);
    }
    w
}

/// The trace of `path`: every action, every record delivered (decoded where
/// the cipher allows), every event, then the settle and what it found.
pub fn render(config: &WorldConfig, path: &[Action]) -> String {
    let mut w = World::with_tracing(config, true);
    for a in path {
        w.apply(*a);
    }
    w.trace.push("» settle".into());
    let settled = w.settle_and_check();
    let mut out = w.trace.join("\n");
    for p in settled.problems {
        let _ = write!(out, "\n!! {p}");
    }
    for p in settled.crossed {
        let _ = write!(out, "\n!! {p}");
    }
    out
}

type Used = [u8; KINDS];

fn used_by(path: &[Action]) -> Used {
    let mut u: Used = [0; KINDS];
    for a in path {
        if let Some(k) = Kind::of(a) {
            u[k as usize] = u[k as usize].saturating_add(1);
        }
    }
    u
}

/// Every action worth trying in `w`: deliveries of the oldest record of
/// each link direction, and every budgeted action whose preconditions hold
/// (checked from the public snapshots, so that few are refused), less the
/// patterns `known` excludes.
pub fn enabled(w: &World, used: &Used, bound: &Bound, known: &KnownDefects) -> Vec<Action> {
    let left = |k: Kind| used[k as usize] < bound.budget[k as usize];
    let mut v: Vec<Action> = w
        .deliverable()
        .into_iter()
        .map(|(link, to)| Action::Deliver { link, to })
        .collect();
    let established = |node: usize, s: Option<astral_core::StreamId>| {
        s.and_then(|s| w.nodes[node].stream_info(s))
            .filter(|i| i.state == StreamState::Established)
    };
    if left(Kind::Advance) && w.next_timer().is_some() {
        v.push(Action::AdvanceToTimer);
    }
    for (link, l) in w.links.iter().enumerate() {
        if !l.is_up() {
            continue;
        }
        if left(Kind::Kill) {
            v.push(Action::Kill { link });
        }
        if left(Kind::KillOneSide) {
            for node in 0..2 {
                v.push(Action::KillOneSide { link, node });
            }
        }
    }
    if left(Kind::Connect) && w.links.len() < w.config().max_links {
        for dialer in 0..2 {
            v.push(Action::Connect { dialer });
        }
    }
    for (link, l) in w.links.iter().enumerate() {
        if !left(Kind::Drain) {
            break;
        }
        for node in 0..2 {
            let Some(s) = established(node, l.end[node]) else {
                continue;
            };
            // drain_stream refuses without another stream to move to.
            let alternative = w.links.iter().enumerate().any(|(other, m)| {
                other != link
                    && established(node, m.end[node]).is_some_and(|s| s.confirmed && !s.draining)
            });
            if !s.draining && alternative {
                v.push(Action::Drain { link, node });
            }
        }
    }
    for flow in 0..w.flows.len() {
        for node in 0..2 {
            let Some(info) = w
                .open_session_of(flow, node)
                .and_then(|s| w.nodes[node].session_info(s))
            else {
                continue;
            };
            if left(Kind::Migrate)
                && matches!(info.state, SessionState::Open | SessionState::Migrating)
            {
                for (link, l) in w.links.iter().enumerate() {
                    let target = l.end[node].filter(|s| Some(*s) != info.send_stream);
                    if established(node, target).is_some_and(|s| s.confirmed) {
                        v.push(Action::Migrate { flow, node, link });
                    }
                }
            }
            let f = &w.flows[flow];
            if left(Kind::Reset) {
                v.push(Action::Reset { flow, node });
            }
            if left(Kind::Finish) && !f.half[node].finished {
                v.push(Action::Finish { flow, node });
            }
            if left(Kind::Close) && !f.read_closed[node] {
                v.push(Action::Close { flow, node });
            }
        }
    }
    if known.any() {
        let situation = known::Situation::of(w);
        v.retain(|a| !known.excludes(&situation, a));
    }
    v
}

/// Explores `scenario` breadth first; see the module documentation.
pub fn explore(scenario: &Scenario) -> Report {
    let start = Instant::now();
    let cfg = &scenario.world;
    let bound = &scenario.bound;
    let mut report = Report {
        name: scenario.name.clone(),
        ..Report::default()
    };
    // Per world digest, the budgets left of every visit (a visit with at
    // least as much of everything left subsumes this one).
    let mut seen: HashMap<u128, Vec<Used>> = HashMap::new();
    let mut checked: HashSet<u128> = HashSet::new();
    let mut frontier: VecDeque<Vec<Action>> = VecDeque::new();
    let root = World::new(cfg);
    if !root.violations.is_empty() {
        report.counterexamples.push(Counterexample {
            path: Vec::new(),
            problems: root.violations.clone(),
        });
        return report;
    }
    seen.insert(digest::digest(&root), vec![bound.budget]);
    report.states = 1;
    frontier.push_back(Vec::new());
    let mut reuse: Option<World> = Some(root);
    let progress = std::env::var_os("ASTRAL_EXPLORE_PROGRESS").is_some();
    let remaining = |u: &Used| -> Used {
        let mut r = [0; KINDS];
        for k in 0..KINDS {
            r[k] = bound.budget[k].saturating_sub(u[k]);
        }
        r
    };
    while let Some(path) = frontier.pop_front() {
        if report.counterexamples.len() >= scenario.max_counterexamples {
            break;
        }
        let used = used_by(&path);
        report.max_depth = report.max_depth.max(path.len());
        let world = match reuse.take() {
            Some(w) => w,
            None => {
                report.replays += 1;
                report.replayed_actions += path.len();
                replay(cfg, &path)
            }
        };
        let actions = if path.len() >= bound.max_depth {
            Vec::new()
        } else {
            enabled(&world, &used, bound, &scenario.known)
        };
        let quiet = world.is_quiet();
        let mut world = Some(world);
        if quiet || actions.is_empty() {
            let d = digest::digest(world.as_ref().expect("set above"));
            if checked.insert(d) {
                let mut w = if actions.is_empty() {
                    world.take().expect("set above")
                } else {
                    report.replays += 1;
                    report.replayed_actions += path.len();
                    replay(cfg, &path)
                };
                let settled = w.settle_and_check();
                let mut problems = settled.problems;
                if !settled.crossed.is_empty() {
                    report.crossed += 1;
                    problems.extend(settled.crossed);
                }
                report.checked += 1;
                let c = &w.counters;
                let cov = &mut report.checked_with;
                cov.migrated += usize::from(c.migrated > 0);
                cov.recovered += usize::from(c.recovered > 0);
                cov.drained += usize::from(c.drained > 0);
                cov.connected += usize::from(c.connected > 0);
                cov.all_graceful += usize::from(w.flows.iter().all(|f| {
                    f.closed
                        .iter()
                        .all(|c| *c == Some(astral_core::CloseReason::Graceful))
                }));
                cov.other_close += usize::from(c.other_close > 0);
                cov.final_counts_announced += usize::from(c.final_counts_announced > 0);
                cov.reply_owed_while_finishing += usize::from(c.reply_owed_while_finishing > 0);
                if !problems.is_empty() {
                    report.counterexamples.push(Counterexample {
                        path: path.clone(),
                        problems,
                    });
                    continue;
                }
            }
        }
        for a in actions {
            let mut w = match world.take() {
                Some(w) => w,
                None => {
                    report.replays += 1;
                    report.replayed_actions += path.len();
                    replay(cfg, &path)
                }
            };
            report.transitions += 1;
            let slot = Kind::of(&a).map_or(KINDS, |k| k as usize);
            report.by_kind[slot] += 1;
            if w.apply(a) != Outcome::Done {
                report.refused += 1;
                continue;
            }
            let mut next = path.clone();
            next.push(a);
            if !w.violations.is_empty() {
                report.counterexamples.push(Counterexample {
                    path: next,
                    problems: std::mem::take(&mut w.violations),
                });
                if report.counterexamples.len() >= scenario.max_counterexamples {
                    break;
                }
                continue;
            }
            let used_next = used_by(&next);
            let left = remaining(&used_next);
            let key = digest::digest(&w);
            let visits = seen.entry(key).or_default();
            if visits
                .iter()
                .any(|v| v.iter().zip(&left).all(|(had, now)| had >= now))
            {
                report.deduplicated += 1;
                continue;
            }
            visits.retain(|v| !v.iter().zip(&left).all(|(had, now)| had <= now));
            visits.push(left);
            report.states += 1;
            if progress && report.states % 10_000 == 0 {
                eprintln!(
                    "  {}: {} states, depth {}, frontier {}, {:.0} s",
                    report.name,
                    report.states,
                    next.len(),
                    frontier.len(),
                    start.elapsed().as_secs_f64()
                );
            }
            if report.states >= bound.max_states {
                report.truncated = true;
                frontier.clear();
                break;
            }
            if frontier.is_empty() && reuse.is_none() {
                reuse = Some(w);
            }
            frontier.push_back(next);
        }
    }
    report.elapsed = start.elapsed();
    report
}
