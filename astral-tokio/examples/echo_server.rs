//! Echo server: answers every "echo" session with the bytes it receives.
//!
//! ```text
//! cargo run -p astral-tokio --example echo_server -- <KEYFILE|SEED> [ADDR]
//! cargo run -p astral-tokio --example echo_server -- server 127.0.0.1:4000
//! ```
//! It prints its node id; give that to `echo_client`.

use astral_tokio::{codes, Config, Identity, Node};

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
    let mut args = std::env::args().skip(1);
    let key = args
        .next()
        .ok_or("usage: echo_server <KEYFILE|SEED> [ADDR]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4000".into());
    let node = Node::new(identity(&key), Config::default()).expect("valid config");
    let bound = node.listen(&addr).await?;
    println!("node {} listening on {bound}", node.id());
    let mut incoming = node.incoming();
    while let Some(q) = incoming.next().await {
        if q.query() != "echo" {
            println!("{} asked {:?}: rejected", q.peer(), q.query());
            q.reject(codes::NO_SUCH_SERVICE);
            continue;
        }
        let session = q.accept()?;
        println!("echo session {} with {}", session.id(), session.peer());
        tokio::spawn(async move {
            let (mut r, mut w) = session.into_split();
            match tokio::io::copy(&mut r, &mut w).await {
                Ok(n) => println!("echoed {n} bytes"),
                Err(e) => println!("session failed: {e}"),
            }
        });
    }
    Ok(())
}
