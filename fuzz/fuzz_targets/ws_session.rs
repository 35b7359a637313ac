//! The WebSocket server session (client-to-server direction) fed arbitrary frames in pieces: no
//! panic, and the control replies it queues stay bounded by what came in.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::http::ws::{WsInputEvent, WsSession};
use rtmpd_fuzz::{feed_in_pieces, Cursor};

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let close_first = c.u8() & 1 != 0;
    let steps = c.bytes(4).to_vec();
    let input = c.rest();
    let mut s = WsSession::new();
    if close_first {
        s.close();
    }
    let mut out = s.take_output().len();
    feed_in_pieces(input, &steps, |piece| {
        let r = s.handle_input(piece);
        out += s.take_output().len();
        matches!(r, Ok(WsInputEvent::Nothing))
    });
    // A reply (pong, close) is never longer than the frame that asked for it plus a header, and a
    // close is answered once.
    assert!(out <= input.len() + 4 * 1024, "{out} bytes out for {} in", input.len());
});
