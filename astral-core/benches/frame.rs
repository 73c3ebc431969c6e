//! Frame codec throughput: decoding and encoding 64 KiB of DataAt frames
//! (16 KiB and 1 KiB payloads) and of small control frames (Credit).

use std::hint::black_box;

use astral_core::frame::{encode_data_at_header, DecodeLimits, Frame, FrameReader};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BUF_LEN: usize = 64 * 1024;

/// Frames whose encodings fill (at most) `BUF_LEN` bytes.
fn data_at_frames(payload_len: usize) -> Vec<Frame> {
    let payload = Bytes::from(vec![0xa5u8; payload_len]);
    let per = astral_core::frame::DATA_AT_HEADER_LEN + payload_len;
    (0..BUF_LEN / per)
        .map(|i| Frame::DataAt {
            session: 42,
            offset: (i * payload_len) as u64,
            payload: payload.clone(),
        })
        .collect()
}

fn credit_frames() -> Vec<Frame> {
    let per = Frame::Credit {
        session: 0,
        consumed: 0,
    }
    .encoded_len();
    (0..BUF_LEN / per)
        .map(|i| Frame::Credit {
            session: i as u64 % 64,
            consumed: (i as u64) << 12,
        })
        .collect()
}

fn encode_all(frames: &[Frame]) -> Bytes {
    let mut out = Vec::with_capacity(BUF_LEN);
    for f in frames {
        f.encode(&mut out).expect("encodable");
    }
    Bytes::from(out)
}

fn cases() -> Vec<(&'static str, Vec<Frame>)> {
    vec![
        ("data_at_16k", data_at_frames(16 * 1024)),
        ("data_at_1k", data_at_frames(1024)),
        ("credit", credit_frames()),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decode");
    let limits = DecodeLimits::default();
    for (name, frames) in cases() {
        let wire = encode_all(&frames);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &wire, |b, wire| {
            b.iter(|| {
                let mut n = 0usize;
                for f in FrameReader::new(wire.clone(), limits) {
                    black_box(f.expect("valid frame"));
                    n += 1;
                }
                n
            })
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode");
    for (name, frames) in cases() {
        let len = encode_all(&frames).len();
        group.throughput(Throughput::Bytes(len as u64));
        let mut out: Vec<u8> = Vec::with_capacity(BUF_LEN);
        group.bench_with_input(BenchmarkId::from_parameter(name), &frames, |b, frames| {
            b.iter(|| {
                out.clear();
                for f in frames {
                    match f {
                        // Hot path: header + payload copy, no intermediate Bytes.
                        Frame::DataAt {
                            session,
                            offset,
                            payload,
                        } => {
                            encode_data_at_header(
                                &mut out,
                                *session,
                                *offset,
                                payload.len() as u16,
                            );
                            out.extend_from_slice(payload);
                        }
                        other => other.encode(&mut out).expect("encodable"),
                    }
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
