//! Opus helpers: the identification header `OpusHead` (RFC 7845 5.1, little-endian, what Enhanced
//! RTMP's Opus SequenceStart carries) to and from the ISO BMFF `dOps` body (Opus in ISOBMFF 4.3.2,
//! big-endian), and the packet duration from the TOC byte (RFC 6716 3.1). Parsing only.

/// Opus always runs at 48 kHz on the decoder side; ISO BMFF timescales use it.
pub const SAMPLE_RATE: u32 = 48_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u8,
    pub pre_skip: u16,
    /// The encoder's input rate (informational).
    pub input_sample_rate: u32,
    /// Q7.8 dB.
    pub output_gain: i16,
    pub mapping_family: u8,
    /// For mapping family != 0: stream count, coupled count, one mapping byte per channel.
    pub stream_count: u8,
    pub coupled_count: u8,
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// Parses an identification header (`OpusHead` magic, version 1). `None` when malformed.
    pub fn parse(b: &[u8]) -> Option<OpusHead> {
        if b.get(..8)? != b"OpusHead" || b.len() < 19 {
            return None;
        }
        // Version 1 only; the high nibble is the major version that a reader must reject.
        if b[8] >> 4 != 0 || b[8] == 0 {
            return None;
        }
        let channels = b[9];
        if channels == 0 {
            return None;
        }
        let mut h = OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            input_sample_rate: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            output_gain: i16::from_le_bytes([b[16], b[17]]),
            mapping_family: b[18],
            stream_count: 1,
            coupled_count: (channels == 2) as u8,
            mapping: Vec::new(),
        };
        if h.mapping_family != 0 {
            let t = b.get(19..21 + channels as usize)?;
            h.stream_count = t[0];
            h.coupled_count = t[1];
            h.mapping = t[2..].to_vec();
        } else if channels > 2 {
            return None;
        }
        Some(h)
    }

    /// The identification header bytes (little-endian fields).
    pub fn to_id_header(&self) -> Vec<u8> {
        let mut v = b"OpusHead".to_vec();
        v.push(1);
        v.push(self.channels);
        v.extend_from_slice(&self.pre_skip.to_le_bytes());
        v.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        v.extend_from_slice(&self.output_gain.to_le_bytes());
        v.push(self.mapping_family);
        if self.mapping_family != 0 {
            v.push(self.stream_count);
            v.push(self.coupled_count);
            v.extend_from_slice(&self.mapping);
        }
        v
    }

    /// The `dOps` box body (version 0, big-endian fields).
    pub fn to_dops(&self) -> Vec<u8> {
        let mut v = vec![0, self.channels];
        v.extend_from_slice(&self.pre_skip.to_be_bytes());
        v.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        v.extend_from_slice(&self.output_gain.to_be_bytes());
        v.push(self.mapping_family);
        if self.mapping_family != 0 {
            v.push(self.stream_count);
            v.push(self.coupled_count);
            v.extend_from_slice(&self.mapping);
        }
        v
    }

    /// Reads a `dOps` body back.
    pub fn from_dops(b: &[u8]) -> Option<OpusHead> {
        let f = b.get(..11)?;
        if f[0] != 0 || f[1] == 0 {
            return None;
        }
        let mut id = b"OpusHead".to_vec();
        id.push(1);
        id.push(f[1]);
        id.extend_from_slice(&u16::from_be_bytes([f[2], f[3]]).to_le_bytes());
        id.extend_from_slice(&u32::from_be_bytes([f[4], f[5], f[6], f[7]]).to_le_bytes());
        id.extend_from_slice(&i16::from_be_bytes([f[8], f[9]]).to_le_bytes());
        id.extend_from_slice(&b[10..]);
        OpusHead::parse(&id)
    }
}

/// The duration of one Opus packet in 48 kHz samples, from its TOC byte and frame count
/// (RFC 6716 3.1, 3.2.5). `None` for an empty or malformed packet.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in 48 kHz samples per configuration group (SILK, Hybrid, CELT).
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => (*packet.get(1)? & 0x3f) as u32,
    };
    let total = frame * frames;
    // At most 120 ms per packet.
    (frames > 0 && total <= 5760).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mono, pre-skip 312, 48 kHz, gain 0, family 0: what libopus writes (RFC 7845 example form).
    const HEAD: [u8; 19] = [
        b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn id_header_to_dops_and_back() {
        let h = OpusHead::parse(&HEAD).unwrap();
        assert_eq!(
            (h.channels, h.pre_skip, h.input_sample_rate),
            (1, 312, 48_000)
        );
        assert_eq!(h.to_id_header(), HEAD.to_vec());
        let dops = h.to_dops();
        assert_eq!(dops, vec![0, 1, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        assert_eq!(OpusHead::from_dops(&dops), Some(h));
    }

    #[test]
    fn mapping_family_one() {
        let mut b = HEAD.to_vec();
        b[9] = 6;
        b[18] = 1;
        b.extend_from_slice(&[4, 2, 0, 4, 1, 2, 3, 5]);
        let h = OpusHead::parse(&b).unwrap();
        assert_eq!((h.stream_count, h.coupled_count), (4, 2));
        assert_eq!(h.mapping, vec![0, 4, 1, 2, 3, 5]);
        assert_eq!(h.to_id_header(), b);
        let dops = h.to_dops();
        assert_eq!(&dops[10..], &[1, 4, 2, 0, 4, 1, 2, 3, 5]);
        assert_eq!(OpusHead::from_dops(&dops), Some(h));
        // The mapping table cut short.
        assert!(OpusHead::parse(&b[..b.len() - 1]).is_none());
    }

    #[test]
    fn malformed_headers() {
        for n in 0..HEAD.len() {
            assert!(OpusHead::parse(&HEAD[..n]).is_none());
        }
        let mut b = HEAD;
        b[8] = 0x10; // major version 1: incompatible
        assert!(OpusHead::parse(&b).is_none());
        let mut b = HEAD;
        b[9] = 3; // 3 channels with family 0
        assert!(OpusHead::parse(&b).is_none());
        assert!(OpusHead::from_dops(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn packet_durations() {
        assert_eq!(packet_samples(&[0xfc]), Some(960)); // CELT FB 20 ms, one frame
        assert_eq!(packet_samples(&[0x78]), Some(960)); // Hybrid FB 20 ms
        assert_eq!(packet_samples(&[0x79]), Some(1920)); // two frames
        assert_eq!(packet_samples(&[0x18]), Some(2880)); // SILK 60 ms (config 3)
        assert_eq!(packet_samples(&[0x1b, 0x02]), Some(5760)); // code 3, two frames: 120 ms
        assert_eq!(packet_samples(&[0xfb, 0x07]), None); // 7 x 20 ms > 120 ms
        assert_eq!(packet_samples(&[]), None);
        assert_eq!(packet_samples(&[0x03]), None);
    }

    #[test]
    fn fixture_head() {
        let flv = include_bytes!("../../tests/data/codecs/av1_opus.flv");
        let body = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .find(|(t, b)| *t == 8 && b[0] == 0x90)
            .unwrap()
            .1;
        assert_eq!(&body[..5], b"\x90Opus");
        let h = OpusHead::parse(&body[5..]).unwrap();
        assert_eq!((h.channels, h.pre_skip, h.mapping_family), (1, 312, 0));
        // Every coded packet of the fixture is 20 ms.
        let coded: Vec<_> = crate::media::enhanced::tests::flv_tags(flv)
            .into_iter()
            .filter(|(t, b)| *t == 8 && b[0] == 0x91)
            .collect();
        assert!(coded.len() > 100);
        for (_, b) in coded {
            assert_eq!(packet_samples(&b[5..]), Some(960));
        }
    }
}
