//! The seed corpus of the fuzz targets, generated reproducibly.
//!
//! libFuzzer grows its input length limit slowly from a few bytes unless
//! the corpus already holds long inputs; the ordering targets' schedules
//! need hundreds of bytes before their operations do anything interesting.
//! So the ordering targets start from seeds of 64 to 4096 bytes drawn from a
//! fixed ChaCha stream: any bytes decode to a valid schedule, and these
//! decode to schedules of tens to hundreds of operations. `stream_input` and
//! `frame_decode` start from well-formed frames (in no-security records for
//! `stream_input`) with random fields, so mutations start inside the frame
//! and session logic. `fuzz/corpus/<target>/` holds them;
//! `tests/fuzz_harness.rs` checks the files match this generator and
//! rewrites them with `ASTRAL_WRITE_CORPUS=1`.

use astral_core::frame::Frame;
use astral_core::unstable::RecordCipher;
use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Seeds per target.
pub const SEEDS: usize = 24;

/// Longest seed (and the `-max_len` the fuzz runs use).
pub const MAX_LEN: usize = 4096;

/// The seed inputs of `target` (a cargo-fuzz target name): file name and
/// bytes, the same on every machine.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    // One stream per target, keyed by its name.
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(target.bytes()) {
        *k = b;
    }
    let mut rng = ChaCha20Rng::from_seed(key);
    (0..SEEDS)
        .map(|i| {
            let bytes = match target {
                "stream_input" => records(&mut rng, 1 + i),
                "frame_decode" => frames(&mut rng, 1 + i).concat(),
                _ => {
                    // Lengths spread on a log scale from 64 to MAX_LEN.
                    let len = (64usize << (i * 7 / SEEDS)).min(MAX_LEN);
                    let mut bytes = vec![0u8; len];
                    rng.fill_bytes(&mut bytes);
                    bytes
                }
            };
            (format!("seed-{i:02}-{}", bytes.len()), bytes)
        })
        .collect()
}

/// `n` frames of every kind in turn, with random fields (small session ids
/// and offsets, so that frames of one seed name the same sessions).
fn frames(rng: &mut ChaCha20Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let session = rng.next_u64() % 4;
            let offset = rng.next_u64() % 8192;
            let small = rng.next_u32() % 4096;
            let payload = Bytes::from(vec![0x5a; (rng.next_u32() % 200) as usize]);
            let frame = match k % 11 {
                0 => Frame::Query {
                    session,
                    buffer: small,
                    query: format!("svc:{k}"),
                },
                1 => Frame::DataAt {
                    session,
                    offset,
                    payload,
                },
                2 => Frame::Credit {
                    session,
                    consumed: offset,
                },
                3 => Frame::Fin { session, offset },
                4 => Frame::Ping {
                    nonce: rng.next_u64(),
                    pong: k % 2 == 0,
                },
                5 => Frame::MigrateTo {
                    session,
                    target: 7,
                    epoch: small,
                },
                6 => Frame::Resume {
                    session,
                    received: offset,
                    consumed: offset / 2,
                    reply: k % 2 == 1,
                },
                7 => Frame::Response {
                    session,
                    code: 0,
                    buffer: small,
                },
                8 => Frame::Reset { session },
                9 => Frame::Data { session, payload },
                _ => Frame::Drain,
            };
            let mut out = Vec::new();
            // Frames built here fit the wire format.
            frame.encode(&mut out).expect("a small frame encodes");
            out
        })
        .collect()
}

/// `n` frames in no-security records of one to three frames each.
fn records(rng: &mut ChaCha20Rng, n: usize) -> Vec<u8> {
    let mut cipher = RecordCipher::insecure_for_fuzzing();
    let mut out = BytesMut::new();
    let frames = frames(rng, n);
    for chunk in frames.chunks(1 + (n % 3)) {
        // At most three small frames: far below the record size limit.
        cipher
            .seal_record(&chunk.concat(), &mut out)
            .expect("a small record seals");
    }
    out.to_vec()
}
