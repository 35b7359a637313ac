//! H.264 helpers: the AVCDecoderConfigurationRecord (with picture size from the first SPS), the
//! RFC 6381 codec string, and length-prefixed NAL units (AVCC) to Annex B. Parsing only; no
//! encoding decisions and no container logic live here.

use bytes::Bytes;

/// NAL unit types the muxers care about.
pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

/// The parsed AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
    /// Bytes in each NAL unit length prefix: 1, 2 or 4.
    pub nal_length_size: u8,
    /// Sequence parameter sets, each starting with its NAL header byte.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, each starting with its NAL header byte.
    pub pps: Vec<Bytes>,
    /// Picture size after cropping, from the first SPS (0 when the SPS could not be read).
    pub width: u32,
    pub height: u32,
}

impl AvcConfig {
    /// Parses a record (the payload of an AVC sequence header, after the 5-byte FLV video
    /// header). `None` for a truncated or malformed record or one without an SPS.
    pub fn parse(record: &[u8]) -> Option<AvcConfig> {
        let mut r = ByteReader {
            data: record,
            pos: 0,
        };
        if r.u8()? != 1 {
            return None;
        }
        let profile = r.u8()?;
        let compatibility = r.u8()?;
        let level = r.u8()?;
        let nal_length_size = (r.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            // 3 is reserved by the spec; no encoder emits it.
            return None;
        }
        let num_sps = r.u8()? & 0x1f;
        let mut sps = Vec::with_capacity(num_sps as usize);
        for _ in 0..num_sps {
            let len = r.u16()? as usize;
            sps.push(Bytes::copy_from_slice(r.take(len)?));
        }
        let num_pps = r.u8()?;
        let mut pps = Vec::with_capacity(num_pps as usize);
        for _ in 0..num_pps {
            let len = r.u16()? as usize;
            pps.push(Bytes::copy_from_slice(r.take(len)?));
        }
        let first = sps.first()?;
        let (width, height) = sps_dimensions(first).unwrap_or((0, 0));
        Some(AvcConfig {
            profile,
            compatibility,
            level,
            nal_length_size,
            sps,
            pps,
            width,
            height,
        })
    }

    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }
}

/// Iterator over length-prefixed NAL units. Stops (without panicking) at a truncated unit or a
/// bad length size; the bytes after such a point are ignored.
pub struct NalIter<'a> {
    data: &'a [u8],
    len_size: usize,
}

/// Iterates the NAL units of an AVCC payload whose length prefixes are `nal_length_size` bytes.
pub fn nal_units(data: &[u8], nal_length_size: u8) -> NalIter<'_> {
    let len_size = match nal_length_size {
        1..=4 => nal_length_size as usize,
        // An invalid size yields nothing rather than garbage.
        _ => {
            return NalIter {
                data: &[],
                len_size: 4,
            }
        }
    };
    NalIter { data, len_size }
}

impl<'a> Iterator for NalIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.data.len() < self.len_size {
                self.data = &[];
                return None;
            }
            let len = self.data[..self.len_size]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | b as usize);
            let rest = &self.data[self.len_size..];
            if len > rest.len() {
                self.data = &[];
                return None;
            }
            let (nal, tail) = rest.split_at(len);
            self.data = tail;
            // Zero-length units carry nothing; skip them instead of yielding empty slices.
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// The NAL unit type (low 5 bits of the header byte); 0 for an empty unit.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Appends the NAL units of an AVCC payload to `out` in Annex B form (4-byte start codes).
pub fn to_annex_b(data: &[u8], nal_length_size: u8, out: &mut Vec<u8>) {
    for nal in nal_units(data, nal_length_size) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
}

/// Picture width and height (after cropping) from an SPS NAL unit, header byte included.
pub fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    if nal_type(sps) != NAL_SPS {
        return None;
    }
    let rbsp = unescape(&sps[1..]);
    let mut b = BitReader::new(&rbsp);
    let profile_idc = b.bits(8)?;
    b.bits(8)?; // constraint flags
    b.bits(8)?; // level_idc
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = b.bit()?;
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bit()?; // qpprime_y_zero_transform_bypass_flag
        if b.bit()? {
            // seq_scaling_matrix_present_flag: skip every list that is present.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            b.bit()?; // delta_pic_order_always_zero_flag
            b.se()?; // offset_for_non_ref_pic
            b.se()?; // offset_for_top_to_bottom_field
            let n = b.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = b.ue()? as u64 + 1;
    let height_map_units = b.ue()? as u64 + 1;
    let frame_mbs_only = b.bit()?;
    if !frame_mbs_only {
        b.bit()?; // mb_adaptive_frame_field_flag
    }
    b.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? {
        left = b.ue()? as u64;
        right = b.ue()? as u64;
        top = b.ue()? as u64;
        bottom = b.ue()? as u64;
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    // Crop units (H.264 7.4.2.1.1): chroma subsampling decides how far one crop step reaches.
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left + right))?;
    let height = (field_factor * height_map_units * 16).checked_sub(crop_y * (top + bottom))?;
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

fn skip_scaling_list(b: &mut BitReader, size: usize) -> Option<()> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation prevention bytes (00 00 03 -> 00 00).
pub(crate) fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &byte in data {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// MSB-first bit reader with Exp-Golomb codes, as H.264 RBSPs need.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, bit: 0 }
    }

    pub(crate) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.bit / 8)?;
        let v = (byte >> (7 - self.bit % 8)) & 1;
        self.bit += 1;
        Some(v == 1)
    }

    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()? as u32;
        }
        Some(v)
    }

    /// Unsigned Exp-Golomb; `None` past the end or for codes longer than 32 bits.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + rest as u64) as u32)
    }

    /// Signed Exp-Golomb.
    pub(crate) fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPS NAL units taken from x264 output (ffmpeg testsrc2), emulation prevention included.
    const SPS_320X240_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const SPS_1920X1080_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];
    const SPS_1280X720_BASELINE: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
    ];
    const SPS_640X480_444: &[u8] = &[
        0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x07, 0xb6, 0x02, 0x20, 0x00, 0x00, 0x03,
        0x00, 0x20, 0x00, 0x00, 0x06, 0x41, 0xe2, 0xc5, 0xb2, 0xc0,
    ];
    // 720x576 interlaced (frame_mbs_only_flag = 0).
    const SPS_720X576_INTERLACED: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xb4, 0x24, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03,
        0x00, 0x80, 0x00, 0x00, 0x19, 0x0f, 0x8a, 0x14, 0xcb,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(pps);
        r
    }

    #[test]
    fn sps_sizes() {
        assert_eq!(sps_dimensions(SPS_320X240_HIGH), Some((320, 240)));
        assert_eq!(sps_dimensions(SPS_1920X1080_HIGH), Some((1920, 1080)));
        assert_eq!(sps_dimensions(SPS_1280X720_BASELINE), Some((1280, 720)));
        assert_eq!(sps_dimensions(SPS_640X480_444), Some((640, 480)));
        assert_eq!(sps_dimensions(SPS_720X576_INTERLACED), Some((720, 576)));
    }

    #[test]
    fn sps_truncated_is_none() {
        for n in 1..10 {
            assert_eq!(sps_dimensions(&SPS_1920X1080_HIGH[..n]), None, "{n}");
        }
        assert_eq!(sps_dimensions(PPS), None);
    }

    #[test]
    fn parses_record() {
        let c = AvcConfig::parse(&record(SPS_1920X1080_HIGH, PPS)).unwrap();
        assert_eq!((c.profile, c.compatibility, c.level), (0x64, 0, 0x28));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.sps, vec![Bytes::from_static(SPS_1920X1080_HIGH)]);
        assert_eq!(c.pps, vec![Bytes::from_static(PPS)]);
        assert_eq!((c.width, c.height), (1920, 1080));
        assert_eq!(c.codec_string(), "avc1.640028");
    }

    #[test]
    fn record_truncated_or_bad_is_none() {
        let r = record(SPS_320X240_HIGH, PPS);
        for n in 0..r.len() {
            assert!(AvcConfig::parse(&r[..n]).is_none(), "{n}");
        }
        let mut bad = r.clone();
        bad[0] = 0;
        assert!(AvcConfig::parse(&bad).is_none());
    }

    #[test]
    fn nal_iteration_and_annex_b() {
        let data = [0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 0, 0, 0, 0, 3, 0x65, 1, 2];
        let nals: Vec<&[u8]> = nal_units(&data, 4).collect();
        assert_eq!(nals, vec![&[0x09, 0xf0][..], &[0x65, 1, 2][..]]);
        let mut out = Vec::new();
        to_annex_b(&data, 4, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 1, 2]);
        let two = [0, 1, 0x41, 0, 2, 0x41, 7];
        assert_eq!(nal_units(&two, 2).count(), 2);
    }

    #[test]
    fn truncated_nal_stops() {
        let data = [0, 0, 0, 1, 0x65, 0, 0, 0, 9, 0x41];
        let nals: Vec<&[u8]> = nal_units(&data, 4).collect();
        assert_eq!(nals, vec![&[0x65][..]]);
        assert_eq!(nal_units(&data, 0).count(), 0);
        assert_eq!(nal_units(&data, 5).count(), 0);
        assert_eq!(nal_units(&[0, 0], 4).count(), 0);
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut b = BitReader::new(&data);
        assert_eq!(b.ue(), Some(0));
        assert_eq!(b.ue(), Some(1));
        assert_eq!(b.ue(), Some(2));
        assert_eq!(b.ue(), Some(3));
        assert_eq!(b.ue(), Some(4));
        let mut s = BitReader::new(&data);
        assert_eq!(s.se(), Some(0));
        assert_eq!(s.se(), Some(1));
        assert_eq!(s.se(), Some(-1));
        assert_eq!(s.se(), Some(2));
        assert_eq!(s.se(), Some(-2));
    }

    /// MSB-first bit writer with Exp-Golomb codes, to build SPSs the encoders at hand never emit.
    struct BitWriter {
        bytes: Vec<u8>,
        n: usize,
    }

    impl BitWriter {
        fn bit(&mut self, v: bool) {
            if self.n.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if v {
                *self.bytes.last_mut().unwrap() |= 0x80 >> (self.n % 8);
            }
            self.n += 1;
        }
        fn bits(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
        }
        fn ue(&mut self, v: u32) {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            self.bits(0, len - 1);
            self.bits(x, len);
        }
        fn se(&mut self, v: i32) {
            self.ue(if v > 0 {
                2 * v as u32 - 1
            } else {
                (-2 * v) as u32
            });
        }
    }

    fn escape(rbsp: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut zeros = 0;
        for &b in rbsp {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }

    #[test]
    fn sps_with_scaling_lists_and_cropping() {
        let mut w = BitWriter {
            bytes: vec![],
            n: 0,
        };
        w.bits(100, 8); // profile High
        w.bits(0, 8);
        w.bits(30, 8);
        w.ue(0); // sps id
        w.ue(1); // 4:2:0
        w.ue(0);
        w.ue(0);
        w.bit(false);
        w.bit(true); // seq_scaling_matrix_present_flag
                     // List 0: "use default" (first delta brings nextScale to 0, nothing more is read).
        w.bit(true);
        w.se(-8);
        // List 1: sixteen explicit deltas.
        w.bit(true);
        for _ in 0..16 {
            w.se(1);
        }
        for _ in 2..6 {
            w.bit(false);
        }
        // List 6 (8x8): sixty-four deltas, wrapping past 255 but never reaching 0.
        w.bit(true);
        for _ in 0..64 {
            w.se(7);
        }
        w.bit(false);
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(1); // pic_order_cnt_type 1
        w.bit(false);
        w.se(-3);
        w.se(2);
        w.ue(2);
        w.se(1);
        w.se(-1);
        w.ue(4); // max_num_ref_frames
        w.bit(false);
        w.ue(21); // 22 MBs wide
        w.ue(17); // 18 MBs high
        w.bit(true); // frame_mbs_only
        w.bit(true);
        w.bit(true); // cropping
        w.ue(1);
        w.ue(2);
        w.ue(3);
        w.ue(4);
        w.bit(false); // no VUI
        w.bit(true); // rbsp stop bit
        let mut sps = vec![0x67];
        sps.extend(escape(&w.bytes));
        assert_eq!(
            sps_dimensions(&sps),
            Some((352 - 2 * 3, 288 - 2 * 7)),
            "{sps:02x?}"
        );
    }
}
