//! Borrowed view of one session: the application's read/write API.

use bytes::Bytes;

use crate::error::{ReadError, WriteError};
use crate::event::CloseReason;
use crate::frame::Frame;
use crate::session::{self, SessionInfo, SessionState};
use crate::{Node, NodeId, SessionId, Timestamp};

/// A session borrowed from its [`Node`], like quinn-proto's stream views.
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
    pub(crate) node: &'a mut Node,
    pub(crate) id: SessionId,
}

impl SessionHandle<'_> {
    /// The session's handle.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The peer at the other end.
    pub fn peer(&self) -> NodeId {
        let p = self.node.get(self.id).map(|s| s.peer).unwrap_or(0);
        self.node.peers[p as usize].id
    }

    /// Current state.
    pub fn state(&self) -> SessionState {
        self.node
            .get(self.id)
            .map(|s| s.state)
            .unwrap_or(SessionState::Closed)
    }

    /// Snapshot (state, streams, counters).
    pub fn info(&self) -> Option<SessionInfo> {
        self.node.session_info(self.id)
    }

    /// Bytes that `write` would accept now.
    pub fn write_capacity(&self) -> usize {
        let cap = self.node.config.send_buffer;
        self.node
            .get(self.id)
            .map(|s| s.send.capacity(cap))
            .unwrap_or(0)
    }

    /// Queues bytes (copied); returns how many were taken, at least one, or
    /// `Blocked` when the send buffer is full.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.write_with(data.len(), |s, cap| s.send.write(data, cap))
    }

    /// Queues bytes without copying (large buffers are kept as they are).
    pub fn write_bytes(&mut self, data: Bytes) -> Result<usize, WriteError> {
        self.write_with(data.len(), |s, cap| s.send.write_bytes(data, cap))
    }

    fn write_with(
        &mut self,
        len: usize,
        put: impl FnOnce(&mut crate::session::Session, usize) -> usize,
    ) -> Result<usize, WriteError> {
        let cap_cfg = self.node.config.send_buffer;
        let s = self.node.get_mut(self.id).ok_or(WriteError::Closed)?;
        if s.send.fin_requested() || s.state == SessionState::Closed {
            return Err(WriteError::Closed);
        }
        if len == 0 {
            return Ok(0);
        }
        let cap = s.send.capacity(cap_cfg);
        if cap == 0 {
            s.set(session::F_WRITE_BLOCKED);
            return Err(WriteError::Blocked);
        }
        let n = put(s, cap);
        self.node.schedule(self.id);
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
            .node
            .get_mut(self.id)
            .ok_or(ReadError::Closed(CloseReason::Graceful))?;
        if !s.state.is_established() && s.state != SessionState::Routing {
            return Err(ReadError::Blocked);
        }
        let r = s.recv.read_chunk(max);
        if !s.recv.is_readable() {
            s.clear(session::F_READABLE_SIGNALLED);
        }
        let out = match r {
            Ok(c) => c,
            Err(()) => return Err(ReadError::Blocked),
        };
        self.node.schedule_ctrl(self.id);
        self.node.defer_credit(self.id);
        self.node.maybe_finish_soon(self.id);
        Ok(out)
    }

    /// Half-close: a Fin follows the bytes already written. Reading goes on.
    pub fn finish(&mut self) {
        if let Some(s) = self.node.get_mut(self.id) {
            s.send.finish();
        }
        self.node.schedule(self.id);
    }

    /// Graceful close: finish writing and stop reading (incoming bytes are
    /// discarded and credited so the peer's writes complete). Every byte
    /// written before is still delivered.
    pub fn close(&mut self) {
        if let Some(s) = self.node.get_mut(self.id) {
            s.send.finish();
            s.set(session::F_READ_CLOSED);
            s.recv.discard_readable();
        }
        self.node.schedule(self.id);
        self.node.schedule_ctrl(self.id);
        self.node.maybe_finish_soon(self.id);
    }

    /// Abort: the peer gets a Reset, unsent and unread bytes are dropped.
    pub fn reset(self, now: Timestamp) {
        let Some(s) = self.node.get(self.id) else {
            return;
        };
        let (wire, stream) = (s.wire, s.send_stream());
        self.node.push_ctrl(stream, Frame::Reset { session: wire });
        self.node
            .remove_session(now, self.id, CloseReason::ResetLocally);
    }
}
