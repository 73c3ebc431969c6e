//! The oracle: exactness of every byte, how sessions end, and whether the
//! nodes settled once the script is over.

use std::time::Duration;

use astral_core::{CloseReason, SessionState};

use crate::workload::Flow;
use crate::Sim;

fn report(mut problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        problems.truncate(20);
        Err(format!("{n} problems:\n{}", problems.join("\n")))
    }
}

/// How a reset flow may end: the resetting end `ResetLocally`; the other
/// `ResetByPeer`, or `Graceful` if it had completed both directions before
/// the reset reached it.
/// An opener that resets before its query reached the acceptor leaves the
/// acceptor nothing to close.
fn reset_ends_ok(f: &Flow, by_acceptor: bool) -> bool {
    let (resetter, other) = if by_acceptor {
        (&f.closed_acceptor, &f.closed_opener)
    } else {
        (&f.closed_opener, &f.closed_acceptor)
    };
    let never_reached = !by_acceptor && f.at_acceptor.is_none();
    *resetter == Some(CloseReason::ResetLocally)
        && (never_reached
            || matches!(
                other,
                Some(CloseReason::ResetByPeer) | Some(CloseReason::Graceful)
            ))
}

impl Sim {
    /// Checks the oracle: every flow delivered every byte exactly once and in
    /// order both ways and closed gracefully (or was rejected as planned, or
    /// ended as a reset it was given: what arrived before is still exact).
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for (i, f) in self.flows.iter().enumerate() {
            problems.extend(f.errors.iter().cloned());
            if let Some(code) = f.spec.reject {
                if f.closed_opener != Some(CloseReason::Rejected(code)) {
                    problems.push(format!(
                        "flow {i}: expected rejection {code}, got {:?}",
                        f.closed_opener
                    ));
                }
                continue;
            }
            if let Some(by_acceptor) = f.reset_by {
                if !reset_ends_ok(f, by_acceptor) {
                    problems.push(format!(
                        "flow {i}: reset by the {}, closed opener {:?} acceptor {:?}",
                        if by_acceptor { "acceptor" } else { "opener" },
                        f.closed_opener,
                        f.closed_acceptor
                    ));
                }
                continue;
            }
            for (name, h) in [("up", &f.up), ("down", &f.down)] {
                if h.read != h.total || !h.eof {
                    problems.push(format!(
                        "flow {i} {name}: read {} of {} (written {}), eof {}",
                        h.read, h.total, h.written, h.eof
                    ));
                }
            }
            if f.closed_opener != Some(CloseReason::Graceful)
                || f.closed_acceptor != Some(CloseReason::Graceful)
            {
                problems.push(format!(
                    "flow {i}: closed opener {:?} acceptor {:?}",
                    f.closed_opener, f.closed_acceptor
                ));
            }
        }
        report(problems)
    }

    /// Weaker end state, for runs whose paths may be lost for good: every
    /// session of the workload ended with some reason at both ends (none is
    /// left open or recovering; an acceptor the query never reached has
    /// nothing to end), and what was delivered is exact.
    pub fn check_closed_with_reason(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for (i, f) in self.flows.iter().enumerate() {
            problems.extend(f.errors.iter().cloned());
            if !f.closed() {
                problems.push(format!(
                    "flow {i}: not closed: opener {:?} acceptor {:?}",
                    f.closed_opener, f.closed_acceptor
                ));
            }
        }
        report(problems)
    }

    /// The settled state (design §7: "both directions end on one stream
    /// when migrations stop"), checked now:
    ///
    /// * every session at every node is `Open` (not routing, pending,
    ///   migrating or recovering), and its peer has it open too (a
    ///   workload session whose peer closed it less than two round trips
    ///   ago is only waiting for its last credit, and passes);
    /// * both ends send on the same link, and that link is alive;
    /// * no stream at any node is still draining.
    pub fn check_converged(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let last_credit = 2 * self.max_rtt() + Duration::from_millis(100);
        for (n, node) in self.nodes.iter().enumerate() {
            for st in node.streams().filter(|s| s.draining) {
                problems.push(format!(
                    "node {n}: {} (link {:?}) still draining",
                    st.id,
                    self.link_of(n, st.id)
                ));
            }
            for s in node.sessions() {
                let what = format!("node {n} {:?} (wire {:#x})", s.id, s.wire_id);
                if s.state != SessionState::Open {
                    problems.push(format!("{what}: {:?}", s.state));
                    continue;
                }
                let link = self.link_of(n, s.send_stream);
                if !link.is_some_and(|l| self.links[l].alive) {
                    problems.push(format!(
                        "{what}: sends on {:?} (link {link:?}), not a live link",
                        s.send_stream
                    ));
                    continue;
                }
                let Some(m) = self.node_of(s.peer) else {
                    problems.push(format!("{what}: peer is not a simulated node"));
                    continue;
                };
                let me = node.local_id();
                let Some(p) = self.nodes[m]
                    .sessions()
                    .find(|p| p.wire_id == s.wire_id && p.peer == me)
                else {
                    let closing = self
                        .by_session
                        .get(&(n, s.id))
                        .and_then(|(i, _)| self.flows[*i].first_closed_at)
                        .is_some_and(|t| self.now.saturating_duration_since(t) <= last_credit);
                    if !closing {
                        problems.push(format!("{what}: open here, gone at node {m}"));
                    }
                    continue;
                };
                let peer_link = self.link_of(m, p.send_stream);
                if peer_link != link {
                    problems.push(format!(
                        "{what}: sends on link {link:?}, node {m} on link {peer_link:?}"
                    ));
                }
            }
        }
        report(problems)
    }

    /// The strong oracle for a scripted run whose schedule leaves a path:
    /// runs to `settle` after the last scheduled action and checks
    /// [`Sim::check_converged`] there;
    /// then runs until the workload is done (at most `limit` more) and
    /// checks [`Sim::check`]. A run that does not finish fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// use astral_sim::{Action, FlowSpec, LinkConfig, Sim};
    /// let mut sim = Sim::new(3, 2, astral_core::Config::default());
    /// sim.link(0, 1, LinkConfig::wifi());
    /// sim.link(0, 1, LinkConfig::cellular());
    /// sim.open_flows(&[FlowSpec::new(0, 1, 3_000_000, 100_000)]);
    /// // Too early: the cellular link is still in its handshake.
    /// sim.at(Sim::t(Duration::from_millis(50)), Action::Migrate { flow: 0, responder: true, link: 1 });
    /// sim.at(Sim::t(Duration::from_millis(400)), Action::Migrate { flow: 0, responder: true, link: 1 });
    /// sim.settle_and_check(Duration::from_secs(2), Duration::from_secs(60)).unwrap();
    /// assert_eq!(sim.outcome_counts("migrate"), (1, 1));
    /// assert!(matches!(
    ///     sim.outcomes[0].outcome,
    ///     Err(astral_sim::ActionError::Migrate(astral_core::MigrateError::TargetUnknown))
    /// ));
    /// ```
    pub fn settle_and_check(&mut self, settle: Duration, limit: Duration) -> Result<(), String> {
        let at = self.last_action_at.max(self.now) + settle;
        self.run_until(at);
        self.check_converged()
            .map_err(|e| format!("not converged {settle:?} after the last action: {e}"))?;
        if !self.run_until_done(limit) {
            return Err(format!(
                "did not finish within {limit:?}: {}",
                self.check().err().unwrap_or_default()
            ));
        }
        self.check()
    }

    /// Everything a failing test wants to print: outcomes of the actions,
    /// streams and sessions of every node, the coverage.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for r in &self.outcomes {
            out.push_str(&format!("{:?} {:?} -> {:?}\n", r.at, r.action, r.outcome));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for st in node.streams() {
                out.push_str(&format!(
                    "node{i} {} link {:?} {:?} draining {} sessions {}\n",
                    st.id,
                    self.link_of(i, st.id),
                    st.state,
                    st.draining,
                    st.sessions
                ));
            }
            for s in node.sessions() {
                out.push_str(&format!(
                    "node{i} {:?} {:?} send {:?} (link {:?}) recv {:?} stats {:?}\n",
                    s.id,
                    s.state,
                    s.send_stream,
                    self.link_of(i, s.send_stream),
                    s.recv_stream,
                    s.stats
                ));
            }
        }
        for (i, f) in self.flows.iter().enumerate() {
            out.push_str(&format!(
                "flow {i}: up {}/{}/{} down {}/{}/{} closed {:?}/{:?} reset {:?}\n",
                f.up.read,
                f.up.written,
                f.up.total,
                f.down.read,
                f.down.written,
                f.down.total,
                f.closed_opener,
                f.closed_acceptor,
                f.reset_by
            ));
        }
        out.push_str(&self.coverage.to_string());
        out
    }
}
