//! Retention: one thread (`recordings-keeper`) that deletes the oldest finished sessions when a bound is
//! crossed (`--record-keep-days`, `--record-max-size`, `--record-min-free` of the data dir's file
//! system), and the sessions the API asks to delete. It reads the per-stream indexes (`index`), never
//! touches a live session, deletes all of a session's files together under the stream's `key_lock`, and
//! writes one log line and one counter per deletion. Its queue is bounded: the loop only ever
//! `try_send`s. It decides nothing about what the recorders write.

use super::index::{self, Entry, Session};
use crate::media::StreamKey;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

/// How often the bounds are checked without a nudge.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Jobs waiting for the keeper; over it the loop answers 503.
const QUEUE: usize = 64;
/// The default free-space floor: 1 GiB or 5% of the file system, whichever is smaller.
const DEFAULT_MIN_FREE: u64 = 1 << 30;
const DEFAULT_MIN_FREE_PERCENT: u64 = 5;

/// The bounds; `None` is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    pub keep_days: Option<u64>,
    pub max_size: Option<u64>,
    /// `None`: the default floor (1 GiB or 5%); `Some(0)`: off.
    pub min_free: Option<u64>,
}

/// Why a session was deleted: the `reason` label of `rtmpd_recordings_deleted_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    KeepDays,
    MaxSize,
    MinFree,
    Api,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::KeepDays,
        Reason::MaxSize,
        Reason::MinFree,
        Reason::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::KeepDays => "keep-days",
            Reason::MaxSize => "max-size",
            Reason::MinFree => "min-free",
            Reason::Api => "api",
        }
    }
}

static DELETED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Bytes freed by deletions, all reasons.
static FREED: AtomicU64 = AtomicU64::new(0);
/// True while the data dir's file system is below the free-space floor (for the recorders' health).
static LOW_SPACE: AtomicBool = AtomicBool::new(false);

/// Sessions deleted for `reason` since start.
pub fn deleted(reason: Reason) -> u64 {
    DELETED[reason as usize].load(Ordering::Relaxed)
}

pub fn freed_bytes() -> u64 {
    FREED.load(Ordering::Relaxed)
}

/// True while the free space of the data dir is under `--record-min-free` (after deleting what could
/// be deleted).
pub fn low_space() -> bool {
    LOW_SPACE.load(Ordering::Relaxed)
}

enum Job {
    Delete { key: StreamKey, id: String },
    Nudge,
    Shutdown,
}

/// Why the keeper did not take a deletion.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Busy,
    Gone,
}

/// The loop's and the workers' handle: queues jobs, never blocks.
#[derive(Clone)]
pub struct KeeperHandle {
    tx: SyncSender<Job>,
}

impl KeeperHandle {
    /// Queues the deletion of session `id` of `key` (checked again on the keeper: never a live one).
    pub fn delete(&self, key: StreamKey, id: String) -> Result<(), Refused> {
        match self.tx.try_send(Job::Delete { key, id }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Gone),
        }
    }

    /// A session ended or a write failed: check the bounds now rather than at the next tick.
    pub fn nudge(&self) {
        let _ = self.tx.try_send(Job::Nudge);
    }
}

pub struct Keeper {
    handle: KeeperHandle,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    pub fn start(data_dir: PathBuf, bounds: Bounds) -> io::Result<Keeper> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let ctx = Ctx {
            data_dir,
            bounds,
            cache: HashMap::new(),
            warned_live_only: false,
        };
        let thread = thread::Builder::new()
            .name("recordings-keeper".into())
            .spawn(move || ctx.run(rx))?;
        Ok(Keeper {
            handle: KeeperHandle { tx },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> KeeperHandle {
        self.handle.clone()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // A full queue still sees the disconnect once the keeper drains it.
        let _ = self.handle.tx.try_send(Job::Shutdown);
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Space of the file system holding `dir`: (available to us, total) bytes.
pub fn fs_space(dir: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: `st` is plain data statvfs fills in; `c` is a valid NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let unit = st.f_frsize as u64;
        Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// The free-space floor for a file system of `total` bytes.
pub fn min_free_for(bounds: &Bounds, total: u64) -> u64 {
    match bounds.min_free {
        Some(n) => n,
        None => DEFAULT_MIN_FREE.min(total / 100 * DEFAULT_MIN_FREE_PERCENT),
    }
}

struct Ctx {
    data_dir: PathBuf,
    bounds: Bounds,
    /// Index files as last read: (length, modification time, sessions).
    cache: HashMap<PathBuf, (u64, SystemTime, Vec<Session>)>,
    warned_live_only: bool,
}

impl Ctx {
    fn run(mut self, rx: Receiver<Job>) {
        loop {
            match rx.recv_timeout(CHECK_EVERY) {
                Ok(Job::Delete { key, id }) => self.delete_asked(&key, &id),
                Ok(Job::Nudge) | Err(RecvTimeoutError::Timeout) => self.check(),
                Ok(Job::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn delete_asked(&mut self, key: &StreamKey, id: &str) {
        match delete_session(&self.data_dir, key, id, Reason::Api) {
            Ok(true) => {}
            Ok(false) => log::warn!("recordings: {key} session {id} not deleted: live or gone"),
            Err(e) => log::error!("recordings: {key} session {id} could not be deleted: {e}"),
        }
    }

    /// Every session of every indexed stream, oldest first.
    fn all_sessions(&mut self) -> Vec<(StreamKey, Session)> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for key in index::indexed_streams(&self.data_dir) {
            let path = index::index_path(&self.data_dir, &key);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let fresh = self
                .cache
                .get(&path)
                .is_some_and(|(l, t, _)| (*l, *t) == stamp);
            if !fresh {
                match index::load_stream(&self.data_dir, &key) {
                    Ok(Some(l)) => {
                        self.cache
                            .insert(path.clone(), (stamp.0, stamp.1, l.sessions));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        log::error!("retention: {e}");
                        continue;
                    }
                }
            }
            if let Some((_, _, sessions)) = self.cache.get(&path) {
                out.extend(sessions.iter().map(|s| (key.clone(), s.clone())));
            }
            seen.push(path);
        }
        self.cache.retain(|p, _| seen.contains(p));
        out.sort_by(|a, b| (a.1.start_ms, &a.1.id).cmp(&(b.1.start_ms, &b.1.id)));
        out
    }

    fn check(&mut self) {
        let b = self.bounds;
        let space = fs_space(&self.data_dir);
        let floor = space.map(|(_, total)| min_free_for(&b, total)).unwrap_or(0);
        let low = |d: &Path| fs_space(d).is_some_and(|(avail, _)| avail < floor);
        let space_low = floor > 0 && low(&self.data_dir);
        if b.keep_days.is_none() && b.max_size.is_none() && !space_low {
            LOW_SPACE.store(false, Ordering::Relaxed);
            self.warned_live_only = false;
            return;
        }
        let sessions = self.all_sessions();
        let now = crate::record::paths::unix_ms(SystemTime::now());
        let mut gone = vec![false; sessions.len()];
        if let Some(days) = b.keep_days {
            let cutoff = now.saturating_sub((days as i64).saturating_mul(86_400_000));
            for (i, (key, s)) in sessions.iter().enumerate() {
                if s.end_ms.is_some_and(|e| e < cutoff) {
                    gone[i] = self.delete(key, s, Reason::KeepDays);
                }
            }
        }
        if let Some(max) = b.max_size {
            let mut total: u64 = sessions
                .iter()
                .zip(&gone)
                .filter(|((_, s), g)| !**g && !s.live())
                .map(|((_, s), _)| s.disk_size())
                .sum();
            // Live sessions are in the index without their size: measure them.
            for (_, s) in sessions.iter().filter(|(_, s)| s.live()) {
                total += index::describe(&self.data_dir, s.clone(), None).size;
            }
            for (i, (key, s)) in sessions.iter().enumerate() {
                if total <= max {
                    break;
                }
                if gone[i] || s.live() {
                    continue;
                }
                if self.delete(key, s, Reason::MaxSize) {
                    gone[i] = true;
                    total = total.saturating_sub(s.disk_size());
                }
            }
        }
        if floor > 0 && low(&self.data_dir) {
            for (i, (key, s)) in sessions.iter().enumerate() {
                if !low(&self.data_dir) {
                    break;
                }
                if gone[i] || s.live() {
                    continue;
                }
                gone[i] = self.delete(key, s, Reason::MinFree);
            }
        }
        let still_low = floor > 0 && low(&self.data_dir);
        if still_low && !self.warned_live_only {
            log::warn!(
                "retention: {} is under --record-min-free ({floor} bytes free wanted) and only live \
                 sessions are left to delete",
                self.data_dir.display()
            );
        }
        self.warned_live_only = still_low;
        LOW_SPACE.store(still_low, Ordering::Relaxed);
    }

    fn delete(&mut self, key: &StreamKey, s: &Session, reason: Reason) -> bool {
        match delete_session(&self.data_dir, key, &s.id, reason) {
            Ok(done) => done,
            Err(e) => {
                log::error!(
                    "retention: {key} session {} could not be deleted: {e}",
                    s.id
                );
                false
            }
        }
    }
}

/// Deletes session `id` of `key` with all its files, unless it is live; one log line, one count.
/// `Ok(false)` when it is live or not in the index.
pub fn delete_session(
    data_dir: &Path,
    key: &StreamKey,
    id: &str,
    reason: Reason,
) -> io::Result<bool> {
    let _g = index::key_lock(key);
    let Some(loaded) = index::load_stream(data_dir, key)? else {
        return Ok(false);
    };
    let Some(s) = loaded.sessions.iter().find(|s| s.id == id) else {
        return Ok(false);
    };
    if s.live() {
        return Ok(false);
    }
    let bytes = index::delete_files(data_dir, s)?;
    index::append(data_dir, key, &Entry::Del { id: id.to_string() })?;
    DELETED[reason as usize].fetch_add(1, Ordering::Relaxed);
    FREED.fetch_add(bytes, Ordering::Relaxed);
    log::info!(
        "recordings: deleted {key} session {id} ({bytes} bytes, {} s, ended {}): {}",
        s.duration_ms / 1000,
        crate::mux::hls::format_iso8601(s.end_ms.unwrap_or(s.start_ms)),
        match reason {
            Reason::KeepDays => "older than --record-keep-days",
            Reason::MaxSize => "recordings over --record-max-size",
            Reason::MinFree => "free space under --record-min-free",
            Reason::Api => "asked through the API",
        }
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use std::fs;

    fn put(d: &Path, key: &StreamKey, id: &str, end: Option<i64>, bytes: usize) {
        let flv = d.join("flv").join(&key.app).join(&key.stream);
        fs::create_dir_all(&flv).unwrap();
        fs::write(flv.join(format!("{id}.flv")), vec![0u8; bytes]).unwrap();
        let s = Session {
            id: id.into(),
            start_ms: index::id_start_ms(id).unwrap(),
            end_ms: end,
            size: bytes as u64,
            flv: Some(format!("flv/{}/{}/{id}.flv", key.app, key.stream)),
            ..Session::default()
        };
        index::append(d, key, &Entry::Put(s)).unwrap();
    }

    #[test]
    fn max_size_deletes_oldest_first_never_live() {
        let d = temp_dir("retention-size");
        let a = StreamKey::new("live", "a").unwrap();
        let b = StreamKey::new("live", "b").unwrap();
        put(&d, &a, "20200101_000000", Some(1), 1000);
        put(&d, &b, "20200102_000000", Some(2), 1000);
        put(&d, &a, "20200103_000000", Some(3), 1000);
        put(&d, &b, "20200104_000000", None, 1000);
        let mut ctx = Ctx {
            data_dir: d.clone(),
            bounds: Bounds {
                max_size: Some(2500),
                min_free: Some(0),
                keep_days: None,
            },
            cache: HashMap::new(),
            warned_live_only: false,
        };
        let before = deleted(Reason::MaxSize);
        ctx.check();
        assert!(deleted(Reason::MaxSize) >= before + 2);
        assert!(!d.join("flv/live/a/20200101_000000.flv").exists());
        assert!(!d.join("flv/live/b/20200102_000000.flv").exists());
        assert!(d.join("flv/live/a/20200103_000000.flv").exists());
        assert!(d.join("flv/live/b/20200104_000000.flv").exists());
        let ids = |k: &StreamKey| -> Vec<String> {
            index::load(&index::index_path(&d, k))
                .unwrap()
                .unwrap()
                .sessions
                .into_iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(ids(&a), ["20200103_000000"]);
        assert_eq!(ids(&b), ["20200104_000000"]);
        // A live session is never deleted, whatever the bound.
        ctx.bounds.max_size = Some(0);
        ctx.check();
        assert_eq!(ids(&b), ["20200104_000000"]);
        assert!(ids(&a).is_empty());
        assert!(!delete_session(&d, &b, "20200104_000000", Reason::Api).unwrap());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn keep_days_deletes_what_ended_before_the_cutoff() {
        let d = temp_dir("retention-days");
        let a = StreamKey::new("live", "a").unwrap();
        let now = crate::record::paths::unix_ms(SystemTime::now());
        put(&d, &a, "20200101_000000", Some(now - 3 * 86_400_000), 10);
        put(&d, &a, "20200102_000000", Some(now - 3_600_000), 10);
        let mut ctx = Ctx {
            data_dir: d.clone(),
            bounds: Bounds {
                keep_days: Some(2),
                min_free: Some(0),
                max_size: None,
            },
            cache: HashMap::new(),
            warned_live_only: false,
        };
        ctx.check();
        assert!(!d.join("flv/live/a/20200101_000000.flv").exists());
        assert!(d.join("flv/live/a/20200102_000000.flv").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn default_floor_is_the_smaller_of_1_gib_and_5_percent() {
        let b = Bounds::default();
        assert_eq!(min_free_for(&b, 100 << 30), 1 << 30);
        assert_eq!(min_free_for(&b, 1000), 50);
        let b = Bounds {
            min_free: Some(7),
            ..b
        };
        assert_eq!(min_free_for(&b, 100 << 30), 7);
        assert!(fs_space(Path::new("/")).is_some_and(|(a, t)| a <= t && t > 0));
    }
}
