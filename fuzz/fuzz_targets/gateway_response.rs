//! The FLV gateway's upstream response parser (`gateway::flv::Response`: head, chunked /
//! Content-Length / close framing, FLV demux) fed a response in fuzzer-chosen pieces, and the
//! upstream URL and redirect parsing: no panic, nothing after the end of the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::gateway::flv::{Event, Response, UpstreamUrl};
use rtmpd_fuzz::{feed_in_pieces, Cursor};

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let steps = c.bytes(4).to_vec();
    let input = c.rest();
    let mut r = Response::new();
    let mut ended = false;
    feed_in_pieces(input, &steps, |piece| {
        let mut events = Vec::new();
        let ok = r.feed(piece, &mut events).is_ok();
        for e in &events {
            assert!(!ended, "an event after End: {e:?}");
            ended = matches!(e, Event::End);
        }
        ok && !r.is_done()
    });
    if let Ok(s) = std::str::from_utf8(input) {
        let line = s.lines().next().unwrap_or("");
        if let Ok(url) = UpstreamUrl::parse(line) {
            let _ = url.to_string();
            let _ = url.authority();
            let _ = url.redirect_path(s);
        }
    }
});
