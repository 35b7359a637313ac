//! One stream's AAC or MP3 to Opus transcoder, without threads: AAC access units or MP3 frames
//! and their stream times in, 20 ms Opus packets and their stream times out (`worker` runs it off
//! the loop). The decoder (`Decoder`) is chosen by the frames' codec: AAC's from its
//! AudioSpecificConfig (`configure`, then `push`), MP3's from each frame's own header
//! (`push_mp3`: FLV's MP3 has no sequence header; a tag may hold several frames).
//!
//! Timing, from the input frames only (never a clock): the first access unit after a (re)start
//! anchors the output at its `Frame::time`; every later sample is counted from there, so the
//! packets are 20 ms apart exactly. The AAC encoder's priming needs no correction: an access
//! unit's time is the time of its own decoded samples (the publisher's muxer shifted the primed
//! first unit like everything else). Likewise MP3: the encoder's delay and the decoder's (LAME's
//! 576 and the synthesis filterbank's 529 samples) are in the frames' times already (FFmpeg
//! shifts every packet back by both, its `initial_padding`), and the decoder gives each frame's
//! samples from the first frame on, so a frame's time is its decoded samples' time (measured
//! below and end to end). The resampler is zero-phase. The Opus encoder delays its
//! input by `OPUS_LOOKAHEAD` samples (the pre-skip a file would carry, which RTP cannot): the
//! encoder is first fed `OPUS_FRAME - OPUS_LOOKAHEAD` samples of silence, so the first real
//! sample decodes at the start of the second packet, whose time is then the anchor exactly.
//! A discontinuity from the normaliser, a new AudioSpecificConfig, an MP3 frame of another rate
//! or channel count, or input time drifting more than `MAX_DRIFT_MS` from the samples counted
//! restarts the transcoder at the next unit.

use std::fmt;

use super::resample::Resampler;

/// Opus's rate, and its 20 ms frame.
pub const OPUS_RATE: u32 = 48_000;
pub const OPUS_FRAME: usize = 960;
/// The Opus encoder's delay at 48 kHz with `Application::Audio`: 2.5 ms of CELT overlap and
/// 4 ms of delay compensation (libopus's `OPUS_GET_LOOKAHEAD`); tested below.
pub const OPUS_LOOKAHEAD: usize = 312;
/// Input whose time strays this far from the samples counted since the anchor restarts the
/// bridge (a publisher's clock step the normaliser let through, or lost audio).
pub const MAX_DRIFT_MS: i64 = 100;
/// The largest `--opus-bitrate` (bits per second).
pub const MAX_OPUS_BITRATE: u32 = 256_000;
/// The largest Opus packet we take from the encoder (1275 is Opus's own limit for a frame).
const MAX_PACKET: usize = 1500;

/// One Opus packet (20 ms) and its stream time in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusPacket {
    pub time_ms: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeError {
    /// Coded audio before any AudioSpecificConfig.
    NoConfig,
    /// The AudioSpecificConfig is one the decoder does not take.
    Config(String),
    /// An access unit (AAC) or frame (MP3) did not decode (it is replaced by silence).
    Decode(String),
    /// The decoded audio's rate or channel count cannot be resampled.
    Format { rate: u32, channels: u16 },
    /// The Opus encoder failed.
    Encode(String),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::NoConfig => write!(f, "AAC audio before its AudioSpecificConfig"),
            BridgeError::Config(e) => write!(f, "the AAC configuration is not decodable: {e}"),
            BridgeError::Decode(e) => write!(f, "an audio frame did not decode: {e}"),
            BridgeError::Format { rate, channels } => {
                write!(
                    f,
                    "audio at {rate} Hz with {channels} channels cannot be bridged"
                )
            }
            BridgeError::Encode(e) => write!(f, "the Opus encoder failed: {e}"),
        }
    }
}

/// Counters for the log and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeCounters {
    pub frames_in: u64,
    pub packets_out: u64,
    /// Access units that did not decode (each replaced by its length of silence).
    pub decode_errors: u64,
    /// Restarts: discontinuities, new configurations, drift.
    pub resets: u64,
}

/// The running part: made from the first decoded unit (its rate and channel count).
struct Running {
    resampler: Resampler,
    encoder: opus_rs::OpusEncoder,
    /// Channels in (decoded) and out (Opus: 1 or 2).
    in_channels: usize,
    out_channels: usize,
    in_rate: u32,
    /// Stream time of the first real sample.
    anchor_ms: u64,
    /// Input samples (per channel) taken since the anchor.
    in_samples: u64,
    /// Resampled samples waiting for a whole Opus frame (interleaved).
    pending: Vec<f32>,
    /// Opus packets made since the anchor (packet 0 holds the priming silence).
    packets: u64,
    /// Samples per channel of the last decoded unit (the silence that replaces a bad one).
    unit_len: usize,
}

/// The decoder, chosen by the frames' codec.
enum Decoder {
    /// From the AudioSpecificConfig (boxed like the other: a kilobyte).
    Aac(Box<rusty_aac::AacDecoder>),
    /// From the first MP3 frame; its state (bit reservoir, filterbank) carries from frame to
    /// frame. Boxed: about 22 KiB.
    Mp3(Box<nanomp3::Decoder>),
}

/// The stream's audio to Opus (AAC or MP3; the name is the first codec it took).
pub struct AacToOpus {
    /// `--opus-bitrate`; `None`: 128 kbit/s stereo, 64 kbit/s mono.
    bitrate: Option<u32>,
    decoder: Option<Decoder>,
    running: Option<Running>,
    /// An MP3 frame's decoded samples (`nanomp3::MAX_SAMPLES_PER_FRAME`), kept between frames.
    mp3_pcm: Vec<f32>,
    pub counters: BridgeCounters,
}

impl AacToOpus {
    pub fn new(bitrate: Option<u32>) -> AacToOpus {
        AacToOpus {
            bitrate: bitrate.map(|b| b.min(MAX_OPUS_BITRATE)),
            decoder: None,
            running: None,
            mp3_pcm: Vec::new(),
            counters: BridgeCounters::default(),
        }
    }

    /// A new AudioSpecificConfig (the sequence header's payload): restarts everything.
    pub fn configure(&mut self, asc: &[u8]) -> Result<(), BridgeError> {
        self.restart();
        self.decoder = None;
        let d = rusty_aac::AacDecoder::with_config_bytes(asc)
            .map_err(|e| BridgeError::Config(e.to_string()))?;
        self.decoder = Some(Decoder::Aac(Box::new(d)));
        Ok(())
    }

    /// Drops the timeline: the next unit anchors a new one.
    pub fn restart(&mut self) {
        if self.running.take().is_some() {
            self.counters.resets += 1;
        }
    }

    /// One raw AAC access unit at stream time `time_ms`; the Opus packets it completes.
    /// `discontinuity`: the normaliser saw the source's clock jump before it.
    pub fn push(
        &mut self,
        unit: &[u8],
        time_ms: u64,
        discontinuity: bool,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), BridgeError> {
        self.counters.frames_in += 1;
        if discontinuity {
            self.restart();
        }
        let Some(Decoder::Aac(decoder)) = self.decoder.as_mut() else {
            return Err(BridgeError::NoConfig);
        };
        let decoded = match decoder.decode(unit, None) {
            Ok(d) if d.channels > 0 && !d.samples.is_empty() => d,
            Ok(_) => return Ok(()),
            Err(e) => {
                self.counters.decode_errors += 1;
                // Silence in its place keeps the timeline (when there is one).
                if let Some(r) = self.running.as_mut() {
                    let silence = vec![0.0; r.unit_len * r.in_channels];
                    let (rate, ch) = (r.in_rate, r.in_channels as u16);
                    self.feed(&silence, rate, ch, time_ms, out)?;
                }
                return Err(BridgeError::Decode(e.to_string()));
            }
        };
        self.feed(
            &decoded.samples,
            decoded.sample_rate,
            decoded.channels,
            time_ms,
            out,
        )
    }

    /// One FLV MP3 tag's payload (one or more MPEG audio frames, Layer III or I/II, any rate and
    /// channel count the header gives) at stream time `time_ms`; the Opus packets it completes.
    /// The first MP3 frame (or the first after AAC) starts a decoder; a frame whose rate or
    /// channel count differs from the last restarts the timeline (`feed`). A frame that does not
    /// decode is replaced by silence while there is a timeline (the error is returned after the
    /// tag's other frames).
    pub fn push_mp3(
        &mut self,
        data: &[u8],
        time_ms: u64,
        discontinuity: bool,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), BridgeError> {
        self.counters.frames_in += 1;
        if discontinuity {
            self.restart();
        }
        if !matches!(self.decoder, Some(Decoder::Mp3(_))) {
            self.restart();
            self.decoder = Some(Decoder::Mp3(Box::default()));
        }
        let mut pcm = std::mem::take(&mut self.mp3_pcm);
        pcm.resize(nanomp3::MAX_SAMPLES_PER_FRAME, 0.0);
        let result = self.decode_mp3(data, time_ms, &mut pcm, out);
        self.mp3_pcm = pcm;
        result
    }

    fn decode_mp3(
        &mut self,
        data: &[u8],
        time_ms: u64,
        pcm: &mut [f32],
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), BridgeError> {
        let mut at = 0;
        // Microseconds of audio decoded (or replaced) from this tag so far: the next frame's
        // offset from the tag's time.
        let mut offset_us = 0u64;
        // A frame header was found (decoded or not).
        let mut found = false;
        let mut error: Option<String> = None;
        while at < data.len() {
            let Some(Decoder::Mp3(decoder)) = self.decoder.as_mut() else {
                return Err(BridgeError::NoConfig);
            };
            let (used, result) = decoder.decode(&data[at..], pcm);
            if used == 0 {
                break;
            }
            at += used;
            let t = time_ms + offset_us / 1000;
            found |= result != Err(nanomp3::DecodeError::NoFrame);
            match result {
                Ok(info) if info.samples_produced > 0 => {
                    let channels = info.channels.num() as usize;
                    let n = (info.samples_produced * channels).min(pcm.len());
                    self.feed(&pcm[..n], info.sample_rate, channels as u16, t, out)?;
                    offset_us +=
                        info.samples_produced as u64 * 1_000_000 / info.sample_rate.max(1) as u64;
                }
                Ok(_) => {}
                // Bytes that are no frame (junk, tags, a frame cut short): skipped.
                Err(nanomp3::DecodeError::NoFrame) => {}
                // The first frames after joining a stream may need bit reservoir from before it:
                // normal then, a lost frame's trace mid-stream.
                Err(e) => {
                    let first = self.running.is_none()
                        && matches!(e, nanomp3::DecodeError::ReservoirUnavailable(_));
                    if first {
                        continue;
                    }
                    self.counters.decode_errors += 1;
                    error.get_or_insert_with(|| e.to_string());
                    // Silence in its place keeps the timeline (when there is one).
                    if let Some(r) = self.running.as_ref() {
                        let silence = vec![0.0; r.unit_len * r.in_channels];
                        let (rate, ch) = (r.in_rate, r.in_channels as u16);
                        offset_us += r.unit_len as u64 * 1_000_000 / rate as u64;
                        self.feed(&silence, rate, ch, t, out)?;
                    }
                }
            }
        }
        if !found {
            self.counters.decode_errors += 1;
            error = Some("no MPEG audio frame in the tag".into());
        }
        match error {
            Some(e) => Err(BridgeError::Decode(e)),
            None => Ok(()),
        }
    }

    fn feed(
        &mut self,
        samples: &[f32],
        rate: u32,
        channels: u16,
        time_ms: u64,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), BridgeError> {
        if let Some(r) = &self.running {
            let expected = r.anchor_ms as i64 + (r.in_samples * 1000 / r.in_rate as u64) as i64;
            let drift = time_ms as i64 - expected;
            if r.in_rate != rate || r.in_channels != channels as usize || drift.abs() > MAX_DRIFT_MS
            {
                self.restart();
            }
        }
        if self.running.is_none() {
            self.running = Some(self.start(rate, channels, time_ms)?);
        }
        let r = self.running.as_mut().expect("started above");
        let frames = samples.len() / r.in_channels;
        r.in_samples += frames as u64;
        r.unit_len = frames;
        let mut resampled = Vec::with_capacity(frames * 2 * r.out_channels);
        let input: Vec<f32>;
        let mixed = if r.in_channels == r.out_channels {
            samples
        } else {
            input = downmix(samples, r.in_channels);
            &input
        };
        r.resampler.process(mixed, &mut resampled);
        r.pending.extend_from_slice(&resampled);
        let step = OPUS_FRAME * r.out_channels;
        let mut buf = [0u8; MAX_PACKET];
        let mut at = 0;
        while r.pending.len() - at >= step {
            let n = r
                .encoder
                .encode(&r.pending[at..at + step], OPUS_FRAME, &mut buf)
                .map_err(|e| BridgeError::Encode(e.to_string()))?;
            at += step;
            let k = r.packets;
            r.packets += 1;
            // Packet k holds input from (k - 1) * 20 ms on; packet 0 only the priming silence,
            // sent when it has a time of its own.
            let Some(time_ms) = (r.anchor_ms + k * 20).checked_sub(20) else {
                continue;
            };
            self.counters.packets_out += 1;
            out.push(OpusPacket {
                time_ms,
                data: buf[..n].to_vec(),
            });
        }
        r.pending.drain(..at);
        Ok(())
    }

    fn start(&self, rate: u32, channels: u16, time_ms: u64) -> Result<Running, BridgeError> {
        let format = BridgeError::Format { rate, channels };
        let in_channels = channels as usize;
        // Mono stays mono; stereo and more go out as stereo.
        let out_channels = in_channels.min(2);
        let resampler = Resampler::new(rate, OPUS_RATE, out_channels).ok_or(format)?;
        let mut encoder =
            opus_rs::OpusEncoder::new(OPUS_RATE as i32, out_channels, opus_rs::Application::Audio)
                .map_err(|e| BridgeError::Encode(e.to_string()))?;
        let default = if out_channels == 1 { 64_000 } else { 128_000 };
        encoder.bitrate_bps = self.bitrate.unwrap_or(default) as i32;
        Ok(Running {
            resampler,
            encoder,
            in_channels,
            out_channels,
            in_rate: rate,
            anchor_ms: time_ms,
            in_samples: 0,
            pending: vec![0.0; (OPUS_FRAME - OPUS_LOOKAHEAD) * out_channels],
            packets: 0,
            unit_len: 1024,
        })
    }
}

/// More than two channels to stereo, in AAC's channel order (centre first: C, L, R, Ls, Rs, LFE,
/// ...): L = L + 0.7 C + 0.7 Ls, R likewise, scaled so a full-scale input cannot clip; the LFE and
/// anything past the first five channels are left out.
fn downmix(samples: &[f32], channels: usize) -> Vec<f32> {
    const K: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let mut out = Vec::with_capacity(samples.len() / channels * 2);
    for f in samples.chunks_exact(channels) {
        let get = |i: usize| f.get(i).copied().unwrap_or(0.0);
        let (c, l, r, ls, rs) = (get(0), get(1), get(2), get(3), get(4));
        let norm = if channels >= 5 {
            1.0 + 2.0 * K
        } else {
            1.0 + K
        };
        out.push((l + K * c + K * ls) / norm);
        out.push((r + K * c + K * rs) / norm);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testing::{aac_tone, decode_opus, measure, mp3_tone, MP3_DELAY};

    /// Runs units through a bridge; the packets' times and the decoded audio.
    fn bridge(asc: &[u8], units: &[(u64, Vec<u8>)]) -> (Vec<OpusPacket>, AacToOpus) {
        let mut b = AacToOpus::new(None);
        b.configure(asc).unwrap();
        let mut out = Vec::new();
        for (t, u) in units {
            b.push(u, *t, false, &mut out).unwrap();
        }
        (out, b)
    }

    #[test]
    fn the_opus_lookahead_is_what_the_encoder_delays() {
        // A click at sample 4800 comes out of the decoder OPUS_LOOKAHEAD samples later.
        let mut enc = opus_rs::OpusEncoder::new(48_000, 2, opus_rs::Application::Audio).unwrap();
        enc.bitrate_bps = 128_000;
        let mut pcm = vec![0f32; 2 * 48_000];
        for s in &mut pcm[2 * 4800..2 * 4810] {
            *s = 0.8;
        }
        let mut packets = Vec::new();
        let mut buf = [0u8; 1500];
        for f in pcm.chunks_exact(2 * OPUS_FRAME) {
            let n = enc.encode(f, OPUS_FRAME, &mut buf).unwrap();
            packets.push(buf[..n].to_vec());
        }
        let refs: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
        let out = decode_opus(&refs);
        let peak = (0..out.len() / 2)
            .max_by(|&a, &b| out[2 * a].abs().total_cmp(&out[2 * b].abs()))
            .unwrap();
        let delay = peak as i64 - 4805;
        assert!(
            (delay - OPUS_LOOKAHEAD as i64).abs() <= 8,
            "the encoder delays by {delay} samples"
        );
    }

    #[test]
    fn a_1_khz_tone_keeps_frequency_level_time_and_has_no_gap() {
        for rate in [44_100, 48_000, 32_000] {
            // 500 ms of silence from stream time 1000 ms, then 3 s of tone: onset at 1500 ms.
            let (asc, units) = aac_tone(rate, 500, 3000, 1000);
            let (packets, b) = bridge(&asc, &units);
            // Contiguous, 20 ms apart, anchored at the first unit's time (packet 0 included).
            assert_eq!(packets[0].time_ms, 980, "{rate}");
            for w in packets.windows(2) {
                assert_eq!(w[1].time_ms, w[0].time_ms + 20);
            }
            assert_eq!(b.counters.resets, 0);
            let refs: Vec<&[u8]> = packets.iter().map(|p| &p.data[..]).collect();
            let pcm = decode_opus(&refs);
            for ch in 0..2 {
                let r = measure(&pcm, ch);
                let onset = packets[0].time_ms as f64 + r.onset_ms;
                eprintln!("{rate} Hz, channel {ch}: {r:?}, onset at {onset:.1} ms (want 1500)");
                assert!((r.frequency - 1000.0).abs() < 10.0, "{rate}: {r:?}");
                assert!(r.level_db.abs() < 1.0, "{rate}: {r:?}");
                assert!(r.min_window_db > -3.0, "{rate}: a gap: {r:?}");
                // Exact to the 1 ms window (the Opus look-ahead alone would be 6.5 ms).
                assert!((onset - 1500.0).abs() < 2.0, "{rate}: onset {onset}");
            }
        }
    }

    /// HE-AAC v1 with explicit (hierarchical) signalling: object type 5 (SBR), core 24 kHz,
    /// stereo, extension rate 48 kHz, core object type 2 (AAC-LC), GASpecificConfig all zero.
    const HE_AAC_24_48_STEREO: [u8; 4] = [0x2B, 0x11, 0x88, 0x00];

    /// No HE-AAC encoder is at hand, so the frames are AAC-LC coded at 24 kHz without SBR
    /// payloads, under an HE-AAC configuration (what an HE-AAC stream whose SBR data is empty
    /// looks like): the decoder runs its SBR stage (QMF analysis and synthesis at 48 kHz, no
    /// high band to add) and the core band comes out at 48 kHz. The SBR payload decoding itself
    /// is rusty_aac's and not tested here.
    #[test]
    fn he_aac_signalling_is_decoded_at_its_output_rate_and_bridged() {
        let d = rusty_aac::AacDecoder::with_config_bytes(&HE_AAC_24_48_STEREO).unwrap();
        let sbr = d.sbr_config().expect("SBR signalled");
        assert!(sbr.sbr_present && !sbr.ps_present, "{sbr:?}");
        assert_eq!(
            (sbr.core_sample_rate, sbr.output_sample_rate),
            (24_000, 48_000)
        );
        assert_eq!(sbr.core_object_type, 2);
        assert_eq!(d.sbr_support(), rusty_aac::sbr::SbrSupport::Full);
        // Stream times as a muxer gives them: one access unit per 1024 core samples (42.7 ms).
        let (_, units) = aac_tone(24_000, 500, 3000, 1000);
        let mut probe = rusty_aac::AacDecoder::with_config_bytes(&HE_AAC_24_48_STEREO).unwrap();
        let first = probe.decode(&units[0].1, None).unwrap();
        assert_eq!((first.sample_rate, first.channels), (48_000, 2));
        assert_eq!(
            first.samples.len(),
            2 * 2048,
            "2048 samples a unit at 48 kHz"
        );
        // The SBR stage's own delay, at 48 kHz: where the tone starts decoded under the HE-AAC
        // configuration against under plain AAC-LC at 24 kHz. A real HE-AAC encoder's
        // timestamps include it (its delay is the whole chain's); these LC frames' do not.
        let onset_at = |asc: &[u8]| {
            let mut d = rusty_aac::AacDecoder::with_config_bytes(asc).unwrap();
            let mut x = Vec::new();
            for (_, u) in &units {
                x.extend(d.decode(u, None).unwrap().samples.into_iter().step_by(2));
            }
            x.iter().position(|v| v.abs() > 0.125).unwrap()
        };
        let lc = 2 * onset_at(&rusty_aac::audio_specific_config_bytes(24_000, 2));
        let he = onset_at(&HE_AAC_24_48_STEREO);
        let sbr_delay_ms = (he as f64 - lc as f64) / 48.0;
        eprintln!(
            "HE-AAC: the SBR stage delays the core by {} samples at 48 kHz ({sbr_delay_ms:.1} ms)",
            he as i64 - lc as i64
        );
        assert!((0.0..=21.0).contains(&sbr_delay_ms), "{sbr_delay_ms} ms");
        let (packets, b) = bridge(&HE_AAC_24_48_STEREO, &units);
        assert_eq!(b.counters.decode_errors, 0);
        assert_eq!(b.counters.resets, 0);
        assert_eq!(packets[0].time_ms, 980);
        for w in packets.windows(2) {
            assert_eq!(w[1].time_ms, w[0].time_ms + 20);
        }
        let refs: Vec<&[u8]> = packets.iter().map(|p| &p.data[..]).collect();
        let pcm = decode_opus(&refs);
        for ch in 0..2 {
            let r = measure(&pcm, ch);
            let onset = packets[0].time_ms as f64 + r.onset_ms;
            let want = 1500.0 + sbr_delay_ms;
            eprintln!(
                "HE-AAC 24/48 kHz, channel {ch}: {r:?}, onset at {onset:.1} ms (want {want:.1}: \
                 1500 and the SBR stage's delay)"
            );
            assert!((r.frequency - 1000.0).abs() < 10.0, "{r:?}");
            assert!(r.level_db.abs() < 1.0, "{r:?}");
            assert!(r.min_window_db > -3.0, "a gap: {r:?}");
            // The bridge adds nothing of its own (to the 1 ms window of `measure`).
            assert!((onset - want).abs() < 2.0, "onset {onset}, want {want}");
        }
    }

    #[test]
    fn a_discontinuity_or_drift_restarts_the_timeline() {
        let (asc, units) = aac_tone(48_000, 0, 1000, 0);
        let mut b = AacToOpus::new(Some(96_000));
        b.configure(&asc).unwrap();
        let mut out = Vec::new();
        for (t, u) in &units[..20] {
            b.push(u, *t, false, &mut out).unwrap();
        }
        // Anchored at 0: packet 0 (time -20) is not sent.
        assert_eq!(out[0].time_ms, 0);
        out.clear();
        // The source's clock jumped (the normaliser says so): a new anchor at the new time.
        b.push(&units[20].1, 5000, true, &mut out).unwrap();
        b.push(&units[21].1, 5021, false, &mut out).unwrap();
        assert_eq!(b.counters.resets, 1);
        assert_eq!(out[0].time_ms, 4980);
        out.clear();
        // Input 300 ms later than its samples say, without a flag: restarted too.
        b.push(&units[22].1, 5400, false, &mut out).unwrap();
        assert_eq!(b.counters.resets, 2);
        assert!(out.iter().all(|p| p.time_ms >= 5380), "{out:?}");
    }

    #[test]
    fn hostile_configurations_and_units_are_errors_not_panics() {
        let mut rng = crate::testutil::Rng::new(27);
        let mut b = AacToOpus::new(None);
        let mut out = Vec::new();
        assert_eq!(
            b.push(&[1, 2, 3], 0, false, &mut out),
            Err(BridgeError::NoConfig)
        );
        for _ in 0..300 {
            let asc: Vec<u8> = (0..rng.below(6)).map(|_| rng.below(256) as u8).collect();
            let _ = b.configure(&asc);
            for t in 0..20 {
                let unit: Vec<u8> = (0..rng.below(400)).map(|_| rng.below(256) as u8).collect();
                let _ = b.push(&unit, t * 23, false, &mut out);
            }
        }
        // A good stream still works after all that.
        let (asc, units) = aac_tone(44_100, 0, 500, 0);
        out.clear();
        b.configure(&asc).unwrap();
        for (t, u) in &units {
            b.push(u, *t, false, &mut out).unwrap();
        }
        assert!(out.len() >= 20, "{}", out.len());
    }

    fn bridge_mp3(frames: &[(u64, Vec<u8>)]) -> (Vec<OpusPacket>, AacToOpus) {
        let mut b = AacToOpus::new(None);
        let mut out = Vec::new();
        for (t, f) in frames {
            b.push_mp3(f, *t, false, &mut out).unwrap();
        }
        (out, b)
    }

    #[test]
    fn an_mp3_tone_keeps_frequency_level_time_and_has_no_gap() {
        // MPEG-1 (44.1, 48 kHz), MPEG-2 (22.05 kHz) and MPEG-2.5 (8 kHz); stereo and mono.
        for (rate, channels) in [(44_100, 2), (48_000, 2), (22_050, 1), (8_000, 1)] {
            // 500 ms of silence, then 3 s of tone; FFmpeg's frame times from 1000 ms.
            let Some(frames) = mp3_tone(rate, channels, 500, 3000, 1000) else {
                return;
            };
            let t0 = std::time::Instant::now();
            let (packets, b) = bridge_mp3(&frames);
            let took = t0.elapsed();
            assert_eq!(packets[0].time_ms, 980, "{rate}");
            for w in packets.windows(2) {
                assert_eq!(w[1].time_ms, w[0].time_ms + 20);
            }
            assert_eq!((b.counters.resets, b.counters.decode_errors), (0, 0));
            let refs: Vec<&[u8]> = packets.iter().map(|p| &p.data[..]).collect();
            let pcm = decode_opus(&refs);
            // The source's first sample is FFmpeg's padding after the first frame's time.
            let want = 1500.0 + MP3_DELAY as f64 * 1000.0 / rate as f64;
            for ch in 0..2 {
                let r = measure(&pcm, ch);
                let onset = packets[0].time_ms as f64 + r.onset_ms;
                eprintln!(
                    "MP3 {rate} Hz {channels} ch -> Opus, channel {ch}: {r:?}, onset at \
                     {onset:.1} ms (want {want:.1}); {} frames in {:.1} ms",
                    frames.len(),
                    took.as_secs_f64() * 1000.0
                );
                assert!((r.frequency - 1000.0).abs() < 10.0, "{rate}: {r:?}");
                assert!(r.level_db.abs() < 1.0, "{rate}: {r:?}");
                assert!(r.min_window_db > -3.0, "{rate}: a gap: {r:?}");
                assert!(
                    (onset - want).abs() < 3.0,
                    "{rate}: onset {onset}, want {want}"
                );
            }
        }
    }

    #[test]
    fn mp3_tags_of_several_frames_a_join_mid_stream_and_a_format_change() {
        let Some(frames) = mp3_tone(44_100, 2, 0, 2000, 0) else {
            return;
        };
        // Two frames a tag, timed by the first: the same packets as one a tag.
        let (single, _) = bridge_mp3(&frames);
        let pairs: Vec<(u64, Vec<u8>)> = frames
            .chunks(2)
            .map(|c| (c[0].0, c.iter().flat_map(|f| f.1.clone()).collect()))
            .collect();
        let (paired, b) = bridge_mp3(&pairs);
        assert_eq!(b.counters.resets, 0);
        assert_eq!(paired, single);
        // Joining mid-stream: the first frames may need bit reservoir from before (no error,
        // no audio); the timeline starts at the first frame that decodes.
        let mut b = AacToOpus::new(None);
        let mut out = Vec::new();
        for (t, f) in &frames[20..] {
            b.push_mp3(f, *t, false, &mut out).unwrap();
        }
        assert_eq!((b.counters.decode_errors, b.counters.resets), (0, 0));
        let first = out[0].time_ms;
        assert!(
            (frames[20].0..=frames[22].0).contains(&(first + 20)),
            "{first}"
        );
        // A frame lost mid-stream (26 ms, within MAX_DRIFT_MS): the timeline goes on; a
        // successor short of its reservoir is replaced by silence and counted.
        let mut skipped: Vec<(u64, Vec<u8>)> = frames.clone();
        skipped.remove(40);
        let mut b = AacToOpus::new(None);
        out.clear();
        for (t, f) in &skipped {
            let _ = b.push_mp3(f, *t, false, &mut out);
        }
        eprintln!("a lost frame: {:?}", b.counters);
        assert_eq!(b.counters.resets, 0);
        assert!(b.counters.decode_errors <= 1, "{:?}", b.counters);
        for w in out.windows(2) {
            assert_eq!(w[1].time_ms, w[0].time_ms + 20);
        }
        // Another rate (the publisher's encoder restarted at 22.05 kHz mono): a new timeline.
        let Some(other) = mp3_tone(22_050, 1, 0, 500, 3000) else {
            return;
        };
        let mut b = AacToOpus::new(None);
        out.clear();
        for (t, f) in frames.iter().chain(&other) {
            b.push_mp3(f, *t, false, &mut out).unwrap();
        }
        assert_eq!(b.counters.resets, 1);
        assert!(
            out.iter().any(|p| p.time_ms == 2980),
            "a new anchor at 3000"
        );
    }

    #[test]
    fn hostile_mp3_bytes_are_errors_not_panics() {
        let mut rng = crate::testutil::Rng::new(2027);
        let mut b = AacToOpus::new(None);
        let mut out = Vec::new();
        assert!(b.push_mp3(&[], 0, false, &mut out).is_err());
        // Random bytes, and random bytes behind a plausible frame header (sync, MPEG-1/2/2.5,
        // Layer I-III, any bitrate and rate index) so the decoder gets past its frame search.
        for i in 0..3000u64 {
            let mut tag: Vec<u8> = (0..rng.below(1500)).map(|_| rng.below(256) as u8).collect();
            if i % 2 == 0 && tag.len() >= 4 {
                tag[0] = 0xFF;
                tag[1] |= 0xE0;
            }
            let _ = b.push_mp3(&tag, i * 26, rng.below(50) == 0, &mut out);
        }
        // Real frames with bytes changed.
        if let Some(frames) = mp3_tone(44_100, 2, 0, 1000, 0) {
            for round in 0..20 {
                for (t, f) in &frames {
                    let mut f = f.clone();
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(f.len());
                        f[at] = rng.below(256) as u8;
                    }
                    let _ = b.push_mp3(&f, round * 2000 + t, false, &mut out);
                }
            }
            // A good stream still works after all that.
            let mut b2 = AacToOpus::new(None);
            out.clear();
            for (t, f) in &frames {
                b2.push_mp3(f, *t, false, &mut out).unwrap();
            }
            assert!(out.len() >= 45, "{}", out.len());
        }
        // AAC frames after MP3 without a configuration: an error, not a panic.
        assert_eq!(
            b.push(&[1, 2, 3], 0, false, &mut out),
            Err(BridgeError::NoConfig)
        );
    }
}
