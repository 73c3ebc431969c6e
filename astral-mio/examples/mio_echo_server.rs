//! Echo server: serves the query `"echo"` for any number of concurrent
//! sessions from any number of peers.
//!
//! ```text
//! cargo run -p astral-mio --release --example mio_echo_server -- [LISTEN_ADDR] [SEED]
//! ```
//! Prints its node id and address; run `mio_echo_client` against them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use astral_core::Identity;
use astral_mio::MioNode;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:7070".into())
        .parse()
        .expect("LISTEN_ADDR: ip:port");
    let seed: u8 = args
        .next()
        .map(|s| s.parse().expect("SEED: 0..=255"))
        .unwrap_or(1);
    let mut node = MioNode::new(
        Identity::from_seed([seed; 32]),
        common::server_config(),
        u64::from(seed),
    )?;
    let bound = node.listen(addr)?;
    println!("echo server {} listening on {bound}", node.local_id());
    let mut server = common::EchoServer::default();
    let mut last = Instant::now();
    let mut reported = (0, 0);
    common::run_server(&mut node, &mut server, |s| {
        if last.elapsed() > Duration::from_secs(5) && (s.completed, s.failed) != reported {
            last = Instant::now();
            reported = (s.completed, s.failed);
            println!(
                "sessions: {} completed, {} failed, {} bytes echoed",
                s.completed, s.failed, s.bytes
            );
        }
        false
    })
}
