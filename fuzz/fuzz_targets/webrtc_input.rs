//! What a WebRTC viewer controls before any session exists: the SDP offer (accepted or refused
//! with a reason, never a panic), the STUN username read for routing, and ICE-TCP framing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::media::frame::Codec;
use rtmpd::webrtc::{stun_username_fragment, tcp_framing, SessionConfig, StreamCodecs, WhepSession};

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = stun_username_fragment(data) {
        assert!(!ufrag.is_empty() && ufrag.len() < data.len());
    }
    let mut d = tcp_framing::Deframer::new();
    for part in data.chunks(7) {
        d.push(part);
        while let Ok(Some(p)) = d.next_packet() {
            assert!(!p.is_empty());
        }
    }
    assert!(d.buffered() <= data.len());
    if let Ok(offer) = std::str::from_utf8(data) {
        let codecs = StreamCodecs {
            video: Some(Codec::Avc),
            h264_profile_level_id: Some(0x42e01f),
            audio: Some(Codec::Opus),
            b_frames: false,
        };
        let addr = "127.0.0.1:8189".parse().unwrap();
        let _ = WhepSession::accept(offer, &SessionConfig::default(), &[addr], &codecs, std::time::Instant::now());
    }
});
