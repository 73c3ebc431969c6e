//! Seeded randomness for snow: a [`CryptoResolver`] whose RNGs derive from a
//! caller-given seed, so handshakes are deterministic.

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// ChaCha20 stream numbers used by [`SeededResolver`] start here, so that a
/// seed that is (unwisely) also given to [`Identity::from_seed`], which uses
/// stream 0, still never yields the static key as an ephemeral key.
const RNG_STREAM_BASE: u64 = u64::from_be_bytes(*b"astralNs");

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// Seeded RNG + [`CryptoResolver`]: snow's randomness comes from the seed
/// given at construction, never from the operating system.
///
/// Call `n` (from 0) of `resolve_rng` returns a `ChaCha20Rng` seeded with the
/// seed on stream `RNG_STREAM_BASE + n`: deterministic, and distinct per call.
/// DH, hash and cipher come from snow's [`DefaultResolver`].
pub struct SeededResolver {
    seed: [u8; 32],
    calls: AtomicU64,
}

impl SeededResolver {
    /// A resolver whose RNGs derive from `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        SeededResolver {
            seed,
            calls: AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for SeededResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededResolver").finish_non_exhaustive()
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        rng.set_stream(RNG_STREAM_BASE.wrapping_add(n));
        Some(Box::new(SeededRandom(rng)))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        // ring's assembly ChaCha20-Poly1305 / AES-GCM are about twice as
        // fast as the portable implementations; same algorithms, same bytes.
        RingResolver
            .resolve_cipher(choice)
            .or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}
