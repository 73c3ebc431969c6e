//! The record layer: `u16 BE length || ciphertext` on the Noise split keys,
//! sealed and opened in place with ring's AEAD (no copies).

use core::fmt;

use bytes::{Buf, BufMut, BytesMut};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use super::NoiseError;

// The small variant exists only in fuzzing builds; the cipher is boxed by
// its owner anyway.
#[allow(clippy::large_enum_variant)]
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
    #[cfg(any(test, feature = "unstable"))]
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
    #[cfg(any(test, feature = "unstable"))]
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
        RecordCipher {
            inner: Inner::Insecure,
        }
    }
}
