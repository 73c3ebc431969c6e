//! Session state: the per-session state machine and its two byte flows.

use crate::flow::{RecvBuf, SendBuf};
use crate::StreamId;

/// Lifecycle of a session. The legal transitions are listed in
/// [`SessionState::can_transition`], the one place that defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Outbound query sent (or waiting for a stream); no answer yet.
    Routing,
    /// Inbound query waiting for the local application's decision.
    Pending,
    /// Both sides agreed; bytes flow.
    Open,
    /// This side sent a MigrateTo marker and sends on the target; it stays
    /// here until the peer's traffic for the session is seen on the target.
    Migrating,
    /// The stream carrying the session died; resuming on another one.
    Recovering,
    /// Finished, reset, rejected or failed.
    Closed,
}

impl SessionState {
    /// Whether `self → to` is a legal transition.
    pub fn can_transition(self, to: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, to),
            (Routing, Open)
                | (Routing, Closed)
                | (Pending, Open)
                | (Pending, Closed)
                | (Open, Migrating)
                | (Open, Recovering)
                | (Open, Closed)
                | (Migrating, Open)
                | (Migrating, Migrating)
                | (Migrating, Recovering)
                | (Migrating, Closed)
                | (Recovering, Open)
                | (Recovering, Closed)
        )
    }

    /// Name for errors and introspection.
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Routing => "routing",
            SessionState::Pending => "pending",
            SessionState::Open => "open",
            SessionState::Migrating => "migrating",
            SessionState::Recovering => "recovering",
            SessionState::Closed => "closed",
        }
    }

    /// Data may flow (in both directions) in this state.
    pub fn is_established(self) -> bool {
        matches!(
            self,
            SessionState::Open | SessionState::Migrating | SessionState::Recovering
        )
    }
}

/// Which side opened the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This node sent the Query.
    Querier,
    /// This node answered it.
    Responder,
}

// Session flag bits: scheduling and signalling state kept compact.
pub(crate) const F_IN_SCHED: u16 = 1 << 0;
pub(crate) const F_IN_CTRL: u16 = 1 << 1;
pub(crate) const F_READABLE_SIGNALLED: u16 = 1 << 2;
pub(crate) const F_WRITE_BLOCKED: u16 = 1 << 3;
pub(crate) const F_READ_CLOSED: u16 = 1 << 4;
pub(crate) const F_RESUME_PENDING: u16 = 1 << 5;
pub(crate) const F_RESUME_REPLY_PENDING: u16 = 1 << 6;
pub(crate) const F_QUERY_PENDING: u16 = 1 << 7;
pub(crate) const F_RESPONSE_PENDING: u16 = 1 << 8;
pub(crate) const F_ACK_PENDING: u16 = 1 << 9;
pub(crate) const F_LAZY_CREDIT: u16 = 1 << 10;

/// A stream handle stored in 32 bits: sessions are the per-unit cost of an
/// idle node, and stream handles never exceed `u32::MAX - 1` (the node
/// refuses new streams past that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamRef(u32);

impl StreamRef {
    pub const NONE: StreamRef = StreamRef(u32::MAX);

    pub fn from(s: StreamId) -> StreamRef {
        u32::try_from(s.0).map(StreamRef).unwrap_or(StreamRef::NONE)
    }

    pub fn get(self) -> StreamId {
        if self == StreamRef::NONE {
            StreamId::NONE
        } else {
            StreamId(u64::from(self.0))
        }
    }
}

/// One session. Kept small: an idle session costs a few hundred bytes.
#[derive(Debug)]
pub(crate) struct Session {
    /// Session id on the wire (chosen by the querier).
    pub wire: u64,
    /// Index of the peer in the node's peer table.
    pub peer: u32,
    pub state: SessionState,
    pub role: Role,
    pub flags: u16,
    /// Response code to send (Pending → accepted/rejected).
    pub response_code: u8,
    /// Highest migration epoch seen or used.
    pub epoch: u32,
    /// Stream this side sends on.
    tx_stream: StreamRef,
    /// Stream the peer's traffic last arrived on.
    rx_stream: StreamRef,
    /// Stream a migration left (while Migrating), for the Migrated event.
    from_stream: StreamRef,
    pub send: SendBuf,
    pub recv: RecvBuf,
    pub migrations: u16,
    pub recoveries: u16,
}

impl Session {
    pub fn new(wire: u64, peer: u32, role: Role, state: SessionState, window: u32) -> Self {
        Session {
            wire,
            peer,
            state,
            role,
            flags: 0,
            response_code: 0,
            epoch: 0,
            tx_stream: StreamRef::NONE,
            rx_stream: StreamRef::NONE,
            from_stream: StreamRef::NONE,
            send: SendBuf::default(),
            recv: RecvBuf::new(window),
            migrations: 0,
            recoveries: 0,
        }
    }

    pub fn send_stream(&self) -> StreamId {
        self.tx_stream.get()
    }
    pub fn set_send_stream(&mut self, s: StreamId) {
        self.tx_stream = StreamRef::from(s);
    }
    pub fn recv_stream(&self) -> StreamId {
        self.rx_stream.get()
    }
    pub fn set_recv_stream(&mut self, s: StreamId) {
        self.rx_stream = StreamRef::from(s);
    }
    pub fn migrated_from(&self) -> StreamId {
        self.from_stream.get()
    }
    pub fn set_migrated_from(&mut self, s: StreamId) {
        self.from_stream = StreamRef::from(s);
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
    pub fn set(&mut self, flag: u16) {
        self.flags |= flag;
    }
    pub fn clear(&mut self, flag: u16) {
        self.flags &= !flag;
    }

    /// Moves to `to`. Illegal transitions are refused (and reported), never
    /// applied: the caller's invariant was wrong, the state stays coherent.
    pub fn transition(&mut self, to: SessionState) -> bool {
        if self.state == to || self.state.can_transition(to) {
            self.state = to;
            true
        } else {
            tracing::error!(from = ?self.state, ?to, "illegal session transition refused");
            debug_assert!(
                false,
                "illegal session transition {:?} -> {:?}",
                self.state, to
            );
            false
        }
    }

    /// Whether both directions are complete: our Fin credited, the peer's
    /// Fin read, and nothing left to tell the peer (final credit, Resume
    /// reply).
    pub fn is_done(&self) -> bool {
        // Pending control (a Resume reply above all) must go out first: the
        // peer may be waiting for it to leave Recovering.
        self.send.fin_acked() && self.recv.is_finished() && !self.wants_control()
    }

    /// Control frames this session wants on its sending stream.
    pub fn wants_control(&self) -> bool {
        self.recv.credit_due()
            || self.has(
                F_RESUME_PENDING
                    | F_RESUME_REPLY_PENDING
                    | F_QUERY_PENDING
                    | F_RESPONSE_PENDING
                    | F_ACK_PENDING,
            )
    }
}

/// Read-only snapshot of a session, for introspection and control tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Local handle.
    pub id: crate::SessionId,
    /// Wire id.
    pub wire_id: u64,
    /// The peer.
    pub peer: crate::NodeId,
    /// Which side opened it.
    pub role: Role,
    /// Current state.
    pub state: SessionState,
    /// Stream this side sends on.
    pub send_stream: StreamId,
    /// Stream the peer's traffic last arrived on.
    pub recv_stream: StreamId,
    /// Counters.
    pub stats: SessionStats,
}

/// Per-session counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Bytes the application wrote.
    pub bytes_written: u64,
    /// Bytes the peer has credited (consumed).
    pub bytes_acked: u64,
    /// Bytes received in order.
    pub bytes_received: u64,
    /// Bytes the application read.
    pub bytes_read: u64,
    /// Bytes sent again after recovery.
    pub bytes_retransmitted: u64,
    /// Bytes held by the sender now: written but not yet credited (in
    /// flight plus not yet sent). Bounded by peer window + `send_buffer`.
    pub bytes_retained: u64,
    /// Of those, bytes sent but not yet credited: what recovery may have to
    /// retransmit. Bounded by the peer's window.
    pub bytes_in_flight: u64,
    /// Bytes held in the reassembly buffer now.
    pub bytes_buffered: u64,
    /// Completed migrations.
    pub migrations: u32,
    /// Completed recoveries.
    pub recoveries: u32,
    /// Credit window granted by the peer.
    pub peer_window: u32,
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn print_sizes() {
        eprintln!(
            "Session {} SendBuf {} RecvBuf {} Slot {}",
            std::mem::size_of::<super::Session>(),
            std::mem::size_of::<crate::flow::SendBuf>(),
            std::mem::size_of::<crate::flow::RecvBuf>(),
            std::mem::size_of::<crate::node::Slot>()
        );
    }
}
