//! The trace hash: a fingerprint of everything that crossed every link.
//!
//! It must be the same on every machine for the same seed and script
//! (issue 10, defect 8), so it is a SipHash-1-3 with fixed keys fed with
//! explicit little-endian integers and raw bytes. std's `DefaultHasher`
//! is neither specified nor stable across Rust releases, and `Hash` for
//! `usize` or slices feeds native-endian, pointer-width lengths.

use std::hash::Hasher;

use astral_core::Timestamp;
use siphasher::sip::SipHasher13;

/// Fixed keys: the digits of π, so nobody mistakes them for a secret.
const KEY0: u64 = 0x3243_f6a8_885a_308d;
const KEY1: u64 = 0x3131_98a2_e037_0734;

/// Accumulates deliveries into one 64-bit fingerprint.
#[derive(Clone, Debug)]
pub struct TraceHasher(SipHasher13);

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher(SipHasher13::new_with_keys(KEY0, KEY1))
    }
}

impl TraceHasher {
    /// Records that `data` was delivered at `at` on `link`, towards the
    /// dialer (`to_a`) or the acceptor. An empty `data` is a transport close.
    pub fn delivery(&mut self, at: Timestamp, link: usize, to_a: bool, data: &[u8]) {
        self.0.write(&(link as u64).to_le_bytes());
        self.0.write(&[u8::from(to_a)]);
        self.0.write(&at.as_nanos().to_le_bytes());
        self.0.write(&(data.len() as u64).to_le_bytes());
        self.0.write(data);
    }

    /// The fingerprint so far.
    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value is pinned: if this changes, traces recorded on one machine
    /// or toolchain no longer match another's. It was cross-checked with an
    /// independent SipHash-1-3 (a few lines of Python over the same bytes:
    /// each delivery is `link u64le, to_a u8, at u64le, len u64le, data`).
    #[test]
    fn fingerprint_is_fixed() {
        let mut h = TraceHasher::default();
        h.delivery(Timestamp::from_nanos(1_000), 3, true, b"astral");
        h.delivery(Timestamp::from_nanos(2_000), 0, false, b"");
        assert_eq!(h.finish(), PINNED);
    }

    const PINNED: u64 = 16_498_319_151_464_877_354;
}
