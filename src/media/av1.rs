//! AV1 helpers: the AV1CodecConfigurationRecord (the `av1C` body, AV1-ISOBMFF 2.3), its RFC 6381
//! codec string (`av01.0.08M.08`), and the maximum frame size from the sequence header OBU (AV1
//! 5.5). Parsing only; OBUs are carried through untouched.

use crate::media::avc::BitReader;

/// OBU type of a sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;

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

    /// `max_frame_width` and `max_frame_height` from the sequence header among the configOBUs.
    pub fn dimensions(&self, record: &[u8]) -> Option<(u32, u32)> {
        let obus = record.get(self.config_obus_at..)?;
        obus_of(obus)
            .find(|(ty, _)| *ty == OBU_SEQUENCE_HEADER)
            .and_then(|(_, payload)| sequence_header_dimensions(payload))
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

/// Iterates `(obu_type, payload)` over OBUs in the low-overhead format; stops at the first one
/// without a size field (only the last OBU may omit it) or that runs past the end.
pub fn obus_of(mut b: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let header = *b.first()?;
        let ty = (header >> 3) & 0x0f;
        let mut pos = 1 + ((header >> 2) & 1) as usize; // extension byte
        let size = if header & 0x02 != 0 {
            let (v, n) = leb128(b.get(pos..)?)?;
            pos += n;
            usize::try_from(v).ok()?
        } else {
            b.len().checked_sub(pos)?
        };
        let end = pos.checked_add(size)?;
        let payload = b.get(pos..end)?;
        b = &b[end..];
        Some((ty, payload))
    })
}

/// An unsigned LEB128 of at most 8 bytes: the value and the bytes it took.
fn leb128(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(8).enumerate() {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// `max_frame_width_minus_1 + 1` and the height from a sequence header OBU payload (AV1 5.5.1).
pub fn sequence_header_dimensions(p: &[u8]) -> Option<(u32, u32)> {
    let mut b = BitReader::new(p);
    b.bits(3)?; // seq_profile
    b.bit()?; // still_picture
    let reduced = b.bit()?;
    if reduced {
        b.bits(5)?; // seq_level_idx[0]
    } else {
        let timing_info = b.bit()?;
        let mut decoder_model_info = false;
        let mut buffer_delay_len = 0;
        if timing_info {
            b.bits(32)?; // num_units_in_display_tick
            b.bits(32)?; // time_scale
            if b.bit()? {
                uvlc(&mut b)?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info = b.bit()?;
            if decoder_model_info {
                buffer_delay_len = b.bits(5)? + 1;
                b.bits(32)?; // num_units_in_decoding_tick
                b.bits(5)?; // buffer_removal_time_length_minus_1
                b.bits(5)?; // frame_presentation_time_length_minus_1
            }
        }
        let initial_display_delay = b.bit()?;
        let points = b.bits(5)? + 1;
        for _ in 0..points {
            b.bits(12)?; // operating_point_idc
            if b.bits(5)? > 7 {
                b.bit()?; // seq_tier
            }
            if decoder_model_info && b.bit()? {
                b.bits(buffer_delay_len)?; // decoder_buffer_delay
                b.bits(buffer_delay_len)?; // encoder_buffer_delay
                b.bit()?; // low_delay_mode_flag
            }
            if initial_display_delay && b.bit()? {
                b.bits(4)?;
            }
        }
    }
    let wbits = b.bits(4)? + 1;
    let hbits = b.bits(4)? + 1;
    let w = b.bits(wbits)? as u64 + 1;
    let h = b.bits(hbits)? as u64 + 1;
    Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
}

/// What an `av1C` record's fixed part needs from a sequence header OBU payload (AV1 5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceInfo {
    pub profile: u8,
    pub level_idx: u8,
    pub tier: bool,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    pub chroma_sample_position: u8,
    pub reduced_still_picture_header: bool,
}

/// Parses a sequence header OBU payload down to its color config. `None` when it is cut short.
pub fn sequence_info(p: &[u8]) -> Option<SequenceInfo> {
    let mut b = BitReader::new(p);
    let profile = b.bits(3)? as u8;
    b.bit()?; // still_picture
    let reduced = b.bit()?;
    let (mut level_idx, mut tier) = (0u8, false);
    if reduced {
        level_idx = b.bits(5)? as u8;
    } else {
        let timing_info = b.bit()?;
        let mut decoder_model_info = false;
        let mut buffer_delay_len = 0;
        if timing_info {
            b.bits(32)?;
            b.bits(32)?;
            if b.bit()? {
                uvlc(&mut b)?;
            }
            decoder_model_info = b.bit()?;
            if decoder_model_info {
                buffer_delay_len = b.bits(5)? + 1;
                b.bits(32)?;
                b.bits(5)?;
                b.bits(5)?;
            }
        }
        let initial_display_delay = b.bit()?;
        let points = b.bits(5)? + 1;
        for i in 0..points {
            b.bits(12)?; // operating_point_idc
            let level = b.bits(5)? as u8;
            let t = level > 7 && b.bit()?;
            if i == 0 {
                (level_idx, tier) = (level, t);
            }
            if decoder_model_info && b.bit()? {
                b.bits(buffer_delay_len)?;
                b.bits(buffer_delay_len)?;
                b.bit()?;
            }
            if initial_display_delay && b.bit()? {
                b.bits(4)?;
            }
        }
    }
    let wbits = b.bits(4)? + 1;
    let hbits = b.bits(4)? + 1;
    b.bits(wbits)?;
    b.bits(hbits)?;
    if !reduced && b.bit()? {
        // frame_id_numbers_present_flag
        b.bits(4)?;
        b.bits(3)?;
    }
    b.bits(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if !reduced {
        b.bits(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = b.bit()?;
        if order_hint {
            b.bits(2)?; // jnt_comp, ref_frame_mvs
        }
        let force_screen_content = if b.bit()? { 2 } else { b.bits(1)? };
        if force_screen_content > 0 && !b.bit()? {
            b.bits(1)?; // seq_force_integer_mv
        }
        if order_hint {
            b.bits(3)?;
        }
    }
    b.bits(3)?; // enable_superres, enable_cdef, enable_restoration
                // color_config (5.5.2)
    let high_bitdepth = b.bit()?;
    let twelve_bit = profile == 2 && high_bitdepth && b.bit()?;
    let monochrome = profile != 1 && b.bit()?;
    let (mut cp, mut tc, mut mc) = (2, 2, 2);
    if b.bit()? {
        cp = b.bits(8)?;
        tc = b.bits(8)?;
        mc = b.bits(8)?;
    }
    let (sx, sy) = if monochrome {
        b.bit()?; // color_range
        (true, true)
    } else if cp == 1 && tc == 13 && mc == 0 {
        (false, false)
    } else {
        b.bit()?; // color_range
        match profile {
            0 => (true, true),
            1 => (false, false),
            _ if twelve_bit => {
                let sx = b.bit()?;
                (sx, sx && b.bit()?)
            }
            _ => (true, false),
        }
    };
    let csp = if !monochrome && sx && sy {
        b.bits(2)? as u8
    } else {
        0
    };
    Some(SequenceInfo {
        profile,
        level_idx,
        tier,
        high_bitdepth,
        twelve_bit,
        monochrome,
        subsampling_x: sx,
        subsampling_y: sy,
        chroma_sample_position: csp,
        reduced_still_picture_header: reduced,
    })
}

/// An AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3.3) for a sequence header OBU `obu` (the
/// whole OBU, header and size field included) whose payload is `payload`. `None` when the
/// sequence header does not parse.
pub fn av1c_record(obu: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let s = sequence_info(payload)?;
    let mut r = Vec::with_capacity(4 + obu.len());
    r.push(0x81);
    r.push(s.profile << 5 | (s.level_idx & 0x1f));
    r.push(
        u8::from(s.tier) << 7
            | u8::from(s.high_bitdepth) << 6
            | u8::from(s.twelve_bit) << 5
            | u8::from(s.monochrome) << 4
            | u8::from(s.subsampling_x) << 3
            | u8::from(s.subsampling_y) << 2
            | s.chroma_sample_position,
    );
    r.push(0);
    r.extend_from_slice(obu);
    Some(r)
}

/// AV1's variable-length code (4.10.3), bounded to 32 bits.
fn uvlc(b: &mut BitReader) -> Option<u32> {
    let mut zeros = 0;
    while !b.bit()? {
        zeros += 1;
        if zeros >= 32 {
            return None;
        }
    }
    let v = b.bits(zeros)?;
    Some(((1u64 << zeros) - 1 + v as u64).min(u32::MAX as u64) as u32)
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
        // The sequence header OBU (type 1) follows, with the picture size.
        assert_eq!((body[5 + c.config_obus_at] >> 3) & 0x0f, 1);
        assert_eq!(c.dimensions(&body[5..]), Some((160, 120)));
        // Cut anywhere inside the sequence header: no size, no panic.
        for n in 4..body.len() - 5 {
            let _ = c.dimensions(&body[5..5 + n]);
        }
    }

    #[test]
    fn reduced_still_picture_header() {
        // seq_profile 0, still 1, reduced 1, level 0; width bits 11 (10+1), height bits 11;
        // 1919 and 1079: 000 1 1 00000 1010 1010 11101111111 10000110111 + padding.
        let bits = "0001100000101010101110111111110000110111";
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, c) in bits.chars().enumerate() {
            if c == '1' {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        assert_eq!(sequence_header_dimensions(&bytes), Some((1920, 1080)));
        // OBU framing: header with has_size, leb128 size, then the payload.
        let mut obu = vec![(OBU_SEQUENCE_HEADER << 3) | 0x02, bytes.len() as u8];
        obu.extend_from_slice(&bytes);
        let got: Vec<_> = obus_of(&obu).collect();
        assert_eq!(got, vec![(OBU_SEQUENCE_HEADER, &bytes[..])]);
        // A size past the end yields nothing.
        assert_eq!(obus_of(&[0x0a, 0x7f, 0]).count(), 0);
        assert_eq!(leb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(leb128(&[0x80; 9]), None);
    }

    /// Random OBU streams and sequence headers: `None` or a value, never a panic or a hang.
    #[test]
    fn random_input_never_panics() {
        let mut x = 0xd1b5_4a32_d192_ed03u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let b: Vec<u8> = (0..(next() % 40)).map(|_| next() as u8).collect();
            let _ = sequence_header_dimensions(&b);
            assert!(obus_of(&b).count() <= b.len());
            let mut rec = vec![0x81, 0, 0, 0];
            rec.extend_from_slice(&b);
            if let Some(c) = Av1Config::parse(&rec) {
                let _ = c.dimensions(&rec);
            }
        }
    }

    #[test]
    fn av1c_from_the_fixtures_sequence_header_matches_ffmpegs_fixed_part() {
        let flv = include_bytes!("../../tests/data/codecs/av1_opus.flv");
        let body = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .find(|(t, _)| *t == 9)
            .unwrap()
            .1;
        let rec = &body[5..];
        let c = Av1Config::parse(rec).unwrap();
        let obus = &rec[c.config_obus_at..];
        let (ty, payload) = obus_of(obus).next().unwrap();
        assert_eq!(ty, OBU_SEQUENCE_HEADER);
        let ours = av1c_record(obus, payload).unwrap();
        assert_eq!(ours[..3], rec[..3]);
        let o = Av1Config::parse(&ours).unwrap();
        assert_eq!(o.codec_string(), c.codec_string());
        assert_eq!(o.dimensions(&ours), c.dimensions(rec));
        assert!(!sequence_info(payload).unwrap().reduced_still_picture_header);
        // Cut short anywhere: None, never a panic.
        for n in 0..payload.len() - 1 {
            let _ = sequence_info(&payload[..n]);
        }
        assert!(sequence_info(&payload[..4]).is_none());
    }
}
