//! What the endpoint and every per-peer engine of a node share: the
//! configuration and the node-wide limits.
//!
//! Engines may run on different threads (a driver can lock each peer on
//! its own), so the node-wide counters are atomics. The core itself never
//! spawns a thread: under a single-threaded driver (the [`Node`](crate::Node)
//! facade, the simulator) every operation happens in call order, so the
//! outputs stay deterministic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::Config;

/// A node-wide count with a ceiling, shared by all engines.
#[derive(Debug)]
pub(crate) struct SharedLimit {
    used: AtomicUsize,
    max: usize,
}

impl SharedLimit {
    pub fn new(max: usize) -> Self {
        SharedLimit {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes one unit if the ceiling allows.
    pub fn try_acquire(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.max).then_some(u + 1)
            })
            .is_ok()
    }

    /// Gives one unit back.
    pub fn release(&self) {
        // Never below zero: every release follows an acquire.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1));
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Shared by the endpoint and the engines of one node.
#[derive(Debug)]
pub(crate) struct NodeShared {
    pub config: Config,
    /// Open sessions over all peers (`max_sessions`).
    pub sessions: SharedLimit,
    /// Inbound queries awaiting the application (`max_pending_queries`).
    pub pending_queries: SharedLimit,
    /// Streams, handshaking or established (`max_streams`).
    pub streams: SharedLimit,
}

impl NodeShared {
    pub fn new(config: Config) -> Arc<NodeShared> {
        Arc::new(NodeShared {
            sessions: SharedLimit::new(config.max_sessions),
            pending_queries: SharedLimit::new(config.max_pending_queries),
            streams: SharedLimit::new(config.max_streams),
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_up_to_its_ceiling() {
        let l = SharedLimit::new(2);
        assert!(l.try_acquire());
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        l.release();
        assert_eq!(l.used(), 1);
        assert!(l.try_acquire());
        l.release();
        l.release();
        l.release();
        assert_eq!(l.used(), 0, "never below zero");
    }
}
