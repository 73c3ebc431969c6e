//! Many sessions over one loopback stream: opening them must batch the
//! records (not one socket write per open/accept/write), and every session
//! must see its first round trip.
//!
//! `cargo test --release -p astral-tokio --test open_many -- --nocapture`
//! prints the timing; `OPEN_MANY=100000` changes the session count.

mod common;

use std::time::{Duration, Instant};

use astral_tokio::{Config, Node, Session};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Opens in flight at once (below the default `max_pending_queries`).
const PIPELINE: usize = 512;

/// Server: accepts every query, answers its first byte, holds the session.
fn serve_idle(node: &Node, held: mpsc::UnboundedSender<Session>) {
    let mut incoming = node.incoming();
    tokio::spawn(async move {
        while let Some(q) = incoming.next().await {
            let mut s = q.accept().unwrap();
            let held = held.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
                let _ = held.send(s);
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_over_one_stream() {
    let n: usize = std::env::var("OPEN_MANY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let cfg = Config {
        max_sessions_per_peer: n + 64,
        max_sessions: n + 64,
        ..config()
    };
    let (a, b, _) = pair(cfg, 1).await;
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    serve_idle(&b, held_tx);
    let peer = b.id();

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..PIPELINE {
        let a = a.clone();
        let count = n / PIPELINE + usize::from(w < n % PIPELINE);
        tasks.spawn(async move {
            let mut v = Vec::with_capacity(count);
            for _ in 0..count {
                let mut s = a.open_session(peer, "idle").await.unwrap();
                s.write_all(b"I").await.unwrap();
                v.push(s);
            }
            v
        });
    }
    let mut sessions = Vec::with_capacity(n);
    timeout(Duration::from_secs(120), async {
        while let Some(v) = tasks.join_next().await {
            sessions.extend(v.unwrap());
        }
    })
    .await
    .expect("opens timed out");
    let open = start.elapsed();
    timeout(Duration::from_secs(120), async {
        let mut b = [0u8; 1];
        for s in &mut sessions {
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"I");
        }
    })
    .await
    .expect("first round trips timed out");
    let ready = start.elapsed();
    let mut server_held = Vec::with_capacity(n);
    while server_held.len() < n {
        server_held.push(held_rx.recv().await.unwrap());
    }
    assert_eq!(sessions.len(), n);
    println!(
        "{n} sessions over one stream: open {:.1} ms, ready {:.1} ms",
        open.as_secs_f64() * 1e3,
        ready.as_secs_f64() * 1e3
    );
    assert_eq!(a.sessions().len(), n);
    drop(sessions);
    drop(server_held);
}
