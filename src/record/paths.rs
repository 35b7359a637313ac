//! Where recordings live on disk: `{data_dir}/{kind}/{app}/{stream}/`, session time stamps in
//! local time (`YYYYMMDD_HHMMSS`), files and folders that never overwrite (`_1`, `_2` on a clash),
//! and archiving a previous session's files into a sub-folder named after its start. Only path and
//! file-system plumbing here; what a recorder writes is decided by its sink.

pub use crate::media::key::is_session_name;
use crate::media::StreamKey;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

// The fMP4 recording layout in `{data_dir}/mp4/{app}/{stream}/`, shared by the recorder
// (`record::fmp4`) and the merge (`record::merge`, `rtmpd merge`).

/// Folder of the muxed series (`init.mp4`, `segment_N.m4s`) and of the merged file.
pub const MERGE_DIR: &str = "output_merge";
/// Folder of one series per track (`video_init.mp4`, `video_N.m4s`, `audio_...`).
pub const SEPARATE_DIR: &str = "output_separate";
/// The merged MP4, in `MERGE_DIR`.
pub const FULL_NAME: &str = "stream_full.mp4";
/// Init segments: the muxed one (`MERGE_DIR`), the per-track ones (`SEPARATE_DIR`).
pub const INIT_NAME: &str = "init.mp4";
pub const VIDEO_INIT_NAME: &str = "video_init.mp4";
pub const AUDIO_INIT_NAME: &str = "audio_init.mp4";
/// Prefixes of the `{prefix}_N.m4s` media segments, as `segment_name` joins them.
pub const MUXED_PREFIX: &str = "segment";
pub const VIDEO_PREFIX: &str = "video";
pub const AUDIO_PREFIX: &str = "audio";
/// Playlists: muxed (`MERGE_DIR`), per track and the master over them (`SEPARATE_DIR`).
pub const MUXED_PLAYLIST: &str = "index.m3u8";
pub const VIDEO_PLAYLIST: &str = "video.m3u8";
pub const AUDIO_PLAYLIST: &str = "audio.m3u8";
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// The session facts in each of the two folders.
pub const META_NAME: &str = "meta.json";

/// `{prefix}_{n}.m4s`, counting from 1.
pub fn segment_name(prefix: &str, n: u32) -> String {
    format!("{prefix}_{n}.m4s")
}

/// How many `_N` suffixes to try before giving up on a unique name.
const MAX_SUFFIX: u32 = 10_000;

/// `{data_dir}/{kind}/{app}/{stream}`. Safe because `StreamKey` names are `[A-Za-z0-9_-]` only.
pub fn stream_dir(data_dir: &Path, kind: &str, key: &StreamKey) -> PathBuf {
    data_dir.join(kind).join(&key.app).join(&key.stream)
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub fn from_unix_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// `YYYYMMDD_HHMMSS` in local time (UTC where the local zone is unknown).
pub fn local_stamp(t: SystemTime) -> String {
    let secs = unix_ms(t).div_euclid(1000);
    stamp(local_fields(secs).unwrap_or_else(|| utc_fields(secs)))
}

/// The session stamp's form.
const STAMP: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day]_[hour][minute][second]");

fn stamp(at: PrimitiveDateTime) -> String {
    // Fails only for a description asking for what the value lacks; this one does not.
    at.format(STAMP).unwrap_or_default()
}

/// UTC fields; outside the years `time` holds (1-9999 here), the epoch.
fn utc_fields(secs: i64) -> PrimitiveDateTime {
    let t = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    PrimitiveDateTime::new(t.date(), t.time())
}

/// Local fields from the C library. Not `time`'s `local-offset`: on Linux it refuses to answer
/// once a second thread runs (the zone database is read through an environment that another
/// thread could change), and recordings start on worker threads. localtime_r is the thread-safe
/// form of the same call.
#[cfg(unix)]
fn local_fields(secs: i64) -> Option<PrimitiveDateTime> {
    use time::{Date, Month, Time};
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // duration of the call and localtime_r is the thread-safe variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    let field = |v: libc::c_int| u8::try_from(v).ok();
    let date = Date::from_calendar_date(
        tm.tm_year.checked_add(1900)?,
        Month::try_from(field(tm.tm_mon)?.checked_add(1)?).ok()?,
        field(tm.tm_mday)?,
    )
    .ok()?;
    // A leap second (60) shows as 59.
    let time = Time::from_hms(
        field(tm.tm_hour)?,
        field(tm.tm_min)?,
        field(tm.tm_sec)?.min(59),
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

#[cfg(not(unix))]
fn local_fields(_secs: i64) -> Option<PrimitiveDateTime> {
    None
}

/// `name` plus `_1`, `_2`... before the extension: `stem.ext`, `stem_1.ext`, ...
fn candidate(dir: &Path, stem: &str, ext: &str, n: u32) -> PathBuf {
    let base = if n == 0 {
        stem.to_string()
    } else {
        format!("{stem}_{n}")
    };
    if ext.is_empty() {
        dir.join(base)
    } else {
        dir.join(format!("{base}.{ext}"))
    }
}

/// Creates `dir/stem.ext` (or `stem_1.ext`, ... when taken) without ever replacing a file.
pub fn create_unique_file(dir: &Path, stem: &str, ext: &str) -> io::Result<(File, PathBuf)> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    for n in 0..MAX_SUFFIX {
        let path = candidate(dir, stem, ext, n);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, &path)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: no free name", dir.join(stem).display()),
    ))
}

/// Creates the folder `dir/stem` (or `stem_1`, ...) that does not exist yet.
pub fn create_unique_dir(dir: &Path, stem: &str) -> io::Result<PathBuf> {
    for n in 0..MAX_SUFFIX {
        let path = candidate(dir, stem, "", n);
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, &path)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: no free name", dir.join(stem).display()),
    ))
}

/// Moves the entries of `dir` that `select` picks into a new sub-folder `dir/{stamp}` (suffixed
/// when taken). Returns the folder, or `None` when nothing was selected (no folder is made).
pub fn archive_session(
    dir: &Path,
    stamp: &str,
    select: impl Fn(&Path, &fs::FileType) -> bool,
) -> io::Result<Option<PathBuf>> {
    let mut picked = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(with_path(e, dir)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| with_path(e, dir))?;
        let ty = entry.file_type().map_err(|e| with_path(e, &entry.path()))?;
        if select(&entry.path(), &ty) {
            picked.push(entry.path());
        }
    }
    if picked.is_empty() {
        return Ok(None);
    }
    let target = create_unique_dir(dir, stamp)?;
    for path in picked {
        if let Some(name) = path.file_name() {
            let to = target.join(name);
            fs::rename(&path, &to).map_err(|e| with_path(e, &path))?;
        }
    }
    Ok(Some(target))
}

/// The modification time of the oldest regular file directly in `dir`.
pub fn oldest_file_time(dir: &Path) -> Option<SystemTime> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .min()
}

/// Adds the path to an I/O error so that the log line names the file.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `contents` to `path` atomically: a temp file next to it, then a rename over it.
pub fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    if let Err(e) = fs::write(&tmp, contents) {
        // A partial temp file is of no use to anyone, and on a full disk it holds the space.
        let _ = fs::remove_file(&tmp);
        return Err(with_path(e, &tmp));
    }
    fs::rename(&tmp, path).map_err(|e| with_path(e, path))
}

/// `x.ext` -> `x.ext.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmp4_layout_names() {
        assert_eq!(segment_name(MUXED_PREFIX, 3), "segment_3.m4s");
        assert_eq!(segment_name(VIDEO_PREFIX, 1), "video_1.m4s");
        assert_eq!(segment_name(AUDIO_PREFIX, 12), "audio_12.m4s");
    }

    use crate::testutil::temp_dir;

    #[test]
    fn stamp_shape_and_utc_fallback() {
        let s = local_stamp(from_unix_ms(1_795_482_509_007));
        assert_eq!(s.len(), 15);
        assert_eq!(&s[8..9], "_");
        assert!(s
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit()));
        assert_eq!(stamp(utc_fields(1_795_482_509)), "20261124_010829");
        assert_eq!(stamp(utc_fields(-1)), "19691231_235959");
        assert_eq!(stamp(utc_fields(0)), "19700101_000000");
        // Outside what `time` holds: the epoch, no panic.
        assert_eq!(stamp(utc_fields(i64::MAX)), "19700101_000000");
        assert_eq!(stamp(utc_fields(i64::MIN)), "19700101_000000");
        assert_eq!(
            local_stamp(UNIX_EPOCH + Duration::from_secs(1 << 50)).len(),
            15
        );
    }

    #[cfg(unix)]
    #[test]
    fn local_time_agrees_with_libc_offset() {
        // Whatever the zone, local minus UTC is a whole number of quarter hours within a day.
        let secs = 1_795_482_509;
        let l = local_fields(secs).unwrap();
        assert_eq!(l.second(), 29);
        let off = l.assume_utc().unix_timestamp() - secs;
        assert!(off.abs() <= 14 * 3600 && off % 900 == 0, "{off}");
    }

    #[test]
    fn unique_files_and_dirs_never_clash() {
        let d = temp_dir("unique");
        let (_, a) = create_unique_file(&d, "20260101_000000", "flv").unwrap();
        let (_, b) = create_unique_file(&d, "20260101_000000", "flv").unwrap();
        let (_, c) = create_unique_file(&d, "20260101_000000", "flv").unwrap();
        assert_eq!(a.file_name().unwrap(), "20260101_000000.flv");
        assert_eq!(b.file_name().unwrap(), "20260101_000000_1.flv");
        assert_eq!(c.file_name().unwrap(), "20260101_000000_2.flv");
        let x = create_unique_dir(&d, "s").unwrap();
        let y = create_unique_dir(&d, "s").unwrap();
        assert_eq!(y.file_name().unwrap(), "s_1");
        assert!(x.is_dir() && y.is_dir());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn archive_moves_selected_files_only() {
        let d = temp_dir("archive");
        fs::write(d.join("index.m3u8"), "x").unwrap();
        fs::write(d.join("segment_1.ts"), "y").unwrap();
        fs::create_dir(d.join("20250101_000000")).unwrap();
        let only_files = |_: &Path, t: &fs::FileType| t.is_file();
        let to = archive_session(&d, "20260101_120000", only_files)
            .unwrap()
            .unwrap();
        assert_eq!(fs::read_to_string(to.join("index.m3u8")).unwrap(), "x");
        assert!(to.join("segment_1.ts").is_file());
        assert!(!d.join("index.m3u8").exists());
        assert!(d.join("20250101_000000").is_dir());
        // Nothing left to move: no empty folder appears.
        assert_eq!(
            archive_session(&d, "20260101_120000", only_files).unwrap(),
            None
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replace_is_whole() {
        let d = temp_dir("replace");
        let p = d.join("index.m3u8");
        replace_file(&p, b"one").unwrap();
        replace_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
