//! The control socket and `astral ctl`, end to end: what `--control` may
//! replace, its mode, its removal on SIGTERM/SIGINT (exit 143/130), the
//! tables (column order, short ids, no sentinels), JSON keys and JSON
//! errors, `watch`, `peers`, `migrate` by short ids, and `connect
//! --control` with `--auto-migrate off`.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use common::*;

fn listen_args(key: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["listen", "-k", key.to_str().unwrap(), "-b", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn control_path_that_is_not_a_stale_socket_is_never_replaced() {
    let dir = Dir::new("ctlsafe");
    let (ka, _) = keygen(&dir, "a.key");
    let before = std::fs::read(&ka).unwrap();
    // The key file itself as --control: refused, and the key is intact.
    let (st, _, err) = run(&[
        "listen",
        "-k",
        ka.to_str().unwrap(),
        "-b",
        "127.0.0.1:0",
        "--control",
        ka.to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("is not a socket") && err.contains("refusing"),
        "{err}"
    );
    assert_eq!(std::fs::read(&ka).unwrap(), before, "key file changed");
    // A directory: says so and suggests a file name in it.
    let sub = dir.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let (st, _, err) = run(&[
        "listen",
        "-k",
        ka.to_str().unwrap(),
        "-b",
        "127.0.0.1:0",
        "--control",
        sub.to_str().unwrap(),
    ]);
    assert!(!st.success());
    assert!(
        err.contains("is a directory") && err.contains("astral.sock"),
        "{err}"
    );
    assert!(sub.is_dir());
    // A missing directory.
    let (st, _, err) = run(&[
        "listen",
        "-k",
        ka.to_str().unwrap(),
        "-b",
        "127.0.0.1:0",
        "--control",
        &dir.str("nodir/x.sock"),
    ]);
    assert!(!st.success());
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn live_socket_refused_stale_socket_replaced_sigterm_removes_it() {
    let dir = Dir::new("ctllive");
    let (ka, _) = keygen(&dir, "a.key");
    let control = dir.path("c.sock");
    let c = control.to_str().unwrap();
    let mut l = Listener::spawn(&listen_args(&ka, &["--control", c]), &[], 1);
    l.wait_line("control socket at", Duration::from_secs(10));
    let meta = std::fs::symlink_metadata(&control).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "control socket mode"
    );
    // A second node on the same path: refused, the first keeps working.
    let (st, _, err) = run(&[
        "listen",
        "-k",
        ka.to_str().unwrap(),
        "-b",
        "127.0.0.1:0",
        "--control",
        c,
    ]);
    assert!(!st.success());
    assert!(err.contains("in use by a running process"), "{err}");
    assert!(ctl(&control, &["node"]).get("id").is_some());
    // SIGTERM: exit 143, socket gone.
    l.child.signal("TERM");
    let (st, _, log) = l.finish(Duration::from_secs(10));
    assert_eq!(st.code(), Some(143), "{log}");
    assert!(
        !control.exists(),
        "control socket left behind after SIGTERM"
    );

    // A stale socket of ours (its process died without cleaning up): a
    // std listener bound and dropped leaves the file.
    drop(std::os::unix::net::UnixListener::bind(&control).unwrap());
    assert!(control.exists());
    let mut l = Listener::spawn(&listen_args(&ka, &["--control", c]), &[], 1);
    l.wait_line("control socket at", Duration::from_secs(10));
    assert!(ctl(&control, &["node"]).get("id").is_some());
    // SIGINT: exit 130, socket gone.
    l.child.signal("INT");
    let (st, _, log) = l.finish(Duration::from_secs(10));
    assert_eq!(st.code(), Some(130), "{log}");
    assert!(!control.exists());
}

/// The columns of a table's header line.
fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn tables_json_errors_watch_and_migrate_by_short_ids() {
    let dir = Dir::new("ctltab");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let control = dir.path("c.sock");
    let c = control.to_str().unwrap();
    let mut l = Listener::spawn(
        &listen_args(
            &ka,
            &["-b", "127.0.0.1:0", "--serve", "echo=echo", "--control", c],
        ),
        &[],
        2,
    );
    let (a1, a2) = (l.addrs[0].clone(), l.addrs[1].clone());
    // A connect that stays open (stdin held) over two streams, with its
    // own control socket.
    let cc = dir.path("cc.sock");
    let mut conn = Connect::spawn(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        "--control",
        cc.to_str().unwrap(),
        "--auto-migrate",
        "off",
        &format!("{ida}@{a1}"),
        &format!("{ida}@{a2}"),
        "echo",
    ]);
    use std::io::Write;
    conn.stdin.as_mut().unwrap().write_all(b"ping\n").unwrap();
    // Wait until the listener has accepted the session. Before that it is
    // `pending` (the Query arrived, right behind the handshake's message 3,
    // and waits for the echo service), and its query is `null` until the
    // service takes it (docs/CLI.md, "JSON keys"): a CI run listed it then.
    let sessions = wait_for(Duration::from_secs(20), || {
        let v = ctl(&control, &["sessions"]);
        v.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["state"] == "open")
            .then_some(v)
    });
    let s = &sessions[0];
    for key in [
        "id",
        "handle",
        "peer",
        "direction",
        "query",
        "state",
        "stream",
        "recv_stream",
        "bytes_written",
        "bytes_acked",
        "bytes_read",
        "bytes_in_flight",
        "bytes_buffered",
        "bytes_retransmitted",
        "send_window",
        "recv_window",
        "migrations",
        "recoveries",
    ] {
        assert!(s.get(key).is_some(), "session key {key} missing: {s}");
    }
    let sid = s["id"].as_str().unwrap().to_string();
    assert!(sid.starts_with('s'), "{sid}");
    assert_eq!(s["query"], "echo");
    assert_eq!(s["direction"], "in");
    let streams = wait_for(Duration::from_secs(10), || {
        let v = ctl(&control, &["streams"]);
        (v.as_array().map_or(0, |a| a.len()) == 2).then_some(v)
    });
    for st in streams.as_array().unwrap() {
        for key in [
            "id",
            "handle",
            "peer",
            "direction",
            "transport",
            "remote",
            "local",
            "state",
            "rtt_ms",
            "rtt_min_ms",
            "sessions",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(st.get(key).is_some(), "stream key {key} missing: {st}");
        }
        assert_eq!(st["transport"], "tcp");
        assert_eq!(st["direction"], "in");
        assert!(st["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    // The stream the session does not use: migrate onto it by short ids.
    let on = s["stream"].as_str().unwrap().to_string();
    let other = streams
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .find(|t| *t != on)
        .unwrap();
    let m = ctl(&control, &["migrate", &sid, &other]);
    assert_eq!(m["session"], sid.as_str());
    assert_eq!(m["from"], on.as_str());
    assert_eq!(m["to"], other.as_str());
    let (st, out, _) = run(&["ctl", "-c", c, "migrate", &sid, &on]);
    assert!(st.success());
    assert_eq!(out.trim(), format!("migrating {sid} from {other} to {on}"));
    // The long form works too (to the stream it does not send on now).
    let handle = streams
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == other.as_str())
        .unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _, err) = run(&["ctl", "-c", c, "migrate", &sid, &handle]);
    assert!(st.success(), "{err}");
    // A migration pins the session; unpin and pin again by short id.
    let (st, out, err) = run(&["ctl", "-c", c, "unpin", &sid]);
    assert!(st.success(), "{err}");
    assert_eq!(
        out.trim(),
        format!("unpinned {sid}: automatic placement may move it")
    );
    let p = ctl(&control, &["pin", &sid]);
    assert_eq!(p["session"], sid.as_str());
    assert_eq!(p["pinned"], true);
    assert_eq!(p["peer_pinned"], false);
    let rows = ctl(&control, &["sessions"]);
    assert_eq!(rows[0]["pinned"], true, "{rows}");
    assert_eq!(rows[0]["peer_pinned"], false, "{rows}");
    let (st, _, err) = run(&["ctl", "-c", c, "pin", "s99"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("no session \"s99\""), "{err}");

    // Tables: fixed columns, id first, `-` for none, never a sentinel.
    let (st, out, _) = run(&["ctl", "-c", c, "streams"]);
    assert!(st.success());
    assert_eq!(
        header(&out),
        [
            "ID",
            "PEER",
            "DIR",
            "TRANSPORT",
            "LOCAL",
            "REMOTE",
            "STATE",
            "RTT",
            "SESSIONS",
            "IN",
            "OUT"
        ]
    );
    assert!(out.lines().nth(1).unwrap().starts_with('t'), "{out}");
    assert!(!out.contains("18446744073709551615"), "{out}");
    let (_, out, _) = run(&["ctl", "-c", c, "sessions"]);
    assert_eq!(header(&out)[..4], ["ID", "PEER", "DIR", "QUERY"]);
    assert!(out.contains("\"echo\""), "{out}");
    let (_, out, _) = run(&["ctl", "-c", c, "peers"]);
    assert_eq!(header(&out)[..3], ["ID", "PEER", "STREAMS"]);
    assert!(out.lines().nth(1).unwrap().starts_with("p1 "), "{out}");
    let peers = ctl(&control, &["peers"]);
    assert_eq!(peers[0]["streams"], 2);
    assert_eq!(peers[0]["sessions"], 1);
    let prefix = &peers[0]["peer"].as_str().unwrap()[..6];
    assert_eq!(
        ctl(&control, &["peers", prefix]).as_array().unwrap().len(),
        1
    );

    // Errors name what was asked for; with --json they are JSON.
    let (st, out, err) = run(&["ctl", "-c", c, "migrate", "s99", &on]);
    assert_eq!(st.code(), Some(1));
    assert!(out.is_empty());
    assert!(err.contains("no session \"s99\""), "{err}");
    let (st, out, err) = run(&["ctl", "-c", c, "--json", "drain", "t99"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.is_empty(), "{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["error"]["kind"], "unknown_stream");
    assert!(e["error"]["message"].as_str().unwrap().contains("t99"));
    let (st, out, _) = run(&["ctl", "-c", &dir.str("none.sock"), "--json", "streams"]);
    assert_eq!(st.code(), Some(1));
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["error"]["kind"], "unreachable");

    // watch: refreshes (not a terminal: one frame after the other).
    let (st, out, _) = run(&["ctl", "-c", c, "watch", "-n", "100ms", "--count", "3"]);
    assert!(st.success());
    assert_eq!(out.matches("ID  PEER").count(), 9, "{out}");
    let (st, out, _) = run(&[
        "ctl", "-c", c, "--json", "watch", "-n", "100ms", "--count", "2",
    ]);
    assert!(st.success());
    let frames: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 2);
    assert!(frames[1]["sessions"].as_array().is_some());

    // The connect side: its control socket and its flags.
    let node = ctl(&cc, &["node"]);
    assert_eq!(node["mode"], "connect");
    assert_eq!(node["config"]["auto_migrate"], false);
    let cs = ctl(&cc, &["streams"]);
    assert_eq!(cs.as_array().unwrap().len(), 2);
    assert_eq!(cs[0]["direction"], "out");
    // Closing one of connect's streams on purpose: not redialed.
    let t = cs[0]["id"].as_str().unwrap().to_string();
    ctl(&cc, &["close", &t]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(ctl(&cc, &["streams"]).as_array().unwrap().len(), 1);

    let (st, out, err) = conn.finish(Duration::from_secs(30));
    assert!(st.success(), "{err}");
    assert_eq!(out, b"ping\n");
    assert!(!cc.exists(), "connect left its control socket");
    l.settle(Duration::from_millis(100));
}
