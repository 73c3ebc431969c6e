//! Session and node lifecycle over real loopback TCP (issue 12): a
//! graceful shutdown, a restart with the same key, two live processes with
//! one key, sockets-like session drops, and `open` with no stream.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use astral_tokio::{CloseReason, Error, Event, Identity, Node, NodeId, SessionClosedError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

/// Waits for the first `SessionClosed` on `events` and returns its reason
/// and when it came.
async fn next_close(events: &mut broadcast::Receiver<Event>) -> (CloseReason, Instant) {
    loop {
        match events.recv().await {
            Ok(Event::SessionClosed { reason, .. }) => return (reason, Instant::now()),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("events: {e}"),
        }
    }
}

/// One round trip on an echo session.
async fn echo(s: &mut astral_tokio::Session, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

fn reason_of(e: &std::io::Error) -> Option<CloseReason> {
    e.get_ref()?
        .downcast_ref::<SessionClosedError>()
        .map(|c| c.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_peers_sessions_with_the_reason_and_closed_resolves() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 2).await;
        serve_echo(&b);
        let mut s = a.open_session(b.id(), "echo").await.unwrap();
        echo(&mut s, b"before").await;
        let mut events = b.events();
        let t = Instant::now();
        a.shutdown();
        let (reason, at) = next_close(&mut events).await;
        assert_eq!(reason, CloseReason::PeerShutdown);
        let took = at - t;
        println!("peer's session ended {took:?} after shutdown()");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // Here, at once and with its own reason.
        let err = s.write_all(b"after").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
        assert_eq!(reason_of(&err), Some(CloseReason::Shutdown));
        timeout(Duration::from_secs(3), a.closed())
            .await
            .expect("every transport closed after the Goodbye");
        assert!(b.peer_streams(a.id()).is_empty());
        assert!(matches!(
            a.open_session(b.id(), "echo").await,
            Err(Error::Shutdown)
        ));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_key_ends_the_old_sessions_at_once() {
    timeout(LIMIT, async {
        let server = node(2, config());
        let addr = server.listen("127.0.0.1:0").await.unwrap();
        serve_echo(&server);
        let key = [7u8; 32];
        let old = Node::with_seed(Identity::from_seed(key), config(), 70).unwrap();
        old.set_redial(None);
        old.connect(server.id(), addr).await.unwrap();
        let mut s = old.open_session(server.id(), "echo").await.unwrap();
        echo(&mut s, b"hello").await;
        let mut events = server.events();
        // The process dies: the OS resets its connections; it says nothing.
        for st in old.peer_streams(server.id()) {
            assert!(old.kill_transport(st));
        }
        // (dropping `old` later sends nothing: it has no stream left)
        let restarted = Node::with_seed(Identity::from_seed(key), config(), 71).unwrap();
        restarted.set_redial(None);
        restarted.connect(server.id(), addr).await.unwrap();
        let up = Instant::now();
        let (reason, at) = next_close(&mut events).await;
        assert_eq!(reason, CloseReason::PeerRestarted);
        let took = at.saturating_duration_since(up);
        println!("old session ended {took:?} after the new handshake");
        // Loopback RTT is well under a millisecond; allow scheduling.
        assert!(took < Duration::from_millis(500), "{took:?}");
        // The new process is served normally.
        let mut s2 = restarted.open_session(server.id(), "echo").await.unwrap();
        echo(&mut s2, b"again").await;
        drop(old);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_processes_with_one_key_keep_their_own_sessions() {
    timeout(LIMIT, async {
        let server = node(2, config());
        let addr = server.listen("127.0.0.1:0").await.unwrap();
        serve_echo(&server);
        let key = [9u8; 32];
        let one = Node::with_seed(Identity::from_seed(key), config(), 90).unwrap();
        let two = Node::with_seed(Identity::from_seed(key), config(), 91).unwrap();
        one.set_redial(None);
        two.set_redial(None);
        one.connect(server.id(), addr).await.unwrap();
        let mut s1 = one.open_session(server.id(), "echo").await.unwrap();
        // The second process connects twice, opens its own session, then
        // drains the stream that session uses.
        two.connect(server.id(), addr).await.unwrap();
        two.connect(server.id(), addr).await.unwrap();
        let mut s2 = two.open_session(server.id(), "echo").await.unwrap();
        echo(&mut s1, b"one").await;
        echo(&mut s2, b"two").await;
        let mut events = server.events();
        let carrying = two
            .session_info(s2.id())
            .and_then(|i| i.send_stream)
            .unwrap();
        assert_eq!(two.drain_stream(carrying).unwrap(), 1);
        echo(&mut s2, b"two, after its drain").await;
        echo(&mut s1, b"one, untouched").await;
        // Nothing was reset at the server either.
        while let Ok(ev) = events.try_recv() {
            assert!(
                !matches!(ev, Event::SessionClosed { .. }),
                "a twin's drain closed a session: {ev:?}"
            );
        }
        // Each process's own streams, on its own side: `one` keeps its
        // stream; `two` is left with one once the drained stream closes.
        assert_eq!(one.peer_streams(server.id()).len(), 1);
        timeout(Duration::from_secs(5), async {
            while two.peer_streams(server.id()).len() != 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the drained stream closes");
        assert_eq!(one.peer_streams(server.id()).len(), 1);
    })
    .await
    .unwrap();
}

/// Accepts one query and hands its session to the test.
async fn accept_one(node: &Node) -> astral_tokio::Session {
    node.next_query().await.unwrap().accept().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_session_with_unread_bytes_resets_it() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        let (s, peer) = tokio::join!(a.open_session(b.id(), "q"), accept_one(&b));
        let (mut s, mut peer) = (s.unwrap(), peer);
        s.write_all(b"never read").await.unwrap();
        // Wait until the bytes are there, unread, then drop.
        timeout(Duration::from_secs(5), async {
            while b
                .session_info(peer.id())
                .is_none_or(|i| i.stats.bytes_received == 0)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        let _ = &mut peer;
        drop(peer);
        let mut buf = [0u8; 8];
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert_eq!(reason_of(&err), Some(CloseReason::ResetByPeer));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_to_a_dropped_reader_learns_it() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        let (s, peer) = tokio::join!(a.open_session(b.id(), "q"), accept_one(&b));
        let mut s = s.unwrap();
        drop(peer);
        // The reader is gone before anything arrived: the first bytes that
        // reach it reset the session, and the writer's writes fail.
        let t = Instant::now();
        let err = loop {
            match s.write_all(&[0u8; 16 * 1024]).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => break e,
            }
        };
        println!("the writer learned it after {:?}", t.elapsed());
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert_eq!(reason_of(&err), Some(CloseReason::ResetByPeer));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_whose_peer_finishes_ends_gracefully() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        let (s, peer) = tokio::join!(a.open_session(b.id(), "q"), accept_one(&b));
        let (mut s, mut peer) = (s.unwrap(), peer);
        peer.write_all(b"reply").await.unwrap();
        drop(peer);
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply");
        s.shutdown().await.unwrap();
        assert_eq!(
            timeout(Duration::from_secs(5), closed_reason_eventually(&s))
                .await
                .unwrap(),
            CloseReason::Graceful
        );
    })
    .await
    .unwrap();
}

/// Polls a session's close reason (the driver keeps it for the handle).
async fn closed_reason_eventually(s: &astral_tokio::Session) -> CloseReason {
    loop {
        if let Some(r) = s.close_reason() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stranger() -> NodeId {
    Identity::from_seed([77; 32]).node_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_a_stream_fails_at_once() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let t = Instant::now();
        let r = a.open_session(stranger(), "q").await;
        assert!(
            matches!(r, Err(Error::Unreachable(p)) if p == stranger()),
            "{r:?}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert!(a.sessions().is_empty(), "nothing left behind");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_waits_for_a_redial_no_longer_than_the_connect_timeout() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        let addr = b.listen("127.0.0.1:0").await.unwrap();
        serve_echo(&b);
        a.set_redial(Some((
            Duration::from_millis(20),
            Duration::from_millis(100),
        )));
        a.set_connect_timeout(Duration::from_millis(700));
        let st = a.connect(b.id(), addr).await.unwrap();
        // The stream dies; a redial starts and succeeds: `open` waits for it.
        assert!(a.kill_transport(st));
        timeout(Duration::from_secs(5), async {
            while !a.peer_streams(b.id()).is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        let mut s = a.open_session(b.id(), "echo").await.unwrap();
        echo(&mut s, b"after the redial").await;
        drop(s);
        // Now the peer is gone for good: the redial cannot succeed, and
        // `open` gives up after the connect timeout, not `routing_timeout`.
        b.shutdown();
        b.closed().await;
        timeout(Duration::from_secs(5), async {
            while !a.peer_streams(b.id()).is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        let t = Instant::now();
        let r = a.open_session(b.id(), "echo").await;
        let took = t.elapsed();
        println!("open gave up after {took:?}");
        assert!(matches!(r, Err(Error::Unreachable(_))), "{r:?}");
        assert!(
            took >= Duration::from_millis(650) && took < Duration::from_secs(3),
            "{took:?}"
        );
    })
    .await
    .unwrap();
}
