//! Events the engine reports to the application, drained by `Node::poll_event`.

use crate::flow::FlowError;
use crate::frame::FrameError;
use crate::noise::NoiseError;
use crate::{NodeId, SessionId, StreamId};

/// A frame-level breach of the protocol; it closes the stream it came on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A record's plaintext did not decode as frames.
    #[error("malformed frame")]
    Frame(#[source] FrameError),
    /// A base frame (opcode 3, 4 or 6) on a stream that negotiated the
    /// extended frames.
    #[error("base frame (opcode {0}) on a stream that negotiated extended frames")]
    BaseFrame(u8),
    /// The peer did not offer the extended frame set this engine needs.
    #[error("peer lacks the extended frames")]
    NoExtendedFrames,
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamCloseReason {
    /// The driver reported the transport closed (EOF, reset, error).
    #[error("transport closed: {0}")]
    TransportClosed(String),
    /// The Noise handshake failed (wrong key, garbage, version).
    #[error("Noise handshake failed")]
    HandshakeFailed(#[source] NoiseError),
    /// The handshake did not complete within `handshake_timeout`.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing authenticated arrived within `dead_timeout`.
    #[error("peer silent for too long (ping timeout)")]
    PingTimeout,
    /// A record failed to decrypt or was malformed.
    #[error("bad record")]
    BadRecord(#[source] NoiseError),
    /// A frame violated the protocol.
    #[error("protocol error")]
    ProtocolError(#[source] ProtocolViolation),
    /// The handshake reached this node itself (its own identity answered).
    #[error("connected to itself")]
    SelfConnect,
    /// A configured limit was exceeded.
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// Closed by the local application.
    #[error("closed locally")]
    Local,
    /// Drained (sessions moved off) and closed.
    #[error("drained")]
    Drained,
    /// A stream with the same id already exists with this peer.
    #[error("a stream with the same id already exists with this peer")]
    DuplicateId,
    /// This node shut down ([`Node::shutdown`](crate::Node::shutdown)): the
    /// stream carried its Goodbye and closed.
    #[error("this node shut down")]
    Shutdown,
    /// The peer shut down: its Goodbye arrived (on this stream or another
    /// one to the same peer instance).
    #[error("the peer shut down")]
    PeerShutdown,
    /// The peer restarted: its new instance said, in its handshake, that
    /// it replaces the instance this stream led to (docs/PROTOCOL.md,
    /// "Supersedes").
    #[error("the peer restarted (its new instance replaces this one)")]
    PeerRestarted,
    /// An inbound handshake gave up its place: every stream slot was taken
    /// and its source held the most handshakes (`docs/SECURITY.md`).
    #[error("handshake evicted: the node is full and this source held the most handshakes")]
    HandshakeEvicted,
    /// The dialer's identity (`peer` of the event) is not allowed to
    /// connect by the accept policy.
    #[error("identity not allowed to connect")]
    NotAllowed,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both directions finished and were acknowledged: nothing was lost.
    #[error("closed gracefully")]
    Graceful,
    /// The peer rejected the query with this code.
    #[error("query rejected with code {0}")]
    Rejected(u8),
    /// The local application rejected the inbound query.
    #[error("query rejected locally")]
    RejectedLocally,
    /// The peer reset the session.
    #[error("reset by peer")]
    ResetByPeer,
    /// The local application reset the session.
    #[error("reset locally")]
    ResetLocally,
    /// No answer to the query (or no local decision) within `routing_timeout`.
    #[error("query timed out")]
    RoutingTimeout,
    /// No stream to the peer existed for longer than `recovery_timeout`.
    #[error("peer unreachable")]
    PeerUnreachable,
    /// The peer broke the session protocol (credit, offsets, Fin).
    #[error("protocol error")]
    ProtocolError(#[source] FlowError),
    /// A node-wide or per-peer limit refused the session.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The peer restarted (it came back with a new incarnation): the
    /// session's state died with the old process.
    #[error("peer restarted")]
    PeerRestarted,
    /// The peer shut down and said so (its Goodbye arrived).
    #[error("peer shut down")]
    PeerShutdown,
    /// This node shut down ([`Node::shutdown`](crate::Node::shutdown)).
    #[error("this node shut down")]
    Shutdown,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A stream finished its handshake with `peer`.
    StreamUp {
        /// The stream.
        stream: StreamId,
        /// Authenticated identity at the other end.
        peer: NodeId,
    },
    /// The peer has sent an authenticated record on the stream, so it knows
    /// the stream: it may now be a migration target. The listener side is
    /// confirmed at once (right after `StreamUp`), the dialer side when the
    /// listener's first record arrives.
    StreamConfirmed {
        /// The stream.
        stream: StreamId,
    },
    /// The stream sent something and has heard nothing for an RTO, nor for
    /// another RTO after a probe: its path may have failed (a blackhole, no
    /// reset). Its sessions resume on another stream to the peer at once,
    /// if there is one; the stream itself stays up until `dead_timeout`
    /// and becomes healthy again as soon as the peer is heard on it.
    StreamSuspect {
        /// The stream.
        stream: StreamId,
    },
    /// A suspect stream was heard from again (an authenticated record
    /// arrived): it may carry sessions again. Sessions that moved off it
    /// stay where they are (the policy may move them back).
    StreamHealthy {
        /// The stream.
        stream: StreamId,
    },
    /// A stream ended; the driver should close its transport.
    StreamDown {
        /// The stream.
        stream: StreamId,
        /// The peer, if the handshake had authenticated it.
        peer: Option<NodeId>,
        /// Why.
        reason: StreamCloseReason,
    },
    /// First stream to `peer` came up.
    Linked(NodeId),
    /// Last stream to `peer` went down.
    Unlinked(NodeId),
    /// The peer opened a session with a query; accept or reject it.
    Query {
        /// The new session (pending).
        session: SessionId,
        /// Who asked.
        peer: NodeId,
        /// The query string.
        query: String,
    },
    /// An outbound query was accepted; the session is open.
    SessionOpen {
        /// The session.
        session: SessionId,
    },
    /// The session has bytes or end-of-stream to read.
    Readable {
        /// The session.
        session: SessionId,
    },
    /// A session that refused a write has room again.
    Writable {
        /// The session.
        session: SessionId,
    },
    /// The session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// The session's traffic now flows over another stream.
    Migrated {
        /// The session.
        session: SessionId,
        /// Previous sending stream.
        from: StreamId,
        /// New sending stream.
        to: StreamId,
    },
    /// The session lost its stream and is resuming elsewhere.
    Recovering {
        /// The session.
        session: SessionId,
    },
    /// The session resumed on another stream.
    Recovered {
        /// The session.
        session: SessionId,
        /// Bytes retransmitted because the peer had not received them.
        resent_bytes: u64,
    },
}
