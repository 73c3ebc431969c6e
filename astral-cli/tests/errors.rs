//! Input mistakes and failures end to end: each gets a message that names
//! the fix, usage mistakes exit 2 and runtime failures exit 1, and nothing
//! panics.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

fn no_panic(err: &str) {
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn usage_mistakes_name_the_fix_and_exit_2() {
    let dir = Dir::new("usage");
    let (kb, _) = keygen(&dir, "b.key");
    let kb = kb.to_str().unwrap();
    let id = "ab".repeat(32);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "connect".into(),
                "-k".into(),
                kb.into(),
                format!("{id}@127.0.0.1"),
                "echo".into(),
            ],
            "missing port in \"127.0.0.1\": use 127.0.0.1:PORT",
        ),
        (
            vec![
                "connect".into(),
                "-k".into(),
                kb.into(),
                format!("{id}@127.0.0.1:4000"),
            ],
            "missing the QUERY after",
        ),
        (
            vec![
                "connect".into(),
                "-k".into(),
                kb.into(),
                "127.0.0.1:4000".into(),
                "echo".into(),
            ],
            "missing the peer id",
        ),
        (
            vec![
                "connect".into(),
                "-k".into(),
                kb.into(),
                format!("{id}@127.0.0.1:4000"),
                "--streams".into(),
                "300".into(),
                "echo".into(),
            ],
            "--streams 300 exceeds the limit of 16 streams per peer",
        ),
        (
            vec![
                "listen".into(),
                "-k".into(),
                kb.into(),
                "-b".into(),
                "127.0.0.1:0".into(),
                "--serve".into(),
                "echo=echo".into(),
                "--stdio".into(),
                "echo".into(),
            ],
            "both --serve echo=echo and --stdio echo",
        ),
        (
            vec![
                "listen".into(),
                "-k".into(),
                kb.into(),
                "-b".into(),
                "127.0.0.1:0".into(),
                "--serve".into(),
                "x=echo".into(),
                "--serve".into(),
                "x=discard".into(),
            ],
            "--serve x is given twice",
        ),
        (
            vec![
                "listen".into(),
                "-k".into(),
                kb.into(),
                "-b".into(),
                "127.0.0.1".into(),
            ],
            "missing port",
        ),
        (
            vec![
                "listen".into(),
                "-k".into(),
                kb.into(),
                "-b".into(),
                "127.0.0.1:0".into(),
                "--keepalive".into(),
                "30s".into(),
            ],
            "--dead-timeout (20s) must be longer than --keepalive (30s)",
        ),
        (
            vec![
                "listen".into(),
                "-k".into(),
                kb.into(),
                "-b".into(),
                "127.0.0.1:0".into(),
                "--serve".into(),
                "w=tcp:localhost".into(),
            ],
            "missing port",
        ),
        (
            vec![
                "connect".into(),
                "-k".into(),
                kb.into(),
                format!("{id}@127.0.0.1:1"),
                "--socks5".into(),
                "proxy".into(),
                "q".into(),
            ],
            "--socks5: missing port",
        ),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (st, _, err) = run(&a);
        assert_eq!(st.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in: {err}");
        no_panic(&err);
    }
    // `id` takes the file as an argument, as `-k` too.
    let (st, out, _) = run(&["id", kb]);
    assert!(st.success());
    let (st2, out2, _) = run(&["id", "-k", kb]);
    assert!(st2.success());
    assert_eq!(out, out2);
}

#[test]
fn runtime_failures_say_what_happened() {
    let dir = Dir::new("rt");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let kb = kb.to_str().unwrap();
    // An HTTP server where a listener should be.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hport = http.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in http.incoming() {
            let Ok(mut c) = c else { return };
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let page = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 20000\r\n\r\n<!DOCTYPE html>{}",
                "x".repeat(20000)
            );
            let _ = c.write_all(page.as_bytes());
        }
    });
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb,
        &format!("{ida}@127.0.0.1:{hport}"),
        "echo",
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("does not speak the astral protocol"), "{err}");
    no_panic(&err);
    // Nothing listens.
    let dead = dead_port();
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb,
        &format!("{ida}@127.0.0.1:{dead}"),
        "echo",
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("connection refused") || err.contains("Connection refused"),
        "{err}"
    );
    assert!(err.contains("is `astral listen` running there?"), "{err}");
    // A listener with another identity: the hang-up names the possibilities.
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let wrong = "cd".repeat(32);
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb,
        &format!("{wrong}@{}", l.addrs[0]),
        "echo",
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("not its id") && err.contains("does not allow") && err.contains("busy"),
        "{err}"
    );
    // --streams 2 with one of two addresses dead: works, warns.
    let (st, out, err) = run_with(
        &[
            "connect",
            "-k",
            kb,
            &format!("{ida}@{}", l.addrs[0]),
            &format!("{ida}@127.0.0.1:{dead}"),
            "--streams",
            "2",
            "echo",
        ],
        &[],
        b"still works",
    );
    assert!(st.success(), "{err}");
    assert_eq!(out, "still works");
    assert!(err.contains("1 of 2 streams up"), "{err}");
    // Unknown query: rejected, named.
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb,
        &format!("{ida}@{}", l.addrs[0]),
        "nosuch",
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("\"nosuch\" rejected") && err.contains("no such service"),
        "{err}"
    );
    // Listening where someone listens already.
    let port = l.tcp_port(0);
    let (st, _, err) = run(&[
        "listen",
        "-k",
        ka.to_str().unwrap(),
        "-b",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("another process listens there"), "{err}");
}

#[test]
fn key_files_must_be_private() {
    let dir = Dir::new("perm");
    let (ka, _) = keygen(&dir, "a.key");
    // keygen writes 0600.
    let mode = std::fs::metadata(&ka).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&ka, std::fs::Permissions::from_mode(0o644)).unwrap();
    let k = ka.to_str().unwrap();
    let (st, _, err) = run(&["listen", "-k", k, "-b", "127.0.0.1:0"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        err.contains("readable by others (mode 0644)") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&ka, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (st, _, err) = run(&["listen", "-k", k, "-b", "127.0.0.1:0"]);
    assert!(!st.success());
    assert!(err.contains("readable by its group"), "{err}");
    // --insecure-key-perms: a warning, and the node runs.
    let mut l = Listener::spawn(
        &[
            "listen".into(),
            "-k".into(),
            k.into(),
            "-b".into(),
            "127.0.0.1:0".into(),
            "--insecure-key-perms".into(),
        ],
        &[],
        1,
    );
    let w = l.wait_line("using it anyway", Duration::from_secs(5));
    assert!(w.contains("WARN"), "{w}");
    // `id` only reads the public part: no complaint.
    let (st, _, err) = run(&["id", k]);
    assert!(st.success() && err.is_empty(), "{err}");
}
