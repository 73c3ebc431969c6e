//! Node identities: static X25519 keypairs and the [`NodeId`] (public key)
//! that names a node on the wire and in text.
//!
//! Everything here is deterministic: an [`Identity`] is built from a private
//! key or from a caller-given seed, never from a global random source.

use core::fmt;
use core::str::FromStr;

use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// A node's identity: its static X25519 public key. Text form: 64 lowercase hex chars.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The 32 raw bytes of the public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The full text form: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short form for logs: the first 8 hex characters.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}…)", self.short())
    }
}

/// Why a string is not a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    /// The text is not 64 characters long.
    #[error("a node id is 64 hex characters, got {0}")]
    BadLength(usize),
    /// The text holds a character that is not a hex digit.
    #[error("a node id must contain only hex digits (0-9, a-f)")]
    BadHex,
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    /// Parses exactly 64 hex characters, in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Length in bytes: a non-ASCII char makes this differ from 64 or fails
        // as hex below, either way it is rejected.
        if s.len() != 64 {
            return Err(ParseNodeIdError::BadLength(s.chars().count()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseNodeIdError::BadHex)?;
        Ok(NodeId(out))
    }
}

/// The first line of a key file.
const KEY_FILE_HEADER: &str = "astral-identity-v1";

/// Why a key file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    /// The file does not begin with the `astral-identity-v1` line.
    #[error("not an astral identity key file: the first line must be \"astral-identity-v1\"")]
    BadHeader,
    /// The header is present but the private-key line is missing.
    #[error("key file has no private key line after the header")]
    MissingKey,
    /// The private-key line is not 64 characters long.
    #[error("private key must be 64 hex characters, got {0}")]
    BadKeyLength(usize),
    /// The private-key line contains a character that is not a hex digit.
    #[error("private key must contain only hex digits (0-9, a-f)")]
    BadKeyHex,
    /// Non-blank text follows the private-key line.
    #[error("unexpected text after the private key line")]
    TrailingData,
}

/// Static X25519 keypair.
///
/// `Debug` shows only the public key; the private key is never printed.
#[derive(Clone)]
pub struct Identity {
    /// Clamped private scalar.
    private: [u8; 32],
    public: NodeId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.public)
            .finish_non_exhaustive()
    }
}

/// X25519 scalar clamping (RFC 7748 §5).
fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

impl Identity {
    /// Builds an identity from a private key.
    ///
    /// The key is clamped as X25519 does (RFC 7748), and the clamped form is
    /// what [`Identity::private_bytes`] returns; the public key is derived from
    /// it exactly as snow's X25519 does, so the [`NodeId`] matches what peers
    /// see in the handshake.
    pub fn from_private(private: [u8; 32]) -> Identity {
        let private = clamp(private);
        let public = MontgomeryPoint::mul_base_clamped(private).to_bytes();
        Identity {
            private,
            public: NodeId(public),
        }
    }

    /// Deterministically derives an identity from a 32-byte seed: the first
    /// 32 bytes of `ChaCha20Rng::from_seed(seed)` become the private key.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut private = [0u8; 32];
        rng.fill_bytes(&mut private);
        Identity::from_private(private)
    }

    /// This node's id (its public key).
    pub fn node_id(&self) -> NodeId {
        self.public
    }

    /// The (clamped) private key. Handle with care.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.private
    }

    /// Key file text: `"astral-identity-v1\n<64 hex private>\n"`.
    pub fn to_key_file(&self) -> String {
        format!("{KEY_FILE_HEADER}\n{}\n", hex::encode(self.private))
    }

    /// Parses the text written by [`Identity::to_key_file`]. Line ends may be
    /// `\n` or `\r\n`; trailing whitespace on each line and blank lines after
    /// the key are tolerated. The hex may be in either case.
    pub fn parse_key_file(text: &str) -> Result<Identity, ParseKeyError> {
        let mut lines = text.lines().map(str::trim_end);
        match lines.next() {
            Some(KEY_FILE_HEADER) => {}
            _ => return Err(ParseKeyError::BadHeader),
        }
        let key = match lines.next() {
            Some(k) if !k.is_empty() => k,
            _ => return Err(ParseKeyError::MissingKey),
        };
        if lines.any(|l| !l.is_empty()) {
            return Err(ParseKeyError::TrailingData);
        }
        if key.len() != 64 {
            return Err(ParseKeyError::BadKeyLength(key.chars().count()));
        }
        let mut private = [0u8; 32];
        hex::decode_to_slice(key, &mut private).map_err(|_| ParseKeyError::BadKeyHex)?;
        Ok(Identity::from_private(private))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_seed_is_deterministic() {
        let a = Identity::from_seed([7; 32]);
        let b = Identity::from_seed([7; 32]);
        let c = Identity::from_seed([8; 32]);
        assert_eq!(a.node_id(), b.node_id());
        assert_eq!(a.private_bytes(), b.private_bytes());
        assert_ne!(a.node_id(), c.node_id());
        // Pinned so that a change of derivation is noticed.
        let again = Identity::from_private(a.private_bytes());
        assert_eq!(again.node_id(), a.node_id());
    }

    #[test]
    fn rfc7748_public_key() {
        // RFC 7748 §6.1, Alice's key pair.
        let private: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let id = Identity::from_private(private);
        assert_eq!(
            id.node_id().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        // Stored clamped; clamping is idempotent.
        assert_eq!(id.private_bytes(), clamp(private));
        assert_eq!(
            Identity::from_private(id.private_bytes()).node_id(),
            id.node_id()
        );
    }

    #[test]
    fn hex_round_trip() {
        let id = Identity::from_seed([1; 32]).node_id();
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, id.to_hex());
        assert!(text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<NodeId>().unwrap(), id);
        assert_eq!(id.short(), text[..8]);
        assert_eq!(format!("{id:?}"), format!("NodeId({}…)", &text[..8]));
    }

    #[test]
    fn node_id_parse_errors() {
        assert_eq!("".parse::<NodeId>(), Err(ParseNodeIdError::BadLength(0)));
        assert_eq!(
            "ab".repeat(31).parse::<NodeId>(),
            Err(ParseNodeIdError::BadLength(62))
        );
        assert_eq!(
            "ab".repeat(33).parse::<NodeId>(),
            Err(ParseNodeIdError::BadLength(66))
        );
        let mut bad = "ab".repeat(32);
        bad.replace_range(10..11, "g");
        assert_eq!(bad.parse::<NodeId>(), Err(ParseNodeIdError::BadHex));
        // 64 bytes but containing a multi-byte char: rejected, no panic.
        let mut uni = "a".repeat(62);
        uni.push('é');
        assert!(uni.parse::<NodeId>().is_err());
        assert!(ParseNodeIdError::BadLength(3).to_string().contains("64"));
    }

    #[test]
    fn key_file_round_trip() {
        let id = Identity::from_seed([3; 32]);
        let text = id.to_key_file();
        assert!(text.starts_with("astral-identity-v1\n"));
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 2);
        let back = Identity::parse_key_file(&text).unwrap();
        assert_eq!(back.node_id(), id.node_id());
        assert_eq!(back.private_bytes(), id.private_bytes());
        // Tolerated variations.
        for variant in [
            text.trim_end().to_string(),
            format!("{text}\n\n  \n"),
            text.replace('\n', "\r\n"),
            text.replace('\n', "  \n"),
            text.to_uppercase()
                .replace("ASTRAL-IDENTITY-V1", "astral-identity-v1"),
        ] {
            let parsed = Identity::parse_key_file(&variant).unwrap();
            assert_eq!(parsed.node_id(), id.node_id(), "{variant:?}");
        }
    }

    #[test]
    fn key_file_errors() {
        let key = "11".repeat(32);
        assert_eq!(
            Identity::parse_key_file("").unwrap_err(),
            ParseKeyError::BadHeader
        );
        assert_eq!(
            Identity::parse_key_file(&format!("astral-identity-v2\n{key}\n")).unwrap_err(),
            ParseKeyError::BadHeader
        );
        assert_eq!(
            Identity::parse_key_file("astral-identity-v1\n").unwrap_err(),
            ParseKeyError::MissingKey
        );
        assert_eq!(
            Identity::parse_key_file("astral-identity-v1\nabcd\n").unwrap_err(),
            ParseKeyError::BadKeyLength(4)
        );
        assert_eq!(
            Identity::parse_key_file(&format!("astral-identity-v1\n{}zz\n", "1".repeat(62)))
                .unwrap_err(),
            ParseKeyError::BadKeyHex
        );
        assert_eq!(
            Identity::parse_key_file(&format!("astral-identity-v1\n{key}\nmore\n")).unwrap_err(),
            ParseKeyError::TrailingData
        );
    }

    #[test]
    fn debug_hides_private_key() {
        let id = Identity::from_seed([9; 32]);
        let dbg = format!("{id:?}");
        let private_hex = hex::encode(id.private_bytes());
        assert!(!dbg.contains(&private_hex));
        assert!(!dbg.contains(&private_hex[..8]));
        assert!(dbg.contains(&id.node_id().short()));
    }
}
