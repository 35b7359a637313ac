//! FLV bytes (HTTP-FLV bodies, WS-FLV messages) to frames with the crate's demuxer, counted
//! into `Stats`; only the track and the key/config flags are looked at.

use std::time::Instant;

use bytes::BytesMut;
use rtmpd::mux::flv_demux::{FlvDemuxer, FlvItem};

use crate::stats::Stats;
use crate::TAG_CAP;

/// FLV bytes to frames, with the crate's demuxer; only the track and the key/config flags are
/// looked at.
pub(crate) struct FlvReader {
    pub(crate) buf: BytesMut,
    pub(crate) demux: FlvDemuxer,
}

impl FlvReader {
    pub(crate) fn new() -> FlvReader {
        FlvReader {
            buf: BytesMut::new(),
            demux: FlvDemuxer::with_max_tag(TAG_CAP as u32),
        }
    }

    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        stats: &mut Stats,
        now: Instant,
    ) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        loop {
            match self.demux.next(&mut self.buf) {
                Ok(Some(FlvItem::Frame(f))) => stats.on_frame(f.track, f.key, f.config, f.dts, now),
                Ok(Some(FlvItem::Header { .. })) => {}
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        // Room for the whole pending tag at once, rather than growing step by step as a large
        // keyframe trickles in.
        if self.buf.len() >= 11 {
            let body = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
            let total = 11 + body + 4;
            if total > self.buf.len() && total <= TAG_CAP + 15 {
                self.buf.reserve(total - self.buf.len());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::every_split;
    use bytes::Bytes;
    use rtmpd::media::Frame;
    use rtmpd::mux::flv;

    fn flv_fixture() -> Vec<u8> {
        let mut v = flv::file_header(true, true).to_vec();
        for (t, ts, body) in [
            (18u8, 0u32, &[2u8, 0, 10][..]),
            (9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64][..]),
            (8, 0, &[0xaf, 0, 0x12, 0x10][..]),
            (9, 40, &[0x27, 1, 0, 0, 0, 9][..]),
            (9, 80, &[0x17, 1, 0, 0, 0, 9][..]),
            (8, 23, &[0xaf, 1, 0x21][..]),
        ] {
            let f = Frame::parse(t, ts, Bytes::copy_from_slice(body)).unwrap();
            flv::write_tag(&mut v, &f);
        }
        v
    }

    #[test]
    fn flv_frames_and_first_keyframe_any_split() {
        let input = flv_fixture();
        let (frames, key_seen, saw_video) = every_split(&input, |parts| {
            let mut r = FlvReader::new();
            let mut s = Stats::new(Instant::now());
            for p in parts {
                r.feed(p, &mut s, Instant::now()).unwrap();
            }
            (s.frames, s.first_video_key.is_some(), s.saw_video)
        });
        // Five audio/video tags (sequence headers included), metadata not counted.
        assert_eq!(frames, 5);
        assert!(key_seen && saw_video);
    }

    #[test]
    fn flv_sequence_header_is_not_the_first_keyframe() {
        let input = flv_fixture();
        let mut r = FlvReader::new();
        let mut s = Stats::new(Instant::now());
        // Up to and including the inter frame: header tags only, no picture keyframe yet.
        let upto = 13 + (11 + 3 + 4) + (11 + 7 + 4) + (11 + 4 + 4) + (11 + 6 + 4);
        r.feed(&input[..upto], &mut s, Instant::now()).unwrap();
        assert!(s.first_video_key.is_none());
        assert!(FlvReader::new()
            .feed(b"NOTFLV-AT-ALL", &mut s, Instant::now())
            .is_err());
    }
}
