//! The rows `ctl` shows, with the JSON keys documented in docs/CLI.md:
//! built from the node's snapshots and the tool's registry by the control
//! socket, printed as tables or JSON by `astral ctl`.
//!
//! Keys are stable: new keys may be added, existing ones keep their name
//! and meaning. "None" is `null` in JSON and `-` in tables, never a
//! sentinel number.

use astral_tokio::astral_core::{Role, StreamState};
use astral_tokio::{Config, Node, SessionInfo, SessionState, StreamInfo};
use serde::{Deserialize, Serialize};

use crate::registry::Registry;

/// One stream (`ctl streams`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamRow {
    /// Short id, e.g. `t2`.
    pub id: String,
    /// The library's id (long form, also accepted by ctl commands).
    pub handle: String,
    /// The peer's full hex id (`null` while an inbound handshake runs).
    pub peer: Option<String>,
    /// `out` (we dialed) or `in` (we accepted).
    pub direction: String,
    /// `tcp`, `unix`, `socks5`, or `null` if unknown.
    pub transport: Option<String>,
    /// The other end's address as the operator knows it.
    pub remote: Option<String>,
    /// This end's address (TCP), `null` if none.
    pub local: Option<String>,
    /// `handshaking`, `established`, `suspect` (silent: its probe went
    /// unanswered), `draining` or `closed`.
    pub state: String,
    /// Smoothed round-trip time, `null` before the first sample.
    pub rtt_ms: Option<f64>,
    /// Smallest round-trip time seen.
    pub rtt_min_ms: Option<f64>,
    /// Sessions sending on this stream.
    pub sessions: usize,
    /// Ciphertext bytes received.
    pub bytes_in: u64,
    /// Ciphertext bytes sent.
    pub bytes_out: u64,
}

/// One session (`ctl sessions`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRow {
    /// Short id, e.g. `s3`.
    pub id: String,
    /// The library's id (long form).
    pub handle: String,
    /// The peer's full hex id.
    pub peer: String,
    /// `out` (we sent the query) or `in`.
    pub direction: String,
    /// The query (as sent; tables escape it), `null` if unknown.
    pub query: Option<String>,
    /// `routing`, `pending`, `open`, `migrating`, `recovering` or `closed`.
    pub state: String,
    /// Short id of the stream this side sends on (`null`: none now).
    pub stream: Option<String>,
    /// Short id of the stream the peer's traffic last came on.
    pub recv_stream: Option<String>,
    /// Bytes the application wrote.
    pub bytes_written: u64,
    /// Of those, bytes the peer has acknowledged (consumed).
    pub bytes_acked: u64,
    /// Bytes the application read.
    pub bytes_read: u64,
    /// Bytes sent but not yet acknowledged.
    pub bytes_in_flight: u64,
    /// Bytes received and waiting for the application to read.
    pub bytes_buffered: u64,
    /// Bytes sent again after a recovery.
    pub bytes_retransmitted: u64,
    /// Credit window the peer granted (bytes).
    pub send_window: u64,
    /// Receive window this side grants (bytes).
    pub recv_window: u64,
    /// Completed migrations.
    pub migrations: u32,
    /// Completed recoveries.
    pub recoveries: u32,
    /// This side pinned it (`ctl pin`, `ctl migrate`): automatic placement
    /// leaves it where it is.
    #[serde(default)]
    pub pinned: bool,
    /// The peer pinned it.
    #[serde(default)]
    pub peer_pinned: bool,
}

/// One peer (`ctl peers`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerRow {
    /// Short id, e.g. `p1`.
    pub id: String,
    /// The peer's full hex id.
    pub peer: String,
    /// Established streams.
    pub streams: usize,
    /// Live sessions.
    pub sessions: usize,
    /// Lowest smoothed RTT over its streams.
    pub rtt_ms: Option<f64>,
    /// Ciphertext bytes received over all its streams.
    pub bytes_in: u64,
    /// Ciphertext bytes sent over all its streams.
    pub bytes_out: u64,
    /// Remote addresses of its streams.
    pub remotes: Vec<String>,
}

/// The node itself (`ctl node`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRow {
    /// This node's full hex id.
    pub id: String,
    /// `listen` or `connect`.
    pub mode: String,
    /// The tool's version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// Addresses it listens on.
    pub listen: Vec<String>,
    /// Established streams, live sessions, linked peers.
    pub streams: usize,
    /// Live sessions.
    pub sessions: usize,
    /// Peers with at least one established stream.
    pub peers: usize,
    /// Peers the node keeps any state for (streams, sessions, recently
    /// closed sessions); a dialer refused by `--allow` never counts.
    #[serde(default)]
    pub known_peers: usize,
    /// Inbound handshake admission counters.
    #[serde(default)]
    pub admission: AdmissionRow,
    /// Timers and windows in force.
    pub config: ConfigRow,
}

/// Inbound handshake admission (`docs/SECURITY.md`): now and since start.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdmissionRow {
    /// Inbound handshakes being served now.
    pub active: usize,
    /// Inbound transports waiting for a handshake slot now.
    pub waiting: usize,
    /// Inbound transports given a slot (at once or after waiting).
    pub admitted: u64,
    /// Of those, how many waited.
    pub waited: u64,
    /// Handshakes evicted to make room for a newcomer.
    pub evicted: u64,
    /// Handshakes that ran out of time (either deadline).
    pub timed_out: u64,
    /// Of those, how many ran out of the shorter deadline under pressure.
    pub timed_out_under_pressure: u64,
    /// Transports refused outright (no slot could be freed).
    pub refused: u64,
    /// Handshakes completed by an identity the accept policy refused.
    pub not_allowed: u64,
    /// Inbound handshakes completed and accepted.
    pub completed: u64,
}

/// The settings `listen`/`connect` flags change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigRow {
    /// `--keepalive`.
    pub keepalive_ms: u64,
    /// `--dead-timeout`.
    pub dead_timeout_ms: u64,
    /// `--recovery-timeout`.
    pub recovery_timeout_ms: u64,
    /// `--recv-window`.
    pub recv_window: u64,
    /// `--send-buffer`.
    pub send_buffer: u64,
    /// `--auto-migrate`.
    pub auto_migrate: bool,
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn stream_state(s: &StreamInfo) -> &'static str {
    match s.state {
        StreamState::Handshaking => "handshaking",
        StreamState::Established if s.draining => "draining",
        // Its path went silent: probed and unanswered (docs/PROTOCOL.md,
        // "Suspect streams"); its sessions moved if they could.
        StreamState::Established if s.suspect => "suspect",
        StreamState::Established => "established",
        StreamState::Closed => "closed",
        _ => "other",
    }
}

fn session_state(s: SessionState) -> &'static str {
    // The core's own names: routing, pending, open, migrating, recovering,
    // closed.
    s.name()
}

/// Stream rows in short-id order.
pub fn streams(node: &Node, reg: &Registry) -> Vec<StreamRow> {
    let mut rows: Vec<(u64, StreamRow)> = node
        .streams()
        .into_iter()
        .filter(|s| s.state != StreamState::Closed)
        .map(|s| {
            let id = reg.stream(s.id);
            let meta = reg.stream_meta(s.id);
            let sampled = s.rtt.samples > 0;
            let row = StreamRow {
                handle: s.id.to_string(),
                peer: s.peer.map(|p| p.to_string()),
                direction: if s.initiator { "out" } else { "in" }.into(),
                transport: meta.as_ref().map(|m| m.transport.to_string()),
                local: meta.as_ref().and_then(|m| m.local.clone()),
                remote: meta.map(|m| m.remote),
                state: stream_state(&s).into(),
                rtt_ms: sampled.then(|| ms(s.rtt.srtt)),
                rtt_min_ms: sampled.then(|| ms(s.rtt.min)),
                sessions: s.sessions,
                bytes_in: s.stats.bytes_in,
                bytes_out: s.stats.bytes_out,
                id,
            };
            (order(&row.id), row)
        })
        .collect();
    rows.sort_by_key(|(k, _)| *k);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Numeric part of a short id, for sorting.
fn order(short: &str) -> u64 {
    short[1..].parse().unwrap_or(u64::MAX)
}

/// Session rows in short-id order.
pub fn sessions(node: &Node, reg: &Registry, config: &Config) -> Vec<SessionRow> {
    let mut rows: Vec<(u64, SessionRow)> = node
        .sessions()
        .into_iter()
        .map(|s| {
            let mut row = session_row(&s, reg, config);
            if let Some((local, peer)) = node.session_pins(s.id) {
                row.pinned = local;
                row.peer_pinned = peer;
            }
            (order(&row.id), row)
        })
        .collect();
    rows.sort_by_key(|(k, _)| *k);
    rows.into_iter().map(|(_, r)| r).collect()
}

fn session_row(s: &SessionInfo, reg: &Registry, config: &Config) -> SessionRow {
    SessionRow {
        id: reg.session(s.id),
        handle: s.id.to_string(),
        peer: s.peer.to_string(),
        direction: match s.role {
            Role::Querier => "out",
            Role::Responder => "in",
        }
        .into(),
        query: reg.session_meta(s.id).map(|m| m.query),
        state: session_state(s.state).into(),
        stream: s.send_stream.map(|t| reg.stream(t)),
        recv_stream: s.recv_stream.map(|t| reg.stream(t)),
        bytes_written: s.stats.bytes_written,
        bytes_acked: s.stats.bytes_acked,
        bytes_read: s.stats.bytes_read,
        bytes_in_flight: s.stats.bytes_in_flight,
        bytes_buffered: s.stats.bytes_buffered,
        bytes_retransmitted: s.stats.bytes_retransmitted,
        send_window: u64::from(s.stats.peer_window),
        recv_window: u64::from(config.recv_window),
        migrations: s.stats.migrations,
        recoveries: s.stats.recoveries,
        pinned: false,
        peer_pinned: false,
    }
}

/// Peer rows (peers with a stream or a session), in short-id order.
pub fn peers(node: &Node, reg: &Registry) -> Vec<PeerRow> {
    let streams = node.streams();
    let sessions = node.sessions();
    let mut ids: Vec<astral_tokio::NodeId> = streams
        .iter()
        .filter(|s| s.state == StreamState::Established)
        .filter_map(|s| s.peer)
        .chain(sessions.iter().map(|s| s.peer))
        .collect();
    ids.sort();
    ids.dedup();
    let mut rows: Vec<(u64, PeerRow)> = ids
        .into_iter()
        .map(|p| {
            let mine: Vec<&StreamInfo> = streams
                .iter()
                .filter(|s| s.peer == Some(p) && s.state == StreamState::Established)
                .collect();
            let rtt = mine
                .iter()
                .filter(|s| s.rtt.samples > 0)
                .map(|s| s.rtt.srtt)
                .min();
            let row = PeerRow {
                id: reg.peer(p),
                peer: p.to_string(),
                streams: mine.len(),
                sessions: sessions.iter().filter(|s| s.peer == p).count(),
                rtt_ms: rtt.map(ms),
                bytes_in: mine.iter().map(|s| s.stats.bytes_in).sum(),
                bytes_out: mine.iter().map(|s| s.stats.bytes_out).sum(),
                remotes: mine
                    .iter()
                    .filter_map(|s| reg.stream_meta(s.id).map(|m| m.remote))
                    .collect(),
            };
            (order(&row.id), row)
        })
        .collect();
    rows.sort_by_key(|(k, _)| *k);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The node row.
pub fn node(node: &Node, reg: &Registry, config: &Config, mode: &str) -> NodeRow {
    let streams = node.streams();
    let established = streams
        .iter()
        .filter(|s| s.state == StreamState::Established)
        .count();
    let mut peers: Vec<_> = streams
        .iter()
        .filter(|s| s.state == StreamState::Established)
        .filter_map(|s| s.peer)
        .collect();
    peers.sort();
    peers.dedup();
    NodeRow {
        id: node.id().to_string(),
        mode: mode.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: (reg.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        listen: reg.listen(),
        streams: established,
        sessions: node.sessions().len(),
        peers: peers.len(),
        known_peers: node.peer_count(),
        admission: {
            let a = node.admission_stats();
            AdmissionRow {
                active: a.active,
                waiting: a.waiting,
                admitted: a.admitted,
                waited: a.waited,
                evicted: a.evicted,
                timed_out: a.timed_out,
                timed_out_under_pressure: a.timed_out_under_pressure,
                refused: a.refused,
                not_allowed: a.not_allowed,
                completed: a.completed,
            }
        },
        config: ConfigRow {
            keepalive_ms: config.keepalive_interval.as_millis() as u64,
            dead_timeout_ms: config.dead_timeout.as_millis() as u64,
            recovery_timeout_ms: config.recovery_timeout.as_millis() as u64,
            recv_window: u64::from(config.recv_window),
            send_buffer: u64::from(config.send_buffer),
            auto_migrate: config.auto_migrate,
        },
    }
}
