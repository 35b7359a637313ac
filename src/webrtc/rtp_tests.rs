//! Packetizing once per stream (`rtp.rs`): two viewers on one fake clock, one with audio and
//! str0m's own payload types, one without audio and with H.264 on payload types of its own,
//! are sent the same `RtpUnit`s. Each decodes the same H.264 frames bit for bit (and the first
//! the Opus packets), each on its own payload type and sequence numbers; a packet lost to one
//! is NACKed and resent from the shared history; the sender reports map RTP time to the wall
//! clock so that audio and video line up.

use std::time::Duration;

use str0m::media::Mid;

use super::rtp::{RtpGroup, MAX_PAYLOAD};
use super::tests::{client_config, h264_opus_units, Net, Pair};
use super::*;

/// Viewer B: no audio, H.264 (High, mode 1) on payload type 120, its RTX on 121.
fn viewer_b(codecs: &StreamCodecs) -> Pair {
    let mut cfg = client_config().enable_raw_packets(true).clear_codecs();
    cfg.codec_config()
        .add_h264(120.into(), Some(121.into()), true, 0x64001f);
    Pair::with_media(Net::Udp, codecs, cfg, false)
}

/// The payload types the client saw on RTP packets (RTX resends included).
fn payload_types(p: &Pair) -> Vec<u8> {
    let mut pts: Vec<u8> = p.rtp_headers.iter().map(|h| *h.payload_type).collect();
    pts.sort_unstable();
    pts.dedup();
    pts
}

#[test]
fn viewers_share_the_packets_of_one_packetizing() {
    let (packager, video, audio) = h264_opus_units();
    let codecs = packager.codecs().clone();
    let mut a = Pair::with_media(
        Net::Udp,
        &codecs,
        client_config().enable_raw_packets(true),
        true,
    );
    let mut b = viewer_b(&codecs);
    a.connect();
    b.connect();
    let t0 = a.now.max(b.now) + Duration::from_millis(100);
    a.advance_to(t0);
    b.advance_to(t0);

    // The units on one timeline (video every 40 ms, Opus every 20 ms), each sent at its own
    // time (the wall clock runs with the media), packetized once for both viewers.
    let mut pk = Packetizers::new();
    let frames = 75; // 3 s: the sender reports come every second or so
    let big = (20..frames)
        .find(|&i| video[i].data.len() > 2 * MAX_PAYLOAD)
        .expect("a frame of three packets or more");
    let mut lost = 0;
    let mut sent_v = Vec::new();
    let mut sent_a = Vec::new();
    for step in 0..frames * 2 {
        let ms = step as u64 * 20;
        let at = t0 + Duration::from_millis(ms);
        a.advance_to(at);
        b.advance_to(at);
        let mut units = Vec::new();
        if step % 2 == 0 {
            let mut v = video[step / 2].clone();
            v.pts_ms = ms;
            units.push(v);
        }
        if let Some(o) = audio.get(step) {
            let mut o = o.clone();
            o.pts_ms = ms;
            units.push(o);
        }
        for u in units {
            let rtp = pk.packetize(u);
            let (group, packets) = rtp.packets.as_ref().expect("H.264 and Opus are shared");
            assert_eq!(Some(*group), RtpGroup::of(rtp.unit.codec));
            assert!(packets.iter().all(|p| p.data.len() <= MAX_PAYLOAD));
            if rtp.unit.kind == UnitKind::Video {
                assert!(
                    packets.last().unwrap().marker,
                    "the marker ends the picture"
                );
                sent_v.push(rtp.unit.data.to_vec());
                if step / 2 == big {
                    // B loses the second packet of this picture; A gets it.
                    let n = std::rc::Rc::new(std::cell::Cell::new(0));
                    let n2 = n.clone();
                    b.drop_to_client = Some(Box::new(move |d: &[u8]| {
                        let rtp = d.len() > 12 && d[0] >> 6 == 2 && d[1] & 0x7f == 120;
                        if rtp {
                            n2.set(n2.get() + 1);
                        }
                        rtp && n2.get() == 2
                    }));
                    lost = packets.len();
                }
            } else {
                sent_a.push(rtp.unit.data.to_vec());
            }
            a.server.send_rtp(&rtp, a.now);
            b.server.send_rtp(&rtp, b.now);
        }
        // The step's units leave together.
        a.server.flush(a.now);
        b.server.flush(b.now);
        a.shuttle();
        b.shuttle();
    }
    assert!(lost >= 3);
    let end = a.now + Duration::from_secs(2);
    a.advance_to(end);
    b.advance_to(end);

    // Both decode the same pictures, bit for bit; A the Opus packets too, B has no audio.
    for (name, p) in [("A", &a), ("B", &b)] {
        let got = p.received_on(p.client_video);
        assert_eq!(got.len(), sent_v.len(), "{name}: pictures");
        for (i, (g, s)) in got.iter().zip(&sent_v).enumerate() {
            assert_eq!(*g, &s[..], "{name}: picture {i}");
        }
    }
    let got_a = a.received_on(a.client_audio);
    assert_eq!(got_a.len(), sent_a.len(), "Opus packets");
    assert!(got_a.iter().zip(&sent_a).all(|(g, s)| *g == &s[..]));
    assert!(!b.server.sends(UnitKind::Audio));
    assert_eq!(b.received_on(Mid::from("none")).len(), 0);

    // Each on its own payload types: B's H.264 on 120 and its resend on 121; A on str0m's.
    assert_eq!(
        payload_types(&b),
        [120, 121],
        "B: the picture's packet was resent"
    );
    let pts_a = payload_types(&a);
    assert!(!pts_a.contains(&120) && pts_a.len() == 2, "{pts_a:?}");
    let (sa, sb) = (a.server.stats().clone(), b.server.stats().clone());
    assert!(sb.nacks >= 1 && sa.nacks == 0, "{sa:?} {sb:?}");
    assert_eq!(sa.frames_sent, (sent_v.len() + sent_a.len()) as u64);
    assert_eq!(sb.frames_sent, sent_v.len() as u64);

    // Sender reports: the NTP time minus the RTP time is the same for A's audio and video
    // (what a browser lines them up by), and for B's video, to the millisecond.
    let ssrc_of = |p: &mut Pair, mid: Mid| {
        let mut api = p.client.direct_api();
        api.stream_rx_by_mid(mid, None)
            .expect("a receive stream")
            .ssrc()
    };
    let (mva, maa, mvb) = (a.client_video, a.client_audio, b.client_video);
    let (va, aa, vb) = (
        ssrc_of(&mut a, mva),
        ssrc_of(&mut a, maa),
        ssrc_of(&mut b, mvb),
    );
    let offset = |p: &Pair, ssrc, rate: f64| -> Vec<f64> {
        p.sender_reports
            .iter()
            .filter(|s| s.ssrc == ssrc)
            .map(|s| {
                let ntp = s.ntp_time.duration_since(std::time::UNIX_EPOCH).unwrap();
                ntp.as_secs_f64() - s.rtp_time.numer() as f64 / rate
            })
            .collect()
    };
    let (ov, oa, ob) = (
        offset(&a, va, 90_000.0),
        offset(&a, aa, 48_000.0),
        offset(&b, vb, 90_000.0),
    );
    // str0m reports audio less often than video.
    assert!(
        ov.len() >= 2 && !oa.is_empty() && ob.len() >= 2,
        "{ov:?} {oa:?} {ob:?}"
    );
    for o in ov.iter().chain(&oa).chain(&ob) {
        assert!((o - ov[0]).abs() < 0.001, "{ov:?} {oa:?} {ob:?}");
    }
}
