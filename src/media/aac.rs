//! AAC helpers: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), its RFC 6381 codec string, and
//! the 7-byte ADTS header that MPEG-TS carries before each raw AAC frame. Parsing only.

use crate::media::avc::BitReader;

/// Sampling frequencies by `samplingFrequencyIndex`.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Samples per AAC frame (AAC-LC; HE-AAC's core frame is the same length at the core rate).
pub const SAMPLES_PER_FRAME: u32 = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type: 2 = AAC-LC, 5 = SBR (HE-AAC), 29 = PS (HE-AAC v2), ...
    pub object_type: u8,
    /// `samplingFrequencyIndex` of the core codec; 15 when the rate was given explicitly.
    pub sample_rate_index: u8,
    /// Core sampling rate in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration` (1 = mono, 2 = stereo, ...; 0 = defined in-band).
    pub channels: u8,
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig (the payload of an AAC sequence header after the 2-byte FLV
    /// audio header). `None` when truncated or when the rate index is reserved.
    pub fn parse(asc: &[u8]) -> Option<Self> {
        let mut b = BitReader::new(asc);
        let object_type = read_object_type(&mut b)?;
        let (sample_rate_index, sample_rate) = read_rate(&mut b)?;
        let channels = b.bits(4)? as u8;
        Some(AudioSpecificConfig {
            object_type,
            sample_rate_index,
            sample_rate,
            channels,
        })
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// The ADTS header for one raw AAC frame of `payload_len` bytes (no CRC). ADTS can only name
    /// profiles 1-4 and indexed rates, so HE-AAC is signalled as AAC-LC at the core rate (decoders
    /// find the SBR data implicitly) and an explicit rate becomes the nearest index.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let profile = match self.object_type {
            1..=4 => self.object_type - 1,
            _ => 1,
        };
        let rate_index = if (self.sample_rate_index as usize) < SAMPLE_RATES.len() {
            self.sample_rate_index
        } else {
            nearest_rate_index(self.sample_rate)
        };
        // frame_length is 13 bits and includes the header; larger frames cannot be expressed.
        let len = (payload_len + 7).min(0x1fff) as u32;
        let ch = self.channels & 0x07;
        [
            0xff,
            0xf1, // sync, MPEG-4, layer 0, no CRC
            (profile << 6) | (rate_index << 2) | (ch >> 2),
            ((ch & 3) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f, // buffer fullness 0x7ff: variable bit rate
            0xfc,                            // one raw data block
        ]
    }
}

fn read_object_type(b: &mut BitReader) -> Option<u8> {
    let t = b.bits(5)? as u8;
    if t == 31 {
        return Some(32 + b.bits(6)? as u8);
    }
    Some(t)
}

fn read_rate(b: &mut BitReader) -> Option<(u8, u32)> {
    let index = b.bits(4)? as u8;
    match index {
        15 => Some((15, b.bits(24)?)),
        i if (i as usize) < SAMPLE_RATES.len() => Some((i, SAMPLE_RATES[i as usize])),
        _ => None,
    }
}

fn nearest_rate_index(rate: u32) -> u8 {
    SAMPLE_RATES
        .iter()
        .enumerate()
        .min_by_key(|(_, &r)| r.abs_diff(rate))
        .map_or(4, |(i, _)| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_stereo_44100() {
        let c = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            c,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate_index: 4,
                sample_rate: 44100,
                channels: 2
            }
        );
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn adts_header_matches_ffmpeg() {
        // ADTS header for an AAC-LC 44.1 kHz stereo frame of 371 payload bytes:
        // frame_length = 378 = 0x17a.
        let c = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            c.adts_header(371),
            [0xff, 0xf1, 0x50, 0x80, 0x2f, 0x5f, 0xfc]
        );
        // 48 kHz mono: index 3, channel 1.
        let m = AudioSpecificConfig::parse(&[0x11, 0x88]).unwrap();
        assert_eq!((m.sample_rate, m.channels), (48000, 1));
        let h = m.adts_header(0);
        assert_eq!(h[2], 0x4c);
        assert_eq!(h[3] >> 6, 1);
        let len = ((h[3] as u32 & 3) << 11) | ((h[4] as u32) << 3) | (h[5] as u32 >> 5);
        assert_eq!(len, 7);
    }

    #[test]
    fn he_aac_and_escape() {
        // Object type 5 (SBR), index 6 (24 kHz), stereo: 00101 0110 0010 ...
        let he = AudioSpecificConfig::parse(&[0x2b, 0x10, 0x88, 0x00]).unwrap();
        assert_eq!(he.object_type, 5);
        assert_eq!(he.sample_rate, 24000);
        assert_eq!(he.adts_header(10)[2] >> 6, 1, "signalled as LC");
        // Escaped object type 31 + 6 bits (e.g. 42 = 32 + 10), explicit rate 15 + 24 bits.
        // 11111 001010 1111 <24 bits 44100> 0010
        let mut bits: u64 = 0;
        let mut n = 0;
        for (v, w) in [(31u64, 5), (10, 6), (15, 4), (44100, 24), (2, 4)] {
            bits = (bits << w) | v;
            n += w;
        }
        bits <<= 64 - n;
        let bytes = bits.to_be_bytes();
        let x = AudioSpecificConfig::parse(&bytes[..6]).unwrap();
        assert_eq!(
            (
                x.object_type,
                x.sample_rate_index,
                x.sample_rate,
                x.channels
            ),
            (42, 15, 44100, 2)
        );
        assert_eq!((x.adts_header(0)[2] >> 2) & 0x0f, 4, "nearest index 44100");
    }

    #[test]
    fn truncated_or_reserved() {
        assert!(AudioSpecificConfig::parse(&[]).is_none());
        assert!(AudioSpecificConfig::parse(&[0x12]).is_none());
        // Rate index 13 is reserved.
        assert!(AudioSpecificConfig::parse(&[0x16, 0x90]).is_none());
    }
}
