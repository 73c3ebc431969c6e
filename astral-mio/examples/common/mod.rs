//! Echo service and echo client logic shared by the examples and the
//! 10,000-session test (`tests/echo_10k.rs` includes this file).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use astral_core::{codes, Config, Identity};
use astral_mio::{Event, MioNode, NodeId, SessionId};

/// Configuration of an echo server that takes 10,000+ concurrent sessions.
///
/// Raised limit: `max_pending_queries` (default 1,024). One TCP read can
/// carry thousands of queries (a query frame is ~20 bytes) before the
/// application sees the first `Event::Query`, and each pending one counts.
/// `max_sessions` and `max_sessions_per_peer` (defaults 4,096 and 1,024,
/// sized for a node's memory budget) are raised to [`MAX_SESSIONS`].
pub fn server_config() -> Config {
    Config {
        max_pending_queries: 65_536,
        max_sessions: MAX_SESSIONS,
        max_sessions_per_peer: MAX_SESSIONS,
        auto_migrate: false,
        ..Config::default()
    }
}

/// Sessions the examples and the 10,000-session test allow (either side).
pub const MAX_SESSIONS: usize = 65_536;

/// Client configuration: the session limits raised like the server's.
pub fn client_config() -> Config {
    Config {
        max_sessions: MAX_SESSIONS,
        max_sessions_per_peer: MAX_SESSIONS,
        auto_migrate: false,
        ..Config::default()
    }
}

#[derive(Default)]
struct EchoSession {
    /// Bytes read but not yet written back.
    backlog: Vec<u8>,
    pos: usize,
    eof: bool,
}

/// Serves the query `"echo"`: every byte read is written back; the
/// peer's half-close is answered by ours. Other queries are rejected.
#[derive(Default)]
pub struct EchoServer {
    sessions: HashMap<SessionId, EchoSession>,
    buf: Vec<u8>,
    /// Sessions that ended gracefully.
    pub completed: u64,
    /// Sessions that ended otherwise.
    pub failed: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// The largest number of sessions open at once.
    pub peak: usize,
}

impl EchoServer {
    /// Handles one event of `node`.
    pub fn on_event(&mut self, node: &mut MioNode, event: Event) {
        match event {
            Event::Query { session, query, .. } => {
                if query == "echo" && node.accept_query(session).is_ok() {
                    self.sessions.insert(session, EchoSession::default());
                    self.peak = self.peak.max(self.sessions.len());
                    self.pump(node, session);
                } else {
                    let _ = node.reject_query(session, codes::NO_SUCH_SERVICE);
                }
            }
            Event::Readable { session } | Event::Writable { session } => self.pump(node, session),
            Event::SessionClosed { session, reason } => {
                self.sessions.remove(&session);
                if reason == astral_mio::CloseReason::Graceful {
                    self.completed += 1;
                } else {
                    self.failed += 1;
                }
            }
            _ => {}
        }
    }

    fn pump(&mut self, node: &mut MioNode, id: SessionId) {
        if self.buf.is_empty() {
            self.buf = vec![0; 64 * 1024];
        }
        let Some(state) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(mut s) = node.session(id) else {
            return;
        };
        loop {
            if state.pos < state.backlog.len() {
                match s.write(&state.backlog[state.pos..]) {
                    Ok(n) => {
                        state.pos += n;
                        self.bytes += n as u64;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return, // wait for Writable
                    Err(_) => return,
                }
            }
            if state.eof {
                s.finish();
                return;
            }
            match s.read(&mut self.buf) {
                Ok(0) => state.eof = true,
                Ok(n) => {
                    state.backlog.clear();
                    state.backlog.extend_from_slice(&self.buf[..n]);
                    state.pos = 0;
                }
                Err(_) => return, // WouldBlock: wait for Readable; errors: SessionClosed follows
            }
        }
    }
}

/// Runs an echo server until `stop` returns true (checked every turn).
pub fn run_server(
    node: &mut MioNode,
    server: &mut EchoServer,
    mut stop: impl FnMut(&EchoServer) -> bool,
) -> io::Result<()> {
    while !stop(server) {
        node.run_once(Some(Duration::from_millis(200)))?;
        while let Some(ev) = node.poll_event() {
            server.on_event(node, ev);
        }
    }
    Ok(())
}

/// Payload of session `i` of client `c` (distinct per session).
pub fn payload(client: u64, i: u64, len: usize) -> Vec<u8> {
    let mut x =
        client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5555;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct ClientSession {
    sent: usize,
    expected: Vec<u8>,
    got: Vec<u8>,
    finished: bool,
    /// End of the echo seen (and checked).
    checked: bool,
}

/// Outcome of [`run_client`].
#[derive(Debug, Default, Clone)]
pub struct ClientReport {
    /// Sessions whose echo came back intact.
    pub ok: usize,
    /// Sessions that failed or returned wrong bytes.
    pub bad: usize,
    /// Wall time from connect to the last session.
    pub elapsed: Duration,
}

impl ClientReport {
    fn done(&self) -> usize {
        self.ok + self.bad
    }
}

/// Connects to the echo server, opens `sessions` sessions at once (all are
/// concurrent: each writes `size` bytes, half-closes, and reads the echo to
/// the end), checks every byte and returns the tally. Gives up after
/// `deadline`.
pub fn run_client(
    client: u64,
    server: NodeId,
    addr: SocketAddr,
    sessions: usize,
    size: usize,
    deadline: Duration,
) -> io::Result<ClientReport> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&client.to_le_bytes());
    seed[8] = 0xC1;
    let mut node = MioNode::new(Identity::from_seed(seed), client_config(), client)?;
    let start = Instant::now();
    node.connect(server, addr)?;
    let mut state: HashMap<SessionId, ClientSession> = HashMap::new();
    for i in 0..sessions {
        let id = node
            .open_session(server, "echo")
            .map_err(|e| io::Error::other(e.to_string()))?;
        state.insert(
            id,
            ClientSession {
                sent: 0,
                expected: payload(client, i as u64, size),
                got: Vec::new(),
                finished: false,
                checked: false,
            },
        );
        write_some(&mut node, id, state.get_mut(&id).expect("just inserted"));
    }
    let mut report = ClientReport::default();
    let mut buf = vec![0u8; 64 * 1024];
    // Run until every session has closed (not just echoed): the last
    // credit and Fin acknowledgements let the server close gracefully too.
    while !state.is_empty() {
        if start.elapsed() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "client {client}: {} of {sessions} done after {deadline:?}",
                    report.done()
                ),
            ));
        }
        node.run_once(Some(Duration::from_millis(200)))?;
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::SessionOpen { session } | Event::Writable { session } => {
                    if let Some(st) = state.get_mut(&session) {
                        write_some(&mut node, session, st);
                    }
                }
                Event::Readable { session } => {
                    let Some(st) = state.get_mut(&session) else {
                        continue;
                    };
                    let Some(mut s) = node.session(session) else {
                        continue;
                    };
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                if !st.checked {
                                    st.checked = true;
                                    if st.got == st.expected {
                                        report.ok += 1;
                                    } else {
                                        report.bad += 1;
                                    }
                                }
                                break;
                            }
                            Ok(n) => st.got.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                Event::SessionClosed { session, reason } => {
                    if let Some(st) = state.remove(&session) {
                        if !st.checked {
                            // Reading the last bytes can close the session
                            // before the application sees end-of-stream.
                            if reason == astral_mio::CloseReason::Graceful && st.got == st.expected
                            {
                                report.ok += 1;
                            } else {
                                eprintln!("client {client}: session closed early: {reason}");
                                report.bad += 1;
                            }
                        }
                    }
                }
                Event::StreamDown { reason, .. } => {
                    return Err(io::Error::other(format!(
                        "client {client}: stream down: {reason}"
                    )));
                }
                _ => {}
            }
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

fn write_some(node: &mut MioNode, id: SessionId, st: &mut ClientSession) {
    let Some(mut s) = node.session(id) else {
        return;
    };
    while st.sent < st.expected.len() {
        match s.write(&st.expected[st.sent..]) {
            Ok(n) => st.sent += n,
            Err(_) => return,
        }
    }
    if !st.finished {
        st.finished = true;
        s.finish();
    }
}
