//! The recorder worker pool: `Recorders` is what the event loop calls (open, frame, close,
//! shutdown), never blocking; worker threads own the sinks and do all the file I/O. One stream
//! key always maps to the same worker, so a session's frames stay in order and a re-publish is
//! handled after the previous session of that key has finished. A worker that falls behind makes
//! its recordings stop (logged), never the live stream.

use super::{repair, sink_makers, RecordConfig, SessionInfo, Sink, SinkMaker};
use crate::media::{Frame, StreamKey};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

pub type RecordingId = u64;

/// Room in each channel beyond `queue_len` for control jobs (open/close), so that a worker
/// whose frame queue is full still receives the close that finalises its files.
const CONTROL_SLACK: usize = 256;
/// How long `shutdown` waits for the workers to finalise everything.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(4);
/// Sinks are flushed when this much wall time passed without a flush.
const IDLE_FLUSH: Duration = Duration::from_secs(1);

enum Job {
    Open {
        id: RecordingId,
        key: StreamKey,
        started: SystemTime,
    },
    Frame {
        id: RecordingId,
        frame: Frame,
    },
    Close {
        id: RecordingId,
    },
    Shutdown,
}

struct Worker {
    tx: SyncSender<Job>,
    /// Frames in the channel; bounded by `queue_len` (control jobs use the slack).
    queued: Arc<AtomicUsize>,
    handle: JoinHandle<()>,
}

struct Recording {
    worker: usize,
    key: StreamKey,
    /// The queue overflowed: frames are dropped until close.
    stopped: bool,
}

pub struct Recorders {
    config: Arc<RecordConfig>,
    workers: Vec<Worker>,
    recordings: HashMap<RecordingId, Recording>,
    next_id: RecordingId,
    /// Control jobs that found their channel full; retried on every call and at shutdown.
    pending: VecDeque<(usize, Job)>,
    /// No recorder is on: `open` returns `None`.
    idle: bool,
}

impl Recorders {
    /// Runs the crash repair on `data_dir`, then spawns the worker threads.
    pub fn start(config: RecordConfig) -> io::Result<Recorders> {
        let makers = Arc::new(sink_makers(&config));
        let idle = makers.is_empty();
        if !idle {
            std::fs::create_dir_all(&config.data_dir)?;
            repair(&config.data_dir);
        }
        let config = Arc::new(config);
        let count = if idle { 0 } else { config.workers.max(1) };
        let mut workers = Vec::with_capacity(count);
        for n in 0..count {
            let (tx, rx) = mpsc::sync_channel(config.queue_len.max(1) + CONTROL_SLACK);
            let queued = Arc::new(AtomicUsize::new(0));
            let ctx = WorkerCtx {
                rx,
                queued: queued.clone(),
                makers: makers.clone(),
                config: config.clone(),
                sessions: HashMap::new(),
            };
            let handle = thread::Builder::new()
                .name(format!("recorder-{n}"))
                .spawn(move || ctx.run())?;
            workers.push(Worker { tx, queued, handle });
        }
        Ok(Recorders {
            config,
            workers,
            recordings: HashMap::new(),
            next_id: 1,
            pending: VecDeque::new(),
            idle,
        })
    }

    /// A publish began on `key` at wall-clock `started`. `None` when every recorder is off (or
    /// the worker cannot take the job).
    pub fn open(&mut self, key: &StreamKey, started: SystemTime) -> Option<RecordingId> {
        if self.idle {
            return None;
        }
        self.retry_pending();
        let id = self.next_id;
        self.next_id += 1;
        let worker = self.worker_for(key);
        let job = Job::Open {
            id,
            key: key.clone(),
            started,
        };
        if self.workers[worker].tx.try_send(job).is_err() {
            log::error!("recording of {key} not started: recorder worker {worker} is overloaded");
            return None;
        }
        self.recordings.insert(
            id,
            Recording {
                worker,
                key: key.clone(),
                stopped: false,
            },
        );
        Some(id)
    }

    /// Queues a frame without blocking. When the worker's queue is full, this recording stops
    /// (its files are finalised with what they have) and an error is logged; live is untouched.
    pub fn frame(&mut self, id: RecordingId, frame: &Frame) {
        let Some(rec) = self.recordings.get_mut(&id) else {
            return;
        };
        if rec.stopped {
            return;
        }
        let w = &self.workers[rec.worker];
        let sent = w.queued.load(Ordering::Relaxed) < self.config.queue_len.max(1) && {
            w.queued.fetch_add(1, Ordering::Relaxed);
            match w.tx.try_send(Job::Frame {
                id,
                frame: frame.clone(),
            }) {
                Ok(()) => true,
                Err(_) => {
                    w.queued.fetch_sub(1, Ordering::Relaxed);
                    false
                }
            }
        };
        if sent {
            return;
        }
        rec.stopped = true;
        let (worker, key) = (rec.worker, rec.key.clone());
        log::error!(
            "recording of {key} stopped: recorder queue full (worker {worker}, disk too slow); \
             files under {}",
            self.describe_dirs(&key)
        );
        self.send_control(worker, Job::Close { id });
    }

    /// The publish ended: the worker finalises this recording's files.
    pub fn close(&mut self, id: RecordingId) {
        let Some(rec) = self.recordings.remove(&id) else {
            return;
        };
        if !rec.stopped {
            self.send_control(rec.worker, Job::Close { id });
        }
    }

    /// Finalises every open recording (FLV metadata patched, playlists ended, ...) and joins the
    /// workers, waiting at most a few seconds in all.
    pub fn shutdown(mut self) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let ids: Vec<RecordingId> = self.recordings.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        let pending = std::mem::take(&mut self.pending);
        for (w, job) in pending {
            send_until(&self.workers[w].tx, job, deadline);
        }
        for w in &self.workers {
            send_until(&w.tx, Job::Shutdown, deadline);
        }
        for (n, w) in self.workers.into_iter().enumerate() {
            while !w.handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if w.handle.is_finished() {
                let _ = w.handle.join();
            } else {
                log::error!(
                    "recorder worker {n} did not finish in time; its files may be incomplete"
                );
            }
        }
    }

    fn worker_for(&self, key: &StreamKey) -> usize {
        // The same key always lands on the same worker: a re-publish is ordered after the
        // previous session's close, whose files it archives.
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.workers.len() as u64) as usize
    }

    fn send_control(&mut self, worker: usize, job: Job) {
        self.retry_pending();
        if !self.pending.is_empty() {
            self.pending.push_back((worker, job));
            return;
        }
        if let Err(TrySendError::Full(job)) = self.workers[worker].tx.try_send(job) {
            self.pending.push_back((worker, job));
        }
    }

    fn retry_pending(&mut self) {
        while let Some((w, job)) = self.pending.pop_front() {
            match self.workers[w].tx.try_send(job) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(job)) => {
                    self.pending.push_front((w, job));
                    return;
                }
            }
        }
    }

    fn describe_dirs(&self, key: &StreamKey) -> String {
        let mut kinds = Vec::new();
        if self.config.flv {
            kinds.push("flv");
        }
        if self.config.hls {
            kinds.push("hls");
        }
        if self.config.mp4 {
            kinds.push("mp4");
        }
        kinds
            .iter()
            .map(|k| {
                super::paths::stream_dir(&self.config.data_dir, k, key)
                    .display()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn send_until(tx: &SyncSender<Job>, mut job: Job, deadline: Instant) {
    loop {
        match tx.try_send(job) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(j)) => {
                if Instant::now() >= deadline {
                    return;
                }
                job = j;
                thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

struct Session {
    key: StreamKey,
    sinks: Vec<Box<dyn Sink>>,
}

impl Session {
    fn frame(&mut self, frame: &Frame) {
        self.sinks.retain_mut(|sink| match sink.frame(frame) {
            Ok(()) => true,
            Err(e) => {
                log::error!("{} stopped: {e}", sink.describe());
                // Finalise what was written; its own error adds nothing to the first one.
                if let Err(e) = sink.finish() {
                    log::debug!("{}: finish after error: {e}", sink.describe());
                }
                false
            }
        });
    }

    fn flush(&mut self) {
        self.sinks.retain_mut(|sink| match sink.flush() {
            Ok(()) => true,
            Err(e) => {
                log::error!("{} stopped: {e}", sink.describe());
                let _ = sink.finish();
                false
            }
        });
    }

    fn finish(self) {
        for mut sink in self.sinks {
            match sink.finish() {
                Ok(()) => log::info!("{} finished", sink.describe()),
                Err(e) => log::error!("{} could not be finalised: {e}", sink.describe()),
            }
        }
    }
}

struct WorkerCtx {
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    makers: Arc<Vec<SinkMaker>>,
    config: Arc<RecordConfig>,
    sessions: HashMap<RecordingId, Session>,
}

impl WorkerCtx {
    fn run(mut self) {
        let mut last_flush = Instant::now();
        loop {
            let job = match self.rx.recv_timeout(IDLE_FLUSH) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Job::Shutdown),
            };
            match job {
                Some(Job::Frame { id, frame }) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.frame(&frame);
                    }
                }
                Some(Job::Open { id, key, started }) => self.open(id, key, started),
                Some(Job::Close { id }) => {
                    if let Some(s) = self.sessions.remove(&id) {
                        s.finish();
                    }
                }
                Some(Job::Shutdown) => break,
                None => {}
            }
            // Sinks flush on media time themselves; this covers a publisher that went quiet.
            if last_flush.elapsed() >= IDLE_FLUSH {
                last_flush = Instant::now();
                for s in self.sessions.values_mut() {
                    s.flush();
                }
            }
        }
        for (_, s) in self.sessions.drain() {
            s.finish();
        }
    }

    fn open(&mut self, id: RecordingId, key: StreamKey, started: SystemTime) {
        // A session of the same key still open (its close was lost to an overload) ends first,
        // so the new one never writes over it.
        let stale: Vec<RecordingId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.key == key)
            .map(|(&id, _)| id)
            .collect();
        for old in stale {
            if let Some(s) = self.sessions.remove(&old) {
                s.finish();
            }
        }
        let info = SessionInfo {
            config: &self.config,
            key: &key,
            started,
        };
        let mut sinks = Vec::with_capacity(self.makers.len());
        for maker in self.makers.iter() {
            match maker.make(&info) {
                Ok(sink) => {
                    log::info!("{} started", sink.describe());
                    sinks.push(sink);
                }
                Err(e) => log::error!("{} recording of {key} not started: {e}", maker.name),
            }
        }
        self.sessions.insert(id, Session { key, sinks });
    }
}
