//! Inbound path: ciphertext → records → frames → sessions.

use bytes::Bytes;

use crate::event::{CloseReason, Event, StreamCloseReason};
use crate::flow::FlowError;
use crate::frame::{DecodeLimits, Frame, FrameReader};
use crate::node::codes;
use crate::session::{self, Role, Session, SessionState};
use crate::stream::Crypto;
use crate::{Node, SessionId, StreamId, Timestamp};

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

impl Node {
    /// Ciphertext from the transport of `stream`.
    ///
    /// Errors are not returned: a bad record or frame closes that stream
    /// (reported as `Event::StreamDown` with the reason) and never affects
    /// other streams.
    pub fn handle_input(&mut self, now: Timestamp, stream: StreamId, data: &[u8]) {
        self.last_now = now;
        self.take_input(now, stream, data);
        if self.drains_dirty {
            self.check_drains();
        }
    }

    fn take_input(&mut self, now: Timestamp, stream: StreamId, data: &[u8]) {
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        st.stats.bytes_in += data.len() as u64;
        // Records are decrypted in place and their payloads handed on, so
        // the buffer's front is often shared: grow in large steps.
        if st.rx.capacity() - st.rx.len() < data.len() {
            st.rx.reserve(data.len().max(RX_CHUNK));
        }
        st.rx.extend_from_slice(data);
        if let Crypto::Handshake(hs) = &mut st.crypto {
            if let Err(e) = hs.handle_input(&mut st.rx) {
                self.kill_stream(
                    now,
                    stream,
                    StreamCloseReason::HandshakeFailed(e.to_string()),
                );
                return;
            }
            if hs.is_complete() {
                self.establish(now, stream);
            }
        }
        self.drain_records(now, stream);
    }

    /// Decrypts and dispatches every complete record buffered for `stream`.
    fn drain_records(&mut self, now: Timestamp, stream: StreamId) {
        let limits = DecodeLimits {
            // Over-long queries are refused per session (Response LIMIT),
            // not treated as malformed: decode up to the wire maximum.
            max_query_len: u16::MAX as usize,
            max_payload_len: crate::noise::RecordCipher::MAX_PLAINTEXT,
        };
        loop {
            let Some(st) = self.streams.get_mut(&stream) else {
                return;
            };
            let Crypto::Transport(cipher) = &mut st.crypto else {
                return;
            };
            let record = match cipher.open_in_place(&mut st.rx) {
                Ok(None) => return,
                Ok(Some(record)) => record.freeze(),
                Err(e) => {
                    self.kill_stream(now, stream, StreamCloseReason::BadRecord(e.to_string()));
                    return;
                }
            };
            st.stats.records_in += 1;
            st.last_rx = now;
            if !st.confirmed {
                st.confirmed = true;
                self.events.push_back(Event::StreamConfirmed { stream });
            }
            let Some(p) = st.peer else { return };
            for frame in FrameReader::new(record, limits) {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        self.kill_stream(
                            now,
                            stream,
                            StreamCloseReason::ProtocolError(e.to_string()),
                        );
                        return;
                    }
                };
                if let Some(st) = self.streams.get_mut(&stream) {
                    st.stats.frames_in += 1;
                }
                if let Err(reason) = self.on_frame(now, stream, p, frame) {
                    self.kill_stream(now, stream, reason);
                    return;
                }
            }
            if self
                .streams
                .get(&stream)
                .is_some_and(|s| s.ctrl.len() > self.config.max_control_queue)
            {
                self.kill_stream(
                    now,
                    stream,
                    StreamCloseReason::LimitExceeded("control queue"),
                );
                return;
            }
        }
    }

    /// Dispatches one frame. Err closes the stream.
    fn on_frame(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        p: u32,
        frame: Frame,
    ) -> Result<(), StreamCloseReason> {
        match frame {
            Frame::Ping { nonce, pong: false } => {
                self.push_ctrl(stream, Frame::Ping { nonce, pong: true });
            }
            Frame::Ping { nonce, pong: true } => self.on_pong(now, stream, nonce),
            Frame::Query {
                session,
                buffer,
                query,
            } => self.on_query(now, stream, p, session, buffer, query),
            Frame::Response {
                session,
                code,
                buffer,
            } => self.on_response(now, stream, p, session, code, buffer),
            Frame::DataAt {
                session,
                offset,
                payload,
            } => self.on_data(now, stream, p, session, offset, payload),
            Frame::Credit { session, consumed } => {
                self.on_credit(now, stream, p, session, consumed)
            }
            Frame::Fin { session, offset } => self.on_fin(now, stream, p, session, offset),
            Frame::Reset { session } => {
                if let Some(id) = self.lookup(p, session) {
                    self.remove_session(now, id, CloseReason::ResetByPeer);
                }
            }
            Frame::MigrateTo {
                session,
                target,
                epoch,
            } => self.on_migrate_to(now, stream, p, session, target, epoch),
            Frame::Resume {
                session,
                received,
                consumed,
                reply,
            } => self.on_resume(now, stream, p, session, received, consumed, reply),
            Frame::Drain => self.on_drain(now, stream, p),
            Frame::Read { .. } | Frame::Data { .. } | Frame::Migrate { .. } => {
                return Err(StreamCloseReason::ProtocolError(format!(
                    "base frame (opcode {}) on a stream that negotiated extended frames",
                    frame.opcode()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn lookup(&self, p: u32, wire: u64) -> Option<SessionId> {
        self.wire_map.get(&(p, wire)).copied()
    }

    fn on_pong(&mut self, now: Timestamp, stream: StreamId, nonce: u64) {
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Some((n, sent)) = st.ping_outstanding {
            if n == nonce {
                st.rtt.sample(now.saturating_duration_since(sent));
                st.ping_outstanding = None;
            }
        }
        if st.drain_nonce == Some(nonce) {
            st.drain_nonce = None;
            self.finish_drain(now, stream);
        }
    }

    /// Frames for sessions this node does not know get a rate-limited Reset,
    /// except stale ones of recently closed sessions.
    fn unknown_session(&mut self, now: Timestamp, stream: StreamId, p: u32, wire: u64) {
        if self.time_wait.contains_key(&(p, wire)) {
            return;
        }
        let per_sec = self.config.unknown_session_resets_per_sec;
        if let Some(st) = self.streams.get_mut(&stream) {
            if st.take_reset_token(now, per_sec) {
                st.ctrl.push_back(Frame::Reset { session: wire });
            }
        }
    }

    /// The peer broke a session's rules: reset that session only.
    pub(crate) fn session_violation(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        id: SessionId,
        err: FlowError,
    ) {
        let Some(s) = self.get(id) else { return };
        let wire = s.wire;
        tracing::warn!(session = ?id, %err, "session protocol violation");
        self.push_ctrl(stream, Frame::Reset { session: wire });
        self.remove_session(now, id, CloseReason::ProtocolError(err.to_string()));
    }

    /// A frame of session `id` arrived on `stream`: note where the peer
    /// sends, and complete a migration once its traffic shows on the target.
    pub(crate) fn touch(&mut self, id: SessionId, stream: StreamId) {
        let Some(s) = self.get_mut(id) else { return };
        s.set_recv_stream(stream);
        if s.state == SessionState::Migrating && s.send_stream() == stream {
            s.transition(SessionState::Open);
            s.migrations = s.migrations.saturating_add(1);
            let from = s.migrated_from();
            self.events.push_back(Event::Migrated {
                session: id,
                from,
                to: stream,
            });
            // Checked once after the whole input, not per session: a drain
            // of many sessions completes many migrations per record.
            self.drains_dirty = true;
        }
    }

    fn on_query(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        p: u32,
        wire: u64,
        buffer: u32,
        query: String,
    ) {
        if let Some(id) = self.lookup(p, wire) {
            self.duplicate_query(now, stream, id);
            return;
        }
        if self.time_wait.contains_key(&(p, wire)) {
            return;
        }
        let reject = if query.len() > self.config.max_query_len {
            Some(codes::LIMIT)
        } else if self.pending_inbound >= self.config.max_pending_queries {
            Some(codes::BUSY)
        } else if self.peers[p as usize].session_count >= self.config.max_sessions_per_peer {
            Some(codes::LIMIT)
        } else {
            None
        };
        if let Some(code) = reject {
            self.push_ctrl(
                stream,
                Frame::Response {
                    session: wire,
                    code,
                    buffer: 0,
                },
            );
            return;
        }
        let mut s = Session::new(
            wire,
            p,
            Role::Responder,
            SessionState::Pending,
            self.config.recv_window,
        );
        s.send.set_peer_window(buffer);
        s.set_recv_stream(stream);
        let id = self.alloc_session(s);
        self.pending_inbound += 1;
        self.timers.arm(
            now + self.config.routing_timeout,
            crate::timer::TimerKey::Session(id, crate::timer::ROUTING_TAG),
        );
        self.rebind(id, stream);
        let peer = self.peers[p as usize].id;
        self.events.push_back(Event::Query {
            session: id,
            peer,
            query,
        });
    }

    /// The querier sent its Query again (its stream died before it saw our
    /// answer): answer again on the stream it came on and resend our data.
    fn duplicate_query(&mut self, now: Timestamp, stream: StreamId, id: SessionId) {
        let _ = now;
        let Some(s) = self.get_mut(id) else { return };
        if s.role != Role::Responder {
            // Both sides picked the same wire id (2^-64): refuse theirs.
            let wire = s.wire;
            self.push_ctrl(
                stream,
                Frame::Response {
                    session: wire,
                    code: codes::ID_COLLISION,
                    buffer: 0,
                },
            );
            return;
        }
        if s.state == SessionState::Pending {
            self.rebind(id, stream);
            return;
        }
        if s.state.is_established() {
            s.set(session::F_RESPONSE_PENDING);
            // The querier had not seen our Response, so nothing we sent was
            // read: resend from what it credited (nothing, unless a stale
            // Credit says otherwise).
            let _ = s.send.retransmit_from(0);
            if s.state == SessionState::Recovering {
                s.transition(SessionState::Open);
                s.recoveries = s.recoveries.saturating_add(1);
                s.clear(session::F_RESUME_PENDING);
                let resent = s.send.sent_max() - s.send.sent();
                self.events.push_back(Event::Recovered {
                    session: id,
                    resent_bytes: resent,
                });
            }
            self.rebind(id, stream);
        }
    }

    fn on_response(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        p: u32,
        wire: u64,
        code: u8,
        buffer: u32,
    ) {
        let Some(id) = self.lookup(p, wire) else {
            return;
        };
        let Some(s) = self.get_mut(id) else { return };
        if s.role != Role::Querier || s.state != SessionState::Routing {
            return;
        }
        if code != codes::ACCEPTED {
            self.remove_session(now, id, CloseReason::Rejected(code));
            return;
        }
        s.transition(SessionState::Open);
        s.send.set_peer_window(buffer);
        s.clear(session::F_QUERY_PENDING);
        self.forget_query(id);
        self.events.push_back(Event::SessionOpen { session: id });
        // Send where the responder answered: both sides agree from the start.
        self.rebind(id, stream);
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
        p: u32,
        wire: u64,
        apply: impl FnOnce(&mut Session) -> Result<FlowEffect, FlowError>,
    ) {
        let Some(id) = self.lookup(p, wire) else {
            self.unknown_session(now, stream, p, wire);
            return;
        };
        let Some(s) = self.get_mut(id) else { return };
        match apply(s) {
            Ok(FlowEffect::None) => {}
            Ok(FlowEffect::Readable) => {
                if s.has(session::F_READ_CLOSED) {
                    // The application closed its read side: consume (and
                    // credit) whatever arrives so the peer can finish.
                    s.recv.discard_readable();
                    self.schedule_ctrl(id);
                } else {
                    self.signal_readable(id);
                }
            }
            Ok(FlowEffect::Credited) => {
                self.schedule(id);
                self.signal_writable(id);
            }
            Err(e) => {
                self.session_violation(now, stream, id, e);
                return;
            }
        }
        self.touch(id, stream);
        self.maybe_finish(now, id);
    }

    fn on_data(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        p: u32,
        wire: u64,
        offset: u64,
        payload: Bytes,
    ) {
        self.on_flow_frame(now, stream, p, wire, |s| {
            if s.state == SessionState::Pending {
                // We granted no credit before accepting.
                let end = offset.saturating_add(payload.len() as u64);
                return Err(FlowError::CreditExceeded {
                    offset,
                    end,
                    limit: 0,
                });
            }
            let new = s.recv.on_data(offset, payload)?;
            Ok(if new {
                FlowEffect::Readable
            } else {
                FlowEffect::None
            })
        });
    }

    fn on_credit(&mut self, now: Timestamp, stream: StreamId, p: u32, wire: u64, consumed: u64) {
        self.on_flow_frame(now, stream, p, wire, |s| {
            let advanced = s.send.on_credit(consumed)?;
            Ok(if advanced {
                FlowEffect::Credited
            } else {
                FlowEffect::None
            })
        });
    }

    fn on_fin(&mut self, now: Timestamp, stream: StreamId, p: u32, wire: u64, offset: u64) {
        self.on_flow_frame(now, stream, p, wire, |s| {
            s.recv.on_fin(offset)?;
            Ok(FlowEffect::Readable)
        });
    }

    pub(crate) fn signal_readable(&mut self, id: SessionId) {
        let Some(s) = self.get_mut(id) else { return };
        if s.recv.is_readable() && !s.has(session::F_READABLE_SIGNALLED) && s.state.is_established()
        {
            s.set(session::F_READABLE_SIGNALLED);
            self.events.push_back(Event::Readable { session: id });
        }
    }

    pub(crate) fn signal_writable(&mut self, id: SessionId) {
        let cap = self.config.send_buffer;
        let Some(s) = self.get_mut(id) else { return };
        if s.has(session::F_WRITE_BLOCKED) && s.send.capacity(cap) > 0 && s.state.is_established() {
            s.clear(session::F_WRITE_BLOCKED);
            self.events.push_back(Event::Writable { session: id });
        }
    }

    /// Removes the session if both directions are complete.
    pub(crate) fn maybe_finish(&mut self, now: Timestamp, id: SessionId) {
        if self.get(id).is_some_and(|s| s.is_done()) {
            self.remove_session(now, id, CloseReason::Graceful);
        }
    }

    pub(crate) fn maybe_finish_soon(&mut self, id: SessionId) {
        let now = self.last_now;
        self.maybe_finish(now, id);
    }
}
