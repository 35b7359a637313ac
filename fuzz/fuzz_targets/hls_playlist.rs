//! What crash repair and the recorder read back from an HLS playlist on disk (`mux::hls`): the
//! session start and program date times, and ENDLIST detection. A parsed date formats back to
//! the same instant.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::mux::hls::{format_iso8601, has_endlist, parse_iso8601, playlist_start_ms};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = has_endlist(text);
    let _ = playlist_start_ms(text);
    if let Some(ms) = parse_iso8601(text.trim()) {
        let back = format_iso8601(ms);
        assert_eq!(parse_iso8601(&back), Some(ms), "{text:?} -> {back:?}");
    }
});
