//! The incremental FLV demuxer fed in fuzzer-chosen pieces gives the same frames as `read_all` on
//! the whole input, and never holds more than one tag of unconsumed bytes.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rtmpd::mux::flv_demux::{read_all, FlvDemuxer, FlvItem};
use rtmpd_fuzz::{feed_in_pieces, Cursor};

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let steps = c.bytes(4).to_vec();
    let input = c.rest();
    let mut d = FlvDemuxer::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    feed_in_pieces(input, &steps, |piece| {
        buf.extend_from_slice(piece);
        loop {
            match d.next(&mut buf) {
                Ok(Some(FlvItem::Frame(f))) => frames.push(f),
                Ok(Some(FlvItem::Header { .. })) => {}
                Ok(None) => return true,
                Err(_) => {
                    failed = true;
                    return false;
                }
            }
        }
    });
    if let Ok((_, _, all)) = read_all(input) {
        assert!(!failed, "read_all accepted what the incremental demuxer refused");
        assert_eq!(all.len(), frames.len());
        for (a, b) in all.iter().zip(&frames) {
            assert_eq!(a.dts, b.dts);
            assert_eq!(a.payload(), b.payload());
        }
    }
});
