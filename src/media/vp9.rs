//! VP9 helpers: the VPCodecConfigurationRecord (VP Codec ISO Media File Format 2.2, the `vpcC` body),
//! its RFC 6381 codec string (`vp09.00.10.08`), and the frame size from a keyframe's uncompressed
//! header (VP9 bitstream 6.2). Parsing only.

use crate::media::avc::BitReader;

/// The parsed VPCodecConfigurationRecord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vp9Config {
    pub profile: u8,
    pub level: u8,
    pub bit_depth: u8,
    pub chroma_subsampling: u8,
    pub full_range: bool,
    pub colour_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
    /// `codecInitializationData` (empty for VP9).
    pub init_data: Vec<u8>,
}

impl Vp9Config {
    /// Parses a record. Accepts it bare or, as FFmpeg writes it into FLV, after the `vpcC` full
    /// box's version (1) and flags (0).
    pub fn parse(record: &[u8]) -> Option<Vp9Config> {
        // With the 4-byte prefix, the init data size must account for the bytes left exactly.
        let prefixed = record.len() >= 12
            && record[..4] == [1, 0, 0, 0]
            && u16::from_be_bytes([record[10], record[11]]) as usize == record.len() - 12;
        let r = if prefixed { &record[4..] } else { record };
        let f = r.get(..8)?;
        let init_len = u16::from_be_bytes([f[6], f[7]]) as usize;
        let init_data = r.get(8..8 + init_len)?.to_vec();
        Some(Vp9Config {
            profile: f[0],
            level: f[1],
            bit_depth: f[2] >> 4,
            chroma_subsampling: (f[2] >> 1) & 0x07,
            full_range: f[2] & 1 != 0,
            colour_primaries: f[3],
            transfer_characteristics: f[4],
            matrix_coefficients: f[5],
            init_data,
        })
    }

    /// The record bytes (without the full box header), as the `vpcC` box carries after it.
    pub fn record(&self) -> Vec<u8> {
        let mut v = vec![
            self.profile,
            self.level,
            (self.bit_depth << 4) | ((self.chroma_subsampling & 7) << 1) | self.full_range as u8,
            self.colour_primaries,
            self.transfer_characteristics,
            self.matrix_coefficients,
        ];
        let n = self.init_data.len().min(u16::MAX as usize);
        v.extend_from_slice(&(n as u16).to_be_bytes());
        v.extend_from_slice(&self.init_data[..n]);
        v
    }

    /// RFC 6381 codec string (short form: profile, level, bit depth).
    pub fn codec_string(&self) -> String {
        format!(
            "vp09.{:02}.{:02}.{:02}",
            self.profile, self.level, self.bit_depth
        )
    }
}

/// Width and height from the uncompressed header of a VP9 keyframe; `None` for an inter frame,
/// a "show existing frame", or a truncated header.
pub fn keyframe_dimensions(frame: &[u8]) -> Option<(u32, u32)> {
    let mut b = BitReader::new(frame);
    if b.bits(2)? != 2 {
        return None; // frame_marker
    }
    let profile = b.bits(1)? | (b.bits(1)? << 1);
    if profile == 3 {
        b.bit()?; // reserved_zero
    }
    if b.bit()? {
        return None; // show_existing_frame
    }
    if b.bit()? {
        return None; // frame_type 1: not a keyframe
    }
    b.bit()?; // show_frame
    b.bit()?; // error_resilient_mode
    if b.bits(24)? != 0x49_83_42 {
        return None; // frame_sync_code
    }
    // color_config
    if profile >= 2 {
        b.bit()?; // ten_or_twelve_bit
    }
    let color_space = b.bits(3)?;
    if color_space != 7 {
        b.bit()?; // color_range
        if profile == 1 || profile == 3 {
            b.bits(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        b.bit()?; // reserved_zero
    }
    let w = b.bits(16)? + 1;
    let h = b.bits(16)? + 1;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: [u8; 8] = [0x00, 0x0a, 0x82, 0x02, 0x02, 0x02, 0x00, 0x00];

    #[test]
    fn bare_and_prefixed_records() {
        let c = Vp9Config::parse(&BARE).unwrap();
        assert_eq!(c.codec_string(), "vp09.00.10.08");
        assert_eq!(
            (c.bit_depth, c.chroma_subsampling, c.full_range),
            (8, 1, false)
        );
        assert_eq!(c.record(), BARE.to_vec());
        let mut pre = vec![1, 0, 0, 0];
        pre.extend_from_slice(&BARE);
        assert_eq!(Vp9Config::parse(&pre), Some(c));
        // Profile 2, level 4.1, 10-bit 4:2:0 colocated, full range.
        let c = Vp9Config::parse(&[2, 41, 0xa3, 9, 16, 9, 0, 0]).unwrap();
        assert_eq!(c.codec_string(), "vp09.02.41.10");
        assert!(c.full_range);
    }

    #[test]
    fn truncated_records() {
        for n in 0..BARE.len() {
            assert!(Vp9Config::parse(&BARE[..n]).is_none());
        }
        // Init data longer than the record.
        assert!(Vp9Config::parse(&[0, 10, 0x82, 2, 2, 2, 0, 5, 1]).is_none());
    }

    #[test]
    fn fixture_record() {
        let flv = include_bytes!("../../tests/data/codecs/vp9_opus.flv");
        let body = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .find(|(t, _)| *t == 9)
            .unwrap()
            .1;
        assert_eq!(&body[..5], b"\x90vp09");
        let c = Vp9Config::parse(&body[5..]).unwrap();
        assert_eq!(c.codec_string(), "vp09.00.10.08");
        // The first coded frame is a keyframe of 160x120; the second an inter frame.
        let coded: Vec<_> = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .filter(|(t, b)| *t == 9 && b[1..5] == *b"vp09" && b[0] & 0x0f == 1)
            .collect();
        assert_eq!(keyframe_dimensions(&coded[0].1[5..]), Some((160, 120)));
        assert_eq!(keyframe_dimensions(&coded[1].1[5..]), None);
        // The size ends in the 9th byte: every shorter cut has none.
        for n in 0..9 {
            assert_eq!(keyframe_dimensions(&coded[0].1[5..5 + n]), None);
        }
    }
}
