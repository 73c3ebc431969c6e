//! The simulator: nodes, links, virtual time and the event loop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use astral_core::{
    CloseReason, Config, ConnectError, Event, Identity, Node, NodeId, OpenError, SessionId,
    StreamCloseReason, StreamId, Timestamp,
};
use bytes::BytesMut;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::action::{Action, ActionRecord};
use crate::coverage::Coverage;
use crate::link::Link;
use crate::netem::{Delivery, LinkConfig};
use crate::trace::TraceHasher;
use crate::workload::{Flow, FlowSpec, HalfFlow};

/// The simulator (see the crate documentation).
pub struct Sim {
    /// Virtual now.
    pub now: Timestamp,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Links, by index (killed ones stay, dead).
    pub links: Vec<Link>,
    /// The workload.
    pub flows: Vec<Flow>,
    /// Every event every node reported, in order (if [`Sim::keep_log`]).
    pub log: Vec<(Timestamp, usize, Event)>,
    /// Every action applied, with its outcome, in order.
    pub outcomes: Vec<ActionRecord>,
    /// What this run exercised.
    pub coverage: Coverage,
    /// Record every event in `log` (off for very large runs).
    pub keep_log: bool,
    /// Steps taken.
    pub steps: u64,
    /// Leave queries that are not the workload's to the test (default:
    /// reject them with code 2).
    pub manual_queries: bool,
    pub(crate) seed: u64,
    pub(crate) actions: BTreeMap<(Timestamp, u64), Action>,
    action_seq: u64,
    /// Time of the latest scheduled action (whether applied yet or not).
    pub(crate) last_action_at: Timestamp,
    pub(crate) rng: ChaCha20Rng,
    trace: TraceHasher,
    pub(crate) by_session: BTreeMap<(usize, SessionId), (usize, bool)>,
    buf: BytesMut,
    pub(crate) chunk: Vec<u8>,
    /// Last successful `migrate()` per (flow, from the acceptor).
    pub(crate) last_migrate: BTreeMap<(usize, bool), Timestamp>,
    /// Links whose drain completed (counted once).
    drained: BTreeSet<usize>,
    /// Each node's key and the configuration, for [`Sim::restart`].
    keys: Vec<[u8; 32]>,
    config: Config,
}

/// Reject code the workload gives a second Query for a flow it already
/// accepted.
pub const DUPLICATE_QUERY: u8 = 3;

/// Most bytes pulled from a node into one chunk of a link. A link
/// delivers a chunk whole, after its last byte was serialised, and frees
/// its room only then: a whole 256 KiB buffer pulled as one chunk crosses
/// a 2 Mbit/s link as one 1 s unit, the link idles for its latency before
/// the next one, and a pipeline once emptied (a drain probe) stayed in
/// such units for good (issue 17: 3 % of the link). A TCP sender hands
/// the network segments; 16 KiB is the forwarder's read size (`harness`).
pub const MAX_CHUNK: usize = 16 * 1024;

/// Seed of link `index`'s jitter, derived without drawing from the
/// workload's generator (so adding links leaves write and read sizes alone).
fn link_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Sim {
    /// `n` nodes with identities and seeds derived from `seed`.
    ///
    /// # Panics
    /// If the core refuses `config` (see [`Sim::try_new`]).
    pub fn new(seed: u64, n: usize, config: Config) -> Sim {
        match Sim::try_new(seed, n, config) {
            Ok(sim) => sim,
            Err(e) => panic!("astral-sim: the core refused the configuration: {e}"),
        }
    }

    /// `n` nodes with identities and seeds derived from `seed`, or the
    /// core's error if it refuses `config`. The simulator does not check
    /// the configuration itself: whatever the core accepts, it runs.
    pub fn try_new(seed: u64, n: usize, config: Config) -> Result<Sim, String> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut nodes = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            keys.push(key);
            let node_seed = rng.next_u64();
            nodes.push(make_node(
                Identity::from_seed(key),
                config.clone(),
                node_seed,
            )?);
        }
        Ok(Sim {
            now: Timestamp::ZERO,
            nodes,
            links: Vec::new(),
            flows: Vec::new(),
            log: Vec::new(),
            outcomes: Vec::new(),
            coverage: Coverage {
                runs: 1,
                ..Coverage::default()
            },
            keep_log: true,
            steps: 0,
            manual_queries: false,
            seed,
            actions: BTreeMap::new(),
            action_seq: 0,
            last_action_at: Timestamp::ZERO,
            rng,
            trace: TraceHasher::default(),
            by_session: BTreeMap::new(),
            buf: BytesMut::with_capacity(1 << 20),
            chunk: Vec::new(),
            last_migrate: BTreeMap::new(),
            drained: BTreeSet::new(),
            keys,
            config,
        })
    }

    /// Node `i` restarts: a new process with the same key (a new
    /// incarnation, no state; `seed` drives it) replaces it. The old
    /// process's transports go silent, as after a crashed host: nothing is
    /// delivered and nothing closed, so its peers learn of the restart only
    /// from the new process's handshake. Flows of the old process are not
    /// followed any further.
    pub fn restart(&mut self, i: usize, seed: u64) -> Result<(), String> {
        let key = *self.keys.get(i).ok_or("no such node")?;
        let now = self.now;
        for l in self
            .links
            .iter_mut()
            .filter(|l| l.alive && (l.a == i || l.b == i))
        {
            l.ab.apply(now, &crate::LinkChange::Partition);
            l.ba.apply(now, &crate::LinkChange::Partition);
            l.orphaned = Some(i);
        }
        self.by_session.retain(|(n, _), _| *n != i);
        self.nodes[i] = make_node(Identity::from_seed(key), self.config.clone(), seed)?;
        Ok(())
    }

    /// Like [`Sim::restart`], and the new process knows that the old one
    /// is gone (its host-local record, as the `astral` tool keeps next to
    /// the key): it states in its handshakes that it supersedes the old
    /// incarnation.
    pub fn restart_superseding(&mut self, i: usize, seed: u64) -> Result<(), String> {
        let old = self.nodes.get(i).ok_or("no such node")?.incarnation();
        self.restart(i, seed)?;
        self.nodes[i].set_supersedes(Some(old));
        Ok(())
    }

    /// Identity of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].local_id()
    }

    /// Index of the node with identity `id`.
    pub fn node_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.local_id() == id)
    }

    /// The link whose end at `node` is `stream`.
    pub fn link_of(&self, node: usize, stream: impl Into<Option<StreamId>>) -> Option<usize> {
        let stream = stream.into()?;
        self.links
            .iter()
            .position(|l| l.stream_at(node) == Some(stream))
    }

    /// Connects `a` (dialer) to `b` now; returns the link index.
    ///
    /// # Panics
    /// If either node refuses the stream (a limit); see [`Sim::try_link`].
    pub fn link(&mut self, a: usize, b: usize, config: LinkConfig) -> usize {
        match self.try_link(a, b, config) {
            Ok(i) => i,
            Err(e) => panic!("astral-sim: link {a} -> {b} refused: {e}"),
        }
    }

    /// Connects `a` (dialer) to `b` now; returns the link index, or the
    /// node's error (then nothing is left behind).
    pub fn try_link(
        &mut self,
        a: usize,
        b: usize,
        config: LinkConfig,
    ) -> Result<usize, ConnectError> {
        let peer = self.id(b);
        let now = self.now;
        let sa = self.nodes[a].connect(now, peer)?;
        let sb = match self.nodes[b].accept(now) {
            Ok(sb) => sb,
            Err(e) => {
                self.nodes[a].close_stream(now, sa);
                self.collect_events();
                return Err(e);
            }
        };
        let index = self.links.len();
        let seed = link_seed(self.seed, index);
        self.links.push(Link::new(a, b, sa, sb, config, seed, now));
        Ok(index)
    }

    /// Schedules `action` at `at`.
    pub fn at(&mut self, at: Timestamp, action: Action) {
        self.action_seq += 1;
        self.last_action_at = self.last_action_at.max(at);
        self.actions.insert((at, self.action_seq), action);
    }

    /// Time `d` after the start.
    pub fn t(d: Duration) -> Timestamp {
        Timestamp::ZERO + d
    }

    /// Opens the workload's sessions now.
    ///
    /// # Panics
    /// If a node refuses to open one (see [`Sim::open_flow`]).
    pub fn open_flows(&mut self, specs: &[FlowSpec]) {
        for spec in specs {
            if let Err(e) = self.open_flow(spec) {
                panic!("astral-sim: open_session refused: {e}");
            }
        }
    }

    /// Opens one session of the workload now; returns its flow index.
    pub fn open_flow(&mut self, spec: &FlowSpec) -> Result<usize, OpenError> {
        let idx = self.flows.len();
        let up = HalfFlow {
            key: self.rng.next_u64(),
            total: spec.up,
            ..Default::default()
        };
        let down = HalfFlow {
            key: self.rng.next_u64(),
            total: spec.down,
            ..Default::default()
        };
        let peer = self.id(spec.acceptor);
        let now = self.now;
        let id = self.nodes[spec.opener].open_session(now, peer, &format!("flow:{idx}"))?;
        self.by_session.insert((spec.opener, id), (idx, false));
        self.flows.push(Flow {
            spec: spec.clone(),
            opened_at: now,
            at_opener: Some(id),
            at_acceptor: None,
            up,
            down,
            closed_opener: None,
            closed_acceptor: None,
            first_closed_at: None,
            reset_by: None,
            errors: Vec::new(),
        });
        Ok(idx)
    }

    /// Fingerprint of everything delivered on every link, with times and
    /// link indices. The same seed, script and [`Config`] give the same
    /// value on every machine, provided the configuration pins the cipher
    /// (`offer_aes_gcm`; its default depends on the CPU).
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    /// Runs until the workload is complete and nothing is scheduled, or
    /// `limit` of virtual time passed. Returns whether everything settled.
    pub fn run_until_done(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        loop {
            if self.flows_done() && self.actions.is_empty() && self.links_quiet() {
                return true;
            }
            if !self.step(end) {
                return self.flows_done();
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `at` (nothing if it is past).
    pub fn run_until(&mut self, at: Timestamp) {
        if at > self.now {
            self.run_for(at.saturating_duration_since(self.now));
        }
    }

    fn links_quiet(&self) -> bool {
        self.links
            .iter()
            .all(|l| !l.alive || (l.ab.is_empty() && l.ba.is_empty()))
    }

    /// Whether every flow ended at both ends (see [`Flow::closed`]) or went
    /// wrong.
    pub fn flows_done(&self) -> bool {
        self.flows
            .iter()
            .all(|f| f.closed() || !f.errors.is_empty())
    }

    /// One step: move output to links, then jump to the next thing and do it.
    /// Returns false when nothing is left to do before `end`.
    pub fn step(&mut self, end: Timestamp) -> bool {
        self.steps += 1;
        self.pump_app();
        self.pull_output();
        // Pulling output can end a session (its last credit went out):
        // report that now, even if this step goes no further.
        self.collect_events();
        let Some(next) = self.next_time() else {
            return false;
        };
        if next > end {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        while let Some((&(t, seq), _)) = self.actions.iter().next() {
            if t > now {
                break;
            }
            if let Some(action) = self.actions.remove(&(t, seq)) {
                self.apply(action);
            }
        }
        for l in self.links.iter_mut().filter(|l| l.alive) {
            l.ab.handle_timeout(now);
            l.ba.handle_timeout(now);
        }
        self.deliver_due();
        self.fire_node_timers();
        self.collect_events();
        true
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        for li in 0..self.links.len() {
            for to_a in [false, true] {
                loop {
                    let link = &mut self.links[li];
                    if !link.alive {
                        break;
                    }
                    let path = if to_a { &mut link.ba } else { &mut link.ab };
                    let Some(d) = path.poll_output(now) else {
                        break;
                    };
                    if !self.deliver(li, to_a, d) {
                        break;
                    }
                }
            }
        }
    }

    /// Hands one delivery to the node at the receiving end; false once the
    /// link is closed.
    fn deliver(&mut self, li: usize, to_a: bool, d: Delivery) -> bool {
        let now = self.now;
        let link = &mut self.links[li];
        let (node, stream) = if to_a {
            (link.a, link.sa)
        } else {
            (link.b, link.sb)
        };
        if link.orphaned == Some(node) {
            // The process this end led to is gone.
            return true;
        }
        match d {
            Delivery::Data(data) => {
                self.trace.delivery(now, li, to_a, &data);
                self.nodes[node].handle_input(now, stream, &data);
                true
            }
            Delivery::Closed => {
                self.trace.delivery(now, li, to_a, &[]);
                link.alive = false;
                link.ab.clear();
                link.ba.clear();
                self.nodes[node].handle_transport_closed(now, stream, "peer closed the transport");
                false
            }
        }
    }

    pub(crate) fn fire_node_timers(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
    }

    fn next_time(&self) -> Option<Timestamp> {
        let links = self
            .links
            .iter()
            .filter(|l| l.alive)
            .filter_map(Link::poll_timeout);
        let nodes = self
            .nodes
            .iter()
            .filter_map(Node::poll_timeout)
            .map(|t| t.max(self.now));
        let action = self.actions.keys().next().map(|(t, _)| (*t).max(self.now));
        let paced = self.next_paced_write().map(|t| t.max(self.now));
        links.chain(nodes).chain(action).chain(paced).min()
    }

    pub(crate) fn pull_output(&mut self) {
        let now = self.now;
        for link in self.links.iter_mut().filter(|l| l.alive) {
            for (node, stream) in [(link.a, link.sa), (link.b, link.sb)] {
                if link.orphaned == Some(node) {
                    continue;
                }
                let Some(path) = link.outbound(node) else {
                    continue;
                };
                loop {
                    let room = path.room();
                    if room == 0 {
                        break;
                    }
                    self.buf.clear();
                    let n = self.nodes[node].poll_transmit(
                        now,
                        stream,
                        &mut self.buf,
                        room.min(MAX_CHUNK),
                    );
                    if n == 0 {
                        break;
                    }
                    path.handle_input(now, self.buf.split().freeze());
                }
            }
        }
    }

    pub(crate) fn collect_events(&mut self) {
        for n in 0..self.nodes.len() {
            while let Some(ev) = self.nodes[n].poll_event() {
                self.on_event(n, &ev);
                if self.keep_log {
                    self.log.push((self.now, n, ev));
                }
            }
        }
    }

    fn on_event(&mut self, n: usize, ev: &Event) {
        let now = self.now;
        match ev {
            Event::Query { session, query, .. } => {
                let idx = query
                    .strip_prefix("flow:")
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|i| *i < self.flows.len());
                match idx {
                    Some(i) if self.flows[i].at_acceptor.is_some() => {
                        // The engine asks again about a session the
                        // application already took (its earlier session
                        // was reset or closed): a well-behaved application
                        // refuses, and the oracle reports it.
                        self.coverage.duplicate_queries += 1;
                        self.flows[i].errors.push(format!(
                            "flow {i}: node {n} was asked again for a session it already had \
                             (a new Query after its session ended)"
                        ));
                        let _ = self.nodes[n].reject_query(now, *session, DUPLICATE_QUERY);
                    }
                    Some(i) => {
                        let f = &mut self.flows[i];
                        if let Some(code) = f.spec.reject {
                            let _ = self.nodes[n].reject_query(now, *session, code);
                            f.closed_acceptor = Some(CloseReason::RejectedLocally);
                        } else {
                            f.at_acceptor = Some(*session);
                            self.by_session.insert((n, *session), (i, true));
                            let _ = self.nodes[n].accept_query(now, *session);
                        }
                    }
                    None if self.manual_queries => {}
                    None => {
                        let _ = self.nodes[n].reject_query(now, *session, 2);
                    }
                }
            }
            Event::StreamDown { stream, reason, .. } => {
                // The node closed this stream: like a driver, close the
                // transport. The other end sees the close after the bytes
                // already in flight (an orderly TCP FIN).
                if let Some(li) = self.link_of(n, *stream) {
                    let l = &mut self.links[li];
                    if l.alive {
                        if let Some(path) = l.outbound(n) {
                            path.handle_close(now);
                        }
                    }
                    if *reason == StreamCloseReason::Drained && self.drained.insert(li) {
                        self.coverage.drains_completed += 1;
                    }
                }
            }
            Event::Readable { session } => {
                if let Some(&(i, acceptor)) = self.by_session.get(&(n, *session)) {
                    self.read_flow(i, acceptor);
                }
            }
            Event::Writable { session } => {
                if let Some(&(i, acceptor)) = self.by_session.get(&(n, *session)) {
                    let f = &mut self.flows[i];
                    let half = if acceptor { &mut f.down } else { &mut f.up };
                    half.blocked = false;
                }
            }
            Event::SessionClosed { session, reason } => {
                if *reason == CloseReason::Graceful {
                    self.coverage.closed_graceful += 1;
                } else {
                    self.coverage.closed_other += 1;
                }
                if let Some((i, acceptor)) = self.by_session.remove(&(n, *session)) {
                    let f = &mut self.flows[i];
                    f.first_closed_at.get_or_insert(now);
                    if acceptor {
                        f.closed_acceptor = Some(reason.clone());
                    } else {
                        f.closed_opener = Some(reason.clone());
                    }
                }
            }
            Event::Migrated { .. } => self.coverage.migrations_completed += 1,
            Event::Recovering { .. } => self.coverage.recoveries_started += 1,
            Event::Recovered { resent_bytes, .. } => {
                self.coverage.recoveries_completed += 1;
                if *resent_bytes > 0 {
                    self.coverage.resumes_with_retransmit += 1;
                }
            }
            _ => {}
        }
    }

    /// Delivers the oldest chunk queued on `link` in one direction (`to_a`:
    /// towards the dialer) right now, ignoring its scheduled time: lets a
    /// fuzzer or a test choose any interleaving of streams. Returns false if
    /// nothing was queued (or the direction is silent).
    pub fn deliver_one(&mut self, link: usize, to_a: bool) -> bool {
        self.pump_app();
        self.pull_output();
        let Some(l) = self.links.get_mut(link) else {
            return false;
        };
        if !l.alive {
            return false;
        }
        let path = if to_a { &mut l.ba } else { &mut l.ab };
        let Some(d) = path.poll_output_early() else {
            return false;
        };
        self.deliver(link, to_a, d);
        self.collect_events();
        true
    }

    /// Advances virtual time by `d`, running node timers and scheduled link
    /// changes but delivering nothing.
    pub fn advance(&mut self, d: Duration) {
        self.pump_app();
        self.pull_output();
        self.now += d;
        let now = self.now;
        for l in self.links.iter_mut().filter(|l| l.alive) {
            l.ab.handle_timeout(now);
            l.ba.handle_timeout(now);
        }
        self.fire_node_timers();
        self.collect_events();
    }

    /// Applies a scripted action now (its outcome is recorded in
    /// [`Sim::outcomes`]).
    pub fn act(&mut self, action: Action) {
        self.apply(action);
        self.collect_events();
    }

    /// Events of one kind, for assertions.
    pub fn events_matching(&self, f: impl Fn(&Event) -> bool) -> Vec<(Timestamp, usize, Event)> {
        self.log.iter().filter(|(_, _, e)| f(e)).cloned().collect()
    }

    /// The largest round trip any live link can show now.
    pub fn max_rtt(&self) -> Duration {
        self.links
            .iter()
            .filter(|l| l.alive)
            .map(Link::max_rtt)
            .max()
            .unwrap_or_default()
    }
}

/// The one place the simulator builds a node: the core's constructor. When
/// the core validates its configuration at construction, its error is
/// passed on here (the regression test for issue 10 defect 6 relies on it).
fn make_node(identity: Identity, config: Config, seed: u64) -> Result<Node, String> {
    Node::new(identity, config, seed).map_err(|e| e.to_string())
}
