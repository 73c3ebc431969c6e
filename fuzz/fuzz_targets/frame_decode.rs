//! Decodes frames repeatedly from arbitrary bytes with the default limits:
//! never panics, and every frame that decodes re-encodes to exactly the bytes
//! it was decoded from (the encoding is canonical).
#![no_main]

use astral_core::frame::{DecodeLimits, Frame};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let mut buf = Bytes::copy_from_slice(data);
    while !buf.is_empty() {
        let before = buf.clone();
        let Ok(frame) = Frame::decode(&mut buf, &limits) else {
            break;
        };
        let used = before.len() - buf.len();
        assert_eq!(used, frame.encoded_len(), "encoded_len of {frame:?}");
        let mut out = Vec::with_capacity(used);
        frame
            .encode(&mut out)
            .expect("a decoded frame is encodable");
        assert_eq!(&out[..], &before[..used], "re-encoding of {frame:?}");
        assert_eq!(frame.to_bytes().as_deref().ok(), Some(&before[..used]));
    }
});
