//! `astral listen --allow FILE` end to end, on real sockets: a dialer not on
//! the list is hung up on right after the handshake and leaves no session
//! and no peer entry; the dialer is told what may have happened; SIGHUP
//! re-reads the file; a broken or group-writable file is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

fn node(control: &std::path::Path) -> serde_json::Value {
    ctl(control, &["node"])
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn admission(v: &serde_json::Value, key: &str) -> u64 {
    count(&v["admission"], key)
}

/// `connect -k KEY ID@ADDR echo` with `input`; (exit code, stdout, stderr).
fn echo(key: &str, target: &str, input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let (st, out, err) = run_with(&["connect", "-k", key, target, "echo"], &[], input);
    (st.code(), out.into_bytes(), err)
}

#[test]
fn only_listed_identities_connect_refused_ones_leave_nothing_and_sighup_rereads() {
    let dir = Dir::new("allow");
    let (kl, idl) = keygen(&dir, "l.key");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, idb) = keygen(&dir, "b.key");
    let (ka, kb) = (ka.to_str().unwrap(), kb.to_str().unwrap());
    let list = dir.path("allowed");
    std::fs::write(
        &list,
        format!("# who may connect\n\n{ida} alice's laptop\n# {idb} not yet\n"),
    )
    .unwrap();
    let control = dir.path("c.sock");
    let mut l = Listener::start(
        &kl,
        1,
        &[
            "--serve",
            "echo=echo",
            "--allow",
            list.to_str().unwrap(),
            "--control",
            control.to_str().unwrap(),
        ],
    );
    l.wait_line("allow list: 1 id may connect", Duration::from_secs(10));
    let target = format!("{idl}@{}", l.addrs[0]);

    // Not on the list: refused at message 3, before any state for it.
    let (code, out, err) = echo(kb, &target, b"let me in");
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("not its id")
            && err.contains("does not allow this key")
            && err.contains("busy"),
        "the dialer is told the possibilities: {err}"
    );
    let line = l.wait_line("is not on the allow list", Duration::from_secs(10));
    assert!(line.contains(&idb), "the log names the refused id: {line}");
    let n = node(&control);
    assert_eq!(admission(&n, "not_allowed"), 1, "{n}");
    assert_eq!(admission(&n, "completed"), 0, "{n}");
    assert_eq!(count(&n, "known_peers"), 0, "no peer entry: {n}");
    assert_eq!(count(&n, "sessions"), 0, "no session: {n}");
    assert_eq!(count(&n, "streams"), 0, "no stream: {n}");
    assert!(ctl(&control, &["peers"]).as_array().unwrap().is_empty());
    assert!(ctl(&control, &["streams"]).as_array().unwrap().is_empty());

    // On the list: served.
    let (code, out, err) = echo(ka, &target, b"hello");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"hello");
    let n = node(&control);
    assert_eq!(admission(&n, "completed"), 1, "{n}");
    assert!(count(&n, "known_peers") <= 1, "only alice: {n}");

    // B is added; SIGHUP re-reads the file and B gets in.
    std::fs::write(&list, format!("{ida}\n{idb}\n")).unwrap();
    l.child.signal("HUP");
    l.wait_line("2 ids may connect", Duration::from_secs(10));
    let (code, out, err) = echo(kb, &target, b"now?");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"now?");

    // A broken file on SIGHUP: the list in force stays, the error says why.
    std::fs::write(&list, format!("{ida}\nnot-an-id\n")).unwrap();
    l.child.signal("HUP");
    let line = l.wait_line("previous allow list stays", Duration::from_secs(10));
    assert!(line.contains("line 2"), "{line}");
    let (code, _, err) = echo(kb, &target, b"still");
    assert_eq!(code, Some(0), "b is still allowed: {err}");

    // An empty list refuses everyone, alice included.
    std::fs::write(&list, "# nobody\n").unwrap();
    l.child.signal("HUP");
    l.wait_line("0 ids may connect", Duration::from_secs(10));
    let (code, _, _) = echo(ka, &target, b"x");
    assert_eq!(code, Some(1));
    assert_eq!(admission(&node(&control), "not_allowed"), 2);

    // SIGTERM still stops it (SIGHUP did not).
    l.child.signal("TERM");
    let (st, _, log) = l.finish(Duration::from_secs(20));
    assert_eq!(st.code(), Some(143), "{log}");
}

#[test]
fn a_broken_missing_or_group_writable_allow_file_is_refused_at_start() {
    let dir = Dir::new("allowbad");
    let (kl, _) = keygen(&dir, "l.key");
    let kl = kl.to_str().unwrap();
    let listen = |file: &str, extra: &[&str]| {
        let mut a = vec!["listen", "-k", kl, "-b", "127.0.0.1:0", "--allow", file];
        a.extend_from_slice(extra);
        run(&a)
    };
    let bad = dir.path("bad");
    std::fs::write(&bad, "# ok\n0123\n").unwrap();
    let (st, _, err) = listen(bad.to_str().unwrap(), &[]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("line 2") && err.contains("not a node id"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "it never listened: {err}");

    let (st, _, err) = listen(&dir.str("missing"), &[]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("cannot read the allow file"), "{err}");

    let writable = dir.path("writable");
    std::fs::write(&writable, "").unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (st, _, err) = listen(writable.to_str().unwrap(), &[]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("writable by its group"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
}
