//! Sessions as the application sees them: states, the table of legal
//! transitions, and snapshots.
//!
//! The transition table is the one definition of how a session's state may
//! change. Each transition is named after its cause (like s2n-quic's
//! `on_send_fin(Ready | Send => DataSent)`); the engine performs every state
//! change through the transition's own method, which also does its side
//! effects (events, counters, timers), so each happens in exactly one place.

use std::fmt::Write as _;

use crate::{NodeId, SessionId, StreamId};

/// Lifecycle of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Outbound query sent (or waiting for a stream); no answer yet.
    Routing,
    /// Inbound query waiting for the local application's decision.
    Pending,
    /// Both sides agreed; bytes flow.
    Open,
    /// This side sent a MigrateTo marker and sends on the target; it stays
    /// here until the peer's traffic for the session is seen on the target.
    Migrating,
    /// The stream this side sent on died; resuming on another one.
    Recovering,
    /// Finished, reset, rejected or failed.
    Closed,
}

impl SessionState {
    /// Name for errors and introspection.
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Routing => "routing",
            SessionState::Pending => "pending",
            SessionState::Open => "open",
            SessionState::Migrating => "migrating",
            SessionState::Recovering => "recovering",
            SessionState::Closed => "closed",
        }
    }

    /// Data may flow (in both directions) in this state.
    pub fn is_established(self) -> bool {
        matches!(
            self,
            SessionState::Open | SessionState::Migrating | SessionState::Recovering
        )
    }
}

/// Which side opened the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This node sent the Query.
    Querier,
    /// This node answered it.
    Responder,
}

use SessionState::{Closed, Migrating, Open, Pending, Recovering, Routing};

/// Every legal change of a session's state, named after its cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transition {
    /// The peer accepted our query.
    ResponseAccepted,
    /// The local application accepted the peer's query.
    QueryAccepted,
    /// This side moved its sending to another stream and sent a marker.
    MigrationStarted,
    /// The peer's traffic arrived on the migration target.
    MigrationConfirmed,
    /// The peer's marker (newer epoch, or the tie-break) moved our sending.
    MarkerFollowed,
    /// The stream a migration left died with its marker; recovery settles.
    MigrationAbandoned,
    /// The stream this side sent on died.
    StreamLost,
    /// The peer's Resume (or a re-sent Query) said where to continue.
    Resumed,
    /// Both directions finished and were acknowledged.
    Finished,
    /// The peer rejected our query.
    Rejected,
    /// The local application rejected the peer's query.
    RejectedLocally,
    /// No answer (or no local decision) within `routing_timeout`.
    RoutingTimedOut,
    /// No stream to the peer within `recovery_timeout`.
    RecoveryTimedOut,
    /// The peer reset the session.
    ResetByPeer,
    /// The local application reset the session.
    ResetLocally,
    /// The peer broke the session protocol.
    Violated,
    /// The peer left (shut down) or restarted: its sessions cannot resume.
    PeerGone,
}

const LIVE: &[SessionState] = &[Routing, Pending, Open, Migrating, Recovering];
const ESTABLISHED: &[SessionState] = &[Open, Migrating, Recovering];

impl Transition {
    /// The whole table, in a fixed order.
    pub const ALL: [Transition; 17] = [
        Transition::ResponseAccepted,
        Transition::QueryAccepted,
        Transition::MigrationStarted,
        Transition::MigrationConfirmed,
        Transition::MarkerFollowed,
        Transition::MigrationAbandoned,
        Transition::StreamLost,
        Transition::Resumed,
        Transition::Finished,
        Transition::Rejected,
        Transition::RejectedLocally,
        Transition::RoutingTimedOut,
        Transition::RecoveryTimedOut,
        Transition::ResetByPeer,
        Transition::ResetLocally,
        Transition::Violated,
        Transition::PeerGone,
    ];

    /// The transition's name, as in the table.
    pub fn name(self) -> &'static str {
        match self {
            Transition::ResponseAccepted => "on_response_accepted",
            Transition::QueryAccepted => "on_query_accepted",
            Transition::MigrationStarted => "on_migration_started",
            Transition::MigrationConfirmed => "on_migration_confirmed",
            Transition::MarkerFollowed => "on_marker_followed",
            Transition::MigrationAbandoned => "on_migration_abandoned",
            Transition::StreamLost => "on_stream_lost",
            Transition::Resumed => "on_resumed",
            Transition::Finished => "on_finished",
            Transition::Rejected => "on_rejected",
            Transition::RejectedLocally => "on_rejected_locally",
            Transition::RoutingTimedOut => "on_routing_timed_out",
            Transition::RecoveryTimedOut => "on_recovery_timed_out",
            Transition::ResetByPeer => "on_reset_by_peer",
            Transition::ResetLocally => "on_reset_locally",
            Transition::Violated => "on_violated",
            Transition::PeerGone => "on_peer_gone",
        }
    }

    /// States it may start from.
    pub fn from(self) -> &'static [SessionState] {
        match self {
            Transition::ResponseAccepted => &[Routing],
            Transition::QueryAccepted => &[Pending],
            Transition::MigrationStarted => &[Open, Migrating],
            Transition::MigrationConfirmed => &[Migrating],
            Transition::MarkerFollowed => &[Open, Migrating],
            Transition::MigrationAbandoned => &[Migrating],
            Transition::StreamLost => ESTABLISHED,
            Transition::Resumed => &[Recovering],
            Transition::Finished => ESTABLISHED,
            Transition::Rejected => &[Routing],
            Transition::RejectedLocally => &[Pending],
            Transition::RoutingTimedOut => &[Routing, Pending],
            Transition::RecoveryTimedOut => &[Recovering],
            Transition::ResetByPeer
            | Transition::ResetLocally
            | Transition::Violated
            | Transition::PeerGone => LIVE,
        }
    }

    /// The state it leads to.
    pub fn to(self) -> SessionState {
        match self {
            Transition::MigrationStarted => Migrating,
            Transition::StreamLost => Recovering,
            Transition::ResponseAccepted
            | Transition::QueryAccepted
            | Transition::MigrationConfirmed
            | Transition::MarkerFollowed
            | Transition::MigrationAbandoned
            | Transition::Resumed => Open,
            Transition::Finished
            | Transition::Rejected
            | Transition::RejectedLocally
            | Transition::RoutingTimedOut
            | Transition::RecoveryTimedOut
            | Transition::ResetByPeer
            | Transition::ResetLocally
            | Transition::Violated
            | Transition::PeerGone => Closed,
        }
    }

    /// Whether the transition may start in `state`.
    pub fn allowed_from(self, state: SessionState) -> bool {
        self.from().contains(&state)
    }

    /// The table as text, one transition per line:
    /// `on_name: From | Other => To`.
    pub fn table() -> String {
        let mut out = String::new();
        for t in Transition::ALL {
            let from: Vec<&str> = t.from().iter().map(|s| s.name()).collect();
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{}: {} => {}",
                t.name(),
                from.join(" | "),
                t.to().name()
            );
        }
        out
    }

    /// The table as a Graphviz digraph (one edge per start state).
    pub fn dot() -> String {
        let mut out = String::from("digraph session {\n");
        for t in Transition::ALL {
            for from in t.from() {
                let _ = writeln!(
                    out,
                    "  {} -> {} [label=\"{}\"];",
                    from.name(),
                    t.to().name(),
                    t.name()
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

/// Read-only snapshot of a session, for introspection and control tools.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Local handle.
    pub id: SessionId,
    /// Wire id.
    pub wire_id: u64,
    /// The peer.
    pub peer: NodeId,
    /// Which side opened it.
    pub role: Role,
    /// Current state.
    pub state: SessionState,
    /// Stream this side sends on (none while waiting for one).
    pub send_stream: Option<StreamId>,
    /// Stream the peer's traffic last arrived on (none before any arrived).
    pub recv_stream: Option<StreamId>,
    /// Counters.
    pub stats: SessionStats,
}

/// Per-session counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Bytes the application wrote.
    pub bytes_written: u64,
    /// Bytes the peer has credited (consumed).
    pub bytes_acked: u64,
    /// Bytes received in order.
    pub bytes_received: u64,
    /// Bytes the application read.
    pub bytes_read: u64,
    /// Bytes sent again after recovery.
    pub bytes_retransmitted: u64,
    /// Bytes held by the sender now: written but not yet credited (in
    /// flight plus not yet sent). Bounded by peer window + `send_buffer`.
    pub bytes_retained: u64,
    /// Of those, bytes sent but not yet credited: what recovery may have to
    /// retransmit. Bounded by the peer's window.
    pub bytes_in_flight: u64,
    /// Bytes held in the reassembly buffer now.
    pub bytes_buffered: u64,
    /// Completed migrations.
    pub migrations: u32,
    /// Completed recoveries.
    pub recoveries: u32,
    /// Credit window granted by the peer.
    pub peer_window: u32,
    /// Credit window this side grants (auto-tuned).
    pub local_window: u32,
    /// The peer's grant: the highest offset this side may send.
    pub peer_limit: u64,
    /// Times auto-tuning grew the local window.
    pub window_growths: u32,
    /// Times it shrank it (memory pressure, or a migration to a faster
    /// stream).
    pub window_shrinks: u32,
    /// Bytes the session reserved from the memory budget now (above its
    /// floors).
    pub budget_reserved: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table, snapshotted: a change to the state machine must change
    /// this text on purpose (and docs/MIGRATION.md with it).
    #[test]
    fn transition_table_snapshot() {
        let expected = "\
on_response_accepted: routing => open
on_query_accepted: pending => open
on_migration_started: open | migrating => migrating
on_migration_confirmed: migrating => open
on_marker_followed: open | migrating => open
on_migration_abandoned: migrating => open
on_stream_lost: open | migrating | recovering => recovering
on_resumed: recovering => open
on_finished: open | migrating | recovering => closed
on_rejected: routing => closed
on_rejected_locally: pending => closed
on_routing_timed_out: routing | pending => closed
on_recovery_timed_out: recovering => closed
on_reset_by_peer: routing | pending | open | migrating | recovering => closed
on_reset_locally: routing | pending | open | migrating | recovering => closed
on_violated: routing | pending | open | migrating | recovering => closed
on_peer_gone: routing | pending | open | migrating | recovering => closed
";
        assert_eq!(Transition::table(), expected);
    }

    #[test]
    fn closed_is_terminal_and_every_state_is_reachable() {
        for t in Transition::ALL {
            assert!(!t.allowed_from(Closed), "{} leaves Closed", t.name());
        }
        for s in [Pending, Open, Migrating, Recovering, Closed] {
            assert!(
                Transition::ALL.iter().any(|t| t.to() == s) || s == Pending,
                "{s:?} unreachable"
            );
        }
        assert!(Transition::dot().contains("routing -> open [label=\"on_response_accepted\"]"));
    }
}
