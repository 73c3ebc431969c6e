//! A counting global allocator: live heap bytes and live allocations, for
//! the idle-session workload. A binary that runs that workload installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: astral_bench::heap::Counting = astral_bench::heap::Counting;
//! ```
//!
//! Without it [`active`] is false and the idle workload reports an error
//! instead of zeros.
//!
//! Counters are sharded per thread (cache-line padded) so that counting
//! costs an uncontended relaxed atomic add per allocation and does not
//! skew the throughput workloads. Bytes are the sizes requested from the
//! allocator; glibc malloc adds its own 8–16 bytes per chunk on top.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

const SHARDS: usize = 64;

#[repr(align(128))]
struct Shard {
    bytes: AtomicIsize,
    allocs: AtomicIsize,
}

static COUNTERS: [Shard; SHARDS] = [const {
    Shard {
        bytes: AtomicIsize::new(0),
        allocs: AtomicIsize::new(0),
    }
}; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised, no destructor: safe to touch from the allocator.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard() -> &'static Shard {
    let i = SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0);
    &COUNTERS[i]
}

fn count(bytes: isize, allocs: isize) {
    let s = shard();
    s.bytes.fetch_add(bytes, Relaxed);
    if allocs != 0 {
        s.allocs.fetch_add(allocs, Relaxed);
    }
}

fn size(l: Layout) -> isize {
    isize::try_from(l.size()).unwrap_or(isize::MAX)
}

/// The system allocator, counting what it hands out.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counting;

// SAFETY: every method forwards to `System` unchanged and only updates
// counters on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            count(size(l), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            count(size(l), 1);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) };
        count(-size(l), -1);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let q = unsafe { System.realloc(p, l, new_size) };
        if !q.is_null() {
            count(isize::try_from(new_size).unwrap_or(isize::MAX) - size(l), 0);
        }
        q
    }
}

/// Live heap, whole process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heap {
    /// Bytes requested and not yet freed.
    pub bytes: i64,
    /// Allocations not yet freed.
    pub allocs: i64,
}

/// Whether [`Counting`] is the global allocator (the counters move only
/// then, and every Rust program has live allocations by the time it asks).
pub fn active() -> bool {
    snapshot()
        != Heap {
            bytes: 0,
            allocs: 0,
        }
}

/// The live heap now.
pub fn snapshot() -> Heap {
    let (mut bytes, mut allocs) = (0i64, 0i64);
    for s in &COUNTERS {
        bytes += s.bytes.load(Relaxed) as i64;
        allocs += s.allocs.load(Relaxed) as i64;
    }
    Heap { bytes, allocs }
}
