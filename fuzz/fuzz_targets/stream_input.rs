//! Arbitrary bytes fed to an established stream's input (records use the
//! no-security cipher of the `fuzzing` feature, so the fuzzer reaches the
//! frame and session logic). The node must never panic, whatever arrives,
//! and must keep producing well-formed output.
#![no_main]

use astral_core::{Config, Identity, Node, Timestamp};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let config = Config { recv_window: 4096, max_pending_queries: 8, max_sessions_per_peer: 8, ..Config::default() };
    let mut node = Node::new(config, Identity::from_seed([1; 32]), 1);
    let peer = Identity::from_seed([2; 32]).node_id();
    let mut now = Timestamp::ZERO;
    let stream = node.insert_established_for_fuzzing(now, peer, 7);
    let mut out = BytesMut::new();
    // Feed in pieces so record reassembly across calls is exercised; the
    // first byte of each piece picks its length.
    let mut rest = data;
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) * 7 + 1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        node.handle_input(now, stream, piece);
        while let Some(ev) = node.poll_event() {
            if let astral_core::Event::Query { session, .. } = ev {
                let _ = node.accept_query(now, session);
                if let Some(mut s) = node.session(session) {
                    let _ = s.write(b"reply");
                }
            }
        }
        out.clear();
        node.poll_transmit(now, stream, &mut out, 1 << 20);
        now += Duration::from_millis(u64::from(piece[0]));
        node.handle_timeout(now);
    }
});
