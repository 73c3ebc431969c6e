//! The driver contract: what every driver (tokio, mio, a simulator, yours)
//! decides the same way, written once.
//!
//! The loop itself is in the crate documentation ("The driving contract").
//! This module holds the policies around it, so that drivers cannot drift:
//!
//! - [`io_error`]: the `io::Error` a session read or write returns once the
//!   session ended, one mapping of [`CloseReason`] to [`io::ErrorKind`];
//! - [`linger`]: whether a transport is flushed before it is closed, by the
//!   stream's close reason;
//! - [`Backoff`] and [`Redialer`]: when a driver redials a remembered
//!   address;
//! - [`TxBuffer`]: the bytes pulled from `poll_transmit` that the transport
//!   has not taken yet (partial writes), with the pull rule;
//! - [`source_of`]: the admission keys of an accepted peer's address;
//! - [`RxBuffer`]: bytes read from a transport, kept on record boundaries
//!   so that whole records reach the engine without a copy;
//! - the detached record layer ([`RecordSealer`], [`RecordOpener`],
//!   [`UnsealedRecords`], [`OpenedRecords`], from
//!   [`NewStream::detach_record_layer`](crate::NewStream::detach_record_layer)):
//!   a driver that keeps each engine under a lock seals and opens records
//!   outside it;
//! - [`Clock`](crate::Clock) maps a monotonic clock onto timestamps;
//!   configuration is validated by the node's constructor.
//!
//! Nothing here performs I/O.

mod buffers;
mod redial;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::event::{CloseReason, StreamCloseReason};
use crate::Source;

/// Where an accepted transport from `addr` comes from, for
/// [`Node::accept_from`](crate::Node::accept_from): its address and its
/// /24 (IPv4) or /64 (IPv6) as admission keys. Every driver that accepts
/// from IP addresses passes this, so limits per address and per prefix
/// mean the same under every driver.
///
/// ```
/// use astral_core::driver::source_of;
/// let a = source_of("198.51.100.7:4000".parse().unwrap());
/// let b = source_of("198.51.100.9:5000".parse().unwrap());
/// assert_eq!(a.prefix, b.prefix);
/// assert_ne!(a.host, b.host);
/// ```
pub fn source_of(addr: SocketAddr) -> Source {
    Source::from_addr(addr)
}

pub use buffers::{RxBuffer, TxBuffer};
pub use redial::{Backoff, DialId, Redialer};

pub use crate::engine::DetachedRecordLayer;
pub use crate::noise::{Opened, OpenedRecords, RecordOpener, RecordSealer, UnsealedRecords};

/// The error inside the `io::Error` a session read or write returns after
/// the session ended; `downcast` it to get the [`CloseReason`].
///
/// ```
/// use astral_core::driver::{io_error, SessionClosedError};
/// use astral_core::CloseReason;
/// let e = io_error(CloseReason::ResetByPeer);
/// assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
/// let inner = e.get_ref().unwrap().downcast_ref::<SessionClosedError>().unwrap();
/// assert_eq!(inner.0, CloseReason::ResetByPeer);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session {0}")]
pub struct SessionClosedError(pub CloseReason);

/// The [`io::ErrorKind`] of a session that ended for `reason`.
pub fn error_kind(reason: &CloseReason) -> io::ErrorKind {
    match reason {
        // A read sees end-of-stream (Ok(0)) instead; a write after a
        // graceful close is writing to a closed pipe.
        CloseReason::Graceful => io::ErrorKind::BrokenPipe,
        CloseReason::ResetByPeer | CloseReason::PeerRestarted | CloseReason::PeerShutdown => {
            io::ErrorKind::ConnectionReset
        }
        CloseReason::ResetLocally | CloseReason::Shutdown => io::ErrorKind::ConnectionAborted,
        CloseReason::PeerUnreachable | CloseReason::RoutingTimeout => io::ErrorKind::TimedOut,
        CloseReason::Rejected(_) | CloseReason::RejectedLocally | CloseReason::Limit(_) => {
            io::ErrorKind::ConnectionRefused
        }
        CloseReason::ProtocolError(_) => io::ErrorKind::InvalidData,
    }
}

/// The `io::Error` of a session that ended for `reason` (its kind from
/// [`error_kind`], the reason inside as a [`SessionClosedError`]).
pub fn io_error(reason: CloseReason) -> io::Error {
    io::Error::new(error_kind(&reason), SessionClosedError(reason))
}

/// Whether a driver should write out what it still holds for a stream
/// before closing its transport (bounded by its own linger timeout), or drop
/// the transport at once.
///
/// The engine produces a stream's last frames before it reports the stream
/// down: the second Drain of a drain, the Goodbye of a shutdown, a local
/// close. Those must reach the peer. A transport that failed, a peer that
/// stopped answering, or a peer that said Goodbye, gets nothing more.
pub fn linger(reason: &StreamCloseReason) -> bool {
    matches!(
        reason,
        StreamCloseReason::Drained
            | StreamCloseReason::Local
            | StreamCloseReason::LimitExceeded(_)
            | StreamCloseReason::ProtocolError(_)
            | StreamCloseReason::DuplicateId
            | StreamCloseReason::SelfConnect
            | StreamCloseReason::Shutdown
    )
}

/// How long a lingering transport may take to flush before it is dropped.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_one_kind() {
        let cases = [
            (CloseReason::Graceful, io::ErrorKind::BrokenPipe),
            (CloseReason::ResetByPeer, io::ErrorKind::ConnectionReset),
            (CloseReason::ResetLocally, io::ErrorKind::ConnectionAborted),
            (CloseReason::PeerUnreachable, io::ErrorKind::TimedOut),
            (CloseReason::RoutingTimeout, io::ErrorKind::TimedOut),
            (CloseReason::Rejected(1), io::ErrorKind::ConnectionRefused),
            (
                CloseReason::RejectedLocally,
                io::ErrorKind::ConnectionRefused,
            ),
            (CloseReason::PeerShutdown, io::ErrorKind::ConnectionReset),
            (CloseReason::PeerRestarted, io::ErrorKind::ConnectionReset),
            (CloseReason::Shutdown, io::ErrorKind::ConnectionAborted),
        ];
        for (reason, kind) in cases {
            let e = io_error(reason.clone());
            assert_eq!(e.kind(), kind, "{reason:?}");
            let inner = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<SessionClosedError>());
            assert_eq!(inner.map(|i| &i.0), Some(&reason));
        }
    }

    #[test]
    fn linger_only_where_the_engine_left_last_words() {
        assert!(linger(&StreamCloseReason::Drained));
        assert!(linger(&StreamCloseReason::Local));
        // The Goodbye must reach the peer; the peer's own Goodbye needs no
        // answer.
        assert!(linger(&StreamCloseReason::Shutdown));
        assert!(!linger(&StreamCloseReason::PeerShutdown));
        assert!(!linger(&StreamCloseReason::PingTimeout));
        assert!(!linger(&StreamCloseReason::TransportClosed("eof".into())));
    }
}
