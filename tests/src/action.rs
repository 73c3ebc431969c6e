//! Scripted actions, their recorded outcomes, and the coverage they count.

use std::time::Duration;

use astral_core::{
    ConnectError, DrainError, MigrateError, NodeId, OpenError, SessionState, Timestamp,
};

use crate::netem::{LinkChange, LinkConfig};
use crate::workload::FlowSpec;
use crate::Sim;

/// Something the script does at a given time.
#[derive(Clone, Debug)]
pub enum Action {
    /// Cut a link: both ends see their transport closed.
    Kill(usize),
    /// Cut a link at one end only: `true` tells the acceptor (`b`), `false`
    /// the dialer; the other end is never told and must notice by timeout.
    KillOneSide(usize, bool),
    /// Bring up a new link (dialer, acceptor, properties).
    Connect(usize, usize, LinkConfig),
    /// `migrate(flow's session at one end, link's stream)`.
    Migrate {
        /// Flow index.
        flow: usize,
        /// Which end starts it: false = the opener, true = the acceptor.
        responder: bool,
        /// Target link.
        link: usize,
    },
    /// Drain a link from one end.
    Drain {
        /// Link index.
        link: usize,
        /// Drain from `b` instead of `a`.
        from_b: bool,
    },
    /// The application closes a link's stream at one end (its sessions
    /// recover elsewhere).
    CloseStream {
        /// Link index.
        link: usize,
        /// Close at `b` instead of `a`.
        from_b: bool,
    },
    /// Change a link's latency from now on (shorthand for
    /// `ChangeLink(link, LinkChange::Latency(..))`).
    SetLatency(usize, Duration),
    /// Change a link's properties now.
    ChangeLink(usize, LinkChange),
    /// Both directions of a link go silent; nothing is closed.
    Partition(usize),
    /// A partitioned or silenced link delivers again.
    Heal(usize),
    /// Reset a flow's session from one end (`true`: the acceptor).
    Reset {
        /// Flow index.
        flow: usize,
        /// Reset at the acceptor instead of the opener.
        responder: bool,
    },
    /// Half-close one direction of a flow now: the writer stops at what it
    /// has written and finishes (`true`: the acceptor's direction).
    Finish {
        /// Flow index.
        flow: usize,
        /// Finish the acceptor's direction instead of the opener's.
        responder: bool,
    },
    /// Open a new session of the workload.
    Open(FlowSpec),
}

impl Action {
    /// Short name of the variant, for tables of outcomes.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Kill(_) => "kill",
            Action::KillOneSide(..) => "kill_one_side",
            Action::Connect(..) => "connect",
            Action::Migrate { .. } => "migrate",
            Action::Drain { .. } => "drain",
            Action::CloseStream { .. } => "close_stream",
            Action::SetLatency(..) => "set_latency",
            Action::ChangeLink(..) => "change_link",
            Action::Partition(_) => "partition",
            Action::Heal(_) => "heal",
            Action::Reset { .. } => "reset",
            Action::Finish { .. } => "finish",
            Action::Open(_) => "open",
        }
    }
}

/// Why an action did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The action names a link that does not exist.
    #[error("no link {0}")]
    NoSuchLink(usize),
    /// The link was already killed or closed.
    #[error("link {0} is already down")]
    LinkDown(usize),
    /// The action names a flow that does not exist.
    #[error("no flow {0}")]
    NoSuchFlow(usize),
    /// The flow has no live session at that end (not accepted yet, closed,
    /// or reset).
    #[error("flow {0} has no live session at that end")]
    NoSession(usize),
    /// The direction was already finished.
    #[error("flow {0}: that direction already finished")]
    AlreadyFinished(usize),
    /// The link does not reach the node the action runs at.
    #[error("link {link} does not reach node {node}")]
    NotAnEnd {
        /// The link.
        link: usize,
        /// The node.
        node: usize,
    },
    /// The action names a node that does not exist.
    #[error("no node {0}")]
    NoSuchNode(usize),
    /// `migrate()` refused.
    #[error("migrate: {0}")]
    Migrate(#[from] MigrateError),
    /// `drain_stream()` refused.
    #[error("drain: {0}")]
    Drain(#[from] DrainError),
    /// `connect()` / `accept()` refused.
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// `open_session()` refused.
    #[error("open: {0}")]
    Open(#[from] OpenError),
}

impl ActionError {
    /// The reason without its arguments, for tallies.
    pub fn reason(&self) -> String {
        match self {
            ActionError::NoSuchLink(_) => "NoSuchLink".into(),
            ActionError::LinkDown(_) => "LinkDown".into(),
            ActionError::NoSuchFlow(_) => "NoSuchFlow".into(),
            ActionError::NoSession(_) => "NoSession".into(),
            ActionError::AlreadyFinished(_) => "AlreadyFinished".into(),
            ActionError::NotAnEnd { .. } => "NotAnEnd".into(),
            ActionError::NoSuchNode(_) => "NoSuchNode".into(),
            ActionError::Migrate(e) => format!("{e:?}"),
            ActionError::Drain(e) => format!("{e:?}"),
            ActionError::Connect(e) => format!("{e:?}"),
            ActionError::Open(e) => format!("{e:?}"),
        }
    }
}

/// One applied action and what came of it.
#[derive(Clone, Debug)]
pub struct ActionRecord {
    /// When it was applied.
    pub at: Timestamp,
    /// What.
    pub action: Action,
    /// `Ok` or why it did not apply.
    pub outcome: Result<(), ActionError>,
}

impl Sim {
    /// Applies `action` now and records its outcome.
    pub(crate) fn apply(&mut self, action: Action) {
        let outcome = self.try_apply(&action);
        self.coverage.actions += 1;
        if let Err(e) = &outcome {
            self.coverage.actions_refused += 1;
            let key = format!("{}: {}", action.kind(), e.reason());
            *self.coverage.refusals.entry(key).or_default() += 1;
        }
        self.outcomes.push(ActionRecord {
            at: self.now,
            action,
            outcome,
        });
    }

    /// Outcomes of one kind of action: (succeeded, refused).
    pub fn outcome_counts(&self, kind: &str) -> (usize, usize) {
        let of_kind = self.outcomes.iter().filter(|r| r.action.kind() == kind);
        let ok = of_kind.clone().filter(|r| r.outcome.is_ok()).count();
        (ok, of_kind.count() - ok)
    }

    fn live_link(&self, li: usize) -> Result<&crate::Link, ActionError> {
        let l = self.links.get(li).ok_or(ActionError::NoSuchLink(li))?;
        if l.alive {
            Ok(l)
        } else {
            Err(ActionError::LinkDown(li))
        }
    }

    fn try_apply(&mut self, action: &Action) -> Result<(), ActionError> {
        let now = self.now;
        match action {
            Action::Kill(li) => {
                let (a, sa, b, sb) = {
                    let l = self.live_link(*li)?;
                    (l.a, l.sa, l.b, l.sb)
                };
                self.count_kill(a, b);
                self.coverage.kills += 1;
                let l = &mut self.links[*li];
                l.alive = false;
                l.ab.clear();
                l.ba.clear();
                // An end whose process restarted has no stream to close.
                let orphaned = l.orphaned;
                for (n, s) in [(a, sa), (b, sb)] {
                    if orphaned != Some(n) {
                        self.nodes[n].handle_transport_closed(now, s, "killed by simulator");
                    }
                }
            }
            Action::KillOneSide(li, b_side) => {
                let (a, b, node, s) = {
                    let l = self.live_link(*li)?;
                    let (node, s) = if *b_side { (l.b, l.sb) } else { (l.a, l.sa) };
                    (l.a, l.b, node, s)
                };
                self.count_kill(a, b);
                self.coverage.one_sided_kills += 1;
                let l = &mut self.links[*li];
                l.alive = false;
                l.ab.clear();
                l.ba.clear();
                if l.orphaned != Some(node) {
                    self.nodes[node].handle_transport_closed(
                        now,
                        s,
                        "killed by simulator (one side)",
                    );
                }
            }
            Action::Connect(a, b, cfg) => {
                let n = self.nodes.len();
                for x in [*a, *b] {
                    if x >= n {
                        return Err(ActionError::NoSuchNode(x));
                    }
                }
                self.try_link(*a, *b, cfg.clone())?;
                self.coverage.connects += 1;
            }
            Action::Migrate {
                flow,
                responder,
                link,
            } => self.migrate(*flow, *responder, *link)?,
            Action::Drain { link, from_b } => {
                let (node, stream) = {
                    let l = self.live_link(*link)?;
                    if *from_b {
                        (l.b, l.sb)
                    } else {
                        (l.a, l.sa)
                    }
                };
                self.nodes[node].drain_stream(now, stream)?;
                if *from_b {
                    self.coverage.drains_from_acceptor += 1;
                } else {
                    self.coverage.drains_from_dialer += 1;
                }
            }
            Action::CloseStream { link, from_b } => {
                let (node, stream) = {
                    let l = self.live_link(*link)?;
                    if *from_b {
                        (l.b, l.sb)
                    } else {
                        (l.a, l.sa)
                    }
                };
                self.nodes[node].close_stream(now, stream);
                self.coverage.stream_closes += 1;
            }
            Action::SetLatency(li, latency) => {
                self.change_link(*li, &LinkChange::Latency(*latency))?;
            }
            Action::ChangeLink(li, change) => self.change_link(*li, change)?,
            Action::Partition(li) => self.change_link(*li, &LinkChange::Partition)?,
            Action::Heal(li) => self.change_link(*li, &LinkChange::Heal)?,
            Action::Reset { flow, responder } => {
                let (node, sid) = self.session_end(*flow, *responder)?;
                let handle = self.nodes[node]
                    .session(sid)
                    .ok_or(ActionError::NoSession(*flow))?;
                handle.reset(now);
                self.flows[*flow].reset_by = Some(*responder);
                self.coverage.resets += 1;
            }
            Action::Finish { flow, responder } => {
                let (node, sid) = self.session_end(*flow, *responder)?;
                let f = &mut self.flows[*flow];
                let half = if *responder { &mut f.down } else { &mut f.up };
                if half.finished {
                    return Err(ActionError::AlreadyFinished(*flow));
                }
                let mut handle = self.nodes[node]
                    .session(sid)
                    .ok_or(ActionError::NoSession(*flow))?;
                handle.finish();
                half.total = half.written;
                half.finished = true;
                self.coverage.half_closes += 1;
            }
            Action::Open(spec) => {
                let n = self.nodes.len();
                for x in [spec.opener, spec.acceptor] {
                    if x >= n {
                        return Err(ActionError::NoSuchNode(x));
                    }
                }
                self.open_flow(spec)?;
                self.coverage.sessions_opened += 1;
            }
        }
        Ok(())
    }

    /// The node and live session of one end of a flow.
    fn session_end(
        &self,
        flow: usize,
        acceptor: bool,
    ) -> Result<(usize, astral_core::SessionId), ActionError> {
        let f = self.flows.get(flow).ok_or(ActionError::NoSuchFlow(flow))?;
        let (node, sid) = if acceptor {
            (f.spec.acceptor, f.at_acceptor)
        } else {
            (f.spec.opener, f.at_opener)
        };
        let sid = sid.ok_or(ActionError::NoSession(flow))?;
        if !self.by_session.contains_key(&(node, sid)) || f.reset_by.is_some() {
            return Err(ActionError::NoSession(flow));
        }
        Ok((node, sid))
    }

    fn change_link(&mut self, li: usize, change: &LinkChange) -> Result<(), ActionError> {
        self.live_link(li)?;
        let now = self.now;
        self.links[li].apply(now, change);
        match change {
            LinkChange::Partition => self.coverage.partitions += 1,
            LinkChange::Silence { .. } => self.coverage.silences += 1,
            LinkChange::Heal => self.coverage.heals += 1,
            _ => self.coverage.link_changes += 1,
        }
        Ok(())
    }

    fn migrate(&mut self, flow: usize, acceptor: bool, li: usize) -> Result<(), ActionError> {
        let now = self.now;
        let (node, sid) = {
            let f = self.flows.get(flow).ok_or(ActionError::NoSuchFlow(flow))?;
            let (node, sid) = if acceptor {
                (f.spec.acceptor, f.at_acceptor)
            } else {
                (f.spec.opener, f.at_opener)
            };
            (node, sid.ok_or(ActionError::NoSession(flow))?)
        };
        let l = self.links.get(li).ok_or(ActionError::NoSuchLink(li))?;
        // Stream handles are per node: another pair's handle would name
        // an unrelated stream here.
        let target = l
            .stream_at(node)
            .ok_or(ActionError::NotAnEnd { link: li, node })?;
        let target_rtt = l.max_rtt();
        let before = self.nodes[node].session_info(sid);
        if self.nodes[node]
            .stream_info(target)
            .is_some_and(|s| s.draining)
        {
            // Attempts: the core refuses them (issue 10, defect 1).
            self.coverage.migrations_onto_draining += 1;
        }
        self.nodes[node].migrate(now, sid, target)?;
        let c = &mut self.coverage;
        c.migrations_started += 1;
        let peer_end = {
            let f = &self.flows[flow];
            if acceptor {
                (f.spec.opener, f.at_opener)
            } else {
                (f.spec.acceptor, f.at_acceptor)
            }
        };
        let peer_info = peer_end
            .1
            .and_then(|s| self.nodes[peer_end.0].session_info(s));
        let in_flight = before.as_ref().map_or(0, |i| i.stats.bytes_in_flight)
            + peer_info.as_ref().map_or(0, |i| i.stats.bytes_in_flight);
        if in_flight > 0 {
            self.coverage.migrations_with_bytes_in_flight += 1;
        }
        // Concurrent: the other end started one less than a round trip ago
        // (of the slower of the current and the target link), so its marker
        // may still be in flight.
        let current_rtt = before
            .and_then(|i| self.link_of(node, i.send_stream))
            .map(|l| self.links[l].max_rtt())
            .unwrap_or_default();
        let rtt = target_rtt.max(current_rtt);
        if let Some(t) = self.last_migrate.get(&(flow, !acceptor)) {
            if now.saturating_duration_since(*t) < rtt {
                self.coverage.concurrent_migrations += 1;
            }
        }
        self.last_migrate.insert((flow, acceptor), now);
        Ok(())
    }

    /// Counts what a kill of a link between `a` and `b` interrupts.
    fn count_kill(&mut self, a: usize, b: usize) {
        let (ida, idb) = (self.id(a), self.id(b));
        let sessions_in = |node: usize, peer: NodeId, state: SessionState| {
            self.nodes[node]
                .sessions()
                .any(|s| s.peer == peer && s.state == state)
        };
        let migrating = sessions_in(a, idb, SessionState::Migrating)
            || sessions_in(b, ida, SessionState::Migrating);
        let recovering = sessions_in(a, idb, SessionState::Recovering)
            || sessions_in(b, ida, SessionState::Recovering);
        let draining = self.nodes[a]
            .streams()
            .any(|s| s.peer == Some(idb) && s.draining)
            || self.nodes[b]
                .streams()
                .any(|s| s.peer == Some(ida) && s.draining);
        let c = &mut self.coverage;
        c.kills_during_migration += u64::from(migrating);
        c.kills_during_recovery += u64::from(recovering);
        c.kills_during_drain += u64::from(draining);
    }
}
