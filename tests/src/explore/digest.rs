//! The state digest that lets the explorer recognise a state it has seen.
//!
//! Built only from what the engine makes public: every stream and session
//! snapshot of both nodes (states, bindings and all their counters), each
//! node's next deadline, every byte in flight on every link direction, the
//! workload's progress, and virtual time. Two states with equal digests are
//! treated as one; that is exact for everything listed, and an
//! approximation for engine state that no snapshot shows (migration epochs,
//! pending-control flags, the closed sessions a node remembers, RNG state).
//! Counters such as frames and bytes in and out, which differ whenever
//! histories differ in what was sent, make a false merge unlikely but not
//! impossible. The core will offer a precise digest under its `fuzzing`
//! feature; [`digest`] is the one function to switch to it.

use std::fmt::Write as _;
use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use super::world::{Packet, World};

/// 128-bit digest of the world's state (fixed keys: the same state gives the
/// same digest on every machine and run).
pub fn digest(world: &World) -> u128 {
    let mut h = SipHasher13::new_with_keys(0x6173_7472_616c, 0x6578_706c_6f72);
    let mut text = String::with_capacity(4096);
    // Debug renderings cover every public field, including ones added later.
    let _ = write!(text, "t={};", world.now.as_nanos());
    for node in &world.nodes {
        let _ = write!(
            text,
            "next={:?};",
            node.poll_timeout().map(|t| t.as_nanos())
        );
        let mut streams: Vec<_> = node.streams().collect();
        streams.sort_by_key(|s| s.id);
        for s in &streams {
            let _ = write!(text, "{s:?};");
        }
        let mut sessions: Vec<_> = node.sessions().collect();
        sessions.sort_by_key(|s| s.id);
        for s in &sessions {
            let _ = write!(text, "{s:?};");
        }
    }
    for f in &world.flows {
        let _ = write!(
            text,
            "{:?}{:?}{:?}{}{}{:?};",
            f.session, f.half, f.closed, f.fin_held, f.reset, f.read_closed
        );
    }
    let _ = write!(
        text,
        "outage={:?},{:?},{:?},{:?},{:?},{:?},{};",
        world.outage,
        world.held,
        world.disconnected,
        world.blind,
        world.late,
        world.disconnected_since().map(|t| t.as_nanos()),
        world.deaths
    );
    h.write(text.as_bytes());
    for l in &world.links {
        h.write(format!("link {} {:?}", l.dialer, l.end).as_bytes());
        for (to, q) in l.queue.iter().enumerate() {
            h.write_usize(to);
            h.write_usize(q.len());
            for p in q {
                match p {
                    Packet::Record(b) => {
                        h.write_usize(b.len());
                        h.write(b);
                    }
                    Packet::Close => h.write_u8(0xC1),
                }
            }
        }
    }
    h.finish128().as_u128()
}
