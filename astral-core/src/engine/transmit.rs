//! Outbound path: the per-stream scheduler builds records on demand.
//!
//! Records are built only when the driver pulls (`poll_transmit`), so the
//! core never buffers more ciphertext than the transport can take: that is
//! the backpressure from socket to session. Control frames go first, then
//! data from sessions in round robin with a quantum, all in one record (one
//! AEAD call per up to 65,519 bytes of frames).

use bytes::BytesMut;

use super::liveness::uncredited;
use super::sessions::{Phase, Session};
use super::streams::LocalDrain;
use super::PeerEngine;
use crate::event::StreamCloseReason;
use crate::frame::{encode_data_at_header, size, Frame};
use crate::noise::{NoiseError, RecordCipher, UnsealedRecords};
use crate::{SessionId, StreamId, Timestamp};

/// Plaintext room of one record.
const MAX: usize = RecordCipher::MAX_PLAINTEXT;

impl PeerEngine {
    /// Appends ciphertext for `stream` to `out`: whole records, until about
    /// `max_bytes` were written or nothing is left. Returns the number of
    /// bytes appended. Call it whenever the transport can take more (after
    /// any `handle_*` or API call).
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> usize {
        self.last_now = now;
        if self
            .streams
            .get(stream)
            .is_some_and(|s| s.cipher.is_detached())
        {
            // Unsealed plaintext must never reach a transport.
            self.kill_stream(
                now,
                stream,
                StreamCloseReason::BadRecord(NoiseError::Misuse(
                    "poll_transmit on a stream whose keys the driver holds",
                )),
            );
            self.after_input();
            return 0;
        }
        self.transmit(now, stream, out, max_bytes)
    }

    /// Like [`PeerEngine::poll_transmit`] for a stream whose keys the driver
    /// holds: appends records with empty tag slots, for the driver to seal
    /// with the stream's [`RecordSealer`](crate::noise::RecordSealer)
    /// (outside any lock it keeps around the engine).
    pub fn poll_transmit_unsealed(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        out: &mut UnsealedRecords,
        max_bytes: usize,
    ) -> usize {
        self.last_now = now;
        if self
            .streams
            .get(stream)
            .is_some_and(|s| !s.cipher.is_detached())
        {
            self.kill_stream(
                now,
                stream,
                StreamCloseReason::BadRecord(NoiseError::Misuse(
                    "poll_transmit_unsealed on a stream whose keys the engine holds",
                )),
            );
            self.after_input();
            return 0;
        }
        self.transmit(now, stream, &mut out.buf, max_bytes)
    }

    fn transmit(
        &mut self,
        now: Timestamp,
        stream: StreamId,
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> usize {
        let start = out.len();
        while out.len() - start < max_bytes {
            let probe = self.streams.get(stream).is_some_and(|s| s.probe_ping_due());
            if !self.build_record(now, stream, out) {
                break;
            }
            if probe && !self.streams.get(stream).is_some_and(|s| s.probe_ping_due()) {
                // The drain probe's ping leaves alone, in a write of its
                // own: a transport or forwarder that took it in one chunk
                // with the data behind it would make it wait for that data
                // (`probe.rs`).
                break;
            }
        }
        let n = out.len() - start;
        if let Some(st) = self.streams.get_mut(stream) {
            st.stats.bytes_out += n as u64;
            if st.leaving.is_some() && !st.has_output() {
                // The Goodbye is out (in `out`): the driver flushes it and
                // closes the transport (`driver::linger`).
                self.kill_stream(now, stream, StreamCloseReason::Shutdown);
            } else if st.local_drain == LocalDrain::Closing && !st.has_output() {
                self.kill_stream(now, stream, StreamCloseReason::Drained);
            }
        }
        self.after_input();
        n
    }

    /// Writes one record's frames straight into `out` after a record
    /// header and encrypts them there. Returns false if there was nothing
    /// to send (`out` is then unchanged).
    fn build_record(&mut self, now: Timestamp, stream: StreamId, out: &mut BytesMut) -> bool {
        if !self.streams.get(stream).is_some_and(|s| s.has_output()) {
            return false;
        }
        let quantum = self.shared.config.quantum.max(1);
        let header = RecordCipher::begin_record(out);
        let body = out.len();
        let mut frames = 0u64;
        // Whether the record asks the peer for something (session data or
        // its Fin, a ping, a Query, a Resume): only such a record starts the
        // stream's silence clock (`liveness.rs`). Credit, pongs, answers and
        // markers ask for nothing.
        let mut asks = false;
        let mut finished: smallvec::SmallVec<[SessionId; 4]> = smallvec::SmallVec::new();
        // What the path meter logs of this record: the ping it carries, and
        // the last session data in it that was never sent before (Karn:
        // retransmitted bytes are never sampled).
        let mut ping = None;
        let mut fresh = None;
        let mut carried = false;

        // 1. Explicit control frames (pings, pongs, markers, resets, responses).
        let floor = self.queueing_floor();
        let superseded = self.superseded;
        if let Some(st) = self.streams.get_mut(stream) {
            while let Some(f) = st.tx.ctrl.front() {
                if (out.len() - body) + f.encoded_len() > MAX {
                    break;
                }
                if let Some(f) = st.tx.ctrl.pop_front() {
                    if let Frame::Ping { nonce, pong: false } = f {
                        asks = true;
                        // The probe waits behind what we handed over
                        // before it and the peer has not confirmed.
                        let arrived = uncredited(&self.sessions, stream, superseded);
                        let behind = st.meter.queueing_ahead(now, floor, arrived);
                        st.liveness.on_ping_sent(nonce, now, behind);
                        ping = Some(nonce);
                    }
                    // Frames we build always fit the wire format.
                    let _ = f.encode(out);
                    frames += 1;
                }
            }
        }

        // 2. Per-session control: query, response, resume, credit.
        let stream_wire = self.streams.get(stream).map_or(0, |st| st.wire);
        while let Some(id) = self
            .streams
            .get_mut(stream)
            .and_then(|st| st.tx.ctrl_sessions.pop_front())
        {
            let Some(s) = self.sessions.get(id) else {
                continue;
            };
            if s.tx != Some(stream) || !s.queued.ctrl {
                continue;
            }
            let query_len = match &s.phase {
                super::sessions::Phase::Routing(r) if s.owed.query => r.query.len(),
                _ => 0,
            };
            // Worst case: Query + Response + Resume + a credit (a Window,
            // the larger of the two) + Pin + a restated marker.
            let need = size::QUERY_HEADER
                + query_len
                + size::RESPONSE
                + size::RESUME
                + size::WINDOW
                + size::PIN
                + size::MIGRATE_TO;
            if (out.len() - body) + need > MAX {
                if let Some(st) = self.streams.get_mut(stream) {
                    st.tx.ctrl_sessions.push_front(id);
                }
                break;
            }
            let resume = s.owed.resume || s.owed.resume_reply;
            if !resume && (s.recv.credit_due() || s.owed.credit) {
                // A grant follows: the window it gives is decided now.
                self.tune_window(now, id);
            }
            let Some(s) = self.sessions.get_mut(id) else {
                continue;
            };
            let (n, asked) = encode_session_control(s, stream_wire, out);
            frames += n;
            asks |= asked;
            if s.is_done() {
                finished.push(id);
            }
        }

        // 3. Data, round robin with a quantum; Fin after a direction's last
        // byte. None while a drain probe holds it back (`probe.rs`).
        let withheld = self
            .streams
            .get(stream)
            .is_some_and(|st| st.withholds_data());
        while !withheld && (out.len() - body) + size::DATA_AT_HEADER < MAX {
            let Some((id, more)) = self.streams.get_mut(stream).and_then(|st| {
                st.tx
                    .data
                    .pop_front()
                    .map(|id| (id, !st.tx.data.is_empty()))
            }) else {
                break;
            };
            let Some(s) = self.sessions.get_mut(id) else {
                continue;
            };
            if s.tx != Some(stream) || !s.queued.data {
                continue;
            }
            s.queued.data = false;
            if !s.may_send_data() {
                continue;
            }
            let room = MAX - (out.len() - body) - size::DATA_AT_HEADER;
            let max = if more { room.min(quantum) } else { room };
            let sent_max = s.send.sent_max();
            if let Some((offset, payload)) = s.send.take(max) {
                carried = true;
                if offset >= sent_max {
                    fresh = Some((s.wire, offset + payload.len() as u64));
                }
                // `take` never returns more than `max` ≤ MAX bytes.
                encode_data_at_header(out, s.wire, offset, payload.len() as u16);
                out.extend_from_slice(&payload);
                frames += 1;
                asks = true;
            }
            if s.send.fin_due() && (out.len() - body) + size::FIN <= MAX {
                let offset = s.send.take_fin();
                let _ = Frame::Fin {
                    session: s.wire,
                    offset,
                }
                .encode(out);
                frames += 1;
                asks = true;
            }
            if s.send.has_output() {
                s.queued.data = true;
                if let Some(st) = self.streams.get_mut(stream) {
                    st.tx.data.push_back(id);
                }
            }
        }

        for id in finished {
            self.maybe_finish(now, id);
        }
        let Some(st) = self.streams.get_mut(stream) else {
            out.truncate(header);
            return false;
        };
        st.stats.frames_out += frames;
        st.tx.shrink_if_idle();
        if out.len() == body {
            out.truncate(header);
            return false;
        }
        if let Err(e) = st.cipher.seal_in_place(out, header) {
            // Only an oversize record or nonce exhaustion fails; the builder
            // prevents the first, the second needs 2^64 records.
            self.kill_stream(now, stream, StreamCloseReason::BadRecord(e));
            return false;
        }
        st.stats.records_out += 1;
        let len = out.len() - header;
        st.meter.on_record(now, len, st.stats.bytes_in, fresh, ping);
        if carried {
            st.meter.on_data_record();
        }
        if let Some(nonce) = ping {
            st.on_probe_ping_sent(now, nonce);
        }
        self.after_record_sent(now, stream, asks, ping);
        true
    }
}

/// Encodes the control frames session `s` owes (Query, Response, Resume,
/// credit, Pin, restated marker) into `out`, on its sending stream, whose
/// wire id is `stream_wire`; returns how many, and whether one of them asks
/// the peer for an answer (a Query or a Resume that is not a reply). `out`
/// has room for the worst case.
///
/// Credit: a Credit when the grant is the session's base window from the
/// consumed count (what a Credit implies), a Window otherwise. After a
/// Query, Response or Resume (which imply only the base window), a Window
/// restates the limit if an earlier grant went further: a grant that died
/// with a stream is never lost for good.
fn encode_session_control(s: &mut Session, stream_wire: u64, out: &mut BytesMut) -> (u64, bool) {
    let mut frames = 0;
    let mut asks = false;
    s.queued.ctrl = false;
    let wire = s.wire;
    // The limit the peer can infer from the frames written so far.
    let mut implied: Option<u64> = None;
    if s.owed.query {
        s.owed.query = false;
        if let Phase::Routing(r) = &s.phase {
            let _ = Frame::Query {
                session: wire,
                buffer: s.recv.base(),
                query: r.query.to_string(),
            }
            .encode(out);
            frames += 1;
            asks = true;
            implied = Some(u64::from(s.recv.base()));
        }
    }
    if let Some(code) = s.owed.response.take() {
        let _ = Frame::Response {
            session: wire,
            code,
            buffer: s.recv.base(),
        }
        .encode(out);
        frames += 1;
        implied = Some(u64::from(s.recv.base()));
    }
    if s.owed.resume || s.owed.resume_reply {
        let reply = !s.owed.resume;
        if !reply {
            s.awaiting_resume = true;
        }
        s.owed.resume = false;
        s.owed.resume_reply = false;
        let received = s.recv.received_mark();
        let consumed = s.recv.grant_resume();
        let _ = Frame::Resume {
            session: wire,
            received,
            consumed,
            reply,
        }
        .encode(out);
        frames += 1;
        asks |= !reply;
        implied = Some(consumed + u64::from(s.recv.base()));
        if reply && s.owed.credit {
            // We moved onto this stream: a flow frame tells the peer where
            // we send (a reply alone does not: it also answers on a stream
            // we do not send on; see `Session::peer_tx`).
            let _ = Frame::Credit {
                session: wire,
                consumed,
            }
            .encode(out);
            frames += 1;
        }
    } else if s.recv.credit_due() || s.owed.credit {
        let g = s.recv.grant();
        let f = if g.is_base {
            Frame::Credit {
                session: wire,
                consumed: g.consumed,
            }
        } else {
            Frame::Window {
                session: wire,
                consumed: g.consumed,
                window: g.window,
            }
        };
        let _ = f.encode(out);
        frames += 1;
        implied = None;
    }
    s.owed.credit = false;
    if let Some(g) = implied.and_then(|i| s.recv.restate_beyond(i)) {
        let _ = Frame::Window {
            session: wire,
            consumed: g.consumed,
            window: g.window,
        }
        .encode(out);
        frames += 1;
    }
    if s.owed.pin {
        s.owed.pin = false;
        let _ = Frame::Pin {
            session: wire,
            pinned: s.pins.local,
        }
        .encode(out);
        frames += 1;
    }
    if std::mem::take(&mut s.owed.restate) && matches!(s.phase, Phase::Open) {
        // After the reply and the Credit: a peer still recovering is open
        // again when it reads this, and follows it (a recovering session
        // ignores markers). Not from `Migrating` (our own marker, newer,
        // says where we send) nor `Recovering` (a Resume of ours does).
        s.set_epoch(s.epoch().wrapping_add(1));
        let _ = Frame::MigrateTo {
            session: wire,
            target: stream_wire,
            epoch: s.epoch(),
        }
        .encode(out);
        frames += 1;
    }
    (frames, asks)
}
