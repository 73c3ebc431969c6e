//! Ctrl-C and SIGTERM for the long-running subcommands: they shut the node
//! down (its peers learn at once that we leave), remove their sockets, and
//! exit with 128 + the signal number, as shells report it (130, 143).

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::error::{err, AnyError};

/// The signals that stop the tool, registered once at start (so a signal
/// that arrives while the node starts is not lost).
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Installs the handlers (the default actions no longer kill us).
    pub fn new() -> Result<Signals, AnyError> {
        let int = signal(SignalKind::interrupt())
            .map_err(|e| err(format!("cannot handle SIGINT: {e}")))?;
        let term = signal(SignalKind::terminate())
            .map_err(|e| err(format!("cannot handle SIGTERM: {e}")))?;
        Ok(Signals { int, term })
    }

    /// Waits for one; returns the exit code it asks for.
    pub async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => {
                tracing::info!("interrupted (SIGINT): shutting down");
                130
            }
            _ = self.term.recv() => {
                tracing::info!("terminated (SIGTERM): shutting down");
                143
            }
        }
    }
}
