//! The `astral` binary end to end: keygen, id, listen/connect moving a
//! 50 MiB file over two streams with the carrying TCP connection killed
//! mid-way (`ss -K`), the demo, the error paths, and bug 12.6 under load.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Whether `ss -K` can kill sockets here (root, iproute2, kernel support).
fn ss_kill(filter: &[&str]) -> Result<String, String> {
    let out = Command::new("ss")
        .arg("-K")
        .args(filter)
        .output()
        .map_err(|e| format!("cannot run ss: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The header plus one line per killed socket.
    if text.lines().count() >= 2 {
        Ok(text)
    } else {
        Err(format!(
            "ss -K {filter:?} killed nothing (status {}, stderr {})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn str_field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get(name)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("no string {name:?} in {v}"))
}

/// The listener address (one of `addrs`) on which the stream carrying the
/// connector's data arrived, read from the listener's `ctl sessions` and
/// `ctl streams` (the stream's `local` address).
fn carrying_listen_addr(control: &Path, addrs: &[String]) -> String {
    let sessions = ctl(control, &["sessions"]);
    let sessions = sessions
        .as_array()
        .unwrap_or_else(|| panic!("sessions: {sessions}"));
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let recv = str_field(&sessions[0], "recv_stream").to_string();
    let streams = ctl(control, &["streams"]);
    let streams = streams
        .as_array()
        .unwrap_or_else(|| panic!("streams: {streams}"));
    assert_eq!(streams.len(), 2, "{streams:?}");
    let s = streams
        .iter()
        .find(|s| str_field(s, "id") == recv)
        .unwrap_or_else(|| panic!("session's stream {recv} not in {streams:?}"));
    let local = str_field(s, "local").to_string();
    assert!(addrs.contains(&local), "{local} not in {addrs:?}");
    local
}

#[test]
fn fifty_mib_over_two_streams_with_one_killed() {
    const SIZE: usize = 50 << 20;
    let dir = Dir::new("file");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, idb) = keygen(&dir, "b.key");
    assert_ne!(ida, idb);
    let control = dir.path("ctl.sock");

    let mut data = vec![0u8; SIZE];
    rand::rng().fill_bytes(&mut data);
    let want = Sha256::digest(&data);

    let l = Listener::start(
        &ka,
        2,
        &["--stdio", "file", "--control", control.to_str().unwrap()],
    );
    let (p1, p2) = (l.addrs[0].clone(), l.addrs[1].clone());
    let mut conn = Child::spawn(
        "astral connect",
        Command::new(BIN)
            .args(["-v", "connect", "-k", kb.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .arg(format!("{ida}@{p1}"))
            .arg(format!("{ida}@{p2}"))
            .args(["--streams", "2", "file"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let conn_out = drain(conn.inner.stdout.take().unwrap());
    let conn_err = drain(conn.inner.stderr.take().unwrap());
    let mut stdin = conn.inner.stdin.take().unwrap();

    // First half, then find the TCP connection carrying the data and kill
    // it while the second half is on its way.
    let t0 = Instant::now();
    stdin.write_all(&data[..SIZE / 2]).unwrap();
    let carrying = carrying_listen_addr(&control, &l.addrs);
    let port = carrying.rsplit(':').next().unwrap().to_string();
    // The kill must land while the session is open: the writer keeps stdin
    // open (so no Fin can be sent) until the connection is killed. (A timed
    // kill raced the end of the transfer once windows grew by themselves:
    // the whole file was through before the kill, and nothing recovered.)
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut chunks = data[SIZE / 2..].chunks(1 << 20);
        for chunk in chunks.by_ref().take(4) {
            stdin.write_all(chunk).unwrap();
        }
        started_tx.send(()).unwrap();
        // The rest goes after the kill (or after 10 s, so that a kill that
        // failed fails the asserts below rather than hanging here).
        let _ = killed_rx.recv_timeout(Duration::from_secs(10));
        for chunk in chunks {
            stdin.write_all(chunk).unwrap();
        }
        drop(stdin);
    });
    started_rx.recv().unwrap();
    let killed = ss_kill(&["dst", "127.0.0.1", "dport", "=", &port]);
    let killed = killed.unwrap_or_else(|e| panic!("cannot kill the connection: {e}"));
    let _ = killed_tx.send(());
    writer.join().unwrap();

    let st = conn.wait(LIMIT.saturating_sub(t0.elapsed()));
    let cerr = String::from_utf8_lossy(&conn_err.recv().unwrap()).into_owned();
    let cout = conn_out.recv().unwrap();
    let (lst, got, lerr) = l.finish(Duration::from_secs(30));
    let ctx = format!("killed:\n{killed}\nconnect stderr:\n{cerr}\nlisten stderr:\n{lerr}");
    assert!(st.success(), "connect exited with {st}\n{ctx}");
    assert!(lst.success(), "listen exited with {lst}\n{ctx}");
    assert!(cout.is_empty(), "listener sent {} bytes", cout.len());
    assert_eq!(got.len(), SIZE, "{ctx}");
    assert_eq!(Sha256::digest(&got), want, "payload corrupted\n{ctx}");
    assert!(
        cerr.contains(" recovered (") || lerr.contains(" recovered ("),
        "no recovery logged\n{ctx}"
    );
}

#[test]
fn rejected_query() {
    let dir = Dir::new("reject");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &format!("{ida}@{}", l.addrs[0]),
        "nosuch",
    ]);
    assert!(!st.success());
    assert!(
        err.contains("rejected") && err.contains("nosuch"),
        "unclear message: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    drop(l);
}

#[test]
fn echo_service() {
    let dir = Dir::new("echo");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let mut c = Child::spawn(
        "astral connect",
        Command::new(BIN)
            .args(["connect", "-k", kb.to_str().unwrap()])
            .arg(format!("{ida}@{}", l.addrs[0]))
            .arg("echo")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let out = drain(c.inner.stdout.take().unwrap());
    let err = drain(c.inner.stderr.take().unwrap());
    let mut stdin = c.inner.stdin.take().unwrap();
    stdin.write_all(b"hello, astral\n").unwrap();
    drop(stdin);
    let st = c.wait(LIMIT);
    let err = String::from_utf8_lossy(&err.recv().unwrap()).into_owned();
    assert!(st.success(), "{err}");
    assert_eq!(out.recv().unwrap(), b"hello, astral\n");
    drop(l);
}

#[test]
fn wrong_peer_id() {
    let dir = Dir::new("wrongid");
    let (ka, _) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let (_, idc) = keygen(&dir, "c.key");
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    // C's id at A's address: the Noise XK handshake must fail.
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &format!("{idc}@{}", l.addrs[0]),
        "echo",
    ]);
    assert!(!st.success());
    assert!(
        err.to_lowercase().contains("handshake"),
        "unclear message: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    drop(l);
}

#[test]
fn unreachable_address() {
    let dir = Dir::new("unreach");
    let (kb, _) = keygen(&dir, "b.key");
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = "00".repeat(32);
    let (st, _, err) = run(&[
        "connect",
        "-k",
        kb.to_str().unwrap(),
        &format!("{id}@127.0.0.1:{port}"),
        "echo",
    ]);
    assert!(!st.success());
    assert!(err.contains("cannot connect"), "unclear message: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs() {
    let dir = Dir::new("bad");
    let (kb, _) = keygen(&dir, "b.key");
    let none = dir.path("none");
    let kb = kb.to_str().unwrap();
    // Missing key file, malformed id, refusing to overwrite a key file.
    let cases: [(&[&str], &str); 3] = [
        (
            &["id", "-k", none.to_str().unwrap()],
            "cannot read key file",
        ),
        (
            &["connect", "-k", kb, "xyz@127.0.0.1:1", "q"],
            "bad peer id",
        ),
        (&["keygen", "-o", kb], "cannot create"),
    ];
    for (args, want) in cases {
        let (st, _, err) = run(args);
        assert!(!st.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: unclear message: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn demo() {
    let (st, out, err) = run(&["demo", "--bytes", "16M"]);
    assert!(st.success(), "demo failed:\n{out}\n{err}");
    assert!(out.contains("match"), "no hash match in:\n{out}");
}

/// Busy threads that keep every core loaded until dropped.
struct CpuLoad(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<u64>>,
);

impl CpuLoad {
    fn start() -> CpuLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    x
                })
            })
            .collect();
        CpuLoad(stop, threads)
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// Bug 12.6: a few in 200 successful echo sessions made `astral connect`
/// exit 1 with "session ended (close reason lost)", because a 250 ms
/// watcher raced the close event. 300 echo connects under CPU load, four at
/// a time: every one must exit 0 with its bytes back.
#[test]
fn hundreds_of_echo_connects_under_load_all_succeed() {
    const RUNS: usize = 300;
    const PARALLEL: usize = 4;
    let dir = Dir::new("many");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let l = Listener::start(&ka, 1, &["--serve", "echo=echo"]);
    let target = format!("{ida}@{}", l.addrs[0]);
    let _load = CpuLoad::start();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= RUNS {
                    return;
                }
                let msg = format!("echo {i}\n");
                let mut c = Child::spawn(
                    "astral connect",
                    Command::new(BIN)
                        .args(["connect", "-k", kb.to_str().unwrap(), &target, "echo"])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                );
                let out = drain(c.inner.stdout.take().unwrap());
                let err = drain(c.inner.stderr.take().unwrap());
                let mut stdin = c.inner.stdin.take().unwrap();
                stdin.write_all(msg.as_bytes()).unwrap();
                drop(stdin);
                let st = c.wait(LIMIT);
                let out = out.recv().unwrap();
                let err = String::from_utf8_lossy(&err.recv().unwrap()).into_owned();
                if !st.success() || out != msg.as_bytes() {
                    failures.lock().unwrap().push(format!(
                        "run {i}: {st}, stdout {:?}, stderr {err}",
                        String::from_utf8_lossy(&out)
                    ));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!(
        "{RUNS} echo connects under CPU load: {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {RUNS} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(l);
}

/// SIGTERM and SIGINT on a `connect` in the middle of a session: the node
/// shuts down and the exit code is 143 / 130.
#[test]
fn connect_exit_codes_on_signals() {
    let dir = Dir::new("sig");
    let (ka, ida) = keygen(&dir, "a.key");
    let (kb, _) = keygen(&dir, "b.key");
    let control = dir.path("c.sock");
    let l = Listener::start(
        &ka,
        1,
        // The default recovery timeout (30 s): the listener's session ends
        // at once because the connect says goodbye.
        &[
            "--serve",
            "echo=echo",
            "--control",
            control.to_str().unwrap(),
        ],
    );
    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        let mut c = Connect::spawn(&[
            "connect",
            "-k",
            kb.to_str().unwrap(),
            &format!("{ida}@{}", l.addrs[0]),
            "echo",
        ]);
        // The session is up once the listener has it.
        wait_for(Duration::from_secs(20), || {
            (ctl(&control, &["sessions"])
                .as_array()
                .map_or(0, |a| a.len())
                == 1)
                .then_some(())
        });
        c.child.signal(sig);
        let st = c.child.wait(Duration::from_secs(10));
        assert_eq!(st.code(), Some(code), "SIG{sig}");
        // The listener's session ends: the Goodbye arrived.
        wait_for(Duration::from_secs(3), || {
            ctl(&control, &["sessions"])
                .as_array()
                .is_some_and(|a| a.is_empty())
                .then_some(())
        });
    }
}

/// `astral bench --pipe` runs the tool's own pipes against snow (tiny).
#[test]
fn bench_pipe_runs() {
    let (st, out, err) = run(&["bench", "--pipe", "--bytes", "4M", "--reps", "1", "--json"]);
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["pipe_median_mib_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["snow_median_mib_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["ratio"].as_f64().unwrap() > 0.0);
}
