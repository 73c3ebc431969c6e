//! The sessions of one peer: per-session state and the tables that hold
//! them (live sessions by slot and by wire id; recently closed ones).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use siphasher::sip::SipHasher13;

use super::budget::Charge;
use crate::flow::{RecvBuf, SendBuf};
use crate::session::{Role, SessionState};
use crate::slab::Slab;
use crate::window::WindowTuner;
use crate::{EngineId, SessionId, StreamId, Timestamp};

/// Keyed SipHash for maps whose keys a peer chooses (no hash flooding),
/// keyed from the engine's seed (deterministic).
#[derive(Clone, Debug)]
pub(crate) struct SeededState(pub u64, pub u64);

impl BuildHasher for SeededState {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.0, self.1)
    }
}

/// What a session is doing. Data that exists only in one phase lives in
/// its variant (like quinn's `State::Handshake(..)`).
#[derive(Debug)]
pub(crate) enum Phase {
    /// Our query is out (or waits for a stream); kept to resend it after a
    /// stream death. Boxed: the phase is short-lived, and an open session
    /// should not carry its size.
    Routing(Box<Routing>),
    /// The peer's query waits for the application.
    Pending {
        deadline: Timestamp,
    },
    Open,
    /// Sending on a new stream; `from` is the stream the migration first
    /// left, `marker` the stream its latest marker went out on (they differ
    /// once a migration is redirected before it settles).
    Migrating {
        from: StreamId,
        marker: StreamId,
    },
    /// Our sending stream died; waiting for the Resume exchange.
    Recovering {
        deadline: Timestamp,
    },
}

/// The data of [`Phase::Routing`].
#[derive(Debug)]
pub(crate) struct Routing {
    pub query: Box<str>,
    pub deadline: Timestamp,
    /// The target of the newest migration marker that overtook the
    /// Response (the responder migrated the session before we saw it
    /// open); followed once the Response arrives. Its epoch is in
    /// `Session::epoch` already, so an older marker arriving after the
    /// Response is ignored.
    pub early_marker: Option<StreamId>,
}

impl Phase {
    pub fn state(&self) -> SessionState {
        match self {
            Phase::Routing(_) => SessionState::Routing,
            Phase::Pending { .. } => SessionState::Pending,
            Phase::Open => SessionState::Open,
            Phase::Migrating { .. } => SessionState::Migrating,
            Phase::Recovering { .. } => SessionState::Recovering,
        }
    }
}

/// Control frames a session owes its peer. They are materialised when a
/// record is built, so repeated updates coalesce into one frame.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Owed {
    /// Our Query (again, after a stream death).
    pub query: bool,
    /// Our Response, with its code.
    pub response: Option<u8>,
    /// A Resume of ours (recovery).
    pub resume: bool,
    /// A reply to the peer's Resume (rule 4).
    pub resume_reply: bool,
    /// A Credit even below the batching threshold (acknowledges a marker,
    /// flushes a delayed credit).
    pub credit: bool,
    /// Our pin state (a Pin frame), after it changed or a stream died.
    pub pin: bool,
    /// A restatement of where we send (`MigrateTo` naming our sending
    /// stream, with a new epoch, after any Resume reply): a peer's Resume
    /// moved us, and the peer must not go on estimating from stale frames
    /// (`peer_tx`) where we send.
    pub restate: bool,
}

impl Owed {
    pub fn any(&self) -> bool {
        self.query
            || self.response.is_some()
            || self.resume
            || self.resume_reply
            || self.credit
            || self.pin
            || self.restate
    }
}

/// Who holds the session where it is, against automatic placement.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pins {
    /// This node's application pinned it (`pin`, or an explicit `migrate`).
    pub local: bool,
    /// The peer announced that its application pinned it.
    pub peer: bool,
}

impl Pins {
    pub fn any(&self) -> bool {
        self.local || self.peer
    }
}

/// Edge-triggered signals to the application, and its read-side choice.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AppSignals {
    /// `Readable` was reported and not yet read until blocked.
    pub readable_signalled: bool,
    /// A write was refused; `Writable` is owed once room appears.
    pub write_blocked: bool,
    /// `close()` was called: incoming bytes are discarded (and credited).
    pub read_closed: bool,
    /// `release()` was called: the application is gone, so new incoming
    /// bytes reset the session (a socket closed with data still arriving).
    pub reset_on_data: bool,
}

/// Membership of the scheduler's queues (each session is in a queue at
/// most once).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Queued {
    pub data: bool,
    pub ctrl: bool,
    pub lazy_credit: bool,
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    /// Session id on the wire (chosen by the querier).
    pub wire: u64,
    pub role: Role,
    pub phase: Phase,
    /// Stream this side sends on.
    pub tx: Option<StreamId>,
    /// Stream the peer's traffic last arrived on.
    pub rx: Option<StreamId>,
    /// Stream the peer's last data, Credit, Window, Fin or Resume request
    /// for this session arrived on: where the peer sends. (A marker goes
    /// out on the stream the peer leaves, a Resume reply on the stream our
    /// Resume came on: they do not count.)
    pub peer_tx: Option<StreamId>,
    /// Migration and recovery bookkeeping, allocated at the first move
    /// (see [`Moves`]): a session that never moves pays one pointer.
    moves: Option<Box<Moves>>,
    /// A Resume of ours is out and the peer has not answered it yet (the
    /// tie-break of crossed Resumes uses it).
    pub awaiting_resume: bool,
    pub send: SendBuf,
    pub recv: RecvBuf,
    /// Auto-tuning of the receive window.
    pub tune: WindowTuner,
    /// What the session reserved from the memory budget.
    pub charge: Charge,
    pub owed: Owed,
    pub app: AppSignals,
    pub queued: Queued,
    pub pins: Pins,
}

/// What only a session that moved (migrated, recovered, was realigned)
/// needs. Held behind an `Option<Box<..>>` in [`Session`]: allocated on the
/// first write of a value other than the default (a move, not a frame), and
/// kept from then on (the epoch must outlive the move).
#[derive(Debug, Clone, Default)]
pub(crate) struct Moves {
    /// Highest migration epoch seen or used (serial-number arithmetic).
    pub epoch: u32,
    /// Convergence of crossed bindings (defect 4 of issue 10): `peer_tx`
    /// at the last policy tick, if it differed from ours.
    pub crossed_seen: Option<StreamId>,
    /// Offset from which everything was sent on `tx` (set when `tx`
    /// changes, lowered by a rewind): a Resume that arrives on `tx` proves
    /// those bytes are on their way, so they are not sent again.
    pub tx_since: u64,
    /// When the sending stream last changed after the first placement
    /// (none: never moved): the policy's per-session cooldown counts from
    /// here.
    pub placed_at: Option<Timestamp>,
    pub migrations: u32,
    pub recoveries: u32,
    /// Moves this node's automatic policy started.
    pub policy_moves: u32,
}

/// The state of a session that never moved.
static UNMOVED: Moves = Moves {
    epoch: 0,
    crossed_seen: None,
    tx_since: 0,
    placed_at: None,
    migrations: 0,
    recoveries: 0,
    policy_moves: 0,
};

impl Session {
    /// A session granting `window` in its Query/Response, which reserved
    /// `charge` from the budget for it.
    pub fn new(wire: u64, role: Role, phase: Phase, window: u32, charge: Charge) -> Self {
        Session {
            wire,
            role,
            phase,
            tx: None,
            rx: None,
            peer_tx: None,
            moves: None,
            awaiting_resume: false,
            send: SendBuf::default(),
            recv: RecvBuf::new(window),
            tune: WindowTuner::default(),
            charge,
            owed: Owed::default(),
            app: AppSignals::default(),
            queued: Queued::default(),
            pins: Pins::default(),
        }
    }

    /// The session's move bookkeeping (defaults if it never moved).
    pub fn moves(&self) -> &Moves {
        self.moves.as_deref().unwrap_or(&UNMOVED)
    }

    /// Mutable move bookkeeping, allocated on first use: call it only to
    /// write a value other than the default (the setters below skip the
    /// allocation for defaults).
    pub fn moves_mut(&mut self) -> &mut Moves {
        self.moves.get_or_insert_with(Default::default)
    }

    /// Whether the move bookkeeping is allocated (tests).
    #[cfg(test)]
    pub fn has_moves(&self) -> bool {
        self.moves.is_some()
    }

    pub fn epoch(&self) -> u32 {
        self.moves().epoch
    }

    pub fn set_epoch(&mut self, epoch: u32) {
        if epoch != self.epoch() {
            self.moves_mut().epoch = epoch;
        }
    }

    pub fn tx_since(&self) -> u64 {
        self.moves().tx_since
    }

    pub fn set_tx_since(&mut self, offset: u64) {
        if offset != self.tx_since() {
            self.moves_mut().tx_since = offset;
        }
    }

    pub fn crossed_seen(&self) -> Option<StreamId> {
        self.moves().crossed_seen
    }

    pub fn set_crossed_seen(&mut self, seen: Option<StreamId>) {
        if seen != self.crossed_seen() {
            self.moves_mut().crossed_seen = seen;
        }
    }

    pub fn placed_at(&self) -> Option<Timestamp> {
        self.moves().placed_at
    }

    pub fn state(&self) -> SessionState {
        self.phase.state()
    }

    /// Data may be sent in this phase (not while recovering: new data waits
    /// for the Resume exchange, which avoids sending bytes twice).
    pub fn may_send_data(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Migrating { .. })
    }

    /// Control frames this session wants on its sending stream.
    pub fn wants_control(&self) -> bool {
        self.recv.credit_due() || self.owed.any()
    }

    /// Whether both directions are complete: our Fin credited, the peer's
    /// Fin read, and nothing left to tell the peer (a final credit, a Resume
    /// reply: the peer may be waiting for it to leave Recovering).
    pub fn is_done(&self) -> bool {
        self.send.fin_acked() && self.recv.is_finished() && !self.wants_control()
    }
}

/// The live sessions of one peer: a generational slab (the app's handles)
/// and a map from wire id (the peer's frames) to slot.
pub(crate) struct SessionTable {
    engine: EngineId,
    slab: Slab<Session>,
    by_wire: HashMap<u64, (u32, u32), SeededState>,
}

impl SessionTable {
    pub fn new(engine: EngineId, hasher: SeededState) -> Self {
        SessionTable {
            engine,
            slab: Slab::default(),
            by_wire: HashMap::with_hasher(hasher),
        }
    }

    fn own(&self, id: SessionId) -> bool {
        id.engine == self.engine
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        if !self.own(id) {
            return None;
        }
        self.slab.get(id.slot, id.generation)
    }

    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        if !self.own(id) {
            return None;
        }
        self.slab.get_mut(id.slot, id.generation)
    }

    /// The session a peer's wire id names.
    pub fn lookup(&self, wire: u64) -> Option<SessionId> {
        let &(slot, generation) = self.by_wire.get(&wire)?;
        Some(self.id(slot, generation))
    }

    pub fn contains_wire(&self, wire: u64) -> bool {
        self.by_wire.contains_key(&wire)
    }

    fn id(&self, slot: u32, generation: u32) -> SessionId {
        SessionId {
            engine: self.engine,
            slot,
            generation,
        }
    }

    /// Stores a new session; `None` when the slab is exhausted.
    pub fn insert(&mut self, s: Session) -> Option<SessionId> {
        let wire = s.wire;
        let (slot, generation) = self.slab.insert(s)?;
        self.by_wire.insert(wire, (slot, generation));
        Some(self.id(slot, generation))
    }

    pub fn remove(&mut self, id: SessionId) -> Option<Session> {
        if !self.own(id) {
            return None;
        }
        let s = self.slab.remove(id.slot, id.generation)?;
        self.by_wire.remove(&s.wire);
        if self.by_wire.is_empty() && self.by_wire.capacity() > 1024 {
            // A burst of sessions must not pin its peak allocation.
            self.by_wire.shrink_to_fit();
        }
        Some(s)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every session id, in slot order (deterministic). Linear in the
    /// sessions: used on rare events (a stream coming up or dying, a drain,
    /// the policy tick).
    pub fn ids(&self) -> Vec<SessionId> {
        self.slab.iter().map(|(i, g, _)| self.id(i, g)).collect()
    }

    /// Ids of the sessions matching `f`, in slot order.
    pub fn ids_where(&self, mut f: impl FnMut(&Session) -> bool) -> Vec<SessionId> {
        self.slab
            .iter()
            .filter(|(_, _, s)| f(s))
            .map(|(i, g, _)| self.id(i, g))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &Session)> + '_ {
        self.slab.iter().map(|(i, g, s)| (self.id(i, g), s))
    }
}

/// How a remembered session ended, which decides the answer to its late
/// frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Both directions finished: a late Resume gets the final counts.
    Finished { received: u64, consumed: u64 },
    /// Reset (by either side) or broke the protocol: a repeated Query or a
    /// Resume gets a Reset, so the peer learns it even if our Reset died
    /// with a stream, and the session is never opened again.
    Reset,
    /// Refused (rejected, or not decided in time) with this code: a repeated
    /// Query gets the same Response.
    Refused { code: u8 },
}

/// A session that ended, remembered for `recovery_timeout` to answer late
/// frames (like TCP's TIME-WAIT).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWait {
    pub ending: Ending,
    /// A stream to the peer died since the session closed: its last frames
    /// (the final Credit above all) may have died with it, so the final
    /// counts are announced again on a live stream.
    pub announce: bool,
}

/// Recently closed sessions of one peer.
pub(crate) struct TimeWaitTable {
    map: HashMap<u64, TimeWait, SeededState>,
    order: VecDeque<(u64, Timestamp)>,
}

impl TimeWaitTable {
    pub fn new(hasher: SeededState) -> Self {
        TimeWaitTable {
            map: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, wire: u64) -> Option<&TimeWait> {
        self.map.get(&wire)
    }

    pub fn contains(&self, wire: u64) -> bool {
        self.map.contains_key(&wire)
    }

    /// Remembers `wire` until `expiry`; returns whether the expiry timer
    /// must be armed (the table was empty).
    pub fn insert(&mut self, wire: u64, ending: Ending, expiry: Timestamp) -> bool {
        let first = self.order.is_empty();
        let tw = TimeWait {
            ending,
            announce: false,
        };
        if self.map.insert(wire, tw).is_none() {
            self.order.push_back((wire, expiry));
        }
        first
    }

    /// Forgets entries expired at `now`; returns the next expiry, if any.
    pub fn expire(&mut self, now: Timestamp) -> Option<Timestamp> {
        while let Some(&(wire, at)) = self.order.front() {
            if at > now {
                return Some(at);
            }
            self.order.pop_front();
            self.map.remove(&wire);
        }
        if self.map.capacity() > 1024 {
            self.map.shrink_to_fit();
        }
        None
    }

    /// Marks every entry to be announced again.
    pub fn mark_all_for_announce(&mut self) {
        for tw in self.map.values_mut() {
            tw.announce = true;
        }
    }

    /// Takes the entries marked for announcement, in closing order.
    pub fn take_announcements(&mut self) -> Vec<(u64, Ending)> {
        let mut out = Vec::new();
        for (wire, _) in &self.order {
            if let Some(tw) = self.map.get_mut(wire) {
                if tw.announce {
                    out.push((*wire, tw.ending));
                }
                tw.announce = false;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}
