//! The shared, changeable state of one emulated path: its parameters (a
//! watch channel the per-connection or per-device tasks follow), its
//! counters, and the commands that change them.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use crate::wan::command::{Command, CommandError, PathParams, Setting};
use crate::wan::link::LinkStats;

/// What kind of emulator carries the path (some commands make sense for
/// only one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// The split-TCP forwarder: no loss (bytes of a stream cannot be lost),
    /// `reset` works.
    Forwarder,
    /// The TUN bridge: packets, loss works, `reset` does not (there is no
    /// connection to reset: the kernels' TCP owns them).
    Tun,
}

/// Counters of both directions, summed over every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PathStats {
    /// Dialer → target, A → B.
    pub up: LinkStats,
    /// Target → dialer, B → A.
    pub down: LinkStats,
    /// Connections accepted so far (forwarder).
    pub connections: u64,
    /// Connections open now (forwarder).
    pub open_connections: u64,
}

/// A handle on one path: cheap to clone; every clone controls the same path.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use astral_harness::wan::{PathControl, PathKind, PathParams};
/// let path = PathControl::new(PathKind::Forwarder, PathParams::default());
/// path.apply("delay 50ms").unwrap();
/// assert_eq!(path.params().up.delay.as_millis(), 50);
/// assert!(path.apply("loss 1%").is_err()); // a TCP forwarder cannot lose bytes
/// # }
/// ```
#[derive(Clone)]
pub struct PathControl {
    inner: Arc<Inner>,
}

struct Inner {
    kind: PathKind,
    params: watch::Sender<PathParams>,
    stats: Mutex<PathStats>,
    resets: broadcast::Sender<()>,
}

impl PathControl {
    /// A path of `kind` starting with `params`.
    pub fn new(kind: PathKind, params: PathParams) -> PathControl {
        let (params, _) = watch::channel(params);
        let (resets, _) = broadcast::channel(16);
        PathControl {
            inner: Arc::new(Inner {
                kind,
                params,
                stats: Mutex::new(PathStats::default()),
                resets,
            }),
        }
    }

    /// The emulator kind.
    pub fn kind(&self) -> PathKind {
        self.inner.kind
    }

    /// The current parameters.
    pub fn params(&self) -> PathParams {
        self.inner.params.borrow().clone()
    }

    /// Follows parameter changes.
    pub fn subscribe(&self) -> watch::Receiver<PathParams> {
        self.inner.params.subscribe()
    }

    /// Follows `reset` commands.
    pub fn resets(&self) -> broadcast::Receiver<()> {
        self.inner.resets.subscribe()
    }

    /// Replaces every parameter at once.
    pub fn set_params(&self, p: PathParams) {
        self.inner.params.send_replace(p);
    }

    /// The counters so far.
    pub fn stats(&self) -> PathStats {
        *self.lock_stats()
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, PathStats> {
        // A panicking task cannot leave counters half-updated in a way that
        // matters: keep using them.
        self.inner
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds counter deltas from one task.
    pub(crate) fn add_stats(&self, f: impl FnOnce(&mut PathStats)) {
        f(&mut self.lock_stats());
    }

    /// Adds one link's counters since `last` (its previous report) to the
    /// path's totals for direction `up` (or down).
    pub(crate) fn report_link(&self, up: bool, now: LinkStats, last: &mut LinkStats) {
        if now == *last {
            return;
        }
        let prev = *last;
        self.add_stats(|s| {
            let t = if up { &mut s.up } else { &mut s.down };
            t.items_in += now.items_in - prev.items_in;
            t.bytes_in += now.bytes_in - prev.bytes_in;
            t.items_out += now.items_out - prev.items_out;
            t.bytes_out += now.bytes_out - prev.bytes_out;
            t.dropped_full += now.dropped_full - prev.dropped_full;
            t.dropped_loss += now.dropped_loss - prev.dropped_loss;
            t.dropped_blackhole += now.dropped_blackhole - prev.dropped_blackhole;
            t.max_queued = t.max_queued.max(now.max_queued);
        });
        *last = now;
    }

    /// Parses and runs one command line; returns the reply (`ok`, the
    /// parameters, or the counters as JSON).
    pub fn apply(&self, line: &str) -> Result<String, CommandError> {
        let cmd: Command = line.parse()?;
        self.run(&cmd)
    }

    /// Runs one command; returns the reply.
    pub fn run(&self, cmd: &Command) -> Result<String, CommandError> {
        match (self.inner.kind, cmd) {
            (PathKind::Forwarder, Command::Set(_, Setting::Loss(p))) if *p > 0.0 => {
                return Err(CommandError::Unsupported(
                    "loss: a TCP forwarder cannot lose bytes of a stream (use the TUN bridge)",
                ))
            }
            (PathKind::Tun, Command::Reset) => {
                return Err(CommandError::Unsupported(
                    "reset: the TUN bridge carries packets, not connections (use blackhole drop)",
                ))
            }
            _ => {}
        }
        match cmd {
            Command::Show => Ok(self.params().describe()),
            Command::Stats => Ok(serde_json::to_string(&self.stats()).unwrap_or_default()),
            Command::Reset => {
                let n = self.inner.resets.send(()).unwrap_or(0);
                Ok(format!("ok (reset sent to {n} connections)"))
            }
            c => {
                let mut err = None;
                self.inner.params.send_modify(|p| {
                    if let Err(e) = p.apply(c) {
                        err = Some(e);
                    }
                });
                match err {
                    Some(e) => Err(e),
                    None => Ok("ok".into()),
                }
            }
        }
    }
}
