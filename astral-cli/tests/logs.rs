//! Logs and output end to end: the listener's default INFO lines (streams
//! up and down with peer and address, failed handshakes), no colour codes
//! in a pipe, `RUST_LOG` winning over `-v`/`-q`, `--quiet`, escaping and
//! rate-limiting of what peers control, completions and the man page, the
//! timer flags, and a demo whose table agrees with its run.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn listener_logs_streams_and_handshakes_without_colour() {
    let dir = Dir::new("loginfo");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, idb) = keygen(&dir, "b.key");
    let mut l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let (st, _, err) = run_with(
        &[
            "connect",
            "-k",
            kb.to_str().unwrap(),
            &format!("{ida}@{}", l.addrs[0]),
            "echo",
        ],
        &[],
        b"x",
    );
    assert!(st.success(), "{err}");
    let up = l.wait_line("up: peer", Duration::from_secs(10));
    assert!(
        up.contains(" INFO ") && up.contains(&idb[..8]) && up.contains("tcp 127.0.0.1:"),
        "{up}"
    );
    let down = l.wait_line("down: peer", Duration::from_secs(10));
    assert!(
        down.contains(&idb[..8]) && down.contains("tcp 127.0.0.1:"),
        "{down}"
    );
    // A stranger sending garbage: a failed handshake, with its address.
    let mut t = TcpStream::connect(&l.addrs[0]).unwrap();
    t.write_all(&[0xff; 64]).unwrap();
    drop(t);
    let hs = l.wait_line("handshake from tcp 127.0.0.1:", Duration::from_secs(10));
    assert!(hs.contains("failed"), "{hs}");
    l.settle(Duration::from_millis(100));
    let all = l.log.join("\n");
    assert!(!all.contains('\x1b'), "colour codes in a pipe:\n{all}");
}

#[test]
fn rust_log_always_wins_and_quiet_is_quiet() {
    let dir = Dir::new("logenv");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let sock = dir.path("l.sock");
    let bind = format!("unix:{}", sock.display());
    let at = format!("{ida}@{bind}");
    let kb = kb.to_str().unwrap();
    for (flags, env, want_debug, want_info) in [
        (vec!["-q"], Some("debug"), true, true),
        (vec!["-vv"], Some("error"), false, false),
        (vec!["-q"], None, false, false),
        (vec![], None, false, true),
    ] {
        let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        args.extend(
            [
                "listen",
                "-k",
                ka.to_str().unwrap(),
                "-b",
                &bind,
                "--serve",
                "echo=echo",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let envs: Vec<(&str, &str)> = env.iter().map(|v| ("RUST_LOG", *v)).collect();
        let quiet = flags.contains(&"-q");
        let l = Listener::spawn(&args, &envs, if quiet { 0 } else { 1 });
        wait_for(Duration::from_secs(10), || sock.exists().then_some(()));
        let (st, out, err) = run_with(&["connect", "-k", kb, &at, "echo"], &[], b"hi");
        assert!(st.success(), "{err}");
        assert_eq!(out, "hi");
        l.child.signal("TERM");
        let (_, _, log) = l.finish(Duration::from_secs(10));
        assert_eq!(
            log.contains(" DEBUG "),
            want_debug,
            "{flags:?} RUST_LOG={env:?}:\n{log}"
        );
        assert_eq!(
            log.contains(" INFO "),
            want_info,
            "{flags:?} RUST_LOG={env:?}:\n{log}"
        );
        if quiet && env.is_none() {
            assert!(log.is_empty(), "--quiet printed:\n{log}");
        }
    }
}

#[test]
fn peer_strings_are_escaped_and_peer_triggered_lines_rate_limited() {
    let dir = Dir::new("logpeer");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let mut l = Listener::start(&ka, 1, &[]);
    let at = format!("{ida}@{}", l.addrs[0]);
    // A query with a newline and an ANSI escape: one log line, escaped.
    let evil = "evil\nFAKE LOG LINE \x1b[31mred";
    let (st, _, _) = run(&["connect", "-k", kb.to_str().unwrap(), &at, evil]);
    assert!(!st.success());
    let line = l.wait_line("no such service", Duration::from_secs(10));
    assert!(
        line.contains("evil\\nFAKE LOG LINE \\u{1b}[31mred"),
        "{line}"
    );
    l.settle(Duration::from_millis(200));
    assert!(!l.log.iter().any(|x| x.starts_with("FAKE")), "{:#?}", l.log);
    assert!(!l.log.join("\n").contains('\x1b'));
    // 120 unknown queries at once, through a --forward whose every local
    // connection opens one: the listener logs at most its burst of them.
    let mut f = Listener::spawn(
        &[
            "connect".into(),
            "-k".into(),
            kb.to_str().unwrap().into(),
            at.clone(),
            "--forward".into(),
            "127.0.0.1:0".into(),
            "nosuch".into(),
        ],
        &[],
        0,
    );
    let fwd = loop {
        let line = f.next_line(Duration::from_secs(20));
        if let Some(rest) = line.strip_prefix("forwarding ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let conns: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(&fwd).unwrap())
        .collect();
    l.settle(Duration::from_millis(1500));
    let rejected = l
        .log
        .iter()
        .filter(|x| x.contains("\"nosuch\"") && x.contains("no such service"))
        .count();
    assert!(
        (10..=40).contains(&rejected),
        "{rejected} lines for 120 rejections"
    );
    drop(conns);
    // After a pause, the next one reports how many were suppressed.
    std::thread::sleep(Duration::from_secs(1));
    let _c = TcpStream::connect(&fwd).unwrap();
    let note = l.wait_line("similar lines suppressed", Duration::from_secs(10));
    assert!(note.contains("nosuch"), "{note}");
    println!("120 rejected queries: {rejected} log lines; then: {note}");
}

#[test]
fn completions_and_man_page() {
    let (st, out, _) = run(&["completions", "bash"]);
    assert!(st.success());
    assert!(
        out.contains("_astral()") && out.contains("listen"),
        "{}",
        &out[..200.min(out.len())]
    );
    let (st, out, _) = run(&["completions", "zsh"]);
    assert!(st.success() && out.contains("#compdef astral"));
    let (st, out, _) = run(&["man"]);
    assert!(st.success());
    assert!(
        out.starts_with(".ie") || out.contains(".TH astral"),
        "{}",
        &out[..200.min(out.len())]
    );
    assert!(out.contains("listen") && out.contains("connect"));
    let dir = Dir::new("man");
    let (st, _, err) = run(&["man", "-o", &dir.str("pages")]);
    assert!(st.success(), "{err}");
    let listen = std::fs::read_to_string(dir.path("pages/astral-listen.1")).unwrap();
    assert!(listen.contains("serve") && listen.contains("keepalive"));
    let (st, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(st.code(), Some(2), "{err}");
}

#[test]
fn timer_and_window_flags_reach_the_node() {
    let dir = Dir::new("flags");
    let (ka, _) = keygen(&dir, "a.key");
    let control = dir.path("c.sock");
    let l = Listener::spawn(
        &[
            "listen",
            "-k",
            ka.to_str().unwrap(),
            "-b",
            "127.0.0.1:0",
            "--control",
            control.to_str().unwrap(),
            "--keepalive",
            "1s",
            "--dead-timeout",
            "3500ms",
            "--recovery-timeout",
            "7s",
            "--recv-window",
            "1M",
            "--send-buffer",
            "64K",
            "--auto-migrate",
            "off",
        ]
        .map(String::from),
        &[],
        1,
    );
    let n = wait_for(Duration::from_secs(10), || {
        control.exists().then(|| ctl(&control, &["node"]))
    });
    let c = &n["config"];
    assert_eq!(c["keepalive_ms"], 1000);
    assert_eq!(c["dead_timeout_ms"], 3500);
    assert_eq!(c["recovery_timeout_ms"], 7000);
    assert_eq!(c["recv_window"], 1 << 20);
    assert_eq!(c["send_buffer"], 64 << 10);
    assert_eq!(c["auto_migrate"], false);
    drop(l);
}

#[test]
fn demo_table_agrees_with_the_run() {
    for size in ["1M", "16M"] {
        let (st, out, err) = run(&["demo", "--bytes", size]);
        assert!(st.success(), "demo {size} failed:\n{out}\n{err}");
        assert!(out.contains("payload arrived intact"), "{out}");
        assert!(!out.contains("MB/s"), "mixed units:\n{out}");
        assert!(out.contains("MiB/s"), "{out}");
        let row = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("| {name} ")))
                .unwrap_or_else(|| panic!("no {name} row:\n{out}"))
                .to_string()
        };
        let migrations = row("migrations");
        let migrated_lines = err.matches("  migrated ").count();
        let count: usize = migrations
            .split('|')
            .nth(2)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            count, migrated_lines,
            "table says {migrations} but the run printed:\n{err}"
        );
        assert!(err.contains("migrating"), "{err}");
        if count == 0 {
            assert!(migrations.contains("not completed"), "{migrations}");
        }
        let recoveries = row("recoveries");
        assert_eq!(
            recoveries
                .split('|')
                .nth(2)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap(),
            err.matches("  recovered (").count().to_string(),
            "{recoveries}\n{err}"
        );
        if !recoveries.contains("| 0 (") {
            let t = row("recovery time");
            assert!(t.contains("after the kill"), "recovered but {t}");
        }
        println!("demo {size}: {migrations}");
    }
}
