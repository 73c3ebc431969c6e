//! Inbound path of an engine: ciphertext → records → frames → sessions.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::sessions::{Ending, Phase, Session};
use super::PeerEngine;
use crate::event::{CloseReason, Event, ProtocolViolation, StreamCloseReason};
use crate::flow::FlowError;
use crate::frame::{DecodeLimits, Frame, FrameReader};
use crate::noise::{NoiseError, OpenedRecords, RecordCipher};
use crate::session::Role;
use crate::stream::StreamPreference;
use crate::timer::EngineTimer;
use crate::{codes, SessionId, StreamId, Timestamp};

/// What applying a flow frame changed, for the follow-up signalling.
enum FlowEffect {
    None,
    /// New bytes or end-of-stream became readable.
    Readable,
    /// The peer's credit advanced: more may be sent, and written.
    Credited,
}

/// Allocation step of a stream's receive buffer.
const RX_CHUNK: usize = 256 * 1024;

/// Queries are refused per session (Response LIMIT) when too long, not
/// treated as malformed: decode up to the wire maximum.
const LIMITS: DecodeLimits = DecodeLimits {
    max_query_len: u16::MAX as usize,
    max_payload_len: RecordCipher::MAX_PLAINTEXT,
};

impl PeerEngine {
    /// Ciphertext from the transport of `stream` (copied into the stream's
    /// buffer). Errors are not returned: a bad record or frame closes that
    /// stream (reported as `Event::StreamDown`) and never affects others.
    pub fn handle_input(&mut self, now: Timestamp, stream: StreamId, data: &[u8]) {
        self.last_now = now;
        if !self.accepts_ciphertext(now, stream) {
            return;
        }
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        st.stats.bytes_in += data.len() as u64;
        if !data.is_empty() {
            st.liveness.on_bytes(now, st.stats.bytes_in);
        }
        // Records are decrypted in place and their payloads handed on, so
        // the buffer's front is often shared: grow in large steps.
        if st.rx.capacity() - st.rx.len() < data.len() {
            st.rx.reserve(data.len().max(RX_CHUNK));
        }
        st.rx.extend_from_slice(data);
        self.process_records(now, stream);
        self.after_input();
    }

    /// Like [`PeerEngine::handle_input`] with an owned buffer: when nothing
    /// is pending from earlier input, the buffer itself becomes the stream's
    /// receive buffer (no copy), like quinn-proto's `Endpoint::handle`.
    pub fn handle_input_owned(&mut self, now: Timestamp, stream: StreamId, data: BytesMut) {
        self.last_now = now;
        if !self.accepts_ciphertext(now, stream) {
            return;
        }
        self.take_input(now, stream, data);
    }

    /// Records of a stream whose keys the driver holds
    /// ([`NewStream::detach_record_layer`](super::NewStream::detach_record_layer)),
    /// opened by its [`RecordOpener`](crate::noise::RecordOpener) (outside
    /// any lock the driver keeps around the engine). The records' memory
    /// becomes the sessions' receive buffers: no copy.
    pub fn handle_records(&mut self, now: Timestamp, stream: StreamId, records: OpenedRecords) {
        self.last_now = now;
        let detached = self.streams.get(stream).map(|s| s.cipher.is_detached());
        if detached == Some(false) {
            self.kill_stream(
                now,
                stream,
                StreamCloseReason::BadRecord(NoiseError::Misuse(
                    "opened records for a stream whose keys the engine holds",
                )),
            );
            self.after_input();
            return;
        }
        self.take_input(now, stream, records.buf);
    }

    /// The driver's [`RecordOpener`](crate::noise::RecordOpener) or
    /// [`RecordSealer`](crate::noise::RecordSealer) of `stream` failed: the
    /// stream closes with that error, as if the engine had met it.
    pub fn handle_record_error(&mut self, now: Timestamp, stream: StreamId, error: NoiseError) {
        self.last_now = now;
        self.kill_stream(now, stream, StreamCloseReason::BadRecord(error));
        self.after_input();
    }

    /// Ciphertext is only for streams whose keys the engine holds: on a
    /// detached stream it would be read as plaintext. Closes such a stream.
    fn accepts_ciphertext(&mut self, now: Timestamp, stream: StreamId) -> bool {
        if !self
            .streams
            .get(stream)
            .is_some_and(|s| s.cipher.is_detached())
        {
            return true;
        }
        self.kill_stream(
            now,
            stream,
            StreamCloseReason::BadRecord(NoiseError::Misuse(
                "ciphertext for a stream whose keys the driver holds",
            )),
        );
        self.after_input();
        false
    }

    /// Appends `data` to the stream's input without a copy when nothing is
    /// pending, and processes the whole records.
    fn take_input(&mut self, now: Timestamp, stream: StreamId, data: BytesMut) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        st.stats.bytes_in += data.len() as u64;
        if !data.is_empty() {
            st.liveness.on_bytes(now, st.stats.bytes_in);
        }
        if st.rx.is_empty() {
            st.rx = data;
        } else {
            st.rx.extend_from_slice(&data);
        }
        self.process_records(now, stream);
        self.after_input();
    }

    /// Decrypts and dispatches every complete record buffered for `stream`.
    pub(super) fn process_records(&mut self, now: Timestamp, stream: StreamId) {
        loop {
            let Some(st) = self.streams.get_mut(stream) else {
                return;
            };
            if self.leaving {
                // This node said Goodbye: nothing the peer sends matters.
                st.rx.clear();
                return;
            }
            let record = match st.cipher.open_in_place(&mut st.rx) {
                Ok(None) => return,
                Ok(Some(record)) => record.freeze(),
                Err(e) => {
                    self.kill_stream(now, stream, StreamCloseReason::BadRecord(e));
                    return;
                }
            };
            st.stats.records_in += 1;
            let newly_confirmed = !st.confirmed;
            st.confirmed = true;
            self.on_heard(now, stream);
            if newly_confirmed {
                self.events.push_back(Event::StreamConfirmed { stream });
                self.on_stream_usable(now);
            }
            if !self.dispatch_record(now, stream, record) {
                return;
            }
            self.settle_silence(now, stream);
            let over = self
                .streams
                .get(stream)
                .is_some_and(|s| s.tx.ctrl.len() > self.shared.config.max_control_queue);
            if over {
                self.kill_stream(
                    now,
                    stream,
                    StreamCloseReason::LimitExceeded("control queue"),
                );
                return;
            }
        }
    }

    /// Dispatches one record's frames; false if the stream was closed.
    fn dispatch_record(&mut self, now: Timestamp, stream: StreamId, record: Bytes) -> bool {
        let mut frames = 0u64;
        for frame in FrameReader::new(record, LIMITS) {
            frames += 1;
            let result = match frame {
                Ok(f) => self.on_frame(now, stream, f),
                Err(e) => Err(StreamCloseReason::ProtocolError(ProtocolViolation::Frame(
                    e,
                ))),
            };
            if let Err(reason) = result {
                self.kill_stream(now, stream, reason);
                return false;
            }
            if !self.streams.contains(stream) {
                return false;
            }
        }
        if let Some(st) = self.streams.get_mut(stream) {
            st.stats.frames_in += frames;
        }
        true
    }

    /// Dispatches one frame. Err closes the stream.
    fn on_frame(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        frame: Frame,
    ) -> Result<(), StreamCloseReason> {
        match frame {
            Frame::Ping { nonce, pong: false } => {
                self.push_ctrl(Some(stream), Frame::Ping { nonce, pong: true });
            }
            Frame::Ping { nonce, pong: true } => self.on_pong(now, stream, nonce),
            Frame::Query {
                session,
                buffer,
                query,
            } => self.on_query(now, stream, session, buffer, query),
            Frame::Response {
                session,
                code,
                buffer,
            } => self.on_response(now, stream, session, code, buffer),
            Frame::DataAt {
                session,
                offset,
                payload,
            } => {
                if let Some(st) = self.streams.get_mut(stream) {
                    st.liveness.data_in_at = Some(now);
                }
                self.on_data(now, stream, session, offset, payload)
            }
            Frame::Credit { session, consumed } => self.on_credit(now, stream, session, consumed),
            Frame::Window {
                session,
                consumed,
                window,
            } => self.on_window(now, stream, session, consumed, window),
            Frame::Fin { session, offset } => self.on_fin(now, stream, session, offset),
            Frame::Reset { session } => {
                if let Some(id) = self.sessions.lookup(session) {
                    self.close(now, id, CloseReason::ResetByPeer);
                }
            }
            Frame::MigrateTo {
                session,
                target,
                epoch,
            } => self.on_migrate_to(now, stream, session, target, epoch),
            Frame::Resume {
                session,
                received,
                consumed,
                reply,
            } => self.on_resume(now, stream, session, received, consumed, reply),
            Frame::Drain => self.on_drain(now, stream),
            Frame::Goodbye => self.on_goodbye(now, stream),
            Frame::Pin { session, pinned } => self.on_pin(session, pinned),
            Frame::Preference { tier, penalty_ms } => {
                if let Some(st) = self.streams.get_mut(stream) {
                    st.peer_preference = StreamPreference {
                        tier,
                        penalty: Duration::from_millis(u64::from(penalty_ms)),
                    };
                }
            }
            Frame::Read { .. } | Frame::Data { .. } | Frame::Migrate { .. } => {
                return Err(StreamCloseReason::ProtocolError(
                    ProtocolViolation::BaseFrame(frame.opcode()),
                ));
            }
        }
        Ok(())
    }

    fn on_pong(&mut self, now: Timestamp, stream: StreamId, nonce: u64) {
        let Some(st) = self.streams.get_mut(stream) else {
            return;
        };
        // Clears the liveness ping or probe it answers; the sample comes
        // from the path meter (which knows what queued ahead of the ping).
        let _ = st.liveness.take_pong(nonce, now);
        let probe = st.is_probe_ping(nonce);
        let before = st.liveness.rtt.path;
        if let Some(m) = st.meter.on_pong(now, nonce, st.stats.bytes_in) {
            st.take_sample(now, m, true, probe);
        }
        if probe {
            st.on_probe_sample(now, nonce, before);
        }
        self.on_probe_progress(now, stream, Some(nonce));
        self.on_drain_pong(now, stream, nonce);
    }

    /// Frames for sessions this engine does not know get a rate-limited
    /// Reset, except stale ones of recently closed sessions.
    fn unknown_session(&mut self, now: Timestamp, stream: StreamId, wire: u64) {
        // Stale frames of a finished session are dropped; a reset one is
        // reset again (its Reset may have died with a stream), rate-limited
        // like any other.
        if self
            .time_wait
            .get(wire)
            .is_some_and(|tw| !matches!(tw.ending, Ending::Reset))
        {
            return;
        }
        let per_sec = self.shared.config.unknown_session_resets_per_sec;
        if let Some(st) = self.streams.get_mut(stream) {
            if st.resets.take(now, per_sec) {
                st.tx.ctrl.push_back(Frame::Reset { session: wire });
            }
        }
    }

    /// The peer broke a session's rules: reset that session only.
    pub(super) fn session_violation(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        id: SessionId,
        err: FlowError,
    ) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let wire = s.wire;
        tracing::warn!(session = ?id, %err, "session protocol violation");
        self.push_ctrl(Some(stream), Frame::Reset { session: wire });
        self.close(now, id, CloseReason::ProtocolError(err));
    }

    /// A frame of session `id` arrived on `stream`: note where the peer
    /// sends, and complete a migration once its traffic shows on the target.
    pub(super) fn touch(&mut self, id: SessionId, stream: StreamId) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.rx = Some(stream);
        if matches!(s.phase, Phase::Migrating { .. }) && s.tx == Some(stream) {
            self.on_migration_confirmed(id);
        }
    }

    fn on_query(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        wire: u64,
        buffer: u32,
        query: String,
    ) {
        if let Some(id) = self.sessions.lookup(wire) {
            self.duplicate_query(now, stream, id);
            return;
        }
        if let Some(tw) = self.time_wait.get(wire) {
            // The querier sent its Query again (its stream died before it
            // saw our answer): answer the same way again, never ask the
            // application twice.
            let frame = match tw.ending {
                Ending::Finished { .. } => None,
                Ending::Reset => Some(Frame::Reset { session: wire }),
                Ending::Refused { code } => Some(Frame::Response {
                    session: wire,
                    code,
                    buffer: 0,
                }),
            };
            if let Some(f) = frame {
                self.push_ctrl(Some(stream), f);
            }
            return;
        }
        let config = &self.shared.config;
        let too_many = self.sessions.len() >= config.max_sessions_per_peer;
        let reject = if query.len() > config.max_query_len || too_many {
            Some(codes::LIMIT)
        } else if !self.shared.pending_queries.try_acquire() {
            Some(codes::BUSY)
        } else if !self.shared.sessions.try_acquire() {
            self.shared.pending_queries.release();
            Some(codes::LIMIT)
        } else {
            None
        };
        if let Some(code) = reject {
            self.push_ctrl(
                Some(stream),
                Frame::Response {
                    session: wire,
                    code,
                    buffer: 0,
                },
            );
            return;
        }
        let deadline = now + config.routing_timeout;
        let (window, reserved) = self.initial_window();
        let charge = super::budget::Charge {
            recv: reserved,
            send: 0,
        };
        let mut s = Session::new(
            wire,
            Role::Responder,
            Phase::Pending { deadline },
            window,
            charge,
        );
        s.send.set_peer_window(buffer);
        s.rx = Some(stream);
        let Some(id) = self.sessions.insert(s) else {
            self.shared.pending_queries.release();
            self.shared.sessions.release();
            self.release_charge(charge);
            return;
        };
        self.timers.arm(deadline, EngineTimer::SessionDeadline(id));
        let tx = self.answer_stream(stream);
        self.rebind(id, Some(tx));
        self.events.push_back(Event::Query {
            session: id,
            peer: self.peer,
            query,
        });
    }

    /// The querier sent its Query again (its stream died before it saw our
    /// answer): answer again on the stream it came on and resend our data.
    fn duplicate_query(&mut self, now: Timestamp, stream: StreamId, id: SessionId) {
        let _ = now;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.role != Role::Responder {
            // Both sides picked the same wire id (2^-64): refuse theirs.
            let wire = s.wire;
            self.push_ctrl(
                Some(stream),
                Frame::Response {
                    session: wire,
                    code: codes::ID_COLLISION,
                    buffer: 0,
                },
            );
            return;
        }
        let tx = self.answer_stream(stream);
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        match s.phase {
            Phase::Pending { .. } => self.rebind(id, Some(tx)),
            Phase::Routing(_) => {}
            Phase::Open | Phase::Migrating { .. } | Phase::Recovering { .. } => {
                s.owed.response = Some(codes::ACCEPTED);
                // A querier still waiting for our Response answers a Resume
                // of ours with this repeated Query, never with a reply.
                s.awaiting_resume = false;
                // The querier had not seen our Response, so nothing we sent
                // was read: resend from what it credited.
                let before = s.send.sent();
                let _ = s.send.retransmit_from(0, u64::MAX);
                let resent = before.saturating_sub(s.send.sent());
                s.set_tx_since(s.tx_since().min(s.send.sent()));
                if matches!(s.phase, Phase::Recovering { .. }) {
                    self.on_resumed(id, resent);
                }
                // The querier may have taken an earlier answer on another
                // stream (this Query is a late copy, e.g. from a suspect
                // stream that came back): a Resume makes it follow us to
                // where we answer (rule 5), so both sides end on one stream.
                if let Some(s) = self.sessions.get_mut(id) {
                    s.owed.resume = true;
                }
                self.rebind(id, Some(tx));
            }
        }
    }

    /// Where to answer a Query that came on `stream`: there, unless the
    /// stream is being drained (the querier sent it before it saw the
    /// Drain), then on a usable stream if there is one. The querier sends
    /// where the Response comes from, and a session bound to a draining
    /// stream would hold its barrier back for ever.
    fn answer_stream(&mut self, stream: StreamId) -> StreamId {
        if self.streams.get(stream).is_some_and(|st| st.is_draining()) {
            let mut c = self.candidates();
            c.retain(|c| c.id != stream);
            if !c.is_empty() {
                if let Some(alt) = self.policy.choose(&c) {
                    return alt;
                }
            }
        }
        stream
    }

    fn on_response(&mut self, now: Timestamp, stream: StreamId, wire: u64, code: u8, buffer: u32) {
        let Some(id) = self.sessions.lookup(wire) else {
            return;
        };
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        if s.role != Role::Querier || !matches!(s.phase, Phase::Routing(_)) {
            return;
        }
        if code != codes::ACCEPTED {
            self.close(now, id, CloseReason::Rejected(code));
            return;
        }
        self.on_response_accepted(id, stream, buffer);
        self.touch(id, stream);
        self.signal_readable(id);
        self.signal_writable(id);
    }

    /// The common path of the three flow frames (DataAt, Credit, Fin):
    /// find the session (or answer an unknown one), apply the frame to its
    /// flow, reset the session on a violation, then note where the peer's
    /// traffic arrived and whether the session is complete.
    fn on_flow_frame(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        wire: u64,
        apply: impl FnOnce(&mut Session) -> Result<FlowEffect, FlowError>,
    ) {
        let Some(id) = self.sessions.lookup(wire) else {
            self.unknown_session(now, stream, wire);
            return;
        };
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        match apply(s) {
            Ok(FlowEffect::None) => {}
            Ok(FlowEffect::Readable) => {
                if s.app.reset_on_data && s.recv.delivered() > s.recv.consumed() {
                    // Nobody will read this (the handle was released): tell
                    // the writer, as TCP answers data for a closed socket.
                    let wire = s.wire;
                    self.push_ctrl(Some(stream), Frame::Reset { session: wire });
                    self.close(now, id, CloseReason::ResetLocally);
                    return;
                }
                if s.app.read_closed {
                    // The application closed its read side: consume (and
                    // credit) whatever arrives so the peer can finish. A
                    // credit below the batching threshold goes out after
                    // `credit_delay`, as after a read: otherwise a peer
                    // whose limit came from a Resume (the base window,
                    // below a quarter of a window the tuner grew) waited
                    // for it for ever (fuzz input
                    // recovery_ordering/closed-reader-stall-00725b29).
                    s.recv.discard_readable();
                    self.schedule_ctrl(id);
                    self.defer_credit(id);
                } else {
                    self.signal_readable(id);
                }
            }
            Ok(FlowEffect::Credited) => {
                self.settle_send_charge(id);
                self.schedule(id);
                self.signal_writable(id);
            }
            Err(e) => {
                self.session_violation(now, stream, id, e);
                return;
            }
        }
        if let Some(s) = self.sessions.get_mut(id) {
            s.peer_tx = Some(stream);
        }
        self.touch(id, stream);
        self.maybe_finish(now, id);
    }

    fn on_data(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        wire: u64,
        offset: u64,
        payload: Bytes,
    ) {
        self.on_flow_frame(now, stream, wire, |s| {
            if matches!(s.phase, Phase::Pending { .. }) {
                // We granted no credit before accepting. (A querier granted
                // its window in the Query: data may overtake the Response.)
                let end = offset.saturating_add(payload.len() as u64);
                return Err(FlowError::CreditExceeded {
                    offset,
                    end,
                    limit: 0,
                });
            }
            s.tune.on_data(now);
            let new = s.recv.on_data(offset, payload)?;
            Ok(if new {
                FlowEffect::Readable
            } else {
                FlowEffect::None
            })
        });
    }

    /// A Credit or Window of `wire` arrived on `stream`: an RTT sample of
    /// the newest logged record of ours it covers.
    fn sample_credit(&mut self, now: Timestamp, stream: StreamId, wire: u64, consumed: u64) {
        if let Some(st) = self.streams.get_mut(stream) {
            if let Some(m) = st.meter.on_credit(now, wire, consumed, st.stats.bytes_in) {
                st.take_sample(now, m, false, false);
            }
        }
        self.on_probe_progress(now, stream, None);
    }

    fn on_credit(&mut self, now: Timestamp, stream: StreamId, wire: u64, consumed: u64) {
        self.sample_credit(now, stream, wire, consumed);
        self.on_flow_frame(now, stream, wire, |s| {
            let advanced = s.send.on_credit(consumed)?;
            Ok(if advanced {
                FlowEffect::Credited
            } else {
                FlowEffect::None
            })
        });
    }

    fn on_window(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        wire: u64,
        consumed: u64,
        window: u32,
    ) {
        self.sample_credit(now, stream, wire, consumed);
        self.on_flow_frame(now, stream, wire, |s| {
            let advanced = s.send.on_window(consumed, window)?;
            Ok(if advanced {
                FlowEffect::Credited
            } else {
                FlowEffect::None
            })
        });
    }

    fn on_fin(&mut self, now: Timestamp, stream: StreamId, wire: u64, offset: u64) {
        self.on_flow_frame(now, stream, wire, |s| {
            s.recv.on_fin(offset)?;
            Ok(FlowEffect::Readable)
        });
    }
}
