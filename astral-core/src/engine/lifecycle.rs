//! Streams joining and leaving an engine (their liveness is in
//! `liveness.rs`).

use bytes::BytesMut;
use rand_core::RngCore;

use super::liveness::Liveness;
use super::sessions::Phase;
use super::streams::{LocalDrain, PeerStream, TokenBucket, TxQueues};
use super::PeerEngine;
use crate::event::{CloseReason, Event, ProtocolViolation, StreamCloseReason};
use crate::frame::Frame;
use crate::noise::{Established, Features, RecordOpener, RecordSealer};
use crate::path::PathMeter;
use crate::stream::{StreamPreference, StreamStats};
use crate::{EngineId, NodeId, StreamId, Timestamp};

/// A stream whose handshake completed, on its way from the
/// [`Endpoint`](crate::Endpoint) to its peer's engine
/// ([`PeerEngine::add_stream`]). Carries the record cipher and any bytes
/// that followed the handshake.
pub struct NewStream {
    pub(crate) stream: StreamId,
    pub(crate) engine: EngineId,
    pub(crate) established: Established,
    pub(crate) rx: BytesMut,
    /// Engines of older incarnations of the same identity: the peer
    /// restarted (or a second process shares its key).
    pub(crate) superseded: Vec<Superseded>,
    /// The engine, when this stream is the first of a new one.
    pub(crate) created: Option<PeerEngine>,
}

/// An engine of an earlier incarnation of a peer that came back with a new
/// one: pass `how` to [`PeerEngine::handle_superseded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superseded {
    /// The engine of the earlier incarnation.
    pub engine: EngineId,
    /// Whether the new incarnation said that this one is gone.
    pub how: Supersession,
}

/// How an engine was superseded by a new incarnation of its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Supersession {
    /// The new incarnation's handshake named this incarnation in its
    /// `supersedes` field: the process behind it is gone (its host-local
    /// record said so), and its sessions end at once.
    Announced,
    /// The new incarnation said nothing about this one: the peer restarted,
    /// or it is a second live process with the same key (a twin). Its
    /// streams are probed; one silent for an RTO after its probe is closed.
    Presumed,
}

impl std::fmt::Debug for NewStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewStream")
            .field("stream", &self.stream)
            .field("engine", &self.engine)
            .field("peer", &self.established.remote)
            .field("incarnation", &self.established.incarnation)
            .finish_non_exhaustive()
    }
}

impl NewStream {
    /// The stream.
    pub fn stream(&self) -> StreamId {
        self.stream
    }
    /// The engine that must take it.
    pub fn engine(&self) -> EngineId {
        self.engine
    }
    /// The authenticated peer.
    pub fn peer(&self) -> NodeId {
        self.established.remote
    }
    /// The peer's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.established.incarnation
    }
    /// Engines of earlier incarnations of this peer; call
    /// [`PeerEngine::handle_superseded`] on each.
    pub fn superseded(&self) -> &[Superseded] {
        &self.superseded
    }
    /// The engine this stream needs, when it did not exist before: the
    /// caller keeps it from now on (and routes [`NewStream::engine`] to it).
    pub fn take_created(&mut self) -> Option<PeerEngine> {
        self.created.take()
    }

    /// Takes the stream's keys out of the engine-to-be, for a driver that
    /// seals and opens records itself, outside the lock it keeps around the
    /// engine (the engine then builds
    /// [`UnsealedRecords`](crate::noise::UnsealedRecords) with
    /// [`PeerEngine::poll_transmit_unsealed`] and takes
    /// [`OpenedRecords`](crate::noise::OpenedRecords) with
    /// [`PeerEngine::handle_records`]). Call it before
    /// [`PeerEngine::add_stream`]. The ciphertext that followed the last
    /// handshake message comes with the keys: open it first. `None` if the
    /// keys were taken already.
    pub fn detach_record_layer(&mut self) -> Option<DetachedRecordLayer> {
        let (sealer, opener) = self.established.cipher.detach()?;
        Some(DetachedRecordLayer {
            sealer,
            opener,
            pending_input: std::mem::take(&mut self.rx),
        })
    }
}

/// A stream's record layer in the driver's hands
/// ([`NewStream::detach_record_layer`]).
#[derive(Debug)]
pub struct DetachedRecordLayer {
    /// Seals what the engine builds for the stream.
    pub sealer: RecordSealer,
    /// Opens what arrives, before it goes to the engine.
    pub opener: RecordOpener,
    /// Ciphertext that arrived with the last handshake message.
    pub pending_input: BytesMut,
}

impl PeerEngine {
    /// Takes an authenticated stream of this engine's peer. Reports
    /// `StreamUp` (and `Linked` for the first), or `StreamDown` if a limit or
    /// a protocol rule refuses it; bytes that followed the handshake are
    /// processed at once.
    pub fn add_stream(&mut self, now: Timestamp, new: NewStream) {
        self.last_now = now;
        let NewStream {
            stream: sid,
            established: est,
            rx,
            ..
        } = new;
        let refuse = if self.leaving {
            Some(StreamCloseReason::Shutdown)
        } else if !est.features.contains(Features::EXTENDED_FRAMES) {
            Some(StreamCloseReason::ProtocolError(
                ProtocolViolation::NoExtendedFrames,
            ))
        } else if self.streams.len() >= self.shared.config.max_streams_per_peer {
            Some(StreamCloseReason::LimitExceeded("max_streams_per_peer"))
        } else if self.streams.by_wire(est.stream_id).is_some() {
            Some(StreamCloseReason::DuplicateId)
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.shared.streams.release();
            self.events.push_back(Event::StreamDown {
                stream: sid,
                peer: Some(self.peer),
                reason,
            });
            return;
        }
        self.incarnation = Some(est.incarnation);
        let first = self.streams.is_empty();
        let keepalive = self.shared.config.keepalive_interval;
        let per_sec = self.shared.config.unknown_session_resets_per_sec;
        // Ping at once: it confirms the stream to the peer and gives a
        // first RTT sample before any policy decision.
        let nonce = self.rng.next_u64();
        let mut tx = TxQueues::default();
        tx.ctrl.push_back(Frame::Ping { nonce, pong: false });
        self.streams.insert(PeerStream {
            id: sid,
            wire: est.stream_id,
            initiator: est.initiator,
            features: est.features,
            cipher: Box::new(est.cipher),
            rx,
            tx,
            senders: 0,
            migrating_from: 0,
            liveness: Liveness::new(now, nonce, keepalive),
            established_at: now,
            // The responder has read message 3, so its peer knows the
            // stream; the dialer learns the peer knows it from the first
            // record.
            confirmed: !est.initiator,
            local_drain: LocalDrain::No,
            remote_drain: false,
            leaving: None,
            stats: StreamStats::default(),
            resets: TokenBucket::new(now, per_sec),
            meter: PathMeter::new(now, self.shared.config.path_window),
            probe: Default::default(),
            preference: StreamPreference::NORMAL,
            peer_preference: StreamPreference::NORMAL,
        });
        self.publish_stream_count();
        self.start_liveness(sid);
        self.events.push_back(Event::StreamUp {
            stream: sid,
            peer: self.peer,
        });
        if first {
            self.events.push_back(Event::Linked(self.peer));
        }
        if !est.initiator {
            self.events
                .push_back(Event::StreamConfirmed { stream: sid });
        }
        self.arm_policy(now);
        self.on_stream_usable(now);
        // Records that arrived with the last handshake message.
        self.process_records(now, sid);
        self.after_input();
    }

    /// A newer incarnation of this peer connected: the peer restarted, or a
    /// second process shares its key. Sessions never move between
    /// incarnations.
    ///
    /// [`Supersession::Announced`] (the new incarnation said this one is
    /// gone): every session ends at once (`PeerRestarted`) and every stream
    /// closes (`StreamCloseReason::PeerRestarted`), silent ones included.
    ///
    /// [`Supersession::Presumed`]: without a live stream the old
    /// incarnation's sessions cannot resume anywhere, so they end at once
    /// (`PeerRestarted`, no `recovery_timeout` wait); with live streams (a
    /// twin, or streams not yet known dead) they go on, each stream is
    /// probed at once, a stream whose probe stays unanswered for an RTO is
    /// closed (see `liveness.rs`), and they end as soon as the last of
    /// those streams is gone.
    pub fn handle_superseded(&mut self, now: Timestamp, how: Supersession) {
        self.last_now = now;
        self.superseded = true;
        if how == Supersession::Announced {
            tracing::debug!(peer = %self.peer, "superseded by the peer's new incarnation");
            self.end_all(now, CloseReason::PeerRestarted);
            self.lazy_credits.clear();
            for id in self.streams.ids() {
                self.kill_stream(now, id, StreamCloseReason::PeerRestarted);
            }
            return;
        }
        if self.streams.is_empty() {
            self.end_all(now, CloseReason::PeerRestarted);
            return;
        }
        self.probe_all(now);
    }

    /// Ends every session with `reason` and forgets closed ones.
    pub(super) fn end_all(&mut self, now: Timestamp, reason: CloseReason) {
        for id in self.sessions.ids() {
            self.close(now, id, reason.clone());
        }
        self.time_wait.clear();
    }

    /// The driver's transport for `stream` ended (EOF, error, reset).
    pub fn handle_transport_closed(&mut self, now: Timestamp, stream: StreamId, reason: &str) {
        self.last_now = now;
        self.kill_stream(
            now,
            stream,
            StreamCloseReason::TransportClosed(reason.to_string()),
        );
        self.after_input();
    }

    /// Closes a stream at the application's request. Its sessions resume on
    /// other streams to the peer (or close after `recovery_timeout`).
    pub fn close_stream(&mut self, now: Timestamp, stream: StreamId) {
        self.last_now = now;
        self.kill_stream(now, stream, StreamCloseReason::Local);
        self.after_input();
    }

    /// Ends a stream for `reason`, reports it and lets its sessions recover.
    pub(super) fn kill_stream(&mut self, now: Timestamp, sid: StreamId, reason: StreamCloseReason) {
        let Some(stream) = self.streams.remove(sid) else {
            return;
        };
        self.shared.streams.release();
        self.publish_stream_count();
        self.policy.forget(sid);
        let drained = reason == StreamCloseReason::Drained;
        self.events.push_back(Event::StreamDown {
            stream: sid,
            peer: Some(self.peer),
            reason,
        });
        if self.streams.is_empty() {
            self.events.push_back(Event::Unlinked(self.peer));
            if self.superseded {
                self.end_all(now, CloseReason::PeerRestarted);
                return;
            }
        }
        if self.leaving {
            // Every session already ended with the shutdown.
            return;
        }
        self.on_stream_gone(now, stream.id, drained);
    }

    /// A usable stream appeared (came up, was confirmed, or was heard from
    /// again after a suspicion): sessions that lost (or never had) a sending
    /// stream take one, sessions parked on a draining stream move to a
    /// usable one, sessions left on a suspect stream resume on it, and
    /// closed sessions re-announce their final counts.
    pub(super) fn on_stream_usable(&mut self, now: Timestamp) {
        for suspect in self.suspects_with_senders() {
            self.recover_off_suspect(now, suspect);
        }
        self.announce_closed();
        // Orphans, and sessions parked on a draining stream. (A session on a
        // stream the peer has not confirmed yet is fine where it is.)
        let ids = self.sessions.ids_where(|s| {
            s.tx.is_none_or(|t| self.streams.get(t).is_none_or(|st| st.is_draining()))
        });
        if ids.is_empty() {
            return;
        }
        let candidates = self.candidates();
        let usable = if candidates.is_empty() {
            None
        } else {
            self.policy.choose(&candidates)
        };
        for id in ids {
            let Some(s) = self.sessions.get(id) else {
                continue;
            };
            match (s.tx, usable) {
                (Some(tx), Some(to)) if tx != to && s.may_send_data() => {
                    // Parked on a draining stream: a real migration (a
                    // marker, so the peer follows).
                    self.on_migration_started(id, to);
                }
                (Some(_), None) => {}
                (tx, to) => {
                    let Some(to) = to.or_else(|| self.best_stream(None)) else {
                        continue;
                    };
                    if tx == Some(to) {
                        continue;
                    }
                    if let Some(s) = self.sessions.get_mut(id) {
                        match s.phase {
                            Phase::Recovering { .. } => s.owed.resume = true,
                            Phase::Routing(_) => s.owed.query = true,
                            _ => {}
                        }
                    }
                    self.rebind(id, Some(to));
                }
            }
        }
    }
}
