//! The record layer: `u16 BE length || ciphertext` on the Noise split keys,
//! sealed and opened in place with ring's AEAD (no copies).
//!
//! A stream's [`RecordCipher`] lives in its engine, which then seals while
//! it builds records and opens what `handle_input` gives it. A driver that
//! runs the engine under a lock can instead take the keys out
//! ([`RecordCipher::detach`]): the engine then builds [`UnsealedRecords`]
//! (plaintext with an empty tag slot) and takes [`OpenedRecords`], and the
//! driver seals with the [`RecordSealer`] and opens with the
//! [`RecordOpener`] outside the lock. The bytes on the wire are the same.

use core::fmt;

use bytes::{Buf, BufMut, BytesMut};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use super::NoiseError;

/// One direction's key.
// The small variant exists only in fuzzing builds.
#[allow(clippy::large_enum_variant)]
enum Key {
    Aead {
        key: LessSafeKey,
        /// AES-GCM encodes the nonce counter big-endian, ChaChaPoly little.
        aes: bool,
    },
    #[cfg(feature = "fuzzing")]
    Insecure,
}

/// One direction of a stream's record layer: its key and nonce counter.
struct Direction {
    key: Key,
    n: u64,
}

impl Direction {
    fn kind(&self) -> &'static str {
        match self.key {
            Key::Aead { aes: true, .. } => "aes-256-gcm",
            Key::Aead { aes: false, .. } => "chacha20-poly1305",
            #[cfg(feature = "fuzzing")]
            Key::Insecure => "insecure-for-fuzzing",
        }
    }

    /// Encrypts `plaintext` in place and returns its tag.
    fn seal(&mut self, plaintext: &mut [u8]) -> Result<[u8; TAG_LEN], NoiseError> {
        if self.n == u64::MAX {
            return Err(NoiseError::Handshake("record nonces exhausted".into()));
        }
        let tag = match &self.key {
            Key::Aead { key, aes } => {
                let tag = key
                    .seal_in_place_separate_tag(nonce(self.n, *aes), Aad::empty(), plaintext)
                    .map_err(|_| NoiseError::Handshake("record encryption failed".into()))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            }
            #[cfg(feature = "fuzzing")]
            Key::Insecure => [0u8; TAG_LEN],
        };
        self.n += 1;
        Ok(tag)
    }

    /// Decrypts `ciphertext || tag` in place (the plaintext is then its
    /// first `len - TAG_LEN` bytes).
    fn open(&mut self, ciphertext_and_tag: &mut [u8]) -> Result<(), NoiseError> {
        if self.n == u64::MAX {
            return Err(NoiseError::Decrypt);
        }
        match &self.key {
            Key::Aead { key, aes } => {
                key.open_in_place(nonce(self.n, *aes), Aad::empty(), ciphertext_and_tag)
                    .map_err(|_| NoiseError::Decrypt)?;
            }
            #[cfg(feature = "fuzzing")]
            Key::Insecure => {
                let pt = ciphertext_and_tag.len() - TAG_LEN;
                if ciphertext_and_tag[pt..].iter().any(|&b| b != 0) {
                    return Err(NoiseError::Decrypt);
                }
            }
        }
        self.n += 1;
        Ok(())
    }
}

/// Length of the authentication tag.
const TAG_LEN: usize = 16;

/// Where a stream's keys are.
// The detached variant is small on purpose; the cipher is boxed by its
// owner anyway.
#[allow(clippy::large_enum_variant)]
enum Inner {
    /// In the engine: it seals and opens itself.
    Keys { tx: Direction, rx: Direction },
    /// With the driver ([`RecordSealer`], [`RecordOpener`]): the engine
    /// writes records with an empty tag slot and reads opened ones.
    Detached,
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
        let kind = match &self.inner {
            Inner::Keys { tx, .. } => tx.kind(),
            Inner::Detached => "detached",
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

/// The length of the record at the front of `input` (header included), or
/// how it is malformed; `Ok(None)` before the two length bytes are there.
fn record_len(input: &[u8]) -> Result<Option<usize>, NoiseError> {
    if input.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
    if len < TAG_LEN {
        return Err(NoiseError::RecordTooShort(len));
    }
    Ok(Some(2 + len))
}

impl RecordCipher {
    /// Largest ciphertext of one record, in bytes.
    #[cfg(any(test, feature = "unstable"))]
    pub const MAX_RECORD: usize = 65535;
    /// Largest plaintext of one record, in bytes.
    pub const MAX_PLAINTEXT: usize = 65519;
    /// Length of the authentication tag.
    pub const TAG_LEN: usize = TAG_LEN;

    /// A cipher from the two transport keys (`tx` for sending).
    pub fn from_keys(tx: &[u8; 32], rx: &[u8; 32], aes: bool) -> Result<RecordCipher, NoiseError> {
        let alg = if aes {
            &aead::AES_256_GCM
        } else {
            &aead::CHACHA20_POLY1305
        };
        let key = |k: &[u8; 32]| {
            UnboundKey::new(alg, k)
                .map(|k| Direction {
                    key: Key::Aead {
                        key: LessSafeKey::new(k),
                        aes,
                    },
                    n: 0,
                })
                .map_err(|_| NoiseError::Handshake("could not set up the record cipher".into()))
        };
        Ok(RecordCipher {
            inner: Inner::Keys {
                tx: key(tx)?,
                rx: key(rx)?,
            },
        })
    }

    /// Whether records use AES-256-GCM (else ChaCha20-Poly1305).
    #[cfg(any(test, feature = "unstable"))]
    pub fn is_aes_gcm(&self) -> bool {
        matches!(
            &self.inner,
            Inner::Keys {
                tx: Direction {
                    key: Key::Aead { aes: true, .. },
                    ..
                },
                ..
            }
        )
    }

    /// Whether the keys were taken out by [`RecordCipher::detach`].
    pub fn is_detached(&self) -> bool {
        matches!(self.inner, Inner::Detached)
    }

    /// Takes the keys out for a driver that seals and opens outside the
    /// engine; `None` if they were taken already. From then on this cipher
    /// writes records with an empty tag slot for the [`RecordSealer`] and
    /// reads records the [`RecordOpener`] opened.
    pub fn detach(&mut self) -> Option<(RecordSealer, RecordOpener)> {
        match std::mem::replace(&mut self.inner, Inner::Detached) {
            Inner::Keys { tx, rx } => {
                Some((RecordSealer { tx }, RecordOpener { rx, failed: None }))
            }
            Inner::Detached => None,
        }
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
    /// tag and fills in the length. A detached cipher appends an empty tag
    /// slot instead (the [`RecordSealer`] fills it).
    pub fn seal_in_place(&mut self, out: &mut BytesMut, header: usize) -> Result<(), NoiseError> {
        let start = header + 2;
        let pt_len = out.len().saturating_sub(start);
        if pt_len > Self::MAX_PLAINTEXT || out.len() < start {
            out.truncate(header);
            return Err(NoiseError::PlaintextTooLarge(pt_len));
        }
        match &mut self.inner {
            Inner::Keys { tx, .. } => match tx.seal(&mut out[start..]) {
                Ok(tag) => out.extend_from_slice(&tag),
                Err(e) => {
                    out.truncate(header);
                    return Err(e);
                }
            },
            Inner::Detached => out.put_bytes(0, TAG_LEN),
        }
        let ct_len = (pt_len + TAG_LEN) as u16;
        out[header..start].copy_from_slice(&ct_len.to_be_bytes());
        Ok(())
    }

    /// Encrypts `plaintext` (≤ [`Self::MAX_PLAINTEXT`]) into one record
    /// appended to `out` (2-byte length then ciphertext).
    #[cfg(any(test, feature = "unstable"))]
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
    /// `Ok(None)` if more bytes are needed. A detached cipher takes records
    /// its [`RecordOpener`] opened already (see [`OpenedRecords`]).
    ///
    /// A length field below [`Self::TAG_LEN`] is [`NoiseError::RecordTooShort`]
    /// (reported as soon as the two length bytes are there); a record that
    /// fails authentication is [`NoiseError::Decrypt`]. After an error the
    /// stream must be torn down.
    pub fn open_in_place(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, NoiseError> {
        let Some(total) = record_len(input)? else {
            return Ok(None);
        };
        if input.len() < total {
            return Ok(None);
        }
        if let Inner::Keys { rx, .. } = &mut self.inner {
            rx.open(&mut input[2..total])?;
        }
        let mut record = input.split_to(total);
        record.advance(2);
        record.truncate(total - 2 - TAG_LEN);
        Ok(Some(record))
    }

    /// Like [`RecordCipher::open_in_place`], appending the plaintext to
    /// `plain` (a copy): `Ok(true)` when a record was consumed.
    #[cfg(any(test, feature = "unstable"))]
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
        let d = || Direction {
            key: Key::Insecure,
            n: 0,
        };
        RecordCipher {
            inner: Inner::Keys { tx: d(), rx: d() },
        }
    }
}

/// Records an engine built for a stream whose keys its driver holds
/// ([`RecordCipher::detach`]): plaintext frames, each record with an empty
/// tag slot. Only [`RecordSealer::seal`] turns them into bytes for the
/// wire, so unsealed plaintext cannot reach a transport by mistake.
#[derive(Debug, Default)]
pub struct UnsealedRecords {
    pub(crate) buf: BytesMut,
}

impl UnsealedRecords {
    /// Records to be built into `buf` (cleared; its allocation is reused).
    pub fn with_buffer(mut buf: BytesMut) -> UnsealedRecords {
        buf.clear();
        UnsealedRecords { buf }
    }

    /// Bytes built so far (the sealed size is the same).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was built.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Whole records a [`RecordOpener`] authenticated and decrypted in place,
/// still framed (`u16 length || plaintext || tag`), for the engine of
/// their stream (`PeerEngine::handle_records`).
#[derive(Debug, Default)]
pub struct OpenedRecords {
    pub(crate) buf: BytesMut,
}

impl OpenedRecords {
    /// Bytes of the records (the same as on the wire).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// What [`RecordOpener::open`] found: the good records, then the error
/// that ended them, if any.
#[derive(Debug)]
pub struct Opened {
    /// Whole records, opened in place.
    pub records: OpenedRecords,
    /// The record after them failed (the stream must close).
    pub error: Option<NoiseError>,
}

/// The sending key of a detached stream: seals what its engine built.
pub struct RecordSealer {
    tx: Direction,
}

impl fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSealer")
            .field("kind", &self.tx.kind())
            .field("records", &self.tx.n)
            .finish()
    }
}

impl RecordSealer {
    /// Encrypts every record of `records` in place, in order, filling in
    /// their tags, and returns the bytes for the wire (the same buffer).
    /// Records must be sealed in the order the engine built them, each
    /// exactly once: the nonce is the record's position on the stream.
    ///
    /// Fails only when the stream's nonces are exhausted (2^64 records); the
    /// stream must then be torn down.
    pub fn seal(&mut self, records: UnsealedRecords) -> Result<BytesMut, NoiseError> {
        let mut buf = records.buf;
        let mut at = 0;
        while at < buf.len() {
            // The engine built these records: whole, with valid lengths.
            let total = match record_len(&buf[at..]) {
                Ok(Some(t)) if at + t <= buf.len() => t,
                _ => return Err(NoiseError::Misuse("malformed unsealed records")),
            };
            let tag_at = at + total - TAG_LEN;
            let tag = self.tx.seal(&mut buf[at + 2..tag_at])?;
            buf[tag_at..at + total].copy_from_slice(&tag);
            at += total;
        }
        Ok(buf)
    }
}

/// The receiving key of a detached stream: opens records in place before
/// they go to the engine.
pub struct RecordOpener {
    rx: Direction,
    /// A record failed: the stream is dead, every later call fails too.
    failed: Option<NoiseError>,
}

impl fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOpener")
            .field("kind", &self.rx.kind())
            .field("records", &self.rx.n)
            .field("failed", &self.failed)
            .finish()
    }
}

impl RecordOpener {
    /// Authenticates and decrypts, in place, every whole record at the
    /// front of `input` and splits them off (no copy); a partial record
    /// stays in `input`.
    ///
    /// A bad record (see [`RecordCipher::open_in_place`]) ends the records
    /// and comes back as [`Opened::error`]: give the engine the records
    /// first, then the error, so that it sees every frame that preceded it,
    /// as when it opens records itself. Once failed, always failed.
    pub fn open(&mut self, input: &mut BytesMut) -> Opened {
        if let Some(e) = &self.failed {
            return Opened {
                records: OpenedRecords::default(),
                error: Some(e.clone()),
            };
        }
        let mut at = 0;
        let error = loop {
            let total = match record_len(&input[at..]) {
                Ok(Some(t)) if at + t <= input.len() => t,
                Ok(_) => break None,
                Err(e) => break Some(e),
            };
            if let Err(e) = self.rx.open(&mut input[at + 2..at + total]) {
                break Some(e);
            }
            at += total;
        };
        self.failed.clone_from(&error);
        Opened {
            records: OpenedRecords {
                buf: input.split_to(at),
            },
            error,
        }
    }

    /// Bytes still missing from the partial record at the front of `input`
    /// (at least 1 before its length is known; 0 if it is whole or
    /// `input` is empty). A driver that reads no more than this while a
    /// record is partial keeps its reads on record boundaries, so nothing
    /// left over ever has to be moved.
    pub fn missing(input: &[u8]) -> usize {
        match record_len(input) {
            _ if input.is_empty() => 0,
            Ok(Some(total)) => total.saturating_sub(input.len()),
            Ok(None) => 2 - input.len(),
            Err(_) => 0,
        }
    }
}
