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

/// One-way delay of the virtual-time transport below.
const ONE_WAY: Duration = Duration::from_millis(10);

/// A byte pipe, one end per node, whose bytes arrive `ONE_WAY` after they
/// were written, in order (tokio's paused clock: exact virtual time).
fn delayed_pair() -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
    let (a, a_far) = tokio::io::duplex(1 << 20);
    let (b, b_far) = tokio::io::duplex(1 << 20);
    let (ar, aw) = tokio::io::split(a_far);
    let (br, bw) = tokio::io::split(b_far);
    tokio::spawn(forward(ar, bw));
    tokio::spawn(forward(br, aw));
    (a, b)
}

/// Copies `from` into `to`, each chunk `ONE_WAY` after it was read.
async fn forward(
    mut from: impl AsyncReadExt + Unpin + Send + 'static,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at + ONE_WAY).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Dial (over the delayed pipe), session, one byte echoed: the time from
/// the dial to the echo, in round trips. `together`: the session is opened
/// while the dial runs (what `connect_and_open` does); otherwise after the
/// dial resolved (the peer confirmed the stream).
async fn echo_rtts(together: bool) -> f64 {
    use astral_tokio::Role;
    let a = node(1, config());
    let b = node(2, config());
    serve_echo(&b);
    let (x, y) = delayed_pair();
    let bb = b.clone();
    tokio::spawn(async move { bb.add_transport(y, Role::Accept).await });
    let start = tokio::time::Instant::now();
    let mut s = if together {
        let (_, s) = tokio::try_join!(
            biased;
            a.add_transport(x, Role::Dial(b.id())),
            a.open_session(b.id(), "echo")
        )
        .unwrap();
        s
    } else {
        a.add_transport(x, Role::Dial(b.id())).await.unwrap();
        a.open_session(b.id(), "echo").await.unwrap()
    };
    s.write_all(b"!").await.unwrap();
    s.flush().await.unwrap();
    let mut back = [0u8; 1];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"!");
    start.elapsed().as_secs_f64() / (2 * ONE_WAY).as_secs_f64()
}

/// In the driver, on tokio's paused clock: a session opened with the dial
/// has its first byte echoed 3 round trips after the dial (its Query rode
/// behind message 3); one opened after the dial resolved, 4.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_session_opened_with_the_dial_saves_a_round_trip() {
    let together = echo_rtts(true).await;
    let after = echo_rtts(false).await;
    println!("dial -> echo: {together} RTT opened with the dial, {after} RTT after it");
    assert!((together - 3.0).abs() < 0.05, "{together} RTT");
    assert!((after - 4.0).abs() < 0.05, "{after} RTT");
}
