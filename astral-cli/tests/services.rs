//! Services and forwarding end to end: `--serve NAME=tcp:HOST:PORT`,
//! `unix:/path` and `exec:CMD`, and `connect --forward`, with half-close
//! carried both ways, backpressure (a backend that stops reading stops the
//! sender without the listener buffering), and resets passed on.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

/// A local TCP service: reads to EOF, then answers "got N bytes sha256 H"
/// and closes. Proves that the client's EOF (half-close) travelled all the
/// way, and that the answer comes back after it. Optionally waits before
/// reading anything (a slow backend).
fn summing_backend(pause: Duration) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        std::thread::sleep(pause);
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = c.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        let reply = format!("got {n} bytes sha256 {}\n", hex(&h.finalize()));
        c.write_all(reply.as_bytes()).unwrap();
        // Closing sends our FIN: the session's other direction ends.
    });
    (port, h)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn tcp_service_carries_half_close_and_backpressure() {
    let dir = Dir::new("svctcp");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    // The backend does not read for 2 s while 48 MiB come its way.
    let (port, backend) = summing_backend(Duration::from_secs(2));
    let serve = format!("sum=tcp:127.0.0.1:{port}");
    let l = Listener::start(&ka, 1, &["--serve", &serve]);
    let data = payload(48 << 20);
    let want = format!(
        "got {} bytes sha256 {}\n",
        data.len(),
        hex(&Sha256::digest(&data))
    );
    let mut c = Connect::spawn(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &format!("{ida}@{}", l.addrs[0]),
        "sum",
    ]);
    let mut stdin = c.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&data).unwrap();
        // EOF: the session half-closes; the backend sees EOF only now.
    });
    // While the backend is not reading, the listener must not buffer the
    // transfer: socket buffers and the session's window bound it.
    std::thread::sleep(Duration::from_millis(1500));
    let rss = rss_kib(l.child.pid());
    assert!(
        rss < 48 * 1024,
        "listener RSS {rss} KiB while its backend is not reading"
    );
    writer.join().unwrap();
    let (st, out, err) = c.finish(LIMIT);
    assert!(st.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out), want);
    backend.join().unwrap();
    println!("listener RSS with a stalled 48 MiB transfer: {rss} KiB");
}

#[test]
fn exec_and_unix_services() {
    let dir = Dir::new("svcexec");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    // A Unix-socket backend that echoes in upper case until EOF.
    let upath = dir.path("up.sock");
    let ul = std::os::unix::net::UnixListener::bind(&upath).unwrap();
    let upper = std::thread::spawn(move || {
        let (mut c, _) = ul.accept().unwrap();
        let mut v = Vec::new();
        c.read_to_end(&mut v).unwrap();
        c.write_all(&v.to_ascii_uppercase()).unwrap();
    });
    let l = Listener::start(
        &ka,
        1,
        &[
            "--serve",
            "wc=exec:wc -c",
            "--serve",
            "env=exec:printf '%s %s' \"$ASTRAL_QUERY\" \"$ASTRAL_PEER\"",
            "--serve",
            &format!("up=unix:{}", upath.display()),
        ],
    );
    let at = format!("{ida}@{}", l.addrs[0]);
    let kb = kb.to_str().unwrap();
    let (st, out, err) = run_with(&["connect", "-k", kb, &at, "wc"], &[], &payload(100_000));
    assert!(st.success(), "{err}");
    assert_eq!(out.trim(), "100000");
    let (st, out, err) = run_with(&["connect", "-k", kb, &at, "env"], &[], b"");
    assert!(st.success(), "{err}");
    let (q, p) = out.split_once(' ').unwrap();
    assert_eq!(q, "env");
    assert_eq!(p.len(), 64, "{out}");
    let (st, out, err) = run_with(&["connect", "-k", kb, &at, "up"], &[], b"hello unix\n");
    assert!(st.success(), "{err}");
    assert_eq!(out, "HELLO UNIX\n");
    upper.join().unwrap();
    // A backend that is down: the query is rejected at once, clearly.
    drop(std::fs::remove_file(&upath));
    let t0 = Instant::now();
    let (st, _, err) = run_with(&["connect", "-k", kb, &at, "up"], &[], b"x");
    assert!(!st.success());
    assert!(err.contains("rejected") && err.contains("backend"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn forward_local_port_to_a_service_with_half_close_and_reset() {
    let dir = Dir::new("fwd");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let (port, backend) = summing_backend(Duration::ZERO);
    let l = Listener::start(
        &ka,
        1,
        &[
            "--serve",
            "echo=echo",
            "--serve",
            &format!("sum=tcp:127.0.0.1:{port}"),
        ],
    );
    let at = format!("{ida}@{}", l.addrs[0]);
    let fsock = dir.path("f.sock");
    let mut f = Listener::spawn(
        &[
            "connect".into(),
            "-k".into(),
            kb.to_str().unwrap().into(),
            at.clone(),
            "--recovery-timeout".into(),
            "2s".into(),
            "--forward".into(),
            "127.0.0.1:0".into(),
            "echo".into(),
            "--forward".into(),
            "127.0.0.1:0".into(),
            "sum".into(),
            "--forward".into(),
            format!("unix:{}", fsock.display()),
            "echo".into(),
        ],
        &[],
        0,
    );
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let line = f.next_line(Duration::from_secs(20));
        if let Some(rest) = line.strip_prefix("forwarding ") {
            ports.push(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    // Echo through the forward, half-closing: the reply still comes.
    let mut c = TcpStream::connect(&ports[0]).unwrap();
    let data = payload(3 << 20);
    let mut c2 = c.try_clone().unwrap();
    let d2 = data.clone();
    let w = std::thread::spawn(move || {
        c2.write_all(&d2).unwrap();
        c2.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    w.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    // forward -> astral -> tcp service -> backend: EOF crosses twice.
    let mut c = TcpStream::connect(&ports[1]).unwrap();
    c.write_all(b"abc").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("got 3 bytes"), "{reply}");
    backend.join().unwrap();
    // A Unix-socket forward.
    let mut u = std::os::unix::net::UnixStream::connect(&fsock).unwrap();
    u.write_all(b"over unix").unwrap();
    u.shutdown(Shutdown::Write).unwrap();
    let mut s = String::new();
    u.read_to_string(&mut s).unwrap();
    assert_eq!(s, "over unix");
    // The listener goes away: the forwarded connection is reset, not
    // ended as if complete.
    let mut c = TcpStream::connect(&ports[0]).unwrap();
    c.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    c.read_exact(&mut one).unwrap();
    drop(l);
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rest = Vec::new();
    let r = c.read_to_end(&mut rest);
    assert!(
        r.is_err(),
        "forwarded connection ended cleanly after the peer died: {r:?}"
    );
    f.child.signal("INT");
    let (st, _, log) = f.finish(Duration::from_secs(10));
    assert_eq!(st.code(), Some(130), "{log}");
    assert!(!fsock.exists(), "forward socket left behind");
}
