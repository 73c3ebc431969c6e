//! The drain probe (BBR's ProbeRTT; issue 17): a sender whose carrying
//! stream's path delay went stale under its own standing queue withholds
//! new data on that stream until everything it sent is known delivered,
//! then sends [`PROBE_PINGS`] pings one after another, each alone, and
//! resumes behind the last. They cross empty queues: clean samples, the
//! first of which replaces the stale estimate and the next may lower it
//! (`path.rs`, "Clean samples and the drain probe").
//!
//! Without it a saturating transfer explains every one of its samples by
//! its own bytes ahead (they always drain in about a round trip), so a
//! carrying path that became three times slower under a 20 Mbit/s
//! transfer kept the session for good.
//!
//! Each probe ping leaves in a write of its own (`transmit.rs` stops after
//! its record): a transport or forwarder that took it in one chunk with
//! the data behind it would make it wait for that data (the simulator
//! delivered a ping written in one call with 256 KiB of data 1.05 s late),
//! and an inflated sample would pass for the path's. Three pings, because
//! the first replaces the estimate and the probe's samples are all the
//! carrying stream gets: one delayed by a scheduling hiccup (a 40 ms path
//! read 49 ms on a loaded machine) or unlucky jitter (two pings both read
//! 2.7 s on a 2 s ± 50 % path) would make it look slower than an identical
//! idle stream, whose estimate is the minimum of a ping every 250 ms.
//!
//! Cost: the link idles for about three path delays per probe (from the
//! last queued byte leaving the bottleneck: the drain ping's answer, then
//! two probe pings' round trips), at most once per path window (2 s, or 8
//! path delays), and only while the peer has another usable stream to
//! move to: the policy is the only reader of the estimate. Counted per
//! stream in `StreamStats::drain_probes` and `drain_withheld`.

use std::time::Duration;

use rand_core::RngCore;

use super::liveness::PingOut;
use super::PeerEngine;
use crate::frame::Frame;
use crate::{StreamId, Timestamp};

/// A probe starts only while at least this much of the stream's output is
/// unconfirmed: the stream carries a load (a receiver's credit and pongs do
/// not).
const LOADED: u64 = 16 * 1024;

/// Drained: at most this much output (control records sent during the
/// drain) is still unconfirmed.
const DRAINED: u64 = 1500;

/// Pings per probe, sent one after another on the drained stream.
pub(crate) const PROBE_PINGS: u8 = 3;

/// A probe that has not finished after this many smoothed round trips
/// (at least [`MIN_LIMIT`]) is given up; the next may start a path window
/// after it started.
const LIMIT_SRTTS: u32 = 3;
const MIN_LIMIT: Duration = Duration::from_millis(500);

/// Where a stream's drain probe stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ProbeState {
    /// Data flows.
    #[default]
    Idle,
    /// New data is withheld until everything sent is known delivered.
    Draining,
    /// Drained: probe pings go one after another; `nonce` is the one
    /// queued or out (none while an older ping is still out), `left` how
    /// many follow it. Data resumes behind the last.
    Probing { nonce: Option<u64>, left: u8 },
}

/// A stream's drain probe.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DrainProbe {
    pub state: ProbeState,
    /// When the current or last probe started.
    pub started: Option<Timestamp>,
}

impl DrainProbe {
    /// Whether new session data is held back from the stream.
    pub fn withholds(&self) -> bool {
        self.state != ProbeState::Idle
    }
}

impl PeerEngine {
    /// At a policy tick: gives up probes that took too long and, if
    /// `start` (the peer has another usable stream and sessions), starts
    /// one on each loaded carrying stream whose path delay is stale.
    pub(super) fn tick_drain_probes(&mut self, now: Timestamp, start: bool) {
        let mut ping = Vec::new();
        for st in self.streams.iter_mut() {
            let window = st.meter.path_window(now);
            let since = st.probe.started.map(|at| now.saturating_duration_since(at));
            if st.probe.withholds() {
                let limit = (st.liveness.rtt.srtt * LIMIT_SRTTS).max(MIN_LIMIT);
                if !st.is_usable() || since.is_some_and(|d| d >= limit) {
                    st.end_probe(now);
                }
                continue;
            }
            if start
                && st.is_usable()
                && st.senders > 0
                && st.meter.unconfirmed() >= LOADED
                && st.meter.is_stale(now)
                && since.is_none_or(|d| d >= window)
            {
                st.probe = DrainProbe {
                    state: ProbeState::Draining,
                    started: Some(now),
                };
                st.stats.drain_probes += 1;
                if st.liveness.ping.is_none() {
                    ping.push(st.id);
                }
            }
        }
        for id in ping {
            self.queue_ping(now, id);
        }
    }

    /// A pong (of `pong`) or a credit arrived on `stream`: a drain under
    /// way may be complete (then the first probe ping is queued), or need
    /// a ping behind the last data to prove it; a probe ping's answer
    /// queues the next.
    pub(super) fn on_probe_progress(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        pong: Option<u64>,
    ) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        let ping_out = st.liveness.ping.is_some();
        let next = match st.probe.state {
            ProbeState::Idle => return,
            ProbeState::Draining if st.meter.unconfirmed() > DRAINED => {
                if !ping_out {
                    self.queue_ping(now, stream);
                }
                return;
            }
            ProbeState::Draining => PROBE_PINGS,
            ProbeState::Probing { nonce: None, left } => left + 1,
            ProbeState::Probing {
                nonce: Some(n),
                left,
            } if pong == Some(n) && left > 0 => left,
            ProbeState::Probing { .. } => return,
        };
        // Drained, or the previous probe ping answered: the next one. A
        // ping still out was sent behind a queue: its answer comes first.
        st.probe.state = ProbeState::Probing {
            nonce: None,
            left: next - 1,
        };
        if !ping_out {
            let nonce = self.queue_ping(now, stream);
            if let Some(st) = self.streams.get_mut(stream) {
                st.probe.state = ProbeState::Probing {
                    nonce,
                    left: next - 1,
                };
            }
        }
    }

    /// Queues a ping on `stream` (none may be out); returns its nonce.
    fn queue_ping(&mut self, now: Timestamp, stream: StreamId) -> Option<u64> {
        let nonce = self.rng.next_u64();
        let st = self.streams.get_mut(stream)?;
        st.liveness.ping = Some(PingOut::new(nonce, now));
        st.tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
        Some(nonce)
    }
}

impl super::streams::PeerStream {
    /// Whether `nonce` is the probe ping out now.
    pub(super) fn is_probe_ping(&self, nonce: u64) -> bool {
        matches!(self.probe.state, ProbeState::Probing { nonce: Some(n), .. } if n == nonce)
    }

    /// Whether a probe ping is queued: the record that carries it leaves
    /// alone (`transmit.rs`).
    pub(super) fn probe_ping_due(&self) -> bool {
        matches!(self.probe.state, ProbeState::Probing { nonce: Some(n), .. }
            if self.tx.ctrl.iter().any(|f| matches!(f, Frame::Ping { nonce, pong: false } if *nonce == n)))
    }

    /// A record carrying the ping `nonce` was built: if it is the last
    /// probe ping, data resumes behind it.
    pub(super) fn on_probe_ping_sent(&mut self, now: Timestamp, nonce: u64) {
        if self.probe.state
            == (ProbeState::Probing {
                nonce: Some(nonce),
                left: 0,
            })
        {
            self.end_probe(now);
        }
    }

    /// Data resumes.
    pub(super) fn end_probe(&mut self, now: Timestamp) {
        if let Some(at) = self.probe.started {
            self.stats.drain_withheld += now.saturating_duration_since(at);
        }
        self.probe.state = ProbeState::Idle;
    }
}
