//! Restarts and twins with the real binary (issue 12.3; docs/MIGRATION.md,
//! "Restarts and twins"):
//!
//! * `astral listen` restarted with the same key while its old stream is
//!   silent (the path to it stalled, so the host looks crashed: no FIN, no
//!   RST): the new process holds the lock on `KEY.incarnation`, names the
//!   old incarnation in its handshake, and the connect side's old session
//!   and its silent stream end at that handshake with the reason ("the peer
//!   restarted"); without the record (deleted) the silent stream is only
//!   closed after its probe goes unanswered (ping timeout);
//! * two live `astral connect` processes with one key: the second finds the
//!   lock held, names nothing, and the first one's session goes on.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Seconds since midnight of a log line's timestamp
/// (`2026-12-01T18:05:57.342792Z  INFO …`).
fn stamp(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// From the new handshake (the new instance's engine reports the peer
/// `linked`: the last such line) to the old session's end, by connect's
/// own log; zero when the end was logged first (both came from the same
/// handshake, the old engine's events are handed out first).
fn handshake_to_end(log: &str) -> Duration {
    let linked = log
        .lines()
        .rfind(|l| l.contains(" linked"))
        .and_then(stamp)
        .unwrap_or_else(|| panic!("no new handshake: {log}"));
    let end = log
        .lines()
        .find(|l| l.contains("session s1") && l.contains("ended"))
        .and_then(stamp)
        .unwrap_or_else(|| panic!("no session end: {log}"));
    Duration::from_secs_f64((end - linked).max(0.0))
}

/// The session rows of a control socket.
fn sessions(control: &std::path::Path) -> usize {
    ctl(control, &["sessions"])
        .as_array()
        .map_or(0, |a| a.len())
}

/// A listener on a stalled path is killed and restarted with the same key
/// on the same port; returns (connect's exit code, its stderr, the time
/// from the new listener's start to connect's exit, the new listener's
/// stderr).
fn restart_behind_a_stalled_path(
    tag: &str,
    keep_record: bool,
) -> (Option<i32>, String, Duration, String) {
    let dir = Dir::new(tag);
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let mut l1 = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let port = l1.tcp_port(0);
    let direct = format!("{ida}@127.0.0.1:{port}");
    let fwd = Forwarder::start(format!("127.0.0.1:{port}").parse().unwrap());
    let control = dir.path("c.sock");
    // Two streams: one through the forwarder, one direct; `-v` logs each
    // stream's end with its reason.
    let mut c = Echo::spawn(&[
        "connect",
        "-v",
        "-k",
        kb.to_str().unwrap(),
        "--streams",
        "2",
        "--control",
        control.to_str().unwrap(),
        &fwd.target(&ida),
        &direct,
        "echo",
    ]);
    c.echo("before the restart");
    wait_for(Duration::from_secs(20), || {
        (ctl(&control, &["streams"]).as_array().map_or(0, |a| {
            a.iter().filter(|s| s["state"] == "established").count()
        }) == 2)
            .then_some(())
    });
    assert_eq!(sessions(&control), 1);
    // The old host "crashes": its path goes silent first, then the process
    // dies (its direct connection is reset at once, the forwarded one is
    // held open and silent).
    fwd.stall(true);
    l1.child.inner.kill().unwrap();
    l1.child.wait(Duration::from_secs(10));
    let record = std::path::PathBuf::from(format!("{}.incarnation", ka.display()));
    assert!(record.exists(), "the listener keeps {}", record.display());
    if !keep_record {
        std::fs::remove_file(&record).unwrap();
    }
    let t0 = Instant::now();
    let l2 = Listener::spawn(
        &[
            "listen".into(),
            "-k".into(),
            ka.to_str().unwrap().into(),
            "-b".into(),
            format!("127.0.0.1:{port}"),
            "--serve".into(),
            "echo=echo".into(),
        ],
        &[],
        1,
    );
    // connect redials the direct address; the new handshake ends the old
    // session (stdio: connect exits 1 with the reason).
    let (code, log) = c.exit(Duration::from_secs(30));
    let took = t0.elapsed();
    let mut l2 = l2;
    l2.settle(Duration::from_millis(200));
    let l2_log = l2.log.join("\n");
    (code, log, took, l2_log)
}

#[test]
fn a_restarted_listener_names_its_old_instance_and_the_old_session_ends_at_the_handshake() {
    let (code, log, took, l2_log) = restart_behind_a_stalled_path("restart-named", true);
    let gap = handshake_to_end(&log);
    println!(
        "restart with the record: the old session ended {gap:?} after the new handshake \
         (connect exited {took:?} after the new listener started, its redial backoff included)"
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("the peer restarted: session ended"), "{log}");
    assert!(l2_log.contains("supersedes"), "{l2_log}");
    // The silent stream (through the forwarder) was closed by the
    // announcement, not after a probe.
    let down = log
        .lines()
        .find(|l| l.contains("down") && l.contains("the peer restarted"))
        .unwrap_or_else(|| panic!("no stream closed because the peer restarted: {log}"));
    println!("{down}");
    assert!(!log.contains("ping timeout"), "{log}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(gap < Duration::from_secs(1), "{gap:?}");
}

#[test]
fn without_the_record_the_silent_stream_is_probed_before_the_old_session_ends() {
    let (code, log, took, l2_log) = restart_behind_a_stalled_path("restart-unnamed", false);
    let gap = handshake_to_end(&log);
    println!(
        "restart without the record: the old session ended {gap:?} after the new handshake \
         (connect exited {took:?} after the new listener started)"
    );
    assert_eq!(code, Some(1), "{log}");
    // Still PeerRestarted, but the silent stream had to miss its probe.
    assert!(log.contains("the peer restarted: session ended"), "{log}");
    assert!(!l2_log.contains("supersedes"), "{l2_log}");
    assert!(
        log.lines()
            .any(|l| l.contains("down") && l.contains("ping timeout")),
        "{log}"
    );
}

#[test]
fn a_twin_with_the_same_key_names_nothing_and_cuts_nothing_off() {
    let dir = Dir::new("twin");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let control = dir.path("l.sock");
    let l = Listener::start(
        &ka,
        1,
        &[
            "--serve",
            "echo=echo",
            "--control",
            control.to_str().unwrap(),
        ],
    );
    let target = format!("{ida}@{}", l.addrs[0]);
    let args = |v: &'static str| {
        vec![
            "connect".to_string(),
            v.into(),
            "-k".into(),
            kb.to_str().unwrap().into(),
            target.clone(),
            "echo".into(),
        ]
    };
    let one_args = args("-v");
    let mut one = Echo::spawn(&one_args.iter().map(String::as_str).collect::<Vec<_>>());
    one.echo("one");
    // The second process with the same key, while the first runs.
    let two_args = args("-v");
    let mut two = Echo::spawn(&two_args.iter().map(String::as_str).collect::<Vec<_>>());
    two.echo("two");
    wait_for(Duration::from_secs(10), || {
        (sessions(&control) == 2).then_some(())
    });
    // Both sessions go on.
    one.echo("one, after the twin's handshake");
    two.echo("two, still");
    assert_eq!(sessions(&control), 2);
    let twin_said = two.log().join("\n");
    assert!(twin_said.contains("twin"), "{twin_said}");
    let one_said = one.log().join("\n");
    assert!(!one_said.contains("restarted"), "{one_said}");
    // The first leaves (its Goodbye ends only its own session), and the
    // twin's session still works.
    one.child.signal("TERM");
    let (code, _) = one.exit(Duration::from_secs(10));
    assert_eq!(code, Some(143));
    two.echo("two, after the first left");
    drop(two.stdin);
    let st = two.child.wait(Duration::from_secs(10));
    assert!(st.success(), "{st:?}");
}
