//! astral-core: the sans-IO protocol engine of Astral streams and sessions.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or
//! touches a global random number generator. Drivers feed it bytes and time
//! through `handle_*` methods and drain its outputs through `poll_*` methods.
//!
//! # The driving contract
//!
//! Inputs and outputs may come in **any order**; outputs queue until polled.
//! A driver loop does, until the node is dropped:
//!
//! 1. feed what arrived: [`Node::handle_input`] for each transport's bytes,
//!    [`Node::handle_transport_closed`] when one ends, and application calls
//!    ([`Node::open_session`], [`Node::session`], [`Node::migrate`], ...);
//! 2. when [`Node::poll_timeout`]'s deadline has passed, call
//!    [`Node::handle_timeout`];
//! 3. drain [`Node::poll_event`]: close the transport of every
//!    `StreamDown`, wake readers on `Readable`, writers on `Writable`, ...;
//! 4. for every transport that can take bytes and
//!    [`Node::wants_transmit`], pull [`Node::poll_transmit`] and write what
//!    it appended (records are built on demand: the pull is the
//!    backpressure);
//! 5. sleep until input arrives or the deadline of `poll_timeout`.
//!
//! The [`Node`] facade runs one [`Endpoint`] (handshakes, admission,
//! routing by identity, node-wide limits) and one [`PeerEngine`] per peer.
//! A driver that wants peers on different cores drives the endpoint and the
//! engines itself, under one lock each: the same contract applies to each
//! part (see `docs/ARCHITECTURE.md`).
//!
//! ```
//! use astral_core::{Config, Event, Identity, Node, Timestamp};
//! let mut a = Node::new(Identity::from_seed([1; 32]), Config::default(), 1).unwrap();
//! let mut b = Node::new(Identity::from_seed([2; 32]), Config::default(), 2).unwrap();
//! let now = Timestamp::ZERO;
//! let (sa, sb) = (a.connect(now, b.local_id()).unwrap(), b.accept(now).unwrap());
//! let s = a.open_session(now, b.local_id(), "echo").unwrap();
//! a.session(s).unwrap().write(b"hello").unwrap();
//! let mut wire = bytes::BytesMut::new();
//! for _ in 0..8 {
//!     a.poll_transmit(now, sa, &mut wire, usize::MAX);
//!     b.handle_input(now, sb, &wire.split());
//!     while let Some(ev) = b.poll_event() {
//!         if let Event::Query { session, .. } = ev {
//!             b.accept_query(now, session).unwrap();
//!         }
//!     }
//!     b.poll_transmit(now, sb, &mut wire, usize::MAX);
//!     a.handle_input(now, sa, &wire.split());
//! }
//! let peer_session = b.sessions().next().unwrap().id;
//! let mut buf = [0u8; 16];
//! let n = b.session(peer_session).unwrap().read(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
mod admission;
pub mod config;
pub mod driver;
mod endpoint;
mod engine;
pub mod error;
pub mod event;
mod flow;
pub mod frame;
pub mod identity;
mod ids;
mod node;
pub mod noise;
mod path;
pub mod policy;
pub mod session;
mod shared;
mod slab;
pub mod stream;
mod time;
mod timer;
mod window;

#[cfg(feature = "unstable")]
pub mod unstable;

pub use accept::{AcceptPolicy, AllowList};
pub use admission::{AdmissionStats, Source, SourceKey};
pub use bytes;
pub use config::{Config, ConfigError};
pub use endpoint::{Endpoint, EngineRef, PolicyFactory};
pub use engine::{
    DetachedRecordLayer, NewStream, PeerEngine, SessionHandle, Superseded, Supersession,
};
pub use error::{
    ConnectError, DrainError, MigrateError, OpenError, ReadError, SessionError, WriteError,
};
pub use event::{CloseReason, Event, ProtocolViolation, StreamCloseReason};
pub use flow::FlowError;
pub use identity::{Identity, NodeId};
pub use ids::{EngineId, SessionId, StreamId};
pub use node::{codes, Node};
pub use policy::{Candidate, Policy, RttPolicy};
pub use session::{Role, SessionInfo, SessionState, SessionStats, Transition};
pub use stream::{Rtt, StreamInfo, StreamPreference, StreamState, StreamStats};
pub use time::{Clock, Timestamp};
