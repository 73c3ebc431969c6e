//! Echo client: opens an "echo" session, sends a message (or stdin), prints
//! what comes back.
//!
//! ```text
//! cargo run -p astral-tokio --example echo_client -- <KEYFILE|SEED> <ADDR> <SERVER_ID> [MESSAGE]
//! cargo run -p astral-tokio --example echo_client -- client 127.0.0.1:4000 3b6a…e1 "hello"
//! ```

use astral_tokio::{Config, Identity, Node, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A key file path, or any other text used as a seed (for demos only).
fn identity(arg: &str) -> Identity {
    match std::fs::read_to_string(arg) {
        Ok(text) => Identity::parse_key_file(&text).unwrap_or_else(|e| panic!("{arg}: {e}")),
        Err(_) => {
            let mut seed = [0u8; 32];
            for (i, b) in arg.bytes().enumerate() {
                seed[i % 32] ^= b.wrapping_add(i as u8);
            }
            Identity::from_seed(seed)
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: echo_client <KEYFILE|SEED> <ADDR> <SERVER_ID> [MESSAGE]";
    let mut args = std::env::args().skip(1);
    let key = args.next().ok_or(usage)?;
    let addr = args.next().ok_or(usage)?;
    let server: NodeId = args.next().ok_or(usage)?.parse()?;
    let message = match args.next() {
        Some(m) => m.into_bytes(),
        None => {
            let mut buf = Vec::new();
            tokio::io::stdin().read_to_end(&mut buf).await?;
            buf
        }
    };

    let node = Node::new(identity(&key), Config::default()).expect("valid config");
    let stream = node.connect(server, &addr).await?;
    eprintln!("stream {stream} up with {server}");
    let session = node.open_session(server, "echo").await?;
    let (mut r, mut w) = session.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&message).await?;
        w.shutdown().await
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await?;
    writer.await??;
    tokio::io::stdout().write_all(&back).await?;
    Ok(())
}
