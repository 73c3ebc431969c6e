//! 10,000 concurrent echo sessions from 4 client nodes (one thread each)
//! against one echo server node, every byte checked.

#[path = "../examples/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use astral_core::Identity;
use astral_mio::MioNode;

#[test]
fn ten_thousand_concurrent_echo_sessions() {
    const SESSIONS: usize = 10_000;
    const PEERS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut node =
            MioNode::new(Identity::from_seed([1; 32]), common::server_config(), 1).expect("node");
        let addr = node
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        tx.send((node.local_id(), addr)).expect("test thread");
        let mut server = common::EchoServer::default();
        let deadline = Instant::now() + Duration::from_secs(150);
        common::run_server(&mut node, &mut server, |s| {
            (stop2.load(Ordering::Relaxed) && s.completed + s.failed >= SESSIONS as u64)
                || Instant::now() > deadline
        })
        .expect("server loop");
        server
    });
    let (id, addr) = rx.recv_timeout(Duration::from_secs(10)).expect("server up");
    let start = Instant::now();
    let clients: Vec<_> = (0..PEERS)
        .map(|c| {
            std::thread::spawn(move || {
                common::run_client(
                    c as u64 + 1,
                    id,
                    addr,
                    SESSIONS / PEERS,
                    200,
                    Duration::from_secs(120),
                )
            })
        })
        .collect();
    let mut ok = 0;
    for c in clients {
        let r = c.join().expect("client thread").expect("client run");
        assert_eq!(r.bad, 0, "{r:?}");
        ok += r.ok;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let server = server.join().expect("server thread");
    eprintln!(
        "{ok} sessions echoed in {:.2} s; server: {} completed, {} failed, {} at once at peak",
        elapsed.as_secs_f64(),
        server.completed,
        server.failed,
        server.peak
    );
    assert_eq!(ok, SESSIONS);
    assert_eq!((server.completed, server.failed), (SESSIONS as u64, 0));
}
