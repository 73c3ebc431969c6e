//! Outbound path: the per-stream scheduler builds records on demand.
//!
//! Records are built only when the driver pulls (`poll_transmit`), so the
//! core never buffers more ciphertext than the transport can take: that is
//! the backpressure from socket to session. Control frames go first, then
//! data from sessions in round robin with a quantum, all in one record (one
//! AEAD call per up to 65,519 bytes of frames).

use bytes::BytesMut;

use crate::event::StreamCloseReason;
use crate::frame::{encode_data_at_header, Frame, DATA_AT_HEADER_LEN};
use crate::noise::RecordCipher;
use crate::session::{self, SessionState};
use crate::stream::Crypto;
use crate::{Node, SessionId, StreamId, Timestamp};

/// Fin frame size: opcode + session + offset.
const FIN_LEN: usize = 17;

impl Node {
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
        self.last_now = now;
        let start = out.len();
        loop {
            if out.len() - start >= max_bytes {
                break;
            }
            let Some(st) = self.streams.get_mut(&stream) else {
                break;
            };
            match &mut st.crypto {
                Crypto::Handshake(hs) => {
                    match hs.poll_output(out) {
                        Ok(_) => {}
                        Err(e) => {
                            self.kill_stream(
                                now,
                                stream,
                                StreamCloseReason::HandshakeFailed(e.to_string()),
                            );
                            break;
                        }
                    }
                    if hs.is_complete() {
                        self.establish(now, stream);
                        continue;
                    }
                    break;
                }
                Crypto::Transport(_) => {
                    if !self.build_record(now, stream, out) {
                        break;
                    }
                }
                Crypto::None => break,
            }
        }
        let n = out.len() - start;
        if let Some(st) = self.streams.get_mut(&stream) {
            st.stats.bytes_out += n as u64;
            if st.close_after_flush && !st.has_output() {
                self.kill_stream(now, stream, StreamCloseReason::Drained);
            }
        }
        n
    }

    /// Writes one record's frames straight into `out` after a record
    /// header and encrypts them there. Returns false if there was nothing
    /// to send (`out` is then unchanged).
    fn build_record(&mut self, now: Timestamp, stream: StreamId, out: &mut BytesMut) -> bool {
        const MAX: usize = RecordCipher::MAX_PLAINTEXT;
        let quantum = self.config.quantum.max(1);
        let header = RecordCipher::begin_record(out);
        let body = out.len();
        let mut frames = 0u64;
        let mut finished: Vec<SessionId> = Vec::new();

        // 1. Explicit control frames (pings, pongs, markers, resets, responses).
        if let Some(st) = self.streams.get_mut(&stream) {
            while let Some(f) = st.ctrl.front() {
                if (out.len() - body) + f.encoded_len() > MAX {
                    break;
                }
                if let Some(f) = st.ctrl.pop_front() {
                    // Frames we build always fit the wire format.
                    let _ = f.encode(out);
                    frames += 1;
                }
            }
        }

        // 2. Per-session control: query, response, resume, credit.
        while let Some(id) = self
            .streams
            .get_mut(&stream)
            .and_then(|st| st.ctrl_sessions.pop_front())
        {
            let query = self.queries.get(&id).map(|q| q.len()).unwrap_or(0);
            let Some(s) = self.get_mut(id) else { continue };
            if s.send_stream() != stream || !s.has(session::F_IN_CTRL) {
                continue;
            }
            // Worst case: Query + Response + Resume + Credit.
            let need = 15 + query + 14 + 26 + 17;
            if (out.len() - body) + need > MAX {
                if let Some(st) = self.streams.get_mut(&stream) {
                    st.ctrl_sessions.push_front(id);
                }
                break;
            }
            let Some(s) = self.get_mut(id) else { continue };
            s.clear(session::F_IN_CTRL);
            let wire = s.wire;
            if s.has(session::F_QUERY_PENDING) {
                s.clear(session::F_QUERY_PENDING);
                let buffer = s.recv.window();
                if let Some(q) = self.queries.get(&id) {
                    let _ = Frame::Query {
                        session: wire,
                        buffer,
                        query: q.clone(),
                    }
                    .encode(out);
                    frames += 1;
                }
            }
            let Some(s) = self.get_mut(id) else { continue };
            if s.has(session::F_RESPONSE_PENDING) {
                s.clear(session::F_RESPONSE_PENDING);
                let f = Frame::Response {
                    session: wire,
                    code: s.response_code,
                    buffer: s.recv.window(),
                };
                let _ = f.encode(out);
                frames += 1;
            }
            if s.has(session::F_RESUME_PENDING | session::F_RESUME_REPLY_PENDING) {
                let reply = !s.has(session::F_RESUME_PENDING);
                s.clear(session::F_RESUME_PENDING | session::F_RESUME_REPLY_PENDING);
                let f = Frame::Resume {
                    session: wire,
                    received: s.recv.received_mark(),
                    consumed: s.recv.credit_value(),
                    reply,
                };
                let _ = f.encode(out);
                s.recv.mark_advertised(s.recv.credit_value());
                frames += 1;
            } else if s.recv.credit_due() || s.has(session::F_ACK_PENDING) {
                let consumed = s.recv.credit_value();
                let _ = Frame::Credit {
                    session: wire,
                    consumed,
                }
                .encode(out);
                s.recv.mark_advertised(consumed);
                frames += 1;
            }
            s.clear(session::F_ACK_PENDING);
            if s.is_done() {
                finished.push(id);
            }
        }

        // 3. Data, round robin with a quantum; Fin after a direction's last byte.
        while (out.len() - body) + DATA_AT_HEADER_LEN < MAX {
            let Some((id, more)) = self
                .streams
                .get_mut(&stream)
                .and_then(|st| st.sched.pop_front().map(|id| (id, !st.sched.is_empty())))
            else {
                break;
            };
            let Some(s) = self.get_mut(id) else { continue };
            if s.send_stream() != stream || !s.has(session::F_IN_SCHED) {
                continue;
            }
            s.clear(session::F_IN_SCHED);
            if !matches!(s.state, SessionState::Open | SessionState::Migrating) {
                continue;
            }
            let room = MAX - (out.len() - body) - DATA_AT_HEADER_LEN;
            let max = if more { room.min(quantum) } else { room };
            if let Some((offset, payload)) = s.send.take(max) {
                encode_data_at_header(out, s.wire, offset, payload.len() as u16);
                out.extend_from_slice(&payload);
                frames += 1;
            }
            if s.send.fin_due() && (out.len() - body) + FIN_LEN <= MAX {
                let offset = s.send.take_fin();
                let _ = Frame::Fin {
                    session: s.wire,
                    offset,
                }
                .encode(out);
                frames += 1;
            }
            if s.send.has_output() {
                s.set(session::F_IN_SCHED);
                if let Some(st) = self.streams.get_mut(&stream) {
                    st.sched.push_back(id);
                }
            }
        }

        for id in finished {
            self.maybe_finish(now, id);
        }
        if let Some(st) = self.streams.get_mut(&stream) {
            st.stats.frames_out += frames;
        }
        if let Some(st) = self.streams.get_mut(&stream) {
            shrink_if_idle(&mut st.ctrl);
            shrink_if_idle(&mut st.ctrl_sessions);
            shrink_if_idle(&mut st.sched);
        }
        if out.len() == body {
            out.truncate(header);
            return false;
        }
        let Some(Crypto::Transport(cipher)) = self.streams.get_mut(&stream).map(|s| &mut s.crypto)
        else {
            out.truncate(header);
            return false;
        };
        if let Err(e) = cipher.seal_in_place(out, header) {
            // Only an oversize record or nonce exhaustion fails; the builder
            // prevents the first, the second needs 2^64 records.
            self.kill_stream(now, stream, StreamCloseReason::BadRecord(e.to_string()));
            return false;
        }
        if let Some(st) = self.streams.get_mut(&stream) {
            st.stats.records_out += 1;
        }
        true
    }
}

/// Releases a queue's burst capacity once it is empty again.
fn shrink_if_idle<T>(q: &mut std::collections::VecDeque<T>) {
    if q.is_empty() && q.capacity() > 4096 {
        q.shrink_to(64);
    }
}
