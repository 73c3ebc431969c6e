//! Internals re-exported for tests, fuzz targets and protocol tools, behind
//! the `unstable` feature (like quinn-proto's `fuzzing` module). Nothing
//! here is covered by semantic versioning.

pub use crate::flow::{RecvBuf, SendBuf};
pub use crate::noise::handshake::{Established, Handshake};
pub use crate::noise::record::RecordCipher;
pub use crate::noise::resolver::SeededResolver;
