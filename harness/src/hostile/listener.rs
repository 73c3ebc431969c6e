//! The target: an `astral listen` process, started here (or an existing one
//! named by address, id and pid), and its memory from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use astral_tokio::NodeId;

/// Where the `astral` binary lives. The one place that knows:
/// 1. `$ASTRAL_BIN` if set;
/// 2. otherwise `cargo build [--release] --bin astral` in this workspace
///    (cargo finds the member that owns the binary, `astral-node-cli`) and
///    `<target dir>/{release,debug}/astral`.
///
/// Measurements want `release`; CI's quick checks take the debug build
/// that `cargo test --workspace` has mostly built already.
pub fn astral_bin(release: bool) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ASTRAL_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ASTRAL_BIN={} is not a file", p.display()))
        };
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("cannot locate the workspace")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.arg("build");
    if release {
        build.arg("--release");
    }
    let status = build
        .args(["--bin", "astral"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo to build astral: {e}"))?;
    if !status.success() {
        return Err("cargo build --bin astral failed".into());
    }
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("astral");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} missing after the build", bin.display()))
    }
}

/// Memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Resident set now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set so far (`VmHWM`).
    pub hwm_kib: u64,
}

/// Reads `/proc/PID/status`; `None` if the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
}

/// Parses the `VmRSS` and `VmHWM` lines of a `/proc/PID/status` text.
///
/// ```
/// use astral_harness::hostile::listener::parse_status;
/// let m = parse_status("Name:\tastral\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n").unwrap();
/// assert_eq!((m.rss_kib, m.hwm_kib), (10240, 20480));
/// ```
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// What the attacks are pointed at.
#[derive(Debug, Clone)]
pub struct Target {
    /// The listener's address.
    pub addr: SocketAddr,
    /// The listener's node id.
    pub id: NodeId,
    /// Its process id, for memory readings.
    pub pid: Option<u32>,
    /// Its control socket, for what it holds (peers, sessions, admission).
    pub control: Option<Control>,
}

/// A listener's control socket and the `astral` binary that talks to it.
#[derive(Debug, Clone)]
pub struct Control {
    /// The `astral` binary (its `ctl` subcommand).
    pub bin: PathBuf,
    /// The socket (`astral listen --control PATH`).
    pub socket: PathBuf,
}

impl Control {
    /// `astral ctl --json node`, parsed; `None` if the listener does not
    /// answer within 5 s.
    pub async fn node_state(&self) -> Option<NodeState> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("ctl")
            .arg("-c")
            .arg(&self.socket)
            .args(["--json", "node"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
            .await
            .ok()?
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// What a listener holds, from `astral ctl --json node` (docs/CLI.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeState {
    /// Peers with an established stream.
    pub peers: usize,
    /// Peers the node keeps any state for.
    pub known_peers: usize,
    /// Established streams.
    pub streams: usize,
    /// Live sessions.
    pub sessions: usize,
    /// Handshake admission counters.
    pub admission: AdmissionState,
}

/// The admission counters of `ctl node` (docs/SECURITY.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdmissionState {
    /// Handshakes served now.
    pub active: usize,
    /// Transports waiting for a handshake slot now.
    pub waiting: usize,
    /// Handshakes evicted for a newcomer.
    pub evicted: u64,
    /// Handshakes that ran out of time.
    pub timed_out: u64,
    /// Transports refused outright.
    pub refused: u64,
    /// Handshakes of identities the accept policy refused.
    pub not_allowed: u64,
    /// Handshakes completed and accepted.
    pub completed: u64,
}

impl NodeState {
    /// A short table cell.
    pub fn cell(&self) -> String {
        let a = &self.admission;
        format!(
            "{}p {}s; hs {}+{}w, {}ev {}to {}na",
            self.known_peers,
            self.sessions,
            a.active,
            a.waiting,
            a.evicted,
            a.timed_out,
            a.not_allowed
        )
    }
}

/// An `astral listen` process started for the attacks; killed when dropped.
pub struct Listener {
    child: Child,
    target: Target,
    dir: PathBuf,
    log: Arc<Mutex<LogTail>>,
}

/// The last lines the listener wrote to stderr, and how many in all.
#[derive(Default)]
struct LogTail {
    lines: std::collections::VecDeque<String>,
    count: u64,
}

impl Listener {
    /// Starts `astral listen` from `bin` on `bind` (port 0 = any) with an
    /// echo service and a fresh key, plus `extra` arguments; waits until it
    /// listens.
    pub fn start(bin: &Path, bind: SocketAddr, extra: &[String]) -> Result<Listener, String> {
        Listener::start_with(bin, bind, extra, None)
    }

    /// [`Listener::start`], and with `allow`, `--allow FILE` listing those
    /// identities. The listener always gets a control socket (unless
    /// `extra` names one), so reports say what it holds.
    pub fn start_with(
        bin: &Path,
        bind: SocketAddr,
        extra: &[String],
        allow: Option<&[NodeId]>,
    ) -> Result<Listener, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "astral-hostile-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key = dir.join("listener.key");
        let _ = std::fs::remove_file(&key);
        let out = Command::new(bin)
            .args(["keygen", "-o"])
            .arg(&key)
            .output()
            .map_err(|e| format!("{} keygen: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "astral keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let id: NodeId = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("astral keygen printed no id: {e}"))?;
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let control = if extra.iter().any(|a| a == "--control") {
            None
        } else {
            let socket = dir.join("ctl.sock");
            args.extend(["--control".into(), socket.clone().into()]);
            Some(Control {
                bin: bin.to_path_buf(),
                socket,
            })
        };
        if let Some(ids) = allow {
            let file = dir.join("allowed");
            let mut text = String::from("# astral-hostile: the legitimate tries\n");
            for id in ids {
                text.push_str(&format!("{id}\n"));
            }
            std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
            args.extend(["--allow".into(), file.into()]);
        }
        let mut child = Command::new(bin)
            .arg("listen")
            .arg("-k")
            .arg(&key)
            .args(["-b", &bind.to_string(), "--serve", "echo=echo"])
            .args(["--serve", "discard=discard"])
            .args(&args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{} listen: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(LogTail::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            // Drain stderr for the process's whole life: a full pipe would
            // block the listener's logging and so the listener.
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr.trim().to_string());
                        }
                    }
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    l.count += 1;
                    l.lines.push_back(line);
                    if l.lines.len() > 50 {
                        l.lines.pop_front();
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                return Err("astral listen did not report its address within 10 s".into());
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| format!("listen address {addr:?}: {e}"))?;
        let pid = child.id();
        Ok(Listener {
            child,
            target: Target {
                addr,
                id,
                pid: Some(pid),
                control,
            },
            dir,
            log,
        })
    }

    /// Address, id and pid.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many lines the listener logged, and the last few.
    pub fn log_tail(&self) -> (u64, Vec<String>) {
        let l = self.log.lock().unwrap_or_else(|p| p.into_inner());
        (l.count, l.lines.iter().cloned().collect())
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
