//! `make bench-audio`: CPU per bridged audio stream, as a fraction of one core. Makes SECS
//! (default 20) seconds of stereo programme-like audio at 44.1 kHz (three tones and pink-ish
//! noise), encodes it to AAC-LC 128 kbit/s (not timed), then times on this thread:
//!
//! - AAC to Opus, the bridge WebRTC viewers of an AAC stream get (`rtmpd::audio::AacToOpus`:
//!   decode, resample to 48 kHz, Opus 128 kbit/s);
//! - Opus to AAC, the other direction (`rtmpd::audio::opus_aac::OpusToAac`: Opus decode, AAC-LC
//!   128 kbit/s in blocks with one frame of overlap); no server path runs it yet.
//!
//! CPU time is the process's user + system time (getrusage) around each run: the runs are
//! single-threaded, so on a busy machine this still counts only our work.

use std::time::Instant;

use rtmpd::audio::opus_aac::OpusToAac;
use rtmpd::audio::AacToOpus;
use rtmpd::media::opus::OpusHead;

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

    // Opus to AAC: the packets just made through `OpusToAac` (decode, AAC-LC 128 kbit/s).
    let head = OpusHead {
        channels: 2,
        pre_skip: rtmpd::audio::aac_opus::OPUS_LOOKAHEAD as u16,
        input_sample_rate: 48_000,
        output_gain: 0,
        mapping_family: 0,
        stream_count: 1,
        coupled_count: 1,
        mapping: Vec::new(),
    };
    let mut back = OpusToAac::new(128_000);
    back.configure(&head.to_id_header()).expect("the OpusHead");
    let mut aac = Vec::new();
    let (c0, w0) = (cpu_seconds(), Instant::now());
    for p in &packets {
        back.push(&p.data, p.time_ms, false, &mut aac)
            .expect("decodes");
    }
    let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
    let aac_units = aac.len();
    let aac_bytes: usize = aac.iter().map(|p| p.data.len()).sum();
    let audio_secs = aac_units as f64 * 1024.0 / 48_000.0;
    println!(
        "Opus to AAC: {audio_secs:.1} s of 48 kHz stereo Opus in {:.0} ms CPU ({:.0} ms wall): \
         {:.2}% of a core per stream; {aac_units} AAC frames, {:.0} kbit/s",
        cpu * 1000.0,
        wall * 1000.0,
        cpu / audio_secs * 100.0,
        aac_bytes as f64 * 8.0 / audio_secs / 1000.0
    );
}
