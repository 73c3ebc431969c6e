//! Known defects of the current core, as patterns of actions to leave out.
//!
//! The explorer and the schedule fuzzers would otherwise stop at the first
//! of them every time; with a pattern excluded they go on to look for new
//! ones. Each flag names its defect and goes with the fix. Whether an
//! action is excluded depends on the world's state ([`Situation`]).

use astral_core::SessionState;

use super::world::{Action, World};

/// Action patterns that trigger defects known in the current core, each
/// behind its own flag so that a CI bound passes on the current core; the
/// flag goes with the fix. With every flag off ([`KnownDefects::none`]) the
/// explorer searches everything. The shortest counterexample of each is in
/// `docs/MIGRATION.md` (Evidence) and in `tests/tests/explore.rs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnownDefects {
    /// Issue 10 defect 1 (drain + migration loses bytes and stalls): no
    /// `Migrate` while a stream is draining at either node, and no `Drain`
    /// while a session is migrating.
    pub skip_migrate_while_draining: bool,
    /// Issue 10 defect 2 (a drain whose migration ends through a Resume
    /// never completes; Resumes follow every stream death): no `Drain`
    /// once a stream has died, no kill while a stream is draining.
    pub skip_drain_with_deaths: bool,
    /// A drain never completes when a session it moved closes before its
    /// migration is confirmed (found by this explorer): no `Drain` while a
    /// session that may close is open (one without held Fins, or one that was
    /// finished, closed or reset), and no `Finish`, `Close` or `Reset` while
    /// a stream is draining.
    pub skip_drain_while_sessions_close: bool,
    /// A migration marker that reaches the querier before the Response is
    /// dropped with its epoch, so an older marker wins later and the two
    /// directions stay on different streams (found by this explorer): a
    /// node migrates a session only once the other node's end is open.
    pub skip_migrate_before_peer_open: bool,
    /// A responder that resets a session while the querier may still re-send
    /// its Query (it re-sends after any stream death while it waits for the
    /// Response) receives the Query again as a new session (found by this
    /// explorer): the responder resets only sessions already open at the
    /// querier, whose querier saw no stream die before the Response.
    pub skip_reset_after_query_resent: bool,
    /// A Response lost on a stream that died at the responder's end only
    /// (half-open) leaves the querier waiting: the responder's Resume on
    /// another stream is answered but does not open the session, which ends
    /// `RoutingTimeout` at the querier and `ResetByPeer` at the responder
    /// (found by this explorer): no one-sided kill while a session waits
    /// for its Response.
    pub skip_half_open_while_routing: bool,
    /// A Resume sent on a stream that is half-open (dead at the peer's end
    /// only) is lost and never sent again, not even when a new stream comes
    /// up; only that stream's ping timeout restarts the recovery, so when
    /// both ends resume on half-open streams and `dead_timeout` exceeds
    /// `recovery_timeout` (nothing requires otherwise) the session ends
    /// `PeerUnreachable` at both ends beside a healthy stream (found by
    /// the drain fuzzer): no one-sided kill once any stream has died.
    pub skip_half_open_after_a_death: bool,
}

impl KnownDefects {
    /// Nothing excluded.
    pub fn none() -> KnownDefects {
        KnownDefects::default()
    }

    /// The exclusions the current core needs: none. Every defect these
    /// flags name is fixed; their shortest counterexamples are regression
    /// tests in `tests/tests/explore.rs`. (Crossed bindings, defect 4, were
    /// allowed by a flag until the higher node id learnt to realign its
    /// sending direction, `engine/migrate.rs` `realign_crossed`, and the
    /// timed fuzz runs could count them as passing until an end moved by a
    /// Resume learnt to restate its binding, `engine/recovery.rs`: the
    /// settle check that both directions of an open session use one stream
    /// always applies now.)
    pub fn current_core() -> KnownDefects {
        KnownDefects::none()
    }

    /// Every exclusion on (the core of issue 10, before its fixes).
    pub fn all() -> KnownDefects {
        KnownDefects {
            skip_migrate_while_draining: true,
            skip_drain_with_deaths: true,
            skip_drain_while_sessions_close: true,
            skip_migrate_before_peer_open: true,
            skip_reset_after_query_resent: true,
            skip_half_open_while_routing: true,
            skip_half_open_after_a_death: true,
        }
    }

    /// Whether any exclusion is on.
    pub fn any(&self) -> bool {
        *self != KnownDefects::none()
    }
}

/// What the exclusions look at in a world's state.
#[derive(Clone, Debug, Default)]
pub struct Situation {
    /// A stream is draining at either node.
    pub draining: bool,
    /// A session is migrating at either node.
    pub migrating: bool,
    /// A session is recovering at either node.
    pub recovering: bool,
    /// A session waits for its Response.
    pub routing: bool,
    /// A stream died (not by a completed drain).
    pub died: bool,
    /// An open session may close: it does not hold its Fins, or it was
    /// finished, closed or reset.
    pub may_close: bool,
    /// Per flow and node: the other node's end is open.
    pub peer_open: Vec<[bool; 2]>,
    /// Per flow and node: this node accepted the session.
    pub acceptor: Vec<[bool; 2]>,
    /// Per flow: the querier may have re-sent its Query.
    pub query_maybe_resent: Vec<bool>,
}

impl Situation {
    /// Reads the situation off `w`'s public state.
    pub fn of(w: &World) -> Situation {
        let state = |flow: usize, node: usize| {
            w.open_session_of(flow, node)
                .and_then(|s| w.nodes[node].session_info(s))
                .map(|s| s.state)
        };
        let any_in =
            |st: SessionState| (0..w.flows.len()).any(|i| (0..2).any(|n| state(i, n) == Some(st)));
        Situation {
            draining: w.nodes.iter().any(|n| n.streams().any(|s| s.draining)),
            migrating: any_in(SessionState::Migrating),
            recovering: any_in(SessionState::Recovering),
            routing: any_in(SessionState::Routing),
            died: w.deaths > 0,
            may_close: w.flows.iter().any(|f| {
                !f.is_closed()
                    && (!f.fin_held
                        || f.reset
                        || f.half.iter().any(|h| h.finished)
                        || f.read_closed != [false; 2])
            }),
            peer_open: (0..w.flows.len())
                .map(|i| [0, 1].map(|n| state(i, 1 - n).is_some_and(SessionState::is_established)))
                .collect(),
            acceptor: w
                .flows
                .iter()
                .map(|f| [0, 1].map(|n| n == f.acceptor()))
                .collect(),
            query_maybe_resent: w.flows.iter().map(|f| f.query_maybe_resent).collect(),
        }
    }
}

impl KnownDefects {
    /// Whether `action` in situation `s` is a pattern these flags leave out.
    pub fn excludes(&self, s: &Situation, action: &Action) -> bool {
        let flow_flag = |v: &Vec<[bool; 2]>, flow: usize, node: usize| {
            v.get(flow).is_some_and(|f| f[node.min(1)])
        };
        match *action {
            Action::Deliver { .. }
            | Action::AdvanceToTimer
            | Action::Wait { .. }
            | Action::Connect { .. } => false,
            Action::Kill { .. } => self.skip_drain_with_deaths && s.draining,
            Action::KillOneSide { .. } => {
                (self.skip_drain_with_deaths && s.draining)
                    || (self.skip_half_open_while_routing && s.routing)
                    || (self.skip_half_open_after_a_death && s.died)
            }
            Action::Migrate { flow, node, .. } => {
                (self.skip_migrate_while_draining && s.draining)
                    || (self.skip_migrate_before_peer_open && !flow_flag(&s.peer_open, flow, node))
            }
            Action::Drain { .. } => {
                (self.skip_migrate_while_draining && s.migrating)
                    || (self.skip_drain_with_deaths && (s.recovering || s.died))
                    || (self.skip_drain_while_sessions_close && s.may_close)
            }
            Action::Reset { flow, node } => {
                (self.skip_drain_while_sessions_close && s.draining)
                    || (self.skip_reset_after_query_resent
                        && flow_flag(&s.acceptor, flow, node)
                        && (s.query_maybe_resent.get(flow).copied().unwrap_or(false)
                            || !flow_flag(&s.peer_open, flow, node)))
            }
            Action::Finish { .. } | Action::Close { .. } => {
                self.skip_drain_while_sessions_close && s.draining
            }
        }
    }
}
