//! Helpers for the end-to-end tests: they run the real `astral` binary.
//!
//! Every child process is held by a [`Child`] guard that kills it when the
//! test fails (drop), and every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::RngCore;

pub const BIN: &str = env!("CARGO_BIN_EXE_astral");
pub const LIMIT: Duration = Duration::from_secs(120);

/// A child process killed on drop (so a failing test leaves nothing behind).
pub struct Child {
    pub inner: std::process::Child,
    pub name: &'static str,
}

impl Child {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Child {
        let inner = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Child { inner, name }
    }

    /// Waits for exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.inner.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > limit {
                let _ = self.inner.kill();
                panic!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.inner.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.inner.try_wait() {
            let _ = self.inner.kill();
            let _ = self.inner.wait();
        }
    }
}

/// Runs `astral ARGS` to completion (bounded), stdin empty; (status,
/// stdout, stderr).
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    run_with(args, &[], b"")
}

/// Runs `astral ARGS` with extra environment and `input` on stdin.
pub fn run_with(args: &[&str], env: &[(&str, &str)], input: &[u8]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut c = Child::spawn("astral", &mut cmd);
    let out = drain(c.inner.stdout.take().unwrap());
    let err = drain(c.inner.stderr.take().unwrap());
    let mut stdin = c.inner.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let st = c.wait(LIMIT);
    let _ = writer.join();
    let out = String::from_utf8_lossy(&out.recv().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err.recv().unwrap()).into_owned();
    (st, out, err)
}

/// Reads a pipe to its end on a thread.
pub fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// Forwards the lines of a pipe on a channel.
pub fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A temporary directory, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let mut b = [0u8; 6];
        rand::rng().fill_bytes(&mut b);
        // Short: Unix socket paths are limited to 108 bytes.
        let p = std::env::temp_dir().join(format!("ac-{tag}-{}", hex(&b)));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn str(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `astral keygen -o FILE`, checked against `astral id FILE`.
pub fn keygen(dir: &Dir, name: &str) -> (PathBuf, String) {
    let key = dir.path(name);
    let (st, out, err) = run(&["keygen", "-o", key.to_str().unwrap()]);
    assert!(st.success(), "keygen failed: {err}");
    let id = out.trim().to_string();
    assert_eq!(id.len(), 64, "keygen printed {out:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let (st, out, err) = run(&["id", key.to_str().unwrap()]);
    assert!(st.success(), "id failed: {err}");
    assert_eq!(out.trim(), id, "`astral id` disagrees with keygen");
    (key, id)
}

/// A running `astral listen`, its stderr lines on a channel.
pub struct Listener {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
    /// The addresses it printed (`listening on ADDR`).
    pub addrs: Vec<String>,
    stdout: Option<mpsc::Receiver<Vec<u8>>>,
}

impl Listener {
    /// `astral listen -k KEY -b 127.0.0.1:0 (×binds) EXTRA...`.
    pub fn start(key: &Path, binds: usize, extra: &[&str]) -> Listener {
        let mut args = vec![
            "listen".to_string(),
            "-k".into(),
            key.to_str().unwrap().into(),
        ];
        for _ in 0..binds {
            args.extend(["-b".into(), "127.0.0.1:0".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Listener::spawn(&args, &[], binds)
    }

    /// `astral ARGS` (a listen), waiting for `expect` "listening on" lines.
    pub fn spawn(args: &[String], env: &[(&str, &str)], expect: usize) -> Listener {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = Child::spawn("astral listen", &mut cmd);
        let stdout = Some(drain(child.inner.stdout.take().unwrap()));
        let lines = lines(child.inner.stderr.take().unwrap());
        let mut l = Listener {
            child,
            lines,
            log: Vec::new(),
            addrs: Vec::new(),
            stdout,
        };
        while l.addrs.len() < expect {
            let line = l.next_line(Duration::from_secs(20));
            if let Some(a) = line.strip_prefix("listening on ") {
                l.addrs.push(a.trim().to_string());
            }
        }
        l
    }

    pub fn next_line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(line) => {
                self.log.push(line.clone());
                line
            }
            Err(e) => panic!(
                "listener: no line within {limit:?} ({e}); so far: {:#?}",
                self.log
            ),
        }
    }

    /// Waits (bounded) for a stderr line containing `what`; returns it.
    pub fn wait_line(&mut self, what: &str, limit: Duration) -> String {
        let t0 = Instant::now();
        if let Some(l) = self.log.iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        loop {
            let left = limit.saturating_sub(t0.elapsed());
            let line = self.next_line(left.max(Duration::from_millis(1)));
            if line.contains(what) {
                return line;
            }
        }
    }

    /// Collects the stderr lines that arrive within `d`.
    pub fn settle(&mut self, d: Duration) {
        let t0 = Instant::now();
        while let Some(left) = d.checked_sub(t0.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(_) => break,
            }
        }
    }

    /// Waits for exit; (status, stdout, whole stderr).
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, String) {
        let st = self.child.wait(limit);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        let out = self.stdout.take().unwrap().recv().unwrap();
        (st, out, self.log.join("\n"))
    }

    pub fn tcp_port(&self, i: usize) -> u16 {
        self.addrs[i].rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// `astral ctl --control PATH --json ARGS...`, parsed.
pub fn ctl(control: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["ctl", "--control", control.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    let (st, out, err) = run(&a);
    assert!(st.success(), "ctl {args:?} failed: {out} {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {args:?}: not JSON ({e}): {out}"))
}

/// Polls `f` until it returns `Some` (bounded).
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port nothing listens on (bound, noted, closed).
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started `astral connect` with pipes.
pub struct Connect {
    pub child: Child,
    pub stdin: Option<std::process::ChildStdin>,
    pub out: mpsc::Receiver<Vec<u8>>,
    pub err: mpsc::Receiver<Vec<u8>>,
}

impl Connect {
    pub fn spawn(args: &[&str]) -> Connect {
        let mut child = Child::spawn(
            "astral connect",
            Command::new(BIN)
                .args(args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let out = drain(child.inner.stdout.take().unwrap());
        let err = drain(child.inner.stderr.take().unwrap());
        let stdin = child.inner.stdin.take();
        Connect {
            child,
            stdin,
            out,
            err,
        }
    }

    /// Closes stdin, waits; (status, stdout, stderr).
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, String) {
        drop(self.stdin.take());
        let st = self.child.wait(limit);
        let out = self.out.recv().unwrap();
        let err = String::from_utf8_lossy(&self.err.recv().unwrap()).into_owned();
        (st, out, err)
    }
}

/// The resident set of a process, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A TCP forwarder between two of the tests' processes whose path can be
/// stalled: while stalled it moves nothing either way and closes nothing
/// (a blackholed path: no FIN, no RST, whatever the ends do); lifted, it
/// delivers what waited, in order (the kernel buffers kept it).
pub struct Forwarder {
    pub port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepted: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Forwarder {
    /// Forwards every connection to `127.0.0.1:PORT` to `to`.
    pub fn start(to: std::net::SocketAddr) -> Forwarder {
        Forwarder::start_delayed(to, Duration::ZERO)
    }

    /// Like [`Forwarder::start`], and every chunk it reads waits `one_way`
    /// before it is written on (a path with that one-way delay each way;
    /// order kept, no rate limit).
    pub fn start_delayed(to: std::net::SocketAddr, one_way: Duration) -> Forwarder {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(None));
        let flag = stalled.clone();
        let first = accepted.clone();
        std::thread::spawn(move || {
            for down in l.incoming() {
                let Ok(down) = down else { continue };
                first.lock().unwrap().get_or_insert_with(Instant::now);
                let Ok(up) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                for (from, to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || pump(from, to, flag, one_way));
                }
            }
        });
        Forwarder {
            port,
            stalled,
            accepted,
        }
    }

    /// When the first connection was accepted (its TCP connection was
    /// then up at both ends), if one was.
    pub fn first_accepted(&self) -> Option<Instant> {
        *self.accepted.lock().unwrap()
    }

    /// `ID@127.0.0.1:PORT` for `id`.
    pub fn target(&self, id: &str) -> String {
        format!("{id}@127.0.0.1:{}", self.port)
    }

    /// Stops (true) or resumes (false) the path.
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until EOF (then half-closes `to`) unless the path
/// is stalled: then it reads nothing, so nothing moves and an end's FIN or
/// RST stays unread in the kernel. With a `delay`, a second thread writes
/// each chunk (and the EOF) `delay` after it was read.
fn pump(
    mut from: std::net::TcpStream,
    to: std::net::TcpStream,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
) {
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 64 * 1024];
    from.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    // Both sockets stay open as long as this thread runs (the other
    // direction's thread holds clones): a stall never closes anything.
    let _keep = to.try_clone().unwrap();
    // `None` is the EOF (or a reset): half-close.
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    std::thread::spawn(move || {
        let mut to = to;
        for (due, chunk) in rx {
            if let Some(left) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(left);
            }
            match chunk {
                Some(c) => {
                    if to.write_all(&c).is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    return;
                }
            }
        }
    });
    let wait_while_stalled = || {
        while stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    loop {
        wait_while_stalled();
        let r = from.read(&mut buf);
        // What a read that raced with the stall returned (bytes, an EOF,
        // a reset) waits for the lift too.
        wait_while_stalled();
        let due = Instant::now() + delay;
        match r {
            Ok(0) => {
                let _ = tx.send((due, None));
                return;
            }
            Ok(n) => {
                if tx.send((due, Some(buf[..n].to_vec()))).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                let _ = tx.send((due, None));
                return;
            }
        }
    }
}

/// A `connect … echo` whose stdout is read line by line.
pub struct Echo {
    pub child: Child,
    pub stdin: std::process::ChildStdin,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Echo {
    pub fn spawn(args: &[&str]) -> Echo {
        let mut child = Child::spawn(
            "astral connect",
            Command::new(BIN)
                .args(args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let stdin = child.inner.stdin.take().unwrap();
        let out = child.inner.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let err = lines(child.inner.stderr.take().unwrap());
        Echo {
            child,
            stdin,
            out: rx,
            err,
            log: Vec::new(),
        }
    }

    /// Sends `line` and waits for it to come back.
    pub fn echo(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let got = self
            .out
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no echo of {line:?} ({e}); stderr: {:#?}", self.log()));
        assert_eq!(got, line);
    }

    /// Stderr lines so far.
    pub fn log(&mut self) -> &[String] {
        while let Ok(l) = self.err.try_recv() {
            self.log.push(l);
        }
        &self.log
    }

    /// Waits for exit; (exit code, all of stderr).
    pub fn exit(mut self, limit: Duration) -> (Option<i32>, String) {
        let st = self.child.wait(limit);
        while let Ok(l) = self.err.recv_timeout(Duration::from_secs(5)) {
            self.log.push(l);
        }
        (st.code(), self.log.join("\n"))
    }
}
