//! What the tool knows about its node beyond the core's snapshots: short
//! ids an operator can type (`t1` streams, `s1` sessions, `p1` peers), the
//! transport and remote address of each stream, the query of each session,
//! and which streams must not be redialed. Also the task that follows the
//! node's events, keeps these tables and logs stream and session life.
//!
//! Short ids count up from 1 in the order the tool first saw the stream,
//! session or peer, and are never reused while the process lives; the
//! long form (the library's `Display` of the id) is accepted too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use astral_tokio::{CloseReason, Event, Node, NodeId, SessionId, StreamId};
use tokio::sync::broadcast::error::RecvError;

use crate::limited;
use crate::logging::{escape, Noisy};

/// How a stream reached us.
#[derive(Clone, Debug)]
pub struct StreamMeta {
    /// `tcp`, `unix` or `socks5`.
    pub transport: &'static str,
    /// The other end as the operator knows it (`1.2.3.4:5`, `unix:/p`,
    /// `host.onion:80 via 127.0.0.1:9050`).
    pub remote: String,
    /// This end's address, where there is one (the listening address of an
    /// accepted TCP stream, the source address of a dialed one).
    pub local: Option<String>,
    /// Index of the dial target it came from (`connect`), for redials.
    pub target: Option<usize>,
    /// Closed or drained on purpose: never redialed.
    pub retired: bool,
}

/// What the tool knows about a session.
#[derive(Clone, Debug)]
pub struct SessionMeta {
    /// The query that opened it (peer-controlled for inbound sessions:
    /// escape before logging or printing).
    pub query: String,
}

#[derive(Default)]
struct Tables {
    stream_ids: HashMap<StreamId, u32>,
    streams: HashMap<StreamId, StreamMeta>,
    next_stream: u32,
    session_ids: HashMap<SessionId, u32>,
    sessions: HashMap<SessionId, SessionMeta>,
    next_session: u32,
    peer_ids: HashMap<NodeId, u32>,
    next_peer: u32,
    listen: Vec<String>,
}

/// Peers whose short ids are kept after they unlink.
const PEER_IDS_MAX: usize = 4096;

/// Called with the dial target of a stream that died (not retired).
pub type RedialHook = Box<dyn Fn(usize) + Send + Sync>;

/// The tool's tables, shared by the control socket, the dialer and the
/// event follower.
pub struct Registry {
    t: Mutex<Tables>,
    /// When the node started (for `ctl node`).
    pub started: Instant,
    redial: std::sync::OnceLock<RedialHook>,
}

/// Why an id typed by the operator names nothing.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing has that id.
    Unknown,
    /// A peer prefix that several peers share.
    Ambiguous,
}

impl Registry {
    /// Empty tables.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            t: Mutex::new(Tables::default()),
            started: Instant::now(),
            redial: std::sync::OnceLock::new(),
        })
    }

    /// Sets what happens when a dialed stream dies (once; `connect`'s
    /// dialer). The event follower calls it, so it sees every stream's
    /// metadata before forgetting it.
    pub fn on_redial(&self, hook: RedialHook) {
        let _ = self.redial.set(hook);
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.t.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream's short id (`t7`), assigned on first sight.
    pub fn stream(&self, id: StreamId) -> String {
        let mut g = self.lock();
        let t = &mut *g;
        format!("t{}", short(&mut t.stream_ids, &mut t.next_stream, id))
    }

    /// The session's short id (`s7`), assigned on first sight.
    pub fn session(&self, id: SessionId) -> String {
        let mut g = self.lock();
        let t = &mut *g;
        format!("s{}", short(&mut t.session_ids, &mut t.next_session, id))
    }

    /// The peer's short id (`p7`), assigned on first sight.
    pub fn peer(&self, id: NodeId) -> String {
        let mut g = self.lock();
        let t = &mut *g;
        format!("p{}", short(&mut t.peer_ids, &mut t.next_peer, id))
    }

    /// Records how a stream was made (call once it is up).
    pub fn add_stream(&self, id: StreamId, meta: StreamMeta) -> String {
        let mut g = self.lock();
        let t = &mut *g;
        let n = short(&mut t.stream_ids, &mut t.next_stream, id);
        t.streams.insert(id, meta);
        format!("t{n}")
    }

    /// How a stream was made, if the tool made or accepted it.
    pub fn stream_meta(&self, id: StreamId) -> Option<StreamMeta> {
        self.lock().streams.get(&id).cloned()
    }

    /// Marks a stream as closed on purpose (no redial).
    pub fn retire(&self, id: StreamId) {
        if let Some(m) = self.lock().streams.get_mut(&id) {
            m.retired = true;
        }
    }

    /// Records a session's query.
    pub fn add_session(&self, id: SessionId, query: &str) -> String {
        let mut g = self.lock();
        let t = &mut *g;
        let n = short(&mut t.session_ids, &mut t.next_session, id);
        t.sessions.insert(
            id,
            SessionMeta {
                query: query.to_string(),
            },
        );
        format!("s{n}")
    }

    /// What the tool knows about a session.
    pub fn session_meta(&self, id: SessionId) -> Option<SessionMeta> {
        self.lock().sessions.get(&id).cloned()
    }

    /// Notes an address the node listens on (for `ctl node`).
    pub fn add_listen(&self, addr: String) {
        self.lock().listen.push(addr);
    }

    /// The addresses the node listens on.
    pub fn listen(&self) -> Vec<String> {
        self.lock().listen.clone()
    }

    /// The stream an operator named: `t7` or the long form.
    pub fn find_stream(&self, name: &str, live: &[StreamId]) -> Result<StreamId, Lookup> {
        let t = self.lock();
        find(&t.stream_ids, 't', name, live)
    }

    /// The session an operator named: `s7` or the long form.
    pub fn find_session(&self, name: &str, live: &[SessionId]) -> Result<SessionId, Lookup> {
        let t = self.lock();
        find(&t.session_ids, 's', name, live)
    }

    /// The peer an operator named: `p7`, or a prefix of its hex id (at
    /// least 4 digits, unique among `live`).
    pub fn find_peer(&self, name: &str, live: &[NodeId]) -> Result<NodeId, Lookup> {
        let t = self.lock();
        if let Ok(id) = find(&t.peer_ids, 'p', name, live) {
            return Ok(id);
        }
        let name = name.to_ascii_lowercase();
        if name.len() < 4 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Lookup::Unknown);
        }
        let mut hits = live.iter().filter(|p| p.to_string().starts_with(&name));
        match (hits.next(), hits.next()) {
            (Some(p), None) => Ok(*p),
            (Some(_), Some(_)) => Err(Lookup::Ambiguous),
            _ => Err(Lookup::Unknown),
        }
    }

    fn stream_down(&self, id: StreamId) -> Option<(String, Option<StreamMeta>)> {
        let mut g = self.lock();
        let t = &mut *g;
        let short = t.stream_ids.remove(&id)?;
        Some((format!("t{short}"), t.streams.remove(&id)))
    }

    fn session_closed(&self, id: SessionId) -> Option<(String, Option<SessionMeta>)> {
        let mut g = self.lock();
        let t = &mut *g;
        let short = t.session_ids.remove(&id)?;
        Some((format!("s{short}"), t.sessions.remove(&id)))
    }

    /// A peer's short id stays while the process lives, so an operator's
    /// `p3` keeps meaning the same node across reconnects; only a table
    /// grown past `PEER_IDS_MAX` (many identities come and go) forgets
    /// peers as they unlink.
    fn peer_gone(&self, id: NodeId) {
        let mut t = self.lock();
        if t.peer_ids.len() > PEER_IDS_MAX {
            t.peer_ids.remove(&id);
        }
    }

    /// Forgets streams and sessions the node no longer has (after missed
    /// events), so the tables stay bounded.
    fn sweep(&self, node: &Node) {
        let streams: std::collections::HashSet<StreamId> =
            node.streams().into_iter().map(|s| s.id).collect();
        let sessions: std::collections::HashSet<SessionId> =
            node.sessions().into_iter().map(|s| s.id).collect();
        let mut g = self.lock();
        let t = &mut *g;
        t.stream_ids.retain(|id, _| streams.contains(id));
        t.streams.retain(|id, _| streams.contains(id));
        t.session_ids.retain(|id, _| sessions.contains(id));
        t.sessions.retain(|id, _| sessions.contains(id));
    }
}

fn short<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, next: &mut u32, id: K) -> u32 {
    *map.entry(id).or_insert_with(|| {
        *next += 1;
        *next
    })
}

fn find<K: Copy + std::hash::Hash + Eq + std::fmt::Display>(
    map: &HashMap<K, u32>,
    prefix: char,
    name: &str,
    live: &[K],
) -> Result<K, Lookup> {
    if let Some(n) = name
        .strip_prefix(prefix)
        .and_then(|n| n.parse::<u32>().ok())
    {
        if let Some((id, _)) = map.iter().find(|(id, v)| **v == n && live.contains(id)) {
            return Ok(*id);
        }
        return Err(Lookup::Unknown);
    }
    // The long form: the library's own rendering of the id.
    live.iter()
        .find(|id| id.to_string() == name)
        .copied()
        .ok_or(Lookup::Unknown)
}

/// Follows the node's events for the life of the node: keeps the tables
/// and logs (rate-limited, peer strings escaped) streams going down, peers
/// linking, and sessions migrating, recovering and failing. Streams coming
/// up are logged by whoever added the transport (it knows the address).
pub fn follow(node: &Node, reg: Arc<Registry>) {
    let mut events = node.events();
    let node = node.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ev) => on_event(&reg, ev),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("missed {n} node events (log lines may be missing)");
                    reg.sweep(&node);
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

fn on_event(reg: &Registry, ev: Event) {
    match ev {
        Event::StreamDown {
            stream,
            peer,
            reason,
        } => {
            // Streams that never came up were logged by their acceptor or
            // dialer as failed handshakes.
            if let Some((short, meta)) = reg.stream_down(stream) {
                if let (Some(m), Some(hook)) = (&meta, reg.redial.get()) {
                    if let (Some(t), false) = (m.target, m.retired) {
                        hook(t);
                    }
                }
                if meta.is_none() && peer.is_none() {
                    // A handshake that failed (a table showed it): its
                    // acceptor or dialer logs it with the address.
                    return;
                }
                let peer = peer.map_or("-".into(), |p| p.short());
                let via = meta.map_or(String::new(), |m| {
                    format!(" ({} {})", m.transport, m.remote)
                });
                limited!(
                    Noisy::Stream,
                    info,
                    "stream {short} down: peer {peer}{via}: {}",
                    escape(&crate::error::describe(&reason))
                );
            }
        }
        Event::Linked(peer) => {
            let short = reg.peer(peer);
            limited!(Noisy::Stream, info, "peer {short} {} linked", peer.short());
        }
        Event::Unlinked(peer) => {
            limited!(
                Noisy::Stream,
                info,
                "peer {} unlinked: no stream left (its sessions wait for a new one until the recovery timeout)",
                peer.short()
            );
            reg.peer_gone(peer);
        }
        Event::Migrated { session, from, to } => {
            let (s, f, t) = (reg.session(session), reg.stream(from), reg.stream(to));
            limited!(Noisy::Session, info, "session {s} migrated {f} -> {t}");
        }
        Event::Recovering { session } => {
            let s = reg.session(session);
            limited!(
                Noisy::Session,
                info,
                "session {s} recovering (its stream died)"
            );
        }
        Event::Recovered {
            session,
            resent_bytes,
        } => {
            let s = reg.session(session);
            limited!(
                Noisy::Session,
                info,
                "session {s} recovered ({resent_bytes} bytes resent)"
            );
        }
        Event::SessionClosed { session, reason } => {
            if let Some((short, meta)) = reg.session_closed(session) {
                let q = meta.map_or(String::new(), |m| format!(" \"{}\"", escape(&m.query)));
                if reason == CloseReason::Graceful {
                    tracing::debug!("session {short}{q} closed gracefully");
                } else {
                    limited!(
                        Noisy::Session,
                        info,
                        "session {short}{q} ended: {}",
                        escape(&crate::error::describe(&reason))
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_count_up_and_resolve_both_forms() {
        let r = Registry::new();
        // Handles as a driver makes them (non-zero numbers).
        let t = |n| StreamId::new(n).expect("non-zero");
        let (a, b) = (t(40), t(7));
        assert_eq!(r.stream(a), "t1");
        assert_eq!(r.stream(b), "t2");
        assert_eq!(r.stream(a), "t1");
        let live = [a, b];
        assert_eq!(r.find_stream("t2", &live).unwrap(), b);
        assert_eq!(r.find_stream(&a.to_string(), &live).unwrap(), a);
        assert!(matches!(r.find_stream("t9", &live), Err(Lookup::Unknown)));
        // Not live any more: unknown, even with the right short id.
        assert!(matches!(r.find_stream("t1", &[b]), Err(Lookup::Unknown)));
        // Never reused.
        assert!(r.stream_down(a).is_some());
        assert_eq!(r.stream(t(41)), "t3");
    }

    #[test]
    fn peers_by_prefix() {
        let r = Registry::new();
        let p1 = astral_tokio::Identity::from_seed([1; 32]).node_id();
        let p2 = astral_tokio::Identity::from_seed([2; 32]).node_id();
        let live = [p1, p2];
        let hex1 = p1.to_string();
        assert_eq!(r.find_peer(&hex1[..8], &live).unwrap(), p1);
        assert_eq!(r.find_peer(&hex1.to_uppercase()[..8], &live).unwrap(), p1);
        assert!(matches!(r.find_peer("ab", &live), Err(Lookup::Unknown)));
        assert_eq!(r.peer(p2), "p1");
        assert_eq!(r.find_peer("p1", &live).unwrap(), p2);
    }
}
