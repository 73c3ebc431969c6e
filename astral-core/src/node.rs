//! The [`Node`] facade: an [`Endpoint`] and its [`PeerEngine`]s behind one
//! single-threaded API, routing every call to the part that owns it.
//!
//! It is what the simulator, the mio driver and most applications use. A
//! driver that runs peers on different cores uses the endpoint and the
//! engines directly instead (see `docs/ARCHITECTURE.md`); both give the same
//! bytes for the same inputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::BytesMut;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::accept::AcceptPolicy;
use crate::admission::{AdmissionStats, Source};
use crate::config::ConfigError;
use crate::endpoint::{Endpoint, PolicyFactory};
use crate::engine::{PeerEngine, SessionHandle};
use crate::error::{ConnectError, DrainError, MigrateError, OpenError, SessionError};
use crate::event::Event;
use crate::session::SessionInfo;
use crate::stream::StreamInfo;
use crate::{Config, EngineId, Identity, NodeId, SessionId, StreamId, Timestamp};
use std::sync::Arc;

/// Reject codes carried by Response frames (0 = accepted).
pub mod codes {
    /// Accepted.
    pub const ACCEPTED: u8 = 0;
    /// Generic rejection by the application.
    pub const REJECTED: u8 = 1;
    /// Nothing serves this query.
    pub const NO_SUCH_SERVICE: u8 = 2;
    /// The session id collides with one in use.
    pub const ID_COLLISION: u8 = 251;
    /// Too many pending queries.
    pub const BUSY: u8 = 252;
    /// A configured limit (sessions per peer or per node, query length) was
    /// reached.
    pub const LIMIT: u8 = 253;
    /// The application did not decide within `routing_timeout`.
    pub const TIMEOUT: u8 = 254;
}

/// The sans-IO engine of one node: an endpoint and one engine per peer.
///
/// ```
/// use astral_core::{Config, Identity, Node, Timestamp};
/// let mut a = Node::new(Identity::from_seed([1; 32]), Config::default(), 1).unwrap();
/// let mut b = Node::new(Identity::from_seed([2; 32]), Config::default(), 2).unwrap();
/// let now = Timestamp::ZERO;
/// let sa = a.connect(now, b.local_id()).unwrap();
/// let sb = b.accept(now).unwrap();
/// // Shuttle bytes until both sides are up (a driver does this with sockets).
/// let mut buf = bytes::BytesMut::new();
/// for _ in 0..4 {
///     buf.clear();
///     a.poll_transmit(now, sa, &mut buf, usize::MAX);
///     b.handle_input(now, sb, &buf);
///     buf.clear();
///     b.poll_transmit(now, sb, &mut buf, usize::MAX);
///     a.handle_input(now, sa, &buf);
/// }
/// assert!(a.streams().any(|s| s.id == sa && s.peer == Some(b.local_id())));
/// ```
pub struct Node {
    endpoint: Endpoint,
    /// Engines by slot index (`EngineId::index`).
    engines: Vec<Option<PeerEngine>>,
    /// Established streams and their engine (handshaking ones are in the
    /// endpoint).
    owner: BTreeMap<StreamId, EngineId>,
    /// Each engine's next deadline, ordered.
    deadlines: BTreeSet<(Timestamp, EngineId)>,
    deadline_of: Vec<Option<Timestamp>>,
    events: VecDeque<Event>,
    /// Engines lent out through a `SessionHandle` since the last sync.
    dirty: Vec<EngineId>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("endpoint", &self.endpoint)
            .field("engines", &self.engines.iter().flatten().count())
            .field("streams", &self.owner.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with `identity`, drawing all randomness (its incarnation,
    /// handshake ephemerals, stream and session ids, ping nonces, hash keys)
    /// from `seed`. Fails if `config` cannot work.
    ///
    /// A 64-bit seed suits tests and simulations; production drivers should
    /// use [`Node::with_seed_bytes`] with 32 bytes from the OS so handshake
    /// ephemerals carry full entropy.
    pub fn new(identity: Identity, config: Config, seed: u64) -> Result<Node, ConfigError> {
        let mut bytes = [0u8; 32];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        Self::with_seed_bytes(identity, config, bytes)
    }

    /// Like [`Node::new`] with a full 256-bit seed.
    pub fn with_seed_bytes(
        identity: Identity,
        config: Config,
        seed: [u8; 32],
    ) -> Result<Node, ConfigError> {
        Ok(Node {
            endpoint: Endpoint::new(identity, config, seed)?,
            engines: Vec::new(),
            owner: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            deadline_of: Vec::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
        })
    }

    /// This node's identity.
    pub fn local_id(&self) -> NodeId {
        self.endpoint.local_id()
    }

    /// This node instance's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.endpoint.incarnation()
    }

    /// States in every later handshake that this instance replaces the
    /// earlier instance `previous` of the same identity, which is gone; see
    /// [`Endpoint::set_supersedes`] (only for a caller that knows no twin
    /// runs with this key).
    pub fn set_supersedes(&mut self, previous: Option<u64>) {
        self.endpoint.set_supersedes(previous);
    }

    /// The earlier instance this one says it replaces
    /// ([`Node::set_supersedes`]).
    pub fn supersedes(&self) -> Option<u64> {
        self.endpoint.supersedes()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.endpoint.config()
    }

    /// Replaces how new peers get their placement policy.
    pub fn set_policy_factory(&mut self, factory: PolicyFactory) {
        self.endpoint.set_policy_factory(factory);
    }

    /// Sets who may connect (`None`: anyone); see
    /// [`Endpoint::set_accept_policy`]. A refused dialer's stream ends with
    /// [`StreamCloseReason::NotAllowed`](crate::StreamCloseReason::NotAllowed)
    /// before any session or peer state exists for it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use astral_core::{AllowList, Config, Identity, Node};
    /// let friend = Identity::from_seed([2; 32]).node_id();
    /// let mut n = Node::new(Identity::from_seed([1; 32]), Config::default(), 1).unwrap();
    /// n.set_accept_policy(Some(Arc::new([friend].into_iter().collect::<AllowList>())));
    /// ```
    pub fn set_accept_policy(&mut self, policy: Option<Arc<dyn AcceptPolicy>>) {
        self.endpoint.set_accept_policy(policy);
    }

    /// Counters of the inbound handshake admission (`docs/SECURITY.md`).
    pub fn admission_stats(&self) -> AdmissionStats {
        self.endpoint.admission_stats()
    }

    // ----- routing -------------------------------------------------------

    fn engine(&self, id: EngineId) -> Option<&PeerEngine> {
        self.engines
            .get(id.index())?
            .as_ref()
            .filter(|e| e.id() == id)
    }

    fn engine_mut(&mut self, id: EngineId) -> Option<&mut PeerEngine> {
        self.engines
            .get_mut(id.index())?
            .as_mut()
            .filter(|e| e.id() == id)
    }

    #[cfg(test)]
    pub(crate) fn engine_for_test(&mut self, id: EngineId) -> Option<&mut PeerEngine> {
        self.dirty.push(id);
        self.engine_mut(id)
    }

    fn insert_engine(&mut self, engine: PeerEngine) {
        let i = engine.id().index();
        if self.engines.len() <= i {
            self.engines.resize_with(i + 1, || None);
            self.deadline_of.resize(i + 1, None);
        }
        self.engines[i] = Some(engine);
    }

    /// After any call into engine `id`: collect its events, file its next
    /// deadline, and retire it once nothing is left in it.
    fn sync(&mut self, id: EngineId) {
        let Some(e) = self.engines.get_mut(id.index()).and_then(|e| e.as_mut()) else {
            return;
        };
        if e.id() != id {
            return;
        }
        while let Some(ev) = e.poll_event() {
            self.events.push_back(ev);
        }
        let next = e.poll_timeout();
        let idle = e.is_idle();
        if let Some(old) = self.deadline_of[id.index()].take() {
            self.deadlines.remove(&(old, id));
        }
        if idle {
            self.engines[id.index()] = None;
            self.endpoint.retire_engine(id);
            return;
        }
        if let Some(t) = next {
            self.deadlines.insert((t, id));
            self.deadline_of[id.index()] = Some(t);
        }
    }

    /// Syncs engines lent out through [`Node::session`].
    fn sync_dirty(&mut self) {
        while let Some(id) = self.dirty.pop() {
            self.sync(id);
        }
    }

    /// Moves endpoint events to the node's queue and hands completed
    /// handshakes to their engines.
    fn sync_endpoint(&mut self, now: Timestamp) {
        while let Some(ev) = self.endpoint.poll_event() {
            self.events.push_back(ev);
        }
        while let Some(mut ns) = self.endpoint.poll_new_stream() {
            if let Some(e) = ns.take_created() {
                self.insert_engine(e);
            }
            for old in ns.superseded().to_vec() {
                if let Some(e) = self.engine_mut(old.engine) {
                    e.handle_superseded(now, old.how);
                }
                self.sync(old.engine);
            }
            let (sid, eid) = (ns.stream(), ns.engine());
            match self.engine_mut(eid) {
                Some(e) => {
                    e.add_stream(now, ns);
                    if e.has_stream(sid) {
                        self.owner.insert(sid, eid);
                    }
                }
                None => continue,
            }
            self.sync(eid);
        }
    }

    // ----- streams -------------------------------------------------------

    /// Starts a stream to `remote` over a transport the driver just opened;
    /// the first handshake message is then available from `poll_transmit`.
    pub fn connect(&mut self, now: Timestamp, remote: NodeId) -> Result<StreamId, ConnectError> {
        let r = self.endpoint.connect(now, remote);
        self.sync_endpoint(now);
        r
    }

    /// Registers a transport the driver accepted without knowing where it
    /// comes from; this node answers the handshake and learns the peer's
    /// identity from it. Drivers that know the peer's address use
    /// [`Node::accept_from`].
    pub fn accept(&mut self, now: Timestamp) -> Result<StreamId, ConnectError> {
        self.accept_from(now, None)
    }

    /// Registers a transport the driver accepted from `source` (see
    /// [`driver::source_of`](crate::driver::source_of)): admission bounds
    /// the handshakes served at once per address, per prefix and over the
    /// node, and may evict the stalest handshake of the busiest source to
    /// make room ([`Endpoint::accept_from`]).
    pub fn accept_from(
        &mut self,
        now: Timestamp,
        source: Option<Source>,
    ) -> Result<StreamId, ConnectError> {
        let r = self.endpoint.accept_from(now, source);
        self.sync_endpoint(now);
        r
    }

    /// Ciphertext from the transport of `stream`.
    ///
    /// Errors are not returned: a bad record or frame closes that stream
    /// (reported as `Event::StreamDown` with the reason) and never affects
    /// other streams.
    pub fn handle_input(&mut self, now: Timestamp, stream: StreamId, data: &[u8]) {
        self.sync_dirty();
        if let Some(&eid) = self.owner.get(&stream) {
            if let Some(e) = self.engine_mut(eid) {
                e.handle_input(now, stream, data);
            }
            self.after_engine_call(eid, stream);
        } else {
            self.endpoint.handle_input(now, stream, data);
            self.sync_endpoint(now);
        }
    }

    /// Like [`Node::handle_input`] with an owned buffer: no copy when
    /// nothing is pending from earlier input.
    pub fn handle_input_owned(&mut self, now: Timestamp, stream: StreamId, data: BytesMut) {
        self.sync_dirty();
        if let Some(&eid) = self.owner.get(&stream) {
            if let Some(e) = self.engine_mut(eid) {
                e.handle_input_owned(now, stream, data);
            }
            self.after_engine_call(eid, stream);
        } else {
            self.endpoint.handle_input_owned(now, stream, data);
            self.sync_endpoint(now);
        }
    }

    /// After a call that may have closed `stream` in its engine.
    fn after_engine_call(&mut self, eid: EngineId, stream: StreamId) {
        if !self.engine(eid).is_some_and(|e| e.has_stream(stream)) {
            self.owner.remove(&stream);
        }
        self.forget_closed_streams(eid);
        self.sync(eid);
    }

    /// Drops routes of streams engine `eid` closed (a call on one stream can
    /// close others, e.g. a drain completing).
    fn forget_closed_streams(&mut self, eid: EngineId) {
        let Some(e) = self.engine(eid) else {
            self.owner.retain(|_, o| *o != eid);
            return;
        };
        let gone: Vec<StreamId> = self
            .owner
            .iter()
            .filter(|(s, o)| **o == eid && !e.has_stream(**s))
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            self.owner.remove(&s);
        }
    }

    /// The driver's transport for `stream` ended (EOF, error, reset).
    pub fn handle_transport_closed(&mut self, now: Timestamp, stream: StreamId, reason: &str) {
        self.sync_dirty();
        if let Some(&eid) = self.owner.get(&stream) {
            if let Some(e) = self.engine_mut(eid) {
                e.handle_transport_closed(now, stream, reason);
            }
            self.after_engine_call(eid, stream);
        } else {
            self.endpoint.handle_transport_closed(now, stream, reason);
            self.sync_endpoint(now);
        }
    }

    /// Leaves gracefully: every peer is told (a Goodbye on each of its
    /// streams) that this node instance is going away, so its sessions end
    /// at once on both sides (`CloseReason::Shutdown` here,
    /// `CloseReason::PeerShutdown` there) instead of waiting for a recovery
    /// that cannot succeed. Handshakes in progress are abandoned; each
    /// established stream closes once its Goodbye has been pulled with
    /// [`Node::poll_transmit`] (`StreamDown` with
    /// [`StreamCloseReason::Shutdown`](crate::StreamCloseReason::Shutdown):
    /// the driver writes out what it pulled before closing the transport,
    /// see [`driver::linger`](crate::driver::linger)), or after 2 s if the
    /// transport takes nothing. From then on `connect`, `accept` and
    /// `open_session` fail with `ShutDown`. Bytes not yet delivered are
    /// lost, as with a reset: finish sessions and wait for them to close
    /// first to deliver them. Idempotent.
    ///
    /// ```
    /// use astral_core::{Config, Event, Identity, Node, StreamCloseReason, Timestamp};
    /// let mut a = Node::new(Identity::from_seed([1; 32]), Config::default(), 1).unwrap();
    /// let mut b = Node::new(Identity::from_seed([2; 32]), Config::default(), 2).unwrap();
    /// let now = Timestamp::ZERO;
    /// let (sa, sb) = (a.connect(now, b.local_id()).unwrap(), b.accept(now).unwrap());
    /// let mut buf = bytes::BytesMut::new();
    /// let mut shuttle = |a: &mut Node, b: &mut Node| {
    ///     for _ in 0..4 {
    ///         buf.clear();
    ///         a.poll_transmit(now, sa, &mut buf, usize::MAX);
    ///         b.handle_input(now, sb, &buf);
    ///         buf.clear();
    ///         b.poll_transmit(now, sb, &mut buf, usize::MAX);
    ///         a.handle_input(now, sa, &buf);
    ///     }
    /// };
    /// shuttle(&mut a, &mut b);
    /// a.shutdown(now);
    /// shuttle(&mut a, &mut b);
    /// let down = |n: &mut Node| {
    ///     std::iter::from_fn(|| n.poll_event()).find_map(|e| match e {
    ///         Event::StreamDown { reason, .. } => Some(reason),
    ///         _ => None,
    ///     })
    /// };
    /// assert_eq!(down(&mut a), Some(StreamCloseReason::Shutdown));
    /// assert_eq!(down(&mut b), Some(StreamCloseReason::PeerShutdown));
    /// ```
    pub fn shutdown(&mut self, now: Timestamp) {
        self.sync_dirty();
        self.endpoint.shutdown(now);
        self.sync_endpoint(now);
        let ids: Vec<EngineId> = self.engines.iter().flatten().map(|e| e.id()).collect();
        for id in ids {
            if let Some(e) = self.engine_mut(id) {
                e.shutdown(now);
            }
            self.sync(id);
        }
    }

    /// Whether [`Node::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.endpoint.is_shut_down()
    }

    /// Closes a stream at the application's request. Its sessions resume on
    /// other streams to the peer (or close after `recovery_timeout`).
    pub fn close_stream(&mut self, now: Timestamp, stream: StreamId) {
        self.sync_dirty();
        if let Some(&eid) = self.owner.get(&stream) {
            if let Some(e) = self.engine_mut(eid) {
                e.close_stream(now, stream);
            }
            self.after_engine_call(eid, stream);
        } else {
            self.endpoint.close_stream(now, stream);
            self.sync_endpoint(now);
        }
    }

    /// Appends ciphertext for `stream` to `out`: handshake messages or whole
    /// records, until about `max_bytes` were written or nothing is left.
    /// Returns the number of bytes appended. Call it whenever the transport
    /// can take more (after any `handle_*` call or API call).
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> usize {
        self.sync_dirty();
        let mut n = 0;
        if self.endpoint.has_stream(stream) {
            n = self.endpoint.poll_transmit(now, stream, out, max_bytes);
            self.sync_endpoint(now);
        }
        if let Some(&eid) = self.owner.get(&stream) {
            if let Some(e) = self.engine_mut(eid) {
                n += e.poll_transmit(now, stream, out, max_bytes.saturating_sub(n));
            }
            self.after_engine_call(eid, stream);
        }
        n
    }

    /// Whether `stream` has output the driver should pull now.
    pub fn wants_transmit(&self, stream: StreamId) -> bool {
        match self.owner.get(&stream) {
            Some(&eid) => self.engine(eid).is_some_and(|e| e.wants_transmit(stream)),
            None => self.endpoint.wants_transmit(stream),
        }
    }

    /// Snapshots of every stream, handshaking or established, by handle.
    pub fn streams(&self) -> impl Iterator<Item = StreamInfo> + '_ {
        let mut all: Vec<StreamInfo> = self.endpoint.streams().collect();
        for e in self.engines.iter().flatten() {
            all.extend(e.streams());
        }
        all.sort_by_key(|s| s.id);
        all.into_iter()
    }

    /// Snapshot of one stream.
    pub fn stream_info(&self, id: StreamId) -> Option<StreamInfo> {
        match self.owner.get(&id) {
            Some(&eid) => self.engine(eid)?.stream_info(id),
            None => self.endpoint.stream_info(id),
        }
    }

    /// Established streams to `peer` (its current incarnation).
    pub fn peer_streams(&self, peer: NodeId) -> Vec<StreamId> {
        self.endpoint
            .route(peer)
            .and_then(|id| self.engine(id))
            .map(|e| e.stream_ids())
            .unwrap_or_default()
    }

    /// Peers with at least one established stream.
    pub fn linked_peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self
            .engines
            .iter()
            .flatten()
            .filter(|e| !e.stream_ids().is_empty())
            .map(|e| e.peer())
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// Number of per-peer engines alive (peers with streams, sessions or
    /// recently closed sessions).
    pub fn peer_count(&self) -> usize {
        self.engines.iter().flatten().count()
    }

    /// Moves every session off `stream` (one round trip for all of them),
    /// asks the peer to do the same, then closes the stream.
    pub fn drain_stream(&mut self, now: Timestamp, stream: StreamId) -> Result<usize, DrainError> {
        self.sync_dirty();
        let eid = *self.owner.get(&stream).ok_or(DrainError::UnknownStream)?;
        let r = self
            .engine_mut(eid)
            .ok_or(DrainError::UnknownStream)?
            .drain_stream(now, stream);
        self.after_engine_call(eid, stream);
        r
    }

    // ----- sessions ------------------------------------------------------

    /// Opens a session with `peer` for `query`. The query goes out on the
    /// best stream to the peer, or as soon as one comes up; without an
    /// answer within `routing_timeout` the session closes with
    /// `RoutingTimeout`.
    pub fn open_session(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        query: &str,
    ) -> Result<SessionId, OpenError> {
        self.sync_dirty();
        let r = self.endpoint.engine_for(peer)?;
        if let Some(e) = r.created {
            self.insert_engine(e);
        }
        let result = match self.engine_mut(r.id) {
            Some(e) => e.open_session(now, query),
            None => Err(OpenError::NodeSessionLimit),
        };
        self.sync(r.id);
        result
    }

    /// Accepts an inbound query (`Event::Query`): the session opens.
    pub fn accept_query(&mut self, now: Timestamp, id: SessionId) -> Result<(), SessionError> {
        self.sync_dirty();
        let e = self.engine_mut(id.engine()).ok_or(SessionError::Unknown)?;
        let r = e.accept_query(now, id);
        self.sync(id.engine());
        r
    }

    /// Rejects an inbound query with `code` (non-zero; 0 becomes 1).
    pub fn reject_query(
        &mut self,
        now: Timestamp,
        id: SessionId,
        code: u8,
    ) -> Result<(), SessionError> {
        self.sync_dirty();
        let e = self.engine_mut(id.engine()).ok_or(SessionError::Unknown)?;
        let r = e.reject_query(now, id, code);
        self.sync(id.engine());
        r
    }

    /// A borrowed view of one session, for reading, writing and closing.
    pub fn session(&mut self, id: SessionId) -> Option<SessionHandle<'_>> {
        self.sync_dirty();
        self.engine(id.engine())?.session_info(id)?;
        self.dirty.push(id.engine());
        self.engine_mut(id.engine())?.session(id)
    }

    /// Moves `session` to `target` (another stream with the same peer)
    /// without pausing writes.
    pub fn migrate(
        &mut self,
        now: Timestamp,
        session: SessionId,
        target: StreamId,
    ) -> Result<(), MigrateError> {
        self.sync_dirty();
        let eid = session.engine();
        self.engine(eid)
            .and_then(|e| e.session_info(session))
            .ok_or(MigrateError::UnknownSession)?;
        match self.owner.get(&target) {
            None => return Err(MigrateError::TargetUnknown),
            Some(o) if *o != eid => return Err(MigrateError::WrongPeer),
            Some(_) => {}
        }
        let r = self
            .engine_mut(eid)
            .ok_or(MigrateError::UnknownSession)?
            .migrate(now, session, target);
        self.sync(eid);
        r
    }

    /// Pins `session` where it is (automatic placement at both ends leaves
    /// it alone until it is unpinned or its stream dies) or releases it;
    /// see [`PeerEngine::pin_session`].
    pub fn pin_session(
        &mut self,
        now: Timestamp,
        session: SessionId,
        pinned: bool,
    ) -> Result<(), MigrateError> {
        self.sync_dirty();
        let eid = session.engine();
        let r = self
            .engine_mut(eid)
            .ok_or(MigrateError::UnknownSession)?
            .pin_session(now, session, pinned);
        self.sync(eid);
        r
    }

    /// Whether this node's application, or the peer's, pinned `session`:
    /// `(local, peer)`.
    pub fn session_pins(&self, session: SessionId) -> Option<(bool, bool)> {
        self.engine(session.engine())?.session_pins(session)
    }

    /// Sets this node's placement preference for an established `stream`
    /// and announces it to the peer; see
    /// [`PeerEngine::set_stream_preference`].
    pub fn set_stream_preference(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        preference: crate::StreamPreference,
    ) -> Result<(), MigrateError> {
        self.sync_dirty();
        let eid = *self.owner.get(&stream).ok_or(MigrateError::TargetUnknown)?;
        let r = self
            .engine_mut(eid)
            .ok_or(MigrateError::TargetUnknown)?
            .set_stream_preference(now, stream, preference);
        self.after_engine_call(eid, stream);
        r
    }

    /// Snapshot of one session.
    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        self.engine(id.engine())?.session_info(id)
    }

    /// Snapshots of every session, by engine then slot (deterministic).
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.engines.iter().flatten().flat_map(|e| e.sessions())
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.engines
            .iter()
            .flatten()
            .map(|e| e.session_count())
            .sum()
    }

    /// Bytes of the memory budget the node's sessions have reserved now
    /// (see [`Endpoint::memory_reserved`]).
    pub fn memory_reserved(&self) -> u64 {
        self.endpoint.memory_reserved()
    }

    // ----- timers and events ------------------------------------------------

    /// When `handle_timeout` should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        // Engines lent out through `session()` may have moved their
        // deadline since their last sync: ask them directly.
        let lent = self
            .dirty
            .iter()
            .filter_map(|id| self.engine(*id)?.poll_timeout());
        let filed = self.deadlines.first().map(|(t, _)| *t);
        self.endpoint
            .poll_timeout()
            .into_iter()
            .chain(filed)
            .chain(lent)
            .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.sync_dirty();
        self.endpoint.handle_timeout(now);
        self.sync_endpoint(now);
        while let Some(&(t, eid)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(slot) = self.deadline_of.get_mut(eid.index()) {
                *slot = None;
            }
            if let Some(e) = self.engine_mut(eid) {
                e.handle_timeout(now);
            }
            self.forget_closed_streams(eid);
            self.sync(eid);
        }
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.sync_dirty();
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 1024 {
            // A burst (e.g. 100k queries) must not leave its peak behind.
            self.events.shrink_to(64);
        }
        e
    }

    /// Draws a value from the node's seeded generator (drivers use it for
    /// jitter so that runs stay reproducible).
    pub fn random_u64(&mut self) -> u64 {
        self.endpoint.random_u64()
    }

    /// Fuzzing only: an established stream to `peer` with the no-security
    /// record cipher (records are `u16 len || plaintext || 16 zero bytes`),
    /// as if a handshake had completed (the peer dialled; incarnation 0).
    #[cfg(feature = "fuzzing")]
    pub fn insert_established_for_fuzzing(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        wire: u64,
    ) -> Option<StreamId> {
        self.insert_established_for_fuzzing_from(now, peer, 0, wire)
    }

    /// Fuzzing only: like [`Node::insert_established_for_fuzzing`], from
    /// the peer's incarnation `incarnation` (its [`Node::incarnation`]), so
    /// that streams it later dials with a real handshake reach the same
    /// peer engine instead of looking like a restarted peer.
    #[cfg(feature = "fuzzing")]
    pub fn insert_established_for_fuzzing_from(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        incarnation: u64,
        wire: u64,
    ) -> Option<StreamId> {
        self.sync_dirty();
        let ns = self
            .endpoint
            .established_for_fuzzing(peer, incarnation, wire)?;
        self.endpoint_ready_push(ns);
        let id = self.owner_of_next_ready();
        self.sync_endpoint(now);
        id.filter(|s| self.owner.contains_key(s))
    }

    #[cfg(feature = "fuzzing")]
    fn endpoint_ready_push(&mut self, ns: crate::engine::NewStream) {
        self.endpoint.push_ready(ns);
    }

    #[cfg(feature = "fuzzing")]
    fn owner_of_next_ready(&self) -> Option<StreamId> {
        self.endpoint.last_ready_stream()
    }
}
