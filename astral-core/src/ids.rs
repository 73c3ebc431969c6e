//! Local handles for streams and sessions.

use std::fmt;

/// Local handle of a stream (transport connection). Not sent on the wire;
/// the wire id the responder chose is in [`StreamInfo`](crate::StreamInfo).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl StreamId {
    /// "No stream" placeholder (e.g. a session that never had one).
    pub const NONE: StreamId = StreamId(u64::MAX);
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == StreamId::NONE {
            write!(f, "stream#-")
        } else {
            write!(f, "stream#{}", self.0)
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Local handle of a session: a slot index and a generation, so a stale
/// handle never reaches a newer session in the same slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub(crate) u64);

impl SessionId {
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        SessionId(u64::from(generation) << 32 | u64::from(index))
    }
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The handle as a number (for logs, control tools and drivers).
    pub fn as_u64(self) -> u64 {
        self.0
    }
    /// Rebuilds a handle from [`SessionId::as_u64`].
    pub fn from_u64(v: u64) -> Self {
        SessionId(v)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session#{}.{}", self.index(), self.generation())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
