//! Tokio driver for [`astral_core`]: an async [`Node`] with TCP (or any
//! byte transport) streams, and [`Session`]s that are `AsyncRead +
//! AsyncWrite`, migrate between streams and survive the death of theirs.
//!
//! The driver is thin: every protocol decision is the core's. It moves
//! bytes between transports and the core, runs the core's timer, and turns
//! core events into wakeups, futures and channels.
//!
//! # Architecture
//!
//! * The core's endpoint (handshakes, admission, routing) has one lock, and
//!   every peer's engine its own, with the driver state of that peer
//!   (session wakers, transport slots). Every call under a peer's lock is
//!   followed by a dispatch step: drain the engine's events (wake session
//!   readers/writers, resolve futures, forward queries to [`Incoming`],
//!   broadcast the rest on [`Node::events`], hang up transports of dead
//!   streams), then write to or wake the peer's transports whose stream now
//!   has output. Wakers run after the lock is released.
//!   `docs/ARCHITECTURE.md` has the whole picture.
//! * One task per transport owns it (no split): it reads ciphertext into an
//!   [`astral_core::driver::RxBuffer`], opens records outside every lock and
//!   hands them to its peer's engine; it pulls up to 256 KiB of records from
//!   the engine (`poll_transmit_unsealed`) only once the previous batch was
//!   written. That on-demand pull is the backpressure from socket to core;
//!   the core's credit and send-buffer limits carry it on to
//!   `Session::poll_write`, which returns `Pending` until `Writable`.
//! * One writer at a time per socket, through a write token: a call that
//!   leaves output for an idle TCP transport seals and writes it itself
//!   after the peer's lock is released (no task hop); what the socket does
//!   not take goes to the transport task with the token.
//! * One timer task per peer sleeps until its engine's next deadline.
//!
//! # Example
//!
//! ```
//! use astral_tokio::{Config, Identity, Node};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), astral_tokio::Error> {
//! let server = Node::new(Identity::from_seed([1; 32]), Config::default()).unwrap();
//! let client = Node::new(Identity::from_seed([2; 32]), Config::default()).unwrap();
//! let addr = server.listen("127.0.0.1:0").await?;
//!
//! let srv = server.clone();
//! tokio::spawn(async move {
//!     while let Some(q) = srv.next_query().await {
//!         let mut s = q.accept().unwrap();
//!         tokio::spawn(async move {
//!             let mut buf = Vec::new();
//!             s.read_to_end(&mut buf).await.unwrap();
//!             s.write_all(&buf).await.unwrap();
//!         });
//!     }
//! });
//!
//! client.connect(server.id(), addr).await?;
//! let mut s = client.open_session(server.id(), "echo").await?;
//! s.write_all(b"hello").await?;
//! s.shutdown().await?;
//! let mut back = Vec::new();
//! s.read_to_end(&mut back).await?;
//! assert_eq!(back, b"hello");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ctx;
mod endpoint;
mod error;
mod node;
mod peer;
mod session;
mod sessions;
mod sockopt;
mod transport;
mod wire;

pub use error::{Error, Result, SessionClosedError};
pub use node::{Node, Role};
pub use session::{Incoming, IncomingQuery, Session, SessionReader, SessionWriter};

pub use astral_core;
pub use astral_core::{
    codes, AcceptPolicy, AdmissionStats, AllowList, CloseReason, Config, Event, Identity, NodeId,
    SessionId, SessionInfo, SessionState, Source, StreamCloseReason, StreamId, StreamInfo,
};
