//! Local handles for streams, peer engines and sessions.
//!
//! None of these travel on the wire. Each is allocated so that a stale
//! handle can never reach a newer object:
//!
//! - [`StreamId`] comes from a 64-bit counter and is never reused (2^64
//!   streams at a million per second would take 584,000 years).
//! - [`EngineId`] and [`SessionId`] name a slot and that slot's generation;
//!   a slot whose generation reaches `u32::MAX` is retired instead of
//!   wrapping (see `Slab` in `slab.rs`), so no generation is ever issued twice.

use std::fmt;
use std::num::NonZeroU64;

/// Local handle of a stream (one transport connection to one peer).
///
/// The wire id the responder chose is in [`StreamInfo`](crate::StreamInfo).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(NonZeroU64);

impl StreamId {
    /// The `n`-th stream handle (`n ≥ 1`); `None` for 0.
    pub fn new(n: u64) -> Option<StreamId> {
        NonZeroU64::new(n).map(StreamId)
    }

    /// The handle as a number (for logs, control tools and drivers).
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream#{}", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Local handle of a per-peer engine (one remote identity and incarnation).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EngineId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl EngineId {
    /// Slot index: small, dense, reused after the engine is retired (with a
    /// new generation). Drivers may use it to index their own tables.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

impl fmt::Debug for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "engine#{}.{}", self.index, self.generation)
    }
}

impl fmt::Display for EngineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.index)
    }
}

/// Local handle of a session: the engine that owns it, a slot in that
/// engine's session table and the slot's generation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    pub(crate) engine: EngineId,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl SessionId {
    /// The per-peer engine that owns the session.
    pub fn engine(self) -> EngineId {
        self.engine
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "session#{}.{}.{}",
            self.engine.index, self.slot, self.generation
        )
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}.{}", self.engine.index, self.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_non_zero_and_niche_optimised() {
        assert!(StreamId::new(0).is_none());
        assert_eq!(StreamId::new(7).map(StreamId::get), Some(7));
        assert_eq!(std::mem::size_of::<Option<StreamId>>(), 8);
    }

    #[test]
    fn display_is_short_debug_is_exact() {
        let e = EngineId {
            index: 3,
            generation: 9,
        };
        let s = SessionId {
            engine: e,
            slot: 17,
            generation: 2,
        };
        assert_eq!(s.to_string(), "s3.17");
        assert_eq!(format!("{s:?}"), "session#3.17.2");
        assert_eq!(format!("{e:?}"), "engine#3.9");
    }
}
