//! Echo client: several client nodes (one thread each) open many
//! concurrent sessions against an echo server and check every byte.
//!
//! ```text
//! cargo run -p astral-mio --release --example mio_echo_client -- SERVER_ID ADDR [SESSIONS] [PEERS] [SIZE]
//! cargo run -p astral-mio --release --example mio_echo_client -- --local [SESSIONS] [PEERS] [SIZE]
//! ```
//! `--local` starts an echo server in-process first. Defaults: 10,000
//! sessions spread over 4 client nodes, 256 bytes each.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use astral_core::Identity;
use astral_mio::{MioNode, NodeId};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (server_id, addr, rest, local) = if args.first().map(String::as_str) == Some("--local") {
        let (id, addr) = spawn_local_server();
        (id, addr, &args[1..], true)
    } else if args.len() >= 2 {
        let id: NodeId = args[0].parse().expect("SERVER_ID: 64 hex chars");
        let addr: SocketAddr = args[1].parse().expect("ADDR: ip:port");
        (id, addr, &args[2..], false)
    } else {
        eprintln!("usage: mio_echo_client SERVER_ID ADDR [SESSIONS] [PEERS] [SIZE] | --local [SESSIONS] [PEERS] [SIZE]");
        std::process::exit(2);
    };
    let num = |i: usize, d: usize| {
        rest.get(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(d)
    };
    let (sessions, peers, size) = (num(0, 10_000), num(1, 4).max(1), num(2, 256));
    println!("{sessions} sessions of {size} bytes from {peers} client nodes to {server_id} at {addr} (local: {local})");
    let start = Instant::now();
    let threads: Vec<_> = (0..peers)
        .map(|c| {
            let n = sessions / peers + usize::from(c < sessions % peers);
            std::thread::spawn(move || {
                common::run_client(
                    c as u64 + 1,
                    server_id,
                    addr,
                    n,
                    size,
                    Duration::from_secs(120),
                )
            })
        })
        .collect();
    let (mut ok, mut bad) = (0, 0);
    for t in threads {
        match t.join().expect("client thread panicked") {
            Ok(r) => {
                ok += r.ok;
                bad += r.bad;
            }
            Err(e) => {
                eprintln!("client failed: {e}");
                bad += 1;
            }
        }
    }
    let el = start.elapsed();
    println!(
        "{ok} sessions echoed intact, {bad} failed, in {:.2} s ({:.0} sessions/s)",
        el.as_secs_f64(),
        ok as f64 / el.as_secs_f64()
    );
    std::process::exit(if bad == 0 && ok == sessions { 0 } else { 1 });
}

fn spawn_local_server() -> (NodeId, SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        let mut node =
            MioNode::new(Identity::from_seed([1; 32]), common::server_config(), 1).expect("node");
        let addr = node
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        tx.send((node.local_id(), addr)).expect("main thread");
        let mut server = common::EchoServer::default();
        common::run_server(&mut node, &mut server, |_| stop.load(Ordering::Relaxed))
            .expect("server loop");
    });
    rx.recv().expect("server started")
}
