//! Frame codec: the messages carried inside record plaintexts.
//!
//! A record plaintext holds one or more whole frames back to back. A frame is
//! an opcode byte followed by its fields; all integers are big-endian and
//! every `len` is a u16 counting the bytes that follow it. Full rules for
//! receivers are in `docs/PROTOCOL.md` ("Frames").
//!
//! Base frames, byte-exact with the reference (`../shared/vectors`):
//!
//! | op | frame | fields after the opcode | sent |
//! |---|---|---|---|
//! | `0x00` | [`Ping`](Frame::Ping) | nonce u64, pong u8 (0/1) | liveness probe; answered with the same nonce and pong = 1 |
//! | `0x01` | [`Query`](Frame::Query) | session u64, buffer u32, len u16, query (UTF-8) | opens a session; buffer = credit given to the responder |
//! | `0x02` | [`Response`](Frame::Response) | session u64, code u8, buffer u32 | answers a Query; code 0 = accepted, buffer = credit given back |
//! | `0x03` | [`Read`](Frame::Read) | session u64, len u32 | base flow control: returns `len` bytes of credit (a delta) |
//! | `0x04` | [`Data`](Frame::Data) | session u64, len u16, payload | base session data (no offset) |
//! | `0x05` | [`Reset`](Frame::Reset) | session u64 | aborts a session (either side; also the answer to a protocol error) |
//! | `0x06` | [`Migrate`](Frame::Migrate) | session u64 | base migration marker |
//!
//! Extended frames, used on streams that negotiated the extended feature:
//!
//! | op | frame | fields after the opcode | sent |
//! |---|---|---|---|
//! | `0x10` | [`DataAt`](Frame::DataAt) | session u64, offset u64, len u16, payload | session data; offset = position of the first payload byte in this direction |
//! | `0x11` | [`Credit`](Frame::Credit) | session u64, consumed u64 | cumulative bytes the application consumed (batched) |
//! | `0x12` | [`Fin`](Frame::Fin) | session u64, offset u64 | half-close: the direction ends at `offset`; retransmitted until credited |
//! | `0x13` | [`MigrateTo`](Frame::MigrateTo) | session u64, target u64, epoch u32 | last frame of the session on this stream; it continues on stream `target` |
//! | `0x14` | [`Resume`](Frame::Resume) | session u64, received u64, consumed u64, reply u8 (0/1) | after a stream died: this side's counts; every Resume with reply = 0 gets one with reply = 1 |
//! | `0x15` | [`Drain`](Frame::Drain) | none | stream level: "move your sessions off this stream; I will close it" |
//! | `0x16` | [`Goodbye`](Frame::Goodbye) | none | node level: "this node instance is leaving: every session with it is over" |
//! | `0x17` | [`Window`](Frame::Window) | session u64, consumed u64, window u32 | a Credit that also changes the window: the peer may send up to `consumed + window` |
//! | `0x18` | [`Pin`](Frame::Pin) | session u64, pinned u8 (0/1) | the sender's operator pinned (or released) the session: automatic placement leaves it alone |
//! | `0x19` | [`Preference`](Frame::Preference) | tier u8, penalty u16 (ms) | stream level: the sender's preference for this stream (lower tiers first; penalty added to its delay) |
//!
//! Opcodes `0x07..=0x0f` and `0x1a..=0xff` are unknown and rejected.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Opcode of [`Frame::Ping`].
pub(crate) const OP_PING: u8 = 0;
/// Opcode of [`Frame::Query`].
pub(crate) const OP_QUERY: u8 = 1;
/// Opcode of [`Frame::Response`].
pub(crate) const OP_RESPONSE: u8 = 2;
/// Opcode of [`Frame::Read`].
pub(crate) const OP_READ: u8 = 3;
/// Opcode of [`Frame::Data`].
pub(crate) const OP_DATA: u8 = 4;
/// Opcode of [`Frame::Reset`].
pub(crate) const OP_RESET: u8 = 5;
/// Opcode of [`Frame::Migrate`].
pub(crate) const OP_MIGRATE: u8 = 6;
/// Opcode of [`Frame::DataAt`].
pub(crate) const OP_DATA_AT: u8 = 0x10;
/// Opcode of [`Frame::Credit`].
pub(crate) const OP_CREDIT: u8 = 0x11;
/// Opcode of [`Frame::Fin`].
pub(crate) const OP_FIN: u8 = 0x12;
/// Opcode of [`Frame::MigrateTo`].
pub(crate) const OP_MIGRATE_TO: u8 = 0x13;
/// Opcode of [`Frame::Resume`].
pub(crate) const OP_RESUME: u8 = 0x14;
/// Opcode of [`Frame::Drain`].
pub(crate) const OP_DRAIN: u8 = 0x15;
/// Opcode of [`Frame::Goodbye`].
pub(crate) const OP_GOODBYE: u8 = 0x16;
/// Opcode of [`Frame::Window`].
pub(crate) const OP_WINDOW: u8 = 0x17;
/// Opcode of [`Frame::Pin`].
pub(crate) const OP_PIN: u8 = 0x18;
/// Opcode of [`Frame::Preference`].
pub(crate) const OP_PREFERENCE: u8 = 0x19;

/// Encoded sizes: the fixed frames' whole size, the variable ones' size
/// without their payload or query. The scheduler budgets records with these
/// (like quinn-proto's `SIZE_BOUND`s), never with literal sums.
pub(crate) mod size {
    /// Ping: op + nonce + pong.
    pub const PING: usize = 1 + 8 + 1;
    /// Query without its string: op + session + buffer + len.
    pub const QUERY_HEADER: usize = 1 + 8 + 4 + 2;
    /// Response: op + session + code + buffer.
    pub const RESPONSE: usize = 1 + 8 + 1 + 4;
    /// Read: op + session + len.
    pub const READ: usize = 1 + 8 + 4;
    /// Data without its payload: op + session + len.
    pub const DATA_HEADER: usize = 1 + 8 + 2;
    /// Reset: op + session.
    pub const RESET: usize = 1 + 8;
    /// Migrate: op + session.
    pub const MIGRATE: usize = 1 + 8;
    /// DataAt without its payload: op + session + offset + len.
    pub const DATA_AT_HEADER: usize = 1 + 8 + 8 + 2;
    /// Credit: op + session + consumed.
    pub const CREDIT: usize = 1 + 8 + 8;
    /// Fin: op + session + offset.
    pub const FIN: usize = 1 + 8 + 8;
    /// MigrateTo: op + session + target + epoch.
    pub const MIGRATE_TO: usize = 1 + 8 + 8 + 4;
    /// Resume: op + session + received + consumed + reply.
    pub const RESUME: usize = 1 + 8 + 8 + 8 + 1;
    /// Drain: op.
    pub const DRAIN: usize = 1;
    /// Goodbye: op.
    pub const GOODBYE: usize = 1;
    /// Window: op + session + consumed + window.
    pub const WINDOW: usize = 1 + 8 + 8 + 4;
    /// Pin: op + session + pinned.
    pub const PIN: usize = 1 + 8 + 1;
    /// Preference: op + tier + penalty.
    pub const PREFERENCE: usize = 1 + 1 + 2;
}

/// Size of a DataAt header (op + session + offset + len).
pub const DATA_AT_HEADER_LEN: usize = size::DATA_AT_HEADER;

/// Largest query or payload the u16 length fields can describe.
const MAX_WIRE_LEN: usize = u16::MAX as usize;

/// One protocol frame. See the module documentation for the wire layouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `0x00`: liveness probe (`pong = false`) or its echo (`pong = true`).
    Ping {
        /// Value echoed by the pong.
        nonce: u64,
        /// False for a ping, true for the answer.
        pong: bool,
    },
    /// `0x01`: opens a session.
    Query {
        /// Session id chosen by the querier.
        session: u64,
        /// Credit (bytes) the querier grants the responder.
        buffer: u32,
        /// Service query, UTF-8, at most 65535 bytes.
        query: String,
    },
    /// `0x02`: answer to a Query.
    Response {
        /// Session id of the Query.
        session: u64,
        /// 0 = accepted; anything else is a rejection.
        code: u8,
        /// Credit (bytes) the responder grants the querier.
        buffer: u32,
    },
    /// `0x03`: base flow control, returns credit as a delta.
    Read {
        /// Session id.
        session: u64,
        /// Bytes of credit returned.
        len: u32,
    },
    /// `0x04`: base session data, without an offset.
    Data {
        /// Session id.
        session: u64,
        /// Payload, at most 65535 bytes.
        payload: Bytes,
    },
    /// `0x05`: aborts a session.
    Reset {
        /// Session id.
        session: u64,
    },
    /// `0x06`: base migration marker.
    Migrate {
        /// Session id.
        session: u64,
    },
    /// `0x10`: session data at an absolute offset of this direction's flow.
    DataAt {
        /// Session id.
        session: u64,
        /// Position of the first payload byte in this direction's byte flow.
        offset: u64,
        /// Payload, at most 65535 bytes.
        payload: Bytes,
    },
    /// `0x11`: cumulative count of bytes the application consumed.
    Credit {
        /// Session id.
        session: u64,
        /// Total bytes consumed so far in the direction being credited.
        consumed: u64,
    },
    /// `0x12`: graceful end of one direction (half-close).
    Fin {
        /// Session id.
        session: u64,
        /// Final offset: total bytes of the direction.
        offset: u64,
    },
    /// `0x13`: migration marker; the session continues on stream `target`.
    MigrateTo {
        /// Session id.
        session: u64,
        /// Stream id of the target stream.
        target: u64,
        /// Migration epoch.
        epoch: u32,
    },
    /// `0x14`: recovery after a stream died.
    Resume {
        /// Session id.
        session: u64,
        /// Contiguous bytes this side received from the peer.
        received: u64,
        /// Bytes this side's application consumed.
        consumed: u64,
        /// True when this Resume answers the peer's Resume.
        reply: bool,
    },
    /// `0x15`: stream level, "move your sessions off this stream; I will close it".
    Drain,
    /// `0x16`: node level, "this node instance is shutting down": every
    /// session with it ends at once, and the sender closes the stream once
    /// this frame is flushed. Sent on every stream to the peer.
    Goodbye,
    /// `0x17`: a [`Credit`](Frame::Credit) that also states the window:
    /// the receiver of this frame may send up to `consumed + window`. Grants
    /// are cumulative: a sender keeps the highest limit any Credit, Window
    /// or Resume gave it (a Credit or Resume gives `consumed` plus the
    /// session's initial `buffer`), so a smaller window never takes back
    /// credit already granted.
    Window {
        /// Session id.
        session: u64,
        /// Total bytes consumed so far in the direction being credited
        /// (as in Credit, the Fin counts one).
        consumed: u64,
        /// Bytes granted beyond `consumed`.
        window: u32,
    },
    /// `0x18`: the sender's operator pinned the session to where it is
    /// (`pinned = true`) or released it; automatic placement at either end
    /// leaves a pinned session alone.
    Pin {
        /// Session id.
        session: u64,
        /// Pinned, or released.
        pinned: bool,
    },
    /// `0x19`: stream level, the sender's preference for the stream it
    /// arrives on.
    Preference {
        /// Lower tiers are used first.
        tier: u8,
        /// Milliseconds added to the stream's delay when streams of one
        /// tier are compared.
        penalty_ms: u16,
    },
}

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The opcode byte names no frame.
    #[error("unknown frame opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// The buffer ends inside a frame.
    #[error("truncated frame: need {needed} more bytes")]
    Truncated {
        /// Missing bytes of the field being read (at least 1).
        needed: usize,
    },
    /// A query or payload length field exceeds the decoding limit.
    #[error("frame length {len} over the limit {limit}")]
    LengthOverLimit {
        /// Length announced by the frame.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A Query's bytes are not valid UTF-8.
    #[error("query is not valid UTF-8")]
    InvalidUtf8,
    /// A field holds a value outside its domain (e.g. a boolean byte other than 0 or 1).
    #[error("invalid value {value} in field {field}")]
    InvalidValue {
        /// Name of the field.
        field: &'static str,
        /// Value found.
        value: u64,
    },
    /// The frame cannot be written (a query or payload longer than 65535 bytes).
    #[error("frame does not fit the wire format: {0}")]
    Unencodable(&'static str),
}

/// Decoding limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest accepted Query string, in bytes.
    pub max_query_len: usize,
    /// Longest accepted Data / DataAt payload, in bytes.
    pub max_payload_len: usize,
}

impl Default for DecodeLimits {
    /// 65535 for both: everything the wire format can express.
    fn default() -> Self {
        DecodeLimits {
            max_query_len: MAX_WIRE_LEN,
            max_payload_len: MAX_WIRE_LEN,
        }
    }
}

impl DecodeLimits {
    /// No limit beyond the wire format's own.
    pub const UNLIMITED: DecodeLimits = DecodeLimits {
        max_query_len: usize::MAX,
        max_payload_len: usize::MAX,
    };
}

/// Bounds-checked big-endian reader over the front of a frame.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    /// Takes the next `N` bytes, or fails with the number missing.
    #[inline]
    fn take<const N: usize>(&mut self) -> Result<&'a [u8; N], FrameError> {
        match self.0.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.0 = rest;
                Ok(head)
            }
            None => Err(FrameError::Truncated {
                needed: N - self.0.len(),
            }),
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take::<1>()?[0])
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(*self.take::<4>()?))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(*self.take::<8>()?))
    }

    #[inline]
    fn bool(&mut self, field: &'static str) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(FrameError::InvalidValue {
                field,
                value: u64::from(v),
            }),
        }
    }

    /// Reads a u16 length, checks it against `limit` (before requiring the
    /// bytes), then checks that the bytes are present. Does not consume them.
    #[inline]
    fn blob_len(&mut self, limit: usize) -> Result<usize, FrameError> {
        let len = usize::from(u16::from_be_bytes(*self.take::<2>()?));
        if len > limit {
            return Err(FrameError::LengthOverLimit { len, limit });
        }
        if self.0.len() < len {
            return Err(FrameError::Truncated {
                needed: len - self.0.len(),
            });
        }
        Ok(len)
    }
}

impl Frame {
    /// Decode one frame from the front of `buf`, advancing it past the frame.
    ///
    /// Payloads are zero-copy slices of `buf` (`Bytes::split_to`). On error
    /// `buf` may be left in any state. Never panics.
    pub fn decode(buf: &mut Bytes, limits: &DecodeLimits) -> Result<Frame, FrameError> {
        let s: &[u8] = buf;
        let mut r = Rd(s);
        let op = r.u8()?;
        let frame = match op {
            OP_PING => {
                let nonce = r.u64()?;
                let pong = r.bool("pong")?;
                Frame::Ping { nonce, pong }
            }
            OP_QUERY => {
                let session = r.u64()?;
                let buffer = r.u32()?;
                let len = r.blob_len(limits.max_query_len)?;
                let (raw, rest) = r.0.split_at(len);
                r.0 = rest;
                let query = std::str::from_utf8(raw)
                    .map_err(|_| FrameError::InvalidUtf8)?
                    .to_owned();
                Frame::Query {
                    session,
                    buffer,
                    query,
                }
            }
            OP_RESPONSE => {
                let session = r.u64()?;
                let code = r.u8()?;
                let buffer = r.u32()?;
                Frame::Response {
                    session,
                    code,
                    buffer,
                }
            }
            OP_READ => {
                let session = r.u64()?;
                let len = r.u32()?;
                Frame::Read { session, len }
            }
            OP_DATA => {
                let session = r.u64()?;
                let len = r.blob_len(limits.max_payload_len)?;
                buf.advance(s.len() - r.0.len());
                let payload = buf.split_to(len);
                return Ok(Frame::Data { session, payload });
            }
            OP_RESET => Frame::Reset { session: r.u64()? },
            OP_MIGRATE => Frame::Migrate { session: r.u64()? },
            OP_DATA_AT => {
                let session = r.u64()?;
                let offset = r.u64()?;
                let len = r.blob_len(limits.max_payload_len)?;
                buf.advance(s.len() - r.0.len());
                let payload = buf.split_to(len);
                return Ok(Frame::DataAt {
                    session,
                    offset,
                    payload,
                });
            }
            OP_CREDIT => {
                let session = r.u64()?;
                let consumed = r.u64()?;
                Frame::Credit { session, consumed }
            }
            OP_FIN => {
                let session = r.u64()?;
                let offset = r.u64()?;
                Frame::Fin { session, offset }
            }
            OP_MIGRATE_TO => {
                let session = r.u64()?;
                let target = r.u64()?;
                let epoch = r.u32()?;
                Frame::MigrateTo {
                    session,
                    target,
                    epoch,
                }
            }
            OP_RESUME => {
                let session = r.u64()?;
                let received = r.u64()?;
                let consumed = r.u64()?;
                let reply = r.bool("reply")?;
                Frame::Resume {
                    session,
                    received,
                    consumed,
                    reply,
                }
            }
            OP_DRAIN => Frame::Drain,
            OP_GOODBYE => Frame::Goodbye,
            OP_WINDOW => {
                let session = r.u64()?;
                let consumed = r.u64()?;
                let window = r.u32()?;
                Frame::Window {
                    session,
                    consumed,
                    window,
                }
            }
            OP_PIN => {
                let session = r.u64()?;
                let pinned = r.bool("pinned")?;
                Frame::Pin { session, pinned }
            }
            OP_PREFERENCE => {
                let tier = r.u8()?;
                let penalty_ms = u16::from_be_bytes(*r.take::<2>()?);
                Frame::Preference { tier, penalty_ms }
            }
            other => return Err(FrameError::UnknownOpcode(other)),
        };
        buf.advance(s.len() - r.0.len());
        Ok(frame)
    }

    /// Number of bytes [`encode`](Frame::encode) writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Ping { .. } => size::PING,
            Frame::Query { query, .. } => size::QUERY_HEADER + query.len(),
            Frame::Response { .. } => size::RESPONSE,
            Frame::Read { .. } => size::READ,
            Frame::Data { payload, .. } => size::DATA_HEADER + payload.len(),
            Frame::Reset { .. } => size::RESET,
            Frame::Migrate { .. } => size::MIGRATE,
            Frame::DataAt { payload, .. } => size::DATA_AT_HEADER + payload.len(),
            Frame::Credit { .. } => size::CREDIT,
            Frame::Fin { .. } => size::FIN,
            Frame::MigrateTo { .. } => size::MIGRATE_TO,
            Frame::Resume { .. } => size::RESUME,
            Frame::Drain => size::DRAIN,
            Frame::Goodbye => size::GOODBYE,
            Frame::Window { .. } => size::WINDOW,
            Frame::Pin { .. } => size::PIN,
            Frame::Preference { .. } => size::PREFERENCE,
        }
    }

    /// Append the encoding to `out`.
    ///
    /// Errors, before writing anything, when a field cannot be represented
    /// (query or payload longer than 65535 bytes) or when `out` has less
    /// room than [`encoded_len`](Frame::encoded_len) (only possible for
    /// fixed-size buffers; a `Vec` or `BytesMut` grows).
    pub fn encode<B: BufMut>(&self, out: &mut B) -> Result<(), FrameError> {
        match self {
            Frame::Query { query, .. } if query.len() > MAX_WIRE_LEN => {
                return Err(FrameError::Unencodable("query longer than 65535 bytes"));
            }
            Frame::Data { payload, .. } | Frame::DataAt { payload, .. }
                if payload.len() > MAX_WIRE_LEN =>
            {
                return Err(FrameError::Unencodable("payload longer than 65535 bytes"));
            }
            _ => {}
        }
        if out.remaining_mut() < self.encoded_len() {
            return Err(FrameError::Unencodable("output buffer too small"));
        }
        out.put_u8(self.opcode());
        // Lengths below were checked against MAX_WIRE_LEN above, so the
        // `as u16` casts are lossless.
        match self {
            Frame::Ping { nonce, pong } => {
                out.put_u64(*nonce);
                out.put_u8(u8::from(*pong));
            }
            Frame::Query {
                session,
                buffer,
                query,
            } => {
                out.put_u64(*session);
                out.put_u32(*buffer);
                out.put_u16(query.len() as u16);
                out.put_slice(query.as_bytes());
            }
            Frame::Response {
                session,
                code,
                buffer,
            } => {
                out.put_u64(*session);
                out.put_u8(*code);
                out.put_u32(*buffer);
            }
            Frame::Read { session, len } => {
                out.put_u64(*session);
                out.put_u32(*len);
            }
            Frame::Data { session, payload } => {
                out.put_u64(*session);
                out.put_u16(payload.len() as u16);
                out.put_slice(payload);
            }
            Frame::Reset { session } | Frame::Migrate { session } => {
                out.put_u64(*session);
            }
            Frame::DataAt {
                session,
                offset,
                payload,
            } => {
                out.put_u64(*session);
                out.put_u64(*offset);
                out.put_u16(payload.len() as u16);
                out.put_slice(payload);
            }
            Frame::Credit { session, consumed } => {
                out.put_u64(*session);
                out.put_u64(*consumed);
            }
            Frame::Fin { session, offset } => {
                out.put_u64(*session);
                out.put_u64(*offset);
            }
            Frame::MigrateTo {
                session,
                target,
                epoch,
            } => {
                out.put_u64(*session);
                out.put_u64(*target);
                out.put_u32(*epoch);
            }
            Frame::Resume {
                session,
                received,
                consumed,
                reply,
            } => {
                out.put_u64(*session);
                out.put_u64(*received);
                out.put_u64(*consumed);
                out.put_u8(u8::from(*reply));
            }
            Frame::Drain | Frame::Goodbye => {}
            Frame::Window {
                session,
                consumed,
                window,
            } => {
                out.put_u64(*session);
                out.put_u64(*consumed);
                out.put_u32(*window);
            }
            Frame::Pin { session, pinned } => {
                out.put_u64(*session);
                out.put_u8(u8::from(*pinned));
            }
            Frame::Preference { tier, penalty_ms } => {
                out.put_u8(*tier);
                out.put_u16(*penalty_ms);
            }
        }
        Ok(())
    }

    /// Convenience: encode into a new `Bytes`.
    pub fn to_bytes(&self) -> Result<Bytes, FrameError> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// Opcode of this frame.
    pub fn opcode(&self) -> u8 {
        match self {
            Frame::Ping { .. } => OP_PING,
            Frame::Query { .. } => OP_QUERY,
            Frame::Response { .. } => OP_RESPONSE,
            Frame::Read { .. } => OP_READ,
            Frame::Data { .. } => OP_DATA,
            Frame::Reset { .. } => OP_RESET,
            Frame::Migrate { .. } => OP_MIGRATE,
            Frame::DataAt { .. } => OP_DATA_AT,
            Frame::Credit { .. } => OP_CREDIT,
            Frame::Fin { .. } => OP_FIN,
            Frame::MigrateTo { .. } => OP_MIGRATE_TO,
            Frame::Resume { .. } => OP_RESUME,
            Frame::Drain => OP_DRAIN,
            Frame::Goodbye => OP_GOODBYE,
            Frame::Window { .. } => OP_WINDOW,
            Frame::Pin { .. } => OP_PIN,
            Frame::Preference { .. } => OP_PREFERENCE,
        }
    }

    /// Session id this frame concerns, if any (`None` for the stream-level
    /// Ping, Drain and Preference, and the node-level Goodbye).
    pub fn session(&self) -> Option<u64> {
        match self {
            Frame::Ping { .. } | Frame::Drain | Frame::Preference { .. } | Frame::Goodbye => None,
            Frame::Query { session, .. }
            | Frame::Response { session, .. }
            | Frame::Read { session, .. }
            | Frame::Data { session, .. }
            | Frame::Reset { session }
            | Frame::Migrate { session }
            | Frame::DataAt { session, .. }
            | Frame::Credit { session, .. }
            | Frame::Fin { session, .. }
            | Frame::MigrateTo { session, .. }
            | Frame::Resume { session, .. }
            | Frame::Window { session, .. }
            | Frame::Pin { session, .. } => Some(*session),
        }
    }

    /// True for the seven base frames of the reference (opcodes 0 to 6).
    pub fn is_base(&self) -> bool {
        self.opcode() <= OP_MIGRATE
    }
}

/// Hot path: write only the DataAt header (the `len`-byte payload follows,
/// written by the caller), avoiding a `Bytes`.
///
/// Writes [`DATA_AT_HEADER_LEN`] bytes; like any `BufMut::put_*`, panics if
/// `out` is a fixed-size buffer with less room than that.
#[inline]
pub fn encode_data_at_header<B: BufMut>(out: &mut B, session: u64, offset: u64, len: u16) {
    out.put_u8(OP_DATA_AT);
    out.put_u64(session);
    out.put_u64(offset);
    out.put_u16(len);
}

/// Incremental decoding of a whole record plaintext: yields frames until the
/// buffer is empty. After the first error it yields `None`.
#[derive(Clone, Debug)]
pub struct FrameReader {
    buf: Bytes,
    limits: DecodeLimits,
}

impl FrameReader {
    /// Reader over `buf` (typically one record's plaintext).
    pub fn new(buf: Bytes, limits: DecodeLimits) -> Self {
        FrameReader { buf, limits }
    }

    /// Bytes not yet decoded (empty after an error).
    pub fn remaining(&self) -> &Bytes {
        &self.buf
    }
}

impl Iterator for FrameReader {
    type Item = Result<Frame, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let result = Frame::decode(&mut self.buf, &self.limits);
        if result.is_err() {
            // Stop for good: the rest of the buffer has no frame boundary.
            self.buf = Bytes::new();
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Ping {
                nonce: 0x0102_0304_0506_0708,
                pong: true,
            },
            Frame::Query {
                session: 7,
                buffer: 1 << 20,
                query: "nodes.echo ✓".into(),
            },
            Frame::Response {
                session: 7,
                code: 0,
                buffer: 4096,
            },
            Frame::Read {
                session: 7,
                len: 123,
            },
            Frame::Data {
                session: 7,
                payload: Bytes::from_static(b"hello"),
            },
            Frame::Reset { session: 9 },
            Frame::Migrate { session: 9 },
            Frame::DataAt {
                session: 7,
                offset: u64::MAX - 3,
                payload: Bytes::from_static(b"world!"),
            },
            Frame::Credit {
                session: 7,
                consumed: 1 << 40,
            },
            Frame::Fin {
                session: 7,
                offset: 99,
            },
            Frame::MigrateTo {
                session: 7,
                target: 3,
                epoch: 2,
            },
            Frame::Resume {
                session: 7,
                received: 10,
                consumed: 5,
                reply: true,
            },
            Frame::Drain,
            Frame::Goodbye,
            Frame::Window {
                session: 7,
                consumed: 1 << 33,
                window: 16 << 20,
            },
            Frame::Pin {
                session: 7,
                pinned: true,
            },
            Frame::Preference {
                tier: 1,
                penalty_ms: 250,
            },
        ]
    }

    fn decode_all(bytes: &[u8], limits: &DecodeLimits) -> Result<Frame, FrameError> {
        let mut buf = Bytes::copy_from_slice(bytes);
        Frame::decode(&mut buf, limits)
    }

    #[test]
    fn frame_samples_round_trip_and_metadata() {
        let frames = samples();
        let mut opcodes: Vec<u8> = frames.iter().map(Frame::opcode).collect();
        opcodes.dedup();
        assert_eq!(opcodes.len(), 17);
        for f in frames {
            let bytes = f.to_bytes().expect("encodable");
            assert_eq!(bytes.len(), f.encoded_len());
            assert_eq!(bytes[0], f.opcode());
            assert_eq!(f.is_base(), f.opcode() <= 6);
            assert_eq!(
                f.session().is_none(),
                matches!(
                    f,
                    Frame::Ping { .. } | Frame::Drain | Frame::Preference { .. } | Frame::Goodbye
                )
            );
            let mut buf = bytes.clone();
            assert_eq!(Frame::decode(&mut buf, &DecodeLimits::default()), Ok(f));
            assert!(buf.is_empty());
        }
    }

    /// The Window layout, byte for byte (docs/PROTOCOL.md).
    #[test]
    fn frame_window_bytes() {
        let f = Frame::Window {
            session: 0x0102_0304_0506_0708,
            consumed: 0x1112_1314_1516_1718,
            window: 0x2122_2324,
        };
        let bytes = f.to_bytes().unwrap();
        let mut want = vec![0x17];
        want.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        want.extend_from_slice(&0x1112_1314_1516_1718u64.to_be_bytes());
        want.extend_from_slice(&0x2122_2324u32.to_be_bytes());
        assert_eq!(bytes.to_vec(), want);
        assert_eq!(size::WINDOW, 21);
    }

    #[test]
    fn frame_data_at_header_matches_encode() {
        let f = Frame::DataAt {
            session: 0xdead_beef,
            offset: 1 << 33,
            payload: Bytes::from_static(b"abc"),
        };
        let mut out = Vec::new();
        encode_data_at_header(&mut out, 0xdead_beef, 1 << 33, 3);
        assert_eq!(out.len(), DATA_AT_HEADER_LEN);
        out.extend_from_slice(b"abc");
        assert_eq!(out, f.to_bytes().unwrap().to_vec());
    }

    #[test]
    fn frame_decode_is_zero_copy() {
        let bytes = Frame::DataAt {
            session: 1,
            offset: 2,
            payload: Bytes::from(vec![5u8; 100]),
        }
        .to_bytes()
        .unwrap();
        let base = bytes.as_ptr() as usize;
        let mut buf = bytes.clone();
        match Frame::decode(&mut buf, &DecodeLimits::default()).unwrap() {
            Frame::DataAt { payload, .. } => {
                assert_eq!(payload.as_ptr() as usize, base + DATA_AT_HEADER_LEN)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frame_error_unknown_opcode() {
        for op in (7u8..=0x0f).chain(0x1a..=0xff) {
            assert_eq!(
                decode_all(
                    &[op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    &DecodeLimits::default()
                ),
                Err(FrameError::UnknownOpcode(op))
            );
        }
    }

    #[test]
    fn frame_error_truncated_empty_and_fields() {
        let l = DecodeLimits::default();
        assert_eq!(
            decode_all(&[], &l),
            Err(FrameError::Truncated { needed: 1 })
        );
        // Reset with 3 of 8 session bytes.
        assert_eq!(
            decode_all(&[OP_RESET, 1, 2, 3], &l),
            Err(FrameError::Truncated { needed: 5 })
        );
        // Data announcing 10 payload bytes, 4 present.
        let mut v = vec![OP_DATA];
        v.extend_from_slice(&7u64.to_be_bytes());
        v.extend_from_slice(&10u16.to_be_bytes());
        v.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(decode_all(&v, &l), Err(FrameError::Truncated { needed: 6 }));
    }

    #[test]
    fn frame_error_truncated_at_every_prefix() {
        for f in samples() {
            let bytes = f.to_bytes().unwrap();
            for cut in 0..bytes.len() {
                match decode_all(&bytes[..cut], &DecodeLimits::default()) {
                    Err(FrameError::Truncated { needed }) => {
                        assert!(
                            needed >= 1 && needed <= bytes.len() - cut,
                            "{f:?} cut {cut}"
                        )
                    }
                    other => panic!("{f:?} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn frame_error_length_over_limit() {
        let limits = DecodeLimits {
            max_query_len: 4,
            max_payload_len: 8,
        };
        // The length field is checked before the bytes are required.
        let mut q = vec![OP_QUERY];
        q.extend_from_slice(&1u64.to_be_bytes());
        q.extend_from_slice(&0u32.to_be_bytes());
        q.extend_from_slice(&5u16.to_be_bytes());
        assert_eq!(
            decode_all(&q, &limits),
            Err(FrameError::LengthOverLimit { len: 5, limit: 4 })
        );
        let mut d = vec![OP_DATA];
        d.extend_from_slice(&1u64.to_be_bytes());
        d.extend_from_slice(&9u16.to_be_bytes());
        assert_eq!(
            decode_all(&d, &limits),
            Err(FrameError::LengthOverLimit { len: 9, limit: 8 })
        );
        let mut da = vec![OP_DATA_AT];
        da.extend_from_slice(&1u64.to_be_bytes());
        da.extend_from_slice(&0u64.to_be_bytes());
        da.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            decode_all(&da, &limits),
            Err(FrameError::LengthOverLimit {
                len: 65535,
                limit: 8
            })
        );
        // At the limit is fine.
        let ok = Frame::Query {
            session: 1,
            buffer: 0,
            query: "abcd".into(),
        };
        assert_eq!(decode_all(&ok.to_bytes().unwrap(), &limits), Ok(ok));
    }

    #[test]
    fn frame_error_invalid_utf8() {
        let mut q = vec![OP_QUERY];
        q.extend_from_slice(&1u64.to_be_bytes());
        q.extend_from_slice(&0u32.to_be_bytes());
        q.extend_from_slice(&2u16.to_be_bytes());
        q.extend_from_slice(&[0xc3, 0x28]);
        assert_eq!(
            decode_all(&q, &DecodeLimits::default()),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn frame_error_invalid_value() {
        let mut p = vec![OP_PING];
        p.extend_from_slice(&1u64.to_be_bytes());
        p.push(2);
        assert_eq!(
            decode_all(&p, &DecodeLimits::default()),
            Err(FrameError::InvalidValue {
                field: "pong",
                value: 2
            })
        );
        let mut r = vec![OP_RESUME];
        r.extend_from_slice(&[0u8; 24]);
        r.push(0xff);
        assert_eq!(
            decode_all(&r, &DecodeLimits::default()),
            Err(FrameError::InvalidValue {
                field: "reply",
                value: 255
            })
        );
    }

    #[test]
    fn pin_and_preference_encode_byte_for_byte() {
        let pin = Frame::Pin {
            session: 0x0102_0304_0506_0708,
            pinned: true,
        };
        assert_eq!(
            &pin.to_bytes().unwrap()[..],
            &[0x18, 1, 2, 3, 4, 5, 6, 7, 8, 1]
        );
        let unpin = Frame::Pin {
            session: 9,
            pinned: false,
        };
        assert_eq!(
            &unpin.to_bytes().unwrap()[..],
            &[0x18, 0, 0, 0, 0, 0, 0, 0, 9, 0]
        );
        let pref = Frame::Preference {
            tier: 2,
            penalty_ms: 500,
        };
        assert_eq!(&pref.to_bytes().unwrap()[..], &[0x19, 2, 0x01, 0xf4]);
        for f in [pin, unpin, pref] {
            let bytes = f.to_bytes().unwrap();
            let mut buf = bytes.clone();
            assert_eq!(Frame::decode(&mut buf, &DecodeLimits::default()), Ok(f));
            assert!(buf.is_empty());
            // Every strict prefix is truncated, never another frame.
            for n in 1..bytes.len() {
                assert!(matches!(
                    decode_all(&bytes[..n], &DecodeLimits::default()),
                    Err(FrameError::Truncated { .. })
                ));
            }
        }
        // `pinned` is 0 or 1.
        let mut p = vec![OP_PIN];
        p.extend_from_slice(&7u64.to_be_bytes());
        p.push(2);
        assert_eq!(
            decode_all(&p, &DecodeLimits::default()),
            Err(FrameError::InvalidValue {
                field: "pinned",
                value: 2
            })
        );
    }

    #[test]
    fn frame_error_unencodable() {
        let big = Bytes::from(vec![0u8; 65536]);
        let frames = [
            Frame::Data {
                session: 1,
                payload: big.clone(),
            },
            Frame::DataAt {
                session: 1,
                offset: 0,
                payload: big,
            },
            Frame::Query {
                session: 1,
                buffer: 0,
                query: "x".repeat(65536),
            },
        ];
        for f in frames {
            let mut out = Vec::new();
            assert!(matches!(
                f.encode(&mut out),
                Err(FrameError::Unencodable(_))
            ));
            assert!(out.is_empty(), "nothing written on error");
        }
        // Exactly 65535 is fine.
        let max = Frame::Data {
            session: 1,
            payload: Bytes::from(vec![1u8; 65535]),
        };
        let bytes = max.to_bytes().unwrap();
        assert_eq!(decode_all(&bytes, &DecodeLimits::default()), Ok(max));
        // A fixed buffer that is too small is an error, not a panic.
        let mut small = [0u8; 4];
        let mut slice: &mut [u8] = &mut small;
        assert!(matches!(
            Frame::Drain
                .encode(&mut slice)
                .and(Frame::Reset { session: 1 }.encode(&mut slice)),
            Err(FrameError::Unencodable(_))
        ));
    }

    #[test]
    fn frame_reader_concatenated() {
        let frames = samples();
        let mut out = Vec::new();
        for f in &frames {
            f.encode(&mut out).unwrap();
        }
        let got: Vec<Frame> = FrameReader::new(Bytes::from(out.clone()), DecodeLimits::default())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, frames);

        // A bad frame in the middle: frames before it, then the error, then None.
        let first = frames[0].to_bytes().unwrap();
        let mut bad = first.to_vec();
        bad.push(0x07);
        bad.extend_from_slice(&first);
        let mut r = FrameReader::new(Bytes::from(bad), DecodeLimits::default());
        assert_eq!(r.next(), Some(Ok(frames[0].clone())));
        assert_eq!(r.next(), Some(Err(FrameError::UnknownOpcode(7))));
        assert_eq!(r.next(), None);
        assert_eq!(r.next(), None);
        assert!(r.remaining().is_empty());

        // Trailing truncated frame.
        let mut t = out;
        t.push(OP_CREDIT);
        let results: Vec<_> = FrameReader::new(Bytes::from(t), DecodeLimits::default()).collect();
        assert_eq!(results.len(), frames.len() + 1);
        assert_eq!(
            results.last(),
            Some(&Err(FrameError::Truncated { needed: 8 }))
        );
        assert_eq!(
            FrameReader::new(Bytes::new(), DecodeLimits::default()).next(),
            None
        );
    }

    fn arb_payload() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..=2048).prop_map(Bytes::from)
    }

    fn arb_query() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..=300).prop_map(|c| c.into_iter().collect())
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u64>(), any::<bool>()).prop_map(|(nonce, pong)| Frame::Ping { nonce, pong }),
            (any::<u64>(), any::<u32>(), arb_query()).prop_map(|(session, buffer, query)| {
                Frame::Query {
                    session,
                    buffer,
                    query,
                }
            }),
            (any::<u64>(), any::<u8>(), any::<u32>()).prop_map(|(session, code, buffer)| {
                Frame::Response {
                    session,
                    code,
                    buffer,
                }
            }),
            (any::<u64>(), any::<u32>()).prop_map(|(session, len)| Frame::Read { session, len }),
            (any::<u64>(), arb_payload())
                .prop_map(|(session, payload)| Frame::Data { session, payload }),
            any::<u64>().prop_map(|session| Frame::Reset { session }),
            any::<u64>().prop_map(|session| Frame::Migrate { session }),
            (any::<u64>(), any::<u64>(), arb_payload()).prop_map(|(session, offset, payload)| {
                Frame::DataAt {
                    session,
                    offset,
                    payload,
                }
            }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(session, consumed)| Frame::Credit { session, consumed }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(session, offset)| Frame::Fin { session, offset }),
            (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(session, target, epoch)| {
                Frame::MigrateTo {
                    session,
                    target,
                    epoch,
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                |(session, received, consumed, reply)| Frame::Resume {
                    session,
                    received,
                    consumed,
                    reply,
                }
            ),
            Just(Frame::Drain),
            Just(Frame::Goodbye),
            (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(session, consumed, window)| {
                Frame::Window {
                    session,
                    consumed,
                    window,
                }
            }),
            (any::<u64>(), any::<bool>())
                .prop_map(|(session, pinned)| Frame::Pin { session, pinned }),
            (any::<u8>(), any::<u16>())
                .prop_map(|(tier, penalty_ms)| Frame::Preference { tier, penalty_ms }),
        ]
    }

    proptest! {
        #[test]
        fn frame_prop_round_trip(f in arb_frame(), trailer in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut out = Vec::new();
            f.encode(&mut out).unwrap();
            prop_assert_eq!(out.len(), f.encoded_len());
            out.extend_from_slice(&trailer);
            let mut buf = Bytes::from(out);
            let got = Frame::decode(&mut buf, &DecodeLimits::default());
            prop_assert_eq!(got, Ok(f));
            prop_assert_eq!(&buf[..], &trailer[..]);
        }

        #[test]
        fn frame_prop_decode_arbitrary_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            first in any::<u8>(),
            small_limits in any::<bool>(),
        ) {
            // Bias the first byte toward known opcodes so frames often decode.
            let mut data = data;
            data.insert(0, first % 0x1a);
            let limits = if small_limits {
                DecodeLimits { max_query_len: 16, max_payload_len: 16 }
            } else {
                DecodeLimits::default()
            };
            let input = Bytes::from(data);
            let mut buf = input.clone();
            while !buf.is_empty() {
                let before = buf.clone();
                match Frame::decode(&mut buf, &limits) {
                    Ok(f) => {
                        let used = before.len() - buf.len();
                        prop_assert_eq!(used, f.encoded_len());
                        prop_assert_eq!(f.to_bytes().unwrap(), before.slice(..used));
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
