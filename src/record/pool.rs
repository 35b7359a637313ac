//! The recorder worker pool: `Recorders` opens recordings without blocking; each open recording
//! is a `RecorderReader` that the hub feeds like a player (bounded, counted) and that pushes back
//! on the publisher when the disk is slower than the stream; worker threads own the sinks and do
//! all the file I/O. One stream key always maps to the same worker, so a session's frames stay in
//! order and a re-publish is handled after the previous session of that key has finished. Only a
//! worker stuck past `stall_ms` ends a recording early (logged), never the live stream.

use super::{repair, sink_makers, RecordConfig, SessionInfo, Sink, SinkMaker};
use crate::hub::{Reader, ReaderState};
use crate::media::{Frame, StreamKey};
use crate::stats::health::RecorderState;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

pub type RecordingId = u64;

/// How long `shutdown` waits for the workers to finalise everything. Unit tests finalise
/// hundreds of segments on a loaded machine: they wait longer rather than fail on timing.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(if cfg!(test) { 30 } else { 4 });
/// Sinks are flushed when this much wall time passed without a flush.
const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// Free bytes above the retention floor before a recording stopped by a full disk resumes.
const RESUME_MARGIN: u64 = 8 << 20;
/// Bytes queued per recording before its publisher is held back (beside `queue_len` frames).
const QUEUE_BYTES: usize = 32 << 20;

/// Wakes the event loop (its `mio::Waker`, kept out of this module: no mio here).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

enum Job {
    Open {
        id: RecordingId,
        key: StreamKey,
        started: SystemTime,
        shared: Arc<Shared>,
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
    // The channel is unbounded: every recording bounds its own share (`RecorderReader`), so
    // control jobs (open, close) always get through.
    tx: Sender<Job>,
    handle: JoinHandle<()>,
}

/// One recording's backlog, shared by its reader (loop) and its worker.
struct Shared {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    /// Frames the worker has written so far: its progress.
    done: AtomicU64,
    /// The loop holds the publisher for this recording: wake it once under the low mark.
    held: AtomicBool,
    low_frames: usize,
    wake: Option<Wake>,
    /// Each recorder of the session as the worker last saw it (for the dashboard's health);
    /// written by the worker on start, on a failure and about once a second, read by the loop.
    status: Mutex<Vec<(&'static str, RecorderState)>>,
}

impl Shared {
    fn below_low(&self) -> bool {
        self.frames.load(Ordering::Acquire) <= self.low_frames
            && self.bytes.load(Ordering::Acquire) <= QUEUE_BYTES / 2
    }
}

pub struct Recorders {
    config: Arc<RecordConfig>,
    workers: Vec<Worker>,
    next_id: RecordingId,
    /// No recorder is on: `open` returns `None`.
    idle: bool,
    wake: Option<Wake>,
    /// The retention thread (deletions, bounds); `None` when no recorder is on.
    keeper: Option<super::retention::Keeper>,
    uploader: Option<super::upload::Uploader>,
}

impl Recorders {
    /// Runs the crash repair on `data_dir`, then spawns the worker threads.
    pub fn start(config: RecordConfig) -> io::Result<Recorders> {
        let makers = sink_makers(&config);
        Recorders::start_with(config, makers)
    }

    /// `start` with an explicit list of recorders (tests, and tools that record one kind only).
    pub fn start_with(config: RecordConfig, makers: Vec<SinkMaker>) -> io::Result<Recorders> {
        let makers = Arc::new(makers);
        let idle = makers.is_empty();
        let mut uploader = None;
        if !idle {
            std::fs::create_dir_all(&config.data_dir)?;
            repair(&config.data_dir);
            let (lines, left_open) = super::index::startup_with_open(&config.data_dir);
            for line in lines {
                log::info!("{line}");
            }
            ignore_file_size_signal();
            if let Some(u) = &config.upload {
                let up = super::upload::Uploader::start(&config.data_dir, (**u).clone())?;
                log::info!(
                    "uploading recordings to {} ({}, {} workers)",
                    u.url(),
                    u.endpoint,
                    u.workers
                );
                // A crash cut these off before their end: their last files were never queued.
                for (key, id) in left_open {
                    up.session_ended(&key, &id);
                }
                uploader = Some(up);
            }
        }
        let keeper = if idle {
            None
        } else {
            Some(super::retention::Keeper::start(
                config.data_dir.clone(),
                config.retention,
            )?)
        };
        let config = Arc::new(config);
        let count = if idle { 0 } else { config.workers.max(1) };
        let mut workers = Vec::with_capacity(count);
        for n in 0..count {
            let (tx, rx) = mpsc::channel();
            let ctx = WorkerCtx {
                rx,
                keeper: keeper.as_ref().map(|k| k.handle()),
                makers: makers.clone(),
                config: config.clone(),
                sessions: HashMap::new(),
                uploader: uploader.clone(),
            };
            let handle = thread::Builder::new()
                .name(format!("recorder-{n}"))
                .spawn(move || ctx.run())?;
            workers.push(Worker { tx, handle });
        }
        Ok(Recorders {
            config,
            workers,
            next_id: 1,
            idle,
            wake: None,
            keeper,
            uploader,
        })
    }

    /// The retention thread's queue (API deletions), when recording is on.
    pub fn keeper(&self) -> Option<super::retention::KeeperHandle> {
        self.keeper.as_ref().map(|k| k.handle())
    }

    /// How workers wake the loop when a held-back recording has drained.
    pub fn set_wake(&mut self, wake: Wake) {
        self.wake = Some(wake);
    }

    /// A publish began on `key` at wall-clock `started`: its recording, as a reader to attach
    /// to the stream in the hub (dropping it finalises the files). `None` when every recorder
    /// is off.
    pub fn open(&mut self, key: &StreamKey, started: SystemTime) -> Option<RecorderReader> {
        if self.idle {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let worker = self.worker_for(key);
        let soft_frames = self.config.queue_len.max(2);
        let shared = Arc::new(Shared {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            held: AtomicBool::new(false),
            low_frames: soft_frames / 2,
            wake: self.wake.clone(),
            status: Mutex::new(Vec::new()),
        });
        let job = Job::Open {
            id,
            key: key.clone(),
            started,
            shared: shared.clone(),
        };
        if self.workers[worker].tx.send(job).is_err() {
            log::error!("recording of {key} not started: recorder worker {worker} is gone");
            return None;
        }
        Some(RecorderReader {
            id,
            key: key.clone(),
            worker,
            tx: self.workers[worker].tx.clone(),
            shared,
            soft_frames,
            stall_ms: self.config.stall_ms,
            dropped: 0,
            stopped: false,
            seen_done: 0,
            behind_since: None,
            dirs: self.describe_dirs(key),
        })
    }

    /// Finalises every open recording (FLV metadata patched, playlists ended, ...) and joins the
    /// workers, waiting at most a few seconds in all. Readers still open are finished by their
    /// worker on the way out.
    pub fn shutdown(self) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        for w in &self.workers {
            let _ = w.tx.send(Job::Shutdown);
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
        if let Some(u) = &self.uploader {
            u.stop();
        }
    }

    fn worker_for(&self, key: &StreamKey) -> usize {
        // The same key always lands on the same worker: a re-publish is ordered after the
        // previous session's close, whose files it archives.
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.workers.len() as u64) as usize
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

/// One open recording as a hub reader: queues frames to its worker without blocking, holds the
/// publisher back over `queue_len` frames (or 32 MiB), drops and counts over twice that, and
/// gives up only when the worker made no progress for `stall_ms` while held. Dropping it closes
/// the recording (the worker finalises the files).
pub struct RecorderReader {
    id: RecordingId,
    key: StreamKey,
    worker: usize,
    tx: Sender<Job>,
    shared: Arc<Shared>,
    soft_frames: usize,
    stall_ms: u64,
    dropped: u64,
    stopped: bool,
    /// `shared.done` when last polled, and since when (loop ms) it has not moved while behind.
    seen_done: u64,
    behind_since: Option<u64>,
    dirs: String,
}

impl RecorderReader {
    fn over(&self, factor: usize) -> bool {
        self.shared.frames.load(Ordering::Acquire) >= self.soft_frames * factor
            || self.shared.bytes.load(Ordering::Acquire) >= QUEUE_BYTES * factor
    }

    fn stop(&mut self) {
        self.stopped = true;
        let _ = self.tx.send(Job::Close { id: self.id });
    }
}

impl Reader for RecorderReader {
    fn deliver(&mut self, frame: &Frame) -> ReaderState {
        if self.stopped {
            return ReaderState::Gone;
        }
        if self.over(2) {
            // Held back yet still flooded (one read's worth of frames can be large): counted.
            self.dropped += 1;
            return ReaderState::Behind;
        }
        let frames = self.shared.frames.fetch_add(1, Ordering::AcqRel) + 1;
        let bytes = self
            .shared
            .bytes
            .fetch_add(frame.data.len(), Ordering::AcqRel)
            + frame.data.len();
        let behind = frames >= self.soft_frames || bytes >= QUEUE_BYTES;
        if behind {
            // Before the send: the worker that takes this frame then sees the flag, and wakes
            // the loop once it has drained (no wake-up can be missed in between).
            self.shared.held.store(true, Ordering::Release);
        }
        let job = Job::Frame {
            id: self.id,
            frame: frame.clone(),
        };
        if self.tx.send(job).is_err() {
            log::error!(
                "recording of {} stopped: recorder worker {} is gone",
                self.key,
                self.worker
            );
            self.stopped = true;
            return ReaderState::Gone;
        }
        if behind {
            return ReaderState::Behind;
        }
        ReaderState::Ready
    }

    fn poll(&mut self, now_ms: u64) -> ReaderState {
        if self.stopped {
            return ReaderState::Gone;
        }
        if self.shared.below_low() {
            self.shared.held.store(false, Ordering::Release);
            self.behind_since = None;
            return ReaderState::Ready;
        }
        let done = self.shared.done.load(Ordering::Acquire);
        if done != self.seen_done || self.behind_since.is_none() {
            self.seen_done = done;
            self.behind_since = Some(now_ms);
        }
        let stuck = now_ms.saturating_sub(self.behind_since.unwrap_or(now_ms));
        if stuck < self.stall_ms {
            return ReaderState::Behind;
        }
        log::error!(
            "recording of {} stopped: the disk made no progress for {} s with {} frames queued \
             (worker {}); live goes on; files under {}",
            self.key,
            stuck / 1000,
            self.shared.frames.load(Ordering::Acquire),
            self.worker,
            self.dirs
        );
        self.stop();
        ReaderState::Gone
    }

    fn frames_dropped(&self) -> u64 {
        self.dropped
    }

    fn recorders(&self) -> Vec<(&'static str, RecorderState)> {
        let mut v = lock(&self.shared.status).clone();
        if self.stopped {
            for (_, st) in &mut v {
                if let RecorderState::Writing { bytes } = *st {
                    *st = RecorderState::Stopped {
                        why: "the disk made no progress".into(),
                        error: true,
                        bytes,
                    };
                }
            }
        }
        v
    }
}

impl Drop for RecorderReader {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop();
        }
        if self.dropped > 0 {
            log::warn!(
                "recording of {}: {} frames dropped while the disk was behind",
                self.key,
                self.dropped
            );
        }
    }
}

/// Over a file-size limit (RLIMIT_FSIZE) a write should fail with EFBIG and stop that recording,
/// not kill the whole server with SIGXFSZ.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: installs the standard "ignore" disposition; no handler code runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

struct Session {
    key: StreamKey,
    /// The session's index id (`paths::local_stamp` of its start) and start.
    id: String,
    started: SystemTime,
    /// Each running sink with its row in `shared.status`.
    sinks: Vec<(Box<dyn Sink>, usize)>,
    /// Media bytes each recorder took (by status row), published with the status.
    bytes: Vec<u64>,
    shared: Arc<Shared>,
    /// The latest metadata and sequence headers (per track), for a recording that resumes.
    headers: Vec<Frame>,
    /// A recorder stopped because the disk is full: the worker resumes the session when space returns.
    out_of_space: bool,
    /// After a resume: video waits for its next keyframe.
    await_key: bool,
}

/// Stopped for lack of space (full file system or quota), which `retention` or an operator can mend.
fn is_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// What the health shows for a recorder stopped by a full disk.
const NO_SPACE: &str =
    "no space left in the data dir: recording resumes by itself when space returns";
/// Headers kept per session at most (metadata, and a sequence header per track).
const MAX_HEADERS: usize = 16;

impl Session {
    /// Keeps the latest metadata and sequence header of each track.
    fn remember(&mut self, frame: &Frame) {
        if !(frame.config || frame.track == crate::media::Track::Meta) {
            return;
        }
        let same = |h: &Frame| {
            h.track == frame.track
                && h.track_id == frame.track_id
                && h.config == frame.config
                && h.bridged == frame.bridged
        };
        if let Some(h) = self.headers.iter_mut().find(|h| same(h)) {
            *h = frame.clone();
        } else if self.headers.len() < MAX_HEADERS {
            self.headers.push(frame.clone());
        }
    }

    fn frame(&mut self, frame: &Frame) {
        self.remember(frame);
        if frame.bridged {
            // Only for the sinks that take it (a resumed one too: its header is remembered).
            for (sink, row) in &mut self.sinks {
                if sink.takes_bridged() {
                    if let Err(e) = sink.frame(frame) {
                        // Reported with the sink's next published frame, which fails alike.
                        log::debug!("{}: bridged audio: {e}", sink.describe());
                    } else {
                        self.bytes[*row] += frame.data.len() as u64;
                    }
                }
            }
            return;
        }
        if self.await_key && frame.track == crate::media::Track::Video && !frame.config {
            if !frame.key {
                return;
            }
            self.await_key = false;
        }
        let (bytes, shared) = (&mut self.bytes, &self.shared);
        let out_of_space = &mut self.out_of_space;
        self.sinks
            .retain_mut(|(sink, row)| match sink.frame(frame) {
                Ok(()) => {
                    bytes[*row] += frame.data.len() as u64;
                    true
                }
                Err(e) => {
                    log::error!("{} stopped: {e}", sink.describe());
                    let mut state = stopped(&e, bytes[*row]);
                    if is_space(&e) {
                        *out_of_space = true;
                        if let RecorderState::Stopped { why, .. } = &mut state {
                            *why = format!("{NO_SPACE} ({e})");
                        }
                    }
                    set_status(shared, *row, state);
                    // Finalise what was written; its own error adds nothing to the first one.
                    if let Err(e) = sink.finish() {
                        log::debug!("{}: finish after error: {e}", sink.describe());
                    }
                    false
                }
            });
    }

    /// Publishes the byte counts of the recorders still writing (about once a second).
    fn publish_status(&self) {
        for &(_, row) in &self.sinks {
            set_status(
                &self.shared,
                row,
                RecorderState::Writing {
                    bytes: self.bytes[row],
                },
            );
        }
    }

    /// One frame of `bytes` written: the backlog shrinks; a held publisher is released (the
    /// loop woken) once it is under the low mark.
    fn progress(&mut self, bytes: usize) {
        let sh = &self.shared;
        sh.frames.fetch_sub(1, Ordering::AcqRel);
        sh.bytes.fetch_sub(bytes, Ordering::AcqRel);
        sh.done.fetch_add(1, Ordering::AcqRel);
        if sh.held.load(Ordering::Acquire)
            && sh.below_low()
            && sh.held.swap(false, Ordering::AcqRel)
        {
            if let Some(wake) = &sh.wake {
                wake();
            }
        }
    }

    fn flush(&mut self) {
        let (bytes, shared) = (&self.bytes, &self.shared);
        let out_of_space = &mut self.out_of_space;
        self.sinks.retain_mut(|(sink, row)| match sink.flush() {
            Ok(()) => true,
            Err(e) => {
                log::error!("{} stopped: {e}", sink.describe());
                let mut state = stopped(&e, bytes[*row]);
                if is_space(&e) {
                    *out_of_space = true;
                    if let RecorderState::Stopped { why, .. } = &mut state {
                        *why = format!("{NO_SPACE} ({e})");
                    }
                }
                set_status(shared, *row, state);
                let _ = sink.finish();
                false
            }
        });
        self.publish_status();
    }

    fn finish(self) {
        for (mut sink, _) in self.sinks {
            match sink.finish() {
                Ok(()) => log::info!("{} finished", sink.describe()),
                Err(e) => log::error!("{} could not be finalised: {e}", sink.describe()),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked while holding it left plain data behind: still readable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn set_status(shared: &Shared, row: usize, state: RecorderState) {
    if let Some(r) = lock(&shared.status).get_mut(row) {
        r.1 = state;
    }
}

fn stopped(e: &io::Error, bytes: u64) -> RecorderState {
    RecorderState::Stopped {
        why: e.to_string(),
        error: true,
        bytes,
    }
}

struct WorkerCtx {
    rx: Receiver<Job>,
    keeper: Option<super::retention::KeeperHandle>,
    makers: Arc<Vec<SinkMaker>>,
    config: Arc<RecordConfig>,
    sessions: HashMap<RecordingId, Session>,
    uploader: Option<super::upload::Uploader>,
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
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.frame(&frame);
                        s.progress(frame.data.len());
                    }
                }
                Some(Job::Open {
                    id,
                    key,
                    started,
                    shared,
                }) => self.open(id, key, started, shared),
                Some(Job::Close { id }) => {
                    if let Some(s) = self.sessions.remove(&id) {
                        self.end(s);
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
                self.resume_when_space();
            }
        }
        let sessions: Vec<Session> = self.sessions.drain().map(|(_, s)| s).collect();
        for s in sessions {
            self.end(s);
        }
    }

    /// Sessions stopped by a full disk start again (as a new session, from the cached headers and
    /// the next keyframe) once the data dir has room above the retention floor.
    fn resume_when_space(&mut self) {
        let waiting: Vec<RecordingId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.out_of_space)
            .map(|(&id, _)| id)
            .collect();
        if waiting.is_empty() {
            return;
        }
        if let Some(k) = &self.keeper {
            k.nudge();
        }
        let data = self.config.data_dir.clone();
        let Some((avail, total)) = super::retention::fs_space(&data) else {
            return;
        };
        let floor = super::retention::min_free_for(&self.config.retention, total);
        if avail < floor.saturating_add(RESUME_MARGIN) {
            return;
        }
        for id in waiting {
            let Some(s) = self.sessions.remove(&id) else {
                continue;
            };
            let (key, shared, headers) = (s.key.clone(), s.shared.clone(), s.headers.clone());
            self.end(s);
            log::info!(
                "recording of {key} resumes: {avail} bytes free in {} again",
                data.display()
            );
            self.open(id, key, SystemTime::now(), shared);
            if let Some(s) = self.sessions.get_mut(&id) {
                for h in &headers {
                    s.frame(h);
                }
                s.await_key = headers
                    .iter()
                    .any(|h| h.track == crate::media::Track::Video);
            }
        }
    }

    /// Finalises a session's files, then puts its facts in the index and lets retention look.
    fn end(&self, s: Session) {
        let (key, id, started) = (s.key.clone(), s.id.clone(), s.started);
        s.finish();
        let data = &self.config.data_dir;
        let _g = super::index::key_lock(&key);
        super::index::session_ended(
            data,
            &key,
            &id,
            super::paths::unix_ms(started),
            super::paths::unix_ms(SystemTime::now()),
        );
        drop(_g);
        if let Some(u) = &self.uploader {
            u.session_ended(&key, &id);
        }
        if let Some(k) = &self.keeper {
            k.nudge();
        }
    }

    fn open(&mut self, id: RecordingId, key: StreamKey, started: SystemTime, shared: Arc<Shared>) {
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
                self.end(s);
            }
        }
        // Sinks archive the previous session's files as they start: not while retention deletes them.
        let guard = super::index::key_lock(&key);
        let stamp = super::paths::local_stamp(started);
        // Listed as live before any sink makes a file: a first publish must not show up (from its
        // folders, with no index yet) as an ended session until `session_opened` below.
        super::index::session_opening(
            &self.config.data_dir,
            &key,
            &stamp,
            super::paths::unix_ms(started),
        );
        let info = SessionInfo {
            config: &self.config,
            key: &key,
            started,
            upload: self.uploader.as_ref(),
        };
        let mut sinks = Vec::with_capacity(self.makers.len());
        let mut status = Vec::with_capacity(self.makers.len());
        for (row, maker) in self.makers.iter().enumerate() {
            match maker.make(&info) {
                Ok(sink) => {
                    log::info!("{} started", sink.describe());
                    sinks.push((sink, row));
                    status.push((maker.name, RecorderState::Writing { bytes: 0 }));
                }
                Err(e) => {
                    log::error!("{} recording of {key} not started: {e}", maker.name);
                    status.push((maker.name, stopped(&e, 0)));
                }
            }
        }
        super::index::session_opened(
            &self.config.data_dir,
            &key,
            &stamp,
            super::paths::unix_ms(started),
        );
        drop(guard);
        *lock(&shared.status) = status;
        let bytes = vec![0; self.makers.len()];
        self.sessions.insert(
            id,
            Session {
                key,
                id: stamp,
                started,
                headers: Vec::new(),
                out_of_space: false,
                await_key: false,
                sinks,
                bytes,
                shared,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::paths;
    use crate::record::testutil::*;
    use std::path::{Path, PathBuf};

    /// A sink that keeps what it was given.
    struct Keep(Arc<Mutex<Vec<Frame>>>, bool);

    impl Sink for Keep {
        fn frame(&mut self, frame: &Frame) -> io::Result<()> {
            lock(&self.0).push(frame.clone());
            Ok(())
        }
        fn takes_bridged(&self) -> bool {
            self.1
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn describe(&self) -> String {
            "keep".into()
        }
    }

    /// A recording that resumes (after a full disk) starts from the remembered headers: the
    /// audio bridge's AAC header of an Opus stream among them, beside the OpusHead, and only
    /// the sinks that take bridged frames get it.
    #[test]
    fn a_session_remembers_the_bridged_aac_header_for_the_sinks_that_take_it() {
        use crate::hub::bridge::testutil::opus_head;
        let (aac_sink, opus_sink) = (Arc::default(), Arc::default());
        let mut s = Session {
            key: StreamKey::new("live", "cam").unwrap(),
            id: "x".into(),
            started: SystemTime::now(),
            sinks: vec![
                (
                    Box::new(Keep(Arc::clone(&aac_sink), true)) as Box<dyn Sink>,
                    0,
                ),
                (Box::new(Keep(Arc::clone(&opus_sink), false)), 1),
            ],
            bytes: vec![0, 0],
            shared: Arc::new(Shared {
                frames: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                done: AtomicU64::new(0),
                held: AtomicBool::new(false),
                low_frames: 1,
                wake: None,
                status: Mutex::new(Vec::new()),
            }),
            headers: Vec::new(),
            out_of_space: false,
            await_key: false,
        };
        let aac = |second: u8| {
            let data = vec![0xaf, 0, 0x11, second];
            let mut f = Frame::parse(8, 0, bytes::Bytes::from(data)).unwrap();
            f.bridged = true;
            f
        };
        s.frame(&opus_head(0));
        s.frame(&aac(0x90));
        s.frame(&aac(0x88));
        let kinds: Vec<(bool, u8)> = s.headers.iter().map(|h| (h.bridged, h.data[3])).collect();
        assert_eq!(kinds, [(false, b'u'), (true, 0x88)], "the latest of each");
        assert_eq!(lock(&aac_sink).len(), 3);
        assert_eq!(lock(&opus_sink).len(), 1, "the OpusHead only");
    }

    fn config(dir: &Path) -> RecordConfig {
        RecordConfig {
            data_dir: dir.to_path_buf(),
            flv: true,
            hls: true,
            mp4: false,
            hls_fragment_ms: 2000,
            hls_window: 0,
            mp4_fragment_ms: 4000,
            workers: 2,
            queue_len: 4096,
            stall_ms: 10_000,
            retention: Default::default(),
            upload: None,
        }
    }

    /// Feeds a frame as the hub does, and waits while the reader holds the publisher back, as
    /// the loop does (it stops reading the publisher's socket).
    fn feed(reader: &mut RecorderReader, f: &Frame) {
        if reader.deliver(f) == ReaderState::Behind {
            let t0 = Instant::now();
            while reader.poll(t0.elapsed().as_millis() as u64) == ReaderState::Behind {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn record(r: &mut Recorders, key: &StreamKey, started: SystemTime, frames: &[Frame]) {
        let mut id = r.open(key, started).unwrap();
        for f in frames {
            feed(&mut id, f);
        }
        drop(id);
    }

    fn flv_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "flv"))
            .collect();
        v.sort();
        v
    }

    /// Runs a fixture through the pool and checks both recordings against the input with FFmpeg.
    fn check_fixture(name: &str, args: &[&str], video: bool, audio: bool) {
        if !have_tool("ffmpeg") || !have_tool("ffprobe") {
            return;
        }
        let dir = temp_dir(name);
        let input = make_flv(&dir, "in.flv", args);
        let frames = read_flv(&std::fs::read(&input).unwrap());
        let data = dir.join("data");
        let key = StreamKey::new("live", name).unwrap();
        let mut r = Recorders::start(config(&data)).unwrap();
        record(&mut r, &key, SystemTime::now(), &frames);
        r.shutdown();

        let flv = flv_files(&paths::stream_dir(&data, "flv", &key));
        assert_eq!(flv.len(), 1);
        let playlist = paths::stream_dir(&data, "hls", &key).join("index.m3u8");
        check_playlist(&playlist, video);
        for out in [&flv[0], &playlist] {
            assert_eq!(decode_errors(out), "", "{}", out.display());
            for (kind, present) in [("v", video), ("a", audio)] {
                if present {
                    let want = probe_count(&input, kind, "packets");
                    assert!(want > 0);
                    assert_eq!(probe_count(out, kind, "packets"), want, "{kind} {out:?}");
                }
            }
            if video {
                let want = probe_count(&input, "v", "frames");
                assert_eq!(probe_count(out, "v", "frames"), want, "{}", out.display());
            }
        }
        if std::env::var_os("RTMPD_KEEP_TEST_DATA").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn ffmpeg_fixture_with_b_frames_records_cleanly() {
        check_fixture("av", AV_ARGS, true, true);
    }

    #[test]
    fn audio_only_records_cleanly() {
        let args = ["-f", "lavfi", "-i", "sine", "-t", "5", "-c:a", "aac"];
        check_fixture("aonly", &args, false, true);
    }

    #[test]
    fn video_only_records_cleanly() {
        let args = [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=30",
            "-t",
            "5",
            "-c:v",
            "libx264",
            "-bf",
            "2",
            "-g",
            "60",
        ];
        check_fixture("vonly", &args, true, false);
    }

    #[test]
    fn republish_keeps_the_first_session() {
        if !have_tool("ffmpeg") {
            return;
        }
        let dir = temp_dir("republish");
        let input = make_flv(&dir, "in.flv", AV_ARGS);
        let frames = read_flv(&std::fs::read(&input).unwrap());
        let data = dir.join("data");
        let key = StreamKey::new("live", "again").unwrap();
        let first = paths::from_unix_ms(1_795_482_509_000);
        let second = paths::from_unix_ms(1_795_482_609_000);
        let mut r = Recorders::start(config(&data)).unwrap();
        record(&mut r, &key, first, &frames[..200]);
        record(&mut r, &key, second, &frames);
        r.shutdown();
        let hls = paths::stream_dir(&data, "hls", &key);
        let old = hls.join(paths::local_stamp(first));
        let old_list = std::fs::read_to_string(old.join("index.m3u8")).unwrap();
        assert!(old_list.ends_with("#EXT-X-ENDLIST\n"));
        assert!(old.join("segment_1.ts").is_file());
        assert_eq!(decode_errors(&old.join("index.m3u8")), "");
        check_playlist(&hls.join("index.m3u8"), true);
        assert_eq!(flv_files(&paths::stream_dir(&data, "flv", &key)).len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disk_error_stops_hls_while_flv_goes_on() {
        if !have_tool("ffmpeg") {
            return;
        }
        let dir = temp_dir("diskerr");
        let input = make_flv(&dir, "in.flv", AV_ARGS);
        let frames = read_flv(&std::fs::read(&input).unwrap());
        let data = dir.join("data");
        let key = StreamKey::new("live", "err").unwrap();
        let mut r = Recorders::start(config(&data)).unwrap();
        let mut id = r.open(&key, SystemTime::now()).unwrap();
        // The HLS folder vanishes once the session made it: every segment write will fail.
        let hls = paths::stream_dir(&data, "hls", &key);
        let t0 = Instant::now();
        while !hls.is_dir() && t0.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(2));
        }
        std::fs::remove_dir(&hls).unwrap();
        for f in &frames {
            feed(&mut id, f);
        }
        // The reader tells the stream's health which recorder stopped and why, and what the
        // other one has taken so far (published by the worker about once a second).
        let t0 = Instant::now();
        let states = loop {
            let s = id.recorders();
            let flv_bytes = s.iter().find_map(|(n, st)| match st {
                RecorderState::Writing { bytes } if *n == "flv" => Some(*bytes),
                _ => None,
            });
            if flv_bytes.is_some_and(|b| b > 0) || t0.elapsed() > Duration::from_secs(5) {
                break s;
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(states.len(), 2, "{states:?}");
        assert!(
            matches!(
                &states[1],
                ("hls", RecorderState::Stopped { error: true, .. })
            ),
            "{states:?}"
        );
        assert!(
            matches!(&states[0], ("flv", RecorderState::Writing { bytes }) if *bytes > 0),
            "{states:?}"
        );
        drop(id);
        r.shutdown();
        assert!(!hls.exists());
        let flv = flv_files(&paths::stream_dir(&data, "flv", &key));
        assert_eq!(decode_errors(&flv[0]), "");
        assert_eq!(
            probe_count(&flv[0], "v", "packets"),
            probe_count(&input, "v", "packets")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn live_playlist_is_always_whole() {
        let dir = temp_dir("liveread");
        let data = dir.join("data");
        let key = StreamKey::new("live", "read").unwrap();
        let mut cfg = config(&data);
        cfg.flv = false;
        cfg.hls_fragment_ms = 40;
        let mut r = Recorders::start(cfg).unwrap();
        let mut id = r.open(&key, SystemTime::now()).unwrap();
        let playlist = paths::stream_dir(&data, "hls", &key).join("index.m3u8");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (playlist, done) = (playlist.clone(), done.clone());
            thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let Ok(text) = std::fs::read_to_string(&playlist) else {
                        continue;
                    };
                    assert!(text.starts_with("#EXTM3U\n"), "{text:?}");
                    assert!(text.ends_with(".ts\n") || text.ends_with("#EXT-X-ENDLIST\n"));
                    for seg in text.lines().filter(|l| l.ends_with(".ts")) {
                        assert!(playlist.with_file_name(seg).is_file(), "{seg} listed early");
                    }
                    reads += 1;
                }
                reads
            })
        };
        // Audio-only AAC at 40 ms, cut on time: a segment per frame, a playlist per frame.
        let asc = Frame::parse(8, 0, bytes::Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap();
        feed(&mut id, &asc);
        for i in 0..500 {
            feed(&mut id, &audio_frame(i * 40));
            if i % 16 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        drop(id);
        r.shutdown();
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        let text = std::fs::read_to_string(&playlist).unwrap();
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// CPU time of one thread (the recorder's work runs on the calling thread here).
    #[cfg(unix)]
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// The README's recording-cost figure: CPU seconds per hour of media for each recorder.
    /// `cargo test --release --lib record::pool::tests::recording_cost -- --ignored --nocapture`
    #[cfg(unix)]
    #[test]
    #[ignore = "benchmark: run in release with --ignored --nocapture"]
    fn recording_cost() {
        if !have_tool("ffmpeg") {
            return;
        }
        let dir = temp_dir("cost");
        let input = make_flv(&dir, "in.flv", AV_ARGS);
        let frames = read_flv(&std::fs::read(&input).unwrap());
        let loops = 60u32; // 6 minutes of media
        let span = 6_100u32;
        let key = StreamKey::new("live", "cost").unwrap();
        let cfg = config(&dir.join("data"));
        for maker in sink_makers(&cfg) {
            let info = SessionInfo {
                config: &cfg,
                key: &key,
                started: SystemTime::now(),
                upload: None,
            };
            let mut sink = maker.make(&info).unwrap();
            let t0 = thread_cpu();
            for k in 0..loops {
                for f in frames.iter().filter(|f| k == 0 || !f.config) {
                    let mut f = f.clone();
                    f.dts = f.dts.wrapping_add(k * span);
                    f.time = f.dts as u64;
                    sink.frame(&f).unwrap();
                }
            }
            sink.finish().unwrap();
            let cpu = (thread_cpu() - t0).as_secs_f64();
            let media_h = (loops * span) as f64 / 3_600_000.0;
            println!(
                "{}: {:.2} CPU s per hour of media ({:.3} s for {:.1} min)",
                maker.name,
                cpu / media_h,
                cpu,
                media_h * 60.0
            );
        }
        let hls = paths::stream_dir(&cfg.data_dir, "hls", &key).join("index.m3u8");
        assert_eq!(decode_errors(&hls), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A sink that counts frames, can be made to block or fail, and records its finish.
    #[derive(Clone, Default)]
    struct Probe {
        frames: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
        gate: Arc<Mutex<()>>,
        fail_at: Option<usize>,
    }

    struct ProbeSink(Probe);

    impl Sink for ProbeSink {
        fn frame(&mut self, _: &Frame) -> io::Result<()> {
            let _open = self.0.gate.lock().unwrap();
            let n = self.0.frames.fetch_add(1, Ordering::SeqCst) + 1;
            if self.0.fail_at == Some(n) {
                return Err(io::Error::other("disk full"));
            }
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            self.0.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn describe(&self) -> String {
            "probe".into()
        }
    }

    fn maker(p: &Probe) -> SinkMaker {
        let p = p.clone();
        SinkMaker::new("probe", move |_| Ok(Box::new(ProbeSink(p.clone()))))
    }

    fn audio_frame(dts: u32) -> Frame {
        Frame::parse(8, dts, bytes::Bytes::from_static(&[0xaf, 1, 0x21])).unwrap()
    }

    #[test]
    fn full_queue_holds_the_publisher_until_the_disk_catches_up() {
        let dir = temp_dir("holdback");
        let mut cfg = config(&dir);
        cfg.workers = 1;
        cfg.queue_len = 4;
        let probe = Probe::default();
        let mut r = Recorders::start_with(cfg, vec![maker(&probe)]).unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        r.set_wake(Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        let key = StreamKey::new("live", "slow").unwrap();
        let mut rec = r.open(&key, SystemTime::now()).unwrap();
        let gate = probe.gate.lock().unwrap();
        let states: Vec<ReaderState> = (0..20).map(|i| rec.deliver(&audio_frame(i * 23))).collect();
        // Under the bound the publisher is read; at it, held; past twice it, frames are
        // dropped and counted (the publisher was asked to stop long before).
        assert!(
            states[..3].iter().all(|s| *s == ReaderState::Ready),
            "{states:?}"
        );
        assert!(
            states[3..].iter().all(|s| *s == ReaderState::Behind),
            "{states:?}"
        );
        assert_eq!(rec.frames_dropped(), 12);
        assert_eq!(rec.poll(0), ReaderState::Behind);
        assert_eq!(rec.poll(9_999), ReaderState::Behind, "held, not stopped");
        drop(gate);
        // The worker wakes the loop once the backlog is under the low mark.
        let t0 = Instant::now();
        while wakes.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(rec.poll(10_000), ReaderState::Ready);
        assert_eq!(rec.deliver(&audio_frame(9999)), ReaderState::Ready);
        drop(rec);
        r.shutdown();
        assert_eq!(probe.frames.load(Ordering::SeqCst), 9);
        assert_eq!(probe.finished.load(Ordering::SeqCst), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_disk_stuck_past_the_bound_stops_only_that_recording() {
        let dir = temp_dir("stuck");
        let mut cfg = config(&dir);
        cfg.workers = 1;
        cfg.queue_len = 4;
        cfg.stall_ms = 200;
        let probe = Probe::default();
        let mut r = Recorders::start_with(cfg, vec![maker(&probe)]).unwrap();
        let key = StreamKey::new("live", "stuck").unwrap();
        let mut rec = r.open(&key, SystemTime::now()).unwrap();
        let gate = probe.gate.lock().unwrap();
        for i in 0..4 {
            rec.deliver(&audio_frame(i * 23));
        }
        assert_eq!(rec.poll(1000), ReaderState::Behind);
        assert_eq!(rec.poll(1199), ReaderState::Behind);
        assert_eq!(rec.poll(1200), ReaderState::Gone, "no progress for 200 ms");
        assert_eq!(rec.deliver(&audio_frame(200)), ReaderState::Gone);
        drop(gate);
        // A new session on the same worker records normally.
        let other = StreamKey::new("live", "next").unwrap();
        let mut next = r.open(&other, SystemTime::now()).unwrap();
        feed(&mut next, &audio_frame(0));
        drop(rec);
        drop(next);
        r.shutdown();
        assert_eq!(probe.frames.load(Ordering::SeqCst), 5);
        assert_eq!(probe.finished.load(Ordering::SeqCst), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failing_sink_stops_alone() {
        let dir = temp_dir("failing");
        let bad = Probe {
            fail_at: Some(3),
            ..Probe::default()
        };
        let good = Probe::default();
        let mut r = Recorders::start_with(config(&dir), vec![maker(&bad), maker(&good)]).unwrap();
        let key = StreamKey::new("live", "f").unwrap();
        let mut id = r.open(&key, SystemTime::now()).unwrap();
        for i in 0..10 {
            feed(&mut id, &audio_frame(i * 23));
        }
        drop(id);
        r.shutdown();
        assert_eq!(bad.frames.load(Ordering::SeqCst), 3);
        assert_eq!(bad.finished.load(Ordering::SeqCst), 1);
        assert_eq!(good.frames.load(Ordering::SeqCst), 10);
        assert_eq!(good.finished.load(Ordering::SeqCst), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shutdown_finishes_open_recordings_and_off_means_none() {
        let dir = temp_dir("shutdown");
        let probe = Probe::default();
        let mut r = Recorders::start_with(config(&dir), vec![maker(&probe)]).unwrap();
        let key = StreamKey::new("live", "s").unwrap();
        let mut id = r.open(&key, SystemTime::now()).unwrap();
        feed(&mut id, &audio_frame(0));
        r.shutdown();
        assert_eq!(probe.finished.load(Ordering::SeqCst), 1);
        let mut off = config(&dir);
        off.flv = false;
        off.hls = false;
        let mut r = Recorders::start(off).unwrap();
        assert!(r.open(&key, SystemTime::now()).is_none());
        r.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A first publish (no index yet): from the moment a sink makes its first file, what the API lists
    /// (the index, else the folders) shows the new session live, never ended.
    #[test]
    fn a_new_session_is_never_listed_as_ended_while_its_sinks_start() {
        let dir = temp_dir("opening");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let flv_like = SinkMaker::new("flv-like", move |s| {
            let id = paths::local_stamp(s.started);
            let d = s.stream_dir("flv");
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join(format!("{id}.flv")), b"FLV")?;
            // What `server::recordings::sessions_of` would answer at this moment.
            let listed = match crate::record::index::load_stream(&s.config.data_dir, s.key)? {
                Some(l) => l.sessions,
                None => crate::record::index::scan_light(&s.config.data_dir, s.key, 1000),
            };
            lock(&s2).push(
                listed
                    .iter()
                    .map(|x| (x.id == id, x.live()))
                    .collect::<Vec<_>>(),
            );
            Ok(Box::new(ProbeSink(Probe::default())) as Box<dyn Sink>)
        });
        let mut r = Recorders::start_with(config(&dir), vec![flv_like]).unwrap();
        let key = StreamKey::new("live", "first").unwrap();
        let rec = r.open(&key, SystemTime::now()).unwrap();
        drop(rec);
        r.shutdown();
        let seen = lock(&seen).clone();
        assert_eq!(
            seen,
            vec![vec![(true, true)]],
            "new session listed as ended"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
