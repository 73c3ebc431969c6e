//! Record-layer cost: `RecordCipher` seal+open of full 64 KiB records against
//! snow's `TransportState::write_message` + `read_message` called directly on
//! 65519-byte payloads with the same cipher (ChaChaPoly). Throughput is in
//! plaintext bytes per second; the difference is what the record layer
//! (framing, buffer management) costs.
//!
//! Run: `cargo bench -p astral-core --bench noise -- --measurement-time 2`

use astral_core::identity::Identity;
use astral_core::noise::{Features, PATTERN, PROLOGUE};
use astral_core::unstable::{Handshake, RecordCipher, SeededResolver};
use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const PAYLOAD: usize = RecordCipher::MAX_PLAINTEXT;

fn record_ciphers(features: Features) -> (RecordCipher, RecordCipher) {
    let a = Identity::from_seed([1; 32]);
    let b = Identity::from_seed([2; 32]);
    let mut i = Handshake::initiator(&a, b.node_id(), features, 1, [3; 32]).unwrap();
    let mut r = Handshake::responder(&b, 1, features, 2, [4; 32]).unwrap();
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

fn raw_transports(pattern: &str) -> (snow::TransportState, snow::TransportState) {
    let a = Identity::from_seed([1; 32]);
    let b = Identity::from_seed([2; 32]);
    let (ka, kb) = (a.private_bytes(), b.private_bytes());
    let builder = |seed| {
        snow::Builder::with_resolver(
            pattern.parse().unwrap(),
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

    // What the engine does: frames written after a record header, sealed
    // in place; the record opened in place inside the input buffer.
    for (name, features) in [
        (
            "record_cipher_in_place_chachapoly",
            Features::EXTENDED_FRAMES,
        ),
        ("record_cipher_in_place_aes256gcm", Features::ALL),
    ] {
        g.bench_function(name, |bench| {
            let (mut tx, mut rx) = record_ciphers(features);
            let mut wire = BytesMut::with_capacity(4 * (2 + RecordCipher::MAX_RECORD));
            bench.iter(|| {
                let at = RecordCipher::begin_record(&mut wire);
                wire.extend_from_slice(black_box(&payload));
                tx.seal_in_place(&mut wire, at).unwrap();
                let plain = rx.open_in_place(&mut wire).unwrap().unwrap();
                black_box(&plain[..]);
                drop(plain);
                wire.clear();
            });
        });
    }

    // snow's own API with the same (ring) cipher implementations.
    for (name, pattern) in [
        ("snow_transport_direct_chachapoly", PATTERN),
        (
            "snow_transport_direct_aesgcm",
            "Noise_XK_25519_AESGCM_BLAKE2s",
        ),
    ] {
        g.bench_function(name, |bench| {
            let (mut tx, mut rx) = raw_transports(pattern);
            let mut msg = vec![0u8; RecordCipher::MAX_RECORD];
            let mut out = vec![0u8; PAYLOAD];
            bench.iter(|| {
                let n = tx.write_message(black_box(&payload), &mut msg).unwrap();
                let m = rx.read_message(&msg[..n], &mut out).unwrap();
                black_box(&out[..m]);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
