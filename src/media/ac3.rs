//! AC-3 and E-AC-3 sync frames (ATSC A/52 5.3 and Annex E): sample rate, channels, frame length
//! and samples per frame, and the ISO BMFF `dac3` / `dec3` bodies (ETSI TS 102 366 Annex F) built
//! from them. Parsing only; one independent substream (what encoders send for stereo/5.1).

/// AC-3 bitrates in kbps by `frmsizecod >> 1`.
const AC3_BITRATES: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];
const SAMPLE_RATES: [u32; 3] = [48000, 44100, 32000];
/// E-AC-3 reduced rates (`fscod2`) when `fscod` is 3.
const SAMPLE_RATES_HALF: [u32; 3] = [24000, 22050, 16000];
/// Full-bandwidth channels by `acmod`.
const ACMOD_CHANNELS: [u8; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncFrame {
    /// False for AC-3 (bsid <= 8), true for E-AC-3 (bsid 11..=16).
    pub enhanced: bool,
    pub fscod: u8,
    pub sample_rate: u32,
    pub bsid: u8,
    pub bsmod: u8,
    pub acmod: u8,
    pub lfeon: bool,
    /// AC-3 only: `frmsizecod` (its half is the `dac3` bit rate code).
    pub frmsizecod: u8,
    /// The whole sync frame in bytes.
    pub frame_len: usize,
    /// 1536 for AC-3; 256 per audio block for E-AC-3.
    pub samples: u32,
    pub bitrate_kbps: u32,
}

impl SyncFrame {
    /// Parses the sync frame header at the start of `b`. `None` without the 0x0B77 sync word, for
    /// reserved values, and for an E-AC-3 dependent substream first.
    pub fn parse(b: &[u8]) -> Option<SyncFrame> {
        if b.get(..2)? != [0x0b, 0x77] {
            return None;
        }
        // bsid sits at the same place in both syntaxes (bits 40..45).
        let bsid = *b.get(5)? >> 3;
        match bsid {
            0..=8 => Self::parse_ac3(b, bsid),
            11..=16 => Self::parse_eac3(b, bsid),
            _ => None,
        }
    }

    fn parse_ac3(b: &[u8], bsid: u8) -> Option<SyncFrame> {
        let h = b.get(..7)?;
        let fscod = h[4] >> 6;
        let frmsizecod = h[4] & 0x3f;
        let sample_rate = *SAMPLE_RATES.get(fscod as usize)?;
        let bitrate_kbps = *AC3_BITRATES.get(frmsizecod as usize / 2)?;
        let bsmod = h[5] & 0x07;
        let mut r = crate::media::avc::BitReader::new(&b[6..]);
        let acmod = r.bits(3)? as u8;
        if acmod & 1 != 0 && acmod != 1 {
            r.bits(2)?; // cmixlev
        }
        if acmod & 4 != 0 {
            r.bits(2)?; // surmixlev
        }
        if acmod == 2 {
            r.bits(2)?; // dsurmod
        }
        let lfeon = r.bit()?;
        // 16-bit words per frame: bitrate * 1536 samples / 16 bits / rate; 44.1 kHz alternates.
        let words = bitrate_kbps as usize * 96_000 / sample_rate as usize
            + if fscod == 1 {
                (frmsizecod & 1) as usize
            } else {
                0
            };
        Some(SyncFrame {
            enhanced: false,
            fscod,
            sample_rate,
            bsid,
            bsmod,
            acmod,
            lfeon,
            frmsizecod,
            frame_len: words * 2,
            samples: 1536,
            bitrate_kbps,
        })
    }

    fn parse_eac3(b: &[u8], bsid: u8) -> Option<SyncFrame> {
        let h = b.get(..6)?;
        let strmtyp = h[2] >> 6;
        if strmtyp == 1 {
            // A dependent substream describes extra channels of the one before it.
            return None;
        }
        let frmsiz = (((h[2] & 0x07) as usize) << 8) | h[3] as usize;
        let fscod = h[4] >> 6;
        let (sample_rate, blocks) = if fscod == 3 {
            (*SAMPLE_RATES_HALF.get(((h[4] >> 4) & 3) as usize)?, 6)
        } else {
            (
                SAMPLE_RATES[fscod as usize],
                [1, 2, 3, 6][((h[4] >> 4) & 3) as usize],
            )
        };
        let acmod = (h[4] >> 1) & 0x07;
        let lfeon = h[4] & 1 != 0;
        let frame_len = (frmsiz + 1) * 2;
        let samples = 256 * blocks;
        let bits_per_second = frame_len as u64 * 8 * sample_rate as u64 / samples as u64;
        Some(SyncFrame {
            enhanced: true,
            fscod,
            sample_rate,
            bsid,
            // bsmod is in the optional info metadata; 0 (complete main) is what it almost always is.
            bsmod: 0,
            acmod,
            lfeon,
            frmsizecod: 0,
            frame_len,
            samples,
            bitrate_kbps: ((bits_per_second + 500) / 1000) as u32,
        })
    }

    /// Channels including the LFE.
    pub fn channels(&self) -> u8 {
        ACMOD_CHANNELS[self.acmod as usize & 7] + self.lfeon as u8
    }

    /// The `dac3` body: fscod, bsid, bsmod, acmod, lfeon, bit_rate_code, 5 reserved bits.
    pub fn dac3(&self) -> [u8; 3] {
        let v: u32 = (self.fscod as u32 & 3) << 22
            | (self.bsid as u32 & 0x1f) << 17
            | (self.bsmod as u32 & 7) << 14
            | (self.acmod as u32 & 7) << 11
            | (self.lfeon as u32) << 10
            | ((self.frmsizecod as u32 >> 1) & 0x1f) << 5;
        let b = v.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// The `dec3` body for one independent substream without dependent ones.
    pub fn dec3(&self) -> [u8; 5] {
        let rate = self.bitrate_kbps.min(0x1fff);
        // data_rate(13) num_ind_sub(3) = 0 (one substream).
        let head = (rate << 3) as u16;
        let sub: u32 = (self.fscod as u32 & 3) << 22
            | (self.bsid as u32 & 0x1f) << 17
            | (self.bsmod as u32 & 7) << 12
            | (self.acmod as u32 & 7) << 9
            | (self.lfeon as u32) << 8;
        let h = head.to_be_bytes();
        let s = sub.to_be_bytes();
        [h[0], h[1], s[1], s[2], s[3]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ac3_mono_and_its_dac3() {
        // FFmpeg's AC-3 at 64 kbps, 44.1 kHz mono; its MP4 muxer wrote dac3 50 08 80.
        let f = SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0x48, 0x40, 0x2f]).unwrap();
        assert_eq!(
            (f.sample_rate, f.bitrate_kbps, f.acmod, f.lfeon),
            (44100, 64, 1, false)
        );
        assert_eq!((f.channels(), f.samples), (1, 1536));
        // 64 kbps at 44.1 kHz: 139 words (frmsizecod 8 is even, no extra word).
        assert_eq!(f.frame_len, 278);
        assert_eq!(f.dac3(), [0x50, 0x08, 0x80]);
    }

    #[test]
    fn ac3_5_1_at_48k() {
        // 448 kbps (frmsizecod 30), acmod 7 (3/2: cmixlev and surmixlev present), LFE on.
        // bits after bsid/bsmod: acmod 111, cmixlev 00, surmixlev 00, lfeon 1.
        let f = SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0x1e, 0x40, 0xe1, 0x00]).unwrap();
        assert_eq!(
            (f.sample_rate, f.bitrate_kbps, f.channels(), f.frame_len),
            (48000, 448, 6, 1792)
        );
        // fscod 0, bsid 8, bsmod 0, acmod 7, lfeon 1, bit rate code 15.
        assert_eq!(f.dac3(), [0x10, 0x3d, 0xe0]);
    }

    #[test]
    fn eac3_stereo_and_its_dec3() {
        // FFmpeg's E-AC-3 at 96 kbps, 44.1 kHz stereo; its MP4 muxer wrote dec3 03 00 60 04 00.
        let f = SyncFrame::parse(&[0x0b, 0x77, 0x00, 0xcf, 0x74, 0x87, 0xc0]).unwrap();
        assert!(f.enhanced);
        assert_eq!(
            (f.sample_rate, f.samples, f.frame_len, f.channels()),
            (44100, 1536, 416, 2)
        );
        assert_eq!(f.bsid, 16);
        assert_eq!(f.dec3(), [0x03, 0x00, 0x60, 0x04, 0x00]);
    }

    #[test]
    fn invalid_frames() {
        assert!(SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0x50]).is_none());
        assert!(SyncFrame::parse(&[0x0b, 0x78, 0, 0, 0x50, 0x40, 0x2f]).is_none());
        assert!(SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0xd0, 0x40, 0x2f]).is_none()); // fscod 3
        assert!(SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0x3f, 0x40, 0x2f]).is_none()); // frmsizecod 63
        assert!(SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0x50, 0x48, 0x2f]).is_none()); // bsid 9
                                                                                    // E-AC-3 dependent substream.
        assert!(SyncFrame::parse(&[0x0b, 0x77, 0x40, 0xcf, 0x74, 0x87]).is_none());
    }

    /// Every AC-3 tag of the FFmpeg 9 fixture (Enhanced `ac-3`) holds one whole sync frame.
    #[test]
    fn fixture_frames() {
        let flv = include_bytes!("../../tests/data/codecs/h264_ac3.flv");
        let mut n = 0;
        for (t, body) in crate::media::enhanced::tests::flv_tags(flv) {
            if t != 8 || body[0] != 0x91 {
                continue;
            }
            assert_eq!(&body[1..5], b"ac-3");
            let f = SyncFrame::parse(&body[5..]).unwrap();
            assert_eq!(
                (f.sample_rate, f.channels(), f.bitrate_kbps),
                (48000, 1, 64)
            );
            assert_eq!(f.frame_len, body.len() - 5);
            n += 1;
        }
        assert!(n > 50);
    }
}
