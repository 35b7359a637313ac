//! A fixed-ratio polyphase resampler (windowed sinc, Kaiser window) from any AAC sampling rate to
//! Opus's 48 kHz, for interleaved `f32` PCM of one to two channels. Zero-phase: output sample `n`
//! is the input signal at time `n / 48000` counted from the first input sample, so the bridge's
//! timestamps need no correction for it; it holds back `HALF` input samples of look-ahead.

/// Taps on each side of the centre.
const HALF: usize = 16;
const TAPS: usize = 2 * HALF;
/// Kaiser window shape: about 80 dB of stop-band rejection with these taps.
const BETA: f64 = 8.0;
/// The pass band ends this far into the lower rate's Nyquist band.
const CUTOFF: f64 = 0.92;
/// Phases the table may hold (the AAC rates against 48 kHz need at most 640: 11025 Hz).
const MAX_PHASES: u64 = 4096;

#[derive(Debug)]
pub struct Resampler {
    channels: usize,
    /// Output samples per `down` input samples (the ratio in lowest terms).
    up: u64,
    down: u64,
    /// `up` rows of `TAPS` coefficients.
    table: Vec<f32>,
    /// Input not yet consumed, interleaved; `buf[0]` is input sample `base`.
    buf: Vec<f32>,
    base: u64,
    /// Next output sample.
    next: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The zeroth-order modified Bessel function, for the Kaiser window.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..50 {
        term *= (x / (2.0 * k as f64)).powi(2);
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

impl Resampler {
    /// `None` for a rate or channel count it does not take (0, over 4096 phases, over 8 channels).
    pub fn new(from_rate: u32, to_rate: u32, channels: usize) -> Option<Resampler> {
        if from_rate == 0 || to_rate == 0 || channels == 0 || channels > 8 {
            return None;
        }
        let g = gcd(from_rate as u64, to_rate as u64);
        let (up, down) = (to_rate as u64 / g, from_rate as u64 / g);
        if up > MAX_PHASES {
            return None;
        }
        // The cut-off, in cycles per input sample, below the lower of the two Nyquist rates.
        let fc = 0.5 * CUTOFF * (up as f64 / down as f64).min(1.0);
        let mut table = Vec::with_capacity(up as usize * TAPS);
        let norm = bessel_i0(BETA);
        for p in 0..up {
            let frac = p as f64 / up as f64;
            let row: Vec<f64> = (0..TAPS)
                .map(|k| {
                    // Tap k weighs input sample i - HALF + 1 + k against the output's position i + frac.
                    let t = k as f64 - (HALF as f64 - 1.0) - frac;
                    let x = 2.0 * fc * t;
                    let sinc = if x.abs() < 1e-12 {
                        1.0
                    } else {
                        (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                    };
                    let r = t / HALF as f64;
                    let w = if r.abs() >= 1.0 {
                        0.0
                    } else {
                        bessel_i0(BETA * (1.0 - r * r).sqrt()) / norm
                    };
                    2.0 * fc * sinc * w
                })
                .collect();
            // Unity gain at DC for every phase.
            let sum: f64 = row.iter().sum();
            table.extend(row.iter().map(|c| (c / sum) as f32));
        }
        Some(Resampler {
            channels,
            up,
            down,
            table,
            // HALF - 1 samples of silence before the first, so output 0 is centred on input 0.
            buf: vec![0.0; (HALF - 1) * channels],
            base: 0,
            next: 0,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Takes interleaved input and appends what can be computed to `out` (interleaved).
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let ch = self.channels;
        self.buf.extend_from_slice(&input[..input.len() / ch * ch]);
        // Buffer index of input sample i is i - base + HALF - 1 (the leading silence).
        let have = (self.buf.len() / ch) as u64;
        loop {
            let pos = self.next * self.down;
            let (i, phase) = (pos / self.up, (pos % self.up) as usize);
            // Taps reach buffer index (i - base) + TAPS - 1.
            let first = i - self.base;
            if first + TAPS as u64 > have {
                break;
            }
            let coeffs = &self.table[phase * TAPS..(phase + 1) * TAPS];
            let start = first as usize * ch;
            for c in 0..ch {
                let mut acc = 0.0f32;
                for (k, coef) in coeffs.iter().enumerate() {
                    acc += self.buf[start + k * ch + c] * coef;
                }
                out.push(acc);
            }
            self.next += 1;
        }
        // Drop what no later output reaches (output `next` starts at input `pos / up`).
        let keep_from = (self.next * self.down / self.up).saturating_sub(self.base);
        let drop = (keep_from as usize * ch).min(self.buf.len());
        self.buf.drain(..drop);
        self.base += drop as u64 / ch as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, n: usize, ch: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let v = (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() * 0.5;
                std::iter::repeat_n(v as f32, ch)
            })
            .collect()
    }

    #[test]
    fn a_tone_keeps_its_frequency_level_and_phase_at_every_aac_rate() {
        for &rate in &crate::media::aac::SAMPLE_RATES {
            let mut r = Resampler::new(rate, 48_000, 2).unwrap();
            let input = tone(rate, 1000.0, rate as usize, 2);
            let mut out = Vec::new();
            // In odd-sized pieces: the result does not depend on how the input is cut.
            for piece in input.chunks(2 * 301) {
                r.process(piece, &mut out);
            }
            let n = out.len() / 2;
            // All but the look-ahead's worth.
            let held = (HALF as u64 * 48_000).div_ceil(rate as u64) as usize + 1;
            assert!(n + held >= 48_000 && n <= 48_000, "{rate}: {n} samples");
            // Zero-phase: output n is the tone at n / 48000 s (away from the start-up edge).
            let mut err = 0.0f64;
            let mut peak = 0.0f64;
            for i in 480..n - 480 {
                let want = (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin() * 0.5;
                err = err.max((out[2 * i] as f64 - want).abs());
                peak = peak.max(out[2 * i + 1] as f64);
                assert_eq!(out[2 * i], out[2 * i + 1]);
            }
            assert!(err < 0.01, "{rate}: error {err}");
            assert!((peak - 0.5).abs() < 0.01, "{rate}: peak {peak}");
        }
    }

    #[test]
    fn content_above_the_lower_nyquist_rate_is_rejected() {
        // Up from 22.05 kHz, a 7 kHz tone's image (at 22050 - 7000 = 15050 Hz) must be gone.
        let mut r = Resampler::new(22_050, 48_000, 1).unwrap();
        let input = tone(22_050, 7_000.0, 22_050, 1);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        let level = |f: f64| {
            let (mut c, mut s) = (0.0, 0.0);
            for (i, v) in out.iter().enumerate().skip(1000) {
                let t = 2.0 * std::f64::consts::PI * f * i as f64 / 48_000.0;
                c += *v as f64 * t.cos();
                s += *v as f64 * t.sin();
            }
            (c * c + s * s).sqrt() * 2.0 / (out.len() - 1000) as f64
        };
        assert!(level(7_000.0) > 0.49, "{}", level(7_000.0));
        assert!(level(15_050.0) < 0.001, "{}", level(15_050.0));
    }

    #[test]
    fn odd_inputs_are_refused_or_bounded() {
        assert!(Resampler::new(0, 48_000, 2).is_none());
        assert!(Resampler::new(44_100, 48_000, 0).is_none());
        assert!(Resampler::new(44_101, 48_000, 2).is_none(), "48000 phases");
        let mut r = Resampler::new(48_000, 48_000, 2).unwrap();
        let mut out = Vec::new();
        r.process(&[0.5; 3], &mut out); // a half sample is ignored
        r.process(&vec![0.25; 20_000], &mut out);
        assert!(r.buf.len() < 2 * TAPS * 2, "{}", r.buf.len());
    }
}
