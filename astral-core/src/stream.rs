//! Stream state: the handshake or the record cipher, the record reassembly
//! buffer, the per-stream transmit queues, liveness and statistics.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;

use crate::frame::Frame;
use crate::noise::{Features, Handshake, RecordCipher};
use crate::{NodeId, SessionId, StreamId, Timestamp};

/// Lifecycle of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamState {
    /// Noise handshake in progress.
    Handshaking,
    /// Authenticated; carries records.
    Established,
    /// Ended; kept only until the driver forgets it.
    Closed,
}

impl StreamState {
    /// Whether `self → to` is legal.
    pub fn can_transition(self, to: StreamState) -> bool {
        matches!(
            (self, to),
            (StreamState::Handshaking, StreamState::Established)
                | (StreamState::Handshaking, StreamState::Closed)
                | (StreamState::Established, StreamState::Closed)
        )
    }
}

pub(crate) enum Crypto {
    Handshake(Box<Handshake>),
    Transport(Box<RecordCipher>),
    None,
}

/// Smoothed round-trip time (RFC 6298 estimator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rtt {
    /// Smoothed RTT; zero until the first sample.
    pub srtt: Duration,
    /// RTT variance.
    pub rttvar: Duration,
    /// Smallest sample seen.
    pub min: Duration,
    /// Most recent sample.
    pub latest: Duration,
    /// Number of samples.
    pub samples: u32,
}

impl Rtt {
    /// Folds in one sample.
    pub fn sample(&mut self, r: Duration) {
        self.latest = r;
        if self.samples == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
            self.min = r;
        } else {
            let diff = self.srtt.abs_diff(r);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + r) / 8;
            self.min = self.min.min(r);
        }
        self.samples = self.samples.saturating_add(1);
    }
}

/// Per-stream counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Ciphertext bytes received (records and handshake).
    pub bytes_in: u64,
    /// Ciphertext bytes handed to the driver.
    pub bytes_out: u64,
    /// Records received.
    pub records_in: u64,
    /// Records sent.
    pub records_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
}

/// Read-only snapshot of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Local handle.
    pub id: StreamId,
    /// Wire id chosen by the responder (0 while handshaking).
    pub wire_id: u64,
    /// Authenticated peer (or the expected one while dialing).
    pub peer: Option<NodeId>,
    /// Whether this node dialed.
    pub initiator: bool,
    /// Lifecycle state.
    pub state: StreamState,
    /// Whether the peer has sent at least one authenticated record.
    pub confirmed: bool,
    /// Being drained (by us or at the peer's request).
    pub draining: bool,
    /// Round-trip estimate.
    pub rtt: Rtt,
    /// Sessions sending on this stream.
    pub sessions: usize,
    /// Counters.
    pub stats: StreamStats,
}

pub(crate) struct Stream {
    pub id: StreamId,
    pub state: StreamState,
    pub crypto: Crypto,
    pub initiator: bool,
    /// The identity dialed (initiator) or authenticated (after handshake).
    pub remote: Option<NodeId>,
    /// Peer-table index, once authenticated.
    pub peer: Option<u32>,
    pub wire: u64,
    pub features: Features,
    /// Ciphertext received, not yet a whole record.
    pub rx: BytesMut,
    /// Explicit control frames, sent first.
    pub ctrl: VecDeque<Frame>,
    /// Sessions with control to send (credit, resume, query, response).
    pub ctrl_sessions: VecDeque<SessionId>,
    /// Sessions with data or a Fin to send, served round robin.
    pub sched: VecDeque<SessionId>,
    /// Sessions whose sending stream this is.
    pub session_count: usize,
    pub rtt: Rtt,
    pub ping_outstanding: Option<(u64, Timestamp)>,
    pub next_ping: Timestamp,
    pub last_rx: Timestamp,
    pub created: Timestamp,
    pub established_at: Timestamp,
    pub confirmed: bool,
    pub local_drain: bool,
    pub remote_drain: bool,
    /// Close once every queued frame has been handed to the driver.
    pub close_after_flush: bool,
    /// Nonce of the barrier ping that ends a local drain.
    pub drain_nonce: Option<u64>,
    pub stats: StreamStats,
    pub reset_tokens: u32,
    pub reset_refill: Timestamp,
}

impl Stream {
    pub fn new(
        id: StreamId,
        initiator: bool,
        remote: Option<NodeId>,
        crypto: Crypto,
        now: Timestamp,
    ) -> Self {
        Stream {
            id,
            state: StreamState::Handshaking,
            crypto,
            initiator,
            remote,
            peer: None,
            wire: 0,
            features: Features::default(),
            rx: BytesMut::new(),
            ctrl: VecDeque::new(),
            ctrl_sessions: VecDeque::new(),
            sched: VecDeque::new(),
            session_count: 0,
            rtt: Rtt::default(),
            ping_outstanding: None,
            next_ping: Timestamp::MAX,
            last_rx: now,
            created: now,
            established_at: Timestamp::MAX,
            confirmed: false,
            local_drain: false,
            remote_drain: false,
            close_after_flush: false,
            drain_nonce: None,
            stats: StreamStats::default(),
            reset_tokens: 0,
            reset_refill: now,
        }
    }

    pub fn is_established(&self) -> bool {
        self.state == StreamState::Established
    }

    /// Usable for new traffic: established, confirmed, not being drained.
    pub fn is_usable(&self) -> bool {
        self.is_established()
            && self.confirmed
            && !self.local_drain
            && !self.remote_drain
            && !self.close_after_flush
    }

    pub fn set_state(&mut self, to: StreamState) -> bool {
        if self.state.can_transition(to) {
            self.state = to;
            true
        } else {
            false
        }
    }

    /// Whether anything is queued for this stream.
    pub fn has_output(&self) -> bool {
        match &self.crypto {
            Crypto::Handshake(hs) => hs.wants_output(),
            Crypto::Transport(_) => {
                !self.ctrl.is_empty() || !self.ctrl_sessions.is_empty() || !self.sched.is_empty()
            }
            Crypto::None => false,
        }
    }

    pub fn info(&self, peer: Option<NodeId>) -> StreamInfo {
        StreamInfo {
            id: self.id,
            wire_id: self.wire,
            peer: peer.or(self.remote),
            initiator: self.initiator,
            state: self.state,
            confirmed: self.confirmed,
            draining: self.local_drain || self.remote_drain,
            rtt: self.rtt,
            sessions: self.session_count,
            stats: self.stats,
        }
    }

    /// Takes one token from the unknown-session Reset budget.
    pub fn take_reset_token(&mut self, now: Timestamp, per_sec: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.reset_refill);
        if elapsed >= Duration::from_secs(1) {
            self.reset_tokens = per_sec;
            self.reset_refill = now;
        }
        if self.reset_tokens > 0 {
            self.reset_tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_smoothing() {
        let mut r = Rtt::default();
        r.sample(Duration::from_millis(100));
        assert_eq!(r.srtt, Duration::from_millis(100));
        assert_eq!(r.rttvar, Duration::from_millis(50));
        r.sample(Duration::from_millis(20));
        assert_eq!(r.srtt, Duration::from_millis(90));
        assert_eq!(r.rttvar, Duration::from_millis(57_500) / 1000);
        assert_eq!(r.min, Duration::from_millis(20));
    }

    #[test]
    fn stream_transitions() {
        use StreamState::*;
        assert!(Handshaking.can_transition(Established));
        assert!(Established.can_transition(Closed));
        assert!(!Closed.can_transition(Established));
        assert!(!Established.can_transition(Handshaking));
    }
}
