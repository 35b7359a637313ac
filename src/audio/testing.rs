//! Test helpers: a tone encoded as AAC access units with their stream times, and the checks the
//! bridge's output must pass (frequency, level, no gap, onset time).

use super::aac_opus::{OPUS_FRAME, OPUS_RATE};

pub const TONE_HZ: f64 = 1000.0;
/// The tone's amplitude (-12 dBFS peak).
pub const AMPLITUDE: f64 = 0.25;

/// AAC-LC access units of `silence_ms` of silence then `tone_ms` of a 1 kHz stereo tone at
/// `rate`, with stream times from `start_ms`, and the AudioSpecificConfig. The encoder's output
/// unit b decodes to input block b - 1 (its one frame of priming), so unit b is timed at block
/// b - 1's time, as a publisher's muxer does; unit 0 (the priming) is left out.
pub fn aac_tone(
    rate: u32,
    silence_ms: u64,
    tone_ms: u64,
    start_ms: u64,
) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
    let n_silence = (rate as u64 * silence_ms / 1000) as usize;
    let n = n_silence + (rate as u64 * tone_ms / 1000) as usize;
    let mut pcm = Vec::with_capacity(n * 2);
    for i in 0..n {
        let v = if i < n_silence {
            0.0
        } else {
            (2.0 * std::f64::consts::PI * TONE_HZ * (i - n_silence) as f64 / rate as f64).sin()
                * AMPLITUDE
        };
        pcm.push(v as f32);
        pcm.push(v as f32);
    }
    let mut enc = rusty_aac::AacEncoder::new(rusty_aac::AacEncoderConfig::default());
    enc.push_pcm(&pcm, 2, rate).unwrap();
    enc.finish();
    let mut units = Vec::new();
    while let Ok(p) = enc.next_packet() {
        units.push(p.data);
    }
    let timed = units
        .into_iter()
        .enumerate()
        .skip(1)
        .map(|(b, u)| (start_ms + ((b as u64 - 1) * 1024 * 1000) / rate as u64, u))
        .collect();
    (rusty_aac::audio_specific_config_bytes(rate, 2), timed)
}

/// Decodes Opus packets (in order, contiguous) to interleaved stereo at 48 kHz.
pub fn decode_opus(packets: &[&[u8]]) -> Vec<f32> {
    let mut d = opus_rs::OpusDecoder::new(OPUS_RATE as i32, 2).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0f32; OPUS_FRAME * 2 * 6];
    for p in packets {
        let n = d.decode(p, OPUS_FRAME * 6, &mut buf).unwrap();
        pcm.extend_from_slice(&buf[..n * 2]);
    }
    pcm
}

/// What the tone checks measured on one channel of 48 kHz audio.
#[derive(Debug)]
pub struct ToneReport {
    /// Frequency from zero crossings over the steady part (Hz).
    pub frequency: f64,
    /// RMS level against the input tone's, dB.
    pub level_db: f64,
    /// The quietest 10 ms window's RMS against the tone's, dB.
    pub min_window_db: f64,
    /// Where the tone starts, in ms from the first sample.
    pub onset_ms: f64,
}

/// Measures channel `ch` of interleaved stereo `pcm` (48 kHz); the steady part is from 100 ms
/// after the onset to the end less 100 ms.
pub fn measure(pcm: &[f32], ch: usize) -> ToneReport {
    let x: Vec<f64> = pcm.iter().skip(ch).step_by(2).map(|&v| v as f64).collect();
    let rate = OPUS_RATE as f64;
    let tone_rms = AMPLITUDE / 2f64.sqrt();
    // Onset: the first 1 ms window whose RMS reaches half the tone's.
    let win = 48;
    let onset = (0..x.len() / win)
        .find(|w| rms(&x[w * win..(w + 1) * win]) > tone_rms / 2.0)
        .map_or(x.len(), |w| w * win);
    let from = (onset + 4800).min(x.len());
    let to = x.len().saturating_sub(4800).max(from);
    let steady = &x[from..to];
    // Zero crossings (upwards), interpolated.
    let mut ups = Vec::new();
    for i in 1..steady.len() {
        if steady[i - 1] < 0.0 && steady[i] >= 0.0 {
            ups.push(i as f64 - 1.0 + steady[i - 1] / (steady[i - 1] - steady[i]));
        }
    }
    let frequency = if ups.len() > 1 {
        (ups.len() - 1) as f64 * rate / (ups[ups.len() - 1] - ups[0])
    } else {
        0.0
    };
    let level_db = 20.0 * (rms(steady) / tone_rms).log10();
    let min_window_db = steady
        .chunks_exact(480)
        .map(|w| 20.0 * (rms(w) / tone_rms).log10())
        .fold(f64::INFINITY, f64::min);
    ToneReport {
        frequency,
        level_db,
        min_window_db,
        onset_ms: onset as f64 / 48.0,
    }
}

fn rms(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

/// FFmpeg's `initial_padding` for libmp3lame: LAME's encoder delay (576) and the MP3 decoder's
/// (529), in samples at the stream's rate. FFmpeg times every packet this much earlier, so a
/// frame's time is the time of its decoded samples.
pub const MP3_DELAY: u64 = 576 + 529;

/// MP3 frames (FFmpeg's libmp3lame) of `silence_ms` of silence then `tone_ms` of a 1 kHz tone at
/// `rate` with `channels` (1 or 2), with stream times from `start_ms` as FFmpeg's FLV muxer gives
/// them (frame k at k frames' duration; the source's first sample is then `MP3_DELAY` samples
/// after `start_ms`). `None` (and "skipped: ...") without ffmpeg, unless RTMPD_REQUIRE_TOOLS=1.
pub fn mp3_tone(
    rate: u32,
    channels: u16,
    silence_ms: u64,
    tone_ms: u64,
    start_ms: u64,
) -> Option<Vec<(u64, Vec<u8>)>> {
    let s = silence_ms as f64 / 1000.0;
    let src = format!(
        "aevalsrc=exprs='if(gte(t,{s}),{AMPLITUDE}*sin(2*PI*{TONE_HZ}*(t-{s})),0)':c={}:s={rate}:d={}",
        if channels == 1 { "mono" } else { "stereo" },
        (silence_ms + tone_ms) as f64 / 1000.0
    );
    let bitrate = match rate {
        32_000.. => "128k",
        16_000.. => "64k",
        _ => "32k",
    };
    let run = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(&src)
        .args(["-c:a", "libmp3lame", "-b:a", bitrate, "-write_xing", "0"])
        .args(["-id3v2_version", "0", "-f", "mp3", "-"])
        .output();
    let data = match run {
        Ok(o) if o.status.success() => o.stdout,
        other => {
            assert!(
                std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "ffmpeg with libmp3lame required (RTMPD_REQUIRE_TOOLS=1): {other:?}"
            );
            println!("skipped: ffmpeg with libmp3lame not found");
            return None;
        }
    };
    // Split by the frames' headers, as an FLV muxer gets them (one frame a packet).
    let mut frames = Vec::new();
    let mut at = 0;
    let mut k = 0u64;
    while at + 4 <= data.len() {
        let h = &data[at..at + 4];
        assert!(h[0] == 0xFF && h[1] & 0xE0 == 0xE0, "no frame sync at {at}");
        let mpeg1 = h[1] & 0x18 == 0x18;
        let kbps: [usize; 15] = if mpeg1 {
            [
                0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
            ]
        } else {
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]
        };
        let spf = if mpeg1 { 1152 } else { 576 };
        let padding = ((h[2] >> 1) & 1) as usize;
        let len = spf / 8 * kbps[(h[2] >> 4) as usize] * 1000 / rate as usize + padding;
        assert!(
            len > 4 && at + len <= data.len(),
            "frame of {len} bytes at {at}"
        );
        frames.push((
            start_ms + k * spf as u64 * 1000 / rate as u64,
            data[at..at + len].to_vec(),
        ));
        at += len;
        k += 1;
    }
    Some(frames)
}
