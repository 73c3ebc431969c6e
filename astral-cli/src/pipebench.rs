//! `astral bench --pipe`: the tool's own data path, measured as a user
//! runs it: `astral connect` reading a pipe on stdin, into `astral listen
//! --stdio` writing stdout to /dev/null, over loopback TCP; against one
//! snow-over-TCP session with the same cipher, interleaved run by run.
//!
//! The feeding pipe is written by this process in 1 MiB writes of zeros
//! (what `head -c N /dev/zero |` does); a run's time goes from starting the
//! connector to the listener's exit, which comes once every byte was read
//! and written out and the session closed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use astral_bench::snow::SnowTcp;
use astral_bench::Cipher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{err, AnyError};
use crate::keys;

/// A temporary directory with two key files, removed on drop.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_key(dir: &std::path::Path, name: &str) -> Result<(std::path::PathBuf, String), AnyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let id = keys::random_identity()?;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(id.to_key_file().as_bytes())
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    Ok((path, id.node_id().to_string()))
}

/// One pipe run: bytes per second.
fn pipe_run(bytes: u64) -> Result<f64, AnyError> {
    let exe = std::env::current_exe().map_err(|e| err(format!("cannot find this binary: {e}")))?;
    let mut rnd = [0u8; 6];
    getrandom::getrandom(&mut rnd).map_err(|e| err(format!("no OS randomness: {e}")))?;
    let dir = std::env::temp_dir().join(format!(
        "astral-pipe-{}",
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let scratch = Scratch(dir);
    let (ka, ida) = write_key(&scratch.0, "a.key")?;
    let (kb, _) = write_key(&scratch.0, "b.key")?;
    let mut listen = Command::new(&exe)
        .args(["listen", "-k"])
        .arg(&ka)
        .args(["-b", "127.0.0.1:0", "--stdio", "bulk"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot start astral listen: {e}")))?;
    let stderr = listen.stderr.take().ok_or_else(|| err("no stderr pipe"))?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.trim().to_string();
                }
            }
            _ => {
                let _ = listen.kill();
                return Err(err("astral listen did not start"));
            }
        }
    };
    // Keep draining its stderr.
    std::thread::spawn(move || for _ in lines {});
    let t0 = Instant::now();
    let mut connect = Command::new(&exe)
        .args(["-q", "connect", "-k"])
        .arg(&kb)
        .arg(format!("{ida}@{addr}"))
        .arg("bulk")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| err(format!("cannot start astral connect: {e}")))?;
    let mut stdin = connect.stdin.take().ok_or_else(|| err("no stdin pipe"))?;
    let feeder = std::thread::spawn(move || {
        let block = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if stdin.write_all(&block[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    let st = listen
        .wait()
        .map_err(|e| err(format!("waiting for astral listen: {e}")))?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = feeder.join();
    let cst = connect
        .wait()
        .map_err(|e| err(format!("waiting for astral connect: {e}")))?;
    if !st.success() || !cst.success() {
        return Err(err(format!("pipe run failed: listen {st}, connect {cst}")));
    }
    Ok(bytes as f64 / secs)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `reps` interleaved pairs and prints (or returns as JSON) the
/// medians and the ratio.
/// One snow-over-TCP session moving `bytes` (64 KiB writes): bytes per
/// second. The same cipher as the tool's streams.
async fn snow_goodput(cipher: Cipher, bytes: u64) -> Result<f64, AnyError> {
    let snow = SnowTcp::new(cipher).map_err(|e| err(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = snow.clone();
    let reader = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut s = server.respond(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < bytes {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok::<u64, String>(got)
    });
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let mut s = snow.initiate(tcp).await.map_err(|e| err(e.to_string()))?;
    let chunk = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk.len().min((bytes - sent) as usize);
        s.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    s.flush().await?;
    let got = reader.await.map_err(|e| err(e.to_string()))?.map_err(err)?;
    if got != bytes {
        return Err(err(format!("snow run moved {got} of {bytes} bytes")));
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64())
}

pub async fn run(bytes: u64, reps: u64, json: bool) -> Result<(), AnyError> {
    // The tool's streams use ChaCha20-Poly1305 (the core's default).
    let baseline = Cipher::ChaChaPoly;
    let (mut pipe, mut snow) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        if !json {
            eprintln!(
                "rep {}/{reps}: snow over TCP ({})",
                rep + 1,
                baseline.label()
            );
        }
        snow.push(
            snow_goodput(baseline, bytes)
                .await
                .map_err(|e| err(format!("snow run failed: {e}")))?,
        );
        if !json {
            eprintln!(
                "rep {}/{reps}: astral connect | astral listen --stdio",
                rep + 1
            );
        }
        pipe.push(
            tokio::task::spawn_blocking(move || pipe_run(bytes))
                .await
                .map_err(|e| err(format!("pipe run failed: {e}")))??,
        );
    }
    let mib = |v: f64| v / f64::from(1u32 << 20);
    let (p, s) = (median(&mut pipe), median(&mut snow));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bytes": bytes,
                "reps": reps,
                "cipher": baseline.label(),
                "pipe_mib_s": pipe.iter().map(|v| mib(*v)).collect::<Vec<_>>(),
                "snow_mib_s": snow.iter().map(|v| mib(*v)).collect::<Vec<_>>(),
                "pipe_median_mib_s": mib(p),
                "snow_median_mib_s": mib(s),
                "ratio": p / s,
                "loadavg": load,
            })
        );
    } else {
        println!(
            "CLI pipe vs one snow-over-TCP session ({}), {} per run, {reps} run{} each (medians; load average {load}):",
            baseline.label(),
            astral_bench::harness::fmt_bytes(bytes),
            if reps == 1 { "" } else { "s" }
        );
        println!(
            "  astral connect | astral listen --stdio  {:>8.0} MiB/s",
            mib(p)
        );
        println!("  {:<39} {:>8.0} MiB/s", "snow over TCP", mib(s));
        println!("  ratio                                   {:>8.2}", p / s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0]), 4.0);
    }
}
