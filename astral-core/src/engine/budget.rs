//! The memory budget (issue 11): credit is granted, and writes are taken,
//! only out of a per-peer and a node-wide pool of bytes.
//!
//! What a session may come to hold is bounded on both sides:
//!
//! * receiving: everything stored lies in `[consumed, limit)`
//!   (`RecvBuf::outstanding`), the credit granted and not yet consumed;
//! * sending: retained plus queued bytes (`SendBuf::retained`).
//!
//! Each session holds a *floor* of `Config::window_floor()` bytes on each
//! side outside the budget, so that every open session can always make
//! progress (receive a minimum window, queue a minimum write) however full
//! the budget is: no deadlock. Everything above the floors is reserved from
//! both pools before it is granted or accepted ([`Charge`]), so the bytes
//! a node holds for sessions never exceed `node_memory_budget` plus two
//! floors per open session.
//!
//! When the budget is short ([`PeerBudget::is_short`]), new sessions start
//! at the floor, windows stop growing and windows that are not needed
//! shrink (`crate::window`); sessions keep what they were granted. A
//! session gives everything back when it closes.

use std::sync::Arc;

use super::sessions::Session;
use super::PeerEngine;
use crate::shared::NodeShared;
use crate::window::TuneInput;
use crate::{SessionId, Timestamp};

/// The budget is short once less than this fraction (1/n) of a pool is
/// free: growth stops before the pool is empty, so new sessions still get
/// their initial windows for a while.
const SHORT_FRACTION: u64 = 8;

/// Bytes a session has reserved from the budget, above its floors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    /// For its receive window: at least `outstanding - floor` as of the
    /// latest grant (consuming only lowers what may arrive).
    pub recv: u64,
    /// For its retained and queued writes: `retained - floor`.
    pub send: u64,
}

/// One engine's share of the node's memory budget: its own pool
/// (`peer_memory_budget`) and the node's (shared by all engines, atomic).
#[derive(Debug)]
pub(crate) struct PeerBudget {
    shared: Arc<NodeShared>,
    used: u64,
    capacity: u64,
}

impl PeerBudget {
    pub fn new(shared: Arc<NodeShared>) -> Self {
        let capacity = shared.config.peer_memory_budget;
        PeerBudget {
            shared,
            used: 0,
            capacity,
        }
    }

    /// Takes up to `want` bytes from both pools; returns how many.
    pub fn reserve_up_to(&mut self, want: u64) -> u64 {
        let want = want.min(self.capacity.saturating_sub(self.used));
        let got = self.shared.memory.reserve_up_to(want);
        self.used += got;
        got
    }

    /// Gives `n` bytes back to both pools.
    pub fn release(&mut self, n: u64) {
        let n = n.min(self.used);
        self.used -= n;
        self.shared.memory.release(n);
    }

    /// Bytes this peer has reserved.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Less than an eighth of either pool is free.
    pub fn is_short(&self) -> bool {
        let peer_free = self.capacity.saturating_sub(self.used);
        let node = &self.shared.memory;
        peer_free < self.capacity / SHORT_FRACTION || node.free() < node.capacity() / SHORT_FRACTION
    }
}

impl Drop for PeerBudget {
    /// An engine dropped with sessions (its node going away) returns what
    /// they held to the node's pool, which other engines may still use.
    fn drop(&mut self) {
        self.shared.memory.release(self.used);
    }
}

impl PeerEngine {
    /// The window a new session starts with: `recv_window`, reserved above
    /// the floor, when the budget has room; the floor otherwise. Returns
    /// the window and the bytes reserved for it.
    pub(super) fn initial_window(&mut self) -> (u32, u64) {
        let floor = self.shared.config.window_floor();
        let initial = self.shared.config.recv_window;
        let extra = u64::from(initial - floor);
        if extra == 0 || self.budget.is_short() {
            return (floor, 0);
        }
        let got = self.budget.reserve_up_to(extra);
        if got < extra {
            self.budget.release(got);
            return (floor, 0);
        }
        (initial, got)
    }

    /// The receive window to grant session `id` now: the tuner's choice,
    /// paid for out of the budget (a growth the budget cannot cover in full
    /// grows as far as it can), and the charge brought in line with what
    /// the grant lets arrive. Called right before the grant is encoded.
    pub(super) fn tune_window(&mut self, now: Timestamp, id: SessionId) {
        let rtt = self.tuning_rtt(id);
        let pressure = self.budget.is_short();
        let cap = self.shared.config.window_cap();
        let floor = u64::from(self.shared.config.window_floor());
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.recv.is_finished() {
            return;
        }
        let input = TuneInput {
            now,
            consumed: s.recv.credit_value(),
            window: s.recv.window(),
            base: s.recv.base(),
            cap,
            rtt,
            pressure,
        };
        let want = s.tune.decide(input);
        let consumed = s.recv.credit_value();
        let granted_beyond = s.recv.limit().saturating_sub(consumed);
        let need = |w: u32| granted_beyond.max(u64::from(w)).saturating_sub(floor);
        let mut window = want;
        if need(want) > s.charge.recv {
            let got = self.budget.reserve_up_to(need(want) - s.charge.recv);
            s.charge.recv += got;
            if need(want) > s.charge.recv {
                // Grow only as far as the reservation reaches (the current
                // window is always covered).
                let affordable = s.charge.recv + floor;
                window = u32::try_from(affordable)
                    .unwrap_or(u32::MAX)
                    .max(input.window)
                    .min(want);
            }
        }
        s.recv.set_window(window);
        let need_now = need(s.recv.window());
        if s.charge.recv > need_now {
            let excess = s.charge.recv - need_now;
            s.charge.recv = need_now;
            self.budget.release(excess);
        }
    }

    /// The RTT that tunes session `id`'s window: that of the stream the
    /// peer's data arrives on (else the one we send on), once sampled.
    pub(super) fn tuning_rtt(&self, id: SessionId) -> Option<std::time::Duration> {
        let s = self.sessions.get(id)?;
        self.stream_tuning_rtt(s.rx.or(s.tx))
    }

    /// The RTT that tunes the windows of sessions whose data arrives on
    /// stream `id`: its smallest sample of the last
    /// [`TUNE_RTT_WINDOW`](crate::window::TUNE_RTT_WINDOW) (none before the
    /// first). Not the smoothed RTT, nor the path delay filter: a
    /// receiver's pings wait behind the data its peer has already queued,
    /// so both grow with the window itself, and a window sized to that
    /// queue only lengthens it. Windowed, not the smallest sample ever: a
    /// path whose delay rose for good must be seen as slower again, or a
    /// window that limits its flow there would never grow.
    fn stream_tuning_rtt(&self, id: Option<crate::StreamId>) -> Option<std::time::Duration> {
        let st = id.and_then(|t| self.streams.get(t))?;
        let l = &st.liveness;
        (l.rtt.samples > 0 && !l.tune_rtt.is_zero()).then_some(l.tune_rtt)
    }

    /// Bytes `write` may take now: the session's own limit (grant plus
    /// `send_buffer`) and what the floor plus the budget allow.
    pub(super) fn write_room(&self, s: &Session) -> usize {
        let own = s.send.capacity(self.shared.config.send_buffer);
        let floor = u64::from(self.shared.config.window_floor());
        let peer_free = self.budget.capacity.saturating_sub(self.budget.used);
        let free = peer_free.min(self.shared.memory.free());
        let allowed = (floor + s.charge.send + free).saturating_sub(s.send.retained());
        own.min(usize::try_from(allowed).unwrap_or(usize::MAX))
    }

    /// Reserves what a write of up to `len` bytes needs beyond the floor;
    /// returns the bytes the write may take.
    pub(super) fn reserve_write(&mut self, id: SessionId, len: usize) -> usize {
        let floor = u64::from(self.shared.config.window_floor());
        let send_buffer = self.shared.config.send_buffer;
        let Some(s) = self.sessions.get_mut(id) else {
            return 0;
        };
        let own = s.send.capacity(send_buffer).min(len) as u64;
        let held = s.send.retained();
        let need = (held + own).saturating_sub(floor);
        if need > s.charge.send {
            s.charge.send += self.budget.reserve_up_to(need - s.charge.send);
        }
        let allowed = (floor + s.charge.send).saturating_sub(held);
        usize::try_from(own.min(allowed)).unwrap_or(usize::MAX)
    }

    /// Brings the session's send charge down to what it holds (after a
    /// write took less than reserved, or credit released bytes).
    pub(super) fn settle_send_charge(&mut self, id: SessionId) {
        let floor = u64::from(self.shared.config.window_floor());
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let need = s.send.retained().saturating_sub(floor);
        if s.charge.send > need {
            let excess = s.charge.send - need;
            s.charge.send = need;
            self.budget.release(excess);
        }
    }

    /// A closing session's reservations go back.
    pub(super) fn release_charge(&mut self, charge: Charge) {
        self.budget.release(charge.recv + charge.send);
    }

    /// Re-tunes the receive window of session `id` whose traffic moved
    /// from stream `from` to stream `to` (a migration or a recovery).
    pub(super) fn retune_window(
        &mut self,
        id: SessionId,
        from: Option<crate::StreamId>,
        to: Option<crate::StreamId>,
    ) {
        let (rf, rt) = (self.stream_tuning_rtt(from), self.stream_tuning_rtt(to));
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let w = s.tune.retune(
            s.recv.credit_value(),
            s.recv.window(),
            s.recv.base(),
            rf,
            rt,
        );
        s.recv.set_window(w);
    }
}
