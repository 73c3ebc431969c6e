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
//! - [`Backoff`]: how a driver redials a remembered address;
//! - [`TxBuffer`]: the bytes pulled from `poll_transmit` that the transport
//!   has not taken yet (partial writes), with the pull rule;
//! - [`Clock`](crate::Clock) maps a monotonic clock onto timestamps;
//!   configuration is validated by the node's constructor.
//!
//! Nothing here performs I/O.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};

use crate::event::{CloseReason, StreamCloseReason};

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

/// Exponential backoff with jitter for redialing a remembered address.
///
/// ```
/// use astral_core::driver::Backoff;
/// use std::time::Duration;
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!(b.delay(0, 0), Duration::from_millis(100));
/// assert_eq!(b.delay(10, 0), Duration::from_secs(5));
/// assert!(b.delay(2, u64::MAX) <= Duration::from_millis(500));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Delays from `min` doubling to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
        }
    }

    /// The delay before attempt `attempt` (0 = the first redial), with up
    /// to +25 % jitter drawn from `random` (use the node's generator, so
    /// runs stay reproducible), never above `max`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let jitter = base / 4;
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(random % (jitter.as_nanos() as u64).max(1))
        };
        (base + extra).min(self.max)
    }
}

/// Ciphertext pulled from the core that the transport has not taken yet.
///
/// The rule both drivers follow: pull (`poll_transmit`) only into an empty
/// buffer, and at most [`TxBuffer::PULL`] bytes at a time, so the core's
/// scheduler keeps the backpressure (data stays in sessions' send buffers,
/// where `write` can refuse it) and the driver never holds more than one
/// pull's worth.
#[derive(Debug, Default)]
pub struct TxBuffer {
    buf: BytesMut,
}

impl TxBuffer {
    /// Bytes pulled per `poll_transmit` call: a few records, so one write
    /// system call carries many frames.
    pub const PULL: usize = 256 * 1024;

    /// Whether everything pulled was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The buffer to pull into (`poll_transmit(now, stream, buf, PULL)`);
    /// only when [`TxBuffer::is_empty`].
    pub fn pull_into(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The bytes to write next.
    pub fn chunk(&self) -> &[u8] {
        &self.buf
    }

    /// The transport took `n` bytes.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
        if self.buf.is_empty() && self.buf.capacity() > 4 * Self::PULL {
            // A burst must not pin its peak.
            self.buf = BytesMut::new();
        }
    }
}

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

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(b.delay(1, 0), Duration::from_millis(200));
        for r in [1, 7, u64::MAX] {
            let d = b.delay(3, r);
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
        }
        assert_eq!(b.delay(40, 3), Duration::from_secs(5));
    }

    #[test]
    fn tx_buffer_advances_and_sheds() {
        let mut t = TxBuffer::default();
        t.pull_into().extend_from_slice(&[1, 2, 3]);
        assert_eq!(t.chunk(), &[1, 2, 3]);
        t.advance(2);
        assert_eq!(t.chunk(), &[3]);
        t.advance(5);
        assert!(t.is_empty());
    }
}
