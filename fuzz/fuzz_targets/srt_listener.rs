//! SRT datagrams from arbitrary bytes into a listener with one caller connected (publish,
//! encrypted): every datagram is handled without a panic, buffers stay within their caps, and the
//! listener never holds more than the one connection a valid cookie allowed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::srt::crypto::build_km;
use rtmpd::srt::handshake::*;
use rtmpd::srt::packet::Packet;
use rtmpd::srt::{Event, Listener, ListenerConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let pass = b"fuzz-passphrase".to_vec();
    let mut l = Listener::new(
        ListenerConfig {
            passphrase: Some(pass.clone()),
            ..ListenerConfig::default()
        },
        [7; 32],
        t0,
    );
    let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let mut hs = Handshake {
        version: VERSION_4,
        extension: UDT_DGRAM,
        isn: 0x7FFF_FF00,
        mtu: 1500,
        flow_window: 8192,
        hs_type: TYPE_INDUCTION,
        socket_id: 99,
        ..Handshake::default()
    };
    l.handle_datagram(t0, peer, &hs.to_packet(0, 0));
    let t = l.poll_transmit().expect("induction answered");
    let Ok(Packet::Control(_, body)) = Packet::parse(&t.data) else { panic!() };
    let cookie = Handshake::parse(body).unwrap().cookie;
    hs.version = VERSION_5;
    hs.hs_type = TYPE_CONCLUSION;
    hs.extension = EXT_HSREQ | EXT_KMREQ | EXT_CONFIG;
    hs.cookie = cookie;
    hs.request = true;
    hs.srt = Some(SrtHs { version: 0x010501, flags: 0x3F & !OPT_STREAM, recv_delay_ms: 120, send_delay_ms: 120 });
    hs.km = build_km(&pass, [3; 16], &[5; 16], None);
    hs.stream_id = Some(b"publish:live/fuzz".to_vec());
    l.handle_datagram(t0, peer, &hs.to_packet(0, 0));
    let Some(Event::Request { id, .. }) = l.poll_event() else { panic!("no request") };
    l.accept(id, t0);
    // Input: [len, flags, bytes...]*; flags bit 0 aims at our connection, bits 1-7 advance time.
    let mut rest = data;
    let mut now = t0;
    while rest.len() >= 2 {
        let (len, flags) = (usize::from(rest[0]) * 8, rest[1]);
        rest = &rest[2..];
        let mut d = rest[..len.min(rest.len())].to_vec();
        rest = &rest[d.len()..];
        if flags & 1 != 0 && d.len() >= 16 {
            d[12..16].copy_from_slice(&id.to_be_bytes());
        }
        now += Duration::from_millis(u64::from(flags >> 1));
        l.handle_datagram(now, peer, &d);
        if let Some(deadline) = l.poll_timeout() {
            if deadline <= now {
                l.handle_timeout(now);
            }
        }
        while l.poll_transmit().is_some() {}
        while l.poll_event().is_some() {}
        if let Some(st) = l.conn_stats(id) {
            assert!(st.rcv_buffered <= 8192 && st.snd_buffered <= 8192);
        }
        assert!(l.len() <= 1);
    }
});
