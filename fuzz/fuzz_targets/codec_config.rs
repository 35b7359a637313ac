//! Codec configuration parsers (`media::avc`, `media::aac`) and the frame classifier on arbitrary
//! bytes: no panic; Annex B output is exactly the NAL units with start codes; an ADTS header
//! carries the frame length it was asked for whenever 13 bits can hold it.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rtmpd::media::aac::AudioSpecificConfig;
use rtmpd::media::avc::{nal_units, sps_dimensions, to_annex_b, AvcConfig};
use rtmpd::media::Frame;
use rtmpd::mux::ts::{adts_frame, avc_access_unit};
use rtmpd_fuzz::Cursor;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let op = c.u8();
    let len_size = (op >> 4) % 5;
    let rest = c.rest();
    let _ = Frame::parse(op, 0, Bytes::copy_from_slice(rest));
    let _ = sps_dimensions(rest);
    let mut out = Vec::new();
    to_annex_b(rest, len_size, &mut out);
    let want: usize = nal_units(rest, len_size).map(|n| 4 + n.len()).sum();
    assert_eq!(out.len(), want);
    if let Some(cfg) = AvcConfig::parse(rest) {
        assert!(matches!(cfg.nal_length_size, 1 | 2 | 4));
        assert!(!cfg.sps.is_empty());
        let _ = cfg.codec_string();
        let mut au = Vec::new();
        avc_access_unit(rest, &cfg, op & 1 != 0, &mut au);
        assert!(au.starts_with(&[0, 0, 0, 1, 9]));
    }
    if let Some(asc) = AudioSpecificConfig::parse(rest) {
        let _ = asc.codec_string();
        let n = rest.len() * 7 % 8200;
        let h = asc.adts_header(n);
        assert_eq!(&h[..2], &[0xff, 0xf1]);
        let frame_length = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if n + 7 <= 0x1fff {
            assert_eq!(frame_length, n + 7);
        }
        // A frame the 13-bit length cannot describe is refused, with nothing written.
        let mut adts = Vec::new();
        if adts_frame(&asc, rest, &mut adts) {
            assert_eq!(adts.len(), rest.len() + 7);
        } else {
            assert!(rest.len() + 7 > 0x1fff && adts.is_empty());
        }
    }
});
