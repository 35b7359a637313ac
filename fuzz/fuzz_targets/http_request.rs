//! HTTP request heads, pipelined, through the parser, the router, the static path resolution and
//! the WebSocket upgrade answer: no panic; consumed lengths stay inside the buffer; a cleaned path
//! never has a segment that leaves the root.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::http::route::{route, Route};
use rtmpd::http::{path, request, ws};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    // Pipelined heads: as many as parse, each consuming at least one byte.
    for _ in 0..64 {
        let (req, used) = match request::parse(buf) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
        let _ = req.keep_alive();
        let _ = req.request_line();
        let _ = req.query();
        if let Route::LiveFlv(key) = route(req.path()) {
            assert!(req.path().ends_with(".flv"), "{key:?}");
        }
        if ws::is_upgrade(&req) {
            if let Ok(answer) = ws::accept_response(&req) {
                assert!(answer.ends_with(b"\r\n\r\n"));
            }
        }
        check_clean(&req.target);
    }
    // The same resolution for any string, not only what httparse lets through.
    if let Ok(s) = std::str::from_utf8(data) {
        check_clean(s);
        let _ = route(s);
    }
});

fn check_clean(target: &str) {
    if let Ok(clean) = path::clean_target(target) {
        for seg in &clean.segments {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "{target:?}");
            assert!(!seg.contains('/') && !seg.contains('\\') && !seg.contains('\0'));
        }
        // The canonical URL resolves to the same segments.
        let url = clean.url(clean.trailing_slash);
        let again = path::clean_target(&url).expect("canonical url is clean");
        assert_eq!(again.segments, clean.segments, "{target:?} -> {url:?}");
    }
}
