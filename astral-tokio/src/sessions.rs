//! Driver-side session state: the wakers of tasks parked on a session and
//! the close reasons kept for handles that outlive their session.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::task::{Context, Waker};

use astral_core::{CloseReason, SessionId};

/// Wakers of a session's parked reader (or pending `open_session`), writer
/// and `closed()` waiter.
#[derive(Default)]
struct Parked {
    read: Option<Waker>,
    write: Option<Waker>,
    close: Option<Waker>,
}

/// Driver-side session state, kept sparse so that an idle session costs
/// the driver nothing: an entry exists only while a task is parked on the
/// session, or once the core removed a session whose handle still lives.
///
/// Every session the core creates gets exactly one driver handle at once
/// (`open_session` makes the `Session`; a `Query` event makes the `IncomingQuery`,
/// which `accept` turns into the `Session`), and the core reports exactly one
/// `SessionClosed` per session. Whichever of "handle released" and
/// "SessionClosed dispatched" comes second forgets the session: a close
/// reason waits in `closed` for the handle, a released handle waits in
/// `orphans` for the close.
#[derive(Default)]
pub(crate) struct Sessions {
    parked: HashMap<SessionId, Parked, IdHash>,
    /// Why the core removed a session that still has a handle.
    closed: HashMap<SessionId, CloseReason, IdHash>,
    /// Released handles whose `SessionClosed` is still to come.
    orphans: HashSet<SessionId, IdHash>,
}

/// Hashes session ids (local handles the core hands out, not peer input)
/// with one multiplication: parking and waking a session touch `parked`
/// on every blocked read or write.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        // The slot index sits in the low bits and the generation in the
        // high bits: fold them, then spread (the table uses the low bits
        // for the bucket and the top 7 for its tag).
        self.0 = (self.0 ^ v ^ (v >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Gives memory back once a map (or set) is mostly empty: maps never
/// shrink by themselves, so a burst of parked sessions would pin its peak.
macro_rules! shrink {
    ($m:expr) => {{
        let m = &mut $m;
        if m.capacity() > 64 && m.len() < m.capacity() / 8 {
            m.shrink_to(m.len() * 2);
        }
    }};
}

impl Sessions {
    fn parked(&mut self, id: SessionId) -> &mut Parked {
        self.parked.entry(id).or_default()
    }

    /// Parks the session's reader (or its pending `open_session`) until `Readable`,
    /// `SessionOpen` or `SessionClosed`.
    pub fn park_read(&mut self, id: SessionId, cx: &Context<'_>) {
        park(&mut self.parked(id).read, cx);
    }

    /// Parks the session's writer until `Writable` or `SessionClosed`.
    pub fn park_write(&mut self, id: SessionId, cx: &Context<'_>) {
        park(&mut self.parked(id).write, cx);
    }

    /// Parks a `closed()` waiter until `SessionClosed`.
    pub fn park_close(&mut self, id: SessionId, cx: &Context<'_>) {
        park(&mut self.parked(id).close, cx);
    }

    /// Takes the session's parked wakers (reader if `read`, writer if
    /// `write`, and the `closed()` waiter if `close`) into `wake`.
    pub fn unpark(
        &mut self,
        id: SessionId,
        read: bool,
        write: bool,
        close: bool,
        wake: &mut crate::ctx::Wakers,
    ) {
        let Some(p) = self.parked.get_mut(&id) else {
            return;
        };
        if read {
            wake.extend(p.read.take());
        }
        if write {
            wake.extend(p.write.take());
        }
        if close {
            wake.extend(p.close.take());
        }
        if p.read.is_none() && p.write.is_none() && p.close.is_none() {
            self.parked.remove(&id);
            shrink!(self.parked);
        }
    }

    /// Why the core removed the session, if it did and its handle lives.
    pub fn closed(&self, id: SessionId) -> Option<&CloseReason> {
        self.closed.get(&id)
    }

    pub fn on_closed(&mut self, id: SessionId, reason: &CloseReason) {
        if self.orphans.remove(&id) {
            shrink!(self.orphans);
        } else {
            self.closed.insert(id, reason.clone());
        }
    }

    /// The session's only handle is gone (dropped, rejected, or failed to
    /// accept): forget what the driver keeps for it.
    pub fn release(&mut self, id: SessionId) {
        if self.parked.remove(&id).is_some() {
            shrink!(self.parked);
        }
        if self.closed.remove(&id).is_some() {
            shrink!(self.closed);
        } else {
            self.orphans.insert(id);
        }
    }
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        w => *w = Some(cx.waker().clone()),
    }
}
