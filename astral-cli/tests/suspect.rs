//! Suspect streams with the real binary (issue 12.1; docs/MIGRATION.md,
//! "Failover"): `connect` has two streams to `listen`, one through a TCP
//! forwarder whose path is then stalled (nothing moves, nothing closes: a
//! blackhole). `ctl streams` shows that stream `suspect` (JSON state and
//! the table's line), the session goes on over the other stream, and once
//! the path is lifted the stream is `established` again, with every echo
//! exact.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The row of `ctl streams` (JSON) whose remote is `remote`.
fn row(control: &std::path::Path, remote: &str) -> Option<serde_json::Value> {
    ctl(control, &["streams"])
        .as_array()?
        .iter()
        .find(|s| s["remote"] == remote)
        .cloned()
}

#[test]
fn a_stalled_path_shows_its_stream_suspect_and_the_session_goes_on() {
    let dir = Dir::new("suspect");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo", "--keepalive", "200ms"]);
    let fwd = Forwarder::start(l.addrs[0].parse().unwrap());
    let via = format!("127.0.0.1:{}", fwd.port);
    let control = dir.path("c.sock");
    let mut c = Echo::spawn(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        "--streams",
        "2",
        "--keepalive",
        "200ms",
        "--control",
        control.to_str().unwrap(),
        &fwd.target(&ida),
        &format!("{ida}@{}", l.addrs[0]),
        "echo",
    ]);
    c.echo("before the stall");
    wait_for(Duration::from_secs(20), || {
        row(&control, &via).filter(|r| r["state"] == "established")
    });
    // The forwarded path goes silent both ways.
    fwd.stall(true);
    let t0 = Instant::now();
    let suspect = wait_for(Duration::from_secs(20), || {
        row(&control, &via).filter(|r| r["state"] == "suspect")
    });
    let took = t0.elapsed();
    println!(
        "stream {} through the stalled forwarder suspect after {took:?}",
        suspect["id"]
    );
    // The table says it too, on that stream's line.
    let (st, out, _) = run(&["ctl", "-c", control.to_str().unwrap(), "streams"]);
    assert!(st.success());
    let line = out
        .lines()
        .find(|l| l.contains(&via))
        .unwrap_or_else(|| panic!("no line for {via}: {out}"));
    println!("{line}");
    assert!(line.contains("suspect"), "{out}");
    assert!(line.starts_with(suspect["id"].as_str().unwrap()), "{out}");
    // The other stream is not suspect, and the session goes on over it.
    let others: Vec<_> = ctl(&control, &["streams"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["remote"] != via.as_str())
        .map(|s| s["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(others, ["established"], "{out}");
    c.echo("during the stall");
    // Lifted: what waited is delivered and the stream is heard again.
    fwd.stall(false);
    wait_for(Duration::from_secs(20), || {
        row(&control, &via).filter(|r| r["state"] == "established")
    });
    c.echo("after the lift");
    drop(c.stdin);
    let st = c.child.wait(Duration::from_secs(20));
    assert!(st.success(), "{st:?}");
}
