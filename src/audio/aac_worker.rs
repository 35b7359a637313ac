//! One Opus stream's Opus to AAC bridge on a thread of its own (the pattern of `worker`, the
//! other direction): the loop hands the stream's Opus frames over and takes AAC frames back,
//! both through bounded queues, and never waits. Over either bound a frame is dropped and
//! counted (the AAC viewers then hear a gap; their video plays on). When the publish ends the
//! hub asks it to `finish`: the thread codes what it still holds (up to a block of the encoder,
//! 277 ms), hands that over, says so (`finished`) and ends, so recordings keep the last of the
//! audio. Dropped without that (the stream's audio stopped being Opus), it just ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use log::{debug, warn};

use super::aac_opus::BridgeError;
use super::opus_aac::{AacPacket, OpusToAac};
use super::worker::Wake;
use crate::hub::bridge::AudioBridge;
use crate::media::enhanced::PacketType;
use crate::media::frame::{Codec, Frame, Track, TAG_AUDIO};

/// Opus frames queued for the worker: 1.3 s of 20 ms packets.
pub const IN_QUEUE: usize = 64;
/// AAC frames queued for the loop: 2.7 s at 48 kHz (the encoder hands over 13 at a time).
pub const OUT_QUEUE: usize = 128;

/// What the loop sends the thread.
enum Job {
    /// An Opus configuration or packet of the stream.
    Frame(Frame),
    /// The publish ended: code what is held, hand it over, end.
    End,
}

/// Counters both sides update.
#[derive(Debug, Default)]
pub struct Shared {
    /// Opus frames the loop could not queue (the worker was behind).
    pub dropped_in: AtomicU64,
    /// AAC frames the worker could not queue (the loop was behind).
    pub dropped_out: AtomicU64,
    /// Frames the worker has finished (their AAC is queued by then).
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub decode_errors: AtomicU64,
    /// The thread runs (set before `start` returns, cleared as it ends).
    pub alive: AtomicBool,
    /// After `finish`: the thread queued its last AAC frame (set after it).
    pub finished: AtomicBool,
}

/// The loop's handle on one stream's Opus to AAC thread.
pub struct AacBridge {
    /// The stream, for the closing log line.
    name: String,
    tx: SyncSender<Job>,
    rx: Receiver<Frame>,
    shared: Arc<Shared>,
}

impl AacBridge {
    /// Starts the thread; `name` (the stream) goes into its log lines; `bitrate` is
    /// `--aac-bitrate` in bits per second.
    pub fn start(name: String, bitrate: u32, wake: Wake) -> std::io::Result<AacBridge> {
        let (tx, jobs) = mpsc::sync_channel::<Job>(IN_QUEUE);
        let (results, rx) = mpsc::sync_channel::<Frame>(OUT_QUEUE);
        let shared = Arc::new(Shared::default());
        shared.alive.store(true, Ordering::SeqCst);
        let sh = shared.clone();
        let n = name.clone();
        thread::Builder::new()
            .name("audio-bridge-aac".into())
            .spawn(move || {
                run(n, bitrate, jobs, results, &sh, wake);
                sh.alive.store(false, Ordering::SeqCst);
            })?;
        Ok(AacBridge {
            name,
            tx,
            rx,
            shared,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for AacBridge {
    /// The bridge's account, in one line (a warning when its queues dropped frames).
    fn drop(&mut self) {
        let sh = &self.shared;
        let dropped =
            sh.dropped_in.load(Ordering::Relaxed) + sh.dropped_out.load(Ordering::Relaxed);
        let line = format!(
            "{}: audio bridge (Opus to AAC) ended: {} Opus frames in, {} AAC frames out, {dropped} dropped, {} failed",
            self.name,
            sh.frames_in.load(Ordering::Relaxed),
            sh.frames_out.load(Ordering::Relaxed),
            sh.decode_errors.load(Ordering::Relaxed),
        );
        if dropped > 0 {
            warn!("{line}");
        } else {
            debug!("{line}");
        }
    }
}

impl AudioBridge for AacBridge {
    /// Takes Opus configuration and coded frames of the default track; anything else is
    /// ignored. False when the queue was full: the frame is dropped and counted.
    fn push(&mut self, frame: &Frame) -> bool {
        if frame.track != Track::Audio || frame.codec != Codec::Opus || frame.track_id != 0 {
            return true;
        }
        // The OpusHead and the packets; not the channel layout (MultichannelConfig) that
        // FFmpeg sends after the OpusHead, nor a sequence end.
        let kind = frame
            .enhanced()
            .and_then(|t| t.first)
            .map(|t| t.packet_type);
        if !matches!(
            kind,
            Some(PacketType::SequenceStart | PacketType::CodedFrames)
        ) {
            return true;
        }
        match self.tx.try_send(Job::Frame(frame.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped_in.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn poll(&mut self) -> Option<Frame> {
        match self.rx.try_recv() {
            Ok(f) => Some(f),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
        }
    }

    fn finish(&mut self) -> bool {
        self.tx.try_send(Job::End).is_ok()
    }

    fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::SeqCst) || !self.shared.alive.load(Ordering::SeqCst)
    }

    fn frames_made(&self) -> u64 {
        self.shared.frames_out.load(Ordering::Relaxed)
            + self.shared.dropped_out.load(Ordering::Relaxed)
    }

    fn frames_dropped(&self) -> u64 {
        self.shared.dropped_in.load(Ordering::Relaxed)
            + self.shared.dropped_out.load(Ordering::Relaxed)
    }
}

/// An AAC FLV tag body (legacy sound format 10: AAC, "44 kHz", 16-bit, stereo, as every
/// muxer writes it; the AudioSpecificConfig tells the real rate and channels) as a bridged
/// frame at stream time `time` (`dts` the player timestamp).
fn aac_frame(config: bool, payload: &[u8], time: u64, dts: u32) -> Option<Frame> {
    let mut data = Vec::with_capacity(2 + payload.len());
    data.extend_from_slice(&[0xAF, u8::from(!config)]);
    data.extend_from_slice(payload);
    let mut f = Frame::parse(TAG_AUDIO, dts, Bytes::from(data))?;
    f.time = time;
    f.bridged = true;
    Some(f)
}

fn run(
    name: String,
    bitrate: u32,
    jobs: Receiver<Job>,
    results: SyncSender<Frame>,
    shared: &Shared,
    wake: Wake,
) {
    debug!("{name}: audio bridge (Opus to AAC) started");
    let mut bridge = OpusToAac::new(bitrate);
    let mut out: Vec<AacPacket> = Vec::new();
    // The AAC sequence header goes out before the first AAC frame after each OpusHead.
    let mut header_due = false;
    let mut warned = false;
    // The last input's player-minus-stream time offset, for the tail coded at the end.
    let mut last_offset = 0i64;
    while let Ok(job) = jobs.recv() {
        let frame = match job {
            Job::Frame(f) => f,
            Job::End => {
                let result = crate::contain::run(|| bridge.flush(&mut out));
                if !matches!(result, Ok(Ok(()))) {
                    shared.decode_errors.fetch_add(1, Ordering::Relaxed);
                    out.clear();
                }
                // The tail goes out timed on from the last frames (no clock jump since).
                send(
                    &bridge,
                    &mut out,
                    &mut header_due,
                    last_offset,
                    &results,
                    shared,
                );
                shared.finished.store(true, Ordering::SeqCst);
                wake();
                break;
            }
        };
        let payload = frame.payload();
        // Player timestamp minus stream time of the input (they differ after the normaliser
        // bridged a publisher's clock jump), applied to the output.
        let dts_offset = i64::from(frame.dts) - frame.time as i64;
        if frame.discontinuity && !frame.config {
            // The old timeline's tail first, with its own player times (a clock jump the
            // normaliser bridged changes the offset from here on).
            if matches!(crate::contain::run(|| bridge.flush(&mut out)), Ok(Ok(())))
                && !send(
                    &bridge,
                    &mut out,
                    &mut header_due,
                    last_offset,
                    &results,
                    shared,
                )
            {
                return;
            }
            out.clear();
        }
        let result = if frame.config {
            header_due = true;
            crate::contain::run(|| bridge.configure(payload))
        } else {
            crate::contain::run(|| bridge.push(payload, frame.time, frame.discontinuity, &mut out))
        };
        match result {
            Ok(Ok(())) | Ok(Err(BridgeError::NoConfig)) => {}
            Ok(Err(e)) => {
                shared.decode_errors.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    warn!("{name}: audio bridge (Opus to AAC): {e} (further failures are counted)");
                    warned = true;
                }
            }
            Err(panic) => {
                // The codec library panicked: keep the configuration, start the coding over.
                warn!(
                    "{name}: audio bridge (Opus to AAC): the codec failed ({panic}); restarting it"
                );
                bridge.restart();
                out.clear();
            }
        }
        last_offset = dts_offset;
        if out.is_empty() {
            shared.frames_in.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        if !send(
            &bridge,
            &mut out,
            &mut header_due,
            dts_offset,
            &results,
            shared,
        ) {
            return;
        }
        shared.frames_in.fetch_add(1, Ordering::SeqCst);
        wake();
    }
    debug!("{name}: audio bridge (Opus to AAC) stopped");
}

/// Queues the access units in `out` for the loop (the AAC sequence header first when one is
/// due), dropping and counting what does not fit. False when the loop's side is gone.
fn send(
    bridge: &OpusToAac,
    out: &mut Vec<AacPacket>,
    header_due: &mut bool,
    dts_offset: i64,
    results: &SyncSender<Frame>,
    shared: &Shared,
) -> bool {
    if out.is_empty() {
        return true;
    }
    let mut frames = Vec::with_capacity(out.len() + 1);
    if *header_due {
        if let Some(asc) = bridge.audio_specific_config() {
            let t = out[0].time_ms;
            frames.extend(aac_frame(true, &asc, t, dts(t, dts_offset)));
            *header_due = false;
        }
    }
    for p in out.drain(..) {
        frames.extend(aac_frame(
            false,
            &p.data,
            p.time_ms,
            dts(p.time_ms, dts_offset),
        ));
    }
    for f in frames {
        match results.try_send(f) {
            Ok(()) => {
                shared.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                shared.dropped_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
    true
}

/// The player timestamp of stream time `t` (32-bit, wrapping, like every RTMP timestamp).
fn dts(t: u64, offset: i64) -> u32 {
    (t as i64).wrapping_add(offset) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::opus::OpusHead;
    use std::time::{Duration, Instant};

    /// An Enhanced RTMP Opus tag body (`Opus` FourCC) at `dts`, its stream time `time`.
    fn opus_frame(config: bool, payload: &[u8], dts: u32, time: u64) -> Frame {
        let mut data = vec![0x90 | u8::from(!config)];
        data.extend_from_slice(b"Opus");
        data.extend_from_slice(payload);
        let mut f = Frame::parse(TAG_AUDIO, dts, Bytes::from(data)).unwrap();
        f.time = time;
        f
    }

    fn wait(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn opus_frames_come_back_as_a_sequence_header_then_timed_aac_and_the_thread_ends() {
        let mut enc = opus_rs::OpusEncoder::new(48_000, 2, opus_rs::Application::Audio).unwrap();
        enc.bitrate_bps = 128_000;
        let head = OpusHead {
            channels: 2,
            pre_skip: crate::audio::aac_opus::OPUS_LOOKAHEAD as u16,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            stream_count: 1,
            coupled_count: 1,
            mapping: Vec::new(),
        };
        let mut b = AacBridge::start("test/aac".into(), 128_000, Arc::new(|| {})).unwrap();
        // The player timestamps run 1000 ms behind the stream time (a bridged clock jump).
        let base = 5_000u64;
        assert!(b.push(&opus_frame(true, &head.to_id_header(), 4_000, base)));
        // MultichannelConfig (as FFmpeg sends it): not the bridge's.
        let mut mc = opus_frame(true, &[], 4_000, base);
        mc.data = Bytes::from_static(b"\x94Opus\x01\x02\x00\x00\x00\x03");
        assert!(b.push(&mc));
        let mut buf = [0u8; 1500];
        let pcm: Vec<f32> = (0..960 * 2)
            .map(|i| ((i / 2) as f32 * 0.13).sin() * 0.2)
            .collect();
        let n = 50; // 1 s
        for k in 0..n {
            let len = enc.encode(&pcm, 960, &mut buf).unwrap();
            let t = base + 20 * k;
            // Waits for room rather than dropping: this test is about what comes out.
            wait("room in the queue", || {
                b.shared().dropped_in.load(Ordering::SeqCst) == 0
            });
            assert!(b.push(&opus_frame(false, &buf[..len], (t - 1000) as u32, t)));
            let sh = b.shared().clone();
            wait("the worker keeps up", || {
                sh.frames_in.load(Ordering::SeqCst) + (IN_QUEUE as u64) > k + 2
            });
        }
        let sh = b.shared().clone();
        wait("the worker takes every frame", || {
            sh.frames_in.load(Ordering::SeqCst) == n + 1
        });
        let mut out = Vec::new();
        while let Some(f) = b.poll() {
            out.push(f);
        }
        // Whole blocks of 13 frames so far; the publish ends: the thread codes the rest.
        assert_eq!(
            (out.len() - 1) % 13,
            12,
            "{} AAC frames before the end",
            out.len()
        );
        assert!(!b.finished());
        assert!(b.finish());
        wait("the tail is coded", || b.finished());
        while let Some(f) = b.poll() {
            out.push(f);
        }
        // 1 s of Opus less its pre-skip: 46.6 frames of 1024 samples, the last padded.
        assert_eq!(out.len(), 1 + 47, "the sequence header and every frame");
        assert!(out.iter().all(|f| f.bridged && f.codec == Codec::Aac));
        assert!(out[0].config, "the sequence header first");
        assert!(out[1..].iter().all(|f| !f.config));
        assert_eq!(
            out[0].payload(),
            &rusty_aac::audio_specific_config_bytes(48_000, 2)[..]
        );
        for f in &out {
            assert_eq!(
                f.dts as u64 + 1000,
                f.time,
                "player time follows the input's"
            );
            // Nothing timed before the first Opus packet (the encoder's priming frame, one
            // frame before the first sample, is not sent: `opus_aac`).
            assert!(f.time >= base && f.time < base + 1000, "{}", f.time);
        }
        for w in out[1..].windows(2) {
            let d = w[1].time - w[0].time;
            assert!((21..=22).contains(&d), "{} -> {}", w[0].time, w[1].time);
        }
        assert_eq!(sh.decode_errors.load(Ordering::SeqCst), 0);
        drop(b);
        wait("the thread ends", || !sh.alive.load(Ordering::SeqCst));
    }
}
