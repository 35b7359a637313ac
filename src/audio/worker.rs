//! One stream's bridge on a thread of its own: the loop hands AAC or MP3 frames over and takes Opus
//! packets back, both through bounded queues, and never waits. Over either bound a frame or
//! packet is dropped and counted (the viewers then hear a gap; their video plays on). The thread
//! ends when its `Bridge` is dropped (the last WebRTC viewer of the stream left); it is not
//! joined, so the loop never waits for an encode to finish.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread;

use log::{debug, warn};

use super::aac_opus::{AacToOpus, BridgeError, OpusPacket};
use crate::media::frame::{Codec, Frame, Track};

/// AAC frames queued for the worker: about 1.5 s at 44.1 kHz.
pub const IN_QUEUE: usize = 64;
/// Opus packets queued for the loop: 2.5 s.
pub const OUT_QUEUE: usize = 128;

/// Wakes the event loop when packets are ready (its `mio::Waker`; no mio here).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// What the worker hands back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeOutput {
    Packet(OpusPacket),
}

/// Counters both sides update.
#[derive(Debug, Default)]
pub struct Shared {
    /// AAC frames the loop could not queue (the worker was behind).
    pub dropped_in: AtomicU64,
    /// Opus packets the worker could not queue (the loop was behind).
    pub dropped_out: AtomicU64,
    /// Frames the worker has finished (their packets are queued by then).
    pub frames_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub decode_errors: AtomicU64,
    pub resets: AtomicU64,
    /// The thread runs (set before `start` returns, cleared as it ends).
    pub alive: AtomicBool,
}

/// The loop's handle on one stream's bridge thread.
pub struct Bridge {
    tx: SyncSender<Frame>,
    rx: Receiver<BridgeOutput>,
    shared: Arc<Shared>,
}

impl Bridge {
    /// Starts the thread; `name` (the stream) goes into its log lines. An error when no thread
    /// could be started (logged by the caller).
    pub fn start(name: String, bitrate: Option<u32>, wake: Wake) -> std::io::Result<Bridge> {
        let (tx, jobs) = mpsc::sync_channel::<Frame>(IN_QUEUE);
        let (results, rx) = mpsc::sync_channel::<BridgeOutput>(OUT_QUEUE);
        let shared = Arc::new(Shared::default());
        shared.alive.store(true, Ordering::SeqCst);
        let sh = shared.clone();
        thread::Builder::new()
            .name("audio-bridge".into())
            .spawn(move || {
                run(name, bitrate, jobs, results, &sh, wake);
                sh.alive.store(false, Ordering::SeqCst);
            })?;
        Ok(Bridge { tx, rx, shared })
    }

    /// Hands one frame over (AAC configuration and coded frames, MP3 frames; anything else is
    /// ignored). False when the queue was full: the frame is dropped and counted.
    pub fn push(&self, frame: &Frame) -> bool {
        if frame.track != Track::Audio
            || !matches!(frame.codec, Codec::Aac | Codec::Mp3)
            || frame.track_id != 0
        {
            return true;
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped_in.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The next packet the worker finished, if any.
    pub fn poll(&self) -> Option<BridgeOutput> {
        match self.rx.try_recv() {
            Ok(o) => Some(o),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

fn run(
    name: String,
    bitrate: Option<u32>,
    jobs: Receiver<Frame>,
    results: SyncSender<BridgeOutput>,
    shared: &Shared,
    wake: Wake,
) {
    debug!("{name}: audio bridge (AAC or MP3 to Opus) started");
    let mut bridge = AacToOpus::new(bitrate);
    let mut out = Vec::new();
    // One warning per kind of failure per bridge; the rest are counted.
    let mut warned_config = false;
    let mut warned_decode = false;
    while let Ok(frame) = jobs.recv() {
        let payload = frame.payload();
        let result = if frame.codec == Codec::Mp3 {
            crate::contain::run(|| {
                bridge.push_mp3(payload, frame.time, frame.discontinuity, &mut out)
            })
        } else if frame.config {
            crate::contain::run(|| bridge.configure(payload))
        } else {
            crate::contain::run(|| bridge.push(payload, frame.time, frame.discontinuity, &mut out))
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e @ (BridgeError::Config(_) | BridgeError::Format { .. }))) => {
                if !warned_config {
                    warn!("{name}: WebRTC viewers get no audio: {e}");
                    warned_config = true;
                }
            }
            Ok(Err(BridgeError::NoConfig)) => {}
            Ok(Err(e)) => {
                if !warned_decode {
                    warn!("{name}: audio bridge: {e} (further failures are counted)");
                    warned_decode = true;
                }
            }
            Err(panic) => {
                // The codec library panicked: start over from the next configuration.
                warn!("{name}: audio bridge: the codec failed ({panic}); restarting it");
                bridge = AacToOpus::new(bitrate);
                out.clear();
            }
        }
        let c = &bridge.counters;
        shared.frames_in.store(c.frames_in, Ordering::Relaxed);
        shared
            .decode_errors
            .store(c.decode_errors, Ordering::Relaxed);
        shared.resets.store(c.resets, Ordering::Relaxed);
        if out.is_empty() {
            shared.frames_in.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        for p in out.drain(..) {
            match results.try_send(BridgeOutput::Packet(p)) {
                Ok(()) => {
                    shared.packets_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_)) => {
                    shared.dropped_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        shared.frames_in.fetch_add(1, Ordering::SeqCst);
        wake();
    }
    debug!("{name}: audio bridge stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testing::aac_tone;
    use crate::media::frame::TAG_AUDIO;
    use bytes::Bytes;
    use std::time::{Duration, Instant};

    fn frame(time: u64, config: bool, payload: &[u8]) -> Frame {
        let mut data = vec![0xAF, u8::from(!config)];
        data.extend_from_slice(payload);
        let mut f = Frame::parse(TAG_AUDIO, time as u32, Bytes::from(data)).unwrap();
        f.time = time;
        f
    }

    fn wait(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < until, "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_every_thread_ends_with_its_bridge() {
        let (asc, units) = aac_tone(48_000, 0, 3000, 0);
        let wakes = Arc::new(AtomicU64::new(0));
        let mut ended = Vec::new();
        // Churn: bridges started and dropped; each thread ends.
        for round in 0..20 {
            let w = wakes.clone();
            let b = Bridge::start(
                format!("test/{round}"),
                None,
                Arc::new(move || {
                    w.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
            assert!(b.push(&frame(0, true, &asc)));
            // More than the queue holds at once, without waiting: some are dropped, counted.
            let mut refused = 0;
            for (t, u) in &units {
                if !b.push(&frame(*t, false, u)) {
                    refused += 1;
                }
            }
            let sh = b.shared().clone();
            assert_eq!(sh.dropped_in.load(Ordering::SeqCst), refused);
            if round == 0 {
                assert!(
                    refused > 0,
                    "{} frames fit a queue of {IN_QUEUE}",
                    units.len()
                );
                let taken = units.len() as u64 + 1 - refused;
                wait("the worker takes its queue", || {
                    sh.frames_in.load(Ordering::SeqCst) == taken
                });
                let mut got = 0;
                while b.poll().is_some() {
                    got += 1;
                }
                assert!(got > 0 && got <= OUT_QUEUE, "{got}");
                assert!(wakes.load(Ordering::SeqCst) > 0);
            }
            drop(b);
            ended.push(sh);
        }
        wait("every bridge thread ends", || {
            ended.iter().all(|s| !s.alive.load(Ordering::SeqCst))
        });
    }
}
