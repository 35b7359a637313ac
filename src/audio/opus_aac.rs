//! One stream's Opus to AAC-LC transcoder, without threads (the other direction of the bridge,
//! for players and containers that cannot take Opus): Opus packets and their stream times in,
//! AAC-LC access units (48 kHz, the Opus stream's channels) and their stream times out.
//!
//! Run per Opus stream by `aac_worker` (docs/codecs.md says which outputs get it). rusty_aac's encoder codes
//! what it was given only when told the input ended, so it is run on blocks of `BLOCK_FRAMES`
//! AAC frames with the frame before each block in front (the MDCT overlap), keeping only the
//! block's own access units: 170 ms of added latency.
//!
//! Timing: the first packet after a (re)start anchors the timeline at its time; its first
//! `pre_skip` decoded samples (OpusHead) are the Opus encoder's priming and are dropped, so the
//! first kept sample is at anchor + pre_skip / 48 ms. Access unit g decodes to input frame
//! g - 1 (the AAC encoder's one frame of priming), and is timed as that frame, so a decoder that
//! does not trim priming (FFmpeg's, reading FLV or MPEG-TS) plays every sample at its own time.
//! The first unit (the priming frame, timed before the first packet) is not sent: its time would
//! come before anything the publisher sent (in FLV, a negative timestamp that wraps to 2^32 - 15).

use super::aac_opus::BridgeError;
use crate::media::opus::OpusHead;

/// AAC frames per encoder run: with the overlap frame in front and the encoder's flush frame
/// after, 15 frames, under the 16 at which rusty_aac's `finish` spreads the work over threads of
/// its own (the bridge's one worker thread must stay one). 277 ms of latency.
pub const BLOCK_FRAMES: usize = 13;
const FRAME: usize = 1024;
const RATE: u32 = 48_000;
/// The longest Opus packet: 120 ms.
const MAX_OPUS_SAMPLES: usize = 5760;

/// One raw AAC-LC access unit and its stream time in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacPacket {
    pub time_ms: u64,
    pub data: Vec<u8>,
}

struct Running {
    decoder: opus_rs::OpusDecoder,
    /// Stream time of the first packet: no access unit goes out timed before it.
    first_ms: f64,
    /// Stream time of the first kept sample.
    start_ms: f64,
    /// Decoded samples still to drop (pre-skip).
    skip: usize,
    /// Kept samples not yet encoded (interleaved); the first is frame `next_frame`.
    pcm: Vec<f32>,
    /// The frame before `pcm` (interleaved), for the overlap; empty at the start.
    prev: Vec<f32>,
    next_frame: u64,
    /// Kept samples since the anchor, for the drift check.
    kept: u64,
}

pub struct OpusToAac {
    bitrate: u32,
    head: Option<OpusHead>,
    running: Option<Running>,
    pub resets: u64,
}

impl OpusToAac {
    /// `bitrate`: `--aac-bitrate` in bits per second.
    pub fn new(bitrate: u32) -> OpusToAac {
        OpusToAac {
            bitrate,
            head: None,
            running: None,
            resets: 0,
        }
    }

    /// A new OpusHead (the Opus sequence header): restarts.
    pub fn configure(&mut self, opus_head: &[u8]) -> Result<(), BridgeError> {
        self.restart();
        self.head = None;
        let h = OpusHead::parse(opus_head)
            .ok_or_else(|| BridgeError::Config("not an OpusHead".into()))?;
        if h.mapping_family != 0 || !(1..=2).contains(&h.channels) {
            return Err(BridgeError::Format {
                rate: RATE,
                channels: h.channels as u16,
            });
        }
        self.head = Some(h);
        Ok(())
    }

    /// The AudioSpecificConfig of the AAC this makes (the AAC sequence header's payload).
    pub fn audio_specific_config(&self) -> Option<Vec<u8>> {
        let h = self.head.as_ref()?;
        Some(rusty_aac::audio_specific_config_bytes(
            RATE,
            h.channels as u16,
        ))
    }

    pub fn restart(&mut self) {
        if self.running.take().is_some() {
            self.resets += 1;
        }
    }

    /// One Opus packet at stream time `time_ms`; the AAC access units it completes.
    pub fn push(
        &mut self,
        packet: &[u8],
        time_ms: u64,
        discontinuity: bool,
        out: &mut Vec<AacPacket>,
    ) -> Result<(), BridgeError> {
        let head = self.head.as_ref().ok_or(BridgeError::NoConfig)?;
        let (ch, pre_skip) = (head.channels as usize, head.pre_skip);
        let drifted = self.running.as_ref().is_some_and(|r| {
            let expected = r.start_ms + r.kept as f64 / 48.0 - r.skip as f64 / 48.0;
            (time_ms as f64 - expected).abs() > super::aac_opus::MAX_DRIFT_MS as f64
        });
        if discontinuity || drifted {
            // What the old timeline still holds goes out before it is let go.
            self.flush(out)?;
            self.restart();
        }
        if self.running.is_none() {
            let decoder = opus_rs::OpusDecoder::new(RATE as i32, ch)
                .map_err(|e| BridgeError::Decode(e.to_string()))?;
            self.running = Some(Running {
                decoder,
                first_ms: time_ms as f64,
                start_ms: time_ms as f64 + pre_skip as f64 / 48.0,
                skip: pre_skip as usize,
                pcm: Vec::new(),
                prev: Vec::new(),
                next_frame: 0,
                kept: 0,
            });
        }
        let r = self.running.as_mut().expect("started above");
        let mut buf = vec![0f32; MAX_OPUS_SAMPLES * ch];
        let n = r
            .decoder
            .decode(packet, MAX_OPUS_SAMPLES, &mut buf)
            .map_err(|e| BridgeError::Decode(e.to_string()))?;
        let drop = r.skip.min(n);
        r.skip -= drop;
        r.pcm.extend_from_slice(&buf[drop * ch..n * ch]);
        r.kept += (n - drop) as u64;
        let block = BLOCK_FRAMES * FRAME * ch;
        while r.pcm.len() >= block {
            code(self.bitrate, ch, r, BLOCK_FRAMES, BLOCK_FRAMES, out)?;
        }
        Ok(())
    }

    /// The input ended (the publish, or the timeline is restarted): codes the samples still
    /// waiting for a whole block, the last frame padded with silence, and appends their access
    /// units, up to the one that decodes to the last frame. Nothing is held afterwards.
    pub fn flush(&mut self, out: &mut Vec<AacPacket>) -> Result<(), BridgeError> {
        let Some(ch) = self.head.as_ref().map(|h| h.channels as usize) else {
            return Ok(());
        };
        let Some(r) = self.running.as_mut() else {
            return Ok(());
        };
        if r.pcm.is_empty() && r.prev.is_empty() {
            return Ok(());
        }
        let frames = r.pcm.len().div_ceil(FRAME * ch);
        r.pcm.resize(frames * FRAME * ch, 0.0);
        let result = code(self.bitrate, ch, r, frames, frames + 1, out);
        r.prev.clear();
        r.pcm.clear();
        result
    }
}

/// Codes the first `frames` whole frames of `r.pcm`, with the frame before them (`r.prev`, the
/// MDCT overlap) in front, in one run of the encoder, and appends the access units of `units`
/// frames from `r.next_frame` on, each timed as the frame it decodes to (unit g decodes to frame
/// g - 1); the priming unit, timed before the first packet, is not sent.
fn code(
    bitrate: u32,
    ch: usize,
    r: &mut Running,
    frames: usize,
    units: usize,
    out: &mut Vec<AacPacket>,
) -> Result<(), BridgeError> {
    let len = frames * FRAME * ch;
    let mut input = std::mem::take(&mut r.prev);
    let lead = input.len() / ch / FRAME;
    input.extend_from_slice(&r.pcm[..len]);
    let mut enc = rusty_aac::AacEncoder::new(rusty_aac::AacEncoderConfig {
        bitrate_bps: bitrate,
        ..Default::default()
    });
    enc.push_pcm(&input, ch as u16, RATE)
        .map_err(|e| BridgeError::Encode(e.to_string()))?;
    enc.finish();
    let mut k = 0;
    while let Ok(p) = enc.next_packet() {
        if k >= lead && k < lead + units {
            let g = r.next_frame + (k - lead) as u64;
            let t = r.start_ms + (g as f64 - 1.0) * FRAME as f64 / 48.0;
            if t >= r.first_ms {
                out.push(AacPacket {
                    time_ms: t.round() as u64,
                    data: p.data,
                });
            }
        }
        k += 1;
    }
    r.prev = if len > 0 {
        r.pcm[len - FRAME * ch..len].to_vec()
    } else {
        Vec::new()
    };
    r.pcm.drain(..len);
    r.next_frame += frames as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testing::{measure, AMPLITUDE, TONE_HZ};

    /// 48 kHz stereo: `silence_ms` then `tone_ms` of the test tone, as Opus packets timed the
    /// way a muxer times them (the first at `start_ms` less the encoder's look-ahead).
    fn opus_tone(silence_ms: u64, tone_ms: u64, start_ms: u64) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
        let n0 = (48 * silence_ms) as usize;
        let n = n0 + (48 * tone_ms) as usize;
        let mut pcm = Vec::with_capacity(2 * n);
        for i in 0..n {
            let v = if i < n0 {
                0.0
            } else {
                (2.0 * std::f64::consts::PI * TONE_HZ * (i - n0) as f64 / 48_000.0).sin()
                    * AMPLITUDE
            };
            pcm.push(v as f32);
            pcm.push(v as f32);
        }
        let mut enc = opus_rs::OpusEncoder::new(48_000, 2, opus_rs::Application::Audio).unwrap();
        enc.bitrate_bps = 128_000;
        let mut buf = [0u8; 1500];
        let pre_skip = crate::audio::aac_opus::OPUS_LOOKAHEAD as u16;
        let packets = pcm
            .chunks_exact(2 * 960)
            .enumerate()
            .map(|(k, f)| {
                let len = enc.encode(f, 960, &mut buf).unwrap();
                // Packet k starts at input sample 960 k - pre_skip.
                let t = start_ms as f64 + k as f64 * 20.0 - pre_skip as f64 / 48.0;
                (t.round() as u64, buf[..len].to_vec())
            })
            .collect();
        let head = OpusHead {
            channels: 2,
            pre_skip,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            stream_count: 1,
            coupled_count: 1,
            mapping: Vec::new(),
        };
        (head.to_id_header(), packets)
    }

    #[test]
    fn an_opus_tone_becomes_aac_lc_with_its_frequency_level_and_time() {
        let (head, packets) = opus_tone(500, 3000, 1000);
        let (t, out) = transcode(&head, &packets);
        assert!(out.len() > 100, "{}", out.len());
        for w in out.windows(2) {
            let d = w[1].time_ms as i64 - w[0].time_ms as i64;
            assert!(
                (21..=22).contains(&d),
                "{} -> {}",
                w[0].time_ms,
                w[1].time_ms
            );
        }
        let mut dec =
            rusty_aac::AacDecoder::with_config_bytes(&t.audio_specific_config().unwrap()).unwrap();
        let mut pcm = Vec::new();
        for p in &out {
            pcm.extend_from_slice(&dec.decode(&p.data, None).unwrap().samples);
        }
        for ch in 0..2 {
            let r = measure(&pcm, ch);
            let onset = out[0].time_ms as f64 + r.onset_ms;
            eprintln!("Opus to AAC, channel {ch}: {r:?}, onset at {onset:.1} ms (want 1500)");
            assert!((r.frequency - 1000.0).abs() < 10.0, "{r:?}");
            assert!(r.level_db.abs() < 1.0, "{r:?}");
            assert!(r.min_window_db > -3.0, "a gap: {r:?}");
            assert!((onset - 1500.0).abs() < 20.0, "onset {onset}");
        }
    }

    /// A transcoder configured with `head`, and the access units it made of `packets`.
    fn transcode(head: &[u8], packets: &[(u64, Vec<u8>)]) -> (OpusToAac, Vec<AacPacket>) {
        let mut t = OpusToAac::new(128_000);
        t.configure(head).unwrap();
        let mut out = Vec::new();
        for (time, p) in packets {
            t.push(p, *time, false, &mut out).unwrap();
        }
        (t, out)
    }

    /// The tone's last loud sample in the decoded AAC, in stream time (ms).
    fn tone_end_ms(t: &OpusToAac, out: &[AacPacket]) -> f64 {
        let mut dec =
            rusty_aac::AacDecoder::with_config_bytes(&t.audio_specific_config().unwrap()).unwrap();
        let mut pcm = Vec::new();
        for p in out {
            pcm.extend_from_slice(&dec.decode(&p.data, None).unwrap().samples);
        }
        let last = pcm
            .iter()
            .rposition(|x| x.abs() as f64 > AMPLITUDE / 2.0)
            .expect("a tone");
        out[0].time_ms as f64 + (last / 2) as f64 / 48.0
    }

    #[test]
    fn a_flush_codes_the_tail_so_the_aac_ends_with_the_opus() {
        // 1 s of tone from 1000 ms: 50 packets, 47 AAC frames, not a whole number of blocks.
        let (head, packets) = opus_tone(0, 1000, 1000);
        let (mut t, mut out) = transcode(&head, &packets);
        let before = tone_end_ms(&t, &out);
        let held = out.len();
        t.flush(&mut out).unwrap();
        let after = tone_end_ms(&t, &out);
        eprintln!(
            "tone ends at {before:.1} ms before the flush ({held} units), {after:.1} ms after ({} units); the Opus at 2000",
            out.len()
        );
        assert!(before < 1900.0, "the last block was not held: {before}");
        assert!((after - 2000.0).abs() < 22.0, "the tail: {after}");
        for w in out.windows(2) {
            let d = w[1].time_ms as i64 - w[0].time_ms as i64;
            assert!(
                (21..=22).contains(&d),
                "{} -> {}",
                w[0].time_ms,
                w[1].time_ms
            );
        }
        // Nothing is held afterwards: a second flush adds nothing.
        let n = out.len();
        t.flush(&mut out).unwrap();
        assert_eq!(out.len(), n);
    }

    #[test]
    fn a_discontinuity_codes_the_old_timelines_tail_first() {
        let (head, packets) = opus_tone(0, 1000, 1000);
        let (mut t, mut out) = transcode(&head, &packets);
        // The publisher's clock jumps 10 s: the normaliser marks the next frame.
        let (_, p) = &packets[0];
        t.push(p, 12_000, true, &mut out).unwrap();
        let old: Vec<AacPacket> = out.iter().filter(|p| p.time_ms < 12_000).cloned().collect();
        let end = tone_end_ms(&t, &old);
        assert!(
            (end - 2000.0).abs() < 22.0,
            "the old timeline's tail: {end}"
        );
        assert_eq!(t.resets, 1);
    }

    #[test]
    fn odd_headers_and_packets_are_errors() {
        let mut t = OpusToAac::new(128_000);
        let mut out = Vec::new();
        assert_eq!(
            t.push(&[0xfc, 1, 2], 0, false, &mut out),
            Err(BridgeError::NoConfig)
        );
        assert!(t.configure(b"OpusHeat").is_err());
        let mut six = OpusHead::parse(&opus_tone(0, 20, 0).0).unwrap();
        six.channels = 6;
        six.mapping_family = 1;
        six.stream_count = 4;
        six.coupled_count = 2;
        six.mapping = vec![0, 4, 1, 2, 3, 5];
        assert!(matches!(
            t.configure(&six.to_id_header()),
            Err(BridgeError::Format { channels: 6, .. })
        ));
        let mut rng = crate::testutil::Rng::new(9);
        t.configure(&opus_tone(0, 20, 0).0).unwrap();
        for i in 0..500 {
            let p: Vec<u8> = (0..rng.below(300)).map(|_| rng.below(256) as u8).collect();
            let _ = t.push(&p, i * 20, false, &mut out);
        }
    }
}
