//! The write side of one established transport and its write token.
//!
//! A transport has one writer at a time, so records never interleave and
//! are written in the order they were sealed (their nonces). Whoever holds
//! the token owns the sealer and the buffer of sealed bytes ([`WireTx`]):
//!
//! * **inline**, a caller of its peer (a session's `poll_write`, a reader
//!   whose read freed credit, the timer): when the engine has output for an
//!   idle transport, [`Peer::with`](crate::peer::Peer::with) takes the
//!   token under the peer's lock, pulls the records there, and after
//!   releasing the lock seals and writes them to the socket itself
//!   (`try_write`). No task hop on the way out, as with a socket written
//!   directly. If the socket does not take everything (`WouldBlock`, an
//!   error, or the engine has more than one pull), the token goes to the
//!   task with what is left.
//! * **the transport task**, which takes the token when it is free (or is
//!   handed it) and keeps it while bytes wait for the socket to become
//!   writable; it releases it once its buffer is empty and the engine has
//!   nothing more.
//!
//! A burst of small output (many sessions opening at once, many one-byte
//! writes in one task's poll) must not cost a system call each, and a lone
//! write must not wait for a task hop. So a caller writes inline only when
//! the transport is quiet: no inline write went out since the transport
//! last read or went idle, or what it pulled is at least [`SMALL`]. The
//! first small write of a burst goes out at once; the next one hands its
//! records and the token to the task, and every later one finds the token
//! taken and leaves its output in the engine. The task runs after the
//! caller's poll (tokio puts a task woken from a worker in that worker's
//! LIFO slot) and pulls, seals and writes everything the burst queued in
//! one write (`docs/notes/perf-profile.md` §14).
//!
//! A party that finds the token taken sets `more` and tries once more;
//! whoever releases the token checks `more` afterwards and makes sure
//! someone looks again (the task loops; an inline writer wakes the task),
//! so output is never left behind. Only transports whose socket can be
//! written through a shared reference (TCP) are written inline; the task
//! is the only writer of any other transport.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

use astral_core::driver::{RecordSealer, TxBuffer, UnsealedRecords};
use astral_core::noise::NoiseError;
use astral_core::{PeerEngine, StreamId, Timestamp};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Inline writes and hand-overs to the task, counted for the tests.
#[cfg(test)]
pub(crate) static INLINE_WRITES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
#[cfg(test)]
pub(crate) static HANDED_OVER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Small batches of a burst left to the task, counted for the tests.
#[cfg(test)]
pub(crate) static DEFERRED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Nobody writes: the buffer is empty.
const FREE: u8 = 0;
/// A caller of the peer pulled records and seals and writes them.
const INLINE: u8 = 1;
/// The transport task writes (or waits to).
const TASK: u8 = 2;

/// A pulled batch below this is control-size (a Query, an accept, a
/// one-byte write, a credit): while the transport is not quiet it is left
/// to the task to coalesce. A larger batch (bulk data) is written inline
/// as before.
pub(crate) const SMALL: usize = 16 * 1024;

/// What [`Wire::pull_inline`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// Nothing: the transport is not written inline, or its token holder
    /// looks again.
    Nothing,
    /// The caller seals and writes the batch after the lock
    /// ([`Wire::write_inline`]).
    Inline,
    /// A small batch in a burst: it went to the task with the token; the
    /// caller wakes the task ([`Wire::task_waker`]).
    ToTask,
}

/// Waiters for a peer's transports to go idle ([`Wire`]s notify it when
/// they free their token or end).
#[derive(Debug, Default)]
pub(crate) struct FlushWatch {
    waiters: AtomicUsize,
    notify: Notify,
}

impl FlushWatch {
    /// Wakes the waiters, if there are any (one atomic load otherwise).
    pub fn notify(&self) {
        if self.waiters.load(SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Waits until `flushed()` holds, re-checking it whenever a transport
    /// of the peer goes idle.
    pub async fn wait(&self, mut flushed: impl FnMut() -> bool) {
        struct Waiter<'a>(&'a AtomicUsize);
        impl Drop for Waiter<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        self.waiters.fetch_add(1, SeqCst);
        let _waiter = Waiter(&self.waiters);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Enabled before the check: a release after it wakes us.
            notified.as_mut().enable();
            if flushed() {
                return;
            }
            notified.await;
        }
    }
}

/// What the token holder owns.
pub(crate) struct WireTx {
    pub sealer: RecordSealer,
    /// Sealed bytes not written yet (empty whenever the token is free).
    pub buf: TxBuffer,
    /// Pulled by an inline writer under the peer's lock, sealed after it
    /// (by the writer, or by the task it handed them to).
    unsealed: Option<UnsealedRecords>,
}

impl WireTx {
    /// Takes the records an inline writer handed over with the token, or
    /// the empty buffer to pull into.
    pub fn take_unsealed(&mut self) -> UnsealedRecords {
        match self.unsealed.take() {
            Some(u) => u,
            None => UnsealedRecords::with_buffer(self.buf.take_buffer()),
        }
    }

    /// Whether an inline writer handed records over unsealed.
    pub fn has_unsealed(&self) -> bool {
        self.unsealed.is_some()
    }
}

/// The write side of one established transport (see the module
/// documentation).
pub(crate) struct Wire {
    stream: StreamId,
    token: AtomicU8,
    more: AtomicBool,
    /// An inline write went out since the transport last read or went
    /// idle: further small output is left to the task (see the module
    /// documentation).
    burst: AtomicBool,
    tx: Mutex<WireTx>,
    /// The socket, for inline writes; `None`: only the task writes.
    direct: Option<Arc<TcpStream>>,
    /// The transport task, woken when the token is handed to it.
    task: Mutex<Option<Waker>>,
    /// The peer's flush waiters, told whenever the token is freed.
    flush: Arc<FlushWatch>,
    /// System calls that wrote this socket (inline and by the task).
    #[cfg(test)]
    pub writes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("stream", &self.stream)
            .field("token", &self.token.load(SeqCst))
            .field("direct", &self.direct.is_some())
            .finish_non_exhaustive()
    }
}

impl Wire {
    /// The write side of `stream`, its token held by the transport task
    /// (which may still have handshake bytes in `buf` to write).
    pub fn new(
        stream: StreamId,
        sealer: RecordSealer,
        buf: TxBuffer,
        direct: Option<Arc<TcpStream>>,
        flush: Arc<FlushWatch>,
    ) -> Arc<Wire> {
        Arc::new(Wire {
            stream,
            token: AtomicU8::new(TASK),
            more: AtomicBool::new(false),
            burst: AtomicBool::new(false),
            tx: Mutex::new(WireTx {
                sealer,
                buf,
                unsealed: None,
            }),
            direct,
            task: Mutex::new(None),
            flush,
            #[cfg(test)]
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The stream it writes.
    pub fn stream(&self) -> StreamId {
        self.stream
    }

    /// Whether callers write this transport inline.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Takes the token as `who`, or records that output is waiting for
    /// its holder (who then looks again).
    fn try_acquire(&self, who: u8) -> bool {
        if self
            .token
            .compare_exchange(FREE, who, SeqCst, SeqCst)
            .is_ok()
        {
            return true;
        }
        self.more.store(true, SeqCst);
        // It may have been released between the two steps, before the
        // holder could see `more`.
        self.token
            .compare_exchange(FREE, who, SeqCst, SeqCst)
            .is_ok()
    }

    /// Frees the token; `true` if someone found it taken meanwhile (the
    /// releaser must make sure the output is written).
    fn release(&self) -> bool {
        self.token.store(FREE, SeqCst);
        let more = self.more.swap(false, SeqCst);
        self.flush.notify();
        more
    }

    /// Nobody holds the token: nothing is buffered here (the engine may
    /// still have output, see [`crate::peer::Peer::flushed`]).
    pub fn is_idle(&self) -> bool {
        self.token.load(SeqCst) == FREE
    }

    /// The transport read something or went idle: the next small output
    /// is written inline again (a reply is not a burst).
    pub fn quiet(&self) {
        self.burst.store(false, SeqCst);
    }

    /// Counts `n` system calls that wrote the socket (tests only).
    #[inline]
    pub fn count_writes(&self, n: u32) {
        #[cfg(test)]
        self.writes.fetch_add(u64::from(n), SeqCst);
        #[cfg(not(test))]
        let _ = n;
    }

    /// The task's waker, for a caller that handed it the token.
    pub fn task_waker(&self) -> Option<Waker> {
        self.task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The token holder's state. Only the holder locks it, so the lock is
    /// never contended.
    fn lock_tx(&self) -> MutexGuard<'_, WireTx> {
        self.tx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake_task(&self) {
        let w = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = w.as_ref() {
            w.wake_by_ref();
        }
    }

    // ---- the transport task

    /// Remembers the task's waker (for hand-overs).
    pub fn register_task(&self, cx: &Context<'_>) {
        let mut w = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *w {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
    }

    /// The task's hold of the token: `None` while an inline writer holds it.
    ///
    /// With `notify`, the holder wakes the task once it releases the token
    /// (a task that must see the buffer empty, such as one flushing a
    /// stream that is gone). Without it the task does not ask to be woken:
    /// it is looking for output, not bringing any. Every call that gives
    /// the engine output for this stream runs under the peer's lock and
    /// ends in [`Wire::pull_inline`], which asks for the wake itself if the
    /// token is taken. Asking here too made every inline writer the task
    /// met mid-write wake it afterwards for nothing: a spurious poll, often
    /// a wake-up of an idle worker, per credit round trip
    /// (`docs/notes/perf-profile.md` §15).
    pub fn task_lock(&self, notify: bool) -> Option<MutexGuard<'_, WireTx>> {
        let took = self.token.load(SeqCst) == TASK
            || if notify {
                self.try_acquire(TASK)
            } else {
                self.token
                    .compare_exchange(FREE, TASK, SeqCst, SeqCst)
                    .is_ok()
            };
        if took {
            Some(self.lock_tx())
        } else {
            None
        }
    }

    /// The task's buffer is empty and the engine had nothing more: frees
    /// the token. `true`: someone wanted it meanwhile, look again.
    pub fn task_release(&self, tx: MutexGuard<'_, WireTx>) -> bool {
        debug_assert!(tx.buf.is_empty(), "token freed with bytes pending");
        drop(tx);
        self.release()
    }

    // ---- inline writers

    /// Under the peer's lock, when the engine has output for this stream:
    /// takes the token if the transport is idle and pulls one batch of
    /// records. [`Pulled::Inline`]: the caller must [`Wire::write_inline`]
    /// once the lock is released; [`Pulled::ToTask`]: it must wake the
    /// task.
    pub fn pull_inline(&self, engine: &mut PeerEngine, now: Timestamp) -> Pulled {
        if !self.is_direct() || !self.try_acquire(INLINE) {
            return Pulled::Nothing;
        }
        let mut tx = self.lock_tx();
        debug_assert!(tx.buf.is_empty(), "a free token has an empty buffer");
        let mut unsealed = UnsealedRecords::with_buffer(tx.buf.take_buffer());
        engine.poll_transmit_unsealed(now, self.stream, &mut unsealed, TxBuffer::PULL);
        let more = engine.wants_transmit(self.stream);
        let small = unsealed.len() < SMALL && !more;
        tx.unsealed = Some(unsealed);
        if small && self.burst.load(SeqCst) {
            // Not the first small write since the transport was quiet: the
            // task writes this with whatever the burst adds meanwhile.
            self.token.store(TASK, SeqCst);
            #[cfg(test)]
            DEFERRED.fetch_add(1, SeqCst);
            return Pulled::ToTask;
        }
        if more {
            // More than one pull: the task carries on after this batch.
            self.more.store(true, SeqCst);
        }
        Pulled::Inline
    }

    /// After the peer's lock was released: seals what
    /// [`Wire::pull_inline`] pulled and writes it without blocking. What
    /// the socket does not take goes to the task with the token; a sealing
    /// failure is returned for the engine.
    pub fn write_inline(&self) -> Result<(), NoiseError> {
        let mut tx = self.lock_tx();
        let WireTx {
            sealer,
            buf,
            unsealed,
        } = &mut *tx;
        if let Some(records) = unsealed.take() {
            match sealer.seal(records) {
                Ok(sealed) => buf.fill(sealed),
                Err(e) => {
                    drop(tx);
                    if self.release() {
                        self.wake_task();
                    }
                    return Err(e);
                }
            }
        }
        if let Some(sock) = self.direct.as_ref() {
            self.burst.store(true, SeqCst);
            while !buf.is_empty() {
                self.count_writes(1);
                match sock.try_write(buf.chunk()) {
                    Ok(n) if n > 0 => buf.advance(n),
                    // Full, closed or failed: the task waits for room, or
                    // meets the error itself and reports it.
                    _ => break,
                }
            }
        }
        #[cfg(test)]
        INLINE_WRITES.fetch_add(1, SeqCst);
        if !buf.is_empty() {
            #[cfg(test)]
            HANDED_OVER.fetch_add(1, SeqCst);
            self.token.store(TASK, SeqCst);
            drop(tx);
            self.wake_task();
            return Ok(());
        }
        drop(tx);
        if self.release() {
            self.wake_task();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{DEFERRED, HANDED_OVER, INLINE, INLINE_WRITES};
    use crate::{Config, Identity, Node, NodeId};

    /// System calls that wrote `node`'s transports to `remote` so far.
    fn writes_to(node: &Node, remote: NodeId) -> u64 {
        let peer = node.peer_for_tests(remote).expect("a peer");
        peer.peek(|st| {
            st.transports
                .values()
                .filter_map(|t| t.wire.as_ref())
                .map(|w| w.writes.load(super::SeqCst))
                .sum()
        })
    }

    /// A node with seed `n` and the default configuration.
    fn seeded(n: u8) -> Node {
        Node::with_seed(
            Identity::from_seed([n; 32]),
            Config::default(),
            u64::from(n),
        )
        .unwrap()
    }

    /// A server node (seed `seed`) listening on loopback that echoes every
    /// session byte by byte until its end, a task per session as a server
    /// would have; and its address.
    async fn echo_server(seed: u8) -> (Node, std::net::SocketAddr) {
        let server = seeded(seed);
        let addr = server.listen("127.0.0.1:0").await.unwrap();
        let srv = server.clone();
        tokio::spawn(async move {
            while let Some(q) = srv.next_query().await {
                let mut s = q.accept().unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).await.is_ok() {
                        if s.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (server, addr)
    }

    /// [`echo_server`] (seed `seed`) and a client node (seed `seed + 1`)
    /// connected to it.
    async fn echo_pair(seed: u8) -> (Node, Node) {
        let (server, addr) = echo_server(seed).await;
        let client = seeded(seed + 1);
        client.connect(server.id(), addr).await.unwrap();
        (server, client)
    }

    /// A burst of 200 sessions opened at once (a task each), each then
    /// writing one byte that the server echoes from a task of its own, is
    /// written in a handful of system calls per side, not one per Query,
    /// accept, byte and echo (issue 14: 10k opens cost 60,000 `sendto`).
    /// One current-thread runtime runs both nodes, so the schedule is the
    /// same every run; the counts are printed and bounded, and every
    /// session gets its own byte back.
    #[test]
    fn a_burst_of_opens_is_written_in_few_writes() {
        const N: usize = 200;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        rt.block_on(async {
            let deferred0 = DEFERRED.load(super::SeqCst);
            let (server, client) = echo_pair(5).await;
            // Warm up (the stream is confirmed, the server's peer exists).
            let mut first = client.open_session(server.id(), "warm").await.unwrap();
            first.write_all(&[0]).await.unwrap();
            first.read_exact(&mut [0u8; 1]).await.unwrap();
            let (c0, s0) = (
                writes_to(&client, server.id()),
                writes_to(&server, client.id()),
            );
            let mut opens = tokio::task::JoinSet::new();
            for i in 0..N {
                let client = client.clone();
                let peer = server.id();
                opens.spawn(async move {
                    let mut s = client.open_session(peer, "burst").await.unwrap();
                    s.write_all(&[i as u8]).await.unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.unwrap();
                    assert_eq!(b[0], i as u8, "session {i} got its own byte back");
                    s
                });
            }
            let all = async {
                let mut sessions = Vec::with_capacity(N);
                while let Some(s) = opens.join_next().await {
                    sessions.push(s.expect("an open passed its checks"));
                }
                sessions
            };
            let sessions = tokio::time::timeout(std::time::Duration::from_secs(30), all)
                .await
                .expect("the burst completes");
            assert_eq!(sessions.len(), N);
            let client_writes = writes_to(&client, server.id()) - c0;
            let server_writes = writes_to(&server, client.id()) - s0;
            let deferred = DEFERRED.load(super::SeqCst) - deferred0;
            println!(
                "{N} opens + {N} one-byte writes and echoes: client {client_writes} writes, \
                 server {server_writes} writes, {deferred} small batches left to the task"
            );
            // One write per Query and byte would be 2N on each side.
            assert!(client_writes <= 16, "client wrote {client_writes} times");
            assert!(server_writes <= 16, "server wrote {server_writes} times");
            assert!(deferred > 0, "the burst went through the task");
        });
    }

    /// A set-up's first records ride in the writes that were going out
    /// anyway (`docs/notes/perf-profile.md` §17): the dialer's message 3
    /// leaves with its first Ping and the Query of a session opened with
    /// the dial, and the listener answers them (its Ping, the Pong, and the
    /// Response of the application that accepts from a task of its own) in
    /// one write. Before, message 3 went alone and the Response after the
    /// Ping and Pong: after the set-up and one echoed byte the dialer had
    /// written 4 times (message 3, Ping and Query, Pong, the byte) and the
    /// listener 3 (Ping and Pong, Response, the echo); now 3 and 2. One current-thread
    /// runtime runs both nodes: the same schedule every run.
    #[test]
    fn a_set_up_carries_the_query_behind_message_3_and_answers_in_one_write() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        rt.block_on(async {
            let (server, addr) = echo_server(31).await;
            let client = seeded(32);
            let (_, mut s) = client
                .connect_and_open(server.id(), addr, "echo")
                .await
                .unwrap();
            s.write_all(&[7]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [7]);
            // Counted before the delayed credits (a timer, later).
            let client_writes = writes_to(&client, server.id());
            let server_writes = writes_to(&server, client.id());
            println!(
                "set-up + one echoed byte: dialer {client_writes} writes after the \
                 handshake's message 2, listener {server_writes}"
            );
            assert_eq!(
                client_writes, 3,
                "dialer: message 3 + Ping + Query, Pong, byte"
            );
            assert_eq!(server_writes, 2, "listener: Ping + Pong + Response, echo");
        });
    }

    /// The transport task that finds an inline writer mid-write (it polls
    /// after every read) is looking for output, not bringing any: the
    /// writer owes it no wake-up when it frees the token. A producer that
    /// finds the token taken is owed one (its output waits for the
    /// holder), and so is a task that asks to see the buffer empty (a
    /// stream that is gone). Before, every such meeting cost a spurious
    /// poll of the task, usually a wake-up of an idle worker: 1,444 per
    /// 256 MiB of one session's bulk (`docs/notes/perf-profile.md` §15).
    #[test]
    fn the_task_meeting_an_inline_writer_is_not_woken_for_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        rt.block_on(async {
            let (server, client) = echo_pair(9).await;
            let mut s = client.open_session(server.id(), "echo").await.unwrap();
            s.write_all(&[1]).await.unwrap();
            s.read_exact(&mut [0u8; 1]).await.unwrap();
            let peer = client.peer_for_tests(server.id()).expect("a peer");
            let wire = peer
                .peek(|st| st.transports.values().find_map(|t| t.wire.clone()))
                .expect("an established transport");
            // This thread runs the transport task too: nothing else touches
            // the token until the next await.
            assert!(wire.is_idle(), "an idle transport's token is free");
            assert!(wire.try_acquire(INLINE), "an inline writer takes it");
            assert!(wire.task_lock(false).is_none(), "the task finds it taken");
            assert!(!wire.release(), "the writer owes the task nothing");

            assert!(wire.try_acquire(INLINE));
            assert!(!wire.try_acquire(INLINE), "a producer finds it taken");
            assert!(wire.release(), "its output waits: someone must look");

            assert!(wire.try_acquire(INLINE));
            assert!(
                wire.task_lock(true).is_none(),
                "a task that must see it empty"
            );
            assert!(wire.release(), "it is woken");
            assert!(wire.is_idle());
            // The transport carries on as before.
            s.write_all(&[2]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [2]);
        });
    }

    const LEN: usize = 3 << 20;

    /// Byte `k` of session `i`: a chunk that arrived twice, out of order or
    /// from another session would not match.
    fn byte(i: u8, k: usize) -> u8 {
        ((k as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ i.wrapping_mul(37)
    }

    /// `Session::flushed` waits for the real condition: while the
    /// receiving node is stalled (its only thread blocked, so it reads
    /// nothing) and 16 MiB cannot fit in the kernel's buffers, it stays
    /// pending and the peer is not flushed; once the receiver reads, it
    /// resolves, and then nothing is queued in the engine or buffered in
    /// a transport. After the graceful close it resolves at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushed_waits_until_the_transport_took_everything() {
        const BIG: usize = 16 << 20;
        let config = Config {
            recv_window: BIG as u32,
            max_recv_window: BIG as u32,
            send_buffer: BIG as u32,
            ..Config::default()
        };
        let client = Node::with_seed(Identity::from_seed([8; 32]), config.clone(), 8).unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let go2 = go.clone();
        let receiver = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
            rt.block_on(async move {
                let server = Node::with_seed(Identity::from_seed([7; 32]), config, 7).unwrap();
                let addr = server.listen("127.0.0.1:0").await.unwrap();
                ready_tx.send((server.id(), addr)).unwrap();
                let mut s = server
                    .next_query()
                    .await
                    .expect("a query")
                    .accept()
                    .unwrap();
                // Stall: no reads, no timers, until the writer checked.
                while !go2.load(super::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut got = Vec::with_capacity(BIG);
                s.read_to_end(&mut got).await.unwrap();
                assert_eq!(got.len(), BIG);
                s.shutdown().await.unwrap();
                assert_eq!(s.closed().await, crate::CloseReason::Graceful);
                s.flushed().await;
                // Keep the node up until the writer saw the close.
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        });
        let (server_id, addr) = ready_rx.recv().expect("the receiving node listens");
        client.connect(server_id, addr).await.unwrap();
        let mut s = client.open_session(server_id, "flush").await.unwrap();
        s.write_all(&vec![7u8; BIG]).await.unwrap();
        s.shutdown().await.unwrap();
        let peer = client.peer_for_tests(server_id).expect("a peer");
        let stalled = tokio::time::timeout(Duration::from_millis(300), s.flushed()).await;
        assert!(stalled.is_err(), "flushed while the receiver reads nothing");
        assert!(
            !peer.is_flushed(),
            "bytes wait in the engine or the transport"
        );
        go.store(true, super::SeqCst);
        tokio::time::timeout(Duration::from_secs(30), s.flushed())
            .await
            .expect("flushed once the receiver reads");
        assert!(peer.is_flushed());
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(s.closed().await, crate::CloseReason::Graceful);
        tokio::time::timeout(Duration::from_secs(5), s.flushed())
            .await
            .expect("flushed at once after the graceful close");
        assert!(peer.is_flushed());
        tokio::task::spawn_blocking(move || receiver.join())
            .await
            .unwrap()
            .expect("the receiving node's checks passed");
    }

    /// Eight sessions write 3 MiB each at once over one TCP stream while
    /// the receiving node stalls (the socket fills): every session's bytes
    /// arrive exactly once and in order, and both write paths ran (callers
    /// sealing and writing inline, and hand-overs of what the socket did
    /// not take to the transport task).
    ///
    /// The receiving node runs on a current-thread runtime of its own, and
    /// once all eight sessions are accepted that thread blocks until a
    /// hand-over happened: the receiver then reads nothing at all, so the
    /// 24 MiB the writers may send (4 MiB windows) cannot fit in the kernel's
    /// buffers and a `WouldBlock` is certain, not a matter of timing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_one_socket_in_order() {
        let (inline0, handed0) = (
            INLINE_WRITES.load(super::SeqCst),
            HANDED_OVER.load(super::SeqCst),
        );
        // Windows larger than the socket's buffers, so that the socket fills.
        let config = Config {
            recv_window: 4 << 20,
            max_recv_window: 4 << 20,
            send_buffer: 4 << 20,
            ..Config::default()
        };
        let client = Node::with_seed(Identity::from_seed([2; 32]), config.clone(), 2).unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let receiver = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
            rt.block_on(async move {
                let server = Node::with_seed(Identity::from_seed([1; 32]), config, 1).unwrap();
                let addr = server.listen("127.0.0.1:0").await.unwrap();
                ready_tx.send((server.id(), addr)).unwrap();
                let mut readers = Vec::new();
                while readers.len() < 8 {
                    let q = server.next_query().await.expect("eight queries");
                    let i: u8 = q.query().parse().unwrap();
                    let mut s = q.accept().unwrap();
                    readers.push(tokio::spawn(async move {
                        let mut got = Vec::with_capacity(LEN);
                        s.read_to_end(&mut got).await.unwrap();
                        assert_eq!(got.len(), LEN, "session {i}");
                        let bad = (0..LEN).find(|&k| got[k] != byte(i, k));
                        assert_eq!(bad, None, "session {i}: first wrong byte");
                        s.write_all(b"ok").await.unwrap();
                        s.shutdown().await.unwrap();
                    }));
                }
                // Stall this node's only thread (no reads, no timers) until
                // the writers' socket is full and a hand-over happened.
                let stalled = std::time::Instant::now();
                while HANDED_OVER.load(super::SeqCst) == handed0
                    && stalled.elapsed() < Duration::from_secs(30)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                for r in readers {
                    r.await.expect("a reader passed its checks");
                }
                // Keep the node up until the replies are written.
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        });
        let (server_id, addr) = ready_rx.recv().expect("the receiving node listens");
        client.connect(server_id, addr).await.unwrap();
        let mut writers = Vec::new();
        for i in 0..8u8 {
            let c = client.clone();
            let peer = server_id;
            writers.push(tokio::spawn(async move {
                let mut s = c.open_session(peer, &i.to_string()).await.unwrap();
                let data: Vec<u8> = (0..LEN).map(|k| byte(i, k)).collect();
                for chunk in data.chunks(48 * 1024 + usize::from(i)) {
                    s.write_all(chunk).await.unwrap();
                }
                s.shutdown().await.unwrap();
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).await.unwrap();
                assert_eq!(reply, b"ok");
            }));
        }
        let all = async {
            for w in writers {
                w.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("transfers finish");
        let inline = INLINE_WRITES.load(super::SeqCst) - inline0;
        let handed = HANDED_OVER.load(super::SeqCst) - handed0;
        println!("inline writes {inline}, handed to the task {handed}");
        tokio::task::spawn_blocking(move || receiver.join())
            .await
            .unwrap()
            .expect("the receiving node's checks passed");
        assert!(inline > 0, "callers wrote inline");
        assert!(handed > 0, "a full socket handed over to the task");
    }
}
