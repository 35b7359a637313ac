//! The RTMP server session fed arbitrary bytes, handshake included, with every publish and play
//! request answered by the policy the first byte picks; input arrives in fuzzer-chosen pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::rtmp::handshake::{HANDSHAKE_SIZE, RTMP_VERSION};
use rtmpd::rtmp::session::{Refusal, ServerSession, SessionConfig, SessionEvent};
use rtmpd_fuzz::{feed_in_pieces, Cursor};

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let steps = c.bytes(4).to_vec();
    let body = c.rest();
    // Bit 0: the fuzz bytes are chunks after a handshake we make (so the fuzzer need not find it).
    let mut input = Vec::new();
    if flags & 1 != 0 {
        input.push(RTMP_VERSION);
        input.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    }
    input.extend_from_slice(body);
    let mut s = ServerSession::new(SessionConfig::default(), 7, 0);
    let mut answered = 0u32;
    feed_in_pieces(&input, &steps, |piece| {
        if s.handle_input(piece).is_err() {
            return false;
        }
        while let Some(ev) = s.poll_event() {
            answered = answered.wrapping_add(1);
            // Bits 1-2: accept all, refuse all, or alternate.
            let accept = match (flags >> 1) & 3 {
                0 | 3 => true,
                1 => false,
                _ => answered % 2 == 0,
            };
            match ev {
                SessionEvent::PublishRequest { request_id, .. } => {
                    if accept {
                        s.accept_publish(request_id)
                    } else {
                        s.reject_publish(request_id, Refusal::BadName)
                    }
                }
                SessionEvent::PlayRequest {
                    request_id,
                    stream_id,
                    ..
                } => {
                    if accept {
                        s.accept_play(request_id);
                        s.publish_notify(stream_id);
                        s.unpublish_notify(stream_id);
                    } else {
                        s.reject_play(request_id, Refusal::Unauthorized)
                    }
                }
                _ => {}
            }
        }
        let _ = s.take_output();
        !s.wants_close()
    });
    assert!(s.bytes_received() <= input.len() as u64);
});
