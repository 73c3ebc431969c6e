//! The zero-copy surface of `Session` (`write_chunk` / `read_chunk`), the
//! close reason it keeps (`closed()`), and `Node::add_tcp`.

mod common;

use std::time::Duration;

use astral_tokio::{CloseReason, Role};
use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

/// 8 MiB written as shared 1 MiB chunks (and some small ones) arrive intact
/// through `read_chunk`, in chunks no larger than asked for; the reader
/// then sees end-of-stream and both ends a graceful close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_round_trip_and_respect_max() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        let (got_tx, got_rx) = tokio::sync::oneshot::channel();
        let got_tx = std::sync::Mutex::new(Some(got_tx));
        serve(&b, move |_, mut s| {
            let tx = got_tx.lock().unwrap().take().unwrap();
            async move {
                let mut got = Vec::new();
                let mut chunks = 0usize;
                let mut largest = 0usize;
                while let Some(c) = s.read_chunk(100_000).await.unwrap() {
                    assert!(!c.is_empty(), "empty chunk before end-of-stream");
                    largest = largest.max(c.len());
                    chunks += 1;
                    got.extend_from_slice(&c);
                }
                // End-of-stream stays end-of-stream.
                assert!(s.read_chunk(10).await.unwrap().is_none());
                s.shutdown().await.unwrap();
                let reason = s.closed().await;
                let _ = tx.send((got, chunks, largest, reason));
            }
        });
        let mut s = a.open_session(b.id(), "chunks").await.unwrap();
        let mut block = vec![0u8; 1 << 20];
        Gen::new(9).fill(&mut block);
        let block = Bytes::from(block);
        let mut want = Vec::new();
        for i in 0..8 {
            s.write_chunk(block.clone()).await.unwrap();
            want.extend_from_slice(&block);
            let small = Bytes::from(vec![i as u8; 100]);
            s.write_chunk(small.clone()).await.unwrap();
            want.extend_from_slice(&small);
        }
        s.write_chunk(Bytes::new()).await.unwrap();
        s.shutdown().await.unwrap();
        assert!(s.read_chunk(1024).await.unwrap().is_none());
        let (got, chunks, largest, reason) = got_rx.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
        assert!(largest <= 100_000, "chunk of {largest} bytes > max");
        assert!(chunks >= want.len() / 100_000, "{chunks} chunks");
        assert_eq!(reason, CloseReason::Graceful);
        assert_eq!(s.closed().await, CloseReason::Graceful);
        // After the close, writes fail and reads see end-of-stream.
        assert!(s.write_chunk(Bytes::from_static(b"x")).await.is_err());
        assert_eq!(s.close_reason(), Some(CloseReason::Graceful));
    })
    .await
    .expect("test timed out");
}

/// The split halves have the same surface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_chunks_and_closed() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        serve(&b, |_, s| async move {
            let (mut r, mut w) = s.into_split();
            while let Some(c) = r.read_chunk(1 << 16).await.unwrap() {
                w.write_chunk(c).await.unwrap();
            }
            w.shutdown().await.unwrap();
            assert_eq!(r.closed().await, CloseReason::Graceful);
        });
        let s = a.open_session(b.id(), "echo").await.unwrap();
        let (mut r, mut w) = s.into_split();
        let payload = Bytes::from(vec![5u8; 300_000]);
        let writer = {
            let p = payload.clone();
            tokio::spawn(async move {
                w.write_chunk(p).await.unwrap();
                w.shutdown().await.unwrap();
                w
            })
        };
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert_eq!(back.len(), payload.len());
        let w = writer.await.unwrap();
        assert_eq!(w.closed().await, CloseReason::Graceful);
        assert_eq!(r.closed().await, CloseReason::Graceful);
    })
    .await
    .expect("test timed out");
}

/// `closed()` reports a peer's reset, whether it is waiting when the reset
/// arrives or called long after; the reason is never lost while a handle
/// lives (the CLI's "close reason lost" bug came from racing an event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_reports_reset_before_and_after() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        serve(&b, |_, mut s| async move {
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await.unwrap();
            s.reset();
        });
        let s = a.open_session(b.id(), "x").await.unwrap();
        let (r, mut w) = s.into_split();
        // Waiting before it happens.
        let waiter = tokio::spawn(async move { r.closed().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "closed() returned on an open session"
        );
        w.write_all(b"!").await.unwrap();
        assert_eq!(waiter.await.unwrap(), CloseReason::ResetByPeer);
        // Called after the fact, many times.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            assert_eq!(w.closed().await, CloseReason::ResetByPeer);
        }
    })
    .await
    .expect("test timed out");
}

/// `add_tcp` with sockets the application accepted and dialed itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_tcp_both_roles() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dial = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (acc, _) = l.accept().await.unwrap();
        let (sa, sb) = tokio::join!(
            a.add_tcp(dial, Role::Dial(b.id())),
            b.add_tcp(acc, Role::Accept)
        );
        let (sa, _sb) = (sa.unwrap(), sb.unwrap());
        assert_eq!(a.peer_streams(b.id()), vec![sa]);
        serve(&b, |_, s| async move {
            let (mut r, mut w) = s.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        let mut s = a.open_session(b.id(), "echo").await.unwrap();
        s.write_all(b"tcp").await.unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"tcp");
        // A wrong id over add_tcp fails with a message naming the causes.
        let c = node(3, config());
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr2 = l2.local_addr().unwrap();
        let bb = b.clone();
        tokio::spawn(async move {
            let (t, _) = l2.accept().await.unwrap();
            let _ = bb.add_tcp(t, Role::Accept).await;
        });
        let dial = tokio::net::TcpStream::connect(addr2).await.unwrap();
        let e = c.add_tcp(dial, Role::Dial(a.id())).await.unwrap_err();
        // The reason is the error's source.
        let msg = astral_tokio::astral_core::error::chain(&e);
        assert!(
            msg.contains("wrong peer id") && msg.contains("busy"),
            "{msg}"
        );
    })
    .await
    .expect("test timed out");
}

/// Either half can abort the session: the peer reads a reset, not an end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_reset() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        serve(&b, move |_, mut s| {
            let tx = tx.clone();
            async move {
                let mut buf = Vec::new();
                let r = s.read_to_end(&mut buf).await;
                let _ = tx.send((buf, r.map_err(|e| e.kind())));
            }
        });
        for which in ["writer", "reader"] {
            let s = a.open_session(b.id(), which).await.unwrap();
            let (r, mut w) = s.into_split();
            w.write_all(b"partial").await.unwrap();
            if which == "writer" {
                w.reset();
                drop(r);
            } else {
                r.reset();
                drop(w);
            }
            let (_, res) = rx.recv().await.unwrap();
            assert_eq!(res, Err(std::io::ErrorKind::ConnectionReset), "{which}");
        }
    })
    .await
    .expect("test timed out");
}
