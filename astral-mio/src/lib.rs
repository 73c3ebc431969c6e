//! astral-mio: drives the sans-IO [`astral_core::Node`] from a
//! single-threaded [mio] event loop over TCP.
//!
//! A [`MioNode`] owns the core node and its sockets. Use it in one of two
//! ways:
//!
//! * **Own the loop**: [`MioNode::new`] creates a private `mio::Poll`; call
//!   [`MioNode::run_once`] in a loop and drain [`MioNode::poll_event`].
//! * **Join your loop**: [`MioNode::with_registry`] registers every socket
//!   into *your* `Poll` with tokens from a range you reserve; feed your
//!   events to [`MioNode::process`] and bound your poll with
//!   [`MioNode::next_timeout`] (which also flushes output queued by API
//!   calls, so call it right before polling).
//!
//! Sessions are used through [`Session`] handles whose `read`/`write`
//! return [`std::io::ErrorKind::WouldBlock`] like a non-blocking socket;
//! [`Event::Readable`] / [`Event::Writable`] say when to retry. Other
//! threads hand work to the loop through a [`Handle`] (a channel of closures
//! plus a `mio::Waker`).
//!
//! ```no_run
//! use astral_mio::{Event, MioNode};
//! use astral_core::{Config, Identity};
//! # fn main() -> std::io::Result<()> {
//! let mut node = MioNode::new( Identity::from_seed([7; 32]),Config::default(), 7)?;
//! let addr = node.listen("127.0.0.1:0".parse().unwrap())?;
//! println!("{} listening on {addr}", node.local_id());
//! loop {
//!     node.run_once(None)?;
//!     while let Some(event) = node.poll_event() {
//!         match event {
//!             Event::Query { session, .. } => { node.accept_query(session).ok(); }
//!             Event::Readable { session } => {
//!                 let mut buf = [0u8; 4096];
//!                 if let Some(mut s) = node.session(session) {
//!                     while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
//!                         if n == 0 { s.finish(); break; }
//!                         let _ = std::io::Write::write(&mut s, &buf[..n]);
//!                     }
//!                 }
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//! # }
//! ```
#![warn(missing_docs)]

mod conn;
mod driver;
mod handle;
mod session;
mod sockopt;

pub use astral_core::{CloseReason, Event, NodeId, SessionId, StreamCloseReason, StreamId};
pub use driver::MioNode;
pub use handle::{Command, Handle, NodeGone};
pub use session::Session;
