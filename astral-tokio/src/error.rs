//! The driver's error type.

use std::io;

use astral_core::{
    CloseReason, ConfigError, ConnectError, DrainError, MigrateError, NodeId, OpenError,
    SessionError, StreamCloseReason,
};

/// Everything an [`Node`](crate::Node) operation can fail with.
///
/// Every variant prints a sentence a user can act on, e.g.
/// `handshake with 3b6a…e1 failed: transport closed: connection closed by peer`.
///
/// ```
/// use astral_tokio::Error;
/// let e = Error::Rejected { peer: astral_core::Identity::from_seed([1; 32]).node_id(), code: 2 };
/// assert!(e.to_string().contains("rejected by") && e.to_string().ends_with("with code 2"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed (e.g. connection refused, address in use).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The Noise handshake with `peer` did not complete. A wrong peer id shows
    /// up here: the listener cannot decrypt the first message and hangs up.
    #[error("handshake with {peer} failed")]
    Handshake {
        /// The identity we dialed.
        peer: NodeId,
        /// What ended the stream.
        #[source]
        reason: StreamCloseReason,
    },
    /// An inbound handshake did not complete, or completed with an identity
    /// the accept policy refused (then `peer` names it and `reason` is
    /// [`StreamCloseReason::NotAllowed`]).
    #[error("{}", inbound_message(.peer))]
    Inbound {
        /// The dialer's identity, if the handshake got far enough to learn it.
        peer: Option<NodeId>,
        /// What ended the stream.
        #[source]
        reason: StreamCloseReason,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The core refused to start a stream (limits, dialing ourselves).
    #[error("cannot start a stream: {0}")]
    Connect(#[from] ConnectError),
    /// The core refused to open a session (query too long, limits).
    #[error("cannot open a session: {0}")]
    Open(#[from] OpenError),
    /// The peer rejected the query.
    #[error("query rejected by {peer} with code {code}")]
    Rejected {
        /// Who rejected it.
        peer: NodeId,
        /// The code it answered (see [`astral_core::codes`]).
        code: u8,
    },
    /// No answer to the query within the core's `routing_timeout`, although a
    /// stream to the peer existed.
    #[error("query to {0} timed out")]
    Timeout(NodeId),
    /// No stream to the peer existed to carry the query (none was being set
    /// up, or none came up within the connect timeout), or the session
    /// found none within the core's `recovery_timeout`.
    #[error("peer {0} unreachable: no stream to it")]
    Unreachable(NodeId),
    /// The session ended for `reason` before the operation completed.
    #[error("session closed")]
    SessionClosed(#[source] CloseReason),
    /// A session operation named a session in the wrong state or unknown.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// A manual migration was refused.
    #[error("migration refused: {0}")]
    Migrate(#[from] MigrateError),
    /// A drain was refused.
    #[error("drain refused: {0}")]
    Drain(#[from] DrainError),
    /// No such stream.
    #[error("unknown stream")]
    UnknownStream,
    /// The node was shut down.
    #[error("node shut down")]
    Shutdown,
}

fn inbound_message(peer: &Option<NodeId>) -> String {
    match peer {
        Some(p) => format!("inbound handshake from {p} failed"),
        None => "inbound handshake failed".to_string(),
    }
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use astral_core::driver::SessionClosedError;
