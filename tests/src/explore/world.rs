//! A small, fully controllable world around two real [`Node`]s: the system
//! under test of the bounded explorer and of the schedule fuzzers.
//!
//! Unlike [`crate::Sim`], nothing here happens by itself. Every record a node
//! hands to its transport waits in a per-link, per-direction FIFO until an
//! [`Action::Deliver`] moves it (so any interleaving of records across
//! streams is one sequence of actions), and time moves only when an action
//! says so. The application is deterministic and eager: after every action
//! each session writes what its window allows, reads (and checks) what
//! arrived and answers queries. So the state after a sequence of actions is a
//! function of that sequence, which is what lets the explorer replay a path
//! instead of cloning a `Node`.
//!
//! Streams present at the start are inserted already established with the
//! no-security cipher of the core's `fuzzing` feature (a real handshake costs
//! about 0.3 ms, far more than the rest of a replay); streams connected later
//! ([`Action::Connect`]) run the real Noise handshake, so a new stream is
//! adopted by the engine exactly as in production.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use astral_core::frame::{DecodeLimits, Frame, FrameReader};
use astral_core::stream::StreamState;
use astral_core::{
    CloseReason, Config, Event, Identity, Node, NodeId, SessionId, SessionInfo, SessionState,
    StreamCloseReason, StreamId, Timestamp, WriteError,
};
use bytes::{Bytes, BytesMut};

use crate::pattern_byte;

/// Node names in traces.
const NAMES: [&str; 2] = ["A", "B"];

/// What one session of the workload does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowPlan {
    /// The node that opens the session (0 = A, 1 = B).
    pub opener: usize,
    /// Bytes the opener sends.
    pub up: u64,
    /// Bytes the acceptor sends.
    pub down: u64,
    /// Size of each application write.
    pub write: usize,
    /// Hold both Fins until [`World::release_fins`] (the settle phase does
    /// it after checking that the bindings converged): the session stays
    /// open through every action, so its final stream binding can be
    /// checked. Without it, each side finishes as soon as it wrote its bytes
    /// and the session closes in the middle of the schedule.
    pub hold_fin: bool,
}

/// The world's fixed shape: engine configuration, initial streams, workload.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// Engine configuration of both nodes.
    pub core: Config,
    /// Streams A–B present at the start (established, confirmed).
    pub streams: usize,
    /// The sessions.
    pub flows: Vec<FlowPlan>,
    /// Most links (initial plus connected) the world allows.
    pub max_links: usize,
}

impl WorldConfig {
    /// A configuration for `streams` initial streams and `flows`, with a
    /// small window (`window` bytes per session and direction) and timers
    /// far apart, so that nothing happens unless an action asks for it.
    pub fn small(streams: usize, window: u32, flows: Vec<FlowPlan>) -> WorldConfig {
        WorldConfig {
            core: Config {
                recv_window: window,
                send_buffer: window,
                quantum: window as usize,
                // Timers in the defaults' order (keep-alive < dead <
                // recovery = routing), far apart and long, so that an advance
                // of time reaches one kind at a time. A half-open stream
                // must die of silence before the sessions that sent frames
                // into it give up: with `dead_timeout` ≥ `recovery_timeout`
                // (which `Config::validate` allows) those frames are lost
                // for good (docs/MIGRATION.md, Evidence).
                keepalive_interval: Duration::from_secs(600),
                dead_timeout: Duration::from_secs(1200),
                recovery_timeout: Duration::from_secs(1800),
                routing_timeout: Duration::from_secs(1800),
                policy_interval: Duration::from_secs(3600),
                // Same bytes on every machine (the default follows the CPU).
                offer_aes_gcm: false,
                // Migrations happen only when an action asks for one.
                auto_migrate: false,
                ..Config::default()
            },
            streams,
            flows,
            max_links: 6,
        }
    }
}

/// One thing that happens to the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The oldest record in flight on `link` towards node `to` arrives.
    Deliver {
        /// Link index.
        link: usize,
        /// Receiving node.
        to: usize,
    },
    /// Time jumps to the earliest timer of either node, which fires.
    AdvanceToTimer,
    /// Time passes (timers that fall due fire).
    Wait {
        /// Milliseconds.
        millis: u32,
    },
    /// The transport dies at both ends; what was in flight is lost.
    Kill {
        /// Link index.
        link: usize,
    },
    /// The transport dies at `node`'s end only; the other end is not told
    /// and what it sends is lost (it notices by the ping timeout).
    KillOneSide {
        /// Link index.
        link: usize,
        /// The node whose end dies.
        node: usize,
    },
    /// `dialer` connects a new stream (real handshake, run to completion).
    Connect {
        /// Dialing node.
        dialer: usize,
    },
    /// `node` migrates its end of `flow`'s session to its end of `link`.
    Migrate {
        /// Flow index.
        flow: usize,
        /// Node that starts the migration.
        node: usize,
        /// Target link.
        link: usize,
    },
    /// `node` drains its end of `link`.
    Drain {
        /// Link index.
        link: usize,
        /// Node that starts the drain.
        node: usize,
    },
    /// `node`'s application resets `flow`'s session.
    Reset {
        /// Flow index.
        flow: usize,
        /// Node that resets.
        node: usize,
    },
    /// `node`'s application finishes its direction of `flow` now (fewer
    /// bytes than planned, if it had not written them all).
    Finish {
        /// Flow index.
        flow: usize,
        /// Node that finishes.
        node: usize,
    },
    /// `node`'s application closes `flow`'s session gracefully: finishes
    /// writing and stops reading.
    Close {
        /// Flow index.
        flow: usize,
        /// Node that closes.
        node: usize,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Deliver { link, to } => {
                write!(f, "deliver L{link} {}→{}", NAMES[1 - to], NAMES[to])
            }
            Action::AdvanceToTimer => write!(f, "advance to the next timer"),
            Action::Wait { millis } => write!(f, "wait {millis} ms"),
            Action::Kill { link } => write!(f, "kill L{link}"),
            Action::KillOneSide { link, node } => {
                write!(f, "kill L{link} at {} only", NAMES[node])
            }
            Action::Connect { dialer } => write!(f, "{} connects a new stream", NAMES[dialer]),
            Action::Migrate { flow, node, link } => {
                write!(f, "{} migrates flow {flow} to L{link}", NAMES[node])
            }
            Action::Drain { link, node } => write!(f, "{} drains L{link}", NAMES[node]),
            Action::Reset { flow, node } => write!(f, "{} resets flow {flow}", NAMES[node]),
            Action::Finish { flow, node } => write!(f, "{} finishes flow {flow}", NAMES[node]),
            Action::Close { flow, node } => write!(f, "{} closes flow {flow}", NAMES[node]),
        }
    }
}

/// What an action did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Done,
    /// Nothing to do (no record in flight, no timer, link already dead...).
    Nothing,
    /// The engine or the world refused it (the error, as text).
    Refused(String),
}

/// Something in flight on a transport.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Packet {
    /// Bytes from one `poll_transmit` call: one record (or one handshake
    /// message).
    Record(Bytes),
    /// The sender closed its transport after the bytes before (TCP FIN).
    Close,
}

/// A transport between A and B.
#[derive(Clone, Debug)]
pub struct Link {
    /// The node that dialed.
    pub dialer: usize,
    /// Each node's stream, while that node's end of the transport is open.
    pub end: [Option<StreamId>; 2],
    /// Packets in flight towards each node.
    pub queue: [VecDeque<Packet>; 2],
    /// Whether the link runs the no-security cipher (its records can be
    /// decoded for traces).
    pub insecure: bool,
}

impl Link {
    /// Both ends open.
    pub fn is_up(&self) -> bool {
        self.end[0].is_some() && self.end[1].is_some()
    }
}

/// One direction of a flow: bytes written by one node, read by the other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Half {
    /// Bytes the writer will write (shrinks if the application finishes early).
    pub total: u64,
    /// Bytes written.
    pub written: u64,
    /// The writer called `finish` (or `close`).
    pub finished: bool,
    /// The writer was refused and waits for `Writable`.
    pub blocked: bool,
    /// Bytes read and checked by the reader.
    pub read: u64,
    /// The reader saw end-of-stream.
    pub eof: bool,
}

/// One session of the workload, both ends.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The plan.
    pub plan: FlowPlan,
    /// The session at each node (the acceptor's once its query arrived).
    pub session: [Option<SessionId>; 2],
    /// Direction written by each node.
    pub half: [Half; 2],
    /// How the session ended at each node.
    pub closed: [Option<CloseReason>; 2],
    /// Fins held back by [`FlowPlan::hold_fin`].
    pub fin_held: bool,
    /// Some node reset the session (a non-graceful end is then expected).
    pub reset: bool,
    /// Node that closed its read side (`close`).
    pub read_closed: [bool; 2],
    /// The session's id on the wire.
    pub wire: Option<u64>,
    /// A stream died while the opener waited for the Response (so the
    /// opener re-sent its Query).
    pub query_maybe_resent: bool,
}

impl Flow {
    fn key(&self, index: usize, writer: usize) -> u64 {
        0xA57A_0000 + (index as u64) * 2 + writer as u64
    }

    /// The node that accepts the session.
    pub fn acceptor(&self) -> usize {
        1 - self.plan.opener
    }

    /// Closed at both ends.
    pub fn is_closed(&self) -> bool {
        self.closed[0].is_some() && self.closed[1].is_some()
    }
}

/// Counters of what happened in a run, for coverage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `Migrated` events.
    pub migrated: u64,
    /// `Recovered` events.
    pub recovered: u64,
    /// Streams closed as `Drained` (completed drains).
    pub drained: u64,
    /// Streams that came up through a real handshake.
    pub connected: u64,
    /// Sessions closed gracefully (per end).
    pub graceful: u64,
    /// Sessions closed any other way (per end).
    pub other_close: u64,
    /// Bytes retransmitted by recoveries.
    pub resent_bytes: u64,
    /// Queries that arrived again as a new session after the acceptor had
    /// given up (held in flight past the timeouts).
    pub stale_queries: u64,
    /// Resume replies sent for a session already closed at the sender
    /// (rule 7; visible on no-security links only).
    pub final_counts_announced: u64,
    /// Resume replies sent by a session with both directions finished but
    /// not yet closed (rule 6; visible on no-security links only).
    pub reply_owed_while_finishing: u64,
}

/// The world: two nodes, links, the workload and the oracle's findings.
pub struct World {
    /// Virtual now.
    pub now: Timestamp,
    /// Node A (0) and node B (1).
    pub nodes: [Node; 2],
    /// Every link ever made, by index (dead ones stay).
    pub links: Vec<Link>,
    /// The workload.
    pub flows: Vec<Flow>,
    /// Exactly-once violations and other oracle findings, in order.
    pub violations: Vec<String>,
    /// Coverage counters.
    pub counters: Counters,
    /// Outage so far: the time in which the engines could not complete an
    /// exchange although they did everything right, added up (whether or
    /// not the periods touch: an upper bound). It is the sum of
    /// `disconnected` (no link up at both ends), `held` (records in flight),
    /// `blind` (a node sends sessions on a stream that is dead at the other
    /// end and that it has not yet found silent) and `late` (a node's timer
    /// was due but the world did not run it). Only an outage as long as a
    /// timeout lets a session end by a timeout (docs/MIGRATION.md, "What
    /// recovery_timeout promises").
    pub outage: Duration,
    /// Time that passed while records were in flight.
    pub held: Duration,
    /// Time with no link up at both ends (periods that ended).
    pub disconnected: Duration,
    /// Time that passed, with a link up at both ends and nothing in flight,
    /// while a node had sessions sending on a stream that is closed at the
    /// other end only (half-open) and that it did not suspect yet: their
    /// frames (a Resume, a Query, data) are lost, and the node cannot know
    /// before the stream's silence makes it suspect (two RTOs) or dead
    /// (`dead_timeout`).
    pub blind: Duration,
    /// Time that passed, with a link up at both ends, nothing in flight and
    /// no node blind, after a node's timer fell due and before the world
    /// ran it (a `Wait` over a timer: a driver that wakes up late). The
    /// engine's probes, retransmissions and deadlines wait meanwhile.
    pub late: Duration,
    /// Streams that died other than by a completed drain.
    pub deaths: u32,
    disconnected_since: Option<Timestamp>,
    ids: [NodeId; 2],
    config: WorldConfig,
    /// Record a human-readable trace of records and events.
    pub tracing: bool,
    /// The trace (when `tracing`).
    pub trace: Vec<String>,
    buf: BytesMut,
}

impl World {
    /// The world at time zero: nodes, initial streams, sessions opened.
    pub fn new(config: &WorldConfig) -> World {
        World::with_tracing(config, false)
    }

    /// Like [`World::new`], recording a readable trace when `tracing`.
    pub fn with_tracing(config: &WorldConfig, tracing: bool) -> World {
        let node = |seed: u8| {
            // The explorer's and the fuzzers' configurations are built to
            // be valid (`WorldConfig` clamps what a schedule chooses).
            Node::new(
                Identity::from_seed([seed; 32]),
                config.core.clone(),
                u64::from(seed),
            )
            .expect("valid world configuration")
        };
        let nodes = [node(0xA1), node(0xB2)];
        let ids = [nodes[0].local_id(), nodes[1].local_id()];
        let mut w = World {
            now: Timestamp::ZERO,
            nodes,
            links: Vec::new(),
            flows: Vec::new(),
            violations: Vec::new(),
            counters: Counters::default(),
            outage: Duration::ZERO,
            disconnected: Duration::ZERO,
            held: Duration::ZERO,
            blind: Duration::ZERO,
            late: Duration::ZERO,
            deaths: 0,
            disconnected_since: None,
            ids,
            config: config.clone(),
            tracing,
            trace: Vec::new(),
            buf: BytesMut::with_capacity(1 << 16),
        };
        let now = w.now;
        for i in 0..config.streams.min(config.max_links) {
            let wire = 0x5000 + i as u64;
            let inc = [w.nodes[0].incarnation(), w.nodes[1].incarnation()];
            let a = w.nodes[0].insert_established_for_fuzzing_from(now, ids[1], inc[1], wire);
            let b = w.nodes[1].insert_established_for_fuzzing_from(now, ids[0], inc[0], wire);
            w.links.push(Link {
                dialer: 0,
                end: [a, b],
                queue: [VecDeque::new(), VecDeque::new()],
                insecure: true,
            });
        }
        for (i, plan) in config.flows.iter().enumerate() {
            let opener = plan.opener.min(1);
            let mut flow = Flow {
                plan: FlowPlan {
                    opener,
                    ..plan.clone()
                },
                session: [None, None],
                half: [Half::default(), Half::default()],
                closed: [None, None],
                fin_held: plan.hold_fin,
                reset: false,
                read_closed: [false, false],
                wire: None,
                query_maybe_resent: false,
            };
            flow.half[opener].total = plan.up;
            flow.half[1 - opener].total = plan.down;
            match w.nodes[opener].open_session(now, ids[1 - opener], &format!("flow:{i}")) {
                Ok(id) => {
                    flow.session[opener] = Some(id);
                    flow.wire = w.nodes[opener].session_info(id).map(|i| i.wire_id);
                }
                Err(e) => w
                    .violations
                    .push(format!("flow {i}: open_session failed: {e}")),
            }
            w.flows.push(flow);
        }
        for n in 0..2 {
            w.nodes[n].handle_timeout(now);
        }
        w.pump();
        w
    }

    /// Since when no link has been up at both ends (`None`: one is up).
    pub fn disconnected_since(&self) -> Option<Timestamp> {
        self.disconnected_since
    }

    /// The configuration the world was built from.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Applies `action`, then lets the applications and transports react
    /// (writes, reads, output pulled into the links).
    pub fn apply(&mut self, action: Action) -> Outcome {
        if self.tracing {
            self.trace.push(format!("» {action}"));
        }
        let outcome = self.apply_inner(action);
        self.pump();
        self.note_connectivity();
        if self.tracing && outcome != Outcome::Done {
            self.trace.push(format!("  ({outcome:?})"));
        }
        outcome
    }

    fn apply_inner(&mut self, action: Action) -> Outcome {
        let now = self.now;
        match action {
            Action::Deliver { link, to } => self.deliver(link, to),
            Action::AdvanceToTimer => match self.next_timer() {
                Some(t) => {
                    self.advance_to(t.max(now));
                    Outcome::Done
                }
                None => Outcome::Nothing,
            },
            Action::Wait { millis } => {
                self.advance_to(now + Duration::from_millis(u64::from(millis)));
                Outcome::Done
            }
            Action::Kill { link } => {
                let Some(l) = self.links.get_mut(link) else {
                    return Outcome::Nothing;
                };
                l.queue = [VecDeque::new(), VecDeque::new()];
                let ends = [l.end[0].take(), l.end[1].take()];
                if ends == [None, None] {
                    return Outcome::Nothing;
                }
                for (n, end) in ends.into_iter().enumerate() {
                    if let Some(s) = end {
                        self.nodes[n].handle_transport_closed(now, s, "killed");
                    }
                }
                Outcome::Done
            }
            Action::KillOneSide { link, node } => {
                let Some(l) = self.links.get_mut(link) else {
                    return Outcome::Nothing;
                };
                let node = node.min(1);
                let Some(s) = l.end[node].take() else {
                    return Outcome::Nothing;
                };
                l.queue = [VecDeque::new(), VecDeque::new()];
                self.nodes[node].handle_transport_closed(now, s, "killed at this end");
                Outcome::Done
            }
            Action::Connect { dialer } => self.connect(dialer.min(1)),
            Action::Migrate { flow, node, link } => {
                let node = node.min(1);
                let Some(sid) = self.flows.get(flow).and_then(|f| f.session[node]) else {
                    return Outcome::Refused("no such session".into());
                };
                let Some(target) = self.links.get(link).and_then(|l| l.end[node]) else {
                    return Outcome::Refused("link is down at this end".into());
                };
                match self.nodes[node].migrate(now, sid, target) {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Refused(e.to_string()),
                }
            }
            Action::Drain { link, node } => {
                let node = node.min(1);
                let Some(s) = self.links.get(link).and_then(|l| l.end[node]) else {
                    return Outcome::Refused("link is down at this end".into());
                };
                match self.nodes[node].drain_stream(now, s) {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Refused(e.to_string()),
                }
            }
            Action::Reset { flow, node } => {
                let node = node.min(1);
                let Some(sid) = self.open_session_of(flow, node) else {
                    return Outcome::Refused("no open session".into());
                };
                let Some(s) = self.nodes[node].session(sid) else {
                    return Outcome::Refused("no open session".into());
                };
                s.reset(now);
                self.flows[flow].reset = true;
                Outcome::Done
            }
            Action::Finish { flow, node } => {
                let node = node.min(1);
                let Some(sid) = self.open_session_of(flow, node) else {
                    return Outcome::Refused("no open session".into());
                };
                let f = &mut self.flows[flow];
                if f.half[node].finished {
                    return Outcome::Nothing;
                }
                f.half[node].total = f.half[node].written;
                f.half[node].finished = true;
                if let Some(mut s) = self.nodes[node].session(sid) {
                    s.finish();
                }
                Outcome::Done
            }
            Action::Close { flow, node } => {
                let node = node.min(1);
                let Some(sid) = self.open_session_of(flow, node) else {
                    return Outcome::Refused("no open session".into());
                };
                let f = &mut self.flows[flow];
                if f.read_closed[node] {
                    return Outcome::Nothing;
                }
                f.half[node].total = f.half[node].written;
                f.half[node].finished = true;
                f.read_closed[node] = true;
                if let Some(mut s) = self.nodes[node].session(sid) {
                    s.close();
                }
                Outcome::Done
            }
        }
    }

    /// The session of `flow` at `node`, if it is open there.
    pub fn open_session_of(&self, flow: usize, node: usize) -> Option<SessionId> {
        let f = self.flows.get(flow)?;
        if f.closed[node].is_some() {
            return None;
        }
        f.session[node]
    }

    fn deliver(&mut self, link: usize, to: usize) -> Outcome {
        let now = self.now;
        let to = to.min(1);
        let Some(l) = self.links.get_mut(link) else {
            return Outcome::Nothing;
        };
        let Some(stream) = l.end[to] else {
            return Outcome::Nothing;
        };
        let Some(packet) = l.queue[to].pop_front() else {
            return Outcome::Nothing;
        };
        let insecure = l.insecure;
        match packet {
            Packet::Record(bytes) => {
                if self.tracing {
                    let text = describe_record(&bytes, insecure);
                    self.trace.push(format!("  L{link} →{}: {text}", NAMES[to]));
                }
                self.nodes[to].handle_input(now, stream, &bytes);
            }
            Packet::Close => {
                l.end[to] = None;
                l.queue[1 - to].clear();
                if self.tracing {
                    self.trace
                        .push(format!("  L{link} →{}: transport closed", NAMES[to]));
                }
                self.nodes[to].handle_transport_closed(now, stream, "peer closed the transport");
            }
        }
        Outcome::Done
    }

    fn connect(&mut self, dialer: usize) -> Outcome {
        if self.links.len() >= self.config.max_links {
            return Outcome::Refused("link limit of the world".into());
        }
        self.connect_beyond_limit(dialer)
    }

    fn connect_beyond_limit(&mut self, dialer: usize) -> Outcome {
        let now = self.now;
        let other = 1 - dialer;
        let s_d = match self.nodes[dialer].connect(now, self.ids[other]) {
            Ok(s) => s,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let s_o = match self.nodes[other].accept(now) {
            Ok(s) => s,
            Err(e) => {
                self.nodes[dialer].close_stream(now, s_d);
                return Outcome::Refused(e.to_string());
            }
        };
        let mut end = [None, None];
        end[dialer] = Some(s_d);
        end[other] = Some(s_o);
        // The handshake runs to completion at once: its interleavings are
        // not what the explorer is after. Each handshake message goes
        // straight to the other end; records that follow (the first pings,
        // anything the engine moves onto the new stream) are ordinary
        // packets in flight.
        for _ in 0..8 {
            let mut progress = false;
            for n in [dialer, other] {
                let (Some(s), Some(peer_s)) = (end[n], end[1 - n]) else {
                    continue;
                };
                let handshaking = self.nodes[n]
                    .stream_info(s)
                    .is_some_and(|i| i.state == StreamState::Handshaking);
                if !handshaking {
                    continue;
                }
                self.buf.clear();
                if self.nodes[n].poll_transmit(now, s, &mut self.buf, 1) > 0 {
                    progress = true;
                    self.nodes[1 - n].handle_input(now, peer_s, &self.buf);
                }
            }
            if !progress {
                break;
            }
        }
        self.links.push(Link {
            dialer,
            end,
            queue: [VecDeque::new(), VecDeque::new()],
            insecure: false,
        });
        Outcome::Done
    }

    /// Earliest timer of either node.
    pub fn next_timer(&self) -> Option<Timestamp> {
        self.nodes.iter().filter_map(Node::poll_timeout).min()
    }

    fn advance_to(&mut self, t: Timestamp) {
        self.note_connectivity();
        let passed = t.saturating_duration_since(self.now);
        if !self.is_quiet() {
            // The network held records while time passed: as good as an
            // outage for every timeout that ran meanwhile.
            self.held += passed;
        } else if self.disconnected_since.is_none() {
            // Connected and quiet: the time counts for the engines unless
            // they could not use it (one period counts once: blind first).
            if self.is_blind() {
                self.blind += passed;
            } else if let Some(due) = self.next_timer().filter(|d| *d < t) {
                self.late += t.saturating_duration_since(due.max(self.now));
            }
        }
        self.now = self.now.max(t);
        let now = self.now;
        if self.tracing {
            self.trace
                .push(format!("  now = {:?}", now.as_nanos() / 1_000_000));
        }
        for n in 0..2 {
            if self.nodes[n].poll_timeout().is_some_and(|d| d <= now) {
                self.nodes[n].handle_timeout(now);
            }
        }
        self.note_connectivity();
    }

    fn note_connectivity(&mut self) {
        let connected = self.links.iter().any(Link::is_up);
        match (connected, self.disconnected_since) {
            (true, Some(since)) => {
                self.disconnected += self.now.saturating_duration_since(since);
                self.disconnected_since = None;
            }
            (false, None) => self.disconnected_since = Some(self.now),
            _ => {}
        }
        let ongoing = self.disconnected_since.map_or(Duration::ZERO, |since| {
            self.now.saturating_duration_since(since)
        });
        self.outage = self.held + self.disconnected + ongoing + self.blind + self.late;
    }

    /// Whether a node sends sessions on a half-open stream (closed at the
    /// other end) that it does not suspect yet: what it sends there is lost
    /// and it cannot know so before the stream's silence shows.
    pub fn is_blind(&self) -> bool {
        self.links.iter().any(|l| {
            (0..2).any(|n| {
                l.end[1 - n].is_none()
                    && l.end[n]
                        .and_then(|s| self.nodes[n].stream_info(s))
                        .is_some_and(|s| !s.suspect && s.sessions > 0)
            })
        })
    }

    /// Until nothing changes: events handled, applications served, output
    /// pulled into the links.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = self.handle_events();
            for i in 0..self.flows.len() {
                for n in 0..2 {
                    progress |= self.write_flow(i, n);
                    progress |= self.read_flow(i, n);
                }
            }
            progress |= self.handle_events();
            progress |= self.pull_output();
            if !progress {
                return;
            }
        }
        self.violations
            .push("the nodes never went quiet (10,000 rounds of output)".into());
    }

    fn pull_output(&mut self) -> bool {
        let now = self.now;
        let mut any = false;
        for li in 0..self.links.len() {
            for n in 0..2 {
                while let Some(s) = self.links[li].end[n] {
                    self.buf.clear();
                    // One record per call: each is a separate delivery.
                    if self.nodes[n].poll_transmit(now, s, &mut self.buf, 1) == 0 {
                        break;
                    }
                    any = true;
                    let bytes = self.buf.split().freeze();
                    if self.links[li].insecure {
                        self.count_resume_replies(n, &bytes);
                    }
                    let l = &mut self.links[li];
                    // Sent into a transport whose other end is gone: lost.
                    if l.end[1 - n].is_some() {
                        l.queue[1 - n].push_back(Packet::Record(bytes));
                    }
                }
            }
        }
        any
    }

    /// Coverage of the two rules fuzzing added (docs/MIGRATION.md rules 6
    /// and 7), seen in what node `n` sends: a Resume reply for a session `n`
    /// has closed (its final counts, re-announced or answering a late
    /// Resume), and one for a session whose both directions are finished
    /// (owed before the session may end).
    fn count_resume_replies(&mut self, n: usize, record: &[u8]) {
        let Some(plain) = record_plaintext(record) else {
            return;
        };
        for frame in FrameReader::new(plain, DecodeLimits::default()).flatten() {
            let Frame::Resume {
                session,
                reply: true,
                ..
            } = frame
            else {
                continue;
            };
            let Some(f) = self.flows.iter().find(|f| f.wire == Some(session)) else {
                continue;
            };
            if f.closed[n].is_some() {
                self.counters.final_counts_announced += 1;
            } else if f.half[n].finished && f.half[1 - n].eof {
                self.counters.reply_owed_while_finishing += 1;
            }
        }
    }

    fn handle_events(&mut self) -> bool {
        let mut any = false;
        for (n, name) in NAMES.iter().enumerate() {
            while let Some(ev) = self.nodes[n].poll_event() {
                any = true;
                if self.tracing {
                    self.trace.push(format!("  {name} {ev:?}"));
                }
                self.on_event(n, ev);
            }
        }
        any
    }

    fn on_event(&mut self, n: usize, ev: Event) {
        let now = self.now;
        match ev {
            Event::Query { session, query, .. } => {
                let flow = query
                    .strip_prefix("flow:")
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|i| *i < self.flows.len() && self.flows[*i].acceptor() == n);
                match flow {
                    Some(i) if self.flows[i].session[n].is_none() => {
                        self.flows[i].session[n] = Some(session);
                        if let Err(e) = self.nodes[n].accept_query(now, session) {
                            self.violations
                                .push(format!("flow {i}: accept_query failed: {e}"));
                        }
                    }
                    Some(i) => {
                        // The same query again, as a new session. Only
                        // acceptable as a stale copy: held in flight past
                        // the timeouts, after this end gave up (it keeps
                        // no memory of sessions that did not end gracefully).
                        let c = &self.config.core;
                        let stale = self.flows[i].closed[n]
                            .as_ref()
                            .is_some_and(|c| *c != CloseReason::Graceful)
                            && self.outage >= c.routing_timeout.min(c.recovery_timeout);
                        if stale {
                            self.counters.stale_queries += 1;
                        } else {
                            self.violations.push(format!(
                                "{}: query {query:?} delivered again as a new session",
                                NAMES[n]
                            ));
                        }
                        let _ = self.nodes[n].reject_query(now, session, 2);
                    }
                    None => {
                        self.violations
                            .push(format!("{}: unexpected query {query:?}", NAMES[n]));
                        let _ = self.nodes[n].reject_query(now, session, 2);
                    }
                }
            }
            Event::Writable { session } => {
                if let Some(i) = self.flow_of(n, session) {
                    self.flows[i].half[n].blocked = false;
                }
            }
            Event::SessionClosed { session, reason } => {
                if let Some(i) = self.flow_of(n, session) {
                    if reason == CloseReason::Graceful {
                        self.counters.graceful += 1;
                    } else {
                        self.counters.other_close += 1;
                    }
                    let f = &mut self.flows[i];
                    if f.closed[n].is_some() {
                        self.violations
                            .push(format!("flow {i}: {} closed twice", NAMES[n]));
                    }
                    f.closed[n] = Some(reason);
                }
            }
            Event::StreamDown { stream, reason, .. } => {
                if reason == StreamCloseReason::Drained {
                    self.counters.drained += 1;
                } else {
                    self.deaths += 1;
                }
                for f in &mut self.flows {
                    let routing = f.plan.opener == n
                        && f.closed[n].is_none()
                        && f.session[n]
                            .and_then(|s| self.nodes[n].session_info(s))
                            .is_some_and(|s| s.state == SessionState::Routing);
                    f.query_maybe_resent |= routing;
                }
                // Like a driver: close this end of the transport. The peer
                // sees the close after what is already in flight; what is in
                // flight towards us is lost.
                if let Some(l) = self.links.iter_mut().find(|l| l.end[n] == Some(stream)) {
                    l.end[n] = None;
                    l.queue[n].clear();
                    if l.end[1 - n].is_some() {
                        l.queue[1 - n].push_back(Packet::Close);
                    }
                }
            }
            Event::StreamUp { .. } => self.counters.connected += 1,
            Event::Migrated { .. } => self.counters.migrated += 1,
            Event::Recovered { resent_bytes, .. } => {
                self.counters.recovered += 1;
                self.counters.resent_bytes += resent_bytes;
            }
            _ => {}
        }
    }

    /// The flow whose session at `n` is `session`.
    pub fn flow_of(&self, n: usize, session: SessionId) -> Option<usize> {
        self.flows
            .iter()
            .position(|f| f.session[n] == Some(session))
    }

    fn write_flow(&mut self, i: usize, n: usize) -> bool {
        let f = &self.flows[i];
        let Some(sid) = f.session[n] else {
            return false;
        };
        let h = &f.half[n];
        let done_writing = h.written >= h.total;
        if f.closed[n].is_some() || h.blocked || (h.finished && done_writing) {
            return false;
        }
        let (key, total, mut written) = (f.key(i, n), h.total, h.written);
        let write = f.plan.write.max(1);
        let fin_held = f.fin_held;
        let Some(mut s) = self.nodes[n].session(sid) else {
            return false;
        };
        let mut chunk = vec![0u8; write];
        let mut blocked = false;
        let before = written;
        while written < total {
            let want = (total - written).min(write as u64) as usize;
            for (k, b) in chunk[..want].iter_mut().enumerate() {
                *b = pattern_byte(key, written + k as u64);
            }
            match s.write(&chunk[..want]) {
                Ok(k) => written += k as u64,
                Err(WriteError::Blocked) => {
                    blocked = true;
                    break;
                }
                // Closed, and any failure a later core adds.
                Err(_) => break,
            }
        }
        let finish = written == total && !fin_held;
        if finish {
            s.finish();
        }
        let h = &mut self.flows[i].half[n];
        let progress = written != before || finish != h.finished || blocked != h.blocked;
        h.written = written;
        h.blocked = blocked;
        h.finished |= finish;
        progress
    }

    fn read_flow(&mut self, i: usize, n: usize) -> bool {
        let f = &self.flows[i];
        let Some(sid) = f.session[n] else {
            return false;
        };
        let writer = 1 - n;
        let h = &f.half[writer];
        if f.closed[n].is_some() || f.read_closed[n] || h.eof {
            return false;
        }
        let key = f.key(i, writer);
        let planned = match writer == f.plan.opener {
            true => f.plan.up,
            false => f.plan.down,
        };
        let (mut read, mut eof) = (h.read, false);
        let mut problems = Vec::new();
        let Some(mut s) = self.nodes[n].session(sid) else {
            return false;
        };
        loop {
            match s.read_chunk(usize::MAX) {
                Ok(Some(chunk)) => {
                    if let Some(k) =
                        (0..chunk.len()).find(|&k| chunk[k] != pattern_byte(key, read + k as u64))
                    {
                        problems.push(format!(
                            "flow {i} {}→{}: wrong byte at offset {}",
                            NAMES[writer],
                            NAMES[n],
                            read + k as u64
                        ));
                    }
                    read += chunk.len() as u64;
                    if read > planned {
                        problems.push(format!(
                            "flow {i} {}→{}: {read} bytes read, only {planned} planned",
                            NAMES[writer], NAMES[n]
                        ));
                    }
                    if !problems.is_empty() {
                        break;
                    }
                }
                Ok(None) => {
                    eof = true;
                    break;
                }
                // Blocked, Closed, and any failure a later core adds.
                Err(_) => break,
            }
        }
        let h = &mut self.flows[i].half[writer];
        let progress = read != h.read || eof;
        // End of stream comes after exactly the bytes written before the Fin.
        if eof && read != h.written {
            problems.push(format!(
                "flow {i} {}→{}: end of stream after {read} bytes, {} written",
                NAMES[writer], NAMES[n], h.written
            ));
        }
        h.read = read;
        h.eof |= eof;
        self.violations.extend(problems);
        progress
    }

    /// Releases the Fins held by [`FlowPlan::hold_fin`].
    pub fn release_fins(&mut self) {
        for f in &mut self.flows {
            f.fin_held = false;
        }
        self.pump();
    }

    /// Whether nothing is in flight on any link.
    pub fn is_quiet(&self) -> bool {
        self.links
            .iter()
            .all(|l| l.queue.iter().all(VecDeque::is_empty))
    }

    /// Every record in flight, as deliveries (link, receiving node).
    pub fn deliverable(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for (li, l) in self.links.iter().enumerate() {
            for to in 0..2 {
                if l.end[to].is_some() && !l.queue[to].is_empty() {
                    v.push((li, to));
                }
            }
        }
        v
    }

    /// Delivers everything in flight, oldest link first, until quiet.
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            let d = self.deliverable();
            if d.is_empty() {
                return;
            }
            for (link, to) in d {
                self.apply(Action::Deliver { link, to });
            }
        }
        self.violations
            .push("deliveries never ended (100,000 rounds)".into());
    }

    /// Runs the network on its own for `horizon` of virtual time: every
    /// record delivered promptly, timers fired when due.
    pub fn run_for(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        loop {
            self.deliver_all();
            match self.next_timer() {
                Some(t) if t <= end => {
                    self.advance_to(t.max(self.now));
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
        self.note_connectivity();
    }

    /// If no link is up at both ends and drained by neither, connects a new
    /// one, beyond the world's link limit if need be: the sessions need a
    /// path to finish on, and a drain whose alternatives all died waits for
    /// a new stream (it must then complete).
    pub fn heal(&mut self) {
        let usable = |w: &World, l: &Link| {
            l.is_up()
                && (0..2).all(|n| {
                    l.end[n]
                        .and_then(|s| w.nodes[n].stream_info(s))
                        .is_some_and(|i| !i.draining)
                })
        };
        if !self.links.iter().any(|l| usable(self, l)) {
            if self.tracing {
                self.trace.push("» heal: A connects a new stream".into());
            }
            self.connect_beyond_limit(0);
            self.pump();
            self.note_connectivity();
        }
    }

    /// Lets the world settle and checks the end state:
    ///
    /// 1. heal (a new stream if none is up and undrained), run for long enough that any
    ///    half-open stream times out and every recovery and drain ends;
    /// 2. every session still open has both ends open (not migrating, not
    ///    recovering) and sending on one live link, every byte written so
    ///    far was read, and no stream is still draining;
    /// 3. release the held Fins and run again: every session closed at both
    ///    ends; without a reset or a long disconnection, gracefully with
    ///    every byte read exactly once, in order; no session is left in
    ///    either node.
    ///
    /// Returns what it found, with the problems seen during the run.
    pub fn settle_and_check(&mut self) -> Settled {
        let c = &self.config.core;
        // Plus three policy ticks: the higher node id realigns a session
        // whose directions use different streams after two ticks in a row
        // (`realign_crossed` in the core's `engine/migrate.rs`).
        let horizon = (c.dead_timeout + c.recovery_timeout) * 2 + c.policy_interval * 3;
        self.heal();
        self.run_for(horizon);
        let mut problems = std::mem::take(&mut self.violations);
        let (stuck, crossed) = self.check_converged();
        problems.extend(stuck);
        self.release_fins();
        self.run_for(horizon);
        problems.extend(std::mem::take(&mut self.violations));
        problems.extend(self.check_closed());
        Settled { problems, crossed }
    }

    /// Step 2 of [`World::settle_and_check`]: (problems, sessions whose two
    /// directions use different streams).
    pub fn check_converged(&self) -> (Vec<String>, Vec<String>) {
        let mut p = Vec::new();
        let mut crossed = Vec::new();
        for (node, name) in self.nodes.iter().zip(NAMES) {
            for st in node.streams() {
                if st.draining {
                    p.push(format!(
                        "{name}: stream {:?} still draining after the settle time",
                        st.id
                    ));
                }
            }
        }
        for (i, f) in self.flows.iter().enumerate() {
            if f.closed[0].is_some() || f.closed[1].is_some() {
                continue;
            }
            let info: Vec<_> = (0..2)
                .map(|n| f.session[n].and_then(|s| self.nodes[n].session_info(s)))
                .collect();
            let (Some(a), Some(b)) = (&info[0], &info[1]) else {
                p.push(format!("flow {i}: open but unknown at one end: {info:?}"));
                continue;
            };
            for (n, s) in [a, b].into_iter().enumerate() {
                if s.state != SessionState::Open {
                    p.push(format!(
                        "flow {i}: {} still {} after the settle time",
                        NAMES[n],
                        s.state.name()
                    ));
                }
            }
            let same_link = self.links.iter().any(|l| {
                l.is_up() && l.end[0] == sending_stream(a) && l.end[1] == sending_stream(b)
            });
            if !same_link {
                crossed.push(format!(
                    "flow {i}: directions on different streams (A sends on {:?}, B on {:?}) after the settle time",
                    a.send_stream, b.send_stream
                ));
            }
            for w in 0..2 {
                let h = &f.half[w];
                if h.read != h.written && !f.read_closed[1 - w] {
                    p.push(format!(
                        "flow {i} {}→{}: {} of {} written bytes read after the settle time (stuck)",
                        NAMES[w],
                        NAMES[1 - w],
                        h.read,
                        h.written
                    ));
                }
            }
        }
        (p, crossed)
    }

    /// Step 3 of [`World::settle_and_check`].
    pub fn check_closed(&self) -> Vec<String> {
        let mut p = Vec::new();
        let c = &self.config.core;
        let may_time_out = self.outage >= c.recovery_timeout.min(c.routing_timeout);
        for (i, f) in self.flows.iter().enumerate() {
            let acceptor = f.acceptor();
            let never_arrived = f.session[acceptor].is_none()
                && f.closed[f.plan.opener]
                    .as_ref()
                    .is_some_and(|c| *c != CloseReason::Graceful);
            if never_arrived {
                // The query died in flight and the opener gave up (reset,
                // timeout): the acceptor never had the session.
                continue;
            }
            if !f.is_closed() {
                p.push(format!(
                    "flow {i}: not closed after the settle time (A {:?}, B {:?}; A {:?}, B {:?})",
                    f.closed[0],
                    f.closed[1],
                    f.session[0].and_then(|s| self.nodes[0].session_info(s)),
                    f.session[1].and_then(|s| self.nodes[1].session_info(s)),
                ));
                continue;
            }
            if f.reset {
                continue;
            }
            let graceful = f.closed.iter().all(|c| *c == Some(CloseReason::Graceful));
            if graceful {
                for w in 0..2 {
                    let h = &f.half[w];
                    if f.read_closed[1 - w] {
                        continue;
                    }
                    if h.read != h.total || !h.eof || h.written != h.total {
                        p.push(format!(
                            "flow {i} {}→{}: closed gracefully with {} of {} bytes read (written {}, eof {})",
                            NAMES[w],
                            NAMES[1 - w],
                            h.read,
                            h.total,
                            h.written,
                            h.eof
                        ));
                    }
                }
                continue;
            }
            // After an outage as long as a timeout, an end may time out and
            // the other then learns it by a Reset.
            let timed_out = |c: &Option<CloseReason>| {
                matches!(
                    c,
                    Some(
                        CloseReason::Graceful
                            | CloseReason::PeerUnreachable
                            | CloseReason::RoutingTimeout
                            | CloseReason::ResetByPeer
                    )
                )
            };
            if !(may_time_out && f.closed.iter().all(timed_out)) {
                p.push(format!(
                    "flow {i}: closed A {:?}, B {:?} (outage {:?})",
                    f.closed[0], f.closed[1], self.outage
                ));
            }
        }
        for (node, name) in self.nodes.iter().zip(NAMES) {
            let left: Vec<_> = node.sessions().collect();
            if !left.is_empty() {
                p.push(format!(
                    "{name}: sessions left after the settle time: {left:?}"
                ));
            }
        }
        p
    }
}

/// What [`World::settle_and_check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Oracle violations.
    pub problems: Vec<String>,
    /// Open sessions whose two directions use different streams at the end
    /// of the settle time (issue 10 defect 4).
    pub crossed: Vec<String>,
}

/// The stream a session sends on (`None` while it has none).
fn sending_stream(info: &SessionInfo) -> Option<StreamId> {
    info.send_stream
}

/// The frames of a no-security record (`u16 length || plaintext || 16
/// zero bytes`), `None` if it is not one.
fn record_plaintext(bytes: &[u8]) -> Option<Bytes> {
    const TAG: usize = 16;
    if bytes.len() < 2 + TAG {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    (len + 2 == bytes.len()).then(|| Bytes::copy_from_slice(&bytes[2..bytes.len() - TAG]))
}

/// A record in words: its frames when readable (no-security cipher),
/// else its size.
pub fn describe_record(bytes: &[u8], insecure: bool) -> String {
    let Some(plain) = record_plaintext(bytes).filter(|_| insecure) else {
        return format!("{} bytes", bytes.len());
    };
    let frames: Vec<String> = FrameReader::new(plain, DecodeLimits::default())
        .map(|f| match f {
            Ok(Frame::DataAt {
                session,
                offset,
                payload,
            }) => format!(
                "DataAt{{s{session} {offset}..{}}}",
                offset + payload.len() as u64
            ),
            Ok(Frame::Ping { pong, .. }) => if pong { "Pong" } else { "Ping" }.to_string(),
            Ok(Frame::Query { session, .. }) => format!("Query{{s{session}}}"),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("<{e}>"),
        })
        .collect();
    frames.join(" ")
}
