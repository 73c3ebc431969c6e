//! Cross-thread access to a running [`MioNode`]: a channel of closures and
//! a `mio::Waker` that interrupts the loop's poll.

use std::fmt;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use mio::Waker;

use crate::MioNode;

/// Work for the event loop: runs on the loop thread with the node.
pub type Command = Box<dyn FnOnce(&mut MioNode) + Send>;

/// The node's loop is gone (the [`MioNode`] was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeGone;

impl fmt::Display for NodeGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mio node was dropped")
    }
}

impl std::error::Error for NodeGone {}

/// A cloneable, `Send` handle to a [`MioNode`] that runs in another thread.
///
/// Closures sent through it run on the loop thread during the next
/// [`MioNode::process`] / [`MioNode::run_once`]; the waker makes that
/// happen at once even if the loop is blocked in `poll`.
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Queues `f` to run on the loop thread and wakes the loop.
    pub fn execute<F>(&self, f: F) -> Result<(), NodeGone>
    where
        F: FnOnce(&mut MioNode) + Send + 'static,
    {
        self.tx.send(Box::new(f)).map_err(|_| NodeGone)?;
        self.waker.wake().map_err(|_| NodeGone)
    }

    /// Runs `f` on the loop thread and waits for its result.
    ///
    /// Blocks the caller; never call it from the loop thread itself (it
    /// would wait for itself forever).
    pub fn call<F, R>(&self, f: F) -> Result<R, NodeGone>
    where
        F: FnOnce(&mut MioNode) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.execute(move |node| {
            let _ = tx.send(f(node));
        })?;
        rx.recv().map_err(|_| NodeGone)
    }

    /// Wakes the loop without sending work (e.g. after changing state it
    /// polls for).
    pub fn wake(&self) -> Result<(), NodeGone> {
        self.waker.wake().map_err(|_| NodeGone)
    }
}
