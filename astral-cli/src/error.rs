//! Errors of the tool: one sentence for the user, and which exit code.
//!
//! Exit codes (docs/CLI.md): 0 success, 1 a runtime failure, 2 a usage
//! mistake (bad arguments, bad flags or values, detected by clap or by us),
//! 130 / 143 stopped by SIGINT / SIGTERM.

use std::fmt;

/// A boxed error with a human message.
pub type AnyError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its sources, one sentence (`handshake with … failed:
/// transport closed: …`): the library's errors keep their causes as
/// sources, and a user needs all of them.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    astral_tokio::astral_core::error::chain(e)
}

/// Builds a runtime error (exit 1) from a message.
pub fn err(msg: impl Into<String>) -> AnyError {
    msg.into().into()
}

/// A mistake in how the tool was called: exit code 2, like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds a usage error (exit 2) from a message.
pub fn usage(msg: impl Into<String>) -> AnyError {
    Box::new(UsageError(msg.into()))
}

/// Whether `e` is a usage mistake.
pub fn is_usage(e: &AnyError) -> bool {
    e.downcast_ref::<UsageError>().is_some()
}
