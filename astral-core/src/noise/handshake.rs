//! One side of a stream's Noise XK handshake, as typed states.
//!
//! Like rustls' `ExpectCertificate` / `ExpectFinished`, each state holds
//! exactly what is valid in it, and every step consumes one state and yields
//! the next:
//!
//! ```text
//! initiator:  SendMessage1 ─poll_output→ ExpectMessage2 ─handle_input→ SendMessage3 ─poll_output→ Complete
//! responder:  ExpectMessage1 ─handle_input→ SendMessage2 ─poll_output→ ExpectMessage3 ─handle_input→ Complete
//! any state:  ─error→ Failed (every later call returns the same error)
//! ```

use core::fmt;

use bytes::{Buf, BufMut, BytesMut};
use snow::params::NoiseParams;
use snow::HandshakeState;

use super::{Features, NoiseError, RecordCipher, SeededResolver, PATTERN, PROLOGUE, VERSION};
use crate::identity::{Identity, NodeId};

/// Largest handshake message (after the length prefix) we accept. The real
/// ones are 48, 69 and 77 bytes; anything much larger is not a handshake.
const MAX_HANDSHAKE_MESSAGE: usize = 1024;

/// Smallest valid message 1/2 (`e` + tag of the payload) and message 3
/// (encrypted `s` + tag of the payload).
const MIN_MSG_1_2: usize = 32 + 16;
const MIN_MSG_3: usize = 32 + 16 + 16;

/// Length of the message 2 and message 3 payloads (version 2) without the
/// optional trailing `supersedes u64`; with it they are 8 bytes longer.
pub(crate) const MSG2_PAYLOAD: usize = 1 + 8 + 4 + 8;
pub(crate) const MSG3_PAYLOAD: usize = 1 + 4 + 8;
/// The optional trailing field: the incarnation this instance replaces.
pub(crate) const SUPERSEDES: usize = 8;

/// What message 2 taught the initiator.
#[derive(Clone, Copy, Debug)]
struct Message2 {
    stream_id: u64,
    features: Features,
    incarnation: u64,
    supersedes: Option<u64>,
}

enum State {
    // Initiator.
    SendMessage1(Box<HandshakeState>),
    ExpectMessage2(Box<HandshakeState>),
    SendMessage3(Box<HandshakeState>, Message2),
    // Responder.
    ExpectMessage1(Box<HandshakeState>),
    SendMessage2(Box<HandshakeState>),
    ExpectMessage3(Box<HandshakeState>),
    // Both.
    Complete(Box<Established>),
    Failed(NoiseError),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::SendMessage1(_) => "SendMessage1",
            State::ExpectMessage2(_) => "ExpectMessage2",
            State::SendMessage3(..) => "SendMessage3",
            State::ExpectMessage1(_) => "ExpectMessage1",
            State::SendMessage2(_) => "SendMessage2",
            State::ExpectMessage3(_) => "ExpectMessage3",
            State::Complete(_) => "Complete",
            State::Failed(_) => "Failed",
        }
    }

    /// Which message this state reads, if it reads one.
    fn expects(&self) -> Option<u8> {
        match self {
            State::ExpectMessage1(_) => Some(1),
            State::ExpectMessage2(_) => Some(2),
            State::ExpectMessage3(_) => Some(3),
            _ => None,
        }
    }
}

/// One side of a stream's handshake, sans-IO: feed the peer's bytes to
/// [`Handshake::handle_input`], send what [`Handshake::poll_output`] appends.
pub struct Handshake {
    state: State,
    /// Initiator: the node dialled (for error messages).
    expected: Option<NodeId>,
    local_features: Features,
    local_incarnation: u64,
    /// The earlier instance of this identity this one replaces, if it
    /// knows it (sent in message 2 or 3).
    local_supersedes: Option<u64>,
    /// Responder: the stream id it assigns (sent in message 2).
    stream_id: u64,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("state", &self.state.name())
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

/// The outcome of a finished handshake.
pub struct Established {
    /// The peer's identity (authenticated by the handshake).
    pub remote: NodeId,
    /// The stream id the responder chose.
    pub stream_id: u64,
    /// The features both sides use on this stream.
    pub features: Features,
    /// The peer's incarnation (random per node instance).
    pub incarnation: u64,
    /// The earlier incarnation of the peer's identity that the peer says
    /// it replaces (that process is gone), if it said so.
    pub supersedes: Option<u64>,
    /// Whether this side dialled.
    pub initiator: bool,
    /// Encrypts and decrypts this stream's records.
    pub cipher: RecordCipher,
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("remote", &self.remote)
            .field("stream_id", &self.stream_id)
            .field("features", &self.features)
            .field("incarnation", &self.incarnation)
            .field("supersedes", &self.supersedes)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

fn params() -> NoiseParams {
    // A constant pattern name that snow parses: covered by every handshake test.
    PATTERN.parse().expect("static Noise pattern parses")
}

fn build_error(e: snow::Error) -> NoiseError {
    NoiseError::Handshake(format!("could not set up the Noise state: {e}"))
}

/// Up to 24 bytes of what a non-astral peer sent, printable ASCII kept,
/// everything else escaped (so it is safe in logs and terminals).
fn escaped_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(24)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// Screens what a dialer sent before this side started its handshake (an
/// inbound transport waiting for a handshake slot keeps its bytes without
/// any Noise state): at most one message 1, so the wait costs at most
/// `2 + MAX_HANDSHAKE_MESSAGE` bytes, and what cannot be a handshake fails
/// at once, as it would once served.
pub(crate) fn screen_early_input(input: &[u8]) -> Result<(), NoiseError> {
    if input.len() < 2 {
        return Ok(());
    }
    let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
    if len > MAX_HANDSHAKE_MESSAGE {
        return Err(NoiseError::NotAstral(escaped_prefix(input)));
    }
    if input.len() > 2 + len {
        // A dialer sends nothing after message 1 until message 2 arrives.
        return Err(NoiseError::Unexpected);
    }
    Ok(())
}

impl Handshake {
    /// The dialer's side: `remote` is the listener's identity.
    pub fn initiator(
        identity: &Identity,
        remote: NodeId,
        features: Features,
        incarnation: u64,
        rng_seed: [u8; 32],
    ) -> Result<Handshake, NoiseError> {
        let private = identity.private_bytes();
        let noise = snow::Builder::with_resolver(params(), Box::new(SeededResolver::new(rng_seed)))
            .local_private_key(&private)
            .and_then(|b| b.remote_public_key(remote.as_bytes()))
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
            .map_err(build_error)?;
        Ok(Handshake {
            state: State::SendMessage1(Box::new(noise)),
            expected: Some(remote),
            local_features: features,
            local_incarnation: incarnation,
            local_supersedes: None,
            stream_id: 0,
        })
    }

    /// The listener's side; `stream_id` is sent to the initiator in message 2.
    pub fn responder(
        identity: &Identity,
        stream_id: u64,
        features: Features,
        incarnation: u64,
        rng_seed: [u8; 32],
    ) -> Result<Handshake, NoiseError> {
        let private = identity.private_bytes();
        let noise = snow::Builder::with_resolver(params(), Box::new(SeededResolver::new(rng_seed)))
            .local_private_key(&private)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
            .map_err(build_error)?;
        Ok(Handshake {
            state: State::ExpectMessage1(Box::new(noise)),
            expected: None,
            local_features: features,
            local_incarnation: incarnation,
            local_supersedes: None,
            stream_id,
        })
    }

    /// States in this side's handshake message (2 or 3) that this instance
    /// replaces the earlier instance `previous` of the same identity, which
    /// is gone (docs/PROTOCOL.md, "Supersedes"). `None` (the default) says
    /// nothing. A value equal to this instance's own incarnation is not
    /// sent.
    pub fn with_supersedes(mut self, previous: Option<u64>) -> Handshake {
        self.local_supersedes = previous.filter(|p| *p != self.local_incarnation);
        self
    }

    /// The identity this side dialled (initiator only).
    pub fn expected_remote(&self) -> Option<NodeId> {
        self.expected
    }

    /// Moves to `Failed(e)` and returns `e`.
    fn fail(&mut self, e: NoiseError) -> NoiseError {
        self.state = State::Failed(e.clone());
        e
    }

    /// Appends the next handshake message this side must send
    /// (length-prefixed) to `out`. Returns true if it appended something.
    ///
    /// The initiator's first call emits message 1; the responder emits
    /// message 2 after message 1 arrived; the initiator emits message 3 after
    /// message 2, which completes its side.
    pub fn poll_output(&mut self, out: &mut BytesMut) -> Result<bool, NoiseError> {
        let state = std::mem::replace(&mut self.state, State::Failed(NoiseError::NotComplete));
        let mut payload = [0u8; MSG2_PAYLOAD + SUPERSEDES];
        let (mut noise, number, len, learnt) = match state {
            State::Failed(e) => {
                self.state = State::Failed(e.clone());
                return Err(e);
            }
            State::SendMessage1(noise) => (noise, 1, 0, None),
            State::SendMessage2(noise) => {
                payload[0] = VERSION;
                payload[1..9].copy_from_slice(&self.stream_id.to_be_bytes());
                payload[9..13].copy_from_slice(&self.local_features.0.to_be_bytes());
                payload[13..21].copy_from_slice(&self.local_incarnation.to_be_bytes());
                let len = put_supersedes(&mut payload, MSG2_PAYLOAD, self.local_supersedes);
                (noise, 2, len, None)
            }
            State::SendMessage3(noise, m2) => {
                payload[0] = VERSION;
                payload[1..5].copy_from_slice(&m2.features.0.to_be_bytes());
                payload[5..13].copy_from_slice(&self.local_incarnation.to_be_bytes());
                let len = put_supersedes(&mut payload, MSG3_PAYLOAD, self.local_supersedes);
                (noise, 3, len, Some(m2))
            }
            other => {
                // Nothing to send in this state.
                self.state = other;
                return Ok(false);
            }
        };
        let mut msg = [0u8; MAX_HANDSHAKE_MESSAGE];
        let n = match noise.write_message(&payload[..len], &mut msg) {
            Ok(n) => n,
            Err(e) => {
                let err = NoiseError::Handshake(format!("could not write message {number}: {e}"));
                return Err(self.fail(err));
            }
        };
        out.reserve(2 + n);
        // Noise messages are at most 65535 bytes; ours are under 100.
        out.put_u16(n as u16);
        out.extend_from_slice(&msg[..n]);
        self.state = match (number, learnt) {
            (1, _) => State::ExpectMessage2(noise),
            (2, _) => State::ExpectMessage3(noise),
            (_, Some(m2)) => match complete(*noise, self.expected, m2) {
                Ok(est) => State::Complete(Box::new(est)),
                Err(e) => return Err(self.fail(e)),
            },
            (_, None) => return Err(self.fail(NoiseError::NotComplete)),
        };
        Ok(true)
    }

    /// Consumes complete length-prefixed handshake messages from the front of
    /// `input`. A partial message is left in place (call again when more
    /// bytes arrived); so are any bytes that follow the final handshake
    /// message: they are transport records for the caller.
    ///
    /// Bytes that arrive when the peer may not send anything (e.g. after
    /// message 2 but before this side sent message 3) are
    /// [`NoiseError::Unexpected`]. Every error is final.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), NoiseError> {
        loop {
            let number = match (&self.state, self.state.expects()) {
                (State::Failed(e), _) => return Err(e.clone()),
                (State::Complete(_), _) => return Ok(()),
                (_, Some(n)) => n,
                (_, None) if input.is_empty() => return Ok(()),
                (_, None) => return Err(self.fail(NoiseError::Unexpected)),
            };
            if input.len() < 2 {
                return Ok(());
            }
            let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
            if len > MAX_HANDSHAKE_MESSAGE {
                return Err(self.fail(NoiseError::NotAstral(escaped_prefix(input))));
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
            let state = std::mem::replace(&mut self.state, State::Failed(NoiseError::NotComplete));
            let next = self.read_message(state, number, &input[2..2 + len]);
            match next {
                Ok(s) => self.state = s,
                Err(e) => return Err(self.fail(e)),
            }
            input.advance(2 + len);
        }
    }

    /// Reads message `number` in `state` and returns the next state.
    fn read_message(&self, state: State, number: u8, msg: &[u8]) -> Result<State, NoiseError> {
        let mut noise = match state {
            State::ExpectMessage1(n) | State::ExpectMessage2(n) | State::ExpectMessage3(n) => n,
            _ => return Err(NoiseError::Unexpected),
        };
        let mut buf = [0u8; MAX_HANDSHAKE_MESSAGE];
        let n = noise
            .read_message(msg, &mut buf)
            .map_err(|e| self.read_error(number, e))?;
        let payload = &buf[..n];
        match number {
            // Message 1 carries no payload; anything there is ignored
            // (reserved for later versions).
            1 => Ok(State::SendMessage2(noise)),
            2 => {
                let m2 = self.parse_message2(payload)?;
                Ok(State::SendMessage3(noise, m2))
            }
            _ => {
                let (features, incarnation, supersedes) = self.parse_message3(payload)?;
                let remote = noise
                    .get_remote_static()
                    .and_then(|s| <[u8; 32]>::try_from(s).ok())
                    .map(NodeId)
                    .ok_or_else(|| {
                        NoiseError::Handshake("message 3 carried no static key".into())
                    })?;
                let m = Message2 {
                    stream_id: self.stream_id,
                    features,
                    incarnation,
                    supersedes,
                };
                Ok(State::Complete(Box::new(complete(
                    *noise,
                    Some(remote),
                    m,
                )?)))
            }
        }
    }

    fn parse_message2(&self, payload: &[u8]) -> Result<Message2, NoiseError> {
        let version = *payload.first().ok_or(NoiseError::BadPayload)?;
        if version != VERSION {
            return Err(NoiseError::Version(version));
        }
        let (p, supersedes) = split_supersedes(payload, MSG2_PAYLOAD)?;
        let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
        let offered = Features(u32::from_be_bytes([p[9], p[10], p[11], p[12]]));
        Ok(Message2 {
            stream_id: be64(&p[1..9]),
            features: self.local_features.intersect(offered),
            incarnation: be64(&p[13..21]),
            supersedes,
        })
    }

    fn parse_message3(&self, payload: &[u8]) -> Result<(Features, u64, Option<u64>), NoiseError> {
        let version = *payload.first().ok_or(NoiseError::BadPayload)?;
        if version != VERSION {
            return Err(NoiseError::Version(version));
        }
        let (p, supersedes) = split_supersedes(payload, MSG3_PAYLOAD)?;
        let chosen = Features(u32::from_be_bytes([p[1], p[2], p[3], p[4]]));
        if !self.local_features.contains(chosen) {
            // The initiator picked something we never offered.
            return Err(NoiseError::BadPayload);
        }
        let incarnation = u64::from_be_bytes([p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12]]);
        Ok((chosen, incarnation, supersedes))
    }

    fn read_error(&self, number: u8, e: snow::Error) -> NoiseError {
        let text = match (number, e) {
            (1, snow::Error::Decrypt) => "message 1 did not decrypt: the dialer used the wrong \
                 public key for this node (or the message was corrupted)"
                .to_string(),
            (2, snow::Error::Decrypt) => format!(
                "message 2 did not decrypt: peer is not the expected identity {} \
                 (or the message was corrupted)",
                self.expected.map(|r| r.short()).unwrap_or_default()
            ),
            (3, snow::Error::Decrypt) => {
                "message 3 did not decrypt (corrupted or forged)".to_string()
            }
            (n, e) => format!("could not read message {n}: {e}"),
        };
        NoiseError::Handshake(text)
    }

    /// Whether `poll_output` has a message to emit now (false while waiting
    /// for the peer's next message).
    pub fn wants_output(&self) -> bool {
        matches!(
            self.state,
            State::SendMessage1(_) | State::SendMessage2(_) | State::SendMessage3(..)
        )
    }

    /// True once this side has sent and received everything (initiator:
    /// after `poll_output` emitted message 3; responder: after message 3 was
    /// read).
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete(_))
    }

    /// Consumes the finished handshake. Error if not complete.
    pub fn into_established(self) -> Result<Established, NoiseError> {
        match self.state {
            State::Complete(est) => Ok(*est),
            State::Failed(e) => Err(e),
            _ => Err(NoiseError::NotComplete),
        }
    }
}

/// Writes the optional `supersedes` field after the `base` bytes of a
/// payload; returns the payload's length.
fn put_supersedes(payload: &mut [u8], base: usize, supersedes: Option<u64>) -> usize {
    match supersedes {
        Some(p) => {
            payload[base..base + SUPERSEDES].copy_from_slice(&p.to_be_bytes());
            base + SUPERSEDES
        }
        None => base,
    }
}

/// A version 2 payload of `base` bytes, or `base + 8` with the trailing
/// `supersedes` field; any other length is `BadPayload`.
fn split_supersedes(payload: &[u8], base: usize) -> Result<(&[u8], Option<u64>), NoiseError> {
    if payload.len() == base {
        return Ok((payload, None));
    }
    if payload.len() != base + SUPERSEDES {
        return Err(NoiseError::BadPayload);
    }
    let (p, tail) = payload.split_at(base);
    let tail: [u8; SUPERSEDES] = tail.try_into().map_err(|_| NoiseError::BadPayload)?;
    Ok((p, Some(u64::from_be_bytes(tail))))
}

/// Noise `Split()`: the two transport keys, on which we run the record
/// ciphers ourselves (in place, no copies) with the Noise nonce format, so
/// records are standard Noise transport messages; the AES-GCM choice was
/// authenticated by the handshake.
fn complete(
    mut noise: HandshakeState,
    remote: Option<NodeId>,
    m: Message2,
) -> Result<Established, NoiseError> {
    let remote = remote.ok_or(NoiseError::NotComplete)?;
    let initiator = noise.is_initiator();
    let (k1, k2) = noise.dangerously_get_raw_split();
    let (tx, rx) = if initiator { (k1, k2) } else { (k2, k1) };
    let cipher = RecordCipher::from_keys(&tx, &rx, m.features.contains(Features::AES_GCM))?;
    Ok(Established {
        remote,
        stream_id: m.stream_id,
        features: m.features,
        incarnation: m.incarnation,
        supersedes: m.supersedes.filter(|p| *p != m.incarnation),
        initiator,
        cipher,
    })
}
