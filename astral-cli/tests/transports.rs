//! Transports end to end: Unix sockets (`-b unix:/path`, `ID@unix:/path`)
//! and dialing through a SOCKS5 proxy (`--socks5`), against a minimal
//! SOCKS5 server written here (RFC 1928, no authentication, CONNECT only)
//! that records the destinations it was asked for.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A SOCKS5 server on loopback; `seen` gets every CONNECT destination as
/// the client wrote it (a host name stays a name: the proxy resolves it).
struct Socks5 {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn relay(mut a: TcpStream, mut b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

fn socks_session(mut c: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    // Greeting: VER, NMETHODS, METHODS; we take "no authentication".
    let mut h = [0u8; 2];
    c.read_exact(&mut h)?;
    let mut methods = vec![0u8; h[1] as usize];
    c.read_exact(&mut methods)?;
    assert_eq!(h[0], 5);
    assert!(methods.contains(&0));
    c.write_all(&[5, 0])?;
    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
    let mut r = [0u8; 4];
    c.read_exact(&mut r)?;
    assert_eq!((r[0], r[1]), (5, 1), "only CONNECT");
    let host = match r[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut n = [0u8; 1];
            c.read_exact(&mut n)?;
            let mut name = vec![0u8; n[0] as usize];
            c.read_exact(&mut name)?;
            String::from_utf8(name).unwrap()
        }
        t => panic!("address type {t} not handled by the test proxy"),
    };
    let mut p = [0u8; 2];
    c.read_exact(&mut p)?;
    let port = u16::from_be_bytes(p);
    seen.lock().unwrap().push(format!("{host}:{port}"));
    // The proxy resolves names (only "localhost" here).
    let target = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    match TcpStream::connect((target.as_str(), port)) {
        Ok(up) => {
            c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
            relay(c, up);
        }
        Err(_) => {
            // 5 = connection refused.
            c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
        }
    }
    Ok(())
}

impl Socks5 {
    fn start() -> Socks5 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = socks_session(c, s);
                });
            }
        });
        Socks5 { port, seen }
    }
}

#[test]
fn unix_socket_listen_and_dial() {
    let dir = Dir::new("unix");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let sock = dir.path("a.sock");
    let bind = format!("unix:{}", sock.display());
    let control = dir.path("c.sock");
    let mut l = Listener::spawn(
        &[
            "listen".into(),
            "-k".into(),
            ka.to_str().unwrap().into(),
            "-b".into(),
            bind.clone(),
            "--serve".into(),
            "echo=echo".into(),
            "--control".into(),
            control.to_str().unwrap().into(),
        ],
        &[],
        1,
    );
    assert_eq!(l.addrs[0], bind);
    let at = format!("{ida}@{bind}");
    let (st, out, err) = run_with(
        &["connect", "-k", kb.to_str().unwrap(), &at, "echo"],
        &[],
        b"over a unix socket",
    );
    assert!(st.success(), "{err}");
    assert_eq!(out, "over a unix socket");
    // The listener logged the stream with its transport.
    let line = l.wait_line("up: peer", Duration::from_secs(10));
    assert!(line.contains("(unix pid "), "{line}");
    // Two streams over the same socket, then a table that shows them.
    let mut c = Connect::spawn(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &at,
        "--streams",
        "2",
        "echo",
    ]);
    let streams = wait_for(Duration::from_secs(20), || {
        let v = ctl(&control, &["streams"]);
        (v.as_array().map_or(0, |a| a.len()) == 2).then_some(v)
    });
    assert!(streams
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["transport"] == "unix"));
    c.stdin.as_mut().unwrap().write_all(b"two").unwrap();
    let (st, out, err) = c.finish(LIMIT);
    assert!(st.success(), "{err}");
    assert_eq!(out, b"two");
    l.child.signal("TERM");
    let (st, _, _) = l.finish(Duration::from_secs(10));
    assert_eq!(st.code(), Some(143));
    assert!(!sock.exists(), "listening socket left behind");
}

#[test]
fn socks5_dialing_resolves_names_at_the_proxy() {
    let dir = Dir::new("socks");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let proxy = Socks5::start();
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let port = l.tcp_port(0);
    let kb = kb.to_str().unwrap();
    let px = format!("127.0.0.1:{}", proxy.port);
    // A name, as for an onion address: it must reach the proxy unresolved.
    let at = format!("{ida}@localhost:{port}");
    let (st, out, err) = run_with(
        &["-v", "connect", "-k", kb, "--socks5", &px, &at, "echo"],
        &[],
        b"via socks",
    );
    assert!(st.success(), "{err}");
    assert_eq!(out, "via socks");
    assert!(err.contains("socks5 localhost:"), "{err}");
    assert_eq!(
        proxy.seen.lock().unwrap().as_slice(),
        [format!("localhost:{port}")]
    );
    // The proxy cannot reach the target: the message says who failed.
    let dead = dead_port();
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb,
        "--socks5",
        &px,
        &format!("{ida}@localhost:{dead}"),
        "echo",
    ]);
    assert!(!st.success());
    assert!(err.contains("SOCKS5 proxy") && err.contains(&px), "{err}");
    // No proxy there.
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb,
        "--socks5",
        &format!("127.0.0.1:{}", dead_port()),
        &at,
        "echo",
    ]);
    assert!(!st.success());
    assert!(err.contains("cannot reach the SOCKS5 proxy"), "{err}");
}
