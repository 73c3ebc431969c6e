//! Many peers at once through one node: every peer's bytes arrive exactly
//! once and in order while all of them run concurrently on the node's
//! per-peer engines.

mod common;

use std::time::Duration;

use common::{node, recv_check, send_gen};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

/// Four client nodes each send 4 MiB to one server node at the same time
/// and read them back; the server checks every byte it receives and echoes
/// it, each client checks what comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_peers_at_once_every_byte_once_in_order() {
    const LEN: usize = 4 << 20;
    timeout(LIMIT, async {
        let server = node(100, common::config());
        let addr = server.listen("127.0.0.1:0").await.unwrap();
        let srv = server.clone();
        let served = tokio::spawn(async move {
            let mut checks = Vec::new();
            for _ in 0..4 {
                let q = srv.next_query().await.unwrap();
                let seed: u64 = q.query().parse().unwrap();
                let s = q.accept().unwrap();
                checks.push(tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    // Check on the way in, echo on the way out.
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
                    let echo = tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        while let Some(b) = rx.recv().await {
                            w.write_all(&b).await.unwrap();
                        }
                        w.shutdown().await.unwrap();
                    });
                    let mut g = common::Gen::new(seed);
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut want = vec![0u8; 64 * 1024];
                    let mut total = 0;
                    loop {
                        use tokio::io::AsyncReadExt;
                        let n = r.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        g.fill(&mut want[..n]);
                        assert!(buf[..n] == want[..n], "peer {seed}: mismatch at {total}");
                        total += n;
                        tx.send(buf[..n].to_vec()).await.unwrap();
                    }
                    drop(tx);
                    echo.await.unwrap();
                    total
                }));
            }
            let mut totals = Vec::new();
            for c in checks {
                totals.push(c.await.unwrap());
            }
            totals
        });
        let mut clients = Vec::new();
        for i in 0..4u8 {
            let server_id = server.id();
            clients.push(tokio::spawn(async move {
                let c = node(110 + i, common::config());
                c.connect(server_id, addr).await.unwrap();
                let seed = 1000 + u64::from(i);
                let s = c.open_session(server_id, &seed.to_string()).await.unwrap();
                let (mut r, mut w) = s.into_split();
                let send =
                    tokio::spawn(async move { send_gen(&mut w, seed, LEN, 48 * 1024).await });
                let back = recv_check(&mut r, seed).await;
                send.await.unwrap();
                drop(c);
                back
            }));
        }
        for c in clients {
            assert_eq!(c.await.unwrap(), LEN, "every byte back, once");
        }
        let totals = served.await.unwrap();
        assert_eq!(totals, vec![LEN; 4], "every byte in, once");
    })
    .await
    .expect("test timed out");
}
