//! Ctrl-C and SIGTERM for the long-running subcommands: they shut the node
//! down (its peers learn at once that we leave), remove their sockets, and
//! exit with 128 + the signal number, as shells report it (130, 143).
//! `listen --allow` also takes SIGHUP, to re-read its allow file.

use std::time::Duration;

use astral_tokio::Node;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::error::{err, AnyError};

/// How long a stopping tool waits for its Goodbyes to be written before it
/// exits anyway (a transport that takes nothing: the core gives up on it
/// after `LINGER_TIMEOUT`, 2 s).
const GOODBYE_WAIT: Duration = Duration::from_secs(3);

/// Shuts `node` down (every peer is told with a Goodbye, and its sessions
/// with us end at once with `PeerShutdown`) and waits, bounded, until the
/// Goodbyes are written and the transports closed: exiting earlier would
/// leave the peers to find out only after their recovery timeout.
pub async fn leave(node: &Node) {
    node.shutdown();
    if tokio::time::timeout(GOODBYE_WAIT, node.closed())
        .await
        .is_err()
    {
        tracing::info!("some transports did not close within {GOODBYE_WAIT:?}; exiting anyway");
    }
}

/// The signals that stop the tool, registered once at start (so a signal
/// that arrives while the node starts is not lost).
pub struct Signals {
    int: Signal,
    term: Signal,
    /// Registered only where SIGHUP means "reload" (otherwise it keeps its
    /// default action and ends the process, as a hung-up terminal expects).
    hup: Option<Signal>,
}

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// Stop with this exit code.
    Stop(u8),
    /// Re-read the configuration files (SIGHUP).
    Reload,
}

impl Signals {
    /// Installs the handlers (the default actions no longer kill us).
    pub fn new() -> Result<Signals, AnyError> {
        let int = signal(SignalKind::interrupt())
            .map_err(|e| err(format!("cannot handle SIGINT: {e}")))?;
        let term = signal(SignalKind::terminate())
            .map_err(|e| err(format!("cannot handle SIGTERM: {e}")))?;
        Ok(Signals {
            int,
            term,
            hup: None,
        })
    }

    /// Takes SIGHUP too: [`Signals::next`] then returns [`Asked::Reload`]
    /// for it.
    pub fn with_hangup(mut self) -> Result<Signals, AnyError> {
        self.hup = Some(
            signal(SignalKind::hangup()).map_err(|e| err(format!("cannot handle SIGHUP: {e}")))?,
        );
        Ok(self)
    }

    /// Waits for a signal: a stop (with its exit code) or a reload.
    pub async fn next(&mut self) -> Asked {
        let hup = async {
            match &mut self.hup {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            code = stop(&mut self.int, &mut self.term) => Asked::Stop(code),
            () = hup => Asked::Reload,
        }
    }

    /// Waits for a stop signal; returns the exit code it asks for.
    pub async fn recv(&mut self) -> u8 {
        stop(&mut self.int, &mut self.term).await
    }
}

async fn stop(int: &mut Signal, term: &mut Signal) -> u8 {
    tokio::select! {
        _ = int.recv() => {
            tracing::info!("interrupted (SIGINT): shutting down");
            130
        }
        _ = term.recv() => {
            tracing::info!("terminated (SIGTERM): shutting down");
            143
        }
    }
}
