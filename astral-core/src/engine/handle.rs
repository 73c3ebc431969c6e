//! Borrowed view of one session: the application's read/write API.

use bytes::Bytes;

use super::PeerEngine;
use crate::error::{ReadError, WriteError};
use crate::event::CloseReason;
use crate::frame::Frame;
use crate::session::{SessionInfo, SessionState};
use crate::{NodeId, SessionId, Timestamp};

/// A session borrowed from its engine (or from the [`Node`](crate::Node)
/// facade), like quinn-proto's stream views.
///
/// ```no_run
/// # use astral_core::*;
/// # fn f(node: &mut Node, id: SessionId) {
/// let mut s = node.session(id).unwrap();
/// let _ = s.write(b"hello");
/// let mut buf = [0u8; 1024];
/// match s.read(&mut buf) {
///     Ok(0) => { /* end of stream */ }
///     Ok(n) => { let _ = &buf[..n]; }
///     Err(ReadError::Blocked) => { /* wait for Event::Readable */ }
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
pub struct SessionHandle<'a> {
    engine: &'a mut PeerEngine,
    id: SessionId,
}

impl std::fmt::Debug for SessionHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .field("state", &self.state())
            .finish()
    }
}

impl<'a> SessionHandle<'a> {
    pub(crate) fn new(engine: &'a mut PeerEngine, id: SessionId) -> Self {
        SessionHandle { engine, id }
    }

    /// The session's handle.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The peer at the other end.
    pub fn peer(&self) -> NodeId {
        self.engine.peer()
    }

    /// Current state (`Closed` once the session is gone).
    pub fn state(&self) -> SessionState {
        self.engine
            .sessions
            .get(self.id)
            .map(|s| s.state())
            .unwrap_or(SessionState::Closed)
    }

    /// Snapshot (state, streams, counters).
    pub fn info(&self) -> Option<SessionInfo> {
        self.engine.session_info(self.id)
    }

    /// Bytes that `write` would accept now: up to `send_buffer` beyond
    /// the peer's grant, within the memory budget.
    pub fn write_capacity(&self) -> usize {
        self.engine
            .sessions
            .get(self.id)
            .map(|s| self.engine.write_room(s))
            .unwrap_or(0)
    }

    /// Queues bytes (copied); returns how many were taken, at least one, or
    /// `Blocked` when the send buffer is full (the peer's grant plus
    /// `send_buffer`, or the memory budget, is used up): wait for
    /// `Event::Writable`.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.write_with(data.len(), |s, cap| s.send.write(data, cap))
    }

    /// Queues bytes without copying (large buffers are kept as they are);
    /// returns how many were taken (a prefix of `data`).
    pub fn write_bytes(&mut self, data: Bytes) -> Result<usize, WriteError> {
        self.write_with(data.len(), |s, cap| s.send.write_bytes(data, cap))
    }

    fn write_with(
        &mut self,
        len: usize,
        put: impl FnOnce(&mut super::sessions::Session, usize) -> usize,
    ) -> Result<usize, WriteError> {
        let id = self.id;
        let s = self.engine.sessions.get(id).ok_or(WriteError::Closed)?;
        if s.send.fin_requested() {
            return Err(WriteError::Closed);
        }
        if len == 0 {
            return Ok(0);
        }
        let cap = self.engine.reserve_write(id, len);
        let Some(s) = self.engine.sessions.get_mut(id) else {
            return Err(WriteError::Closed);
        };
        if cap == 0 {
            s.app.write_blocked = true;
            return Err(WriteError::Blocked);
        }
        let n = put(s, cap);
        // Give back what the write reserved and did not take.
        self.engine.settle_send_charge(id);
        self.engine.schedule(id);
        Ok(n)
    }

    /// Reads into `buf`: `Ok(0)` is end-of-stream (for a non-empty `buf`),
    /// `Blocked` means wait for `Event::Readable`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let mut n = 0;
        while n < buf.len() {
            match self.read_chunk(buf.len() - n) {
                Ok(Some(chunk)) => {
                    buf[n..n + chunk.len()].copy_from_slice(&chunk);
                    n += chunk.len();
                }
                Ok(None) => break,
                Err(ReadError::Blocked) if n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Takes up to `max` bytes without copying; `Ok(None)` at end-of-stream.
    pub fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ReadError> {
        let s = self
            .engine
            .sessions
            .get_mut(self.id)
            .ok_or(ReadError::Closed(CloseReason::Graceful))?;
        if matches!(s.state(), SessionState::Pending) {
            return Err(ReadError::Blocked);
        }
        let r = s.recv.read_chunk(max);
        if !s.recv.is_readable() {
            s.app.readable_signalled = false;
        }
        let Ok(out) = r else {
            return Err(ReadError::Blocked);
        };
        let id = self.id;
        self.engine.schedule_ctrl(id);
        self.engine.defer_credit(id);
        let now = self.engine.last_now;
        self.engine.maybe_finish(now, id);
        Ok(out)
    }

    /// Half-close: a Fin follows the bytes already written. Reading goes on.
    pub fn finish(&mut self) {
        if let Some(s) = self.engine.sessions.get_mut(self.id) {
            s.send.finish();
        }
        self.engine.schedule(self.id);
    }

    /// Graceful close: finish writing and stop reading (incoming bytes are
    /// discarded and credited so the peer's writes complete). Every byte
    /// written before is still delivered.
    pub fn close(&mut self) {
        if let Some(s) = self.engine.sessions.get_mut(self.id) {
            s.send.finish();
            s.app.read_closed = true;
            s.recv.discard_readable();
        }
        let id = self.id;
        self.engine.schedule(id);
        self.engine.schedule_ctrl(id);
        self.engine.defer_credit(id);
        let now = self.engine.last_now;
        self.engine.maybe_finish(now, id);
    }

    /// The application lets go of the session (its handle is dropped),
    /// with the semantics of closing a socket: if bytes arrived that it
    /// never read, the session is reset at once (the peer gets a Reset, as
    /// TCP sends RST on close with unread data); otherwise it closes
    /// gracefully (every byte written is still delivered, then a Fin), and
    /// bytes that arrive afterwards reset it, so a peer still writing
    /// learns that nobody reads (its writes fail with `ResetByPeer`). A
    /// peer that only finishes its side closes the session gracefully.
    ///
    /// Use [`SessionHandle::close`] to keep discarding (and crediting)
    /// incoming bytes instead.
    pub fn release(self, now: Timestamp) {
        let Some(s) = self.engine.sessions.get(self.id) else {
            return;
        };
        if s.recv.buffered() > 0 {
            self.reset(now);
            return;
        }
        let id = self.id;
        if let Some(s) = self.engine.sessions.get_mut(id) {
            s.send.finish();
            s.app.read_closed = true;
            s.app.reset_on_data = true;
        }
        self.engine.schedule(id);
        self.engine.schedule_ctrl(id);
        self.engine.maybe_finish(now, id);
    }

    /// Abort: the peer gets a Reset, unsent and unread bytes are dropped.
    pub fn reset(self, now: Timestamp) {
        let Some(s) = self.engine.sessions.get(self.id) else {
            return;
        };
        let (wire, stream) = (s.wire, s.tx);
        self.engine
            .push_ctrl(stream, Frame::Reset { session: wire });
        self.engine.close(now, self.id, CloseReason::ResetLocally);
    }
}
