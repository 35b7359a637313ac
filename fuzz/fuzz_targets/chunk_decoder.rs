//! The chunk decoder fed arbitrary bytes in fuzzer-chosen pieces: no panic, and no message longer
//! than the cap it was built with.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::chunk::ChunkDecoder;
use rtmpd_fuzz::{feed_in_pieces, Cursor};

/// Small caps so the fuzzer reaches the limit paths with short inputs.
const MAX_MESSAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let small = c.u8() & 1 != 0;
    let steps = c.bytes(4).to_vec();
    let mut d = if small {
        ChunkDecoder::with_limits(MAX_MESSAGE, 4096, 4)
    } else {
        ChunkDecoder::new()
    };
    let mut buf = BytesMut::new();
    feed_in_pieces(c.rest(), &steps, |piece| {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(msg)) => {
                    if small {
                        assert!(msg.payload.len() <= MAX_MESSAGE);
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    });
});
