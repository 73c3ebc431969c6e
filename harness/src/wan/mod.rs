//! `astral-wan`: a user-space path emulator, because the kernel here has no
//! `sch_netem`.
//!
//! * [`Forwarder`]: a delaying TCP forwarder (no root). Split TCP: it shapes
//!   what the ends' applications see (delay, jitter, rate, bounded queue,
//!   blackhole, partition), not their kernels' TCP windows.
//! * [`tun`] (Linux, root): a bridge between two TUN devices in two network
//!   namespaces, for end-to-end kernel TCP over an emulated path.
//! * [`Link`]: the sans-IO model of one direction both use.
//! * [`command`], [`control`]: the command language (`delay 100ms`, `rate
//!   8mbit`, `blackhole on|off`, ...) on a Unix socket, stdin or a schedule.
//!
//! What each emulates and what it does not: `docs/HARNESS.md`.

pub mod command;
pub mod control;
pub mod forwarder;
pub mod link;
pub mod path;
#[cfg(target_os = "linux")]
pub mod tun;

pub use command::{Command, CommandError, Direction, PathParams, Schedule, Setting};
pub use forwarder::Forwarder;
pub use link::{Blackhole, Link, LinkMode, LinkParams, LinkStats, Refused};
pub use path::{PathControl, PathKind, PathStats};
