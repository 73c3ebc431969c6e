//! The Noise handshake and the record layer of a stream.
//!
//! A stream opens with `Noise_XK_25519_ChaChaPoly_BLAKE2s` (the dialer, the
//! initiator, knows the listener's [`NodeId`](crate::NodeId)) under the
//! prologue [`PROLOGUE`]. Each handshake message travels as
//! `u16 BE length || message`:
//!
//! | msg | direction | Noise tokens | payload |
//! |---|---|---|---|
//! | 1 | initiator → responder | `e, es` | empty (ignored, reserved) |
//! | 2 | responder → initiator | `e, ee` | `version u8 (=2) ‖ stream_id u64 ‖ features u32 ‖ incarnation u64 [‖ supersedes u64]` |
//! | 3 | initiator → responder | `s, se` | `version u8 (=2) ‖ features u32 ‖ incarnation u64 [‖ supersedes u64]` (features: the initiator's choice, the intersection of both offers) |
//!
//! The incarnation is a random number each node instance draws at start-up:
//! a peer that comes back with a new one has restarted (or is a second
//! process with the same key), so sessions never migrate or recover across
//! incarnations.
//!
//! After the handshake every record is `u16 BE length || ciphertext`, the
//! ciphertext being the plaintext plus a 16-byte tag (see `RecordCipher`).
//!
//! Randomness (the ephemeral keys) comes only from the caller's seed through
//! a seeded snow resolver: the same identities and seeds give the same bytes.

pub(crate) mod handshake;
pub(crate) mod record;
pub(crate) mod resolver;

pub(crate) use handshake::{Established, Handshake};
pub(crate) use record::RecordCipher;
pub use record::{Opened, OpenedRecords, RecordOpener, RecordSealer, UnsealedRecords};
pub(crate) use resolver::SeededResolver;

/// The Noise prologue: names the protocol and its version. Both sides mix it
/// into the handshake hash, so a peer speaking anything else fails message 1.
pub const PROLOGUE: &[u8] = b"astral-rs/stream/1";

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";

/// The handshake payload version this build speaks.
pub const VERSION: u8 = 2;

/// Feature bits negotiated in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features(pub u32);

impl Features {
    /// No optional feature.
    pub const NONE: Features = Features(0);
    /// The extended frame set (`DataAt`, `Credit`, `MigrateTo`, ...).
    pub const EXTENDED_FRAMES: Features = Features(1);
    /// Bit 1: records use AES-256-GCM instead of ChaCha20-Poly1305 (offered
    /// by a node configured to; used when both offer it).
    pub const AES_GCM: Features = Features(2);
    /// Everything this build supports.
    pub const ALL: Features = Features(Features::EXTENDED_FRAMES.0 | Features::AES_GCM.0);

    /// True if every bit of `other` is set in `self`.
    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits set in both.
    pub fn intersect(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }
}

/// Errors of the handshake and the record layer. All are fatal for the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The Noise handshake failed; the text says which message and, where it
    /// can be told, why (e.g. a wrong public key on the dialer's side).
    #[error("{0}")]
    Handshake(String),
    /// The peer's first bytes are not an astral handshake at all (e.g. an
    /// HTTP or TLS server); the text shows what it sent, escaped.
    #[error("the peer does not speak the astral protocol (it sent \"{0}\")")]
    NotAstral(String),
    /// The peer speaks another handshake payload version.
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    Version(u8),
    /// A handshake payload has the wrong length or offers impossible values.
    #[error("malformed handshake payload")]
    BadPayload,
    /// A record failed authentication.
    #[error("record failed to decrypt (corrupted or forged)")]
    Decrypt,
    /// A record's length field is below the tag length.
    #[error("record too short ({0} bytes)")]
    RecordTooShort(usize),
    /// The caller asked to seal more than a record holds.
    #[error("plaintext of {0} bytes exceeds a record")]
    PlaintextTooLarge(usize),
    /// `into_established` before the handshake finished.
    #[error("handshake not complete")]
    NotComplete,
    /// The peer sent bytes when it was not its turn to send.
    #[error("unexpected handshake message")]
    Unexpected,
    /// A driver used the record layer against its contract (ciphertext for a
    /// stream whose keys it holds, records sealed twice, ...): a bug in the
    /// driver, never caused by the network.
    #[error("record layer misuse by the driver: {0}")]
    Misuse(&'static str),
}

/// Whether this CPU has AES instructions (then AES-256-GCM records are
/// faster than ChaCha20-Poly1305). Drivers use it to set
/// [`Config::offer_aes_gcm`](crate::Config::offer_aes_gcm); the core itself
/// never probes the CPU, so its output does not depend on the machine.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests;
