//! Errors returned by the application-facing API, one enum per operation.

use crate::noise::NoiseError;

/// `connect` / `accept` failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A stream limit (named) is reached.
    #[error("stream limit reached: {0}")]
    Limit(&'static str),
    /// Dialing ourselves.
    #[error("cannot connect to own identity")]
    SelfConnect,
    /// snow refused the parameters (does not happen with a valid identity).
    #[error("noise setup failed")]
    Noise(#[from] NoiseError),
    /// The node was shut down ([`Node::shutdown`](crate::Node::shutdown)).
    #[error("node shut down")]
    ShutDown,
}

/// `open_session` failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The query is longer than `max_query_len`.
    #[error("query too long ({0} bytes)")]
    QueryTooLong(usize),
    /// `max_sessions_per_peer` reached.
    #[error("too many sessions with this peer")]
    TooManySessions,
    /// `max_sessions` (node-wide) reached.
    #[error("too many sessions on this node")]
    NodeSessionLimit,
    /// Opening a session with ourselves.
    #[error("cannot open a session with own identity")]
    SelfSession,
    /// The node was shut down ([`Node::shutdown`](crate::Node::shutdown)).
    #[error("node shut down")]
    ShutDown,
}

/// Errors of session operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No such session (closed and removed, or never existed).
    #[error("unknown session")]
    Unknown,
    /// The operation needs another state (e.g. accepting an open session).
    #[error("session is {0}")]
    WrongState(&'static str),
}

/// `SessionHandle::write` failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The send buffer is full; wait for `Event::Writable`.
    #[error("send buffer full")]
    Blocked,
    /// The write side was finished or the session closed.
    #[error("session closed for writing")]
    Closed,
}

/// `SessionHandle::read` failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing to read yet; wait for `Event::Readable`.
    #[error("nothing to read yet")]
    Blocked,
    /// The session was reset or failed; no more data will come.
    #[error("session closed: {0}")]
    Closed(crate::CloseReason),
}

/// `migrate` failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// No such session.
    #[error("unknown session")]
    UnknownSession,
    /// The session is not open (routing, recovering or closed).
    #[error("session not open")]
    SessionNotOpen,
    /// No such established stream.
    #[error("target stream unknown")]
    TargetUnknown,
    /// The session already sends on that stream.
    #[error("target is the current stream")]
    TargetIsCurrent,
    /// The stream leads to another node (or another incarnation of it).
    #[error("target stream belongs to another peer")]
    WrongPeer,
    /// The stream has not yet carried an authenticated record from the peer.
    #[error("target stream not yet confirmed by the peer")]
    TargetNotConfirmed,
    /// The stream is being drained (by either side) or closed.
    #[error("target stream is being drained")]
    TargetDraining,
    /// The stream is suspect: it has not answered a probe
    /// ([`Event::StreamSuspect`](crate::Event::StreamSuspect)).
    #[error("target stream is suspect (its probe went unanswered)")]
    TargetSuspect,
}

/// `drain_stream` failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DrainError {
    /// No such established stream.
    #[error("unknown stream")]
    UnknownStream,
    /// No other usable stream to the peer to move sessions to.
    #[error("no other stream to the peer")]
    NoAlternative,
}

/// Formats an error with its whole source chain, `outer: inner: root`, for
/// one-line messages (logs, command-line tools).
///
/// ```
/// use astral_core::error::chain;
/// use astral_core::{noise::NoiseError, StreamCloseReason};
/// let e = StreamCloseReason::HandshakeFailed(NoiseError::Decrypt);
/// assert_eq!(chain(&e), "Noise handshake failed: record failed to decrypt (corrupted or forged)");
/// ```
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        // Some errors repeat their source in their own text: skip echoes.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
