//! MPEG audio (MP1/MP2/MP3) frame header (ISO/IEC 11172-3 2.4.1.3, 13818-3): version, layer, sample
//! rate, channels, bitrate, frame length and samples per frame, and the MP4 object type / RFC 6381
//! codec string (`mp4a.6B` for MPEG-1, `mp4a.69` for MPEG-2/2.5). Parsing only.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Mpeg1,
    Mpeg2,
    /// The unofficial low-rate extension.
    Mpeg25,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: Version,
    /// 1, 2 or 3.
    pub layer: u8,
    pub protected: bool,
    pub bitrate_kbps: u32,
    pub sample_rate: u32,
    pub padding: bool,
    /// 1 for single channel (mode 3), else 2.
    pub channels: u8,
    /// The whole frame, header included, in bytes.
    pub frame_len: usize,
    pub samples: u32,
}

const BITRATES_V1: [[u32; 15]; 3] = [
    [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
];
const BITRATES_V2: [[u32; 15]; 2] = [
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

impl FrameHeader {
    /// Parses the 4-byte header at the start of `b`. `None` without a sync word, for reserved
    /// version/layer/rate values, and for free-format or invalid bitrates.
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h = b.get(..4)?;
        if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
            return None;
        }
        let version = match (h[1] >> 3) & 3 {
            0 => Version::Mpeg25,
            2 => Version::Mpeg2,
            3 => Version::Mpeg1,
            _ => return None,
        };
        let layer = match (h[1] >> 1) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let bitrate_index = (h[2] >> 4) as usize;
        if bitrate_index == 0 || bitrate_index == 15 {
            return None;
        }
        let bitrate_kbps = match version {
            Version::Mpeg1 => BITRATES_V1[layer as usize - 1][bitrate_index],
            _ => BITRATES_V2[(layer != 1) as usize][bitrate_index],
        };
        let rates: [u32; 3] = match version {
            Version::Mpeg1 => [44100, 48000, 32000],
            Version::Mpeg2 => [22050, 24000, 16000],
            Version::Mpeg25 => [11025, 12000, 8000],
        };
        let sample_rate = *rates.get(((h[2] >> 2) & 3) as usize)?;
        let padding = h[2] & 0x02 != 0;
        let samples = match (layer, version) {
            (1, _) => 384,
            (2, _) | (3, Version::Mpeg1) => 1152,
            _ => 576,
        };
        let br = bitrate_kbps as usize * 1000;
        let sr = sample_rate as usize;
        let frame_len = if layer == 1 {
            (12 * br / sr + padding as usize) * 4
        } else {
            // samples / 8 bytes per bit-per-sample: 144 for 1152 samples, 72 for 576.
            (samples as usize / 8) * br / sr + padding as usize
        };
        Some(FrameHeader {
            version,
            layer,
            protected: h[1] & 1 == 0,
            bitrate_kbps,
            sample_rate,
            padding,
            channels: if h[3] >> 6 == 3 { 1 } else { 2 },
            frame_len,
            samples,
        })
    }

    /// The MP4 `objectTypeIndication`: 0x6B MPEG-1 audio, 0x69 MPEG-2 (and 2.5) audio.
    pub fn object_type(&self) -> u8 {
        match self.version {
            Version::Mpeg1 => 0x6b,
            _ => 0x69,
        }
    }

    /// RFC 6381 codec string.
    pub fn codec_string(&self) -> String {
        format!("mp4a.{:02X}", self.object_type())
    }

    /// MPEG-TS stream type: 0x03 MPEG-1 audio, 0x04 MPEG-2 audio.
    pub fn ts_stream_type(&self) -> u8 {
        match self.version {
            Version::Mpeg1 => 0x03,
            _ => 0x04,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpeg1_layer3() {
        // 128 kbps, 44.1 kHz, joint stereo, no padding: 417 bytes.
        let h = FrameHeader::parse(&[0xff, 0xfb, 0x90, 0x64]).unwrap();
        assert_eq!(
            (h.version, h.layer, h.bitrate_kbps, h.sample_rate),
            (Version::Mpeg1, 3, 128, 44100)
        );
        assert_eq!((h.channels, h.frame_len, h.samples), (2, 417, 1152));
        assert!(!h.protected);
        assert_eq!(
            (h.codec_string(), h.ts_stream_type()),
            ("mp4a.6B".into(), 3)
        );
        // Padded: one byte more.
        assert_eq!(
            FrameHeader::parse(&[0xff, 0xfb, 0x92, 0x64])
                .unwrap()
                .frame_len,
            418
        );
    }

    #[test]
    fn mpeg2_and_25_and_layers_1_2() {
        // MPEG-2 layer 3, 64 kbps, 22.05 kHz, mono: 72 * 64000 / 22050 = 208.
        let h = FrameHeader::parse(&[0xff, 0xf3, 0x80, 0xc0]).unwrap();
        assert_eq!(
            (h.version, h.samples, h.frame_len, h.channels),
            (Version::Mpeg2, 576, 208, 1)
        );
        assert_eq!(
            (h.codec_string(), h.ts_stream_type()),
            ("mp4a.69".into(), 4)
        );
        // MPEG-2.5 layer 3, 8 kbps, 8 kHz: 72 * 8000 / 8000 = 72.
        let h = FrameHeader::parse(&[0xff, 0xe3, 0x18, 0xc0]).unwrap();
        assert_eq!(
            (h.version, h.sample_rate, h.frame_len),
            (Version::Mpeg25, 8000, 72)
        );
        // MPEG-1 layer 2, 192 kbps, 48 kHz: 144 * 192000 / 48000 = 576, with CRC.
        let h = FrameHeader::parse(&[0xff, 0xfc, 0xa4, 0x00]).unwrap();
        assert_eq!(
            (h.layer, h.bitrate_kbps, h.frame_len, h.protected),
            (2, 192, 576, true)
        );
        // MPEG-1 layer 1, 384 kbps, 32 kHz: (12 * 384000 / 32000) * 4 = 576, 384 samples.
        let h = FrameHeader::parse(&[0xff, 0xff, 0xc8, 0x00]).unwrap();
        assert_eq!((h.layer, h.frame_len, h.samples), (1, 576, 384));
    }

    #[test]
    fn invalid_headers() {
        assert!(FrameHeader::parse(&[0xff, 0xfb, 0x90]).is_none());
        assert!(FrameHeader::parse(&[0xfe, 0xfb, 0x90, 0x64]).is_none()); // no sync
        assert!(FrameHeader::parse(&[0xff, 0xeb, 0x90, 0x64]).is_none()); // reserved version
        assert!(FrameHeader::parse(&[0xff, 0xf9, 0x90, 0x64]).is_none()); // reserved layer
        assert!(FrameHeader::parse(&[0xff, 0xfb, 0x00, 0x64]).is_none()); // free format
        assert!(FrameHeader::parse(&[0xff, 0xfb, 0xf0, 0x64]).is_none()); // bad bitrate
        assert!(FrameHeader::parse(&[0xff, 0xfb, 0x9c, 0x64]).is_none()); // reserved rate
    }

    /// Every MP3 tag of the FFmpeg 9 fixture holds exactly one frame, as its header says.
    #[test]
    fn fixture_frames() {
        let flv = include_bytes!("../../tests/data/codecs/h264_mp3.flv");
        let mut n = 0;
        for (t, body) in crate::media::enhanced::tests::flv_tags(flv) {
            if t != 8 {
                continue;
            }
            assert_eq!(body[0] >> 4, 2, "legacy sound format 2");
            let h = FrameHeader::parse(&body[1..]).unwrap();
            assert_eq!(
                (h.version, h.layer, h.sample_rate, h.channels),
                (Version::Mpeg1, 3, 44100, 1)
            );
            assert_eq!(h.frame_len, body.len() - 1);
            n += 1;
        }
        assert!(n > 100);
    }
}
