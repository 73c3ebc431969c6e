//! The detached record layer: a driver that seals and opens records itself
//! (outside the lock it keeps around the engine) puts the same bytes on the
//! wire as an engine that seals them, and misuse closes the stream instead
//! of leaking plaintext or reading ciphertext as frames.

use bytes::BytesMut;

use crate::driver::{RecordOpener, RecordSealer, RxBuffer, UnsealedRecords};
use crate::event::{Event, StreamCloseReason};
use crate::noise::NoiseError;
use crate::{Config, Endpoint, Identity, Node, PeerEngine, SessionId, StreamId, Timestamp};

const SEED_A: [u8; 32] = [11; 32];

fn ids() -> (Identity, Identity) {
    (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]))
}

fn config() -> Config {
    Config {
        recv_window: 64 * 1024,
        send_buffer: 64 * 1024,
        ..Config::default()
    }
}

/// Side `a` as a driver with per-part locks runs it: an endpoint, the
/// peer's engine, and the stream's keys in the driver's hands.
struct DetachedSide {
    endpoint: Endpoint,
    engine: Option<PeerEngine>,
    stream: StreamId,
    keys: Option<(RecordSealer, RecordOpener)>,
    rx: RxBuffer,
    events: Vec<Event>,
}

impl DetachedSide {
    fn new(now: Timestamp, peer: crate::NodeId) -> DetachedSide {
        let (a, _) = ids();
        let mut endpoint = Endpoint::new(a, config(), SEED_A).unwrap();
        let stream = endpoint.connect(now, peer).unwrap();
        DetachedSide {
            endpoint,
            engine: None,
            stream,
            keys: None,
            rx: RxBuffer::default(),
            events: Vec::new(),
        }
    }

    /// Moves a completed handshake into the engine, keys into the driver.
    fn adopt(&mut self, now: Timestamp) {
        while let Some(mut ns) = self.endpoint.poll_new_stream() {
            let layer = ns.detach_record_layer().unwrap();
            assert!(ns.detach_record_layer().is_none(), "keys leave once");
            if let Some(e) = ns.take_created() {
                self.engine = Some(e);
            }
            let engine = self.engine.as_mut().unwrap();
            engine.add_stream(now, ns);
            let mut opener = layer.opener;
            self.rx.buf_mut().extend_from_slice(&layer.pending_input);
            let opened = self.rx.open(&mut opener);
            engine.handle_records(now, self.stream, opened.records);
            assert!(opened.error.is_none());
            self.keys = Some((layer.sealer, opener));
        }
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(e) = self.endpoint.poll_event() {
            self.events.push(e);
        }
        if let Some(engine) = self.engine.as_mut() {
            while let Some(e) = engine.poll_event() {
                self.events.push(e);
            }
        }
    }

    fn transmit(&mut self, now: Timestamp, out: &mut BytesMut) {
        self.endpoint
            .poll_transmit(now, self.stream, out, usize::MAX);
        self.adopt(now);
        if let (Some(engine), Some((sealer, _))) = (self.engine.as_mut(), self.keys.as_mut()) {
            let mut unsealed = UnsealedRecords::with_buffer(BytesMut::new());
            engine.poll_transmit_unsealed(now, self.stream, &mut unsealed, usize::MAX);
            out.extend_from_slice(&sealer.seal(unsealed).unwrap());
        }
        self.collect();
    }

    fn input(&mut self, now: Timestamp, data: &[u8]) {
        // Through the read rule, in small reads, as a socket would.
        let mut data = data;
        while !data.is_empty() {
            let n = self.rx.next_read().min(data.len()).min(1000);
            self.rx.buf_mut().extend_from_slice(&data[..n]);
            data = &data[n..];
            match (self.engine.as_mut(), self.keys.as_mut()) {
                (Some(engine), Some((_, opener))) => {
                    let opened = self.rx.open(opener);
                    if !opened.records.is_empty() {
                        engine.handle_records(now, self.stream, opened.records);
                    }
                    if let Some(e) = opened.error {
                        engine.handle_record_error(now, self.stream, e);
                    }
                }
                _ => {
                    let whole = self.rx.take_whole();
                    self.endpoint.handle_input_owned(now, self.stream, whole);
                    self.adopt(now);
                }
            }
        }
        self.collect();
    }
}

/// What `a` sent on the wire and what `b` read, for one run: `a` dials,
/// opens a session, writes `len` bytes and finishes; `b` reads them.
fn run(detached: bool, len: usize) -> (Vec<u8>, Vec<u8>) {
    let (ia, ib) = ids();
    let now = Timestamp::ZERO;
    let mut b = Node::new(ib, config(), 2).unwrap();
    let sb = b.accept(now).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 977) as u8).collect();
    let mut wire_a = Vec::new();
    let mut read_b = Vec::new();
    let mut side = (!detached).then(|| Node::with_seed_bytes(ia, config(), SEED_A).unwrap());
    let mut det = detached.then(|| DetachedSide::new(now, b.local_id()));
    let sa = side.as_mut().map(|n| n.connect(now, b.local_id()).unwrap());
    let mut session: Option<SessionId> = None;
    let mut written = 0;
    let mut peer_session = None;
    for _ in 0..2000 {
        // a's application: open once both sides are up, then write.
        let up = match (&side, &det) {
            (Some(n), _) => n.streams().any(|s| s.confirmed),
            (_, Some(d)) => d
                .engine
                .as_ref()
                .is_some_and(|e| e.streams().any(|s| s.confirmed)),
            _ => unreachable!(),
        };
        if up && session.is_none() {
            session = Some(match (&mut side, &mut det) {
                (Some(n), _) => n.open_session(now, b.local_id(), "q").unwrap(),
                (_, Some(d)) => d.engine.as_mut().unwrap().open_session(now, "q").unwrap(),
                _ => unreachable!(),
            });
        }
        if let Some(s) = session {
            let h = match (&mut side, &mut det) {
                (Some(n), _) => n.session(s),
                (_, Some(d)) => d.engine.as_mut().unwrap().session(s),
                _ => unreachable!(),
            };
            if let Some(mut h) = h {
                if written < data.len() {
                    written += h.write(&data[written..]).unwrap_or(0);
                    if written == data.len() {
                        h.finish();
                    }
                }
            }
        }
        let mut out = BytesMut::new();
        match (&mut side, &mut det) {
            (Some(n), _) => {
                n.poll_transmit(now, sa.unwrap(), &mut out, usize::MAX);
            }
            (_, Some(d)) => d.transmit(now, &mut out),
            _ => unreachable!(),
        }
        wire_a.extend_from_slice(&out);
        b.handle_input(now, sb, &out);
        while let Some(e) = b.poll_event() {
            if let Event::Query { session, .. } = e {
                b.accept_query(now, session).unwrap();
                peer_session = Some(session);
            }
        }
        if let Some(ps) = peer_session {
            let mut buf = [0u8; 8192];
            while let Some(mut h) = b.session(ps) {
                match h.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read_b.extend_from_slice(&buf[..n]),
                }
            }
        }
        let mut back = BytesMut::new();
        b.poll_transmit(now, sb, &mut back, usize::MAX);
        match (&mut side, &mut det) {
            (Some(n), _) => n.handle_input(now, sa.unwrap(), &back),
            (_, Some(d)) => d.input(now, &back),
            _ => unreachable!(),
        }
        if read_b.len() == data.len() && out.is_empty() && back.is_empty() {
            break;
        }
    }
    assert_eq!(read_b, data, "every byte arrives (detached: {detached})");
    (wire_a, read_b)
}

#[test]
fn detached_keys_put_the_same_bytes_on_the_wire() {
    let (sealed_by_engine, _) = run(false, 300_000);
    let (sealed_by_driver, _) = run(true, 300_000);
    assert!(sealed_by_engine.len() > 300_000);
    assert_eq!(sealed_by_engine, sealed_by_driver);
}

/// The first stream of a detached side, up and confirmed, and its peer.
fn detached_pair() -> (DetachedSide, Node, StreamId) {
    let (_, ib) = ids();
    let now = Timestamp::ZERO;
    let mut b = Node::new(ib, config(), 2).unwrap();
    let sb = b.accept(now).unwrap();
    let mut d = DetachedSide::new(now, b.local_id());
    for _ in 0..8 {
        let mut out = BytesMut::new();
        d.transmit(now, &mut out);
        b.handle_input(now, sb, &out);
        let mut back = BytesMut::new();
        b.poll_transmit(now, sb, &mut back, usize::MAX);
        d.input(now, &back);
    }
    assert!(d.engine.as_ref().unwrap().has_stream(d.stream));
    (d, b, sb)
}

fn misuse_reason(d: &DetachedSide) -> Option<&'static str> {
    d.events.iter().find_map(|e| match e {
        Event::StreamDown {
            reason: StreamCloseReason::BadRecord(NoiseError::Misuse(m)),
            ..
        } => Some(*m),
        _ => None,
    })
}

#[test]
fn ciphertext_for_a_detached_stream_closes_it() {
    let (mut d, _b, _) = detached_pair();
    let now = Timestamp::ZERO;
    let stream = d.stream;
    let engine = d.engine.as_mut().unwrap();
    engine.handle_input(now, stream, &[0, 20, 1, 2, 3]);
    assert!(!engine.has_stream(stream));
    d.collect();
    assert!(misuse_reason(&d).is_some_and(|m| m.contains("ciphertext")));
}

#[test]
fn sealed_pull_on_a_detached_stream_closes_it_and_sends_nothing() {
    let (mut d, _b, _) = detached_pair();
    let now = Timestamp::ZERO;
    let stream = d.stream;
    let engine = d.engine.as_mut().unwrap();
    let s = engine.open_session(now, "q").unwrap();
    engine.session(s).unwrap().write(b"secret").unwrap();
    let mut out = BytesMut::new();
    assert_eq!(engine.poll_transmit(now, stream, &mut out, usize::MAX), 0);
    assert!(out.is_empty(), "no unsealed plaintext towards a transport");
    assert!(!engine.has_stream(stream));
    d.collect();
    assert!(misuse_reason(&d).is_some_and(|m| m.contains("poll_transmit")));
}

#[test]
fn a_forged_record_closes_the_stream_after_the_good_ones() {
    let (mut d, mut b, sb) = detached_pair();
    let now = Timestamp::ZERO;
    // Two pongs' worth of records from b, the second corrupted.
    let mut wire = BytesMut::new();
    for _ in 0..2 {
        let s = b.open_session(now, d.endpoint.local_id(), "x").unwrap();
        let _ = s;
        b.poll_transmit(now, sb, &mut wire, usize::MAX);
    }
    let first = 2 + usize::from(u16::from_be_bytes([wire[0], wire[1]]));
    assert!(wire.len() > first + 18, "two records");
    let last = wire.len() - 1;
    wire[last] ^= 1;
    d.input(now, &wire);
    // The first record's query arrived; then the forged one closed the stream.
    assert!(d.events.iter().any(|e| matches!(e, Event::Query { .. })));
    assert!(d.events.iter().any(|e| matches!(
        e,
        Event::StreamDown {
            reason: StreamCloseReason::BadRecord(NoiseError::Decrypt),
            ..
        }
    )));
}
