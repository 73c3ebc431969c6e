//! Record-layer cost: `RecordCipher` seal+open of full 64 KiB records against
//! snow's `TransportState::write_message` + `read_message` called directly on
//! 65519-byte payloads with the same cipher (ChaChaPoly). Throughput is in
//! plaintext bytes per second; the difference is what the record layer
//! (framing, buffer management) costs.
//!
//! Run: `cargo bench -p astral-core --bench noise -- --measurement-time 2`

use astral_core::identity::Identity;
use astral_core::noise::{Features, Handshake, RecordCipher, SeededResolver, PATTERN, PROLOGUE};
use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const PAYLOAD: usize = RecordCipher::MAX_PLAINTEXT;

fn record_ciphers() -> (RecordCipher, RecordCipher) {
    let a = Identity::from_seed([1; 32]);
    let b = Identity::from_seed([2; 32]);
    let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, [3; 32]).unwrap();
    let mut r = Handshake::responder(&b, 1, Features::ALL, [4; 32]).unwrap();
    let mut wire = BytesMut::new();
    i.poll_output(&mut wire).unwrap();
    r.handle_input(&mut wire).unwrap();
    r.poll_output(&mut wire).unwrap();
    i.handle_input(&mut wire).unwrap();
    i.poll_output(&mut wire).unwrap();
    r.handle_input(&mut wire).unwrap();
    (
        i.into_established().unwrap().cipher,
        r.into_established().unwrap().cipher,
    )
}

fn raw_transports() -> (snow::TransportState, snow::TransportState) {
    let a = Identity::from_seed([1; 32]);
    let b = Identity::from_seed([2; 32]);
    let (ka, kb) = (a.private_bytes(), b.private_bytes());
    let builder = |seed| {
        snow::Builder::with_resolver(
            PATTERN.parse().unwrap(),
            Box::new(SeededResolver::new(seed)),
        )
    };
    let mut i = builder([3; 32])
        .local_private_key(&ka)
        .unwrap()
        .remote_public_key(b.node_id().as_bytes())
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut r = builder([4; 32])
        .local_private_key(&kb)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut m, mut p) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n], &mut p).unwrap();
    let n = r.write_message(&[], &mut m).unwrap();
    i.read_message(&m[..n], &mut p).unwrap();
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n], &mut p).unwrap();
    (
        i.into_transport_mode().unwrap(),
        r.into_transport_mode().unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    let mut g = c.benchmark_group("seal_open_65519");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));

    g.bench_function("record_cipher", |bench| {
        let (mut tx, mut rx) = record_ciphers();
        let mut wire = BytesMut::with_capacity(2 * (2 + RecordCipher::MAX_RECORD));
        let mut plain = BytesMut::with_capacity(2 * PAYLOAD);
        bench.iter(|| {
            tx.seal_record(black_box(&payload), &mut wire).unwrap();
            assert!(rx.open_record(&mut wire, &mut plain).unwrap());
            black_box(&plain[..]);
            plain.clear();
        });
    });

    g.bench_function("snow_transport_direct", |bench| {
        let (mut tx, mut rx) = raw_transports();
        let mut msg = vec![0u8; RecordCipher::MAX_RECORD];
        let mut out = vec![0u8; PAYLOAD];
        bench.iter(|| {
            let n = tx.write_message(black_box(&payload), &mut msg).unwrap();
            let m = rx.read_message(&msg[..n], &mut out).unwrap();
            black_box(&out[..m]);
        });
    });

    // The alternative buffer strategy that was measured against zero-filled
    // `resize`: encrypt/decrypt into reused scratch buffers, then copy.
    g.bench_function("scratch_then_copy", |bench| {
        let (mut tx, mut rx) = raw_transports();
        let mut scratch_tx = vec![0u8; RecordCipher::MAX_RECORD];
        let mut scratch_rx = vec![0u8; RecordCipher::MAX_RECORD];
        let mut wire = BytesMut::with_capacity(2 * (2 + RecordCipher::MAX_RECORD));
        let mut plain = BytesMut::with_capacity(2 * PAYLOAD);
        bench.iter(|| {
            let n = tx
                .write_message(black_box(&payload), &mut scratch_tx)
                .unwrap();
            wire.extend_from_slice(&(n as u16).to_be_bytes());
            wire.extend_from_slice(&scratch_tx[..n]);
            let len = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
            let m = rx.read_message(&wire[2..2 + len], &mut scratch_rx).unwrap();
            plain.extend_from_slice(&scratch_rx[..m]);
            bytes::Buf::advance(&mut wire, 2 + len);
            black_box(&plain[..]);
            plain.clear();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
