//! The established streams of one peer: record cipher and reassembly
//! buffer, the per-stream transmit queues, liveness, drain state.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;

use super::liveness::Liveness;
use super::probe::DrainProbe;
use crate::frame::Frame;
use crate::noise::{Features, RecordCipher};
use crate::path::{Measured, PathMeter};
use crate::stream::{StreamInfo, StreamPreference, StreamState, StreamStats};
use crate::{EngineId, NodeId, SessionId, StreamId, Timestamp};

/// Where a drain this node started stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LocalDrain {
    /// Not draining.
    No,
    /// Drain sent; sessions are moving off.
    Moving,
    /// Everything moved; the barrier ping with this nonce is out.
    Barrier {
        /// The barrier ping's nonce.
        nonce: u64,
    },
    /// The barrier came back: the second Drain is queued and the stream
    /// closes once its output is flushed.
    Closing,
}

/// A token bucket refilled once per second (Resets for unknown sessions).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: u32,
    refilled: Timestamp,
}

impl TokenBucket {
    pub fn new(now: Timestamp, per_sec: u32) -> Self {
        TokenBucket {
            tokens: per_sec,
            refilled: now,
        }
    }

    /// Takes one token; refills to `per_sec` when a second has passed.
    pub fn take(&mut self, now: Timestamp, per_sec: u32) -> bool {
        if now.saturating_duration_since(self.refilled) >= Duration::from_secs(1) {
            self.tokens = per_sec;
            self.refilled = now;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// What a stream will send, built into records on demand.
#[derive(Debug, Default)]
pub(crate) struct TxQueues {
    /// Explicit control frames (pings, pongs, markers, resets, rejections).
    pub ctrl: VecDeque<Frame>,
    /// Sessions with control to send (query, response, resume, credit).
    pub ctrl_sessions: VecDeque<SessionId>,
    /// Sessions with data or a Fin, served round robin.
    pub data: VecDeque<SessionId>,
}

impl TxQueues {
    /// Releases burst capacity once the queues are empty again.
    pub fn shrink_if_idle(&mut self) {
        fn shrink<T>(q: &mut VecDeque<T>) {
            if q.is_empty() && q.capacity() > 4096 {
                q.shrink_to(64);
            }
        }
        shrink(&mut self.ctrl);
        shrink(&mut self.ctrl_sessions);
        shrink(&mut self.data);
    }
}

/// An established stream of this engine's peer.
pub(crate) struct PeerStream {
    pub id: StreamId,
    /// Wire id chosen by the responder (unique per peer pair).
    pub wire: u64,
    pub initiator: bool,
    pub features: Features,
    pub cipher: Box<RecordCipher>,
    /// Ciphertext received, not yet a whole record.
    pub rx: BytesMut,
    pub tx: TxQueues,
    /// Sessions whose sending stream this is.
    pub senders: usize,
    /// Sessions migrating away from this stream, not yet confirmed.
    pub migrating_from: usize,
    pub liveness: Liveness,
    pub established_at: Timestamp,
    /// The peer has sent an authenticated record on it.
    pub confirmed: bool,
    pub local_drain: LocalDrain,
    /// The peer asked us to move off it.
    pub remote_drain: bool,
    /// This node is shutting down: the Goodbye is queued and the stream
    /// closes once it is flushed, or at this deadline if the transport
    /// never takes it.
    pub leaving: Option<Timestamp>,
    pub stats: StreamStats,
    pub resets: TokenBucket,
    /// RTT samples from credits and pings, path delay, rates.
    pub meter: PathMeter,
    /// The drain probe that refreshes a stale path delay (`probe.rs`).
    pub probe: DrainProbe,
    /// This node's preference for the stream, and the peer's.
    pub preference: StreamPreference,
    pub peer_preference: StreamPreference,
}

impl PeerStream {
    /// Usable for new traffic: confirmed, nobody is draining it, and it is
    /// not suspect.
    pub fn is_usable(&self) -> bool {
        self.confirmed && !self.is_draining() && !self.is_suspect()
    }

    /// Its peer has not been heard for a probe's RTO (see `liveness.rs`).
    pub fn is_suspect(&self) -> bool {
        self.liveness.suspect_since.is_some()
    }

    /// Either side is draining it (or it is closing, or this node is
    /// leaving).
    pub fn is_draining(&self) -> bool {
        self.local_drain != LocalDrain::No || self.remote_drain || self.leaving.is_some()
    }

    /// Whether anything is queued for this stream that may go now (session
    /// data waits while a drain probe withholds it).
    pub fn has_output(&self) -> bool {
        !self.tx.ctrl.is_empty()
            || !self.tx.ctrl_sessions.is_empty()
            || (!self.tx.data.is_empty() && !self.withholds_data())
    }

    /// A drain probe holds new session data back (never on a stream being
    /// drained or closed: its data must leave).
    pub fn withholds_data(&self) -> bool {
        self.probe.withholds() && !self.is_draining()
    }

    /// What the stream is worth to placement: the stricter of both ends'
    /// preferences.
    pub fn preference(&self) -> StreamPreference {
        self.preference.stricter(self.peer_preference)
    }

    /// Folds a round-trip sample into the estimates. A credit sample longer
    /// than the current RTO is left out: a receiver that read late, not the
    /// path (a ping, which the peer answers at once, always counts).
    /// Every sample feeds the probe timeouts' loaded estimate, the clean
    /// ones (nothing much queued ahead of them) their clean estimate
    /// (`liveness.rs`). `probe`: the sample answers a drain probe's ping
    /// (`probe.rs`).
    pub fn take_sample(&mut self, now: Timestamp, m: Measured, from_ping: bool, probe: bool) {
        self.liveness.silence.sample(m.rtt);
        if m.is_clean() {
            self.liveness.clean.sample(m.rtt);
        }
        let rtt = &mut self.liveness.rtt;
        if !from_ping && rtt.samples > 0 && m.rtt > rtt.rto(m.rtt) {
            return;
        }
        rtt.sample(m.rtt);
        rtt.path = self.meter.fold_with(now, m, rtt.srtt, probe);
        rtt.peak = self.meter.peak(now).unwrap_or(m.rtt);
        self.liveness.sample_tune_rtt(now, m.rtt);
    }

    pub fn info(&self, engine: EngineId, peer: NodeId) -> StreamInfo {
        StreamInfo {
            id: self.id,
            engine: Some(engine),
            wire_id: Some(self.wire),
            peer: Some(peer),
            initiator: self.initiator,
            state: StreamState::Established,
            confirmed: self.confirmed,
            features: self.features,
            draining: self.is_draining(),
            suspect: self.is_suspect(),
            rtt: self.liveness.rtt,
            preference: self.preference,
            peer_preference: self.peer_preference,
            sessions: self.senders,
            stats: self.stats,
        }
    }
}

/// The peer's established streams, in the order they came up. A peer has a
/// handful (`max_streams_per_peer`), so lookups are linear scans of a few
/// entries.
#[derive(Default)]
pub(crate) struct StreamTable {
    streams: Vec<PeerStream>,
}

impl StreamTable {
    pub fn get(&self, id: StreamId) -> Option<&PeerStream> {
        self.streams.iter().find(|s| s.id == id)
    }

    pub fn get_mut(&mut self, id: StreamId) -> Option<&mut PeerStream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    pub fn contains(&self, id: StreamId) -> bool {
        self.get(id).is_some()
    }

    pub fn by_wire(&self, wire: u64) -> Option<&PeerStream> {
        self.streams.iter().find(|s| s.wire == wire)
    }

    pub fn insert(&mut self, s: PeerStream) {
        self.streams.push(s);
    }

    pub fn remove(&mut self, id: StreamId) -> Option<PeerStream> {
        let i = self.streams.iter().position(|s| s.id == id)?;
        Some(self.streams.remove(i))
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PeerStream> + '_ {
        self.streams.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut PeerStream> + '_ {
        self.streams.iter_mut()
    }

    pub fn ids(&self) -> smallvec::SmallVec<[StreamId; 4]> {
        self.streams.iter().map(|s| s.id).collect()
    }
}
