//! `Node::connect_and_open`: the session's Query rides behind the
//! handshake's message 3 (the round-trip count itself is asserted in
//! virtual time by `tests/tests/sim_setup.rs`; here: the driver's
//! behaviour over real loopback TCP, and its errors).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use astral_tokio::{AllowList, Error};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

/// Echoes every session's bytes until end-of-stream.
fn serve_echo(node: &astral_tokio::Node) {
    serve(node, |_, s| async move {
        let (mut r, mut w) = s.into_split();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).await.unwrap();
            w.flush().await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_open_echoes_on_the_new_stream() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        let addr = b.listen("127.0.0.1:0").await.unwrap();
        serve_echo(&b);
        for round in 0..3u8 {
            let (stream, mut s) = a.connect_and_open(b.id(), addr, "echo").await.unwrap();
            assert_eq!(s.info().unwrap().send_stream, Some(stream), "round {round}");
            s.write_all(&[round; 100]).await.unwrap();
            s.flush().await.unwrap();
            let mut back = [0u8; 100];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round; 100]);
            drop(s);
            a.close_stream(stream).unwrap();
        }
    })
    .await
    .unwrap();
}

/// A listener whose accept policy refuses this key: the dial's error, at
/// once (not the session's routing timeout), and the listener's
/// application never saw the Query that rode behind message 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dialer_gets_the_dial_error_at_once() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        b.set_accept_policy(Some(Arc::new(AllowList::new())));
        let addr = b.listen("127.0.0.1:0").await.unwrap();
        let mut incoming = b.incoming();
        let start = Instant::now();
        let r = a.connect_and_open(b.id(), addr, "echo").await;
        assert!(
            matches!(r, Err(Error::Handshake { .. })),
            "the dial's error comes first: {r:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(b.admission_stats().not_allowed, 1);
        assert!(
            timeout(Duration::from_millis(300), incoming.next())
                .await
                .is_err(),
            "the refused dialer's Query reached the application"
        );
        // The open, dropped with the dial, reset its session.
        let t = Instant::now();
        while !a.sessions().is_empty() && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a.sessions().is_empty(), "{:?}", a.sessions());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_query_is_the_session_s_error() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        let addr = b.listen("127.0.0.1:0").await.unwrap();
        let bb = b.clone();
        tokio::spawn(async move {
            let mut incoming = bb.incoming();
            while let Some(q) = incoming.next().await {
                q.reject(42);
            }
        });
        let r = a.connect_and_open(b.id(), addr, "no").await;
        assert!(matches!(r, Err(Error::Rejected { code: 42, .. })), "{r:?}");
    })
    .await
    .unwrap();
}
