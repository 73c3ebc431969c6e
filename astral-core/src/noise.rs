//! The Noise handshake and the record layer of a stream.
//!
//! A stream opens with `Noise_XK_25519_ChaChaPoly_BLAKE2s` (the dialer, the
//! initiator, knows the listener's [`NodeId`]) under the prologue
//! [`PROLOGUE`]. Each handshake message travels as `u16 BE length || message`:
//!
//! | msg | direction | Noise tokens | payload |
//! |---|---|---|---|
//! | 1 | initiator → responder | `e, es` | empty (ignored, reserved) |
//! | 2 | responder → initiator | `e, ee` | `version u8 (=1) \|\| stream_id u64 \|\| features u32` |
//! | 3 | initiator → responder | `s, se` | `version u8 (=1) \|\| features u32` (the initiator's choice: both sides' intersection) |
//!
//! After the handshake every record is `u16 BE length || ciphertext`, the
//! ciphertext being the plaintext plus a 16-byte tag (see [`RecordCipher`]).
//!
//! Randomness (the ephemeral keys) comes only from the caller's seed through
//! [`SeededResolver`]: the same identities and seeds give the same bytes.

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BufMut, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::HandshakeState;

use crate::identity::{Identity, NodeId};

/// The Noise prologue: names the protocol and its version. Both sides mix it
/// into the handshake hash, so a peer speaking anything else fails message 1.
pub const PROLOGUE: &[u8] = b"astral-rs/stream/1";

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";

/// The handshake payload version this build speaks.
pub const VERSION: u8 = 1;

/// Largest handshake message (after the length prefix) we accept. The real
/// ones are 48, 61 and 69 bytes; anything much larger is not a handshake.
const MAX_HANDSHAKE_MESSAGE: usize = 1024;

/// Smallest valid message 1/2 (`e` + tag of the payload) and message 3
/// (encrypted `s` + tag of the payload).
const MIN_MSG_1_2: usize = 32 + 16;
const MIN_MSG_3: usize = 32 + 16 + 16;

/// Length of the message 2 and message 3 payloads.
const MSG2_PAYLOAD: usize = 1 + 8 + 4;
const MSG3_PAYLOAD: usize = 1 + 4;

/// Feature bits negotiated in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features(pub u32);

impl Features {
    /// No optional feature.
    pub const NONE: Features = Features(0);
    /// The extended frame set (`DataAt`, `Credit`, `MigrateTo`, ...).
    pub const EXTENDED_FRAMES: Features = Features(1);
    /// Everything this build supports.
    pub const ALL: Features = Features(Features::EXTENDED_FRAMES.0 | Features::AES_GCM.0);
    /// Bit 1: records use AES-256-GCM instead of ChaCha20-Poly1305 (offered
    /// by a node whose CPU has AES instructions; used when both offer it).
    pub const AES_GCM: Features = Features(2);

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
pub enum NoiseError {
    /// The Noise handshake failed; the text says which message and, where it
    /// can be told, why (e.g. a wrong public key on the dialer's side).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A handshake message's length prefix exceeds what a handshake uses.
    #[error("handshake message too large ({0} bytes)")]
    MessageTooLarge(usize),
    /// The peer speaks another handshake payload version.
    #[error("unsupported protocol version {0}")]
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
    /// The caller asked to seal more than [`RecordCipher::MAX_PLAINTEXT`].
    #[error("plaintext of {0} bytes exceeds a record")]
    PlaintextTooLarge(usize),
    /// [`Handshake::into_established`] before the handshake finished.
    #[error("handshake not complete")]
    NotComplete,
    /// The peer sent bytes when it was not its turn to send.
    #[error("unexpected handshake message")]
    Unexpected,
}

// ---------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------

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

/// Whether this CPU has AES instructions (then AES-256-GCM records are
/// faster than ChaCha20-Poly1305 and a node offers them).
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

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    // Initiator.
    SendMsg1,
    AwaitMsg2,
    SendMsg3,
    // Responder.
    AwaitMsg1,
    SendMsg2,
    AwaitMsg3,
    // Both.
    Done,
}

/// One side of a stream's Noise handshake, sans-IO: feed the peer's bytes to
/// [`Handshake::handle_input`], send what [`Handshake::poll_output`] appends.
pub struct Handshake {
    state: HandshakeState,
    step: Step,
    /// Initiator: the node we dialled. Responder: learnt from message 3.
    remote: Option<NodeId>,
    local_features: Features,
    /// Responder: ours. Initiator: learnt from message 2.
    stream_id: Option<u64>,
    /// Known after message 2 (initiator) or message 3 (responder).
    negotiated: Option<Features>,
    /// Once set, every call returns this error.
    failed: Option<NoiseError>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.state.is_initiator())
            .field("step", &self.step)
            .field("remote", &self.remote)
            .field("stream_id", &self.stream_id)
            .field("negotiated", &self.negotiated)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

fn params() -> NoiseParams {
    PATTERN.parse().expect("static Noise pattern parses")
}

fn build_error(e: snow::Error) -> NoiseError {
    NoiseError::Handshake(format!("could not set up Noise state: {e}"))
}

impl Handshake {
    /// The dialer's side: `remote` is the listener's identity.
    pub fn initiator(
        identity: &Identity,
        remote: NodeId,
        features: Features,
        rng_seed: [u8; 32],
    ) -> Result<Handshake, NoiseError> {
        let private = identity.private_bytes();
        let state = snow::Builder::with_resolver(params(), Box::new(SeededResolver::new(rng_seed)))
            .local_private_key(&private)
            .and_then(|b| b.remote_public_key(remote.as_bytes()))
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
            .map_err(build_error)?;
        Ok(Handshake {
            state,
            step: Step::SendMsg1,
            remote: Some(remote),
            local_features: features,
            stream_id: None,
            negotiated: None,
            failed: None,
        })
    }

    /// The listener's side; `stream_id` is sent to the initiator in message 2.
    pub fn responder(
        identity: &Identity,
        stream_id: u64,
        features: Features,
        rng_seed: [u8; 32],
    ) -> Result<Handshake, NoiseError> {
        let private = identity.private_bytes();
        let state = snow::Builder::with_resolver(params(), Box::new(SeededResolver::new(rng_seed)))
            .local_private_key(&private)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
            .map_err(build_error)?;
        Ok(Handshake {
            state,
            step: Step::AwaitMsg1,
            remote: None,
            local_features: features,
            stream_id: Some(stream_id),
            negotiated: None,
            failed: None,
        })
    }

    fn fail(&mut self, e: NoiseError) -> NoiseError {
        self.failed = Some(e.clone());
        e
    }

    /// Appends the next handshake message(s) this side must send
    /// (length-prefixed) to `out`. Returns true if it appended something.
    ///
    /// The initiator's first call emits message 1; the responder emits
    /// message 2 after message 1 arrived; the initiator emits message 3 after
    /// message 2.
    pub fn poll_output(&mut self, out: &mut BytesMut) -> Result<bool, NoiseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut payload = [0u8; MSG2_PAYLOAD];
        let (payload, next, number) = match self.step {
            Step::SendMsg1 => (&payload[..0], Step::AwaitMsg2, 1),
            Step::SendMsg2 => {
                payload[0] = VERSION;
                payload[1..9].copy_from_slice(&self.stream_id.unwrap_or_default().to_be_bytes());
                payload[9..13].copy_from_slice(&self.local_features.0.to_be_bytes());
                (&payload[..], Step::AwaitMsg3, 2)
            }
            Step::SendMsg3 => {
                let chosen = self.negotiated.unwrap_or_default();
                payload[0] = VERSION;
                payload[1..5].copy_from_slice(&chosen.0.to_be_bytes());
                (&payload[..MSG3_PAYLOAD], Step::Done, 3)
            }
            _ => return Ok(false),
        };
        let mut msg = [0u8; MAX_HANDSHAKE_MESSAGE];
        let n = match self.state.write_message(payload, &mut msg) {
            Ok(n) => n,
            Err(e) => {
                let err = NoiseError::Handshake(format!("could not write message {number}: {e}"));
                return Err(self.fail(err));
            }
        };
        out.reserve(2 + n);
        out.put_u16(n as u16);
        out.extend_from_slice(&msg[..n]);
        self.step = next;
        Ok(true)
    }

    /// Consumes complete length-prefixed handshake messages from the front of
    /// `input`. A partial message is left in place (call again when more bytes
    /// arrived); so are any bytes that follow the final handshake message:
    /// they are transport records for the caller.
    ///
    /// Bytes that arrive when the peer may not send anything (e.g. after
    /// message 2 but before this side sent message 3) are
    /// [`NoiseError::Unexpected`]. Every error is final: later calls return it
    /// again.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), NoiseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let number = match self.step {
                Step::AwaitMsg1 => 1,
                Step::AwaitMsg2 => 2,
                Step::AwaitMsg3 => 3,
                Step::Done => return Ok(()),
                Step::SendMsg1 | Step::SendMsg2 | Step::SendMsg3 => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    return Err(self.fail(NoiseError::Unexpected));
                }
            };
            if input.len() < 2 {
                return Ok(());
            }
            let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
            if len > MAX_HANDSHAKE_MESSAGE {
                return Err(self.fail(NoiseError::MessageTooLarge(len)));
            }
            if input.len() < 2 + len {
                return Ok(());
            }
            let min = if number == 3 { MIN_MSG_3 } else { MIN_MSG_1_2 };
            if len < min {
                let err = NoiseError::Handshake(format!(
                    "message {number} is too short ({len} bytes, at least {min} expected)"
                ));
                return Err(self.fail(err));
            }
            let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
            let n = match self.state.read_message(&input[2..2 + len], &mut payload) {
                Ok(n) => n,
                Err(e) => {
                    let err = self.read_error(number, e);
                    return Err(self.fail(err));
                }
            };
            if let Err(e) = self.process_payload(number, &payload[..n]) {
                return Err(self.fail(e));
            }
            input.advance(2 + len);
        }
    }

    fn read_error(&self, number: u8, e: snow::Error) -> NoiseError {
        let text = match (number, e) {
            (1, snow::Error::Decrypt) => "message 1 did not decrypt: the dialer used the wrong \
                 public key for this node (or the message was corrupted)"
                .to_string(),
            (2, snow::Error::Decrypt) => format!(
                "message 2 did not decrypt: peer is not the expected identity {} \
                 (or the message was corrupted)",
                self.remote.map(|r| r.short()).unwrap_or_default()
            ),
            (3, snow::Error::Decrypt) => {
                "message 3 did not decrypt (corrupted or forged)".to_string()
            }
            (n, e) => format!("could not read message {n}: {e}"),
        };
        NoiseError::Handshake(text)
    }

    fn process_payload(&mut self, number: u8, payload: &[u8]) -> Result<(), NoiseError> {
        match number {
            1 => {
                // Message 1 carries no payload in version 1; anything there is
                // ignored (reserved for later versions).
                self.step = Step::SendMsg2;
            }
            2 => {
                let version = *payload.first().ok_or(NoiseError::BadPayload)?;
                if version != VERSION {
                    return Err(NoiseError::Version(version));
                }
                if payload.len() != MSG2_PAYLOAD {
                    return Err(NoiseError::BadPayload);
                }
                let stream_id = u64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
                let offered = Features(u32::from_be_bytes(
                    payload[9..13].try_into().expect("4 bytes"),
                ));
                self.stream_id = Some(stream_id);
                self.negotiated = Some(self.local_features.intersect(offered));
                self.step = Step::SendMsg3;
            }
            _ => {
                let version = *payload.first().ok_or(NoiseError::BadPayload)?;
                if version != VERSION {
                    return Err(NoiseError::Version(version));
                }
                if payload.len() != MSG3_PAYLOAD {
                    return Err(NoiseError::BadPayload);
                }
                let chosen = Features(u32::from_be_bytes(
                    payload[1..5].try_into().expect("4 bytes"),
                ));
                if !self.local_features.contains(chosen) {
                    // The initiator picked something we never offered.
                    return Err(NoiseError::BadPayload);
                }
                let remote = self
                    .state
                    .get_remote_static()
                    .and_then(|s| <[u8; 32]>::try_from(s).ok())
                    .ok_or_else(|| {
                        NoiseError::Handshake("message 3 carried no static key".into())
                    })?;
                self.remote = Some(NodeId(remote));
                self.negotiated = Some(chosen);
                self.step = Step::Done;
            }
        }
        Ok(())
    }

    /// Whether `poll_output` has a message to emit now (false while waiting
    /// for the peer's next message).
    pub fn wants_output(&self) -> bool {
        matches!(self.step, Step::SendMsg1 | Step::SendMsg2 | Step::SendMsg3)
    }

    /// True once this side has sent and received everything (initiator: after
    /// `poll_output` emitted message 3; responder: after message 3 was read).
    pub fn is_complete(&self) -> bool {
        self.step == Step::Done && self.failed.is_none()
    }

    /// Consume the finished handshake. Error if not complete.
    pub fn into_established(self) -> Result<Established, NoiseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.step != Step::Done {
            return Err(NoiseError::NotComplete);
        }
        let (Some(remote), Some(stream_id), Some(features)) =
            (self.remote, self.stream_id, self.negotiated)
        else {
            return Err(NoiseError::NotComplete);
        };
        let mut state = self.state;
        let initiator = state.is_initiator();
        // Noise Split(): the two transport keys. We run the transport
        // ciphers ourselves (in place, no copies), on exactly these keys and
        // the Noise nonce format, so records are standard Noise transport
        // messages; the AES-GCM choice was authenticated by the handshake.
        let (k1, k2) = state.dangerously_get_raw_split();
        let (tx, rx) = if initiator { (k1, k2) } else { (k2, k1) };
        let cipher = RecordCipher::from_keys(&tx, &rx, features.contains(Features::AES_GCM))?;
        Ok(Established {
            remote,
            stream_id,
            features,
            cipher,
        })
    }
}

/// The outcome of a finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The peer's identity (authenticated by the handshake).
    pub remote: NodeId,
    /// The stream id the responder chose.
    pub stream_id: u64,
    /// The features both sides use on this stream.
    pub features: Features,
    /// Encrypts and decrypts this stream's records.
    pub cipher: RecordCipher,
}

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

// Only the fuzzing build has a second (empty) variant; boxing the keys to
// please the lint would add an indirection to every record.
#[cfg_attr(feature = "fuzzing", allow(clippy::large_enum_variant))]
enum Inner {
    Aead {
        tx: LessSafeKey,
        rx: LessSafeKey,
        tx_n: u64,
        rx_n: u64,
        /// AES-GCM encodes the nonce counter big-endian, ChaChaPoly little.
        aes: bool,
    },
    #[cfg(feature = "fuzzing")]
    Insecure,
}

/// Transport records: `u16 BE length || ciphertext` (ciphertext = plaintext +
/// 16-byte tag; ≤ 65535 bytes). Each ciphertext is a Noise transport message
/// (empty associated data, nonce = 4 zero bytes || 64-bit counter).
///
/// Sealing and opening work in place: the record's frames are written
/// straight into the output buffer and encrypted there; a received record is
/// decrypted inside the input buffer and handed on without a copy.
pub struct RecordCipher {
    inner: Inner,
}

impl fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Aead { aes: true, .. } => "aes-256-gcm",
            Inner::Aead { aes: false, .. } => "chacha20-poly1305",
            #[cfg(feature = "fuzzing")]
            Inner::Insecure => "insecure-for-fuzzing",
        };
        f.debug_struct("RecordCipher")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

fn nonce(n: u64, aes: bool) -> Nonce {
    let mut b = [0u8; 12];
    if aes {
        b[4..].copy_from_slice(&n.to_be_bytes());
    } else {
        b[4..].copy_from_slice(&n.to_le_bytes());
    }
    Nonce::assume_unique_for_key(b)
}

impl RecordCipher {
    /// Largest ciphertext of one record, in bytes.
    pub const MAX_RECORD: usize = 65535;
    /// Largest plaintext of one record, in bytes.
    pub const MAX_PLAINTEXT: usize = 65519;
    /// Length of the authentication tag.
    pub const TAG_LEN: usize = 16;

    /// A cipher from the two transport keys (`tx` for sending).
    pub fn from_keys(tx: &[u8; 32], rx: &[u8; 32], aes: bool) -> Result<RecordCipher, NoiseError> {
        let alg = if aes {
            &aead::AES_256_GCM
        } else {
            &aead::CHACHA20_POLY1305
        };
        let key = |k: &[u8; 32]| {
            UnboundKey::new(alg, k)
                .map(LessSafeKey::new)
                .map_err(|_| NoiseError::Handshake("could not set up the record cipher".into()))
        };
        Ok(RecordCipher {
            inner: Inner::Aead {
                tx: key(tx)?,
                rx: key(rx)?,
                tx_n: 0,
                rx_n: 0,
                aes,
            },
        })
    }

    /// Whether records use AES-256-GCM (else ChaCha20-Poly1305).
    pub fn is_aes_gcm(&self) -> bool {
        matches!(self.inner, Inner::Aead { aes: true, .. })
    }

    /// Starts a record in `out`: reserves room and writes a placeholder
    /// length. Append the plaintext frames after it, then call
    /// [`RecordCipher::seal_in_place`] with the returned position.
    pub fn begin_record(out: &mut BytesMut) -> usize {
        out.reserve(2 + Self::MAX_PLAINTEXT + Self::TAG_LEN);
        let at = out.len();
        out.put_u16(0);
        at
    }

    /// Encrypts, in place, the plaintext that follows the record header at
    /// `header` in `out` (everything up to the end of `out`), appends the
    /// tag and fills in the length.
    pub fn seal_in_place(&mut self, out: &mut BytesMut, header: usize) -> Result<(), NoiseError> {
        let start = header + 2;
        let pt_len = out.len().saturating_sub(start);
        if pt_len > Self::MAX_PLAINTEXT || out.len() < start {
            out.truncate(header);
            return Err(NoiseError::PlaintextTooLarge(pt_len));
        }
        match &mut self.inner {
            Inner::Aead { tx, tx_n, aes, .. } => {
                if *tx_n == u64::MAX {
                    out.truncate(header);
                    return Err(NoiseError::Handshake("record nonces exhausted".into()));
                }
                let tag = tx
                    .seal_in_place_separate_tag(nonce(*tx_n, *aes), Aad::empty(), &mut out[start..])
                    .map_err(|_| NoiseError::Handshake("record encryption failed".into()))?;
                *tx_n += 1;
                out.extend_from_slice(tag.as_ref());
            }
            #[cfg(feature = "fuzzing")]
            Inner::Insecure => out.put_bytes(0, Self::TAG_LEN),
        }
        let ct_len = (pt_len + Self::TAG_LEN) as u16;
        out[header..start].copy_from_slice(&ct_len.to_be_bytes());
        Ok(())
    }

    /// Encrypts `plaintext` (≤ [`Self::MAX_PLAINTEXT`]) into one record
    /// appended to `out` (2-byte length then ciphertext).
    pub fn seal_record(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        if plaintext.len() > Self::MAX_PLAINTEXT {
            return Err(NoiseError::PlaintextTooLarge(plaintext.len()));
        }
        let at = Self::begin_record(out);
        out.extend_from_slice(plaintext);
        self.seal_in_place(out, at)
    }

    /// If `input` begins with a complete record, splits it off and returns
    /// its plaintext, decrypted in place (no copy): `Ok(Some(..))`.
    /// `Ok(None)` if more bytes are needed.
    ///
    /// A length field below [`Self::TAG_LEN`] is [`NoiseError::RecordTooShort`]
    /// (reported as soon as the two length bytes are there); a record that
    /// fails authentication is [`NoiseError::Decrypt`]. After an error the
    /// stream must be torn down.
    pub fn open_in_place(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, NoiseError> {
        if input.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
        if len < Self::TAG_LEN {
            return Err(NoiseError::RecordTooShort(len));
        }
        if input.len() < 2 + len {
            return Ok(None);
        }
        let pt_len = len - Self::TAG_LEN;
        match &mut self.inner {
            Inner::Aead { rx, rx_n, aes, .. } => {
                if *rx_n == u64::MAX {
                    return Err(NoiseError::Decrypt);
                }
                let n = nonce(*rx_n, *aes);
                if rx
                    .open_in_place(n, Aad::empty(), &mut input[2..2 + len])
                    .is_err()
                {
                    return Err(NoiseError::Decrypt);
                }
                *rx_n += 1;
            }
            #[cfg(feature = "fuzzing")]
            Inner::Insecure => {
                if input[2 + pt_len..2 + len].iter().any(|&b| b != 0) {
                    return Err(NoiseError::Decrypt);
                }
            }
        }
        let mut record = input.split_to(2 + len);
        record.advance(2);
        record.truncate(pt_len);
        Ok(Some(record))
    }

    /// Like [`RecordCipher::open_in_place`], appending the plaintext to
    /// `plain` (a copy): `Ok(true)` when a record was consumed.
    pub fn open_record(
        &mut self,
        input: &mut BytesMut,
        plain: &mut BytesMut,
    ) -> Result<bool, NoiseError> {
        match self.open_in_place(input)? {
            Some(p) => {
                plain.extend_from_slice(&p);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// No-security cipher for fuzzing only: "ciphertext" = plaintext || 16
    /// zero bytes; open checks the 16 bytes are zero (else
    /// [`NoiseError::Decrypt`]).
    #[cfg(feature = "fuzzing")]
    pub fn insecure_for_fuzzing() -> RecordCipher {
        RecordCipher {
            inner: Inner::Insecure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Our in-place record cipher speaks standard Noise transport messages:
    /// snow's own TransportState reads what we write and the reverse, for
    /// both cipher suites.
    #[test]
    fn records_interoperate_with_snow_transport() {
        for (name, aes) in [
            ("Noise_NN_25519_ChaChaPoly_BLAKE2s", false),
            ("Noise_NN_25519_AESGCM_BLAKE2s", true),
        ] {
            let params: NoiseParams = name.parse().unwrap();
            let mut i = snow::Builder::with_resolver(
                params.clone(),
                Box::new(SeededResolver::new([1; 32])),
            )
            .build_initiator()
            .unwrap();
            let mut r =
                snow::Builder::with_resolver(params, Box::new(SeededResolver::new([2; 32])))
                    .build_responder()
                    .unwrap();
            let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
            let n = i.write_message(&[], &mut m).unwrap();
            r.read_message(&m[..n], &mut p).unwrap();
            let n = r.write_message(&[], &mut m).unwrap();
            i.read_message(&m[..n], &mut p).unwrap();
            let (k1, k2) = i.dangerously_get_raw_split();
            let mut ours = RecordCipher::from_keys(&k1, &k2, aes).unwrap();
            assert_eq!(ours.is_aes_gcm(), aes);
            let mut theirs = r.into_transport_mode().unwrap();
            for round in 0..3u8 {
                let msg = vec![round; 1000 + usize::from(round)];
                let mut out = BytesMut::new();
                ours.seal_record(&msg, &mut out).unwrap();
                let mut plain = vec![0u8; 2000];
                let n = theirs.read_message(&out[2..], &mut plain).unwrap();
                assert_eq!(&plain[..n], &msg[..], "{name}: snow reads ours");
                let mut ct = vec![0u8; 2000];
                let n = theirs.write_message(&msg, &mut ct).unwrap();
                let mut input = BytesMut::new();
                input.put_u16(n as u16);
                input.extend_from_slice(&ct[..n]);
                let got = ours.open_in_place(&mut input).unwrap().unwrap();
                assert_eq!(&got[..], &msg[..], "{name}: we read snow's");
                assert!(input.is_empty());
            }
        }
    }

    #[test]
    fn aes_gcm_is_negotiated_only_when_both_offer_it() {
        for (a, b, want) in [
            (Features::ALL, Features::ALL, true),
            (Features::ALL, Features::EXTENDED_FRAMES, false),
            (Features::EXTENDED_FRAMES, Features::ALL, false),
        ] {
            let (mut i, mut r) = pair(a, b, [3; 32], [4; 32]);
            run(&mut i, &mut r, 1000);
            let (mut ei, mut er) = (i.into_established().unwrap(), r.into_established().unwrap());
            assert_eq!(ei.cipher.is_aes_gcm(), want);
            assert_eq!(er.cipher.is_aes_gcm(), want);
            let mut out = BytesMut::new();
            ei.cipher.seal_record(b"hello", &mut out).unwrap();
            let mut plain = BytesMut::new();
            assert!(er.cipher.open_record(&mut out, &mut plain).unwrap());
            assert_eq!(&plain[..], b"hello");
        }
    }

    fn ids() -> (Identity, Identity) {
        (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]))
    }

    fn pair(
        ifeat: Features,
        rfeat: Features,
        iseed: [u8; 32],
        rseed: [u8; 32],
    ) -> (Handshake, Handshake) {
        let (a, b) = ids();
        let i = Handshake::initiator(&a, b.node_id(), ifeat, iseed).unwrap();
        let r = Handshake::responder(&b, 42, rfeat, rseed).unwrap();
        (i, r)
    }

    /// Runs the handshake, delivering bytes in chunks of `chunk` bytes.
    /// Returns every byte each side sent.
    fn run(i: &mut Handshake, r: &mut Handshake, chunk: usize) -> (Vec<u8>, Vec<u8>) {
        let (mut i_sent, mut r_sent) = (Vec::new(), Vec::new());
        let (mut to_r, mut to_i) = (BytesMut::new(), BytesMut::new());
        let (mut r_in, mut i_in) = (BytesMut::new(), BytesMut::new());
        for _ in 0..1000 {
            let mut out = BytesMut::new();
            while i.poll_output(&mut out).unwrap() {}
            i_sent.extend_from_slice(&out);
            to_r.extend_from_slice(&out);
            let mut out = BytesMut::new();
            while r.poll_output(&mut out).unwrap() {}
            r_sent.extend_from_slice(&out);
            to_i.extend_from_slice(&out);
            let n = chunk.min(to_r.len());
            r_in.extend_from_slice(&to_r.split_to(n));
            r.handle_input(&mut r_in).unwrap();
            let n = chunk.min(to_i.len());
            i_in.extend_from_slice(&to_i.split_to(n));
            i.handle_input(&mut i_in).unwrap();
            if i.is_complete() && r.is_complete() && to_r.is_empty() && to_i.is_empty() {
                assert!(r_in.is_empty() && i_in.is_empty());
                return (i_sent, r_sent);
            }
        }
        panic!("handshake did not complete");
    }

    fn established(chunk: usize) -> (Established, Established) {
        let (mut i, mut r) = pair(Features(0b1011), Features(0b0110 | 1), [3; 32], [4; 32]);
        run(&mut i, &mut r, chunk);
        (i.into_established().unwrap(), r.into_established().unwrap())
    }

    fn records_both_ways(a: &mut RecordCipher, b: &mut RecordCipher, chunk: usize) {
        records_one_way(a, b, chunk);
        records_one_way(b, a, chunk);
    }

    fn records_one_way(tx: &mut RecordCipher, rx: &mut RecordCipher, chunk: usize) {
        {
            let msgs: Vec<Vec<u8>> = vec![
                b"hello".to_vec(),
                Vec::new(),
                (0..=255u8).cycle().take(1000).collect(),
                vec![7; RecordCipher::MAX_PLAINTEXT],
            ];
            let mut wire = BytesMut::new();
            for m in &msgs {
                tx.seal_record(m, &mut wire).unwrap();
            }
            let expected: Vec<u8> = msgs.concat();
            let mut input = BytesMut::new();
            let mut plain = BytesMut::new();
            let mut records = 0;
            while !wire.is_empty() {
                let n = chunk.min(wire.len());
                input.extend_from_slice(&wire.split_to(n));
                while rx.open_record(&mut input, &mut plain).unwrap() {
                    records += 1;
                }
            }
            assert!(input.is_empty());
            assert_eq!(records, msgs.len());
            assert_eq!(&plain[..], &expected[..]);
        }
    }

    #[test]
    fn full_handshake_and_records() {
        let (a, b) = ids();
        let (mut ie, mut re) = established(usize::MAX);
        assert_eq!(ie.remote, b.node_id());
        assert_eq!(re.remote, a.node_id());
        assert_eq!(ie.stream_id, 42);
        assert_eq!(re.stream_id, 42);
        assert_eq!(ie.features, Features(0b0011));
        assert_eq!(re.features, Features(0b0011));
        records_both_ways(&mut ie.cipher, &mut re.cipher, usize::MAX);
    }

    #[test]
    fn one_byte_at_a_time() {
        let (a, b) = ids();
        let (mut ie, mut re) = established(1);
        assert_eq!((ie.remote, re.remote), (b.node_id(), a.node_id()));
        assert_eq!(ie.features, re.features);
        // Small records split at every position.
        {
            let (tx, rx) = (&mut ie.cipher, &mut re.cipher);
            let mut wire = BytesMut::new();
            tx.seal_record(b"abcdefgh", &mut wire).unwrap();
            tx.seal_record(b"", &mut wire).unwrap();
            tx.seal_record(b"ijk", &mut wire).unwrap();
            let mut input = BytesMut::new();
            let mut plain = BytesMut::new();
            for &byte in wire.iter() {
                input.put_u8(byte);
                while rx.open_record(&mut input, &mut plain).unwrap() {}
            }
            assert!(input.is_empty());
            assert_eq!(&plain[..], b"abcdefghijk");
        }
        records_both_ways(&mut ie.cipher, &mut re.cipher, 4099);
    }

    #[test]
    fn every_split_of_the_handshake_stream() {
        // Deliver the whole handshake of each side cut at every position.
        let (mut i0, mut r0) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
        let (i_bytes, r_bytes) = run(&mut i0, &mut r0, usize::MAX);
        let len1 = 2 + usize::from(u16::from_be_bytes([i_bytes[0], i_bytes[1]]));
        let (msg1, msg3) = i_bytes.split_at(len1);
        for cut in 0..=r_bytes.len() {
            let (mut i, mut r) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
            let mut out = BytesMut::new();
            assert!(i.poll_output(&mut out).unwrap());
            assert_eq!(&out[..], msg1);
            let mut rin = BytesMut::from(&out[..]);
            r.handle_input(&mut rin).unwrap();
            let mut out = BytesMut::new();
            assert!(r.poll_output(&mut out).unwrap());
            assert_eq!(&out[..], &r_bytes[..]);
            let mut iin = BytesMut::from(&out[..cut]);
            i.handle_input(&mut iin).unwrap();
            assert_eq!(iin.len(), if cut == r_bytes.len() { 0 } else { cut });
            iin.extend_from_slice(&out[cut..]);
            i.handle_input(&mut iin).unwrap();
            let mut out = BytesMut::new();
            assert!(i.poll_output(&mut out).unwrap());
            assert!(i.is_complete());
            assert!(!i.poll_output(&mut out).unwrap());
            assert_eq!(&out[..], msg3);
        }
    }

    #[test]
    fn trailing_records_are_left_for_the_caller() {
        let (mut i, mut r) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
        let mut out = BytesMut::new();
        i.poll_output(&mut out).unwrap();
        r.handle_input(&mut out).unwrap();
        assert!(out.is_empty());
        r.poll_output(&mut out).unwrap();
        i.handle_input(&mut out).unwrap();
        assert!(!i.is_complete());
        i.poll_output(&mut out).unwrap();
        assert!(i.is_complete());
        let mut ie = i.into_established().unwrap();
        // Initiator sends msg3 and a record in one write.
        ie.cipher.seal_record(b"early", &mut out).unwrap();
        let record_len = 2 + 5 + 16;
        r.handle_input(&mut out).unwrap();
        assert!(r.is_complete());
        assert_eq!(out.len(), record_len);
        let mut re = r.into_established().unwrap();
        let mut plain = BytesMut::new();
        assert!(re.cipher.open_record(&mut out, &mut plain).unwrap());
        assert_eq!(&plain[..], b"early");
    }

    #[test]
    fn deterministic_bytes() {
        let (mut i1, mut r1) = pair(Features::ALL, Features::ALL, [8; 32], [9; 32]);
        let (mut i2, mut r2) = pair(Features::ALL, Features::ALL, [8; 32], [9; 32]);
        let t1 = run(&mut i1, &mut r1, usize::MAX);
        let t2 = run(&mut i2, &mut r2, 3);
        assert_eq!(t1, t2);
        let (mut e1, mut e2) = (
            i1.into_established().unwrap(),
            i2.into_established().unwrap(),
        );
        let (mut w1, mut w2) = (BytesMut::new(), BytesMut::new());
        e1.cipher.seal_record(b"same", &mut w1).unwrap();
        e2.cipher.seal_record(b"same", &mut w2).unwrap();
        assert_eq!(w1, w2);

        // A different initiator seed changes both sides' later bytes.
        let (mut i3, mut r3) = pair(Features::ALL, Features::ALL, [10; 32], [9; 32]);
        let t3 = run(&mut i3, &mut r3, usize::MAX);
        assert_ne!(t1.0, t3.0);
        assert_ne!(t1.1, t3.1);
        // A different responder seed changes the responder's ephemeral.
        let (mut i4, mut r4) = pair(Features::ALL, Features::ALL, [8; 32], [11; 32]);
        let t4 = run(&mut i4, &mut r4, usize::MAX);
        assert_eq!(t1.0[..50], t4.0[..50]);
        assert_ne!(t1.1, t4.1);
    }

    #[test]
    fn seeded_resolver_streams_differ() {
        let res = SeededResolver::new([1; 32]);
        let (mut a, mut b) = (res.resolve_rng().unwrap(), res.resolve_rng().unwrap());
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        a.try_fill_bytes(&mut x).unwrap();
        b.try_fill_bytes(&mut y).unwrap();
        assert_ne!(x, y);
        let mut z = [0u8; 32];
        SeededResolver::new([1; 32])
            .resolve_rng()
            .unwrap()
            .try_fill_bytes(&mut z)
            .unwrap();
        assert_eq!(x, z);
        // Never the static key Identity::from_seed would derive from it.
        assert_ne!(
            Identity::from_seed([1; 32]).private_bytes(),
            Identity::from_private(x).private_bytes()
        );
    }

    #[test]
    fn wrong_responder_key() {
        let (a, b) = ids();
        let impostor = Identity::from_seed([99; 32]);
        let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, [1; 32]).unwrap();
        let mut r = Handshake::responder(&impostor, 1, Features::ALL, [2; 32]).unwrap();
        let mut wire = BytesMut::new();
        i.poll_output(&mut wire).unwrap();
        let err = r.handle_input(&mut wire).unwrap_err();
        match &err {
            NoiseError::Handshake(msg) => {
                assert!(msg.contains("wrong public key"), "{msg}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("handshake failed: message 1"));
        // The error sticks.
        assert_eq!(r.poll_output(&mut BytesMut::new()).unwrap_err(), err);
        assert_eq!(r.handle_input(&mut BytesMut::new()).unwrap_err(), err);
        assert!(!r.is_complete());
        assert_eq!(r.into_established().unwrap_err(), err);
    }

    #[test]
    fn forged_message_2() {
        // Someone who is not b answers a's dial with a message 2 of their own.
        let (a, b) = ids();
        let impostor = Identity::from_seed([99; 32]);
        let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, [1; 32]).unwrap();
        let mut other =
            Handshake::initiator(&a, impostor.node_id(), Features::ALL, [1; 32]).unwrap();
        let mut r = Handshake::responder(&impostor, 1, Features::ALL, [2; 32]).unwrap();
        let mut wire = BytesMut::new();
        i.poll_output(&mut wire).unwrap();
        let mut w2 = BytesMut::new();
        other.poll_output(&mut w2).unwrap();
        r.handle_input(&mut w2).unwrap();
        r.poll_output(&mut w2).unwrap();
        match i.handle_input(&mut w2).unwrap_err() {
            NoiseError::Handshake(msg) => {
                assert!(msg.contains("not the expected identity"), "{msg}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn not_complete_and_unexpected() {
        let (mut i, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        assert!(!r.poll_output(&mut BytesMut::new()).unwrap());
        let mut i2 = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]).0;
        assert_eq!(
            i2.handle_input(&mut BytesMut::from(&[0u8, 1, 2][..])),
            Err(NoiseError::Unexpected)
        );
        let mut wire = BytesMut::new();
        i.poll_output(&mut wire).unwrap();
        r.handle_input(&mut wire).unwrap();
        assert_eq!(
            pair(Features::ALL, Features::ALL, [1; 32], [2; 32])
                .0
                .into_established()
                .unwrap_err(),
            NoiseError::NotComplete
        );
        // Responder got message 1 and has not answered: more bytes are a violation.
        wire.extend_from_slice(&[0, 3, 1, 2, 3]);
        assert_eq!(r.handle_input(&mut wire), Err(NoiseError::Unexpected));
        assert_eq!(r.into_established().unwrap_err(), NoiseError::Unexpected);
    }

    #[test]
    fn bad_handshake_messages() {
        let (_, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        let mut big = BytesMut::from(&[0xff, 0xff][..]);
        assert_eq!(
            r.handle_input(&mut big),
            Err(NoiseError::MessageTooLarge(65535))
        );

        let (_, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        let mut short = BytesMut::from(&[0, 3, 1, 2, 3][..]);
        assert!(matches!(
            r.handle_input(&mut short),
            Err(NoiseError::Handshake(_))
        ));

        let (_, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        let mut garbage = BytesMut::new();
        garbage.put_u16(60);
        garbage.put_bytes(0xAB, 60);
        assert!(matches!(
            r.handle_input(&mut garbage),
            Err(NoiseError::Handshake(_))
        ));

        // Tampered message 3 (flip a byte of the encrypted static key).
        let (mut i, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        let mut w = BytesMut::new();
        i.poll_output(&mut w).unwrap();
        r.handle_input(&mut w).unwrap();
        r.poll_output(&mut w).unwrap();
        i.handle_input(&mut w).unwrap();
        i.poll_output(&mut w).unwrap();
        w[10] ^= 1;
        assert!(matches!(
            r.handle_input(&mut w),
            Err(NoiseError::Handshake(_))
        ));
    }

    /// Drives a raw snow responder so the test can send arbitrary payloads.
    fn raw_responder(payload2: &[u8]) -> Result<(), NoiseError> {
        let (a, b) = ids();
        let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, [1; 32]).unwrap();
        let key = b.private_bytes();
        let mut raw =
            snow::Builder::with_resolver(params(), Box::new(SeededResolver::new([2; 32])))
                .local_private_key(&key)
                .unwrap()
                .prologue(PROLOGUE)
                .unwrap()
                .build_responder()
                .unwrap();
        let mut w = BytesMut::new();
        i.poll_output(&mut w).unwrap();
        let mut buf = [0u8; 1024];
        raw.read_message(&w[2..], &mut buf).unwrap();
        let n = raw.write_message(payload2, &mut buf).unwrap();
        let mut w = BytesMut::new();
        w.put_u16(n as u16);
        w.extend_from_slice(&buf[..n]);
        i.handle_input(&mut w)
    }

    #[test]
    fn bad_message_2_payloads() {
        assert_eq!(raw_responder(&[]), Err(NoiseError::BadPayload));
        assert_eq!(raw_responder(&[2; 13]), Err(NoiseError::Version(2)));
        assert_eq!(raw_responder(&[1; 12]), Err(NoiseError::BadPayload));
        assert_eq!(raw_responder(&[1; 14]), Err(NoiseError::BadPayload));
        assert_eq!(raw_responder(&[1; 13]), Ok(()));
    }

    /// Drives a raw snow initiator so the test can send arbitrary message-3 payloads.
    fn raw_initiator(payload3: &[u8], responder_features: Features) -> Result<(), NoiseError> {
        let (a, b) = ids();
        let key = a.private_bytes();
        let mut raw =
            snow::Builder::with_resolver(params(), Box::new(SeededResolver::new([1; 32])))
                .local_private_key(&key)
                .unwrap()
                .remote_public_key(b.node_id().as_bytes())
                .unwrap()
                .prologue(PROLOGUE)
                .unwrap()
                .build_initiator()
                .unwrap();
        let mut r = Handshake::responder(&b, 5, responder_features, [2; 32]).unwrap();
        let mut buf = [0u8; 1024];
        let mut w = BytesMut::new();
        let n = raw.write_message(&[], &mut buf).unwrap();
        w.put_u16(n as u16);
        w.extend_from_slice(&buf[..n]);
        r.handle_input(&mut w).unwrap();
        r.poll_output(&mut w).unwrap();
        raw.read_message(&w[2..], &mut buf).unwrap();
        let n = raw.write_message(payload3, &mut buf).unwrap();
        let mut w = BytesMut::new();
        w.put_u16(n as u16);
        w.extend_from_slice(&buf[..n]);
        r.handle_input(&mut w)?;
        let est = r.into_established()?;
        assert_eq!(est.remote, a.node_id());
        assert_eq!(est.stream_id, 5);
        Ok(())
    }

    #[test]
    fn bad_message_3_payloads() {
        assert_eq!(raw_initiator(&[1, 0, 0, 0, 1], Features::ALL), Ok(()));
        assert_eq!(
            raw_initiator(&[], Features::ALL),
            Err(NoiseError::BadPayload)
        );
        assert_eq!(
            raw_initiator(&[7, 0, 0, 0, 1], Features::ALL),
            Err(NoiseError::Version(7))
        );
        assert_eq!(
            raw_initiator(&[1, 0, 0, 1], Features::ALL),
            Err(NoiseError::BadPayload)
        );
        // Chose a feature the responder never offered.
        assert_eq!(
            raw_initiator(&[1, 0, 0, 0, 1], Features::NONE),
            Err(NoiseError::BadPayload)
        );
    }

    #[test]
    fn record_errors() {
        let (mut ie, mut re) = established(usize::MAX);
        let mut wire = BytesMut::new();
        ie.cipher.seal_record(b"payload", &mut wire).unwrap();
        let mut tampered = wire.clone();
        tampered[5] ^= 0x40;
        let mut plain = BytesMut::from(&b"kept"[..]);
        assert_eq!(
            re.cipher.open_record(&mut tampered, &mut plain),
            Err(NoiseError::Decrypt)
        );
        assert_eq!(&plain[..], b"kept");
        // Tampered tag.
        let mut tampered = wire.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            re.cipher.open_record(&mut tampered, &mut plain),
            Err(NoiseError::Decrypt)
        );
        // The genuine record still opens (failed attempts did not use a nonce).
        assert!(re.cipher.open_record(&mut wire, &mut plain).unwrap());
        assert_eq!(&plain[..], b"keptpayload");

        for len in [0u16, 1, 15] {
            let mut short = BytesMut::new();
            short.put_u16(len);
            assert_eq!(
                re.cipher.open_record(&mut short, &mut plain),
                Err(NoiseError::RecordTooShort(usize::from(len)))
            );
        }
        // Incomplete records need more bytes.
        assert_eq!(
            re.cipher.open_record(&mut BytesMut::new(), &mut plain),
            Ok(false)
        );
        assert_eq!(
            re.cipher
                .open_record(&mut BytesMut::from(&[0u8][..]), &mut plain),
            Ok(false)
        );
        assert_eq!(
            re.cipher
                .open_record(&mut BytesMut::from(&[0u8, 20, 1, 2][..]), &mut plain),
            Ok(false)
        );

        let mut out = BytesMut::from(&b"xy"[..]);
        assert_eq!(
            ie.cipher
                .seal_record(&vec![0; RecordCipher::MAX_PLAINTEXT + 1], &mut out),
            Err(NoiseError::PlaintextTooLarge(65520))
        );
        assert_eq!(&out[..], b"xy");
        ie.cipher
            .seal_record(&vec![0; RecordCipher::MAX_PLAINTEXT], &mut out)
            .unwrap();
        assert_eq!(out.len(), 2 + 2 + RecordCipher::MAX_RECORD);
        assert_eq!(&out[2..4], &[0xff, 0xff]);
    }

    #[test]
    fn types_are_send() {
        fn send<T: Send + 'static>() {}
        send::<Handshake>();
        send::<Established>();
        send::<RecordCipher>();
        send::<SeededResolver>();
    }

    #[test]
    fn wrong_direction_record_fails() {
        let (mut ie, _re) = established(usize::MAX);
        let mut wire = BytesMut::new();
        ie.cipher.seal_record(b"to myself", &mut wire).unwrap();
        assert_eq!(
            ie.cipher.open_record(&mut wire, &mut BytesMut::new()),
            Err(NoiseError::Decrypt)
        );
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn insecure_cipher() {
        let mut c = RecordCipher::insecure_for_fuzzing();
        let mut wire = BytesMut::new();
        c.seal_record(b"abc", &mut wire).unwrap();
        assert_eq!(&wire[..], &[&[0u8, 19][..], b"abc", &[0; 16]].concat()[..]);
        let mut bad = wire.clone();
        bad[6] = 1;
        let mut plain = BytesMut::new();
        assert_eq!(
            c.open_record(&mut bad, &mut plain),
            Err(NoiseError::Decrypt)
        );
        assert!(c.open_record(&mut wire, &mut plain).unwrap());
        assert_eq!(&plain[..], b"abc");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn garbage_into_responder_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6),
            valid_first in any::<bool>(),
        ) {
            let (mut i, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
            let mut input = BytesMut::new();
            if valid_first {
                i.poll_output(&mut input).unwrap();
            }
            for c in chunks {
                input.extend_from_slice(&c);
                let _ = r.handle_input(&mut input);
                let _ = r.poll_output(&mut BytesMut::new());
            }
            let _ = r.is_complete();
            let _ = r.into_established();
        }

        #[test]
        fn garbage_into_initiator_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            len_prefix in any::<bool>(),
        ) {
            let (mut i, _) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
            i.poll_output(&mut BytesMut::new()).unwrap();
            let mut input = BytesMut::new();
            if len_prefix {
                input.put_u16(data.len() as u16);
            }
            input.extend_from_slice(&data);
            let _ = i.handle_input(&mut input);
            let _ = i.poll_output(&mut BytesMut::new());
        }

        #[test]
        fn garbage_records_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (_, mut re) = established(usize::MAX);
            let mut input = BytesMut::from(&data[..]);
            let mut plain = BytesMut::new();
            let _ = re.cipher.open_record(&mut input, &mut plain);
        }
    }
}
