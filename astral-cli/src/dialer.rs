//! `connect`'s streams: dials `--streams N` streams spread over the peer's
//! addresses, starts as soon as one is up (the others are retried in the
//! background), and redials a stream that dies unless it was closed on
//! purpose (`ctl close`, `ctl drain`). Works alike for TCP, Unix sockets
//! and SOCKS5, since the tool dials them all itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use astral_tokio::Node;

use crate::addr::Target;
use crate::error::{err, AnyError};
use crate::limited;
use crate::logging::Noisy;
use crate::registry::Registry;
use crate::transport;

/// Redial backoff: first retry, and the cap it doubles up to.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps `connect`'s streams up.
pub struct Dialer {
    node: Node,
    reg: Arc<Registry>,
    targets: Arc<Vec<Target>>,
    socks5: Option<String>,
    stopped: Arc<AtomicBool>,
}

impl Dialer {
    /// A dialer for `targets` (all of one peer).
    pub fn new(
        node: &Node,
        reg: &Arc<Registry>,
        targets: Vec<Target>,
        socks5: Option<String>,
    ) -> Dialer {
        Dialer {
            node: node.clone(),
            reg: reg.clone(),
            targets: Arc::new(targets),
            socks5,
            stopped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Dials `n` streams, target `i % len` for the i-th, one after another.
    /// Fails only if none came up; the ones that failed are retried in the
    /// background, and every stream is redialed if it dies.
    ///
    /// With a `query`, the first stream that comes up opens its session
    /// with the handshake ([`transport::dial_opening`]: one round trip less
    /// than opening it after the dial), and the answer is returned.
    pub async fn start(
        &self,
        n: usize,
        query: Option<&str>,
    ) -> Result<Option<transport::Opened>, AnyError> {
        let mut up = 0;
        let mut first_error = None;
        let mut failed = Vec::new();
        let mut opened = None;
        for i in 0..n {
            let t = i % self.targets.len();
            let q = if opened.is_none() { query } else { None };
            match transport::dial_opening(
                &self.node,
                &self.reg,
                &self.targets[t],
                t,
                self.socks5.as_deref(),
                q,
            )
            .await
            {
                Ok((_, o)) => {
                    up += 1;
                    opened = opened.or(o);
                }
                Err(e) => {
                    if up > 0 || i + 1 < n {
                        tracing::warn!("{e}");
                    }
                    first_error.get_or_insert(e);
                    failed.push(t);
                }
            }
        }
        if up == 0 {
            return Err(first_error.unwrap_or_else(|| err("no stream could be opened")));
        }
        if !failed.is_empty() {
            tracing::warn!(
                "{up} of {n} streams up; retrying the other {} in the background",
                failed.len()
            );
        }
        self.follow();
        for t in failed {
            self.redial(t);
        }
        Ok(opened)
    }

    /// Stops redialing (before the node shuts down).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Redials targets whose streams die, unless retired on purpose (the
    /// registry's event follower calls back).
    fn follow(&self) {
        let me = self.clone_handle();
        self.reg.on_redial(Box::new(move |t| {
            if !me.stopped.load(Ordering::Relaxed) {
                me.redial(t);
            }
        }));
    }

    fn clone_handle(&self) -> Dialer {
        Dialer {
            node: self.node.clone(),
            reg: self.reg.clone(),
            targets: self.targets.clone(),
            socks5: self.socks5.clone(),
            stopped: self.stopped.clone(),
        }
    }

    /// Dials target `t` again with backoff until a stream is up or the
    /// dialer stops.
    fn redial(&self, t: usize) {
        let me = self.clone_handle();
        tokio::spawn(async move {
            let mut delay = BACKOFF_MIN;
            loop {
                tokio::time::sleep(delay).await;
                if me.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let target = &me.targets[t];
                match transport::dial(&me.node, &me.reg, target, t, me.socks5.as_deref()).await {
                    Ok(_) => return,
                    Err(e) => {
                        limited!(
                            Noisy::Stream,
                            info,
                            "redialing {target}: {e} (next try in {delay:?})"
                        );
                    }
                }
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        });
    }
}
