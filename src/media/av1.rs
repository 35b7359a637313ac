//! AV1 helpers: the AV1CodecConfigurationRecord (the `av1C` body, AV1-ISOBMFF 2.3) and its RFC 6381
//! codec string (`av01.0.08M.08`). Parsing only; OBUs are carried through untouched.

/// The parsed AV1CodecConfigurationRecord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    pub profile: u8,
    pub level_idx: u8,
    /// `seq_tier_0`: false Main (M), true High (H).
    pub tier: bool,
    /// 8, 10 or 12.
    pub bit_depth: u8,
    pub monochrome: bool,
    pub chroma_subsampling_x: bool,
    pub chroma_subsampling_y: bool,
    pub chroma_sample_position: u8,
    /// `initial_presentation_delay_minus_one + 1`, when present.
    pub initial_presentation_delay: Option<u8>,
    /// Offset of the configOBUs (the sequence header OBU) in the record.
    pub config_obus_at: usize,
}

impl Av1Config {
    /// Parses the 4-byte fixed part (marker 1, version 1) followed by configOBUs. `None` when
    /// shorter or with another marker/version.
    pub fn parse(record: &[u8]) -> Option<Av1Config> {
        let b = record.get(..4)?;
        if b[0] != 0x81 {
            return None;
        }
        let high_bitdepth = b[2] & 0x40 != 0;
        let twelve_bit = b[2] & 0x20 != 0;
        Some(Av1Config {
            profile: b[1] >> 5,
            level_idx: b[1] & 0x1f,
            tier: b[2] & 0x80 != 0,
            bit_depth: match (high_bitdepth, twelve_bit) {
                (false, _) => 8,
                (true, false) => 10,
                (true, true) => 12,
            },
            monochrome: b[2] & 0x10 != 0,
            chroma_subsampling_x: b[2] & 0x08 != 0,
            chroma_subsampling_y: b[2] & 0x04 != 0,
            chroma_sample_position: b[2] & 0x03,
            initial_presentation_delay: (b[3] & 0x10 != 0).then_some((b[3] & 0x0f) + 1),
            config_obus_at: 4,
        })
    }

    /// RFC 6381 codec string (the short form of the AV1-ISOBMFF "codecs" parameter).
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.profile,
            self.level_idx,
            if self.tier { 'H' } else { 'M' },
            self.bit_depth
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_codec_string() {
        // Main profile, level 4.0 (idx 8), Main tier, 8-bit 4:2:0, no delay, no OBUs.
        let c = Av1Config::parse(&[0x81, 0x08, 0x0c, 0x00]).unwrap();
        assert_eq!(c.codec_string(), "av01.0.08M.08");
        assert!(c.chroma_subsampling_x && c.chroma_subsampling_y && !c.monochrome);
        assert_eq!(c.initial_presentation_delay, None);
        // High profile (1), level idx 13, High tier, 10-bit, delay 3.
        let c = Av1Config::parse(&[0x81, 0x2d, 0xc0, 0x12, 0x0a]).unwrap();
        assert_eq!(c.codec_string(), "av01.1.13H.10");
        assert_eq!(c.initial_presentation_delay, Some(3));
        // Professional profile, 12-bit.
        assert_eq!(
            Av1Config::parse(&[0x81, 0x40, 0x60, 0]).unwrap().bit_depth,
            12
        );
    }

    #[test]
    fn bad_records() {
        for n in 0..4 {
            assert!(Av1Config::parse(&[0x81, 0, 0, 0][..n]).is_none());
        }
        assert!(Av1Config::parse(&[0x01, 0, 0, 0]).is_none());
    }

    #[test]
    fn fixture_record() {
        let flv = include_bytes!("../../tests/data/codecs/av1_opus.flv");
        let body = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .find(|(t, _)| *t == 9)
            .unwrap()
            .1;
        assert_eq!(&body[..5], b"\x90av01");
        let c = Av1Config::parse(&body[5..]).unwrap();
        // SVT-AV1 at 160x120: Main profile, level 2.0 (idx 0), 8-bit.
        assert_eq!(c.codec_string(), "av01.0.00M.08");
        // The sequence header OBU (type 1) follows.
        assert_eq!((body[5 + c.config_obus_at] >> 3) & 0x0f, 1);
    }
}
