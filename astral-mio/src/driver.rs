//! The event loop glue: sockets ↔ core streams, timers, events, commands.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astral_core::driver::{self, TxBuffer};
use astral_core::{
    Config, DrainError, Event, Identity, MigrateError, Node, NodeId, OpenError, SessionError,
    SessionId, SessionInfo, StreamCloseReason, StreamId, StreamInfo, Timestamp,
};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::conn::{Conn, ConnState, Entry};
use crate::handle::{Command, Handle};
use crate::session::Session;
use crate::sockopt;

/// Size of the reusable read buffer.
const READ_BUF: usize = 128 * 1024;
/// Bytes read from one socket per turn before other sockets are served; the
/// rest is read on the next turn (the loop then polls with a zero timeout).
const READ_BUDGET: usize = 4 * 1024 * 1024;

/// An astral node driven by a single-threaded mio event loop over TCP.
///
/// See the [crate documentation](crate) for the two ways to run it.
pub struct MioNode {
    node: Node,
    /// Present when the node owns its loop ([`MioNode::new`]).
    poll: Option<(Poll, Events)>,
    registry: Registry,
    token_base: usize,
    token_count: usize,
    entries: Vec<Entry>,
    free: Vec<usize>,
    by_stream: HashMap<StreamId, usize>,
    /// Connections whose read budget ran out: read again next turn.
    read_again: Vec<usize>,
    events: VecDeque<Event>,
    start: Instant,
    read_buf: Box<[u8]>,
    waker: Arc<Waker>,
    cmd_tx: Sender<Command>,
    cmd_rx: Receiver<Command>,
}

impl std::fmt::Debug for MioNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MioNode")
            .field("id", &self.node.local_id())
            .field("sockets", &(self.entries.len() - self.free.len()))
            .finish_non_exhaustive()
    }
}

impl MioNode {
    /// A node that owns its `mio::Poll`; drive it with [`MioNode::run_once`].
    pub fn new(identity: Identity, config: Config, seed: u64) -> io::Result<MioNode> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let mut node = Self::build(registry, 0..usize::MAX, identity, config, seed)?;
        node.poll = Some((poll, Events::with_capacity(1024)));
        Ok(node)
    }

    /// A node whose sockets are registered into the caller's `Poll` with
    /// tokens in `tokens` (the first one is the node's waker; the range
    /// bounds the number of listeners plus connections). Feed events to
    /// [`MioNode::process`] and bound the poll with [`MioNode::next_timeout`].
    ///
    /// mio allows one active `Waker` per `Poll`: if the caller already has
    /// one, prefer [`MioNode::new`] in its own thread, or share ours through
    /// [`MioNode::handle`].
    pub fn with_registry(
        registry: &Registry,
        tokens: Range<usize>,
        identity: Identity,
        config: Config,
        seed: u64,
    ) -> io::Result<MioNode> {
        if tokens.end <= tokens.start + 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token range needs at least two tokens",
            ));
        }
        Self::build(registry.try_clone()?, tokens, identity, config, seed)
    }

    fn build(
        registry: Registry,
        tokens: Range<usize>,
        identity: Identity,
        config: Config,
        seed: u64,
    ) -> io::Result<MioNode> {
        let node = Node::new(identity, config, seed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let waker = Arc::new(Waker::new(&registry, Token(tokens.start))?);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        Ok(MioNode {
            node,
            poll: None,
            registry,
            token_base: tokens.start,
            token_count: tokens.end - tokens.start,
            entries: Vec::new(),
            free: Vec::new(),
            by_stream: HashMap::new(),
            read_again: Vec::new(),
            events: VecDeque::new(),
            start: Instant::now(),
            read_buf: vec![0u8; READ_BUF].into_boxed_slice(),
            waker,
            cmd_tx,
            cmd_rx,
        })
    }

    // ----- identity, time, core access -----------------------------------

    /// This node's identity.
    pub fn local_id(&self) -> NodeId {
        self.node.local_id()
    }

    /// The core's clock: time since this node was created.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The core engine, read-only (stream and session snapshots, config).
    pub fn core(&self) -> &Node {
        &self.node
    }

    /// The core engine, for calls this driver does not wrap. Output queued
    /// by such calls is written at the next flush (`next_timeout`,
    /// `run_once`, `flush`).
    pub fn core_mut(&mut self) -> &mut Node {
        &mut self.node
    }

    /// A `Send` handle other threads use to hand this loop work.
    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.cmd_tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Whether `token` belongs to this node (in [`MioNode::with_registry`]
    /// mode, events with other tokens are the caller's).
    pub fn owns_token(&self, token: Token) -> bool {
        token.0.wrapping_sub(self.token_base) < self.token_count
    }

    // ----- transports -----------------------------------------------------

    /// Listens for TCP connections on `addr`; returns the bound address
    /// (useful with port 0). Accepted connections become streams whose
    /// peer the handshake authenticates ([`Event::StreamUp`]).
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let mut listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let idx = self.alloc()?;
        self.registry
            .register(&mut listener, self.token(idx), Interest::READABLE)?;
        self.entries[idx] = Entry::Listener(listener);
        Ok(local)
    }

    /// Dials `peer` at `addr` (non-blocking): the returned stream performs
    /// its handshake once the TCP connection is up and reports
    /// [`Event::StreamUp`], or [`Event::StreamDown`] if the connection or
    /// the handshake fails (the handshake timeout bounds the connect).
    pub fn connect(&mut self, peer: NodeId, addr: SocketAddr) -> io::Result<StreamId> {
        let mut socket = TcpStream::connect(addr)?;
        sockopt::set_notsent_lowat(&socket, self.node.config().tcp_notsent_lowat);
        let idx = self.alloc()?;
        let now = self.now();
        let stream = self
            .node
            .connect(now, peer)
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Err(e) = self.registry.register(
            &mut socket,
            self.token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.node
                .handle_transport_closed(now, stream, &e.to_string());
            self.free.push(idx);
            self.pump_events();
            return Err(e);
        }
        self.entries[idx] = Entry::Conn(Box::new(Conn::new(
            socket,
            stream,
            ConnState::Connecting,
            addr,
        )));
        self.by_stream.insert(stream, idx);
        Ok(stream)
    }

    /// Closes the TCP connection of `stream` abruptly, under the core (as a
    /// network failure would): the core sees the transport closed and its
    /// sessions recover on other streams to the peer. For tests and
    /// operators. Returns false if the stream has no connection.
    pub fn kill_transport(&mut self, stream: StreamId) -> bool {
        let Some(&idx) = self.by_stream.get(&stream) else {
            return false;
        };
        self.drop_conn(idx, Some("killed locally"));
        self.pump_events();
        true
    }

    /// Leaves gracefully (see [`Node::shutdown`]): every peer gets a
    /// Goodbye, so its sessions with this node end at once
    /// (`CloseReason::PeerShutdown` there, `CloseReason::Shutdown` here);
    /// listeners close, and each connection closes once its Goodbye is
    /// written, or after [`driver::LINGER_TIMEOUT`] if the socket takes
    /// nothing. Keep running the loop until [`MioNode::is_closed`] (dropping
    /// the node does a best-effort shutdown with non-blocking writes only).
    pub fn shutdown(&mut self) {
        let now = self.now();
        self.node.shutdown(now);
        for idx in 0..self.entries.len() {
            if let Entry::Listener(l) = &mut self.entries[idx] {
                let _ = self.registry.deregister(l);
                self.entries[idx] = Entry::Free;
                self.free.push(idx);
            }
        }
        self.flush();
    }

    /// Whether the node was shut down and every connection is closed.
    pub fn is_closed(&self) -> bool {
        self.node.is_shut_down() && self.entries.iter().all(|e| matches!(e, Entry::Free))
    }

    /// Closes `stream` cleanly at the application's request (its sessions
    /// resume on other streams to the peer).
    pub fn close_stream(&mut self, stream: StreamId) {
        let now = self.now();
        self.node.close_stream(now, stream);
        self.pump_events();
    }

    /// Moves every session off `stream`, then closes it (see
    /// [`Node::drain_stream`]). Returns how many sessions moved.
    pub fn drain_stream(&mut self, stream: StreamId) -> Result<usize, DrainError> {
        let now = self.now();
        self.node.drain_stream(now, stream)
    }

    /// Local and remote socket addresses of `stream`'s connection.
    pub fn stream_addrs(&self, stream: StreamId) -> Option<(SocketAddr, SocketAddr)> {
        let idx = *self.by_stream.get(&stream)?;
        match &self.entries[idx] {
            Entry::Conn(c) => Some((c.socket.local_addr().ok()?, c.remote)),
            _ => None,
        }
    }

    /// Snapshot of one stream.
    pub fn stream_info(&self, stream: StreamId) -> Option<StreamInfo> {
        self.node.stream_info(stream)
    }

    /// Established streams to `peer`.
    pub fn peer_streams(&self, peer: NodeId) -> Vec<StreamId> {
        self.node.peer_streams(peer)
    }

    // ----- sessions -------------------------------------------------------

    /// Opens a session with `peer` for `query`. It goes out on the best
    /// stream to the peer (or on the first one that comes up); the answer
    /// is [`Event::SessionOpen`] or [`Event::SessionClosed`]. Bytes written
    /// before the answer are queued.
    pub fn open_session(&mut self, peer: NodeId, query: &str) -> Result<SessionId, OpenError> {
        let now = self.now();
        self.node.open_session(now, peer, query)
    }

    /// Accepts an inbound query ([`Event::Query`]).
    pub fn accept_query(&mut self, session: SessionId) -> Result<(), SessionError> {
        let now = self.now();
        self.node.accept_query(now, session)
    }

    /// Rejects an inbound query with `code` (see [`astral_core::codes`]).
    pub fn reject_query(&mut self, session: SessionId, code: u8) -> Result<(), SessionError> {
        let now = self.now();
        let r = self.node.reject_query(now, session, code);
        self.pump_events();
        r
    }

    /// A handle to read, write and close `session`; `None` if it is gone.
    pub fn session(&mut self, session: SessionId) -> Option<Session<'_>> {
        self.node.session(session)?;
        Some(Session::new(self, session))
    }

    /// Snapshot of one session (state, streams, counters).
    pub fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        self.node.session_info(session)
    }

    /// Moves `session` to another stream with the same peer without pausing
    /// it ([`Event::Migrated`] on the peer; locally the session sends on
    /// `target` at once).
    pub fn migrate(&mut self, session: SessionId, target: StreamId) -> Result<(), MigrateError> {
        let now = self.now();
        self.node.migrate(now, session, target)
    }

    /// Next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.pump_events();
        }
        self.events.pop_front()
    }

    // ----- the loop -------------------------------------------------------

    /// One turn of an owned loop: flushes output, waits for socket events,
    /// the next core timer, a [`Handle`] command or `timeout` (whichever
    /// comes first), and processes what happened. Then drain
    /// [`MioNode::poll_event`].
    ///
    /// Fails with `Unsupported` for a node made by [`MioNode::with_registry`].
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let Some((mut poll, mut events)) = self.poll.take() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "run_once needs a node that owns its Poll (MioNode::new)",
            ));
        };
        let mut wait = self.next_timeout();
        if let Some(t) = timeout {
            wait = Some(wait.map_or(t, |w| w.min(t)));
        }
        if !self.events.is_empty() {
            // Events the application has not drained yet: do not sleep.
            wait = Some(Duration::ZERO);
        }
        let r = match poll.poll(&mut events, wait) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        };
        if r.is_ok() {
            self.process(&events);
        }
        self.poll = Some((poll, events));
        r
    }

    /// How long the caller's poll may sleep: until the core's next timer
    /// (rounded up to whole milliseconds, so a sub-millisecond remainder
    /// never turns into a spin), zero if work is pending, `None` for
    /// "until a socket event". Also writes output that API calls queued,
    /// so call it right before polling.
    pub fn next_timeout(&mut self) -> Option<Duration> {
        self.flush();
        if !self.read_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let linger = self
            .next_linger_end()
            .map(|t| t.saturating_duration_since(Instant::now()));
        let core = self.node.poll_timeout().map(|deadline| {
            let left = deadline.saturating_duration_since(self.now());
            let ms = left.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
        });
        match (core, linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the first closing connection's linger bound ends.
    fn next_linger_end(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Conn(c) => c.closing_since,
                _ => None,
            })
            .min()
            .map(|t| t + driver::LINGER_TIMEOUT)
    }

    /// Handles the events of one poll (events whose token is not ours are
    /// skipped), runs due timers and queued [`Handle`] commands, and writes
    /// pending output. Then drain [`MioNode::poll_event`].
    pub fn process(&mut self, events: &Events) {
        for ev in events.iter() {
            let token = ev.token();
            if !self.owns_token(token) || token.0 == self.token_base {
                continue; // not ours, or the waker (commands run below)
            }
            let idx = token.0 - self.token_base - 1;
            match self.entries.get(idx) {
                Some(Entry::Listener(_)) => self.accept_all(idx),
                Some(Entry::Conn(_)) => self.conn_event(
                    idx,
                    ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                ),
                _ => {}
            }
        }
        for idx in std::mem::take(&mut self.read_again) {
            if matches!(self.entries.get(idx), Some(Entry::Conn(_))) {
                self.read_conn(idx);
            }
        }
        self.run_commands();
        self.run_timers();
        self.flush();
        self.pump_events();
    }

    /// Writes whatever the core has for every connection, as far as the
    /// sockets take it (the rest waits for WRITABLE).
    pub fn flush(&mut self) {
        let now = Instant::now();
        for idx in 0..self.entries.len() {
            let Entry::Conn(c) = &self.entries[idx] else {
                continue;
            };
            if c.state == ConnState::Connecting {
                continue;
            }
            if c.closing_since
                .is_some_and(|t| now >= t + driver::LINGER_TIMEOUT)
            {
                // The socket took nothing for the linger bound: give up.
                self.drop_conn(idx, None);
                continue;
            }
            if !c.tx.is_empty()
                || self.node.wants_transmit(c.stream)
                || c.state == ConnState::Closing
            {
                self.flush_conn(idx);
            }
        }
        self.pump_events();
    }

    fn run_commands(&mut self) {
        // Bounded: commands queued by commands run next turn.
        let pending: Vec<Command> = self.cmd_rx.try_iter().collect();
        for cmd in pending {
            cmd(self);
        }
    }

    fn run_timers(&mut self) {
        let now = self.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
    }

    // ----- sockets ----------------------------------------------------------

    fn token(&self, idx: usize) -> Token {
        Token(self.token_base + 1 + idx)
    }

    fn alloc(&mut self) -> io::Result<usize> {
        if let Some(idx) = self.free.pop() {
            return Ok(idx);
        }
        if self.entries.len() + 2 > self.token_count {
            return Err(io::Error::other("token range exhausted"));
        }
        self.entries.push(Entry::Free);
        Ok(self.entries.len() - 1)
    }

    fn accept_all(&mut self, idx: usize) {
        loop {
            let Entry::Listener(listener) = &self.entries[idx] else {
                return;
            };
            let (mut socket, remote) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. EMFILE: the backlog stays; the next turn retries.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            };
            let _ = socket.set_nodelay(true);
            sockopt::set_notsent_lowat(&socket, self.node.config().tcp_notsent_lowat);
            let now = self.now();
            let stream = match self.node.accept_from(now, Some(driver::source_of(remote))) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, %remote, "connection refused by the core");
                    continue; // dropping the socket closes it
                }
            };
            let slot = match self.alloc() {
                Ok(s) => s,
                Err(e) => {
                    self.node
                        .handle_transport_closed(now, stream, &e.to_string());
                    continue;
                }
            };
            if let Err(e) =
                self.registry
                    .register(&mut socket, self.token(slot), Interest::READABLE)
            {
                self.node
                    .handle_transport_closed(now, stream, &e.to_string());
                self.free.push(slot);
                continue;
            }
            self.entries[slot] =
                Entry::Conn(Box::new(Conn::new(socket, stream, ConnState::Open, remote)));
            self.by_stream.insert(stream, slot);
            // Read whatever already arrived (edge-triggered).
            self.read_conn(slot);
        }
    }

    fn conn_event(&mut self, idx: usize, writable: bool) {
        let Entry::Conn(c) = &mut self.entries[idx] else {
            return;
        };
        if c.state == ConnState::Connecting {
            if !writable {
                return;
            }
            match connect_result(&c.socket) {
                Ok(false) => return, // spurious wake-up: still connecting
                Ok(true) => {
                    c.state = ConnState::Open;
                    let _ = c.socket.set_nodelay(true);
                }
                Err(e) => {
                    self.drop_conn(idx, Some(&format!("connect failed: {e}")));
                    return;
                }
            }
        }
        // Edge-triggered: read until drained (`WouldBlock`, or a short
        // read), then write.
        self.read_conn(idx);
        if matches!(self.entries[idx], Entry::Conn(_)) {
            self.flush_conn(idx);
        }
    }

    /// Reads until drained (or the per-turn budget), feeding the core.
    fn read_conn(&mut self, idx: usize) {
        let mut budget = READ_BUDGET;
        loop {
            let Entry::Conn(c) = &mut self.entries[idx] else {
                return;
            };
            if c.state == ConnState::Connecting {
                return;
            }
            match c.socket.read(&mut self.read_buf) {
                Ok(0) => {
                    self.drop_conn(idx, Some("connection closed by peer"));
                    return;
                }
                Ok(n) => {
                    if c.state == ConnState::Closing {
                        continue; // the core is done with it: discard
                    }
                    let stream = c.stream;
                    let now = self.now();
                    self.node.handle_input(now, stream, &self.read_buf[..n]);
                    if n < self.read_buf.len() {
                        // A short read drained the socket: new bytes raise
                        // a new edge, so the read that would only return
                        // `WouldBlock` is skipped (as tokio does).
                        return;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.read_again.push(idx);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_conn(idx, Some(&e.to_string()));
                    return;
                }
            }
        }
    }

    /// Writes the tail, pulling more ciphertext from the core only once the
    /// tail is empty; WRITABLE interest only while a tail remains.
    fn flush_conn(&mut self, idx: usize) {
        let now = self.now();
        loop {
            let Entry::Conn(c) = &mut self.entries[idx] else {
                return;
            };
            if c.state == ConnState::Connecting {
                return;
            }
            if c.tx.is_empty() {
                if c.state == ConnState::Closing {
                    self.drop_conn(idx, None);
                    return;
                }
                if self
                    .node
                    .poll_transmit(now, c.stream, c.tx.pull_into(), TxBuffer::PULL)
                    == 0
                {
                    break;
                }
            }
            match c.socket.write(c.tx.chunk()) {
                Ok(0) => {
                    self.drop_conn(idx, Some("socket accepted no bytes"));
                    return;
                }
                Ok(n) => c.tx.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_conn(idx, Some(&e.to_string()));
                    return;
                }
            }
        }
        let token = self.token(idx);
        let Entry::Conn(c) = &mut self.entries[idx] else {
            return;
        };
        let want = !c.tx.is_empty();
        if want != c.write_interest {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match self.registry.reregister(&mut c.socket, token, interest) {
                Ok(()) => c.write_interest = want,
                Err(e) => self.drop_conn(idx, Some(&e.to_string())),
            }
        }
    }

    /// Closes a connection; with `reason`, tells the core its transport died.
    fn drop_conn(&mut self, idx: usize, reason: Option<&str>) {
        let entry = std::mem::replace(&mut self.entries[idx], Entry::Free);
        let Entry::Conn(mut c) = entry else {
            self.entries[idx] = entry;
            return;
        };
        let _ = self.registry.deregister(&mut c.socket);
        self.free.push(idx);
        self.read_again.retain(|&i| i != idx);
        if self.by_stream.get(&c.stream) == Some(&idx) {
            self.by_stream.remove(&c.stream);
        }
        if let Some(reason) = reason {
            if c.state != ConnState::Closing {
                let now = self.now();
                self.node.handle_transport_closed(now, c.stream, reason);
            }
        }
        drop(c);
    }

    /// Moves core events to the application queue, closing the sockets of
    /// streams the core ended.
    fn pump_events(&mut self) {
        while let Some(ev) = self.node.poll_event() {
            if let Event::StreamDown { stream, reason, .. } = &ev {
                self.on_stream_down(*stream, reason);
            }
            self.events.push_back(ev);
        }
    }

    fn on_stream_down(&mut self, stream: StreamId, reason: &StreamCloseReason) {
        let Some(&idx) = self.by_stream.get(&stream) else {
            return;
        };
        let Entry::Conn(c) = &mut self.entries[idx] else {
            return;
        };
        self.by_stream.remove(&stream);
        c.state = ConnState::Closing;
        c.closing_since = Some(Instant::now());
        // The records already pulled (e.g. a drain's final frames) go out
        // first where the contract says so; flush closes it.
        if c.tx.is_empty() || !driver::linger(reason) {
            self.drop_conn(idx, None);
        }
    }
}

impl Drop for MioNode {
    /// A best-effort [`MioNode::shutdown`]: the Goodbyes go out as far as
    /// the sockets take them without blocking.
    fn drop(&mut self) {
        if !self.node.is_shut_down() {
            self.shutdown();
        }
    }
}

/// Outcome of a non-blocking connect after a WRITABLE event: `Ok(true)`
/// connected, `Ok(false)` still in progress.
fn connect_result(socket: &TcpStream) -> io::Result<bool> {
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    match socket.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
