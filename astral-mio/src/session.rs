//! Session handles with non-blocking, socket-like `read` / `write`.

use std::io;

use astral_core::driver;
use astral_core::{NodeId, ReadError, SessionId, SessionInfo, WriteError};
use bytes::Bytes;

use crate::MioNode;

/// A session borrowed from its [`MioNode`].
///
/// `read` and `write` never block: they fail with
/// [`io::ErrorKind::WouldBlock`] and the node reports
/// [`Event::Readable`](crate::Event::Readable) /
/// [`Event::Writable`](crate::Event::Writable) when a retry can progress
/// (edge-triggered, like mio: read or write until `WouldBlock` first).
/// `read` returns `Ok(0)` at the end of the peer's data. Bytes written are
/// sent when the loop next flushes (`run_once`, `next_timeout`, `flush`).
pub struct Session<'a> {
    node: &'a mut MioNode,
    id: SessionId,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'a> Session<'a> {
    pub(crate) fn new(node: &'a mut MioNode, id: SessionId) -> Self {
        Session { node, id }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The peer at the other end (`None` once the session is gone).
    pub fn peer(&self) -> Option<NodeId> {
        self.node.session_info(self.id).map(|i| i.peer)
    }

    /// Snapshot (state, streams, counters).
    pub fn info(&self) -> Option<SessionInfo> {
        self.node.session_info(self.id)
    }

    /// Bytes `write` would take now.
    pub fn write_capacity(&mut self) -> usize {
        self.node
            .core_mut()
            .session(self.id)
            .map(|s| s.write_capacity())
            .unwrap_or(0)
    }

    /// Queues bytes (copied). `WouldBlock` when the send buffer is full,
    /// `BrokenPipe` after `finish`/`close` or once the session ended.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut s = self.node.core_mut().session(self.id).ok_or_else(gone)?;
        s.write(data).map_err(write_error)
    }

    /// Queues bytes without copying; returns how many were taken.
    pub fn write_bytes(&mut self, data: Bytes) -> io::Result<usize> {
        let mut s = self.node.core_mut().session(self.id).ok_or_else(gone)?;
        s.write_bytes(data).map_err(write_error)
    }

    /// Reads into `buf`: `Ok(0)` at end of stream (for a non-empty `buf`),
    /// `WouldBlock` when nothing is buffered, `ConnectionReset` /
    /// `ConnectionAborted` / `TimedOut` when the session failed.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut s) = self.node.core_mut().session(self.id) else {
            // Reading the last bytes can end (and remove) a session.
            return Ok(0);
        };
        s.read(buf).map_err(read_error)
    }

    /// Takes up to `max` bytes without copying; `Ok(None)` at end of stream.
    pub fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        let Some(mut s) = self.node.core_mut().session(self.id) else {
            return Ok(None);
        };
        s.read_chunk(max).map_err(read_error)
    }

    /// Half-close: the peer reads end-of-stream after the bytes already
    /// written; reading goes on.
    pub fn finish(&mut self) {
        if let Some(mut s) = self.node.core_mut().session(self.id) {
            s.finish();
        }
    }

    /// Graceful close: finish writing, stop reading (later bytes from the
    /// peer are discarded). Every byte written before is still delivered.
    pub fn close(&mut self) {
        if let Some(mut s) = self.node.core_mut().session(self.id) {
            s.close();
        }
    }

    /// Abort: the peer gets a reset; unsent and unread bytes are dropped.
    pub fn reset(self) {
        let now = self.node.now();
        if let Some(s) = self.node.core_mut().session(self.id) {
            s.reset(now);
        }
    }
}

impl io::Read for Session<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Session::read(self, buf)
    }
}

impl io::Write for Session<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Session::write(self, buf)
    }

    /// Bytes go out when the loop flushes; this does not block.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "session is gone")
}

fn write_error(e: WriteError) -> io::Error {
    match e {
        WriteError::Blocked => io::ErrorKind::WouldBlock.into(),
        _ => io::Error::new(io::ErrorKind::BrokenPipe, e),
    }
}

fn read_error(e: ReadError) -> io::Error {
    match e {
        ReadError::Closed(reason) => driver::io_error(reason),
        _ => io::ErrorKind::WouldBlock.into(),
    }
}
