//! The legitimate client: from its own source address, a fresh node
//! connects to the listener, opens an `echo` session, sends 32 bytes and
//! must read them back, all within a deadline. A try that does not is a
//! failure, with its reason.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::astral_api;
use crate::hostile::listener::Target;

/// The source address of legitimate clients (attackers use others).
pub const LEGIT_SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// First identity seed of the tries during an attack (try `i` uses
/// `DURING_SEED + i`).
pub const DURING_SEED: u64 = 50_000;
/// First identity seed of the tries after an attack.
pub const AFTER_SEED: u64 = 60_000;

/// The identities of the first `tries` legitimate tries during and after an
/// attack: what an allow list must hold for them to get in
/// (`astral-hostile --allow-legit`).
///
/// ```
/// let ids = astral_harness::hostile::legit::identities(3);
/// assert_eq!(ids.len(), 6);
/// ```
pub fn identities(tries: usize) -> Vec<astral_api::NodeId> {
    (0..tries as u64)
        .flat_map(|i| [DURING_SEED + i, AFTER_SEED + i])
        .map(|seed| astral_api::identity(seed).node_id())
        .collect()
}

/// The outcome of a series of tries.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LegitResult {
    /// Tries made.
    pub tries: usize,
    /// Tries that connected and echoed in time.
    pub ok: usize,
    /// Median time of the successful tries, ms.
    pub p50_ms: Option<f64>,
    /// Slowest successful try, ms.
    pub max_ms: Option<f64>,
    /// Why the others failed, with counts.
    pub failures: BTreeMap<String, usize>,
}

impl LegitResult {
    /// `ok/tries` and times, for a table cell.
    pub fn cell(&self) -> String {
        match (self.p50_ms, self.max_ms) {
            (Some(p), Some(m)) => format!("{}/{} ({:.0}/{:.0} ms)", self.ok, self.tries, p, m),
            _ => format!("{}/{}", self.ok, self.tries),
        }
    }
}

/// One try: connect, open `echo`, echo 32 bytes; the elapsed time.
pub async fn try_once(target: &Target, seed: u64, deadline: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let node = astral_api::node(astral_api::identity(seed))?;
    let r = tokio::time::timeout(deadline, async {
        astral_api::connect(&node, target.id, target.addr, Some(LEGIT_SOURCE)).await?;
        let mut s = astral_api::open(&node, target.id, "echo").await?;
        let msg = [0xa5u8; 32];
        s.write_all(&msg)
            .await
            .map_err(|e| format!("echo write: {e}"))?;
        let mut back = [0u8; 32];
        s.read_exact(&mut back)
            .await
            .map_err(|e| format!("echo read: {e}"))?;
        if back != msg {
            return Err("echo returned other bytes".to_string());
        }
        Ok(())
    })
    .await;
    astral_api::shutdown(&node);
    match r {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no echo within {} ms", deadline.as_millis())),
    }
}

/// First identity seed of the bulk transfers (before, during, after).
pub const BULK_SEED: u64 = 70_000;

/// One bulk upload of a well-behaved peer: a fresh node (identity
/// `seed`, from [`LEGIT_SOURCE`]) opens `discard`, writes `bytes` in
/// 64 KiB chunks, half-closes and waits for the service's end of stream
/// (the service answers it only after reading everything). Goodput in
/// Mbit/s, from the first write to that end; connecting is not timed.
pub async fn bulk(
    target: &Target,
    seed: u64,
    bytes: u64,
    deadline: Duration,
) -> Result<f64, String> {
    let node = astral_api::node(astral_api::identity(seed))?;
    let r = tokio::time::timeout(deadline, async {
        astral_api::connect(&node, target.id, target.addr, Some(LEGIT_SOURCE)).await?;
        let mut s = astral_api::open(&node, target.id, "discard").await?;
        let chunk = bytes::Bytes::from(vec![0x5au8; 64 << 10]);
        let io = |e: std::io::Error| format!("bulk: {e}");
        let start = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_chunk(chunk.slice(..n)).await.map_err(io)?;
            left -= n as u64;
        }
        s.shutdown().await.map_err(io)?;
        while s.read_chunk(64 << 10).await.map_err(io)?.is_some() {}
        Ok::<f64, String>(bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6)
    })
    .await;
    astral_api::shutdown(&node);
    match r {
        Ok(r) => r,
        Err(_) => Err(format!(
            "bulk of {bytes} B not done in {} s",
            deadline.as_secs()
        )),
    }
}

/// Up to `tries` tries, one after another, each within `deadline`; stops
/// early at `until`.
pub async fn tries(
    target: &Target,
    tries: usize,
    deadline: Duration,
    until: Option<Instant>,
    seed: u64,
) -> LegitResult {
    let mut r = LegitResult::default();
    let mut times = Vec::new();
    for i in 0..tries {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        r.tries += 1;
        match try_once(target, seed + i as u64, deadline).await {
            Ok(t) => {
                r.ok += 1;
                times.push(t.as_secs_f64() * 1e3);
            }
            Err(e) => *r.failures.entry(simplify(&e)).or_default() += 1,
        }
    }
    times.sort_by(f64::total_cmp);
    r.p50_ms = times.get(times.len() / 2).copied();
    r.max_ms = times.last().copied();
    r
}

/// Failure reasons without the parts that differ per try (ids, ports), so
/// equal causes count together.
pub fn simplify(e: &str) -> String {
    let mut out = String::with_capacity(e.len());
    for word in e.split(' ') {
        let hexy = word.len() >= 16
            && word
                .chars()
                .all(|c| c.is_ascii_hexdigit() || "@.:".contains(c));
        let addr = word.contains("127.0.0.") || word.parse::<std::net::SocketAddr>().is_ok();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(if hexy || addr { "…" } else { word });
    }
    out.chars().take(240).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_lose_ids_and_addresses() {
        let id = "ab".repeat(32);
        let e = format!("connect to {id}@127.0.0.1:4000: handshake failed");
        assert_eq!(super::simplify(&e), "connect to … handshake failed");
    }
}
