//! What the endpoint and every per-peer engine of a node share: the
//! configuration and the node-wide limits.
//!
//! Engines may run on different threads (a driver can lock each peer on
//! its own), so the node-wide counters are atomics. The core itself never
//! spawns a thread: under a single-threaded driver (the [`Node`](crate::Node)
//! facade, the simulator) every operation happens in call order, so the
//! outputs stay deterministic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// A node-wide pool of bytes (the memory budget), shared by all engines:
/// a reservation is taken with one atomic read-modify-write, so engines on
/// different threads never exceed the pool together.
#[derive(Debug)]
pub(crate) struct BytePool {
    used: AtomicU64,
    capacity: u64,
}

impl BytePool {
    pub fn new(capacity: u64) -> Self {
        BytePool {
            used: AtomicU64::new(0),
            capacity,
        }
    }

    /// Takes up to `want` bytes; returns how many were taken (what was free,
    /// if less).
    pub fn reserve_up_to(&self, want: u64) -> u64 {
        if want == 0 {
            return 0;
        }
        let mut took = 0;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                took = want.min(self.capacity.saturating_sub(u));
                (took > 0).then_some(u + took)
            });
        took
    }

    /// Gives `n` bytes back (never below zero: every release follows a
    /// reservation of at least as much).
    pub fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Bytes free now (another thread may take them before the caller).
    pub fn free(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used.load(Ordering::Acquire))
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The pool's size.
    pub fn capacity(&self) -> u64 {
        self.capacity
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
    /// The node's memory budget (`node_memory_budget`).
    pub memory: BytePool,
}

impl NodeShared {
    pub fn new(config: Config) -> Arc<NodeShared> {
        Arc::new(NodeShared {
            sessions: SharedLimit::new(config.max_sessions),
            pending_queries: SharedLimit::new(config.max_pending_queries),
            streams: SharedLimit::new(config.max_streams),
            memory: BytePool::new(config.node_memory_budget),
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

    #[test]
    fn pool_gives_what_is_free_and_takes_it_back() {
        let p = BytePool::new(100);
        assert_eq!(p.reserve_up_to(60), 60);
        assert_eq!(p.reserve_up_to(60), 40, "partial: only what is free");
        assert_eq!(p.reserve_up_to(1), 0);
        assert_eq!(p.free(), 0);
        p.release(30);
        assert_eq!((p.used(), p.free()), (70, 30));
        p.release(500);
        assert_eq!(p.used(), 0, "never below zero");
        assert_eq!(p.reserve_up_to(0), 0);
    }

    #[test]
    fn pool_is_never_overdrawn_by_threads() {
        let p = Arc::new(BytePool::new(10_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    for _ in 0..10_000 {
                        got += p.reserve_up_to(3);
                    }
                    got
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 10_000, "every byte handed out exactly once");
        assert_eq!(p.used(), 10_000);
    }
}
