//! Just enough of astral's stream handshake for hostile clients that have
//! no node behind them (`docs/PROTOCOL.md`, "Handshake"): the framing, a
//! real Noise XK message 1 for a listener's key, and the rest of the
//! handshake with a throwaway static key.
//!
//! The constants are restated here from the protocol document rather than
//! taken from astral-core, so a change of the wire format in the core
//! shows up as a failing harness test instead of silently following it.

use std::time::Duration;

use astral_tokio::NodeId;
use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Noise pattern (PROTOCOL.md).
pub const PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";
/// The prologue both sides mix in.
pub const PROLOGUE: &[u8] = b"astral-rs/stream/1";
/// Protocol version in the handshake payloads.
pub const VERSION: u8 = 2;
/// Message 2 payload: version, stream id, features, incarnation.
pub const MSG2_PAYLOAD: usize = 1 + 8 + 4 + 8;
/// Feature bit 0: extended frames (the engine requires it).
pub const FEATURE_EXTENDED: u32 = 1;
/// Message 1 (`e, es`, empty payload): 32-byte ephemeral key + 16-byte tag.
pub const MSG1_LEN: usize = 48;
/// The largest handshake message a listener reads.
pub const MAX_MESSAGE: usize = 1024;

/// `u16 BE length || message`.
///
/// ```
/// use astral_harness::hostile::wire::frame;
/// assert_eq!(frame(&[7; 3]), [0, 3, 7, 7, 7]);
/// ```
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + msg.len());
    v.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

fn builder() -> snow::Builder<'static> {
    // ring brings the OS random generator and the cipher; snow's own
    // resolver the X25519 and BLAKE2s it lacks.
    let resolver = FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
    // The pattern is a constant this module tests.
    let params = PATTERN.parse().expect("valid Noise pattern");
    snow::Builder::with_resolver(params, Box::new(resolver))
}

/// A handshake error, as text (the harness only counts and reports them).
pub type Error = String;

/// The dialer's side of a handshake, driven by hand.
pub struct RawDialer {
    hs: snow::HandshakeState,
}

impl RawDialer {
    /// A dialer to the listener `peer`, with a fresh random static key.
    pub fn new(peer: &NodeId) -> Result<RawDialer, Error> {
        let b = builder();
        let kp = b.generate_keypair().map_err(|e| e.to_string())?;
        let hs = builder()
            .local_private_key(&kp.private)
            .and_then(|b| b.remote_public_key(peer.as_bytes()))
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
            .map_err(|e| e.to_string())?;
        Ok(RawDialer { hs })
    }

    /// Message 1, framed (50 bytes).
    pub fn message1(&mut self) -> Result<Vec<u8>, Error> {
        let mut buf = [0u8; MAX_MESSAGE];
        let n = self
            .hs
            .write_message(&[], &mut buf)
            .map_err(|e| e.to_string())?;
        Ok(frame(&buf[..n]))
    }

    /// After message 1 went out on `tcp`: reads message 2, sends message 3
    /// (choosing extended frames only), and returns; the stream is then
    /// established at the listener. Fails after `timeout`.
    pub async fn finish(mut self, tcp: &mut TcpStream, timeout: Duration) -> Result<(), Error> {
        let msg2 = tokio::time::timeout(timeout, read_frame(tcp))
            .await
            .map_err(|_| "timed out waiting for message 2".to_string())??;
        let mut payload = [0u8; MAX_MESSAGE];
        let n = self
            .hs
            .read_message(&msg2, &mut payload)
            .map_err(|e| format!("message 2: {e}"))?;
        // With or without the optional trailing `supersedes u64`
        // (docs/PROTOCOL.md): a listener that restarted names its old
        // incarnation.
        if !(n == MSG2_PAYLOAD || n == MSG2_PAYLOAD + 8) || payload[0] != VERSION {
            return Err(format!(
                "message 2 payload of {n} bytes, version {}",
                payload[0]
            ));
        }
        let offered = u32::from_be_bytes([payload[9], payload[10], payload[11], payload[12]]);
        // Version, the features chosen, and this (throwaway) instance's
        // incarnation.
        let mut p3 = [0u8; 13];
        p3[0] = VERSION;
        p3[1..5].copy_from_slice(&(offered & FEATURE_EXTENDED).to_be_bytes());
        p3[5..].copy_from_slice(&rand_incarnation().to_be_bytes());
        let mut buf = [0u8; MAX_MESSAGE];
        let n = self
            .hs
            .write_message(&p3, &mut buf)
            .map_err(|e| e.to_string())?;
        tcp.write_all(&frame(&buf[..n]))
            .await
            .map_err(|e| format!("sending message 3: {e}"))
    }
}

/// A fresh incarnation for each raw dialer (the listener treats each as a
/// new node instance).
fn rand_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

async fn read_frame(tcp: &mut TcpStream) -> Result<Vec<u8>, Error> {
    let len = tcp
        .read_u16()
        .await
        .map_err(|e| format!("reading a frame length: {e}"))? as usize;
    if len > MAX_MESSAGE {
        return Err(format!("handshake frame of {len} bytes"));
    }
    let mut v = vec![0u8; len];
    tcp.read_exact(&mut v)
        .await
        .map_err(|e| format!("reading a frame: {e}"))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message1_is_framed_48_bytes() {
        let peer = crate::astral_api::identity(1).node_id();
        let mut d = RawDialer::new(&peer).unwrap();
        let m = d.message1().unwrap();
        assert_eq!(m.len(), 2 + MSG1_LEN);
        assert_eq!(&m[..2], &(MSG1_LEN as u16).to_be_bytes());
    }
}
