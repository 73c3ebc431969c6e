//! The endpoint: the node-level part of the engine.
//!
//! Like quinn-proto's `Endpoint`, it owns what is shared by all peers:
//! streams still in their Noise handshake (unauthenticated, so no peer
//! state exists for them yet) and their admission (`admission`: which
//! inbound handshakes are served, wait or are evicted), the accept policy
//! on a dialer's identity (`accept`), the routing of authenticated streams
//! to their peer's engine by identity and incarnation, the node-wide
//! limits, and the seeds of new engines. Everything about one peer lives in
//! its [`PeerEngine`].
//!
//! A driver that runs peers on different threads locks the endpoint only
//! for handshakes and routing, and each engine on its own; the
//! [`Node`](crate::Node) facade does all of it in one place.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::accept::AcceptPolicy;
use crate::admission::{Admission, AdmissionStats, Admitted, Source};
use crate::config::ConfigError;
use crate::engine::{NewStream, PeerEngine, Superseded, Supersession};
use crate::error::{ConnectError, OpenError};
use crate::event::{Event, StreamCloseReason};
use crate::noise::handshake::screen_early_input;
use crate::noise::{Features, Handshake};
use crate::policy::{Policy, RttPolicy};
use crate::shared::NodeShared;
use crate::slab::Slab;
use crate::stream::{Rtt, StreamInfo, StreamState, StreamStats};
use crate::timer::{EndpointTimer, TimerTable};
use crate::{Config, EngineId, Identity, NodeId, StreamId, Timestamp};

/// Builds the placement policy of each new engine.
pub type PolicyFactory = Arc<dyn Fn(&Config) -> Box<dyn Policy> + Send + Sync>;

/// A stream in its handshake.
struct Handshaking {
    /// `None` while an inbound stream waits for a handshake slot (its
    /// bytes wait in `rx`).
    hs: Option<Handshake>,
    /// Bytes received and not yet consumed by the handshake.
    rx: BytesMut,
    created: Timestamp,
    initiator: bool,
    stats: StreamStats,
}

/// What the endpoint knows of an engine it created.
#[derive(Debug)]
struct EngineEntry {
    peer: NodeId,
    incarnation: Option<u64>,
    /// The engine's established streams (it keeps the count).
    streams: Arc<AtomicUsize>,
}

/// A new engine handed to its owner, or the engine that already exists.
#[derive(Debug)]
pub struct EngineRef {
    /// The engine to use.
    pub id: EngineId,
    /// The engine itself when it was just created: the caller must keep it
    /// (and route `id` to it) from now on.
    pub created: Option<PeerEngine>,
}

/// The node-level engine. See the module documentation.
pub struct Endpoint {
    shared: Arc<NodeShared>,
    identity: Identity,
    local_id: NodeId,
    incarnation: u64,
    /// The earlier instance of this identity this one replaces, stated in
    /// every handshake ([`Endpoint::set_supersedes`]).
    supersedes: Option<u64>,
    rng: ChaCha20Rng,
    next_stream: u64,
    handshakes: BTreeMap<StreamId, Handshaking>,
    /// Dialled handshakes per remote identity.
    dialing: BTreeMap<NodeId, usize>,
    timers: TimerTable<EndpointTimer>,
    admission: Admission,
    accept_policy: Option<Arc<dyn AcceptPolicy>>,
    events: VecDeque<Event>,
    ready: VecDeque<NewStream>,
    engines: Slab<EngineEntry>,
    /// The engine new sessions to a peer use (its newest incarnation).
    current: BTreeMap<NodeId, EngineId>,
    /// Engines by peer incarnation.
    by_incarnation: BTreeMap<(NodeId, u64), EngineId>,
    policy_factory: PolicyFactory,
    /// [`Endpoint::shutdown`] was called: no new streams or engines.
    shut_down: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_id", &self.local_id)
            .field("incarnation", &self.incarnation)
            .field("handshakes", &self.handshakes.len())
            .field("admission", &self.admission.stats())
            .field("engines", &self.engines.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint for `identity`, drawing all randomness (its incarnation,
    /// handshake ephemerals, stream ids, the seeds of its engines) from
    /// `seed`. Fails if `config` cannot work ([`Config::validate`]).
    pub fn new(
        identity: Identity,
        config: Config,
        seed: [u8; 32],
    ) -> Result<Endpoint, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let incarnation = rng.next_u64();
        Ok(Endpoint {
            local_id: identity.node_id(),
            identity,
            incarnation,
            supersedes: None,
            rng,
            next_stream: 1,
            handshakes: BTreeMap::new(),
            dialing: BTreeMap::new(),
            timers: TimerTable::default(),
            admission: Admission::new(&config),
            shared: NodeShared::new(config),
            accept_policy: None,
            events: VecDeque::new(),
            ready: VecDeque::new(),
            engines: Slab::default(),
            current: BTreeMap::new(),
            by_incarnation: BTreeMap::new(),
            policy_factory: Arc::new(|c: &Config| -> Box<dyn Policy> {
                Box::new(RttPolicy::new(c.migrate_rtt_gain, c.migrate_sustain))
            }),
            shut_down: false,
        })
    }

    /// This node's identity.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// This node instance's incarnation (sent in every handshake).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Says, in every handshake from now on, that this instance replaces
    /// the earlier instance `previous` of the same identity, which is gone:
    /// a peer that still has sessions with `previous` ends them at once
    /// (`CloseReason::PeerRestarted`) instead of probing its streams first
    /// (docs/PROTOCOL.md, "Supersedes"). Only a caller that *knows* no
    /// other process runs with this key may say so (the `astral` tool
    /// holds a lock on a record next to the key file): a live twin named
    /// here would have its sessions cut off. `None` (the default) says
    /// nothing; the peer then treats an unknown incarnation as a restart or
    /// a twin and probes. Set it before the first stream.
    pub fn set_supersedes(&mut self, previous: Option<u64>) {
        self.supersedes = previous.filter(|p| *p != self.incarnation);
    }

    /// The earlier instance this one says it replaces.
    pub fn supersedes(&self) -> Option<u64> {
        self.supersedes
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Replaces how new engines get their placement policy (existing
    /// engines keep theirs).
    pub fn set_policy_factory(&mut self, factory: PolicyFactory) {
        self.policy_factory = factory;
    }

    /// Sets who may connect (`None`: anyone). The policy sees each inbound
    /// stream's dialer as soon as the handshake authenticates it, before
    /// any state for that peer exists; a refused stream ends with
    /// [`StreamCloseReason::NotAllowed`]. Streams already established stay.
    pub fn set_accept_policy(&mut self, policy: Option<Arc<dyn AcceptPolicy>>) {
        self.accept_policy = policy;
    }

    /// Counters of the inbound handshake admission.
    pub fn admission_stats(&self) -> AdmissionStats {
        self.admission.stats()
    }

    fn features(&self) -> Features {
        if self.shared.config.offer_aes_gcm {
            Features::ALL
        } else {
            Features::EXTENDED_FRAMES
        }
    }

    fn alloc_stream(&mut self) -> Result<StreamId, ConnectError> {
        if self.shut_down {
            return Err(ConnectError::ShutDown);
        }
        // A 64-bit counter from 1: never 0, never exhausted in practice.
        let id = StreamId::new(self.next_stream).ok_or(ConnectError::Limit("stream ids"))?;
        if !self.shared.streams.try_acquire() {
            return Err(ConnectError::Limit("max_streams"));
        }
        self.next_stream += 1;
        Ok(id)
    }

    fn insert(&mut self, now: Timestamp, id: StreamId, hs: Option<Handshake>, initiator: bool) {
        self.handshakes.insert(
            id,
            Handshaking {
                hs,
                rx: BytesMut::new(),
                created: now,
                initiator,
                stats: StreamStats::default(),
            },
        );
        self.timers.arm(
            now + self.shared.config.handshake_timeout,
            EndpointTimer::Handshake(id),
        );
    }

    /// Starts a stream to `remote` over a transport the driver just opened;
    /// the first handshake message is then available from `poll_transmit`.
    pub fn connect(&mut self, now: Timestamp, remote: NodeId) -> Result<StreamId, ConnectError> {
        if remote == self.local_id {
            return Err(ConnectError::SelfConnect);
        }
        let dialing = self.dialing.get(&remote).copied().unwrap_or(0);
        let established = self
            .current
            .get(&remote)
            .and_then(|id| self.engines.get(id.index, id.generation))
            .map_or(0, |e| e.streams.load(Ordering::Acquire));
        if dialing + established >= self.shared.config.max_streams_per_peer {
            return Err(ConnectError::Limit("max_streams_per_peer"));
        }
        let id = self.alloc_stream()?;
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let hs = match Handshake::initiator(
            &self.identity,
            remote,
            self.features(),
            self.incarnation,
            seed,
        ) {
            Ok(hs) => hs.with_supersedes(self.supersedes),
            Err(e) => {
                self.shared.streams.release();
                return Err(ConnectError::Noise(e));
            }
        };
        *self.dialing.entry(remote).or_default() += 1;
        self.insert(now, id, Some(hs), true);
        Ok(id)
    }

    /// Registers a transport the driver accepted without knowing where it
    /// comes from (an in-memory pipe, a Unix socket): like
    /// [`Endpoint::accept_from`] with no source.
    pub fn accept(&mut self, now: Timestamp) -> Result<StreamId, ConnectError> {
        self.accept_from(now, None)
    }

    /// Registers a transport the driver accepted from `source`
    /// ([`driver::source_of`](crate::driver::source_of) makes one from the
    /// peer's address); this node answers the handshake and learns the
    /// peer's identity from it.
    ///
    /// Admission (`docs/SECURITY.md`): the handshake starts at once if its
    /// address, its prefix and the node are under their limits of handshakes
    /// served at once, otherwise the stream waits (its bytes are kept) and
    /// is served in turn. If every stream slot (`max_streams`) is taken, the
    /// stalest handshake of the busiest source is evicted
    /// ([`StreamCloseReason::HandshakeEvicted`]) to make room; the call
    /// fails only when no handshake is left to evict.
    pub fn accept_from(
        &mut self,
        now: Timestamp,
        source: Option<Source>,
    ) -> Result<StreamId, ConnectError> {
        if self.shut_down {
            return Err(ConnectError::ShutDown);
        }
        let id = StreamId::new(self.next_stream).ok_or(ConnectError::Limit("stream ids"))?;
        if !self.shared.streams.try_acquire() {
            let Some(victim) = self.admission.victim() else {
                self.admission.stats_mut().refused += 1;
                return Err(ConnectError::Limit("max_streams"));
            };
            self.admission.stats_mut().evicted += 1;
            self.fail(victim, StreamCloseReason::HandshakeEvicted);
            if !self.shared.streams.try_acquire() {
                // An engine on another thread took the slot meanwhile.
                self.admission.stats_mut().refused += 1;
                self.settle(now);
                return Err(ConnectError::Limit("max_streams"));
            }
        }
        self.next_stream += 1;
        self.insert(now, id, None, false);
        if self.admission.admit(now, id, source) == Admitted::Active {
            self.start_responder(now, id);
        }
        self.settle(now);
        Ok(id)
    }

    /// Starts the handshake of an admitted inbound stream and feeds it what
    /// arrived while it waited.
    fn start_responder(&mut self, now: Timestamp, id: StreamId) {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let wire = self.rng.next_u64();
        match Handshake::responder(
            &self.identity,
            wire,
            self.features(),
            self.incarnation,
            seed,
        ) {
            Ok(hs) => {
                if let Some(h) = self.handshakes.get_mut(&id) {
                    h.hs = Some(hs.with_supersedes(self.supersedes));
                }
                self.advance(now, id);
            }
            Err(e) => self.fail(id, StreamCloseReason::HandshakeFailed(e)),
        }
    }

    /// Serves waiting inbound streams while slots are free (after anything
    /// that may have freed one).
    fn settle(&mut self, now: Timestamp) {
        while let Some(id) = self.admission.promote(now) {
            self.start_responder(now, id);
        }
    }

    /// Whether `stream` is in its handshake here.
    pub fn has_stream(&self, stream: StreamId) -> bool {
        self.handshakes.contains_key(&stream)
    }

    /// Handshake bytes from the transport of `stream`. When the handshake
    /// completes, the stream leaves the endpoint: take it with
    /// [`Endpoint::poll_new_stream`] and give it to its engine.
    pub fn handle_input(&mut self, now: Timestamp, stream: StreamId, data: &[u8]) {
        let Some(h) = self.handshakes.get_mut(&stream) else {
            return;
        };
        h.stats.bytes_in += data.len() as u64;
        h.rx.extend_from_slice(data);
        self.advance(now, stream);
        self.settle(now);
    }

    /// Like [`Endpoint::handle_input`] with an owned buffer (no copy when
    /// nothing is pending).
    pub fn handle_input_owned(&mut self, now: Timestamp, stream: StreamId, data: BytesMut) {
        let Some(h) = self.handshakes.get_mut(&stream) else {
            return;
        };
        h.stats.bytes_in += data.len() as u64;
        if h.rx.is_empty() {
            h.rx = data;
        } else {
            h.rx.extend_from_slice(&data);
        }
        self.advance(now, stream);
        self.settle(now);
    }

    fn advance(&mut self, now: Timestamp, stream: StreamId) {
        let Some(h) = self.handshakes.get_mut(&stream) else {
            return;
        };
        let Some(hs) = h.hs.as_mut() else {
            // Waiting for a slot: keep at most one message 1.
            if let Err(e) = screen_early_input(&h.rx) {
                self.fail(stream, StreamCloseReason::HandshakeFailed(e));
            }
            return;
        };
        let before = h.rx.len();
        if let Err(e) = hs.handle_input(&mut h.rx) {
            self.fail(stream, StreamCloseReason::HandshakeFailed(e));
            return;
        }
        let complete = hs.is_complete();
        if h.rx.len() < before {
            self.admission.progress(now, stream);
        }
        if complete {
            self.complete(now, stream);
        }
    }

    /// Appends handshake messages for `stream` to `out`. Returns the number
    /// of bytes appended.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> usize {
        let _ = max_bytes; // handshake messages are under 100 bytes
        let Some(h) = self.handshakes.get_mut(&stream) else {
            return 0;
        };
        let Some(hs) = h.hs.as_mut() else {
            return 0; // waiting for a slot
        };
        let start = out.len();
        let result = hs.poll_output(out);
        let complete = hs.is_complete();
        let n = out.len() - start;
        h.stats.bytes_out += n as u64;
        if n > 0 {
            self.admission.progress(now, stream);
        }
        match result {
            Err(e) => self.fail(stream, StreamCloseReason::HandshakeFailed(e)),
            Ok(_) if complete => self.complete(now, stream),
            Ok(_) => {}
        }
        self.settle(now);
        n
    }

    /// Whether `stream` has a handshake message to send.
    pub fn wants_transmit(&self, stream: StreamId) -> bool {
        self.handshakes
            .get(&stream)
            .and_then(|h| h.hs.as_ref())
            .is_some_and(|hs| hs.wants_output())
    }

    /// The transport of a handshaking stream ended.
    pub fn handle_transport_closed(&mut self, now: Timestamp, stream: StreamId, reason: &str) {
        self.fail(
            stream,
            StreamCloseReason::TransportClosed(reason.to_string()),
        );
        self.settle(now);
    }

    /// The node is shutting down: handshakes in progress are abandoned
    /// (`StreamDown` with [`StreamCloseReason::Shutdown`]) and no stream or
    /// engine is created from now on. The owner shuts its engines down
    /// ([`PeerEngine::shutdown`]). Idempotent.
    pub fn shutdown(&mut self, now: Timestamp) {
        let _ = now;
        self.shut_down = true;
        let ids: Vec<StreamId> = self.handshakes.keys().copied().collect();
        for id in ids {
            self.fail(id, StreamCloseReason::Shutdown);
        }
    }

    /// Whether [`Endpoint::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Abandons a handshaking stream.
    pub fn close_stream(&mut self, now: Timestamp, stream: StreamId) {
        self.fail(stream, StreamCloseReason::Local);
        self.settle(now);
    }

    /// Removes a handshaking stream and reports why. Does not serve the
    /// slot it frees: callers [`settle`](Endpoint::settle) once done.
    fn fail(&mut self, stream: StreamId, reason: StreamCloseReason) {
        let Some(h) = self.handshakes.remove(&stream) else {
            return;
        };
        self.shared.streams.release();
        self.admission.remove(stream);
        let peer = h.hs.as_ref().and_then(|hs| hs.expected_remote());
        if h.initiator {
            self.undial(peer);
        }
        self.events.push_back(Event::StreamDown {
            stream,
            peer,
            reason,
        });
    }

    fn undial(&mut self, peer: Option<NodeId>) {
        if let Some(p) = peer {
            if let Some(n) = self.dialing.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.dialing.remove(&p);
                }
            }
        }
    }

    /// The handshake of `stream` finished: ask the accept policy (inbound)
    /// and route it to its engine.
    fn complete(&mut self, now: Timestamp, stream: StreamId) {
        let _ = now;
        let Some(h) = self.handshakes.remove(&stream) else {
            return;
        };
        let source = self.admission.remove(stream).flatten();
        let Some(hs) = h.hs else {
            // Only a started handshake completes.
            self.shared.streams.release();
            return;
        };
        if h.initiator {
            self.undial(hs.expected_remote());
        }
        let est = match hs.into_established() {
            Ok(e) => e,
            Err(e) => {
                self.shared.streams.release();
                self.events.push_back(Event::StreamDown {
                    stream,
                    peer: None,
                    reason: StreamCloseReason::HandshakeFailed(e),
                });
                return;
            }
        };
        if est.remote == self.local_id {
            self.shared.streams.release();
            self.events.push_back(Event::StreamDown {
                stream,
                peer: Some(est.remote),
                reason: StreamCloseReason::SelfConnect,
            });
            return;
        }
        if !h.initiator {
            // Before any state for the peer exists (no engine is looked up
            // or created for a refused identity).
            if let Some(policy) = &self.accept_policy {
                if !policy.allow(&est.remote, source.as_ref()) {
                    self.shared.streams.release();
                    self.admission.stats_mut().not_allowed += 1;
                    self.events.push_back(Event::StreamDown {
                        stream,
                        peer: Some(est.remote),
                        reason: StreamCloseReason::NotAllowed,
                    });
                    return;
                }
            }
            self.admission.stats_mut().completed += 1;
        }
        let (engine, created, superseded) =
            self.route_incarnation(est.remote, est.incarnation, est.supersedes);
        self.ready.push_back(NewStream {
            stream,
            engine,
            established: est,
            rx: h.rx,
            superseded,
            created,
        });
    }

    /// The engine for `(peer, incarnation)`: an existing one, the peer's
    /// engine that has not met any incarnation yet, or a new one (then the
    /// peer's engines of other incarnations are superseded: the one the
    /// handshake named in `supersedes` as gone, the others presumed).
    fn route_incarnation(
        &mut self,
        peer: NodeId,
        incarnation: u64,
        supersedes: Option<u64>,
    ) -> (EngineId, Option<PeerEngine>, Vec<Superseded>) {
        if let Some(&id) = self.by_incarnation.get(&(peer, incarnation)) {
            return (id, None, Vec::new());
        }
        if let Some(&id) = self.current.get(&peer) {
            if let Some(e) = self.engines.get_mut(id.index, id.generation) {
                if e.incarnation.is_none() {
                    e.incarnation = Some(incarnation);
                    self.by_incarnation.insert((peer, incarnation), id);
                    return (id, None, Vec::new());
                }
            }
        }
        let superseded: Vec<Superseded> = self
            .by_incarnation
            .range((peer, 0)..=(peer, u64::MAX))
            .map(|(&(_, inc), &engine)| Superseded {
                engine,
                how: if supersedes == Some(inc) {
                    Supersession::Announced
                } else {
                    Supersession::Presumed
                },
            })
            .collect();
        match self.create_engine(peer, Some(incarnation)) {
            Some((id, engine)) => (id, Some(engine), superseded),
            // 2^32 engines in use: reuse the current one (never happens).
            None => (
                self.current.get(&peer).copied().unwrap_or(EngineId {
                    index: u32::MAX,
                    generation: 0,
                }),
                None,
                Vec::new(),
            ),
        }
    }

    fn create_engine(
        &mut self,
        peer: NodeId,
        incarnation: Option<u64>,
    ) -> Option<(EngineId, PeerEngine)> {
        let streams = Arc::new(AtomicUsize::new(0));
        let (index, generation) = self.engines.insert(EngineEntry {
            peer,
            incarnation,
            streams: Arc::clone(&streams),
        })?;
        let id = EngineId { index, generation };
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let policy = (self.policy_factory)(&self.shared.config);
        let engine = PeerEngine::new(
            id,
            self.local_id,
            peer,
            Arc::clone(&self.shared),
            streams,
            policy,
            seed,
        );
        self.current.insert(peer, id);
        if let Some(inc) = incarnation {
            self.by_incarnation.insert((peer, inc), id);
        }
        Some((id, engine))
    }

    /// Fuzzing only: a completed "handshake" with the no-security cipher.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn established_for_fuzzing(
        &mut self,
        peer: NodeId,
        incarnation: u64,
        wire: u64,
    ) -> Option<NewStream> {
        if peer == self.local_id {
            return None;
        }
        let stream = self.alloc_stream().ok()?;
        let est = crate::noise::Established {
            remote: peer,
            stream_id: wire,
            features: Features::ALL,
            incarnation,
            supersedes: None,
            initiator: false,
            cipher: crate::noise::RecordCipher::insecure_for_fuzzing(),
        };
        let (engine, created, superseded) = self.route_incarnation(peer, incarnation, None);
        Some(NewStream {
            stream,
            engine,
            established: est,
            rx: BytesMut::new(),
            superseded,
            created,
        })
    }

    #[cfg(feature = "fuzzing")]
    pub(crate) fn push_ready(&mut self, ns: NewStream) {
        self.ready.push_back(ns);
    }

    #[cfg(feature = "fuzzing")]
    pub(crate) fn last_ready_stream(&self) -> Option<StreamId> {
        self.ready.back().map(|n| n.stream())
    }

    /// The next stream whose handshake completed, for its engine.
    pub fn poll_new_stream(&mut self) -> Option<NewStream> {
        self.ready.pop_front()
    }

    /// The engine new sessions to `peer` use, creating it if there is none.
    pub fn engine_for(&mut self, peer: NodeId) -> Result<EngineRef, OpenError> {
        if self.shut_down {
            return Err(OpenError::ShutDown);
        }
        if peer == self.local_id {
            return Err(OpenError::SelfSession);
        }
        if let Some(&id) = self.current.get(&peer) {
            return Ok(EngineRef { id, created: None });
        }
        let (id, engine) = self
            .create_engine(peer, None)
            .ok_or(OpenError::NodeSessionLimit)?;
        Ok(EngineRef {
            id,
            created: Some(engine),
        })
    }

    /// The engine new sessions to `peer` would use, if one exists.
    pub fn route(&self, peer: NodeId) -> Option<EngineId> {
        self.current.get(&peer).copied()
    }

    /// Forgets an engine its owner dropped (one that was
    /// [idle](PeerEngine::is_idle)). Its id is never issued again.
    pub fn retire_engine(&mut self, id: EngineId) {
        let Some(e) = self.engines.remove(id.index, id.generation) else {
            return;
        };
        if self.current.get(&e.peer) == Some(&id) {
            self.current.remove(&e.peer);
            // A newer-incarnation engine may remain: it becomes current.
            if let Some((_, &other)) = self
                .by_incarnation
                .range((e.peer, 0)..=(e.peer, u64::MAX))
                .find(|(_, o)| **o != id)
            {
                self.current.insert(e.peer, other);
            }
        }
        if let Some(inc) = e.incarnation {
            if self.by_incarnation.get(&(e.peer, inc)) == Some(&id) {
                self.by_incarnation.remove(&(e.peer, inc));
            }
        }
    }

    /// Bytes of the node's memory budget reserved now by all engines'
    /// sessions (receive windows and writes above their floors); never
    /// above `Config::node_memory_budget`.
    pub fn memory_reserved(&self) -> u64 {
        self.shared.memory.used()
    }

    /// Number of engines in use.
    pub fn engine_count(&self) -> usize {
        self.engines.len()
    }

    /// When [`Endpoint::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let pressure = self.admission.pressure_deadline().map(|(t, _)| t);
        self.timers
            .next_deadline()
            .into_iter()
            .chain(pressure)
            .min()
    }

    /// Runs every timer due at `now`: handshake deadlines, including the
    /// shorter one under admission pressure.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let timeout = self.shared.config.handshake_timeout;
        while let Some(EndpointTimer::Handshake(id)) = self.timers.pop_due(now) {
            let Some(h) = self.handshakes.get(&id) else {
                continue;
            };
            // Inbound: from arrival while waiting, from activation once
            // served; outbound: from the dial.
            let deadline = self.admission.deadline(id).unwrap_or(h.created + timeout);
            if now >= deadline {
                if !h.initiator {
                    self.admission.stats_mut().timed_out += 1;
                }
                self.fail(id, StreamCloseReason::HandshakeTimeout);
            } else {
                self.timers.arm(deadline, EndpointTimer::Handshake(id));
            }
        }
        // Each round removes one handshake activated before
        // `now - handshake_timeout_under_pressure`; those it serves instead
        // are activated now: the loop ends.
        while let Some((at, id)) = self.admission.pressure_deadline() {
            if at > now {
                break;
            }
            let stats = self.admission.stats_mut();
            stats.timed_out += 1;
            stats.timed_out_under_pressure += 1;
            self.fail(id, StreamCloseReason::HandshakeTimeout);
            self.settle(now);
        }
        self.settle(now);
    }

    /// Next event (`StreamDown` of failed handshakes), if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Snapshots of the handshaking streams.
    pub fn streams(&self) -> impl Iterator<Item = StreamInfo> + '_ {
        self.handshakes.iter().map(|(id, h)| info(*id, h))
    }

    /// Snapshot of one handshaking stream.
    pub fn stream_info(&self, id: StreamId) -> Option<StreamInfo> {
        self.handshakes.get(&id).map(|h| info(id, h))
    }

    /// Draws a value from the endpoint's seeded generator (drivers use it
    /// for jitter so that runs stay reproducible).
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

fn info(id: StreamId, h: &Handshaking) -> StreamInfo {
    StreamInfo {
        id,
        engine: None,
        wire_id: None,
        peer: h.hs.as_ref().and_then(|hs| hs.expected_remote()),
        initiator: h.initiator,
        state: StreamState::Handshaking,
        confirmed: false,
        features: crate::noise::Features::NONE,
        draining: false,
        suspect: false,
        rtt: Rtt::default(),
        preference: crate::StreamPreference::NORMAL,
        peer_preference: crate::StreamPreference::NORMAL,
        sessions: 0,
        stats: h.stats,
    }
}
