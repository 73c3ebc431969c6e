//! File transfer between two nodes in one process, over loopback TCP with
//! two streams; optionally migrates the session and kills the carrying TCP
//! connection half-way to show that nothing is lost.
//!
//! ```text
//! cargo run --release -p astral-tokio --example file_transfer -- <FILE> [--migrate] [--kill]
//! ```
//! The receiver counts the bytes and a checksum (FNV-1a) and compares them
//! with the sender's.

use std::time::Instant;

use astral_tokio::{Config, Event, Identity, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = None;
    let (mut migrate, mut kill) = (false, false);
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--migrate" => migrate = true,
            "--kill" => kill = true,
            _ => path = Some(a),
        }
    }
    let path = path.ok_or("usage: file_transfer <FILE> [--migrate] [--kill]")?;
    let size = std::fs::metadata(&path)?.len();

    let config = Config {
        auto_migrate: false,
        ..Config::default()
    };
    let sender = Node::new(Identity::from_seed([1; 32]), config.clone()).expect("valid config");
    let receiver = Node::new(Identity::from_seed([2; 32]), config).expect("valid config");
    let addr = receiver.listen("127.0.0.1:0").await?;
    sender.connect(receiver.id(), addr).await?;
    sender.connect(receiver.id(), addr).await?;

    // Receiver: accept one "file?size=N" session, count and hash.
    let rx = receiver.clone();
    let receiving = tokio::spawn(async move {
        let q = rx.next_query().await.expect("a query");
        let expected: u64 = q
            .query()
            .trim_start_matches("file?size=")
            .parse()
            .expect("size");
        let mut s = q.accept().expect("accept");
        let (mut n, mut h) = (0u64, FNV_START);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = s.read(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            n += k as u64;
            h = fnv(h, &buf[..k]);
        }
        s.write_all(format!("{n} {h:016x}").as_bytes())
            .await
            .expect("reply");
        s.shutdown().await.expect("shutdown");
        (expected, n, h)
    });

    let mut events = sender.events();
    let session = sender
        .open_session(receiver.id(), &format!("file?size={size}"))
        .await?;
    let id = session.id();
    let (mut r, mut w) = session.into_split();
    let mut file = tokio::fs::File::open(&path).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut sent, mut h) = (0u64, FNV_START);
    let (mut migrated, mut killed) = (false, false);
    let t0 = Instant::now();
    loop {
        let k = file.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        w.write_all(&buf[..k]).await?;
        sent += k as u64;
        h = fnv(h, &buf[..k]);
        if migrate && !migrated && sent >= size / 3 {
            let info = sender.session_info(id).ok_or("session gone")?;
            let from = info.send_stream.ok_or("session has no stream")?;
            if let Some(t) = sender
                .peer_streams(receiver.id())
                .into_iter()
                .find(|s| *s != from)
            {
                sender.migrate(id, t)?;
                println!("migrating {id} from {from} to {t}");
                migrated = true;
            }
        }
        if kill && !killed && sent >= 2 * size / 3 {
            let info = sender.session_info(id).ok_or("session gone")?;
            let on = info.send_stream.ok_or("session has no stream")?;
            println!("killing the TCP connection of {on}");
            sender.kill_transport(on);
            killed = true;
        }
    }
    w.shutdown().await?;
    let mut reply = String::new();
    r.read_to_string(&mut reply).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (expected, got, their_hash) = receiving.await?;
    while let Ok(ev) = events.try_recv() {
        match ev {
            Event::Migrated { .. } | Event::Recovering { .. } | Event::Recovered { .. } => {
                println!("event: {ev:?}")
            }
            _ => {}
        }
    }
    println!(
        "sent {sent} bytes in {secs:.2} s ({:.0} MiB/s)",
        sent as f64 / secs / 1048576.0
    );
    println!("receiver: {got} of {expected} bytes, checksum {their_hash:016x} (sender {h:016x}); reply {reply:?}");
    if got != size || their_hash != h {
        return Err("transfer corrupted".into());
    }
    println!("intact");
    Ok(())
}
