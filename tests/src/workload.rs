//! The built-in workload: sessions whose bytes follow a per-direction
//! pseudo-random pattern, so every byte read can be checked without
//! storing payloads.

use std::time::Duration;

use astral_core::{CloseReason, ReadError, SessionId, Timestamp, WriteError};
use rand_core::RngCore;

use crate::Sim;

/// One session of the built-in workload.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    /// Opening node.
    pub opener: usize,
    /// Accepting node.
    pub acceptor: usize,
    /// Bytes opener → acceptor.
    pub up: u64,
    /// Bytes acceptor → opener.
    pub down: u64,
    /// Write sizes are drawn uniformly from 1..=max_write.
    pub max_write: usize,
    /// Read sizes are drawn uniformly from 1..=max_read.
    pub max_read: usize,
    /// The acceptor rejects the query with this code instead of accepting.
    pub reject: Option<u8>,
    /// Application-paced writers (an interactive session): each direction
    /// writes one chunk per interval instead of as fast as it can, so the
    /// session stays open, mostly idle, for `total / chunk × interval`.
    pub write_interval: Option<Duration>,
}

impl FlowSpec {
    /// A flow with random write/read sizes up to 16 KiB.
    pub fn new(opener: usize, acceptor: usize, up: u64, down: u64) -> Self {
        FlowSpec {
            opener,
            acceptor,
            up,
            down,
            max_write: 16 * 1024,
            max_read: 16 * 1024,
            reject: None,
            write_interval: None,
        }
    }
}

/// State of one direction of a flow.
#[derive(Clone, Debug, Default)]
pub struct HalfFlow {
    /// Pattern key.
    pub key: u64,
    /// Bytes to send (lowered to what was written by a half-close action).
    pub total: u64,
    /// Bytes written so far.
    pub written: u64,
    /// Bytes read and verified so far.
    pub read: u64,
    /// Fin issued.
    pub finished: bool,
    /// End-of-stream read.
    pub eof: bool,
    /// Writer got Blocked and waits for Writable.
    pub blocked: bool,
    /// A paced writer's next chunk is due then.
    pub next_write_at: Timestamp,
    /// The reading end's window growths and shrinks seen so far.
    pub tuned: (u32, u32),
}

/// One session of the workload, both ends.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The plan.
    pub spec: FlowSpec,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// Session at the opener.
    pub at_opener: Option<SessionId>,
    /// Session at the acceptor.
    pub at_acceptor: Option<SessionId>,
    /// Opener → acceptor.
    pub up: HalfFlow,
    /// Acceptor → opener.
    pub down: HalfFlow,
    /// How the session ended at the opener.
    pub closed_opener: Option<CloseReason>,
    /// How it ended at the acceptor.
    pub closed_acceptor: Option<CloseReason>,
    /// When the first end reported the session closed.
    pub first_closed_at: Option<Timestamp>,
    /// A reset action aborted it: `Some(true)` from the acceptor.
    pub reset_by: Option<bool>,
    /// Violations seen by the oracle.
    pub errors: Vec<String>,
}

impl Flow {
    /// Whether both ends are done: the opener reported how the session
    /// ended, and the acceptor did too or never had it (rejected, or the
    /// query never reached it).
    pub fn closed(&self) -> bool {
        self.closed_opener.is_some()
            && (self.closed_acceptor.is_some()
                || self.spec.reject.is_some()
                || self.at_acceptor.is_none())
    }
}

/// Word `w` (bytes `8w..8w+8`, little-endian) of the pattern with key `key`.
fn pattern_word(key: u64, w: u64) -> u64 {
    let mut z = key ^ w.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte `i` of the pattern with key `key`.
pub fn pattern_byte(key: u64, i: u64) -> u8 {
    pattern_word(key, i / 8).to_le_bytes()[(i % 8) as usize]
}

/// Bytes `start..start + out.len()` of the pattern, a word at a time (the
/// simulator spends much of its time here on large transfers).
fn fill_pattern(key: u64, start: u64, out: &mut [u8]) {
    // Unaligned head, whole words, tail.
    let head = ((8 - start % 8) % 8).min(out.len() as u64) as usize;
    for (k, b) in out[..head].iter_mut().enumerate() {
        *b = pattern_byte(key, start + k as u64);
    }
    let mut w = (start + head as u64) / 8;
    let mut words = out[head..].chunks_exact_mut(8);
    for chunk in &mut words {
        chunk.copy_from_slice(&pattern_word(key, w).to_le_bytes());
        w += 1;
    }
    let tail = words.into_remainder();
    let bytes = pattern_word(key, w).to_le_bytes();
    let n = tail.len();
    tail.copy_from_slice(&bytes[..n]);
}

impl Sim {
    /// Writes whatever the workload's writers can write now.
    pub(crate) fn pump_app(&mut self) {
        for i in 0..self.flows.len() {
            for acceptor in [false, true] {
                self.write_flow(i, acceptor);
            }
        }
    }

    fn write_flow(&mut self, i: usize, acceptor: bool) {
        let f = &self.flows[i];
        let (node, sid, half) = if acceptor {
            (f.spec.acceptor, f.at_acceptor, &f.down)
        } else {
            (f.spec.opener, f.at_opener, &f.up)
        };
        let Some(sid) = sid else { return };
        if half.blocked || half.finished || f.reset_by.is_some() {
            return;
        }
        let interval = f.spec.write_interval;
        if interval.is_some() && self.now < half.next_write_at {
            return;
        }
        let max_write = f.spec.max_write.max(1);
        let (key, mut written, total) = (half.key, half.written, half.total);
        self.chunk.resize(max_write, 0);
        let Some(mut s) = self.nodes[node].session(sid) else {
            return;
        };
        let mut blocked = false;
        while written < total {
            let want =
                (1 + self.rng.next_u64() as usize % max_write).min((total - written) as usize);
            // `write` takes min(len, capacity) (or refuses when full), so
            // offering more than the capacity changes nothing: fill only
            // what can be taken (at least one byte, to see `Blocked`).
            let want = want.min(s.write_capacity().max(1));
            fill_pattern(key, written, &mut self.chunk[..want]);
            match s.write(&self.chunk[..want]) {
                Ok(n) => written += n as u64,
                Err(WriteError::Blocked) => {
                    blocked = true;
                    break;
                }
                Err(_) => break,
            }
            if interval.is_some() {
                break;
            }
        }
        let finished = written == total;
        if finished {
            s.finish();
        }
        let f = &mut self.flows[i];
        let half = if acceptor { &mut f.down } else { &mut f.up };
        half.written = written;
        half.blocked = blocked;
        half.finished = finished;
        if let Some(d) = interval {
            half.next_write_at = self.now + d;
        }
    }

    /// When the next paced write is due (a wake-up for the event loop).
    pub(crate) fn next_paced_write(&self) -> Option<Timestamp> {
        self.flows
            .iter()
            .filter(|f| f.spec.write_interval.is_some() && f.reset_by.is_none())
            .flat_map(|f| {
                [
                    (f.spec.opener, f.at_opener, &f.up),
                    (f.spec.acceptor, f.at_acceptor, &f.down),
                ]
                .into_iter()
                // Only live writers: a closed session's writer never runs
                // again, and its due time must not keep the loop awake.
                .filter(|(node, sid, h)| {
                    sid.is_some_and(|s| self.by_session.contains_key(&(*node, s)))
                        && !h.finished
                        && !h.blocked
                })
                .map(|(_, _, h)| h.next_write_at)
            })
            .min()
    }

    pub(crate) fn read_flow(&mut self, i: usize, acceptor: bool) {
        let f = &self.flows[i];
        let (node, sid, half) = if acceptor {
            (f.spec.acceptor, f.at_acceptor, &f.up)
        } else {
            (f.spec.opener, f.at_opener, &f.down)
        };
        let Some(sid) = sid else { return };
        let max_read = f.spec.max_read.max(1);
        let (key, mut read, total) = (half.key, half.read, half.total);
        let reset = f.reset_by.is_some();
        let mut eof = half.eof;
        let mut errors = Vec::new();
        let mut buf = vec![0u8; max_read];
        let mut expect = vec![0u8; max_read];
        let mut tuned = half.tuned;
        if let Some(mut s) = self.nodes[node].session(sid) {
            loop {
                let want = 1 + self.rng.next_u64() as usize % max_read;
                match s.read(&mut buf[..want]) {
                    Ok(0) => {
                        if read != total {
                            errors.push(format!("flow {i}: EOF after {read} of {total} bytes"));
                        }
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        fill_pattern(key, read, &mut expect[..n]);
                        if buf[..n] != expect[..n] {
                            let at = (0..n).find(|k| buf[*k] != expect[*k]).unwrap_or(0);
                            errors.push(format!(
                                "flow {i}: wrong byte at offset {}",
                                read + at as u64
                            ));
                            break;
                        }
                        read += n as u64;
                        if read > total {
                            errors.push(format!("flow {i}: {read} bytes read, only {total} sent"));
                            break;
                        }
                    }
                    Err(ReadError::Blocked) => break,
                    // A reset flow may see its reset through a read.
                    Err(ReadError::Closed(_)) if reset => break,
                    Err(e) => {
                        errors.push(format!("flow {i}: read error {e}"));
                        break;
                    }
                }
            }
            if let Some(info) = s.info() {
                tuned = (info.stats.window_growths, info.stats.window_shrinks);
            }
        }
        let f = &mut self.flows[i];
        let half = if acceptor { &mut f.up } else { &mut f.down };
        self.coverage.window_growths += u64::from(tuned.0.saturating_sub(half.tuned.0));
        self.coverage.window_shrinks += u64::from(tuned.1.saturating_sub(half.tuned.1));
        half.tuned = tuned;
        half.read = read;
        half.eof = eof;
        f.errors.extend(errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern is part of recorded traces: pinned (values from the
    /// original byte-at-a-time formula).
    #[test]
    fn pattern_is_pinned() {
        let got: Vec<u8> = (0..10).map(|i| pattern_byte(42, i)).collect();
        assert_eq!(got, [34, 118, 114, 212, 39, 234, 89, 167, 149, 110]);
    }

    #[test]
    fn fill_matches_bytewise_pattern_at_any_alignment() {
        for start in 0..20u64 {
            for len in 0..30usize {
                let mut out = vec![0u8; len];
                fill_pattern(42, start, &mut out);
                let expect: Vec<u8> = (0..len as u64)
                    .map(|k| pattern_byte(42, start + k))
                    .collect();
                assert_eq!(out, expect, "start {start} len {len}");
            }
        }
    }
}
