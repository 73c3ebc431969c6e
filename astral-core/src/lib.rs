//! astral-core: the sans-IO protocol engine of Astral streams and sessions.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or
//! touches a global random number generator. Drivers feed it bytes and time
//! through `handle_*` methods and drain its outputs through `poll_*` methods,
//! in any order. See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod event;
pub mod flow;
pub mod frame;
mod handle;
pub mod identity;
mod ids;
mod input;
mod migrate;
mod node;
pub mod noise;
pub mod policy;
mod recovery;
pub mod session;
pub mod stream;
mod time;
mod timer;
mod transmit;

pub use config::Config;
pub use error::{
    ConnectError, DrainError, MigrateError, OpenError, ReadError, SessionError, WriteError,
};
pub use event::{CloseReason, Event, StreamCloseReason};
pub use handle::SessionHandle;
pub use identity::{Identity, NodeId};
pub use ids::{SessionId, StreamId};
pub use node::{codes, Node};
pub use policy::{Candidate, Policy, RttPolicy};
pub use session::{Role, SessionInfo, SessionState, SessionStats};
pub use stream::{Rtt, StreamInfo, StreamState, StreamStats};
pub use time::Timestamp;
