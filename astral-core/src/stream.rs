//! Streams as the application sees them: lifecycle, round-trip estimate,
//! counters and snapshots. The state of a live stream is in
//! `endpoint` (while it handshakes) and `engine::streams` (once its peer is
//! known).

use std::time::Duration;

use crate::{EngineId, NodeId, StreamId};

/// Lifecycle of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

/// Floor and cap of [`Rtt::rto`]: a retransmission-style timeout never
/// fires faster than a scheduler hiccup, nor waits longer than a minute.
pub(crate) const RTO_FLOOR: Duration = Duration::from_millis(100);
pub(crate) const RTO_CAP: Duration = Duration::from_secs(60);

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

    /// A timeout after which silence is suspicious (RFC 6298:
    /// `srtt + 4·rttvar`), floored and capped; `initial` before any sample.
    pub fn rto(&self, initial: Duration) -> Duration {
        if self.samples == 0 {
            return initial.clamp(RTO_FLOOR, RTO_CAP);
        }
        (self.srtt + self.rttvar * 4).clamp(RTO_FLOOR, RTO_CAP)
    }
}

/// Per-stream counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct StreamInfo {
    /// Local handle.
    pub id: StreamId,
    /// The per-peer engine that owns it (none while handshaking).
    pub engine: Option<EngineId>,
    /// Wire id chosen by the responder (none while handshaking).
    pub wire_id: Option<u64>,
    /// Authenticated peer (or the expected one while dialing).
    pub peer: Option<NodeId>,
    /// Whether this node dialed.
    pub initiator: bool,
    /// Lifecycle state.
    pub state: StreamState,
    /// Whether the peer has sent at least one authenticated record.
    pub confirmed: bool,
    /// Features negotiated in the handshake (e.g. AES-GCM records).
    pub features: crate::noise::Features,
    /// Being drained (by us or at the peer's request).
    pub draining: bool,
    /// Suspect: it sent something, heard nothing for an RTO, probed, and
    /// heard nothing for another RTO ([`Event::StreamSuspect`](crate::Event::StreamSuspect)).
    /// Sessions avoid it until it is heard from again.
    pub suspect: bool,
    /// Round-trip estimate.
    pub rtt: Rtt,
    /// Sessions sending on this stream.
    pub sessions: usize,
    /// Counters.
    pub stats: StreamStats,
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
