//! The MPEG-TS demuxer (`mux::ts_demux`) fed in fuzzer-chosen pieces gives the same frames,
//! errors and counters as fed whole (split invariance), and never panics or overflows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::mux::ts_demux::{TsDemuxer, TsError};
use rtmpd_fuzz::{feed_in_pieces, Cursor};

/// What a consumer reads from a frame.
type Key = (rtmpd::media::Track, u32, i32, bool, bool, bytes::Bytes);

fn drain(d: &mut TsDemuxer, frames: &mut Vec<Key>, errors: &mut Vec<TsError>) {
    frames.extend(
        std::iter::from_fn(|| d.poll_frame())
            .map(|f| (f.track, f.dts, f.cts, f.key, f.config, f.data)),
    );
    errors.extend(std::iter::from_fn(|| d.poll_error()));
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let steps = c.bytes(4).to_vec();
    let input = c.rest();

    let mut whole = TsDemuxer::new();
    let (mut want, mut want_errors) = (Vec::new(), Vec::new());
    whole.push(input);
    drain(&mut whole, &mut want, &mut want_errors);
    whole.flush();
    drain(&mut whole, &mut want, &mut want_errors);

    let mut split = TsDemuxer::new();
    let (mut got, mut got_errors) = (Vec::new(), Vec::new());
    feed_in_pieces(input, &steps, |piece| {
        split.push(piece);
        // Drained after every piece, as the SRT session does.
        drain(&mut split, &mut got, &mut got_errors);
        true
    });
    split.flush();
    drain(&mut split, &mut got, &mut got_errors);

    assert_eq!(got, want, "frames depend on the split");
    let (a, b) = (split.stats(), whole.stats());
    assert_eq!(a, b, "counters depend on the split");
    // At most 32 errors wait in the queue (the counter has them all): the lists can be compared
    // when neither run lost one, which draining after each piece does not promise either.
    assert!(got_errors.len() as u64 <= a.errors && want_errors.len() as u64 <= b.errors);
    if got_errors.len() as u64 == a.errors && want_errors.len() as u64 == b.errors {
        assert_eq!(got_errors, want_errors, "errors depend on the split");
    }
});
