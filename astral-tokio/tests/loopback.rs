//! The driver over real loopback TCP.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use astral_tokio::{codes, Error, Event, Identity, Node};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

fn parse(query: &str) -> (u64, usize) {
    // "data?seed=S&len=L"
    let q = query.strip_prefix("data?").unwrap();
    let mut seed = 0;
    let mut len = 0;
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "seed" => seed = v.parse().unwrap(),
            "len" => len = v.parse().unwrap(),
            _ => {}
        }
    }
    (seed, len)
}

/// Serves "data?seed=S&len=L": checks the L bytes generated from S, then
/// answers L/2 bytes generated from S+1.
fn serve_data(node: &Node) {
    serve(node, |query, s| async move {
        let (seed, len) = parse(&query);
        let (mut r, mut w) = s.into_split();
        let got = recv_check(&mut r, seed).await;
        assert_eq!(got, len);
        send_gen(&mut w, seed + 1, len / 2, 7_919).await;
    });
}

async fn run_data(node: Node, peer: astral_tokio::NodeId, seed: u64, len: usize) {
    let s = node
        .open_session(peer, &format!("data?seed={seed}&len={len}"))
        .await
        .unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move { send_gen(&mut w, seed, len, 5_003).await });
    let got = recv_check(&mut r, seed + 1).await;
    assert_eq!(got, len / 2);
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_each_way() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        serve_data(&a);
        serve_data(&b);
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let len = 1 + (Gen::new(i).next_u64() % 300_000) as usize;
            tasks.push(tokio::spawn(run_data(a.clone(), b.id(), i * 2, len)));
            tasks.push(tokio::spawn(run_data(
                b.clone(),
                a.id(),
                1_000 + i * 2,
                len,
            )));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Every session ends gracefully and is forgotten.
        timeout(Duration::from_secs(10), async {
            while !a.sessions().is_empty() || !b.sessions().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("sessions linger");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_query_code_reaches_opener() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        let b2 = b.clone();
        tokio::spawn(async move {
            while let Some(q) = b2.next_query().await {
                assert_eq!(q.query(), "nope");
                q.reject(42);
            }
        });
        match a.open_session(b.id(), "nope").await {
            Err(Error::Rejected { code, peer }) => {
                assert_eq!(code, 42);
                assert_eq!(peer, b.id());
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        // A dropped query is rejected too.
        let b3 = b.clone();
        tokio::spawn(async move { drop(b3.next_query().await) });
        let e = a.open_session(b.id(), "nope").await.unwrap_err();
        assert!(matches!(e, Error::Rejected { .. }), "{e}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peer() {
    timeout(LIMIT, async {
        // A closed port: the TCP connection is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let cfg = astral_tokio::Config {
            routing_timeout: Duration::from_millis(300),
            ..config()
        };
        let a = node(1, cfg);
        let other = Identity::from_seed([9; 32]).node_id();
        match a.connect(other, port).await {
            Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
            r => panic!("expected connection refused, got {r:?}"),
        }
        // No stream to the peer: the query times out as unreachable.
        let t0 = std::time::Instant::now();
        match a.open_session(other, "echo").await {
            Err(e @ Error::Unreachable(_)) => assert!(e.to_string().contains("unreachable"), "{e}"),
            r => panic!("expected unreachable, got {r:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(a.sessions().is_empty());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_peer_id_fails_handshake_clearly() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        let addr = b.listen("127.0.0.1:0").await.unwrap();
        let wrong = Identity::from_seed([3; 32]).node_id();
        let e = a.connect(wrong, addr).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Handshake { .. }), "{msg}");
        assert!(
            msg.contains("handshake with") && msg.contains(&wrong.to_string()),
            "{msg}"
        );
        // Neither side keeps anything.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(a.streams().is_empty(), "{:?}", a.streams());
        assert!(b.streams().is_empty(), "{:?}", b.streams());
        // The right id still works afterwards.
        a.connect(b.id(), addr).await.unwrap();
    })
    .await
    .expect("test timed out");
}

const BIG: usize = 20 << 20;

/// A 20 MiB one-way transfer a→b on a session; `mid` runs once half of it
/// was written. Returns the session id.
async fn transfer_with<F>(a: &Node, b: &Node, mid: F) -> astral_tokio::SessionId
where
    F: FnOnce(astral_tokio::SessionId) + Send + 'static,
{
    serve(b, |query, mut s| async move {
        let (seed, len) = parse(&query);
        let got = recv_check(&mut s, seed).await;
        assert_eq!(got, len);
        s.write_all(b"ok").await.unwrap();
        s.shutdown().await.unwrap();
    });
    let s = a
        .open_session(b.id(), &format!("data?seed=77&len={BIG}"))
        .await
        .unwrap();
    let id = s.id();
    let (mut r, mut w) = s.into_split();
    let mut g = Gen::new(77);
    let mut buf = vec![0u8; 64 * 1024];
    let mut mid = Some(mid);
    let mut sent = 0;
    while sent < BIG {
        g.fill(&mut buf);
        w.write_all(&buf).await.unwrap();
        sent += buf.len();
        if sent >= BIG / 2 {
            if let Some(f) = mid.take() {
                f(id);
            }
        }
    }
    w.shutdown().await.unwrap();
    let mut ok = Vec::new();
    r.read_to_end(&mut ok).await.unwrap();
    assert_eq!(ok, b"ok");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_mid_transfer() {
    timeout(LIMIT, async {
        let cfg = astral_tokio::Config {
            auto_migrate: false,
            ..config()
        };
        let (a, b, _) = pair(cfg, 2).await;
        let mut events = a.events();
        let a2 = a.clone();
        let migrated = std::sync::Arc::new(std::sync::Mutex::new(None));
        let m2 = migrated.clone();
        let id = transfer_with(&a, &b, move |id| {
            let info = a2.session_info(id).unwrap();
            let target = a2
                .peer_streams(info.peer)
                .into_iter()
                .find(|s| Some(*s) != info.send_stream)
                .unwrap();
            a2.migrate(id, target).unwrap();
            *m2.lock().unwrap() = Some((info.send_stream.expect("bound"), target));
        })
        .await;
        let (from, to) = migrated.lock().unwrap().unwrap();
        let ev = wait_event(
            &mut events,
            |e| matches!(e, Event::Migrated { session, .. } if *session == id),
        )
        .await;
        assert_eq!(
            ev,
            Event::Migrated {
                session: id,
                from,
                to
            }
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_mid_transfer_recovers() {
    timeout(LIMIT, async {
        let cfg = astral_tokio::Config {
            auto_migrate: false,
            ..config()
        };
        let (a, b, _) = pair(cfg, 2).await;
        let mut events = a.events();
        let a2 = a.clone();
        let id = transfer_with(&a, &b, move |id| {
            let info = a2.session_info(id).unwrap();
            assert!(a2.kill_transport(info.send_stream.expect("bound")));
        })
        .await;
        let ev = wait_event(
            &mut events,
            |e| matches!(e, Event::Recovered { session, .. } if *session == id),
        )
        .await;
        assert!(matches!(ev, Event::Recovered { .. }));
        assert_eq!(a.peer_streams(b.id()).len(), 1);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_is_redialed() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        a.set_redial(Some((
            Duration::from_millis(20),
            Duration::from_millis(200),
        )));
        let s = a.peer_streams(b.id())[0];
        assert!(a.kill_transport(s));
        loop {
            let streams = a.peer_streams(b.id());
            if streams.len() == 1 && streams[0] != s {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A stream closed on purpose is not redialed.
        let s2 = a.peer_streams(b.id())[0];
        a.close_stream(s2).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a.peer_streams(b.id()).is_empty());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        serve(&b, |_, mut s| async move {
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"question");
            // Still writable after reading end-of-stream.
            s.write_all(b"answer").await.unwrap();
            s.shutdown().await.unwrap();
        });
        let mut s = a.open_session(b.id(), "qa").await.unwrap();
        s.write_all(b"question").await.unwrap();
        s.shutdown().await.unwrap();
        let e = s.write_all(b"more").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        // End-of-stream again, then the session is gone gracefully.
        assert_eq!(s.read(&mut [0u8; 8]).await.unwrap(), 0);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reaches_reader_as_error() {
    timeout(LIMIT, async {
        let (a, b, _) = pair(config(), 1).await;
        serve(&b, |_, mut s| async move {
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await.unwrap();
            s.reset();
        });
        let mut s = a.open_session(b.id(), "x").await.unwrap();
        s.write_all(b"!").await.unwrap();
        let e = s.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert!(e.to_string().contains("reset by peer"), "{e}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_bounds_memory() {
    timeout(LIMIT, async {
        let cfg = config();
        let (window, send_buffer) = (u64::from(cfg.recv_window), u64::from(cfg.send_buffer));
        let (a, b, _) = pair(cfg, 1).await;
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let held_tx = std::sync::Mutex::new(Some(held_tx));
        serve(&b, move |_, s| {
            // Accept and never read.
            let tx = held_tx.lock().unwrap().take().unwrap();
            async move {
                let _ = tx.send(s);
            }
        });
        let mut s = a.open_session(b.id(), "sink").await.unwrap();
        let _held = held_rx.await.unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0u64;
        // The writer must block well before 16 MiB.
        loop {
            match timeout(Duration::from_millis(500), s.write(&chunk)).await {
                Ok(n) => written += n.unwrap() as u64,
                Err(_) => break,
            }
            assert!(written < 16 << 20, "writer never blocked");
        }
        let stats = s.info().unwrap().stats;
        assert!(stats.bytes_retained <= window + send_buffer, "{stats:?}");
        assert_eq!(written, stats.bytes_written);
        assert!(written >= window, "wrote only {written}");
        let bstats = b.sessions()[0].stats;
        assert!(bstats.bytes_buffered <= window, "{bstats:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_transport_and_drain() {
    timeout(LIMIT, async {
        let a = node(1, config());
        let b = node(2, config());
        for _ in 0..2 {
            let (x, y) = tokio::io::duplex(1 << 16);
            let (ra, rb) = tokio::join!(
                a.add_transport(x, astral_tokio::Role::Dial(b.id())),
                b.add_transport(y, astral_tokio::Role::Accept)
            );
            ra.unwrap();
            rb.unwrap();
        }
        serve(&b, |_, s| async move {
            let (mut r, mut w) = s.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        let mut s = a.open_session(b.id(), "echo").await.unwrap();
        s.write_all(b"before").await.unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).await.unwrap();
        let on = s.info().unwrap().send_stream.expect("bound");
        assert_eq!(a.drain_stream(on).unwrap(), 1);
        s.write_all(b"after!").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"after!");
        timeout(Duration::from_secs(10), async {
            while a.peer_streams(b.id()).len() != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("drained stream not closed");
        assert_ne!(s.info().unwrap().send_stream, Some(on));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_reexported() {
    assert_eq!(codes::ACCEPTED, 0);
}
