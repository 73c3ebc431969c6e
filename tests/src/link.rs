//! A simulated transport between two nodes: a stream handle at each end
//! and one [`Netem`] per direction.

use astral_core::{StreamId, Timestamp};

use crate::netem::{Direction, LinkChange, LinkConfig, Netem};

/// A simulated transport between two nodes: one stream at each end.
pub struct Link {
    /// Dialing node.
    pub a: usize,
    /// Accepting node.
    pub b: usize,
    /// Stream handle at `a`.
    pub sa: StreamId,
    /// Stream handle at `b`.
    pub sb: StreamId,
    /// Properties the link was created with (see [`Link::ab`] and
    /// [`Link::ba`] for the current ones).
    pub config: LinkConfig,
    /// False once killed, or once a close reached the other end.
    pub alive: bool,
    /// When the link was created.
    pub created: Timestamp,
    /// Dialer → acceptor.
    pub ab: Netem,
    /// Acceptor → dialer.
    pub ba: Netem,
    /// The end whose process restarted ([`Sim::restart`](crate::Sim::restart)):
    /// the new process at that node knows nothing of this link (its stream
    /// handle there may name one of the new process's streams).
    pub orphaned: Option<usize>,
}

impl Link {
    pub(crate) fn new(
        a: usize,
        b: usize,
        sa: StreamId,
        sb: StreamId,
        config: LinkConfig,
        seed: u64,
        now: Timestamp,
    ) -> Link {
        let ab = Netem::new(&config, Direction::AtoB, seed, now);
        let ba = Netem::new(&config, Direction::BtoA, seed ^ 0x5555_5555_5555_5555, now);
        Link {
            a,
            b,
            sa,
            sb,
            config,
            alive: true,
            created: now,
            ab,
            ba,
            orphaned: None,
        }
    }

    /// The stream handle of this link at `node`, if it is one of its ends.
    pub fn stream_at(&self, node: usize) -> Option<StreamId> {
        if self.orphaned == Some(node) {
            None
        } else if node == self.a {
            Some(self.sa)
        } else if node == self.b {
            Some(self.sb)
        } else {
            None
        }
    }

    /// Whether the link joins `x` and `y` (either way round).
    pub fn joins(&self, x: usize, y: usize) -> bool {
        (self.a == x && self.b == y) || (self.a == y && self.b == x)
    }

    /// Path from `node` outwards (`None` if `node` is not an end).
    pub(crate) fn outbound(&mut self, node: usize) -> Option<&mut Netem> {
        if node == self.a {
            Some(&mut self.ab)
        } else if node == self.b {
            Some(&mut self.ba)
        } else {
            None
        }
    }

    /// Applies a change to both directions now.
    pub fn apply(&mut self, now: Timestamp, change: &LinkChange) {
        self.ab.apply(now, change);
        self.ba.apply(now, change);
    }

    /// Largest round trip the link can show now (latency and jitter of
    /// both directions).
    pub fn max_rtt(&self) -> std::time::Duration {
        self.ab.current_latency()
            + self.ab.current_jitter()
            + self.ba.current_latency()
            + self.ba.current_jitter()
    }

    /// Whether either direction is silent (partition or half-open path).
    pub fn is_silent(&self) -> bool {
        self.ab.is_silent() || self.ba.is_silent()
    }

    /// Next time either direction has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.ab.poll_timeout(), self.ba.poll_timeout()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }
}
