//! The Node: registries of streams, peers and sessions, the public
//! `handle_*` / `poll_*` API, and stream lifecycle.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use siphasher::sip::SipHasher13;
use smallvec::SmallVec;

use crate::config::Config;
use crate::error::{ConnectError, OpenError, SessionError};
use crate::event::{CloseReason, Event, StreamCloseReason};
use crate::frame::Frame;
use crate::noise::{Features, Handshake};
use crate::policy::{Candidate, Policy, RttPolicy};
use crate::session::{self, Role, Session, SessionInfo, SessionState, SessionStats};
use crate::stream::{Crypto, Stream, StreamInfo, StreamState};
use crate::timer::{TimerKey, TimerTable, ROUTING_TAG};
use crate::{Identity, NodeId, SessionId, StreamId, Timestamp};

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
    /// A configured limit (sessions per peer, query length) was reached.
    pub const LIMIT: u8 = 253;
    /// The application did not decide within `routing_timeout`.
    pub const TIMEOUT: u8 = 254;
}

/// Keyed SipHash for maps whose keys a peer chooses (no hash flooding),
/// keyed from the node's seed (deterministic).
#[derive(Clone, Debug)]
pub(crate) struct SeededState(u64, u64);

impl BuildHasher for SeededState {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.0, self.1)
    }
}

pub(crate) struct Peer {
    pub id: NodeId,
    /// Established streams.
    pub streams: SmallVec<[StreamId; 4]>,
    /// Streams still in the handshake.
    pub handshaking: usize,
    /// Live sessions with this peer.
    pub session_count: usize,
}

const PAGE_BITS: usize = 10;
const PAGE: usize = 1 << PAGE_BITS;
const PAGE_MASK: usize = PAGE - 1;

pub(crate) struct Slot {
    pub generation: u32,
    pub session: Option<Session>,
}

pub(crate) struct TimeWait {
    pub received: u64,
    pub consumed: u64,
    /// A stream to the peer died since the session closed: its last frames
    /// (the final Credit above all) may have died with it, so the final
    /// counts are announced again on a live stream.
    pub announce: bool,
}

/// The sans-IO engine of one node.
///
/// ```
/// use astral_core::{Config, Identity, Node, Timestamp};
/// let mut a = Node::new(Config::default(), Identity::from_seed([1; 32]), 1);
/// let mut b = Node::new(Config::default(), Identity::from_seed([2; 32]), 2);
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
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    pub(crate) local_id: NodeId,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) streams: BTreeMap<StreamId, Stream>,
    pub(crate) next_stream: u64,
    pub(crate) handshaking: usize,
    pub(crate) peers: Vec<Peer>,
    pub(crate) peer_index: HashMap<NodeId, u32, SeededState>,
    /// Session slots in fixed pages, so growth never over-allocates by
    /// more than one page (an idle session's cost stays predictable).
    pub(crate) slots: Vec<Vec<Slot>>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) wire_map: HashMap<(u32, u64), SessionId, SeededState>,
    pub(crate) queries: HashMap<SessionId, String, SeededState>,
    pub(crate) pending_inbound: usize,
    pub(crate) time_wait: HashMap<(u32, u64), TimeWait, SeededState>,
    pub(crate) time_wait_order: VecDeque<((u32, u64), Timestamp)>,
    /// Sessions with a small credit to send later (FIFO: same delay for all).
    pub(crate) lazy_credits: VecDeque<(Timestamp, SessionId)>,
    pub(crate) timers: TimerTable,
    pub(crate) events: VecDeque<Event>,
    pub(crate) policy: Box<dyn Policy>,
    pub(crate) policy_armed: bool,
    /// A migration completed since drains were last checked.
    pub(crate) drains_dirty: bool,
    /// Time of the latest input, for API calls that take no `now`.
    pub(crate) last_now: Timestamp,
}

impl Node {
    /// A node with `identity`, drawing all randomness (handshake ephemerals,
    /// stream and session ids, ping nonces, hash keys) from `seed`.
    ///
    /// A 64-bit seed suits tests and simulations; production drivers should
    /// use [`Node::with_seed_bytes`] with 32 bytes from the OS so handshake
    /// ephemerals carry full entropy.
    pub fn new(config: Config, identity: Identity, seed: u64) -> Node {
        Self::from_rng(config, identity, ChaCha20Rng::seed_from_u64(seed))
    }

    /// Like [`Node::new`] with a full 256-bit seed.
    pub fn with_seed_bytes(config: Config, identity: Identity, seed: [u8; 32]) -> Node {
        Self::from_rng(config, identity, ChaCha20Rng::from_seed(seed))
    }

    fn from_rng(config: Config, identity: Identity, mut rng: ChaCha20Rng) -> Node {
        let hs = |rng: &mut ChaCha20Rng| SeededState(rng.next_u64(), rng.next_u64());
        let policy = Box::new(RttPolicy::new(
            config.migrate_rtt_gain,
            config.migrate_sustain,
        ));
        Node {
            local_id: identity.node_id(),
            identity,
            peer_index: HashMap::with_hasher(hs(&mut rng)),
            wire_map: HashMap::with_hasher(hs(&mut rng)),
            queries: HashMap::with_hasher(hs(&mut rng)),
            time_wait: HashMap::with_hasher(hs(&mut rng)),
            rng,
            config,
            streams: BTreeMap::new(),
            next_stream: 0,
            handshaking: 0,
            peers: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            pending_inbound: 0,
            time_wait_order: VecDeque::new(),
            lazy_credits: VecDeque::new(),
            timers: TimerTable::default(),
            events: VecDeque::new(),
            policy,
            policy_armed: false,
            drains_dirty: false,
            last_now: Timestamp::ZERO,
        }
    }

    /// Replaces the stream-choice and migration policy.
    pub fn set_policy(&mut self, policy: Box<dyn Policy>) {
        self.policy = policy;
    }

    /// This node's identity.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- streams -------------------------------------------------------

    /// Starts a stream to `remote` over a transport the driver just opened;
    /// the first handshake message is then available from `poll_transmit`.
    pub fn connect(&mut self, now: Timestamp, remote: NodeId) -> Result<StreamId, ConnectError> {
        if remote == self.local_id {
            return Err(ConnectError::SelfConnect);
        }
        self.check_handshake_limits(Some(remote))?;
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let hs = Handshake::initiator(&self.identity, remote, self.local_features(), seed)
            .map_err(|e| ConnectError::Noise(e.to_string()))?;
        let peer = self.peer_idx(remote);
        self.peers[peer as usize].handshaking += 1;
        Ok(self.insert_stream(now, true, Some(remote), hs))
    }

    /// Registers a transport the driver accepted; this node answers the
    /// handshake and learns the peer's identity from it.
    pub fn accept(&mut self, now: Timestamp) -> Result<StreamId, ConnectError> {
        self.check_handshake_limits(None)?;
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let wire = self.rng.next_u64() | 1;
        let hs = Handshake::responder(&self.identity, wire, self.local_features(), seed)
            .map_err(|e| ConnectError::Noise(e.to_string()))?;
        Ok(self.insert_stream(now, false, None, hs))
    }

    /// Features this node offers in handshakes.
    fn local_features(&self) -> Features {
        if self.config.offer_aes_gcm {
            Features::ALL
        } else {
            Features::EXTENDED_FRAMES
        }
    }

    fn check_handshake_limits(&self, remote: Option<NodeId>) -> Result<(), ConnectError> {
        // Sessions store stream handles in 32 bits.
        if self.next_stream >= u64::from(u32::MAX) - 1 {
            return Err(ConnectError::Limit("stream handles exhausted"));
        }
        if self.handshaking >= self.config.max_handshaking_streams {
            return Err(ConnectError::Limit("max_handshaking_streams"));
        }
        if let Some(p) = remote.and_then(|r| self.peer_index.get(&r)) {
            let peer = &self.peers[*p as usize];
            if peer.streams.len() + peer.handshaking >= self.config.max_streams_per_peer {
                return Err(ConnectError::Limit("max_streams_per_peer"));
            }
        }
        Ok(())
    }

    fn insert_stream(
        &mut self,
        now: Timestamp,
        initiator: bool,
        remote: Option<NodeId>,
        hs: Handshake,
    ) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        self.handshaking += 1;
        let stream = Stream::new(id, initiator, remote, Crypto::Handshake(Box::new(hs)), now);
        self.streams.insert(id, stream);
        self.timers
            .arm(now + self.config.handshake_timeout, TimerKey::Stream(id));
        id
    }

    pub(crate) fn peer_idx(&mut self, id: NodeId) -> u32 {
        if let Some(&i) = self.peer_index.get(&id) {
            return i;
        }
        let i = self.peers.len() as u32;
        self.peers.push(Peer {
            id,
            streams: SmallVec::new(),
            handshaking: 0,
            session_count: 0,
        });
        self.peer_index.insert(id, i);
        i
    }

    /// Fuzzing only: an established stream to `peer` with the no-security
    /// record cipher (records are `u16 len || plaintext || 16 zero bytes`).
    #[cfg(feature = "fuzzing")]
    pub fn insert_established_for_fuzzing(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        wire: u64,
    ) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        let cipher = crate::noise::RecordCipher::insecure_for_fuzzing();
        let mut st = Stream::new(
            id,
            false,
            Some(peer),
            Crypto::Transport(Box::new(cipher)),
            now,
        );
        st.set_state(StreamState::Established);
        st.wire = wire;
        st.features = Features::ALL;
        st.confirmed = true;
        st.established_at = now;
        st.next_ping = now + self.config.keepalive_interval;
        let p = self.peer_idx(peer);
        st.peer = Some(p);
        self.streams.insert(id, st);
        self.peers[p as usize].streams.push(id);
        self.timers.arm(now, TimerKey::Stream(id));
        id
    }

    /// The driver's transport for `stream` ended (EOF, error, reset).
    pub fn handle_transport_closed(&mut self, now: Timestamp, stream: StreamId, reason: &str) {
        self.kill_stream(
            now,
            stream,
            StreamCloseReason::TransportClosed(reason.to_string()),
        );
    }

    /// Closes a stream at the application's request. Its sessions resume on
    /// other streams to the peer (or close after `recovery_timeout`).
    pub fn close_stream(&mut self, now: Timestamp, stream: StreamId) {
        self.kill_stream(now, stream, StreamCloseReason::Local);
    }

    /// Handshake finished: register the stream with its peer.
    pub(crate) fn establish(&mut self, now: Timestamp, sid: StreamId) {
        let Some(stream) = self.streams.get_mut(&sid) else {
            return;
        };
        let crypto = std::mem::replace(&mut stream.crypto, Crypto::None);
        let Crypto::Handshake(hs) = crypto else {
            stream.crypto = crypto;
            return;
        };
        let est = match hs.into_established() {
            Ok(e) => e,
            Err(e) => {
                self.kill_stream(now, sid, StreamCloseReason::HandshakeFailed(e.to_string()));
                return;
            }
        };
        let initiator = stream.initiator;
        if initiator {
            // The dialer counted this stream against the expected peer.
            if let Some(&p) = stream.remote.as_ref().and_then(|r| self.peer_index.get(r)) {
                self.peers[p as usize].handshaking -= 1;
            }
        }
        self.handshaking -= 1;
        let stream = self.streams.get_mut(&sid).expect("present: checked above");
        stream.wire = est.stream_id;
        stream.features = est.features;
        stream.remote = Some(est.remote);
        stream.crypto = Crypto::Transport(Box::new(est.cipher));
        stream.set_state(StreamState::Established);
        stream.established_at = now;
        // The handshake message that completed our side authenticated the
        // peer; the responder has read message 3, so its peer knows the stream.
        stream.confirmed = !initiator;
        stream.last_rx = now;
        stream.reset_tokens = self.config.unknown_session_resets_per_sec;
        stream.reset_refill = now;
        // Ping at once: it confirms the stream to the peer and gives a
        // first RTT sample before any policy decision.
        let nonce = self.rng.next_u64();
        stream.ping_outstanding = Some((nonce, now));
        stream.ctrl.push_back(Frame::Ping { nonce, pong: false });
        stream.next_ping = now + self.config.keepalive_interval;
        if !est.features.contains(Features::EXTENDED_FRAMES) {
            self.kill_stream(
                now,
                sid,
                StreamCloseReason::ProtocolError("peer lacks extended frames".into()),
            );
            return;
        }
        if est.remote == self.local_id {
            self.kill_stream(
                now,
                sid,
                StreamCloseReason::HandshakeFailed("connected to itself".into()),
            );
            return;
        }
        let p = self.peer_idx(est.remote);
        let peer = &self.peers[p as usize];
        if peer.streams.len() >= self.config.max_streams_per_peer {
            self.kill_stream(
                now,
                sid,
                StreamCloseReason::LimitExceeded("max_streams_per_peer"),
            );
            return;
        }
        if peer
            .streams
            .iter()
            .any(|s| self.streams.get(s).is_some_and(|s| s.wire == est.stream_id))
        {
            self.kill_stream(now, sid, StreamCloseReason::DuplicateId);
            return;
        }
        let first = peer.streams.is_empty();
        self.peers[p as usize].streams.push(sid);
        if let Some(stream) = self.streams.get_mut(&sid) {
            stream.peer = Some(p);
        }
        self.timers
            .arm(now + self.config.keepalive_interval, TimerKey::Stream(sid));
        self.events.push_back(Event::StreamUp {
            stream: sid,
            peer: est.remote,
        });
        if first {
            self.events.push_back(Event::Linked(est.remote));
        }
        if !initiator {
            self.events
                .push_back(Event::StreamConfirmed { stream: sid });
        }
        self.arm_policy(now);
        self.adopt_orphans(now, p);
    }

    /// Ends a stream for `reason`, reports it and lets its sessions recover.
    pub(crate) fn kill_stream(&mut self, now: Timestamp, sid: StreamId, reason: StreamCloseReason) {
        let Some(mut stream) = self.streams.remove(&sid) else {
            return;
        };
        let was_handshaking = stream.state == StreamState::Handshaking;
        stream.set_state(StreamState::Closed);
        if was_handshaking {
            self.handshaking -= 1;
            if let Some(&p) = stream.remote.as_ref().and_then(|r| self.peer_index.get(r)) {
                if stream.initiator {
                    self.peers[p as usize].handshaking -= 1;
                }
            }
        }
        self.policy.forget(sid);
        let peer_id = stream.peer.map(|p| self.peers[p as usize].id);
        self.events.push_back(Event::StreamDown {
            stream: sid,
            peer: peer_id.or(stream.remote),
            reason: reason.clone(),
        });
        let Some(p) = stream.peer else { return };
        let peer = &mut self.peers[p as usize];
        peer.streams.retain(|s| *s != sid);
        let last = peer.streams.is_empty();
        if last {
            self.events.push_back(Event::Unlinked(peer.id));
        }
        let graceful = reason == StreamCloseReason::Drained;
        self.on_stream_lost(now, p, sid, graceful);
    }

    /// Established streams to `peer` usable for new traffic, as candidates.
    pub(crate) fn candidates(&self, p: u32) -> SmallVec<[Candidate; 4]> {
        self.peers[p as usize]
            .streams
            .iter()
            .filter_map(|s| self.streams.get(s))
            .filter(|s| s.is_usable())
            .map(|s| Candidate {
                id: s.id,
                srtt: s.rtt.srtt,
                samples: s.rtt.samples,
                established_at: s.established_at,
                sessions: s.session_count,
            })
            .collect()
    }

    /// Best stream for new traffic to a peer: a usable one chosen by the
    /// policy, else any established one not being closed.
    pub(crate) fn best_stream(&mut self, p: u32, exclude: StreamId) -> StreamId {
        let mut c = self.candidates(p);
        c.retain(|c| c.id != exclude);
        if !c.is_empty() {
            return self.policy.choose(&c);
        }
        self.peers[p as usize]
            .streams
            .iter()
            .copied()
            .find(|s| {
                *s != exclude
                    && self.streams.get(s).is_some_and(|s| {
                        s.is_established() && !s.close_after_flush && !s.local_drain
                    })
            })
            .unwrap_or(StreamId::NONE)
    }

    /// Snapshots of every stream.
    pub fn streams(&self) -> impl Iterator<Item = StreamInfo> + '_ {
        self.streams
            .values()
            .map(|s| s.info(s.peer.map(|p| self.peers[p as usize].id)))
    }

    /// Snapshot of one stream.
    pub fn stream_info(&self, id: StreamId) -> Option<StreamInfo> {
        self.streams
            .get(&id)
            .map(|s| s.info(s.peer.map(|p| self.peers[p as usize].id)))
    }

    /// Established streams to `peer`.
    pub fn peer_streams(&self, peer: NodeId) -> Vec<StreamId> {
        self.peer_index
            .get(&peer)
            .map(|p| self.peers[*p as usize].streams.to_vec())
            .unwrap_or_default()
    }

    /// Peers with at least one established stream.
    pub fn linked_peers(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|p| !p.streams.is_empty())
            .map(|p| p.id)
            .collect()
    }

    // ----- sessions ------------------------------------------------------

    pub(crate) fn get(&self, id: SessionId) -> Option<&Session> {
        let slot = self
            .slots
            .get(id.index() >> PAGE_BITS)?
            .get(id.index() & PAGE_MASK)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.session.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        let slot = self
            .slots
            .get_mut(id.index() >> PAGE_BITS)?
            .get_mut(id.index() & PAGE_MASK)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.session.as_mut()
    }

    pub(crate) fn alloc_session(&mut self, session: Session) -> SessionId {
        let key = (session.peer, session.wire);
        let peer = session.peer;
        let id = if let Some(index) = self.free_slots.pop() {
            let i = index as usize;
            let slot = &mut self.slots[i >> PAGE_BITS][i & PAGE_MASK];
            slot.session = Some(session);
            SessionId::new(index, slot.generation)
        } else {
            if self.slots.last().is_none_or(|p| p.len() == PAGE) {
                self.slots.push(Vec::with_capacity(PAGE));
            }
            let index =
                ((self.slots.len() - 1) * PAGE + self.slots.last().map_or(0, |p| p.len())) as u32;
            if let Some(page) = self.slots.last_mut() {
                page.push(Slot {
                    generation: 0,
                    session: Some(session),
                });
            }
            SessionId::new(index, 0)
        };
        self.wire_map.insert(key, id);
        self.peers[peer as usize].session_count += 1;
        id
    }

    /// Removes a session and reports why.
    pub(crate) fn remove_session(&mut self, now: Timestamp, id: SessionId, reason: CloseReason) {
        let Some(slot) = self
            .slots
            .get_mut(id.index() >> PAGE_BITS)
            .and_then(|p| p.get_mut(id.index() & PAGE_MASK))
        else {
            return;
        };
        if slot.generation != id.generation() {
            return;
        }
        let Some(mut session) = slot.session.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free_slots.push(id.index() as u32);
        if session.state == SessionState::Pending {
            self.pending_inbound -= 1;
        }
        session.transition(SessionState::Closed);
        self.wire_map.remove(&(session.peer, session.wire));
        self.peers[session.peer as usize].session_count -= 1;
        self.forget_query(id);
        if let Some(s) = self.streams.get_mut(&session.send_stream()) {
            s.session_count = s.session_count.saturating_sub(1);
        }
        if reason == CloseReason::Graceful {
            let key = (session.peer, session.wire);
            self.time_wait.insert(
                key,
                TimeWait {
                    received: session.recv.received_mark(),
                    consumed: session.recv.credit_value(),
                    announce: false,
                },
            );
            let expiry = now + self.config.recovery_timeout;
            self.time_wait_order.push_back((key, expiry));
            self.timers.arm(expiry, TimerKey::TimeWait);
        }
        self.events.push_back(Event::SessionClosed {
            session: id,
            reason,
        });
    }

    /// Drops the stored query of a session that no longer needs it.
    pub(crate) fn forget_query(&mut self, id: SessionId) {
        if self.queries.remove(&id).is_some()
            && self.queries.is_empty()
            && self.queries.capacity() > 1024
        {
            // A burst of opens must not leave its peak allocation behind.
            self.queries.shrink_to_fit();
        }
    }

    /// Opens a session with `peer` for `query`. The query goes out on the
    /// best stream to the peer, or as soon as one comes up; without an answer
    /// within `routing_timeout` the session closes with `RoutingTimeout`.
    pub fn open_session(
        &mut self,
        now: Timestamp,
        peer: NodeId,
        query: &str,
    ) -> Result<SessionId, OpenError> {
        if peer == self.local_id {
            return Err(OpenError::SelfSession);
        }
        if query.len() > self.config.max_query_len {
            return Err(OpenError::QueryTooLong(query.len()));
        }
        let p = self.peer_idx(peer);
        if self.peers[p as usize].session_count >= self.config.max_sessions_per_peer {
            return Err(OpenError::TooManySessions);
        }
        let wire = loop {
            let w = self.rng.next_u64();
            if !self.wire_map.contains_key(&(p, w)) && !self.time_wait.contains_key(&(p, w)) {
                break w;
            }
        };
        let mut s = Session::new(
            wire,
            p,
            Role::Querier,
            SessionState::Routing,
            self.config.recv_window,
        );
        s.set(session::F_QUERY_PENDING);
        let id = self.alloc_session(s);
        self.queries.insert(id, query.to_string());
        self.timers.arm(
            now + self.config.routing_timeout,
            TimerKey::Session(id, ROUTING_TAG),
        );
        let stream = self.best_stream(p, StreamId::NONE);
        if stream != StreamId::NONE {
            self.rebind(id, stream);
        }
        Ok(id)
    }

    /// Accepts an inbound query (`Event::Query`): the session opens.
    pub fn accept_query(&mut self, now: Timestamp, id: SessionId) -> Result<(), SessionError> {
        let _ = now;
        let s = self.get_mut(id).ok_or(SessionError::Unknown)?;
        if s.state != SessionState::Pending {
            return Err(SessionError::WrongState(s.state.name()));
        }
        s.transition(SessionState::Open);
        s.response_code = codes::ACCEPTED;
        s.set(session::F_RESPONSE_PENDING);
        self.pending_inbound -= 1;
        self.schedule_ctrl(id);
        self.schedule(id);
        Ok(())
    }

    /// Rejects an inbound query with `code` (non-zero; 0 becomes 1).
    pub fn reject_query(
        &mut self,
        now: Timestamp,
        id: SessionId,
        code: u8,
    ) -> Result<(), SessionError> {
        let s = self.get(id).ok_or(SessionError::Unknown)?;
        if s.state != SessionState::Pending {
            return Err(SessionError::WrongState(s.state.name()));
        }
        let code = if code == codes::ACCEPTED {
            codes::REJECTED
        } else {
            code
        };
        let (wire, stream) = (s.wire, s.send_stream());
        self.push_ctrl(
            stream,
            Frame::Response {
                session: wire,
                code,
                buffer: 0,
            },
        );
        self.remove_session(now, id, CloseReason::RejectedLocally);
        Ok(())
    }

    /// A borrowed view of one session, for reading, writing and closing.
    pub fn session(&mut self, id: SessionId) -> Option<crate::SessionHandle<'_>> {
        self.get(id)?;
        Some(crate::SessionHandle { node: self, id })
    }

    /// Snapshot of one session.
    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        let s = self.get(id)?;
        Some(SessionInfo {
            id,
            wire_id: s.wire,
            peer: self.peers[s.peer as usize].id,
            role: s.role,
            state: s.state,
            send_stream: s.send_stream(),
            recv_stream: s.recv_stream(),
            stats: Self::stats_of(s),
        })
    }

    pub(crate) fn stats_of(s: &Session) -> SessionStats {
        SessionStats {
            bytes_written: s.send.written(),
            bytes_acked: s.send.acked().min(s.send.written()),
            bytes_received: s.recv.delivered(),
            bytes_read: s.recv.consumed(),
            bytes_retransmitted: s.send.retransmitted(),
            bytes_retained: s.send.retained(),
            bytes_in_flight: s.send.sent_max().min(s.send.written())
                - s.send.acked().min(s.send.written()),
            bytes_buffered: s.recv.buffered(),
            migrations: u32::from(s.migrations),
            recoveries: u32::from(s.recoveries),
            peer_window: s.send.peer_window(),
        }
    }

    /// Snapshots of every session.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.slots
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, slot)| {
                slot.session.as_ref()?;
                self.session_info(SessionId::new(i as u32, slot.generation))
            })
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.wire_map.len()
    }

    // ----- scheduling ----------------------------------------------------

    /// Every live session with peer `p`, in slot order (deterministic).
    /// Linear in all sessions: used only on rare events (a stream coming up
    /// or dying, a drain, the policy tick), which keeps an idle session small.
    pub(crate) fn peer_sessions(&self, p: u32) -> Vec<SessionId> {
        if self.peers[p as usize].session_count == 0 {
            return Vec::new();
        }
        self.slots
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, slot)| {
                let s = slot.session.as_ref()?;
                (s.peer == p).then(|| SessionId::new(i as u32, slot.generation))
            })
            .collect()
    }

    /// Makes `stream` the session's sending stream, moving its queue entries.
    pub(crate) fn rebind(&mut self, id: SessionId, stream: StreamId) {
        let Some(s) = self.get_mut(id) else { return };
        let old = s.send_stream();
        s.set_send_stream(stream);
        s.clear(session::F_IN_SCHED | session::F_IN_CTRL);
        if old != stream {
            if let Some(o) = self.streams.get_mut(&old) {
                o.session_count = o.session_count.saturating_sub(1);
            }
            if let Some(n) = self.streams.get_mut(&stream) {
                n.session_count += 1;
            }
        }
        self.schedule_ctrl(id);
        self.schedule(id);
    }

    /// Queues the session's data (or Fin) on its sending stream if it has any.
    pub(crate) fn schedule(&mut self, id: SessionId) {
        self.enqueue(
            id,
            session::F_IN_SCHED,
            |s| {
                matches!(s.state, SessionState::Open | SessionState::Migrating)
                    && s.send.has_output()
            },
            |st| &mut st.sched,
        );
    }

    /// Queues the session's control frames (credit, resume, query, response).
    pub(crate) fn schedule_ctrl(&mut self, id: SessionId) {
        self.enqueue(
            id,
            session::F_IN_CTRL,
            |s| s.wants_control(),
            |st| &mut st.ctrl_sessions,
        );
    }

    /// Puts a session on one of its sending stream's queues once: `flag`
    /// marks membership, `wanted` says whether it has anything for it.
    fn enqueue(
        &mut self,
        id: SessionId,
        flag: u16,
        wanted: impl FnOnce(&Session) -> bool,
        queue: impl FnOnce(&mut Stream) -> &mut VecDeque<SessionId>,
    ) {
        let Some(s) = self.get_mut(id) else { return };
        if s.has(flag) || !wanted(s) {
            return;
        }
        let stream = s.send_stream();
        let Some(st) = self
            .streams
            .get_mut(&stream)
            .filter(|st| st.is_established())
        else {
            return;
        };
        queue(st).push_back(id);
        // Re-borrow: the stream and the session live in different maps.
        if let Some(s) = self.get_mut(id) {
            s.set(flag);
        }
    }

    /// Queues an explicit control frame on a stream.
    pub(crate) fn push_ctrl(&mut self, stream: StreamId, frame: Frame) {
        if let Some(st) = self.streams.get_mut(&stream) {
            if st.is_established() {
                st.ctrl.push_back(frame);
            }
        }
    }

    /// Sessions with `peer` that lost (or never had) a sending stream take
    /// a newly established one.
    fn adopt_orphans(&mut self, _now: Timestamp, p: u32) {
        self.announce_closed(p);
        let orphans: Vec<SessionId> = self
            .peer_sessions(p)
            .into_iter()
            .filter(|id| {
                self.get(*id)
                    .is_some_and(|s| !self.streams.contains_key(&s.send_stream()))
            })
            .collect();
        for id in orphans {
            let stream = self.best_stream(p, StreamId::NONE);
            if stream == StreamId::NONE {
                return;
            }
            if let Some(s) = self.get_mut(id) {
                match s.state {
                    SessionState::Recovering => s.set(session::F_RESUME_PENDING),
                    SessionState::Routing => s.set(session::F_QUERY_PENDING),
                    _ => {}
                }
            }
            self.rebind(id, stream);
        }
    }

    // ----- timers --------------------------------------------------------

    /// When `handle_timeout` should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next_deadline()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some((_, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Stream(id) => self.on_stream_timer(now, id),
                TimerKey::Session(id, tag) => self.on_session_timer(now, id, tag),
                TimerKey::TimeWait => self.expire_time_wait(now),
                TimerKey::LazyCredit => self.flush_lazy_credits(now),
                TimerKey::Policy => self.run_policy(now),
            }
        }
    }

    fn on_stream_timer(&mut self, now: Timestamp, id: StreamId) {
        let keepalive = self.config.keepalive_interval;
        let dead = self.config.dead_timeout;
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        match st.state {
            StreamState::Handshaking => {
                if now >= st.created + self.config.handshake_timeout {
                    self.kill_stream(now, id, StreamCloseReason::HandshakeTimeout);
                } else {
                    self.timers.arm(
                        st.created + self.config.handshake_timeout,
                        TimerKey::Stream(id),
                    );
                }
            }
            StreamState::Established => {
                if now >= st.last_rx + dead {
                    self.kill_stream(now, id, StreamCloseReason::PingTimeout);
                    return;
                }
                if now >= st.next_ping {
                    let nonce = self.rng.next_u64();
                    let st = self.streams.get_mut(&id).expect("present: checked above");
                    st.ping_outstanding = Some((nonce, now));
                    st.ctrl.push_back(Frame::Ping { nonce, pong: false });
                    st.next_ping = now + keepalive;
                }
                let st = self.streams.get_mut(&id).expect("present: checked above");
                let next = st.next_ping.min(st.last_rx + dead);
                self.timers.arm(next, TimerKey::Stream(id));
            }
            StreamState::Closed => {}
        }
    }

    /// A session deadline. Routing and Pending happen once per session, so
    /// their timer is exact; a recovery deadline carries the number of
    /// recoveries completed when it was armed, so a stale one is ignored.
    fn on_session_timer(&mut self, now: Timestamp, id: SessionId, tag: u16) {
        let Some(s) = self.get(id) else { return };
        match s.state {
            SessionState::Routing if tag == ROUTING_TAG => {
                self.remove_session(now, id, CloseReason::RoutingTimeout)
            }
            SessionState::Pending if tag == ROUTING_TAG => {
                let (wire, stream) = (s.wire, s.send_stream());
                self.push_ctrl(
                    stream,
                    Frame::Response {
                        session: wire,
                        code: codes::TIMEOUT,
                        buffer: 0,
                    },
                );
                self.remove_session(now, id, CloseReason::RoutingTimeout);
            }
            SessionState::Recovering if s.recoveries.min(ROUTING_TAG - 1) == tag => {
                self.remove_session(now, id, CloseReason::PeerUnreachable)
            }
            _ => {}
        }
    }

    /// After a read: credit below the batching threshold is sent after
    /// `credit_delay` unless more reading makes it due sooner.
    pub(crate) fn defer_credit(&mut self, id: SessionId) {
        let at = self.last_now + self.config.credit_delay;
        let Some(s) = self.get_mut(id) else { return };
        if s.has(session::F_LAZY_CREDIT)
            || s.recv.credit_due()
            || s.recv.credit_value() <= s.recv.advertised()
        {
            return;
        }
        s.set(session::F_LAZY_CREDIT);
        if self.lazy_credits.is_empty() {
            self.timers.arm(at, TimerKey::LazyCredit);
        }
        self.lazy_credits.push_back((at, id));
    }

    fn flush_lazy_credits(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.lazy_credits.front() {
            if at > now {
                self.timers.arm(at, TimerKey::LazyCredit);
                return;
            }
            self.lazy_credits.pop_front();
            let Some(s) = self.get_mut(id) else { continue };
            s.clear(session::F_LAZY_CREDIT);
            if s.recv.credit_value() > s.recv.advertised() {
                s.set(session::F_ACK_PENDING);
                self.schedule_ctrl(id);
            }
        }
        if self.lazy_credits.capacity() > 4096 {
            self.lazy_credits.shrink_to(64);
        }
    }

    fn expire_time_wait(&mut self, now: Timestamp) {
        while let Some(&(key, at)) = self.time_wait_order.front() {
            if at > now {
                self.timers.arm(at, TimerKey::TimeWait);
                return;
            }
            self.time_wait_order.pop_front();
            self.time_wait.remove(&key);
        }
    }

    fn arm_policy(&mut self, now: Timestamp) {
        if !self.policy_armed {
            self.policy_armed = true;
            self.timers
                .arm(now + self.config.policy_interval, TimerKey::Policy);
        }
    }

    // ----- events --------------------------------------------------------

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 1024 {
            // A burst (e.g. 100k queries) must not leave its peak behind.
            self.events.shrink_to(64);
        }
        e
    }

    /// Whether `stream` has output the driver should pull now.
    pub fn wants_transmit(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.has_output())
    }

    /// Draws a value from the node's seeded generator (drivers use it for
    /// jitter so that runs stay reproducible).
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}
