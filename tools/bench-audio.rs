//! `make bench-audio`: CPU per bridged audio stream, as a fraction of one core. Makes SECS
//! (default 20) seconds of stereo programme-like audio at 44.1 kHz (three tones and pink-ish
//! noise), encodes it to AAC-LC 128 kbit/s (not timed), then times on this thread:
//!
//! - AAC to Opus, the bridge WebRTC viewers of an AAC stream get (`rtmpd::audio::AacToOpus`:
//!   decode, resample to 48 kHz, Opus 128 kbit/s);
//! - Opus to AAC, the other direction's codec work (Opus decode, then AAC-LC 128 kbit/s encode
//!   in blocks of 8 frames with one frame of overlap, as a live encoder with rusty_aac's batch
//!   API must), for the budget; no server path uses it yet.
//!
//! CPU time is the process's user + system time (getrusage) around each run: the runs are
//! single-threaded, so on a busy machine this still counts only our work.

use std::time::Instant;

use rtmpd::audio::AacToOpus;

/// The process's CPU seconds (user + system); wall seconds where getrusage does not exist.
#[cfg(unix)]
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid starting value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

#[cfg(not(unix))]
fn cpu_seconds() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn programme(rate: u32, secs: u32) -> Vec<f32> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = 0.0f64;
    let n = (rate * secs) as usize;
    let mut pcm = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = i as f64 / rate as f64;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let white = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        noise = 0.98 * noise + 0.02 * white * 4.0;
        let tones = 0.15 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
            + 0.1 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
            + 0.05 * (2.0 * std::f64::consts::PI * 5000.0 * t * (1.0 + 0.01 * t)).sin();
        pcm.push((tones + 0.2 * noise) as f32);
        pcm.push((tones - 0.2 * noise) as f32);
    }
    pcm
}

fn main() {
    let secs: u32 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .clamp(1, 60);
    let rate = 44_100;
    let pcm = programme(rate, secs);
    let mut enc = rusty_aac::AacEncoder::new(rusty_aac::AacEncoderConfig::default());
    enc.push_pcm(&pcm, 2, rate).expect("PCM");
    enc.finish();
    let mut units = Vec::new();
    while let Ok(p) = enc.next_packet() {
        units.push(p.data);
    }
    let asc = rusty_aac::audio_specific_config_bytes(rate, 2);

    // AAC to Opus.
    let mut bridge = AacToOpus::new(None);
    bridge.configure(&asc).expect("the ASC");
    let mut packets = Vec::new();
    let (c0, w0) = (cpu_seconds(), Instant::now());
    for (i, u) in units.iter().enumerate() {
        let t = i as u64 * 1024 * 1000 / rate as u64;
        bridge.push(u, t, false, &mut packets).expect("decodes");
    }
    let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
    let bytes: usize = packets.iter().map(|p| p.data.len()).sum();
    println!(
        "AAC to Opus: {secs} s of 44.1 kHz stereo AAC-LC in {:.0} ms CPU ({:.0} ms wall): \
         {:.2}% of a core per stream; {} Opus packets, {:.0} kbit/s",
        cpu * 1000.0,
        wall * 1000.0,
        cpu / secs as f64 * 100.0,
        packets.len(),
        bytes as f64 * 8.0 / (packets.len() as f64 * 0.02) / 1000.0
    );

    // Opus to AAC: decode the packets just made, encode AAC-LC at 48 kHz.
    let (c0, w0) = (cpu_seconds(), Instant::now());
    let mut dec = opus_rs::OpusDecoder::new(48_000, 2).expect("decoder");
    let mut buf = vec![0f32; 960 * 2];
    let mut pcm48 = Vec::with_capacity(packets.len() * 1920);
    for p in &packets {
        let n = dec.decode(&p.data, 960, &mut buf).expect("decodes");
        pcm48.extend_from_slice(&buf[..n * 2]);
    }
    const BLOCK: usize = 8 * 1024;
    let mut aac_bytes = 0;
    let mut aac_units = 0;
    let mut at = 0;
    while at + BLOCK <= pcm48.len() / 2 {
        // One frame before the block, for the MDCT overlap; its packet is not kept.
        let from = at.saturating_sub(1024);
        let mut e = rusty_aac::AacEncoder::new(rusty_aac::AacEncoderConfig::default());
        e.push_pcm(&pcm48[from * 2..(at + BLOCK) * 2], 2, 48_000)
            .expect("PCM");
        e.finish();
        let skip = (at - from) / 1024;
        let mut k = 0;
        while let Ok(p) = e.next_packet() {
            if k >= skip && k < skip + BLOCK / 1024 {
                aac_bytes += p.data.len();
                aac_units += 1;
            }
            k += 1;
        }
        at += BLOCK;
    }
    let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
    let audio_secs = at as f64 / 48_000.0;
    println!(
        "Opus to AAC: {audio_secs:.1} s of 48 kHz stereo Opus in {:.0} ms CPU ({:.0} ms wall): \
         {:.2}% of a core per stream; {aac_units} AAC frames, {:.0} kbit/s",
        cpu * 1000.0,
        wall * 1000.0,
        cpu / audio_secs * 100.0,
        aac_bytes as f64 * 8.0 / audio_secs / 1000.0
    );
}
