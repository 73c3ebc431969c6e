//! astral-sim: a deterministic network simulator for astral-core.
//!
//! Nodes are real [`astral_core::Node`]s; links are simulated transports
//! built from two [`Netem`] paths (latency, order-preserving jitter,
//! bandwidth, a transport buffer, partitions, one-way silence, changes over
//! time, presets from LAN to Tor-like); time is virtual and jumps to the
//! next thing that happens (a delivery, a timer, a scheduled action). A
//! built-in workload opens sessions whose bytes follow a per-direction
//! pseudo-random pattern, so the oracle can check every byte received for
//! exactly-once, in-order delivery without storing payloads.
//!
//! Every scripted [`Action`] records its outcome ([`Sim::outcomes`]) and
//! feeds the [`Coverage`] counters, so a randomised suite can assert that
//! it really migrated, drained and killed. The oracle checks exactness
//! ([`Sim::check`]) and, after the script, that the nodes settled
//! ([`Sim::check_converged`], [`Sim::settle_and_check`]).
//!
//! Same seed and same script, same trace hash on every machine: see
//! [`Sim::trace_hash`].
//!
//! ```
//! use std::time::Duration;
//! use astral_sim::{Action, FlowSpec, LinkConfig, Sim};
//! let mut sim = Sim::new(7, 2, astral_core::Config::default());
//! sim.link(0, 1, LinkConfig::default());
//! sim.link(0, 1, LinkConfig::lan());
//! sim.open_flows(&[FlowSpec::new(0, 1, 10_000, 5_000)]);
//! sim.at(Sim::t(Duration::from_millis(2)), Action::Kill(0));
//! sim.run_until_done(Duration::from_secs(60));
//! sim.check().unwrap();
//! assert_eq!(sim.coverage.kills, 1);
//! ```

mod action;
mod coverage;
mod link;
mod netem;
mod oracle;
mod sim;
mod trace;
mod workload;

pub use action::{Action, ActionError, ActionRecord};
pub use coverage::Coverage;
pub use link::Link;
pub use netem::{Delivery, Direction, LinkChange, LinkConfig, Netem};
pub use sim::{Sim, DUPLICATE_QUERY};
pub use trace::TraceHasher;
pub use workload::{pattern_byte, Flow, FlowSpec, HalfFlow};

pub mod explore;
pub mod fuzzing;

/// A hand-driven peer that speaks the wire protocol frame by frame, for
/// tests that need a misbehaving or scripted counterpart: it completes a
/// real Noise handshake with a [`Node`] and then sends whatever frames the
/// test chooses.
pub mod raw {
    use astral_core::frame::{DecodeLimits, Frame, FrameReader};
    use astral_core::noise::Features;
    use astral_core::unstable::{Handshake, RecordCipher};
    use astral_core::{Identity, Node, Source, StreamId, Timestamp};
    use bytes::BytesMut;

    /// A dialer driven message by message against a node that accepts
    /// (`accept_from` with a chosen source), for admission tests: it can
    /// stall after part of message 1, after message 1, or finish.
    pub struct RawDialer {
        /// The dialer's identity.
        pub identity: Identity,
        /// The node-side stream handle.
        pub stream: StreamId,
        hs: Handshake,
        /// Message 1, framed, until it is sent.
        msg1: BytesMut,
        sent: usize,
        from_node: BytesMut,
    }

    /// Where a [`RawDialer`] is in its handshake.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum DialerState {
        /// Message 1 not (entirely) sent.
        Sending,
        /// Waiting for message 2.
        AwaitingMessage2,
        /// Message 3 sent: the dialer's side is complete.
        Complete,
    }

    impl RawDialer {
        /// Makes the node accept a transport from `source` for a dialer
        /// with identity `identity` (nothing sent yet). `None` if the node
        /// refused the transport.
        pub fn accept(
            node: &mut Node,
            now: Timestamp,
            identity: Identity,
            source: Option<Source>,
        ) -> Option<RawDialer> {
            let seed = identity.node_id().0;
            let mut hs = Handshake::initiator(&identity, node.local_id(), Features::ALL, 7, seed)
                .expect("initiator");
            let mut msg1 = BytesMut::new();
            hs.poll_output(&mut msg1).expect("message 1");
            let stream = node.accept_from(now, source).ok()?;
            Some(RawDialer {
                identity,
                stream,
                hs,
                msg1,
                sent: 0,
                from_node: BytesMut::new(),
            })
        }

        /// Sends the next `n` bytes of message 1 (all that is left at most).
        pub fn send_msg1_part(&mut self, node: &mut Node, now: Timestamp, n: usize) {
            let end = (self.sent + n).min(self.msg1.len());
            node.handle_input(now, self.stream, &self.msg1[self.sent..end]);
            self.sent = end;
        }

        /// Sends what is left of message 1.
        pub fn send_msg1(&mut self, node: &mut Node, now: Timestamp) {
            self.send_msg1_part(node, now, usize::MAX);
        }

        /// Pulls what the node has for this stream and answers message 2
        /// with message 3 once it came.
        pub fn step(&mut self, node: &mut Node, now: Timestamp) -> DialerState {
            if self.sent < self.msg1.len() {
                return DialerState::Sending;
            }
            if self.hs.is_complete() {
                return DialerState::Complete;
            }
            node.poll_transmit(now, self.stream, &mut self.from_node, usize::MAX);
            if self.from_node.is_empty() {
                return DialerState::AwaitingMessage2;
            }
            self.hs
                .handle_input(&mut self.from_node)
                .expect("message 2 from the node");
            let mut msg3 = BytesMut::new();
            self.hs.poll_output(&mut msg3).expect("message 3");
            if !msg3.is_empty() {
                node.handle_input(now, self.stream, &msg3);
            }
            if self.hs.is_complete() {
                DialerState::Complete
            } else {
                DialerState::AwaitingMessage2
            }
        }
    }

    /// A raw peer connected to one node over one stream.
    pub struct RawPeer {
        /// The raw peer's identity.
        pub identity: Identity,
        /// The node-side stream handle.
        pub stream: StreamId,
        /// The stream's wire id.
        pub wire: u64,
        cipher: RecordCipher,
        rx: BytesMut,
    }

    impl RawPeer {
        /// Dials `node` (which accepts) and completes the handshake.
        pub fn connect(node: &mut Node, now: Timestamp, seed: u8) -> RawPeer {
            let identity = Identity::from_seed([seed; 32]);
            let mut hs = Handshake::initiator(
                &identity,
                node.local_id(),
                Features::ALL,
                u64::from(seed),
                [seed; 32],
            )
            .expect("initiator");
            let stream = node.accept(now).expect("accept");
            let mut to_node = BytesMut::new();
            let mut from_node = BytesMut::new();
            for _ in 0..4 {
                to_node.clear();
                hs.poll_output(&mut to_node).expect("handshake output");
                if !to_node.is_empty() {
                    node.handle_input(now, stream, &to_node);
                }
                if hs.is_complete() {
                    break;
                }
                node.poll_transmit(now, stream, &mut from_node, usize::MAX);
                hs.handle_input(&mut from_node).expect("handshake input");
            }
            let est = hs.into_established().expect("established");
            RawPeer {
                identity,
                stream,
                wire: est.stream_id,
                cipher: est.cipher,
                rx: from_node,
            }
        }

        /// Sends `frames` in one record.
        pub fn send(&mut self, node: &mut Node, now: Timestamp, frames: &[Frame]) {
            let mut plain = Vec::new();
            for f in frames {
                f.encode(&mut plain).expect("encodable");
            }
            let mut out = BytesMut::new();
            self.cipher.seal_record(&plain, &mut out).expect("seal");
            node.handle_input(now, self.stream, &out);
        }

        /// Sends raw bytes as the transport (e.g. a forged record).
        pub fn send_raw(&mut self, node: &mut Node, now: Timestamp, bytes: &[u8]) {
            node.handle_input(now, self.stream, bytes);
        }

        /// Everything the node has for us, decoded.
        pub fn recv(&mut self, node: &mut Node, now: Timestamp) -> Vec<Frame> {
            node.poll_transmit(now, self.stream, &mut self.rx, usize::MAX);
            let mut frames = Vec::new();
            loop {
                let mut plain = BytesMut::new();
                match self.cipher.open_record(&mut self.rx, &mut plain) {
                    Ok(true) => {
                        for f in FrameReader::new(plain.freeze(), DecodeLimits::default()) {
                            frames.push(f.expect("node sends valid frames"));
                        }
                    }
                    Ok(false) => break,
                    Err(e) => panic!("node sent a bad record: {e}"),
                }
            }
            frames
        }
    }
}
