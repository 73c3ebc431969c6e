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

/// Round-trip estimates of a stream.
///
/// Samples come from pings and from credited data (each cumulative Credit
/// acknowledges a record sent at a known time), so a busy stream yields
/// several a round trip. Two views of them:
///
/// * `srtt`/`rttvar` (RFC 6298): the delay under load, queueing included;
///   [`Rtt::rto`] is built from them. A credit sample longer than the RTO
///   is left out of them (it is almost always a receiver that read late,
///   not the path); pings, which the peer answers at once, always count.
/// * `path`: the path delay, a windowed minimum that the queueing caused by
///   the session's own traffic cannot raise (see `docs/MIGRATION.md`,
///   "Automatic placement"). The placement policy decides on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Path delay: the windowed minimum of samples, held while the
    /// stream's own traffic explains longer ones; zero until the first.
    pub path: Duration,
    /// The highest sample within the last path window (as of the latest
    /// sample): the top of the stream's spread, jitter and queueing
    /// included; zero until the first.
    pub peak: Duration,
}

/// Floor and cap of [`Rtt::rto`]: a retransmission-style timeout never
/// fires faster than a scheduler hiccup, nor waits longer than a minute.
pub(crate) const RTO_FLOOR: Duration = Duration::from_millis(100);
pub(crate) const RTO_CAP: Duration = Duration::from_secs(60);

impl Rtt {
    /// Folds one sample into the smoothed values (`srtt`, `rttvar`, `min`,
    /// `latest`, `samples`; `path` is the engine's).
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

/// How much the application wants traffic on a stream, set per stream
/// (`set_stream_preference`) and announced to the peer, so both ends place
/// sessions alike: the policy uses the stricter of the two ends' settings.
///
/// * `tier`: lower tiers are used first. A session moves to a stream of a
///   higher tier only when no usable stream of a lower tier is left (its
///   stream died or is drained), and back as soon as one is usable again
///   (MPTCP's backup flag). Tier 0 is the default; e.g. 1 for a metered
///   link, 2 for a last-resort relay.
/// * `penalty`: added to the stream's delay when streams of one tier are
///   compared, so it must be that much faster to win (a cost in delay
///   units: e.g. 200 ms on a Tor circuit that should carry sessions only
///   when the direct path is far worse). Sent in whole milliseconds, at
///   most 65.535 s.
///
/// ```
/// use std::time::Duration;
/// use astral_core::StreamPreference;
/// let metered = StreamPreference::backup();
/// let tor = StreamPreference::with_penalty(Duration::from_millis(200));
/// assert_eq!(metered.stricter(tor), StreamPreference { tier: 1, penalty: Duration::from_millis(200) });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamPreference {
    /// Lower tiers are used first (0: default).
    pub tier: u8,
    /// Added to the stream's delay when comparing streams of one tier.
    pub penalty: Duration,
}

/// Largest penalty the wire carries (u16 milliseconds).
const MAX_PENALTY: Duration = Duration::from_millis(u16::MAX as u64);

impl StreamPreference {
    /// Tier 0, no penalty.
    pub const NORMAL: StreamPreference = StreamPreference {
        tier: 0,
        penalty: Duration::ZERO,
    };

    /// Tier 1: used only while no tier-0 stream is usable.
    pub fn backup() -> Self {
        StreamPreference {
            tier: 1,
            penalty: Duration::ZERO,
        }
    }

    /// Tier 0 with `penalty` added to the stream's delay.
    pub fn with_penalty(penalty: Duration) -> Self {
        StreamPreference {
            tier: 0,
            penalty: penalty.min(MAX_PENALTY),
        }
    }

    /// The stricter of two settings (higher tier, larger penalty): what a
    /// stream is worth when both ends have a say.
    pub fn stricter(self, other: StreamPreference) -> StreamPreference {
        StreamPreference {
            tier: self.tier.max(other.tier),
            penalty: self.penalty.max(other.penalty),
        }
    }

    /// The penalty in wire units (whole milliseconds, saturating).
    pub(crate) fn penalty_ms(self) -> u16 {
        u16::try_from(self.penalty.as_millis()).unwrap_or(u16::MAX)
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
    /// Drain probes started: new data held back until the stream's queue
    /// drained, for a clean path delay sample (docs/MIGRATION.md).
    pub drain_probes: u64,
    /// Of those, confirming probes: a probe's sample raised the path delay
    /// by more than a quarter, and the policy waited for a second look.
    pub drain_confirms: u64,
    /// Total time data was held back by drain probes.
    pub drain_withheld: Duration,
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
    /// Round-trip estimates (smoothed delay under load, and path delay).
    pub rtt: Rtt,
    /// This node's preference for the stream.
    pub preference: StreamPreference,
    /// The peer's preference for it, as it announced it.
    pub peer_preference: StreamPreference,
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
