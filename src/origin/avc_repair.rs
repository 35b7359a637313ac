//! H.264 published with its parameter sets in-band and no configuration record: FFmpeg's FLV
//! muxer without extradata (behind `-f tee`, or with `-flags -global_header`), and encoders
//! that do the same, send an empty AVCDecoderConfigurationRecord (`17 00 00 00 00`) and then
//! every picture in Annex B (start codes) with SPS and PPS in front of each keyframe. Players
//! and muxers that need the record (WebRTC, fMP4, MPEG-TS, mpegts.js) get no picture from that.
//! This turns such a stream into a normal one at ingest: the empty record is held back, each
//! Annex B picture becomes AVCC (4-byte lengths), and a record built from the in-band SPS/PPS
//! goes out before the first picture that brings them (again when they change).
//!
//! Only a legacy H.264 tag (codec id 7) on the default track after an empty record is touched;
//! a stream with a record (good or not) passes through as it is.

use bytes::Bytes;

use crate::media::avc::{NAL_PPS, NAL_SPS};
use crate::media::frame::{Codec, Frame, Track, TAG_VIDEO};
use crate::mux::ts_demux::{annex_b, avc_record};

/// One publisher's repair state.
#[derive(Debug, Default)]
pub struct AvcRepair {
    /// The publisher sent a record that does not parse: its pictures are repaired.
    active: bool,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    /// Pictures repaired, for the one log line.
    pub repaired: u64,
}

/// What to pass on instead of a frame: nothing, the frame, or a record and then the frame.
pub enum Repaired {
    Drop,
    Pass(Frame),
    WithRecord(Frame, Frame),
}

impl AvcRepair {
    pub fn repair(&mut self, frame: Frame) -> Repaired {
        if frame.track != Track::Video
            || frame.track_id != 0
            || frame.codec != Codec::Avc
            || frame.data.len() < 5
            || frame.data[0] & 0x0f != 7
        {
            return Repaired::Pass(frame);
        }
        if frame.config {
            if frame.data.len() > 5 {
                // A record (one that does not parse goes on as before: players judge it).
                self.active = false;
                return Repaired::Pass(frame);
            }
            // An empty record: the pictures' own parameter sets will make one.
            self.active = true;
            return Repaired::Drop;
        }
        if !self.active {
            return Repaired::Pass(frame);
        }
        let body = &frame.data[5..];
        if !(body.starts_with(&[0, 0, 1]) || body.starts_with(&[0, 0, 0, 1])) {
            // Not Annex B after all: nothing to build a record from.
            return Repaired::Pass(frame);
        }
        let (mut sps, mut pps) = (Vec::new(), Vec::new());
        let mut avcc = Vec::with_capacity(frame.data.len() + 16);
        avcc.extend_from_slice(&frame.data[..5]);
        for nal in annex_b(body) {
            match nal[0] & 0x1f {
                NAL_SPS => sps.push(Bytes::copy_from_slice(nal)),
                NAL_PPS => pps.push(Bytes::copy_from_slice(nal)),
                _ => {}
            }
            avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            avcc.extend_from_slice(nal);
        }
        self.repaired += 1;
        let picture = with_data(&frame, avcc);
        let changed = !sps.is_empty() && !pps.is_empty() && (sps != self.sps || pps != self.pps);
        if !changed {
            return match picture {
                Some(p) => Repaired::Pass(p),
                None => Repaired::Drop,
            };
        }
        let record = avc_record(&sps, &pps).and_then(|r| {
            let mut data = vec![0x17, 0, 0, 0, 0];
            data.extend_from_slice(&r);
            with_data(&frame, data)
        });
        match (record, picture) {
            (Some(r), Some(p)) => {
                self.sps = sps;
                self.pps = pps;
                Repaired::WithRecord(r, p)
            }
            (_, Some(p)) => Repaired::Pass(p),
            _ => Repaired::Drop,
        }
    }
}

/// `frame` with its tag body replaced (the same time, and what `Frame::parse` reads from it).
fn with_data(frame: &Frame, data: Vec<u8>) -> Option<Frame> {
    let mut f = Frame::parse(TAG_VIDEO, frame.dts, Bytes::from(data))?;
    f.time = frame.time;
    f.discontinuity = frame.discontinuity;
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::avc::AvcConfig;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6, 0x02, 0x20,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0];

    fn tag(head: [u8; 5], body: &[u8]) -> Frame {
        let mut d = head.to_vec();
        d.extend_from_slice(body);
        Frame::parse(TAG_VIDEO, 40, Bytes::from(d)).unwrap()
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat())
            .collect()
    }

    #[test]
    fn an_empty_record_and_annex_b_pictures_become_a_record_and_avcc() {
        let mut r = AvcRepair::default();
        // FFmpeg's FLV muxer without extradata: an empty record, held back.
        assert!(matches!(
            r.repair(tag([0x17, 0, 0, 0, 0], &[])),
            Repaired::Drop
        ));
        let idr = [0x65, 0x88, 0x84, 0x00, 0x33];
        let key = tag([0x17, 1, 0, 0, 0], &annexb(&[SPS, PPS, &idr]));
        let Repaired::WithRecord(rec, pic) = r.repair(key) else {
            panic!("a record first")
        };
        assert!(rec.config && rec.key);
        let cfg = AvcConfig::parse(&rec.data[5..]).expect("a record that parses");
        assert_eq!((cfg.sps[0].as_ref(), cfg.pps[0].as_ref()), (SPS, PPS));
        assert!(pic.key && !pic.config);
        // AVCC with 4-byte lengths: SPS, PPS, the IDR slice.
        let mut want = vec![0x17, 1, 0, 0, 0];
        for n in [SPS, PPS, &idr[..]] {
            want.extend_from_slice(&(n.len() as u32).to_be_bytes());
            want.extend_from_slice(n);
        }
        assert_eq!(pic.data.as_ref(), &want[..]);
        // An inter picture: AVCC, no new record.
        let p = [0x41, 0x9a, 0x3b];
        let Repaired::Pass(f) = r.repair(tag([0x27, 1, 0, 0, 0], &annexb(&[&p]))) else {
            panic!("the picture only")
        };
        assert_eq!(&f.data[5..], &[0, 0, 0, 3, 0x41, 0x9a, 0x3b][..]);
        // The next keyframe with the same sets: no new record.
        assert!(matches!(
            r.repair(tag([0x17, 1, 0, 0, 0], &annexb(&[SPS, PPS, &idr]))),
            Repaired::Pass(_)
        ));
        assert_eq!(r.repaired, 3);
    }

    #[test]
    fn a_stream_with_a_good_record_passes_untouched() {
        let mut r = AvcRepair::default();
        let mut record = vec![1, 0x64, 0, 0x0d, 0xff, 0xe1];
        record.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        record.extend_from_slice(SPS);
        record.push(1);
        record.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        record.extend_from_slice(PPS);
        let cfg = tag([0x17, 0, 0, 0, 0], &record);
        let Repaired::Pass(f) = r.repair(cfg.clone()) else {
            panic!()
        };
        assert_eq!(f.data, cfg.data);
        // AVCC whose first length is 1 looks like a start code: untouched all the same.
        let pic = tag([0x17, 1, 0, 0, 0], &[0, 0, 0, 1, 0x65]);
        let Repaired::Pass(f) = r.repair(pic.clone()) else {
            panic!()
        };
        assert_eq!(f.data, pic.data);
        assert_eq!(r.repaired, 0);
    }

    #[test]
    fn hostile_bytes_after_an_empty_record_never_panic() {
        let mut rng = crate::testutil::Rng::new(7);
        let mut r = AvcRepair::default();
        let _ = r.repair(tag([0x17, 0, 0, 0, 0], &[]));
        for _ in 0..2000 {
            let mut body: Vec<u8> = vec![0, 0, 1];
            body.extend((0..rng.below(200)).map(|_| rng.below(256) as u8));
            if let Some(f) = Frame::parse(
                TAG_VIDEO,
                0,
                Bytes::from([&[0x17u8, 1, 0, 0, 0][..], &body].concat()),
            ) {
                let _ = r.repair(f);
            }
        }
    }
}
