//! The readers of `rtmpd merge` and crash repair (`mux::mp4`): an init segment and media segments
//! (split on `SEP`) through `parse_init`, `Merger::add_segment` and `Merger::write`. No panic; what
//! is written is as long as `write` says, and its top-level boxes tile it exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::mux::bmff::BoxHeader;
use rtmpd::mux::mp4::{parse_init, Merger};
use rtmpd_fuzz::split;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let Ok(tracks) = parse_init(parts[0]) else {
        return;
    };
    let segments = &parts[1..];
    let mut m = Merger::new(tracks);
    for seg in segments {
        if m.add_segment(&mut Cursor::new(*seg), seg.len() as u64).is_err() {
            return;
        }
    }
    let _ = m.sample_counts();
    let _ = m.duration_ms();
    let mut out = Vec::new();
    let Ok(n) = m.write(&mut out, |i| {
        segments
            .get(i as usize)
            .map(|s| Cursor::new(*s))
            .ok_or_else(|| std::io::Error::other("no such segment"))
    }) else {
        return;
    };
    assert_eq!(n, out.len() as u64);
    assert_tiles(&out);
});

/// Top-level boxes cover `b` exactly, each at least its header long.
fn assert_tiles(b: &[u8]) {
    let mut pos = 0usize;
    while pos < b.len() {
        let h = BoxHeader::parse(&b[pos..])
            .expect("box header")
            .expect("whole box header");
        let size = h.size.map_or(b.len() - pos, |s| s as usize);
        assert!(size >= usize::from(h.header_len) && pos + size <= b.len(), "box at {pos}");
        pos += size;
    }
}
