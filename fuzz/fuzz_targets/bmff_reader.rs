//! The ISO BMFF box parser and body reader (`mux::bmff`) over arbitrary bytes: every box the
//! iterator yields lies inside its parent; `Reader` never reads past the end it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::mux::bmff::{boxes, find, BoxHeader, Reader};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = BoxHeader::parse(data) {
        assert!(h.header_len == 8 || h.header_len == 16);
        if let Some(size) = h.size {
            assert!(size >= u64::from(h.header_len));
        }
    }
    walk(data, 0);
    let _ = find(data, b"moov");
    // Reader driven by the input itself: each byte picks a read.
    let mut r = Reader::new(data);
    let ops = data.iter().take(64).copied().collect::<Vec<_>>();
    for op in ops {
        let before = r.remaining();
        let ok = match op % 7 {
            0 => r.u8().is_ok(),
            1 => r.u16().is_ok(),
            2 => r.u32().is_ok(),
            3 => r.u64().is_ok(),
            4 => r.full_header().is_ok(),
            5 => r.skip(usize::from(op)).is_ok(),
            _ => r.take(usize::from(op) << 4).is_ok(),
        };
        assert!(r.remaining() <= before);
        if !ok {
            assert_eq!(r.remaining(), before, "a failed read consumed bytes");
        }
    }
});

fn walk(b: &[u8], depth: usize) {
    if depth > 8 {
        return;
    }
    let start = b.as_ptr() as usize;
    let end = start + b.len();
    for child in boxes(b) {
        let Ok((_, body)) = child else { break };
        let s = body.as_ptr() as usize;
        assert!(s >= start && s + body.len() <= end);
        walk(body, depth + 1);
    }
}
