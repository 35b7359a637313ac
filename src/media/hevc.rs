//! H.265 helpers: the HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1.2) with its
//! VPS/SPS/PPS arrays, the RFC 6381 / ISO/IEC 14496-15 Annex E codec string (`hvc1.1.6.L93.B0`),
//! the picture size from the SPS, and NAL unit types. Parsing only; no container logic.

use bytes::Bytes;

use crate::media::avc::{unescape, BitReader};

/// NAL unit types (H.265 Table 7-1) the muxers care about.
pub const NAL_BLA_W_LP: u8 = 16;
/// The last IRAP type (reserved IRAP types 22 and 23 included).
pub const NAL_IRAP_LAST: u8 = 23;
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;

/// The NAL unit type (bits 1..7 of the first header byte); 0 for an empty unit.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// An IRAP picture (BLA, IDR, CRA): where a decoder can start, so parameter sets go before it.
pub fn is_irap(nal_type: u8) -> bool {
    (NAL_BLA_W_LP..=NAL_IRAP_LAST).contains(&nal_type)
}

/// One array of the record: NAL units of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NalArray {
    pub completeness: bool,
    pub nal_type: u8,
    pub units: Vec<Bytes>,
}

/// The parsed HEVCDecoderConfigurationRecord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    pub profile_space: u8,
    pub tier: bool,
    pub profile_idc: u8,
    pub compatibility: u32,
    /// The 48-bit general constraint indicator flags, as 6 bytes.
    pub constraints: [u8; 6],
    pub level_idc: u8,
    pub chroma_format: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Bytes in each NAL unit length prefix: 1, 2 or 4.
    pub nal_length_size: u8,
    pub arrays: Vec<NalArray>,
    /// Picture size after the conformance window, from the first SPS (0 when unreadable).
    pub width: u32,
    pub height: u32,
}

/// The fixed part of the record before the arrays.
const FIXED_LEN: usize = 23;

impl HevcConfig {
    /// Parses a record (an HEVC sequence header's payload). `None` when truncated or malformed.
    pub fn parse(record: &[u8]) -> Option<HevcConfig> {
        if record.len() < FIXED_LEN || record[0] != 1 {
            return None;
        }
        let b1 = record[1];
        let compatibility = u32::from_be_bytes([record[2], record[3], record[4], record[5]]);
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&record[6..12]);
        let level_idc = record[12];
        let chroma_format = record[16] & 0x03;
        let bit_depth_luma = (record[17] & 0x07) + 8;
        let bit_depth_chroma = (record[18] & 0x07) + 8;
        let nal_length_size = (record[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return None;
        }
        let num_arrays = record[22] as usize;
        let mut pos = FIXED_LEN;
        let mut arrays = Vec::with_capacity(num_arrays.min(8));
        for _ in 0..num_arrays {
            let head = *record.get(pos)?;
            let n = u16::from_be_bytes([*record.get(pos + 1)?, *record.get(pos + 2)?]) as usize;
            pos += 3;
            // Each unit costs at least its 2-byte length: bounds the allocation by the input.
            let mut units = Vec::with_capacity(n.min(record.len() / 2));
            for _ in 0..n {
                let len = u16::from_be_bytes([*record.get(pos)?, *record.get(pos + 1)?]) as usize;
                let unit = record.get(pos + 2..pos + 2 + len)?;
                units.push(Bytes::copy_from_slice(unit));
                pos += 2 + len;
            }
            arrays.push(NalArray {
                completeness: head & 0x80 != 0,
                nal_type: head & 0x3f,
                units,
            });
        }
        let mut c = HevcConfig {
            profile_space: b1 >> 6,
            tier: b1 & 0x20 != 0,
            profile_idc: b1 & 0x1f,
            compatibility,
            constraints,
            level_idc,
            chroma_format,
            bit_depth_luma,
            bit_depth_chroma,
            nal_length_size,
            arrays,
            width: 0,
            height: 0,
        };
        let size = c.units(NAL_SPS).next().and_then(|s| sps_dimensions(s));
        if let Some((w, h)) = size {
            c.width = w;
            c.height = h;
        }
        Some(c)
    }

    /// The NAL units of one type, in record order.
    pub fn units(&self, nal_type: u8) -> impl Iterator<Item = &Bytes> {
        self.arrays
            .iter()
            .filter(move |a| a.nal_type == nal_type)
            .flat_map(|a| a.units.iter())
    }

    /// VPS, SPS then PPS: what a decoder needs before an IRAP picture.
    pub fn parameter_sets(&self) -> impl Iterator<Item = &Bytes> {
        self.units(NAL_VPS)
            .chain(self.units(NAL_SPS))
            .chain(self.units(NAL_PPS))
    }

    /// RFC 6381 codec string for the `hvc1` sample entry, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = ["", "A", "B", "C"][self.profile_space as usize & 3];
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            self.profile_idc,
            self.compatibility.reverse_bits(),
            if self.tier { 'H' } else { 'L' },
            self.level_idc
        );
        // Constraint bytes, trailing zero bytes left out.
        let n = self
            .constraints
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.constraints[..n] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// Picture width and height (after the conformance window) from an SPS NAL unit, with its 2-byte
/// header.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    if nal_type(sps) != NAL_SPS || sps.len() < 3 {
        return None;
    }
    let rbsp = unescape(&sps[2..]);
    let mut b = BitReader::new(&rbsp);
    b.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)? as usize;
    b.bit()?; // sps_temporal_id_nesting_flag
              // profile_tier_level(1, max_sub_layers_minus1): the general part is 88 + 8 bits.
    b.bits(32)?;
    b.bits(32)?;
    b.bits(32)?;
    let mut sub_profile = [false; 8];
    let mut sub_level = [false; 8];
    for i in 0..max_sub_layers_minus1 {
        sub_profile[i] = b.bit()?;
        sub_level[i] = b.bit()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            b.bits(2)?; // reserved_zero_2bits
        }
    }
    for i in 0..max_sub_layers_minus1 {
        if sub_profile[i] {
            b.bits(32)?;
            b.bits(32)?;
            b.bits(24)?;
        }
        if sub_level[i] {
            b.bits(8)?;
        }
    }
    b.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = b.ue()?;
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = b.bit()?;
    }
    let width = b.ue()? as u64;
    let height = b.ue()? as u64;
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? {
        left = b.ue()? as u64;
        right = b.ue()? as u64;
        top = b.ue()? as u64;
        bottom = b.ue()? as u64;
    }
    // SubWidthC / SubHeightC (H.265 Table 6-1).
    let (sx, sy) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let w = width.checked_sub(sx * (left + right))?;
    let h = height.checked_sub(sy * (top + bottom))?;
    Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record by hand: Main profile (1), compatibility 0x60000000, constraints B0, level 93,
    /// 4:2:0 8-bit, 4-byte lengths, one VPS and one SPS (no PPS).
    fn record(sps: &[u8]) -> Vec<u8> {
        let mut r = vec![
            0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0xb0, 0, 0, 0, 0, 0, 93, 0xf0, 0x00, 0xfc, 0xfd,
            0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x02,
        ];
        r.extend_from_slice(&[0xa0, 0x00, 0x01, 0x00, 0x03, 0x40, 0x01, 0x0c]);
        r.extend_from_slice(&[0xa1, 0x00, 0x01, 0x00, sps.len() as u8]);
        r.extend_from_slice(sps);
        r
    }

    #[test]
    fn codec_string_and_arrays() {
        let c = HevcConfig::parse(&record(&[0x42, 0x01])).unwrap();
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.B0");
        assert_eq!(
            (c.nal_length_size, c.chroma_format, c.bit_depth_luma),
            (4, 1, 8)
        );
        assert_eq!(c.arrays.len(), 2);
        assert_eq!(
            c.units(NAL_VPS).next().unwrap().as_ref(),
            &[0x40, 0x01, 0x0c]
        );
        assert_eq!(c.parameter_sets().count(), 2);
        // Unreadable SPS: no size, still a record.
        assert_eq!((c.width, c.height), (0, 0));
        // High tier, profile space 1, Main 10 compat 0x20000000, no constraints.
        let mut r = record(&[0x42, 0x01]);
        r[1] = 0x40 | 0x20 | 2;
        r[2] = 0x20;
        r[6] = 0;
        r[12] = 120;
        assert_eq!(
            HevcConfig::parse(&r).unwrap().codec_string(),
            "hvc1.A2.4.H120"
        );
    }

    #[test]
    fn truncated_or_bad_records_are_none() {
        let r = record(&[0x42, 0x01]);
        for n in 0..r.len() {
            assert!(HevcConfig::parse(&r[..n]).is_none(), "cut at {n}");
        }
        let mut bad = r.clone();
        bad[0] = 0;
        assert!(HevcConfig::parse(&bad).is_none());
    }

    /// The real record FFmpeg 9's libx265 wrote into the fixture: 160x120 Main, level 3.
    #[test]
    fn fixture_record() {
        let flv = include_bytes!("../../tests/data/codecs/hevc_aac.flv");
        let body = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .find(|(t, _)| *t == 9)
            .unwrap()
            .1;
        assert_eq!(&body[..5], b"\x90hvc1");
        let c = HevcConfig::parse(&body[5..]).unwrap();
        assert_eq!(c.codec_string(), "hvc1.1.6.L30.90");
        assert_eq!((c.width, c.height), (160, 120));
        let types: Vec<u8> = c.arrays.iter().map(|a| a.nal_type).collect();
        assert_eq!(&types[..3], &[NAL_VPS, NAL_SPS, NAL_PPS]);
        assert_eq!(c.parameter_sets().count(), 3);
    }

    #[test]
    fn nal_types() {
        assert_eq!(nal_type(&[0x40, 0x01]), NAL_VPS);
        assert_eq!(nal_type(&[0x26, 0x01]), 19); // IDR_W_RADL
        assert!(is_irap(19) && is_irap(21) && !is_irap(1) && !is_irap(NAL_VPS));
        assert_eq!(nal_type(&[]), 0);
    }

    /// Random records and SPSs: `None` or a value, never a panic.
    #[test]
    fn random_input_never_panics() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = record(&[0x42, 0x01, 0x01, 0x01, 0x60, 0, 0, 3, 0, 0x90, 0, 0]);
        for _ in 0..20_000 {
            let mut r = base.clone();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % r.len();
                r[at] = next() as u8;
            }
            r.truncate((next() as usize) % (r.len() + 1));
            if let Some(c) = HevcConfig::parse(&r) {
                let _ = c.codec_string();
            }
            let sps: Vec<u8> = std::iter::once(0x42)
                .chain((0..(next() % 40)).map(|_| next() as u8))
                .collect();
            let _ = sps_dimensions(&sps);
        }
    }
}
