//! Configuration: timers, windows and the limits of design §10.

use std::time::Duration;

/// Engine configuration. Every limit has a default suited to a production
/// node; tests and benchmarks tighten or relax them.
///
/// ```
/// use astral_core::Config;
/// let config = Config { recv_window: 1 << 20, ..Config::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// A stream whose handshake has not completed after this long is closed
    /// (counted from its arrival, or for an inbound stream that had to wait
    /// for a handshake slot, from the moment it got one).
    pub handshake_timeout: Duration,
    /// The shorter deadline of an inbound handshake while others wait for a
    /// slot (admission under pressure, `docs/SECURITY.md`): a stalled
    /// handshake gives its slot up after this long. Long enough for one
    /// round trip of a slow path (message 2 out, message 3 back).
    pub handshake_timeout_under_pressure: Duration,
    /// A query not answered (by the peer, or by the local application for
    /// inbound queries) after this long fails.
    pub routing_timeout: Duration,
    /// Interval between pings on an established stream.
    pub keepalive_interval: Duration,
    /// A stream from which nothing authenticated arrived for this long is
    /// declared dead.
    pub dead_timeout: Duration,
    /// A session that finds no stream to its peer for this long after losing
    /// its stream closes with [`CloseReason::PeerUnreachable`](crate::CloseReason::PeerUnreachable).
    pub recovery_timeout: Duration,
    /// Initial receive window per session and direction: the credit this
    /// node grants in the `buffer` field of Query/Response when the memory
    /// budget has room (otherwise a new session starts at
    /// `min_recv_window`). Auto-tuning grows it from there.
    pub recv_window: u32,
    /// Largest receive window auto-tuning may grow a session to. 32 MiB
    /// is 2.7 bandwidth-delay products of 1 Gbit/s at 100 ms: credit is
    /// batched (a quarter of the window) and the round trip a sender sees
    /// includes queueing, so one BDP is not enough (16 MiB reached 56 % of
    /// such a link, docs/FLOW.md).
    pub max_recv_window: u32,
    /// Window every open session keeps whatever the budget (and the room it
    /// may always hold for its own writes): what makes progress certain when
    /// the budget is exhausted. Outside the budget, so part of the fixed
    /// per-session cost (docs/FLOW.md, "What a node promises").
    pub min_recv_window: u32,
    /// Memory budget per peer: receive windows and retained plus queued
    /// send bytes above each session's `min_recv_window` floors, over all
    /// sessions with one peer.
    pub peer_memory_budget: u64,
    /// Memory budget of the node: the same, over all peers. Credit is
    /// granted and writes are taken only out of both budgets.
    pub node_memory_budget: u64,
    /// Credit is sent at once when a quarter of the window was consumed;
    /// smaller amounts are credited after this delay (like a delayed ACK),
    /// so an idle sender releases what it retained.
    pub credit_delay: Duration,
    /// Bytes an application may queue on one session beyond the peer's
    /// grant (what the peer allowed this side to send); writes beyond it, or
    /// beyond the memory budget, return `WriteError::Blocked`.
    pub send_buffer: u32,
    /// Bytes one session may put in a record before the scheduler serves
    /// the next session with data (fairness quantum).
    pub quantum: usize,
    /// Open sessions (either direction) with one peer: a quarter of
    /// `max_sessions` by default, so one identity cannot take them all.
    pub max_sessions_per_peer: usize,
    /// Open sessions over all peers (node-wide), counted from the query
    /// (outbound) or its arrival (inbound) to the close. Each may hold up to
    /// its windows' floor in memory whatever the budget, so this bounds
    /// the node's memory beyond the flow-control budget
    /// (`docs/SECURITY.md`, "What a node holds at most").
    pub max_sessions: usize,
    /// Inbound queries waiting for the application to accept or reject,
    /// over all peers (node-wide). Further queries are refused with
    /// [`codes::BUSY`](crate::codes::BUSY).
    pub max_pending_queries: usize,
    /// Longest query string accepted (bytes of UTF-8).
    pub max_query_len: usize,
    /// Established or handshaking streams with one peer.
    pub max_streams_per_peer: usize,
    /// Inbound handshakes served at once over the node; more inbound
    /// transports wait for a slot (admission, `docs/SECURITY.md`).
    pub max_handshaking_streams: usize,
    /// Inbound handshakes served at once from one source address; more
    /// from it wait.
    pub max_handshakes_per_address: usize,
    /// Inbound handshakes served at once from one network (IPv4 /24, IPv6
    /// /64); more from it wait.
    pub max_handshakes_per_prefix: usize,
    /// Streams over all peers (node-wide): established, handshaking and
    /// waiting for a handshake slot, i.e. every transport the driver holds
    /// for the core. When all are taken, a new inbound transport evicts the
    /// stalest handshake of the busiest source instead of being refused.
    pub max_streams: usize,
    /// Memory per stream: control frames (pongs, resets, markers, responses)
    /// one stream may have queued for the driver. Output is otherwise built
    /// on demand, and input holds at most one partial record, so this bounds
    /// a stream's memory against a peer that floods requests while the
    /// driver does not drain output. Exceeding it closes the stream.
    pub max_control_queue: usize,
    /// Resets sent for frames naming unknown sessions, per second per stream.
    pub unknown_session_resets_per_sec: u32,
    /// Automatic migration: another stream's smoothed RTT must be this
    /// fraction below the current stream's path delay (0.3: at most 70 % of
    /// it) to attract its sessions...
    pub migrate_rtt_gain: f64,
    /// ...and stay that much faster for this long (hysteresis).
    pub migrate_sustain: Duration,
    /// A session the policy, the application or the peer moved (or that
    /// recovered) is left where it is for this long: identical paths can
    /// never trade it faster than this, whatever the measurements say.
    pub migrate_cooldown: Duration,
    /// How often the automatic policy is evaluated. While a peer has two
    /// usable streams or more and a session, each evaluation also pings
    /// every stream that has no ping in flight, so idle candidates are
    /// measured too.
    pub policy_interval: Duration,
    /// Shortest window of the path delay (a windowed minimum of RTT
    /// samples; long paths use at least 8 round trips): how long a path
    /// that got slower keeps its old, lower delay.
    pub path_window: Duration,
    /// Offer AES-256-GCM records in the handshake (used when both ends
    /// offer it); otherwise records use ChaCha20-Poly1305. An explicit input,
    /// off by default, so that the same configuration gives the same bytes on
    /// every machine: drivers turn it on where the CPU has AES instructions
    /// ([`crate::noise::hardware_aes`]).
    pub offer_aes_gcm: bool,
    /// Turn automatic RTT-driven migration on or off (manual migration,
    /// drain and recovery always work).
    pub auto_migrate: bool,
    /// For the drivers (the core does not read it): the kernel's bound on
    /// bytes written to a TCP socket and not yet sent (`TCP_NOTSENT_LOWAT`,
    /// Linux only; ignored elsewhere), set on every dialed and accepted
    /// stream. A shallow send buffer keeps bytes in the engine, where
    /// pings, credits and markers go out ahead of bulk data, so a stream's
    /// RTT reflects its path rather than our own backlog, and a migration
    /// leaves little behind on the old stream. `None` leaves the kernel's
    /// default (unbounded: the whole send buffer).
    pub tcp_notsent_lowat: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            handshake_timeout_under_pressure: Duration::from_secs(3),
            routing_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            dead_timeout: Duration::from_secs(20),
            recovery_timeout: Duration::from_secs(30),
            recv_window: 64 * 1024,
            max_recv_window: 32 * 1024 * 1024,
            min_recv_window: 16 * 1024,
            peer_memory_budget: 64 * 1024 * 1024,
            node_memory_budget: 256 * 1024 * 1024,
            send_buffer: 64 * 1024,
            credit_delay: Duration::from_millis(40),
            quantum: 16 * 1024,
            max_sessions_per_peer: 1024,
            max_sessions: 4096,
            max_pending_queries: 1024,
            max_query_len: 4096,
            max_streams_per_peer: 16,
            max_handshaking_streams: 256,
            max_handshakes_per_address: 16,
            max_handshakes_per_prefix: 64,
            max_streams: 4096,
            max_control_queue: 65_536,
            unknown_session_resets_per_sec: 64,
            migrate_rtt_gain: 0.3,
            migrate_sustain: Duration::from_secs(1),
            migrate_cooldown: Duration::from_secs(10),
            policy_interval: Duration::from_millis(250),
            path_window: Duration::from_secs(2),
            auto_migrate: true,
            offer_aes_gcm: false,
            tcp_notsent_lowat: Some(128 * 1024),
        }
    }
}

/// A configuration value that cannot work (the text names it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub &'static str);

impl Config {
    /// The window floor in force: `min_recv_window`, never above the initial
    /// window (a configuration with a small `recv_window` keeps it fixed at
    /// the bottom).
    pub fn window_floor(&self) -> u32 {
        self.min_recv_window.min(self.recv_window)
    }

    /// The window cap in force: `max_recv_window`, never below the initial
    /// window (`max_recv_window = recv_window` turns auto-tuning off).
    pub fn window_cap(&self) -> u32 {
        self.max_recv_window.max(self.recv_window)
    }

    /// Checks the relations between values that the engine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.recv_window == 0 {
            return Err(ConfigError("recv_window must be > 0"));
        }
        if self.min_recv_window == 0 {
            return Err(ConfigError("min_recv_window must be > 0"));
        }
        if self.peer_memory_budget > self.node_memory_budget {
            return Err(ConfigError(
                "peer_memory_budget cannot exceed node_memory_budget",
            ));
        }
        if self.send_buffer == 0 {
            return Err(ConfigError("send_buffer must be > 0"));
        }
        if self.quantum == 0 {
            return Err(ConfigError("quantum must be > 0"));
        }
        if self.dead_timeout <= self.keepalive_interval {
            return Err(ConfigError("dead_timeout must exceed keepalive_interval"));
        }
        if self.max_query_len > u16::MAX as usize {
            return Err(ConfigError("max_query_len cannot exceed 65535"));
        }
        if self.max_control_queue < 16 {
            return Err(ConfigError("max_control_queue must allow a few frames"));
        }
        if self.max_streams_per_peer == 0 || self.max_streams == 0 {
            return Err(ConfigError("stream limits must allow one stream"));
        }
        if self.max_sessions_per_peer == 0 || self.max_sessions == 0 {
            return Err(ConfigError("session limits must allow one session"));
        }
        if self.max_handshaking_streams == 0
            || self.max_handshakes_per_address == 0
            || self.max_handshakes_per_prefix == 0
        {
            return Err(ConfigError("handshake limits must allow one handshake"));
        }
        if self.handshake_timeout.is_zero() || self.handshake_timeout_under_pressure.is_zero() {
            return Err(ConfigError("handshake timeouts must be > 0"));
        }
        if self.policy_interval.is_zero() {
            return Err(ConfigError("policy_interval must be > 0"));
        }
        if self.path_window.is_zero() {
            return Err(ConfigError("path_window must be > 0"));
        }
        if !(0.0..1.0).contains(&self.migrate_rtt_gain) {
            return Err(ConfigError("migrate_rtt_gain must be in [0, 1)"));
        }
        Ok(())
    }
}
