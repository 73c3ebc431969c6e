//! Byte-exact compatibility with the reference's frame test vectors.
//!
//! Reads every `.jsonl` file in `$ASTRAL_VECTORS_DIR` (default: the copy
//! in `astral-core/tests/vectors/`, so a fresh clone or a published crate
//! needs nothing beside it) and checks that each vector
//! decodes to the described frame, consuming every byte, and that the frame
//! encodes back to the same bytes.

use std::path::PathBuf;

use astral_core::frame::{DecodeLimits, Frame};
use bytes::Bytes;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("ASTRAL_VECTORS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors")),
    }
}

fn field<'a>(frame: &'a Value, key: &str, name: &str) -> &'a Value {
    frame
        .get(key)
        .unwrap_or_else(|| panic!("vector {name}: frame has no field {key:?}"))
}

fn u64_str(frame: &Value, key: &str, name: &str) -> u64 {
    let v = field(frame, key, name);
    match v {
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("vector {name}: {key} {s:?} is not a u64: {e}")),
        Value::Number(n) => n
            .as_u64()
            .unwrap_or_else(|| panic!("vector {name}: {key} {n} is not a u64")),
        other => panic!("vector {name}: {key} has unexpected JSON {other}"),
    }
}

fn num(frame: &Value, key: &str, name: &str) -> u64 {
    field(frame, key, name)
        .as_u64()
        .unwrap_or_else(|| panic!("vector {name}: {key} is not an unsigned number"))
}

fn u32_num(frame: &Value, key: &str, name: &str) -> u32 {
    u32::try_from(num(frame, key, name))
        .unwrap_or_else(|_| panic!("vector {name}: {key} does not fit a u32"))
}

fn expected_frame(frame: &Value, name: &str) -> Frame {
    let ty = field(frame, "type", name)
        .as_str()
        .unwrap_or_else(|| panic!("vector {name}: type is not a string"));
    let nonce = u64_str(frame, "nonce", name);
    match ty {
        "ping" => Frame::Ping {
            nonce,
            pong: field(frame, "pong", name)
                .as_bool()
                .unwrap_or_else(|| panic!("vector {name}: pong is not a bool")),
        },
        "query" => Frame::Query {
            session: nonce,
            buffer: u32_num(frame, "buffer", name),
            query: field(frame, "query", name)
                .as_str()
                .unwrap_or_else(|| panic!("vector {name}: query is not a string"))
                .to_owned(),
        },
        "response" => Frame::Response {
            session: nonce,
            code: u8::try_from(num(frame, "code", name))
                .unwrap_or_else(|_| panic!("vector {name}: code does not fit a u8")),
            buffer: u32_num(frame, "buffer", name),
        },
        "read" => Frame::Read {
            session: nonce,
            len: u32_num(frame, "len", name),
        },
        "data" => {
            let hex_payload = field(frame, "payload_hex", name)
                .as_str()
                .unwrap_or_else(|| panic!("vector {name}: payload_hex is not a string"));
            Frame::Data {
                session: nonce,
                payload: Bytes::from(
                    hex::decode(hex_payload)
                        .unwrap_or_else(|e| panic!("vector {name}: payload_hex: {e}")),
                ),
            }
        }
        "reset" => Frame::Reset { session: nonce },
        "migrate" => Frame::Migrate { session: nonce },
        other => panic!("vector {name}: unknown frame type {other:?}"),
    }
}

#[test]
fn reference_vectors() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read vectors dir {}: {e}", dir.display()))
        .map(|entry| entry.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .jsonl file in {} (set ASTRAL_VECTORS_DIR)",
        dir.display()
    );

    let mut checked = 0usize;
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for (lineno, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: invalid JSON: {e}", path.display(), lineno + 1));
            let name = format!(
                "{}:{} ({})",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                lineno + 1,
                v.get("name").and_then(Value::as_str).unwrap_or("unnamed")
            );
            let frame = v
                .get("frame")
                .unwrap_or_else(|| panic!("vector {name}: no frame"));
            let hex_str = v
                .get("hex")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("vector {name}: no hex string"));
            let wire =
                hex::decode(hex_str).unwrap_or_else(|e| panic!("vector {name}: bad hex: {e}"));
            let expected = expected_frame(frame, &name);

            // Decode: exactly the described frame, consuming every byte.
            let mut buf = Bytes::from(wire.clone());
            let decoded = Frame::decode(&mut buf, &DecodeLimits::default())
                .unwrap_or_else(|e| panic!("vector {name}: decode failed: {e}"));
            assert_eq!(decoded, expected, "vector {name}: decoded frame differs");
            assert!(
                buf.is_empty(),
                "vector {name}: {} bytes left after decoding",
                buf.len()
            );

            // Encode: byte for byte.
            let mut out = Vec::new();
            expected
                .encode(&mut out)
                .unwrap_or_else(|e| panic!("vector {name}: encode failed: {e}"));
            assert_eq!(
                hex::encode(&out),
                hex_str.to_ascii_lowercase(),
                "vector {name}: encoding differs"
            );
            assert_eq!(
                out.len(),
                expected.encoded_len(),
                "vector {name}: encoded_len"
            );
            assert!(expected.is_base(), "vector {name}: not a base frame");
            checked += 1;
        }
    }
    assert!(checked > 0, "no vectors in {}", dir.display());
    println!(
        "checked {checked} frame vectors from {} file(s) in {}",
        files.len(),
        dir.display()
    );
}
