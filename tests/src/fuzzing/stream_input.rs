//! Arbitrary bytes as the input of an established stream.
//!
//! The stream uses the no-security record cipher of the core's `fuzzing`
//! feature (records are `u16 length || plaintext || 16 zero bytes`), so the
//! fuzzer reaches the frame and session logic instead of failing
//! authentication. The node must never panic, whatever arrives, and
//! everything it sends must decode as well-formed records holding
//! well-formed frames.

use std::time::Duration;

use astral_core::frame::{DecodeLimits, FrameReader};
use astral_core::unstable::RecordCipher;
use astral_core::{Config, Event, Identity, Node, Timestamp};
use bytes::BytesMut;

/// What a run saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Records the node sent.
    pub records_out: u64,
    /// Frames in them.
    pub frames_out: u64,
    /// Queries the node reported (and accepted).
    pub queries: u64,
}

/// Feeds `data` to an established stream in pieces (the first byte of
/// each piece picks its length, so record reassembly across calls is
/// exercised), answering queries like an application, advancing time, and
/// decoding everything the node sends. `Err` names the first malformed
/// record or frame.
pub fn run_stream_input(data: &[u8]) -> Result<InputStats, String> {
    let config = Config {
        recv_window: 4096,
        max_pending_queries: 8,
        max_sessions_per_peer: 8,
        // The same bytes on every machine.
        offer_aes_gcm: false,
        ..Config::default()
    };
    let mut node = Node::new(Identity::from_seed([1; 32]), config, 1)
        .map_err(|e| format!("configuration: {e}"))?;
    let peer = Identity::from_seed([2; 32]).node_id();
    let mut now = Timestamp::ZERO;
    let stream = node
        .insert_established_for_fuzzing(now, peer, 7)
        .ok_or("no stream to a distinct peer")?;
    let mut cipher = RecordCipher::insecure_for_fuzzing();
    let mut out = BytesMut::new();
    let mut stats = InputStats::default();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) * 7 + 1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        node.handle_input(now, stream, piece);
        while let Some(ev) = node.poll_event() {
            if let Event::Query { session, .. } = ev {
                stats.queries += 1;
                let _ = node.accept_query(now, session);
                if let Some(mut s) = node.session(session) {
                    let _ = s.write(b"reply");
                }
            }
        }
        node.poll_transmit(now, stream, &mut out, 1 << 20);
        decode_output(&mut cipher, &mut out, &mut stats)?;
        now += Duration::from_millis(u64::from(piece[0]));
        node.handle_timeout(now);
        node.poll_transmit(now, stream, &mut out, 1 << 20);
        decode_output(&mut cipher, &mut out, &mut stats)?;
    }
    if !out.is_empty() {
        return Err(format!("{} bytes of a partial record left over", out.len()));
    }
    Ok(stats)
}

/// Takes every whole record off `out` and decodes its frames.
fn decode_output(
    cipher: &mut RecordCipher,
    out: &mut BytesMut,
    stats: &mut InputStats,
) -> Result<(), String> {
    loop {
        let mut plain = BytesMut::new();
        match cipher.open_record(out, &mut plain) {
            Ok(true) => {
                stats.records_out += 1;
                for frame in FrameReader::new(plain.freeze(), DecodeLimits::default()) {
                    frame.map_err(|e| format!("the node sent a malformed frame: {e}"))?;
                    stats.frames_out += 1;
                }
            }
            Ok(false) => return Ok(()),
            Err(e) => return Err(format!("the node sent a malformed record: {e}")),
        }
    }
}
