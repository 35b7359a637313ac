//! The TS demuxer's tables (PSI): PMT stream kinds, many PIDs and programs with one video and
//! one audio tracked, bad CRCs and section lengths. Not PES or codecs.

use super::*;

#[test]
fn pmt_stream_kinds() {
    assert_eq!(Kind::from_pmt(0x06, &[0x6a, 1, 0]), Some(Kind::Ac3));
    assert_eq!(Kind::from_pmt(0x06, &[0x7a, 1, 0]), Some(Kind::Eac3));
    assert_eq!(Kind::from_pmt(0x06, b"\x05\x04EAC3"), Some(Kind::Eac3));
    let opus = |d: &[u8]| Kind::from_pmt(0x06, d);
    assert_eq!(opus(b"\x05\x04Opus"), Some(Kind::Opus { channels: 2 }));
    assert_eq!(
        opus(b"\x05\x04Opus\x7f\x02\x80\x06"),
        Some(Kind::Opus { channels: 6 })
    );
    // Dual mono and explicit channel maps are not carried.
    assert_eq!(opus(b"\x05\x04Opus\x7f\x02\x80\x00"), None);
    assert_eq!(opus(b"\x05\x04Opus\x7f\x02\x80\x81"), None);
    // A truncated descriptor, no descriptor, MPEG-2 video, an unknown type.
    assert_eq!(opus(b"\x05\x09Opus"), None);
    assert_eq!(opus(&[]), None);
    assert_eq!(Kind::from_pmt(0x02, &[]), None);
    assert_eq!(Kind::from_pmt(0xff, &[]), None);
    // The OpusHead of a 5.1 stream: family 1 in the Vorbis order.
    let h = opus::OpusHead::parse(&opus_head(6, 312)).unwrap();
    assert_eq!(
        (
            h.channels,
            h.mapping_family,
            h.stream_count,
            h.coupled_count,
            h.pre_skip
        ),
        (6, 1, 4, 2, 312)
    );
    assert_eq!(h.mapping, [0, 4, 1, 2, 3, 5]);
    let h = opus::OpusHead::parse(&opus_head(1, 0)).unwrap();
    assert_eq!((h.channels, h.mapping_family), (1, 0));
}

#[test]
fn many_pids_and_many_streams_track_one_video_and_one_audio() {
    let fixture = data("ts/h264_aac.ts");
    let mut d = TsDemuxer::new();
    // Packets on every PID: none is tracked before a PMT names it.
    for pid in 0x20..0x1fff {
        d.push(&packet(
            pid,
            true,
            0,
            &[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1],
        ));
    }
    assert!(d.video.is_none() && d.audio.is_none() && d.pmt_pid.is_none());
    // A PMT listing 16 H.264 and 16 AAC streams: the first of each is taken.
    let mut body = vec![0x02, 0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
    for i in 0..16u16 {
        for (ty, pid) in [(0x1b, 0x100 + 2 * i), (0x0f, 0x101 + 2 * i)] {
            body.extend_from_slice(&[ty, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
        }
    }
    let len = body.len() - 3 + 4;
    body[1] = 0xb0 | (len >> 8) as u8;
    body[2] = len as u8;
    let crc = crc32_mpeg2(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    assert!(body.len() < 184, "fits one packet");
    let pat = tables(&fixture)[..PACKET_LEN].to_vec();
    d.push(&pat);
    let mut pmt = vec![0];
    pmt.extend_from_slice(&body);
    d.push(&packet(0x1000, true, 0, &pmt));
    assert_eq!(errors(&mut d), vec![]);
    let (v, a) = (d.video.as_ref().unwrap(), d.audio.as_ref().unwrap());
    assert_eq!(
        (v.pid, v.kind, a.pid, a.kind),
        (0x100, Kind::H264, 0x101, Kind::Aac)
    );
}

#[test]
fn bad_crc_and_bad_section_lengths_are_errors() {
    let fixture = data("ts/h264_aac.ts");
    let mut t = tables(&fixture);
    // Flip a bit in the PMT's CRC: the PMT is refused, no stream is set up.
    t[PACKET_LEN + 5 + 20] ^= 1;
    let mut d = TsDemuxer::new();
    d.push(&t);
    assert_eq!(errors(&mut d), vec![TsError::BadSection { pid: 0x1000 }]);
    assert!(d.video.is_none());
    // A section length over 1021.
    let mut t = tables(&fixture);
    t[6] = 0xb7;
    let mut d = TsDemuxer::new();
    d.push(&t);
    assert_eq!(errors(&mut d), vec![TsError::BadSection { pid: 0 }]);
    // A pointer field past the packet.
    let mut t = tables(&fixture);
    t[4] = 200;
    let mut d = TsDemuxer::new();
    d.push(&t);
    assert_eq!(errors(&mut d), vec![TsError::BadSection { pid: 0 }]);
}
