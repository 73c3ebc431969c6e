//! astral-sim: a deterministic network simulator for astral-core.
//!
//! Nodes are real [`astral_core::Node`]s; links are simulated transports
//! with latency, bandwidth and a kill switch; time is virtual and jumps to
//! the next thing that happens (a delivery, a timer, a scheduled action).
//! A built-in workload opens sessions whose bytes follow a per-direction
//! pseudo-random pattern, so the oracle can check every byte received for
//! exactly-once, in-order delivery without storing payloads.
//!
//! Same seed and same script, same trace hash: see [`Sim::trace_hash`].
//!
//! ```
//! use astral_sim::{LinkConfig, Sim, FlowSpec};
//! let mut sim = Sim::new(7, 2, astral_core::Config::default());
//! sim.link(0, 1, LinkConfig::default());
//! sim.open_flows(&[FlowSpec::new(0, 1, 10_000, 5_000)]);
//! sim.run_until_done(std::time::Duration::from_secs(60));
//! sim.check().unwrap();
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use astral_core::{
    CloseReason, Config, Event, Identity, Node, NodeId, ReadError, SessionId, StreamId, Timestamp,
    WriteError,
};
use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Properties of a simulated transport.
#[derive(Clone, Copy, Debug)]
pub struct LinkConfig {
    /// One-way latency.
    pub latency: Duration,
    /// Bytes per second per direction (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Transport send buffer: the node's output is pulled only while fewer
    /// bytes than this are in flight in that direction (TCP-like backpressure).
    pub buffer: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            latency: Duration::from_millis(5),
            bandwidth: Some(100_000_000),
            buffer: 256 * 1024,
        }
    }
}

impl LinkConfig {
    /// A link with the given one-way latency and default bandwidth.
    pub fn with_latency(latency: Duration) -> Self {
        LinkConfig {
            latency,
            ..Self::default()
        }
    }
}

struct Direction {
    queue: VecDeque<(Timestamp, Bytes)>,
    in_flight: usize,
    free_at: Timestamp,
}

impl Direction {
    fn new() -> Self {
        Direction {
            queue: VecDeque::new(),
            in_flight: 0,
            free_at: Timestamp::ZERO,
        }
    }
}

/// A simulated transport between two nodes: one stream at each end.
pub struct Link {
    /// Dialing node.
    pub a: usize,
    /// Accepting node.
    pub b: usize,
    /// Stream handle at `a`.
    pub sa: StreamId,
    /// Stream handle at `b`.
    pub sb: StreamId,
    /// Properties.
    pub config: LinkConfig,
    /// False once killed or closed.
    pub alive: bool,
    ab: Direction,
    ba: Direction,
}

/// Something the script does at a given time.
#[derive(Clone, Debug)]
pub enum Action {
    /// Cut a link: both ends see their transport closed.
    Kill(usize),
    /// Cut a link at one end only (half-open: the other end notices by timeout).
    KillOneSide(usize, bool),
    /// Bring up a new link.
    Connect(usize, usize, LinkConfig),
    /// `migrate(flow's session at node side, link's stream)`: side false = opener.
    Migrate {
        /// Flow index.
        flow: usize,
        /// Which end starts it: false = the opener (a), true = the acceptor (b).
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
    /// Change a link's latency from now on.
    SetLatency(usize, Duration),
}

/// One session of the built-in workload.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    /// Opening node.
    pub opener: usize,
    /// Accepting node.
    pub acceptor: usize,
    /// Bytes opener → acceptor.
    pub up: u64,
    /// Bytes acceptor → opener.
    pub down: u64,
    /// Write sizes are drawn uniformly from 1..=max_write.
    pub max_write: usize,
    /// Read sizes are drawn uniformly from 1..=max_read.
    pub max_read: usize,
    /// The acceptor rejects the query with this code instead of accepting.
    pub reject: Option<u8>,
}

impl FlowSpec {
    /// A flow with random write/read sizes up to 16 KiB.
    pub fn new(opener: usize, acceptor: usize, up: u64, down: u64) -> Self {
        FlowSpec {
            opener,
            acceptor,
            up,
            down,
            max_write: 16 * 1024,
            max_read: 16 * 1024,
            reject: None,
        }
    }
}

/// State of one direction of a flow.
#[derive(Clone, Debug, Default)]
pub struct HalfFlow {
    /// Pattern key.
    pub key: u64,
    /// Bytes to send.
    pub total: u64,
    /// Bytes written so far.
    pub written: u64,
    /// Bytes read and verified so far.
    pub read: u64,
    /// Fin issued.
    pub finished: bool,
    /// End-of-stream read.
    pub eof: bool,
    /// Writer got Blocked and waits for Writable.
    pub blocked: bool,
}

/// One session of the workload, both ends.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The plan.
    pub spec: FlowSpec,
    /// Session at the opener.
    pub at_opener: Option<SessionId>,
    /// Session at the acceptor.
    pub at_acceptor: Option<SessionId>,
    /// Opener → acceptor.
    pub up: HalfFlow,
    /// Acceptor → opener.
    pub down: HalfFlow,
    /// How the session ended at the opener.
    pub closed_opener: Option<CloseReason>,
    /// How it ended at the acceptor.
    pub closed_acceptor: Option<CloseReason>,
    /// Violations seen by the oracle.
    pub errors: Vec<String>,
}

/// Byte `i` of the pattern with key `key`.
pub fn pattern_byte(key: u64, i: u64) -> u8 {
    let mut z = key ^ (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> (8 * (i % 8))) as u8
}

fn fill_pattern(key: u64, start: u64, out: &mut [u8]) {
    for (k, b) in out.iter_mut().enumerate() {
        *b = pattern_byte(key, start + k as u64);
    }
}

/// The simulator.
pub struct Sim {
    /// Virtual now.
    pub now: Timestamp,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Links, by index (killed ones stay, dead).
    pub links: Vec<Link>,
    /// The workload.
    pub flows: Vec<Flow>,
    /// Every event every node reported, in order.
    pub log: Vec<(Timestamp, usize, Event)>,
    actions: BTreeMap<(Timestamp, u64), Action>,
    action_seq: u64,
    rng: ChaCha20Rng,
    trace: std::collections::hash_map::DefaultHasher,
    by_session: BTreeMap<(usize, SessionId), (usize, bool)>,
    buf: BytesMut,
    /// Record every event in `log` (off for very large runs).
    pub keep_log: bool,
    /// Steps taken.
    pub steps: u64,
    /// Leave queries that are not the workload's to the test (default:
    /// reject them with code 2).
    pub manual_queries: bool,
}

impl Sim {
    /// `n` nodes with identities and seeds derived from `seed`.
    pub fn new(seed: u64, n: usize, config: Config) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|_| {
                let mut key = [0u8; 32];
                rng.fill_bytes(&mut key);
                Node::new(Identity::from_seed(key), config.clone(), rng.next_u64())
                    .expect("valid config")
            })
            .collect();
        Sim {
            now: Timestamp::ZERO,
            nodes,
            links: Vec::new(),
            flows: Vec::new(),
            log: Vec::new(),
            actions: BTreeMap::new(),
            action_seq: 0,
            rng,
            trace: Default::default(),
            by_session: BTreeMap::new(),
            buf: BytesMut::with_capacity(1 << 20),
            keep_log: true,
            steps: 0,
            manual_queries: false,
        }
    }

    /// Identity of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].local_id()
    }

    /// Connects `a` (dialer) to `b` now; returns the link index.
    pub fn link(&mut self, a: usize, b: usize, config: LinkConfig) -> usize {
        let peer = self.id(b);
        let now = self.now;
        let sa = self.nodes[a].connect(now, peer).expect("connect");
        let sb = self.nodes[b].accept(now).expect("accept");
        self.links.push(Link {
            a,
            b,
            sa,
            sb,
            config,
            alive: true,
            ab: Direction::new(),
            ba: Direction::new(),
        });
        self.links.len() - 1
    }

    /// Schedules `action` at `at`.
    pub fn at(&mut self, at: Timestamp, action: Action) {
        self.action_seq += 1;
        self.actions.insert((at, self.action_seq), action);
    }

    /// Time `d` after the start.
    pub fn t(d: Duration) -> Timestamp {
        Timestamp::ZERO + d
    }

    /// Opens the workload's sessions now.
    pub fn open_flows(&mut self, specs: &[FlowSpec]) {
        for spec in specs {
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
            let id = self.nodes[spec.opener]
                .open_session(now, peer, &format!("flow:{idx}"))
                .expect("open_session");
            self.by_session.insert((spec.opener, id), (idx, false));
            self.flows.push(Flow {
                spec: spec.clone(),
                at_opener: Some(id),
                at_acceptor: None,
                up,
                down,
                closed_opener: None,
                closed_acceptor: None,
                errors: Vec::new(),
            });
        }
    }

    /// Hash of everything that crossed every link, with times.
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

    fn links_quiet(&self) -> bool {
        self.links
            .iter()
            .all(|l| !l.alive || (l.ab.queue.is_empty() && l.ba.queue.is_empty()))
    }

    /// Whether every flow finished both ways (or was rejected/closed).
    pub fn flows_done(&self) -> bool {
        self.flows.iter().all(|f| {
            (f.closed_opener.is_some() && (f.closed_acceptor.is_some() || f.spec.reject.is_some()))
                || !f.errors.is_empty()
        })
    }

    /// One step: move output to links, then jump to the next thing and do it.
    /// Returns false when nothing is left to do before `end`.
    pub fn step(&mut self, end: Timestamp) -> bool {
        self.steps += 1;
        self.pump_app();
        self.pull_output();
        let next = self.next_time();
        let Some(next) = next else { return false };
        if next > end {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        // Scheduled actions.
        while let Some((&(t, seq), _)) = self.actions.iter().next() {
            if t > now {
                break;
            }
            let action = self.actions.remove(&(t, seq)).expect("present");
            self.apply(action);
        }
        // Deliveries.
        for li in 0..self.links.len() {
            for dir in [false, true] {
                loop {
                    let link = &mut self.links[li];
                    if !link.alive {
                        break;
                    }
                    let (d, node, stream) = if dir {
                        (&mut link.ba, link.a, link.sa)
                    } else {
                        (&mut link.ab, link.b, link.sb)
                    };
                    match d.queue.front() {
                        Some((t, _)) if *t <= now => {}
                        _ => break,
                    }
                    let (_, data) = d.queue.pop_front().expect("front exists");
                    d.in_flight -= data.len();
                    if data.is_empty() {
                        // Close marker: the sender closed its end.
                        link.alive = false;
                        self.nodes[node].handle_transport_closed(
                            now,
                            stream,
                            "peer closed the transport",
                        );
                        break;
                    }
                    self.nodes[node].handle_input(now, stream, &data);
                }
            }
        }
        for n in 0..self.nodes.len() {
            if self.nodes[n].poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[n].handle_timeout(now);
            }
        }
        self.collect_events();
        true
    }

    fn next_time(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        for l in self.links.iter().filter(|l| l.alive) {
            if let Some((t, _)) = l.ab.queue.front() {
                consider(*t);
            }
            if let Some((t, _)) = l.ba.queue.front() {
                consider(*t);
            }
        }
        for n in &self.nodes {
            if let Some(t) = n.poll_timeout() {
                consider(t.max(self.now));
            }
        }
        if let Some(&(t, _)) = self.actions.keys().next() {
            consider(t.max(self.now));
        }
        next
    }

    fn pull_output(&mut self) {
        let now = self.now;
        for li in 0..self.links.len() {
            for dir in [false, true] {
                let link = &mut self.links[li];
                if !link.alive {
                    continue;
                }
                let cfg = link.config;
                let (d, node, stream) = if dir {
                    (&mut link.ba, link.b, link.sb)
                } else {
                    (&mut link.ab, link.a, link.sa)
                };
                while d.in_flight < cfg.buffer {
                    self.buf.clear();
                    let room = cfg.buffer - d.in_flight;
                    let n = self.nodes[node].poll_transmit(now, stream, &mut self.buf, room);
                    if n == 0 {
                        break;
                    }
                    let data = self.buf.split().freeze();
                    let start = d.free_at.max(now);
                    let serial = cfg
                        .bandwidth
                        .map(|bw| {
                            Duration::from_nanos((n as u128 * 1_000_000_000 / bw as u128) as u64)
                        })
                        .unwrap_or_default();
                    d.free_at = start + serial;
                    let at = d.free_at + cfg.latency;
                    li.hash(&mut self.trace);
                    dir.hash(&mut self.trace);
                    at.as_nanos().hash(&mut self.trace);
                    data.hash(&mut self.trace);
                    d.in_flight += n;
                    // Deliveries stay in order per direction even if latency drops.
                    let at = d.queue.back().map_or(at, |(t, _)| at.max(*t));
                    d.queue.push_back((at, data));
                }
            }
        }
    }

    fn apply(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::Kill(li) => {
                let Some(l) = self.links.get_mut(li) else {
                    return;
                };
                if l.alive {
                    l.alive = false;
                    let (a, sa, b, sb) = (l.a, l.sa, l.b, l.sb);
                    self.nodes[a].handle_transport_closed(now, sa, "killed by simulator");
                    self.nodes[b].handle_transport_closed(now, sb, "killed by simulator");
                }
            }
            Action::KillOneSide(li, b_side) => {
                let Some(l) = self.links.get_mut(li) else {
                    return;
                };
                if l.alive {
                    l.alive = false;
                    let (node, s) = if b_side { (l.b, l.sb) } else { (l.a, l.sa) };
                    self.nodes[node].handle_transport_closed(
                        now,
                        s,
                        "killed by simulator (one side)",
                    );
                }
            }
            Action::Connect(a, b, cfg) => {
                self.link(a, b, cfg);
            }
            Action::Migrate {
                flow,
                responder,
                link,
            } => {
                let (Some(f), Some(l)) = (self.flows.get(flow), self.links.get(link)) else {
                    return;
                };
                let (node, sid, stream) = if responder {
                    (
                        f.spec.acceptor,
                        f.at_acceptor,
                        if l.a == f.spec.acceptor { l.sa } else { l.sb },
                    )
                } else {
                    (
                        f.spec.opener,
                        f.at_opener,
                        if l.a == f.spec.opener { l.sa } else { l.sb },
                    )
                };
                if let Some(sid) = sid {
                    let _ = self.nodes[node].migrate(now, sid, stream);
                }
            }
            Action::Drain { link, from_b } => {
                let Some(l) = self.links.get(link) else {
                    return;
                };
                let (node, stream) = if from_b { (l.b, l.sb) } else { (l.a, l.sa) };
                let _ = self.nodes[node].drain_stream(now, stream);
            }
            Action::SetLatency(li, lat) => {
                if let Some(l) = self.links.get_mut(li) {
                    l.config.latency = lat;
                }
            }
        }
    }

    fn collect_events(&mut self) {
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
            Event::StreamDown { stream, .. } => {
                // The node closed this stream: like a driver, close the
                // transport. The other end sees the close after the bytes
                // already in flight (an orderly TCP FIN), via an empty marker.
                let now = self.now;
                if let Some(l) = self.links.iter_mut().find(|l| {
                    l.alive && ((l.a == n && l.sa == *stream) || (l.b == n && l.sb == *stream))
                }) {
                    let latency = l.config.latency;
                    let d = if l.a == n { &mut l.ab } else { &mut l.ba };
                    let at = d
                        .queue
                        .back()
                        .map_or(now + latency, |(t, _)| (*t).max(now + latency));
                    d.queue.push_back((at, Bytes::new()));
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
                if let Some((i, acceptor)) = self.by_session.remove(&(n, *session)) {
                    let f = &mut self.flows[i];
                    if acceptor {
                        f.closed_acceptor = Some(reason.clone());
                    } else {
                        f.closed_opener = Some(reason.clone());
                    }
                }
            }
            _ => {}
        }
    }

    /// Writes whatever the workload's writers can write now.
    fn pump_app(&mut self) {
        for i in 0..self.flows.len() {
            for acceptor in [false, true] {
                self.write_flow(i, acceptor);
            }
        }
    }

    fn write_flow(&mut self, i: usize, acceptor: bool) {
        let f = &self.flows[i];
        let (node, sid, half) = if acceptor {
            (f.spec.acceptor, f.at_acceptor, &f.down)
        } else {
            (f.spec.opener, f.at_opener, &f.up)
        };
        let Some(sid) = sid else { return };
        if half.blocked || half.finished {
            return;
        }
        let max_write = f.spec.max_write.max(1);
        let (key, mut written, total) = (half.key, half.written, half.total);
        let mut chunk = vec![0u8; max_write];
        let Some(mut s) = self.nodes[node].session(sid) else {
            return;
        };
        let mut blocked = false;
        while written < total {
            let want =
                (1 + self.rng.next_u64() as usize % max_write).min((total - written) as usize);
            fill_pattern(key, written, &mut chunk[..want]);
            match s.write(&chunk[..want]) {
                Ok(n) => written += n as u64,
                Err(WriteError::Blocked) => {
                    blocked = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let finished = written == total;
        if finished {
            s.finish();
        }
        let f = &mut self.flows[i];
        let half = if acceptor { &mut f.down } else { &mut f.up };
        half.written = written;
        half.blocked = blocked;
        half.finished = finished;
    }

    fn read_flow(&mut self, i: usize, acceptor: bool) {
        let f = &self.flows[i];
        let (node, sid, half) = if acceptor {
            (f.spec.acceptor, f.at_acceptor, &f.up)
        } else {
            (f.spec.opener, f.at_opener, &f.down)
        };
        let Some(sid) = sid else { return };
        let max_read = f.spec.max_read.max(1);
        let (key, mut read, total) = (half.key, half.read, half.total);
        let mut eof = half.eof;
        let mut errors = Vec::new();
        let mut buf = vec![0u8; max_read];
        let mut expect = vec![0u8; max_read];
        if let Some(mut s) = self.nodes[node].session(sid) {
            loop {
                let want = 1 + self.rng.next_u64() as usize % max_read;
                match s.read(&mut buf[..want]) {
                    Ok(0) => {
                        if read != total {
                            errors.push(format!("flow {i}: EOF after {read} of {total} bytes"));
                        }
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        fill_pattern(key, read, &mut expect[..n]);
                        if buf[..n] != expect[..n] {
                            let at = (0..n).find(|k| buf[*k] != expect[*k]).unwrap_or(0);
                            errors.push(format!(
                                "flow {i}: wrong byte at offset {}",
                                read + at as u64
                            ));
                            break;
                        }
                        read += n as u64;
                        if read > total {
                            errors.push(format!("flow {i}: {read} bytes read, only {total} sent"));
                            break;
                        }
                    }
                    Err(ReadError::Blocked) => break,
                    Err(e) => {
                        errors.push(format!("flow {i}: read error {e}"));
                        break;
                    }
                }
            }
        }
        let f = &mut self.flows[i];
        let half = if acceptor { &mut f.up } else { &mut f.down };
        half.read = read;
        half.eof = eof;
        f.errors.extend(errors);
    }

    /// Checks the oracle: every flow delivered every byte exactly once and in
    /// order both ways and closed gracefully (or was rejected as planned).
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
        if problems.is_empty() {
            Ok(())
        } else {
            let n = problems.len();
            problems.truncate(20);
            Err(format!("{n} problems:\n{}", problems.join("\n")))
        }
    }

    /// Delivers the oldest chunk queued on `link` in one direction (`to_a`:
    /// towards the dialer) right now, ignoring its scheduled time: lets a
    /// fuzzer or a test choose any interleaving of streams. Returns false if
    /// nothing was queued.
    pub fn deliver_one(&mut self, link: usize, to_a: bool) -> bool {
        self.pump_app();
        self.pull_output();
        let now = self.now;
        let Some(l) = self.links.get_mut(link) else {
            return false;
        };
        if !l.alive {
            return false;
        }
        let (d, node, stream) = if to_a {
            (&mut l.ba, l.a, l.sa)
        } else {
            (&mut l.ab, l.b, l.sb)
        };
        let Some((_, data)) = d.queue.pop_front() else {
            return false;
        };
        d.in_flight -= data.len();
        if data.is_empty() {
            l.alive = false;
            self.nodes[node].handle_transport_closed(now, stream, "peer closed the transport");
        } else {
            self.nodes[node].handle_input(now, stream, &data);
        }
        self.collect_events();
        true
    }

    /// Advances virtual time by `d`, running timers but delivering nothing.
    pub fn advance(&mut self, d: Duration) {
        self.pump_app();
        self.pull_output();
        self.now += d;
        let now = self.now;
        for n in 0..self.nodes.len() {
            if self.nodes[n].poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[n].handle_timeout(now);
            }
        }
        self.collect_events();
    }

    /// Applies a scripted action now.
    pub fn act(&mut self, action: Action) {
        self.apply(action);
        self.collect_events();
    }

    /// Events of one kind, for assertions.
    pub fn events_matching(&self, f: impl Fn(&Event) -> bool) -> Vec<(Timestamp, usize, Event)> {
        self.log.iter().filter(|(_, _, e)| f(e)).cloned().collect()
    }
}

/// Fuzzing harnesses built on the simulator; also run by ordinary tests so
/// they stay correct where no fuzzer is installed.
pub mod fuzzing {
    use super::*;

    /// Interprets `data` as a schedule: which stream delivers its next chunk,
    /// when migrations start and from which side, when time passes (and, with
    /// `kills`, when streams die or new ones come up). Then lets the run
    /// finish and checks the oracle. Never panics on any input.
    pub fn run_ordering(data: &[u8], streams: usize, kills: bool) -> Result<(), String> {
        let mut it = data.iter().copied();
        let seed = u64::from(it.next().unwrap_or(0));
        let config = Config {
            recv_window: 2048,
            send_buffer: 2048,
            keepalive_interval: Duration::from_millis(300),
            dead_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        let mut sim = Sim::new(seed, 2, config);
        let trace = std::env::var("ASTRAL_SIM_TRACE").is_ok();
        sim.keep_log = trace;
        let streams = streams.clamp(2, 3);
        for i in 0..streams {
            let (a, b) = if i == 2 { (1, 0) } else { (0, 1) };
            sim.link(
                a,
                b,
                LinkConfig {
                    latency: Duration::from_millis(1),
                    bandwidth: None,
                    buffer: 1 << 20,
                },
            );
        }
        // Small flows with a small window: many records, many interleavings,
        // and fast enough for a fuzzer to try thousands of schedules.
        let up = u64::from(it.next().unwrap_or(7)) * 64;
        let down = u64::from(it.next().unwrap_or(3)) * 48;
        let mut f1 = FlowSpec::new(0, 1, up, down);
        f1.max_write = 1 + usize::from(it.next().unwrap_or(0)) * 8;
        let mut f2 = FlowSpec::new(1, 0, down / 2, up / 3);
        f2.max_read = 1 + usize::from(it.next().unwrap_or(0)) * 8;
        sim.open_flows(&[f1, f2]);
        let mut links = streams;
        while let Some(op) = it.next() {
            let arg = it.next().unwrap_or(0);
            match op % 8 {
                0..=3 => {
                    let link = usize::from(arg) % links;
                    sim.deliver_one(link, op % 2 == 1);
                }
                4 => {
                    let flow = usize::from(arg & 1);
                    let responder = arg & 2 != 0;
                    let link = usize::from(arg >> 2) % links;
                    sim.act(Action::Migrate {
                        flow,
                        responder,
                        link,
                    });
                }
                5 => sim.advance(Duration::from_millis(u64::from(arg % 50))),
                6 if kills => {
                    if arg & 0x80 != 0 && links < 6 {
                        sim.act(Action::Connect(
                            usize::from(arg & 1),
                            1 - usize::from(arg & 1),
                            LinkConfig::default(),
                        ));
                        links += 1;
                    } else {
                        sim.act(Action::Kill(usize::from(arg) % links));
                    }
                }
                _ => {
                    let link = usize::from(arg) % links;
                    for _ in 0..4 {
                        sim.deliver_one(link, arg & 1 == 0);
                    }
                }
            }
        }
        // Heal: a fresh stream guarantees a path (the schedule may have let
        // every stream die of silence, and a dying stream's close may still
        // be in flight), then let the run finish on its own.
        sim.act(Action::Connect(0, 1, LinkConfig::default()));
        let settled = sim.run_until_done(Duration::from_secs(300));
        let result = if settled {
            sim.check()
        } else {
            Err(format!(
                "did not settle: {}",
                sim.check().err().unwrap_or_default()
            ))
        };
        if trace && result.is_err() {
            for (t, n, e) in &sim.log {
                eprintln!("{t:?} node{n} {e:?}");
            }
            for (i, node) in sim.nodes.iter().enumerate() {
                for st in node.streams() {
                    eprintln!("node{i} {st:?}");
                }
                for se in node.sessions() {
                    eprintln!("node{i} {se:?}");
                }
            }
        }
        result
    }
}

/// A hand-driven peer that speaks the wire protocol frame by frame, for
/// tests that need a misbehaving or scripted counterpart: it completes a
/// real Noise handshake with a [`Node`] and then sends whatever frames the
/// test chooses.
pub mod raw {
    use astral_core::frame::{DecodeLimits, Frame, FrameReader};
    use astral_core::noise::Features;
    use astral_core::unstable::{Handshake, RecordCipher};
    use astral_core::{Identity, Node, StreamId, Timestamp};
    use bytes::BytesMut;

    /// A raw peer connected to one node over one stream.
    pub struct RawPeer {
        /// The raw peer's identity.
        pub identity: Identity,
        /// The node-side stream handle.
        pub stream: StreamId,
        /// The stream's wire id.
        pub wire: u64,
        cipher: RecordCipher,
        rx: BytesMut,
    }

    impl RawPeer {
        /// Dials `node` (which accepts) and completes the handshake.
        pub fn connect(node: &mut Node, now: Timestamp, seed: u8) -> RawPeer {
            let identity = Identity::from_seed([seed; 32]);
            let mut hs = Handshake::initiator(
                &identity,
                node.local_id(),
                Features::ALL,
                u64::from(seed),
                [seed; 32],
            )
            .expect("initiator");
            let stream = node.accept(now).expect("accept");
            let mut to_node = BytesMut::new();
            let mut from_node = BytesMut::new();
            for _ in 0..4 {
                to_node.clear();
                hs.poll_output(&mut to_node).expect("handshake output");
                if !to_node.is_empty() {
                    node.handle_input(now, stream, &to_node);
                }
                if hs.is_complete() {
                    break;
                }
                node.poll_transmit(now, stream, &mut from_node, usize::MAX);
                hs.handle_input(&mut from_node).expect("handshake input");
            }
            let est = hs.into_established().expect("established");
            RawPeer {
                identity,
                stream,
                wire: est.stream_id,
                cipher: est.cipher,
                rx: from_node,
            }
        }

        /// Sends `frames` in one record.
        pub fn send(&mut self, node: &mut Node, now: Timestamp, frames: &[Frame]) {
            let mut plain = Vec::new();
            for f in frames {
                f.encode(&mut plain).expect("encodable");
            }
            let mut out = BytesMut::new();
            self.cipher.seal_record(&plain, &mut out).expect("seal");
            node.handle_input(now, self.stream, &out);
        }

        /// Sends raw bytes as the transport (e.g. a forged record).
        pub fn send_raw(&mut self, node: &mut Node, now: Timestamp, bytes: &[u8]) {
            node.handle_input(now, self.stream, bytes);
        }

        /// Everything the node has for us, decoded.
        pub fn recv(&mut self, node: &mut Node, now: Timestamp) -> Vec<Frame> {
            node.poll_transmit(now, self.stream, &mut self.rx, usize::MAX);
            let mut frames = Vec::new();
            loop {
                let mut plain = BytesMut::new();
                match self.cipher.open_record(&mut self.rx, &mut plain) {
                    Ok(true) => {
                        for f in FrameReader::new(plain.freeze(), DecodeLimits::default()) {
                            frames.push(f.expect("node sends valid frames"));
                        }
                    }
                    Ok(false) => break,
                    Err(e) => panic!("node sent a bad record: {e}"),
                }
            }
            frames
        }
    }
}
