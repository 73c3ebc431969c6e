//! Tests of the handshake and the record layer.

use bytes::{BufMut, BytesMut};
use snow::params::NoiseParams;

use super::handshake::{MSG2_PAYLOAD, MSG3_PAYLOAD};
use super::*;
use crate::identity::Identity;
use proptest::prelude::*;
use snow::resolvers::CryptoResolver;

/// Our in-place record cipher speaks standard Noise transport messages:
/// snow's own TransportState reads what we write and the reverse, for
/// both cipher suites.
#[test]
fn records_interoperate_with_snow_transport() {
    for (name, aes) in [
        ("Noise_NN_25519_ChaChaPoly_BLAKE2s", false),
        ("Noise_NN_25519_AESGCM_BLAKE2s", true),
    ] {
        let params: NoiseParams = name.parse().unwrap();
        let mut i =
            snow::Builder::with_resolver(params.clone(), Box::new(SeededResolver::new([1; 32])))
                .build_initiator()
                .unwrap();
        let mut r = snow::Builder::with_resolver(params, Box::new(SeededResolver::new([2; 32])))
            .build_responder()
            .unwrap();
        let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
        let n = i.write_message(&[], &mut m).unwrap();
        r.read_message(&m[..n], &mut p).unwrap();
        let n = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        let (k1, k2) = i.dangerously_get_raw_split();
        let mut ours = RecordCipher::from_keys(&k1, &k2, aes).unwrap();
        assert_eq!(ours.is_aes_gcm(), aes);
        let mut theirs = r.into_transport_mode().unwrap();
        for round in 0..3u8 {
            let msg = vec![round; 1000 + usize::from(round)];
            let mut out = BytesMut::new();
            ours.seal_record(&msg, &mut out).unwrap();
            let mut plain = vec![0u8; 2000];
            let n = theirs.read_message(&out[2..], &mut plain).unwrap();
            assert_eq!(&plain[..n], &msg[..], "{name}: snow reads ours");
            let mut ct = vec![0u8; 2000];
            let n = theirs.write_message(&msg, &mut ct).unwrap();
            let mut input = BytesMut::new();
            input.put_u16(n as u16);
            input.extend_from_slice(&ct[..n]);
            let got = ours.open_in_place(&mut input).unwrap().unwrap();
            assert_eq!(&got[..], &msg[..], "{name}: we read snow's");
            assert!(input.is_empty());
        }
    }
}

#[test]
fn aes_gcm_is_negotiated_only_when_both_offer_it() {
    for (a, b, want) in [
        (Features::ALL, Features::ALL, true),
        (Features::ALL, Features::EXTENDED_FRAMES, false),
        (Features::EXTENDED_FRAMES, Features::ALL, false),
    ] {
        let (mut i, mut r) = pair(a, b, [3; 32], [4; 32]);
        run(&mut i, &mut r, 1000);
        let (mut ei, mut er) = (i.into_established().unwrap(), r.into_established().unwrap());
        assert_eq!(ei.cipher.is_aes_gcm(), want);
        assert_eq!(er.cipher.is_aes_gcm(), want);
        let mut out = BytesMut::new();
        ei.cipher.seal_record(b"hello", &mut out).unwrap();
        let mut plain = BytesMut::new();
        assert!(er.cipher.open_record(&mut out, &mut plain).unwrap());
        assert_eq!(&plain[..], b"hello");
    }
}

fn ids() -> (Identity, Identity) {
    (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]))
}

fn pair(
    ifeat: Features,
    rfeat: Features,
    iseed: [u8; 32],
    rseed: [u8; 32],
) -> (Handshake, Handshake) {
    let (a, b) = ids();
    let i = Handshake::initiator(&a, b.node_id(), ifeat, 0xA1, iseed).unwrap();
    let r = Handshake::responder(&b, 42, rfeat, 0xB2, rseed).unwrap();
    (i, r)
}

/// Runs the handshake, delivering bytes in chunks of `chunk` bytes.
/// Returns every byte each side sent.
fn run(i: &mut Handshake, r: &mut Handshake, chunk: usize) -> (Vec<u8>, Vec<u8>) {
    let (mut i_sent, mut r_sent) = (Vec::new(), Vec::new());
    let (mut to_r, mut to_i) = (BytesMut::new(), BytesMut::new());
    let (mut r_in, mut i_in) = (BytesMut::new(), BytesMut::new());
    for _ in 0..1000 {
        let mut out = BytesMut::new();
        while i.poll_output(&mut out).unwrap() {}
        i_sent.extend_from_slice(&out);
        to_r.extend_from_slice(&out);
        let mut out = BytesMut::new();
        while r.poll_output(&mut out).unwrap() {}
        r_sent.extend_from_slice(&out);
        to_i.extend_from_slice(&out);
        let n = chunk.min(to_r.len());
        r_in.extend_from_slice(&to_r.split_to(n));
        r.handle_input(&mut r_in).unwrap();
        let n = chunk.min(to_i.len());
        i_in.extend_from_slice(&to_i.split_to(n));
        i.handle_input(&mut i_in).unwrap();
        if i.is_complete() && r.is_complete() && to_r.is_empty() && to_i.is_empty() {
            assert!(r_in.is_empty() && i_in.is_empty());
            return (i_sent, r_sent);
        }
    }
    panic!("handshake did not complete");
}

fn established(chunk: usize) -> (Established, Established) {
    let (mut i, mut r) = pair(Features(0b1011), Features(0b0110 | 1), [3; 32], [4; 32]);
    run(&mut i, &mut r, chunk);
    (i.into_established().unwrap(), r.into_established().unwrap())
}

fn records_both_ways(a: &mut RecordCipher, b: &mut RecordCipher, chunk: usize) {
    records_one_way(a, b, chunk);
    records_one_way(b, a, chunk);
}

fn records_one_way(tx: &mut RecordCipher, rx: &mut RecordCipher, chunk: usize) {
    {
        let msgs: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            Vec::new(),
            (0..=255u8).cycle().take(1000).collect(),
            vec![7; RecordCipher::MAX_PLAINTEXT],
        ];
        let mut wire = BytesMut::new();
        for m in &msgs {
            tx.seal_record(m, &mut wire).unwrap();
        }
        let expected: Vec<u8> = msgs.concat();
        let mut input = BytesMut::new();
        let mut plain = BytesMut::new();
        let mut records = 0;
        while !wire.is_empty() {
            let n = chunk.min(wire.len());
            input.extend_from_slice(&wire.split_to(n));
            while rx.open_record(&mut input, &mut plain).unwrap() {
                records += 1;
            }
        }
        assert!(input.is_empty());
        assert_eq!(records, msgs.len());
        assert_eq!(&plain[..], &expected[..]);
    }
}

#[test]
fn full_handshake_and_records() {
    let (a, b) = ids();
    let (mut ie, mut re) = established(usize::MAX);
    assert_eq!(ie.remote, b.node_id());
    assert_eq!(re.remote, a.node_id());
    assert_eq!(ie.stream_id, 42);
    assert_eq!(re.stream_id, 42);
    assert_eq!(ie.features, Features(0b0011));
    assert_eq!(re.features, Features(0b0011));
    records_both_ways(&mut ie.cipher, &mut re.cipher, usize::MAX);
}

#[test]
fn one_byte_at_a_time() {
    let (a, b) = ids();
    let (mut ie, mut re) = established(1);
    assert_eq!((ie.remote, re.remote), (b.node_id(), a.node_id()));
    assert_eq!(ie.features, re.features);
    // Small records split at every position.
    {
        let (tx, rx) = (&mut ie.cipher, &mut re.cipher);
        let mut wire = BytesMut::new();
        tx.seal_record(b"abcdefgh", &mut wire).unwrap();
        tx.seal_record(b"", &mut wire).unwrap();
        tx.seal_record(b"ijk", &mut wire).unwrap();
        let mut input = BytesMut::new();
        let mut plain = BytesMut::new();
        for &byte in wire.iter() {
            input.put_u8(byte);
            while rx.open_record(&mut input, &mut plain).unwrap() {}
        }
        assert!(input.is_empty());
        assert_eq!(&plain[..], b"abcdefghijk");
    }
    records_both_ways(&mut ie.cipher, &mut re.cipher, 4099);
}

#[test]
fn every_split_of_the_handshake_stream() {
    // Deliver the whole handshake of each side cut at every position.
    let (mut i0, mut r0) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
    let (i_bytes, r_bytes) = run(&mut i0, &mut r0, usize::MAX);
    let len1 = 2 + usize::from(u16::from_be_bytes([i_bytes[0], i_bytes[1]]));
    let (msg1, msg3) = i_bytes.split_at(len1);
    for cut in 0..=r_bytes.len() {
        let (mut i, mut r) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
        let mut out = BytesMut::new();
        assert!(i.poll_output(&mut out).unwrap());
        assert_eq!(&out[..], msg1);
        let mut rin = BytesMut::from(&out[..]);
        r.handle_input(&mut rin).unwrap();
        let mut out = BytesMut::new();
        assert!(r.poll_output(&mut out).unwrap());
        assert_eq!(&out[..], &r_bytes[..]);
        let mut iin = BytesMut::from(&out[..cut]);
        i.handle_input(&mut iin).unwrap();
        assert_eq!(iin.len(), if cut == r_bytes.len() { 0 } else { cut });
        iin.extend_from_slice(&out[cut..]);
        i.handle_input(&mut iin).unwrap();
        let mut out = BytesMut::new();
        assert!(i.poll_output(&mut out).unwrap());
        assert!(i.is_complete());
        assert!(!i.poll_output(&mut out).unwrap());
        assert_eq!(&out[..], msg3);
    }
}

#[test]
fn trailing_records_are_left_for_the_caller() {
    let (mut i, mut r) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
    let mut out = BytesMut::new();
    i.poll_output(&mut out).unwrap();
    r.handle_input(&mut out).unwrap();
    assert!(out.is_empty());
    r.poll_output(&mut out).unwrap();
    i.handle_input(&mut out).unwrap();
    assert!(!i.is_complete());
    i.poll_output(&mut out).unwrap();
    assert!(i.is_complete());
    let mut ie = i.into_established().unwrap();
    // Initiator sends msg3 and a record in one write.
    ie.cipher.seal_record(b"early", &mut out).unwrap();
    let record_len = 2 + 5 + 16;
    r.handle_input(&mut out).unwrap();
    assert!(r.is_complete());
    assert_eq!(out.len(), record_len);
    let mut re = r.into_established().unwrap();
    let mut plain = BytesMut::new();
    assert!(re.cipher.open_record(&mut out, &mut plain).unwrap());
    assert_eq!(&plain[..], b"early");
}

#[test]
fn deterministic_bytes() {
    let (mut i1, mut r1) = pair(Features::ALL, Features::ALL, [8; 32], [9; 32]);
    let (mut i2, mut r2) = pair(Features::ALL, Features::ALL, [8; 32], [9; 32]);
    let t1 = run(&mut i1, &mut r1, usize::MAX);
    let t2 = run(&mut i2, &mut r2, 3);
    assert_eq!(t1, t2);
    let (mut e1, mut e2) = (
        i1.into_established().unwrap(),
        i2.into_established().unwrap(),
    );
    let (mut w1, mut w2) = (BytesMut::new(), BytesMut::new());
    e1.cipher.seal_record(b"same", &mut w1).unwrap();
    e2.cipher.seal_record(b"same", &mut w2).unwrap();
    assert_eq!(w1, w2);

    // A different initiator seed changes both sides' later bytes.
    let (mut i3, mut r3) = pair(Features::ALL, Features::ALL, [10; 32], [9; 32]);
    let t3 = run(&mut i3, &mut r3, usize::MAX);
    assert_ne!(t1.0, t3.0);
    assert_ne!(t1.1, t3.1);
    // A different responder seed changes the responder's ephemeral.
    let (mut i4, mut r4) = pair(Features::ALL, Features::ALL, [8; 32], [11; 32]);
    let t4 = run(&mut i4, &mut r4, usize::MAX);
    assert_eq!(t1.0[..50], t4.0[..50]);
    assert_ne!(t1.1, t4.1);
}

#[test]
fn seeded_resolver_streams_differ() {
    let res = SeededResolver::new([1; 32]);
    let (mut a, mut b) = (res.resolve_rng().unwrap(), res.resolve_rng().unwrap());
    let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
    a.try_fill_bytes(&mut x).unwrap();
    b.try_fill_bytes(&mut y).unwrap();
    assert_ne!(x, y);
    let mut z = [0u8; 32];
    SeededResolver::new([1; 32])
        .resolve_rng()
        .unwrap()
        .try_fill_bytes(&mut z)
        .unwrap();
    assert_eq!(x, z);
    // Never the static key Identity::from_seed would derive from it.
    assert_ne!(
        Identity::from_seed([1; 32]).private_bytes(),
        Identity::from_private(x).private_bytes()
    );
}

#[test]
fn wrong_responder_key() {
    let (a, b) = ids();
    let impostor = Identity::from_seed([99; 32]);
    let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, 7, [1; 32]).unwrap();
    let mut r = Handshake::responder(&impostor, 1, Features::ALL, 8, [2; 32]).unwrap();
    let mut wire = BytesMut::new();
    i.poll_output(&mut wire).unwrap();
    let err = r.handle_input(&mut wire).unwrap_err();
    match &err {
        NoiseError::Handshake(msg) => {
            assert!(msg.contains("wrong public key"), "{msg}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().starts_with("message 1"), "{err}");
    // The error sticks.
    assert_eq!(r.poll_output(&mut BytesMut::new()).unwrap_err(), err);
    assert_eq!(r.handle_input(&mut BytesMut::new()).unwrap_err(), err);
    assert!(!r.is_complete());
    assert_eq!(r.into_established().unwrap_err(), err);
}

#[test]
fn forged_message_2() {
    // Someone who is not b answers a's dial with a message 2 of their own.
    let (a, b) = ids();
    let impostor = Identity::from_seed([99; 32]);
    let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, 7, [1; 32]).unwrap();
    let mut other =
        Handshake::initiator(&a, impostor.node_id(), Features::ALL, 7, [1; 32]).unwrap();
    let mut r = Handshake::responder(&impostor, 1, Features::ALL, 8, [2; 32]).unwrap();
    let mut wire = BytesMut::new();
    i.poll_output(&mut wire).unwrap();
    let mut w2 = BytesMut::new();
    other.poll_output(&mut w2).unwrap();
    r.handle_input(&mut w2).unwrap();
    r.poll_output(&mut w2).unwrap();
    match i.handle_input(&mut w2).unwrap_err() {
        NoiseError::Handshake(msg) => {
            assert!(msg.contains("not the expected identity"), "{msg}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn not_complete_and_unexpected() {
    let (mut i, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
    assert!(!r.poll_output(&mut BytesMut::new()).unwrap());
    let mut i2 = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]).0;
    assert_eq!(
        i2.handle_input(&mut BytesMut::from(&[0u8, 1, 2][..])),
        Err(NoiseError::Unexpected)
    );
    let mut wire = BytesMut::new();
    i.poll_output(&mut wire).unwrap();
    r.handle_input(&mut wire).unwrap();
    assert_eq!(
        pair(Features::ALL, Features::ALL, [1; 32], [2; 32])
            .0
            .into_established()
            .unwrap_err(),
        NoiseError::NotComplete
    );
    // Responder got message 1 and has not answered: more bytes are a violation.
    wire.extend_from_slice(&[0, 3, 1, 2, 3]);
    assert_eq!(r.handle_input(&mut wire), Err(NoiseError::Unexpected));
    assert_eq!(r.into_established().unwrap_err(), NoiseError::Unexpected);
}

#[test]
fn bad_handshake_messages() {
    let (_, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
    let mut big = BytesMut::from(&b"<!DOCTYPE html>\n"[..]);
    let err = r.handle_input(&mut big).unwrap_err();
    assert_eq!(err, NoiseError::NotAstral("<!DOCTYPE html>\\n".into()));
    assert!(err
        .to_string()
        .contains("does not speak the astral protocol"));

    let (_, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
    let mut short = BytesMut::from(&[0, 3, 1, 2, 3][..]);
    assert!(matches!(
        r.handle_input(&mut short),
        Err(NoiseError::Handshake(_))
    ));

    let (_, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
    let mut garbage = BytesMut::new();
    garbage.put_u16(60);
    garbage.put_bytes(0xAB, 60);
    assert!(matches!(
        r.handle_input(&mut garbage),
        Err(NoiseError::Handshake(_))
    ));

    // Tampered message 3 (flip a byte of the encrypted static key).
    let (mut i, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
    let mut w = BytesMut::new();
    i.poll_output(&mut w).unwrap();
    r.handle_input(&mut w).unwrap();
    r.poll_output(&mut w).unwrap();
    i.handle_input(&mut w).unwrap();
    i.poll_output(&mut w).unwrap();
    w[10] ^= 1;
    assert!(matches!(
        r.handle_input(&mut w),
        Err(NoiseError::Handshake(_))
    ));
}

/// Drives a raw snow responder so the test can send arbitrary payloads.
fn raw_responder(payload2: &[u8]) -> Result<(), NoiseError> {
    let (a, b) = ids();
    let mut i = Handshake::initiator(&a, b.node_id(), Features::ALL, 7, [1; 32]).unwrap();
    let key = b.private_bytes();
    let mut raw = snow::Builder::with_resolver(
        PATTERN.parse().unwrap(),
        Box::new(SeededResolver::new([2; 32])),
    )
    .local_private_key(&key)
    .unwrap()
    .prologue(PROLOGUE)
    .unwrap()
    .build_responder()
    .unwrap();
    let mut w = BytesMut::new();
    i.poll_output(&mut w).unwrap();
    let mut buf = [0u8; 1024];
    raw.read_message(&w[2..], &mut buf).unwrap();
    let n = raw.write_message(payload2, &mut buf).unwrap();
    let mut w = BytesMut::new();
    w.put_u16(n as u16);
    w.extend_from_slice(&buf[..n]);
    i.handle_input(&mut w)
}

#[test]
fn bad_message_2_payloads() {
    let v = |len: usize| {
        let mut p = vec![1u8; len];
        p[0] = VERSION;
        p
    };
    assert_eq!(raw_responder(&[]), Err(NoiseError::BadPayload));
    assert_eq!(
        raw_responder(&[1; MSG2_PAYLOAD]),
        Err(NoiseError::Version(1))
    );
    assert_eq!(
        raw_responder(&v(MSG2_PAYLOAD - 1)),
        Err(NoiseError::BadPayload)
    );
    assert_eq!(
        raw_responder(&v(MSG2_PAYLOAD + 1)),
        Err(NoiseError::BadPayload)
    );
    assert_eq!(raw_responder(&v(MSG2_PAYLOAD)), Ok(()));
    // The optional trailing `supersedes u64`: exactly 8 more bytes.
    assert_eq!(raw_responder(&v(MSG2_PAYLOAD + 8)), Ok(()));
    for extra in [7, 9, 16] {
        assert_eq!(
            raw_responder(&v(MSG2_PAYLOAD + extra)),
            Err(NoiseError::BadPayload),
            "{extra} extra bytes"
        );
    }
}

#[test]
fn the_supersedes_field_reaches_the_other_side_in_either_direction() {
    for (i_prev, r_prev) in [
        (None, None),
        (Some(0x77), None),
        (None, Some(0x88)),
        (Some(1), Some(2)),
    ] {
        let (mut i, mut r) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
        i = i.with_supersedes(i_prev);
        r = r.with_supersedes(r_prev);
        let (i_sent, r_sent) = run(&mut i, &mut r, usize::MAX);
        let (ie, re) = (i.into_established().unwrap(), r.into_established().unwrap());
        // What each side learnt is what the other said.
        assert_eq!(re.supersedes, i_prev);
        assert_eq!(ie.supersedes, r_prev);
        assert_eq!((ie.incarnation, re.incarnation), (0xB2, 0xA1));
        // 8 bytes more on the wire when said, the same messages otherwise.
        let grow = |p: Option<u64>| if p.is_some() { 8 } else { 0 };
        assert_eq!(i_sent.len(), 2 + 48 + 2 + 64 + MSG3_PAYLOAD + grow(i_prev));
        assert_eq!(r_sent.len(), 2 + 48 + MSG2_PAYLOAD + grow(r_prev));
    }
    // A side never says that it supersedes itself.
    let (mut i, mut r) = pair(Features::ALL, Features::ALL, [5; 32], [6; 32]);
    i = i.with_supersedes(Some(0xA1));
    run(&mut i, &mut r, 1);
    assert_eq!(r.into_established().unwrap().supersedes, None);
}

/// Drives a raw snow initiator so the test can send arbitrary message-3 payloads.
fn raw_initiator(payload3: &[u8], responder_features: Features) -> Result<(), NoiseError> {
    let (a, b) = ids();
    let key = a.private_bytes();
    let mut raw = snow::Builder::with_resolver(
        PATTERN.parse().unwrap(),
        Box::new(SeededResolver::new([1; 32])),
    )
    .local_private_key(&key)
    .unwrap()
    .remote_public_key(b.node_id().as_bytes())
    .unwrap()
    .prologue(PROLOGUE)
    .unwrap()
    .build_initiator()
    .unwrap();
    let mut r = Handshake::responder(&b, 5, responder_features, 8, [2; 32]).unwrap();
    let mut buf = [0u8; 1024];
    let mut w = BytesMut::new();
    let n = raw.write_message(&[], &mut buf).unwrap();
    w.put_u16(n as u16);
    w.extend_from_slice(&buf[..n]);
    r.handle_input(&mut w).unwrap();
    r.poll_output(&mut w).unwrap();
    raw.read_message(&w[2..], &mut buf).unwrap();
    let n = raw.write_message(payload3, &mut buf).unwrap();
    let mut w = BytesMut::new();
    w.put_u16(n as u16);
    w.extend_from_slice(&buf[..n]);
    r.handle_input(&mut w)?;
    let est = r.into_established()?;
    assert_eq!(est.remote, a.node_id());
    assert_eq!(est.stream_id, 5);
    Ok(())
}

#[test]
fn bad_message_3_payloads() {
    let p3 = |version: u8, features: u32| {
        let mut p = vec![version];
        p.extend_from_slice(&features.to_be_bytes());
        p.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(p.len(), MSG3_PAYLOAD);
        p
    };
    assert_eq!(raw_initiator(&p3(VERSION, 1), Features::ALL), Ok(()));
    // With the optional `supersedes u64`, and with a malformed tail.
    let mut long = p3(VERSION, 1);
    long.extend_from_slice(&3u64.to_be_bytes());
    assert_eq!(raw_initiator(&long, Features::ALL), Ok(()));
    assert_eq!(
        raw_initiator(&long[..MSG3_PAYLOAD + 7], Features::ALL),
        Err(NoiseError::BadPayload)
    );
    long.push(0);
    assert_eq!(
        raw_initiator(&long, Features::ALL),
        Err(NoiseError::BadPayload)
    );
    assert_eq!(
        raw_initiator(&[], Features::ALL),
        Err(NoiseError::BadPayload)
    );
    assert_eq!(
        raw_initiator(&p3(7, 1), Features::ALL),
        Err(NoiseError::Version(7))
    );
    assert_eq!(
        raw_initiator(&p3(VERSION, 1)[..MSG3_PAYLOAD - 1], Features::ALL),
        Err(NoiseError::BadPayload)
    );
    // Chose a feature the responder never offered.
    assert_eq!(
        raw_initiator(&p3(VERSION, 1), Features::NONE),
        Err(NoiseError::BadPayload)
    );
}

#[test]
fn record_errors() {
    let (mut ie, mut re) = established(usize::MAX);
    let mut wire = BytesMut::new();
    ie.cipher.seal_record(b"payload", &mut wire).unwrap();
    let mut tampered = wire.clone();
    tampered[5] ^= 0x40;
    let mut plain = BytesMut::from(&b"kept"[..]);
    assert_eq!(
        re.cipher.open_record(&mut tampered, &mut plain),
        Err(NoiseError::Decrypt)
    );
    assert_eq!(&plain[..], b"kept");
    // Tampered tag.
    let mut tampered = wire.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        re.cipher.open_record(&mut tampered, &mut plain),
        Err(NoiseError::Decrypt)
    );
    // The genuine record still opens (failed attempts did not use a nonce).
    assert!(re.cipher.open_record(&mut wire, &mut plain).unwrap());
    assert_eq!(&plain[..], b"keptpayload");

    for len in [0u16, 1, 15] {
        let mut short = BytesMut::new();
        short.put_u16(len);
        assert_eq!(
            re.cipher.open_record(&mut short, &mut plain),
            Err(NoiseError::RecordTooShort(usize::from(len)))
        );
    }
    // Incomplete records need more bytes.
    assert_eq!(
        re.cipher.open_record(&mut BytesMut::new(), &mut plain),
        Ok(false)
    );
    assert_eq!(
        re.cipher
            .open_record(&mut BytesMut::from(&[0u8][..]), &mut plain),
        Ok(false)
    );
    assert_eq!(
        re.cipher
            .open_record(&mut BytesMut::from(&[0u8, 20, 1, 2][..]), &mut plain),
        Ok(false)
    );

    let mut out = BytesMut::from(&b"xy"[..]);
    assert_eq!(
        ie.cipher
            .seal_record(&vec![0; RecordCipher::MAX_PLAINTEXT + 1], &mut out),
        Err(NoiseError::PlaintextTooLarge(65520))
    );
    assert_eq!(&out[..], b"xy");
    ie.cipher
        .seal_record(&vec![0; RecordCipher::MAX_PLAINTEXT], &mut out)
        .unwrap();
    assert_eq!(out.len(), 2 + 2 + RecordCipher::MAX_RECORD);
    assert_eq!(&out[2..4], &[0xff, 0xff]);
}

#[test]
fn types_are_send() {
    fn send<T: Send + 'static>() {}
    send::<Handshake>();
    send::<Established>();
    send::<RecordCipher>();
    send::<SeededResolver>();
}

#[test]
fn wrong_direction_record_fails() {
    let (mut ie, _re) = established(usize::MAX);
    let mut wire = BytesMut::new();
    ie.cipher.seal_record(b"to myself", &mut wire).unwrap();
    assert_eq!(
        ie.cipher.open_record(&mut wire, &mut BytesMut::new()),
        Err(NoiseError::Decrypt)
    );
}

#[cfg(feature = "fuzzing")]
#[test]
fn insecure_cipher() {
    let mut c = RecordCipher::insecure_for_fuzzing();
    let mut wire = BytesMut::new();
    c.seal_record(b"abc", &mut wire).unwrap();
    assert_eq!(&wire[..], &[&[0u8, 19][..], b"abc", &[0; 16]].concat()[..]);
    let mut bad = wire.clone();
    bad[6] = 1;
    let mut plain = BytesMut::new();
    assert_eq!(
        c.open_record(&mut bad, &mut plain),
        Err(NoiseError::Decrypt)
    );
    assert!(c.open_record(&mut wire, &mut plain).unwrap());
    assert_eq!(&plain[..], b"abc");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_into_responder_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6),
        valid_first in any::<bool>(),
    ) {
        let (mut i, mut r) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        let mut input = BytesMut::new();
        if valid_first {
            i.poll_output(&mut input).unwrap();
        }
        for c in chunks {
            input.extend_from_slice(&c);
            let _ = r.handle_input(&mut input);
            let _ = r.poll_output(&mut BytesMut::new());
        }
        let _ = r.is_complete();
        let _ = r.into_established();
    }

    #[test]
    fn garbage_into_initiator_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        len_prefix in any::<bool>(),
    ) {
        let (mut i, _) = pair(Features::ALL, Features::ALL, [1; 32], [2; 32]);
        i.poll_output(&mut BytesMut::new()).unwrap();
        let mut input = BytesMut::new();
        if len_prefix {
            input.put_u16(data.len() as u16);
        }
        input.extend_from_slice(&data);
        let _ = i.handle_input(&mut input);
        let _ = i.poll_output(&mut BytesMut::new());
    }

    #[test]
    fn garbage_records_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (_, mut re) = established(usize::MAX);
        let mut input = BytesMut::from(&data[..]);
        let mut plain = BytesMut::new();
        let _ = re.cipher.open_record(&mut input, &mut plain);
    }
}
