//! The recordings index: one small append-only file per stream, `{data_dir}/index/{app}/{stream}.jsonl`,
//! one JSON line per change (`put` a session, `del` a session), so that listing a year of sessions is one
//! read. A torn last line (a crash mid-write) is ignored when read and cut off before the next append;
//! the file is rewritten whole (temp + rename) when dead lines outnumber live ones. It is derived data:
//! `scan` rebuilds it from the folders the recorders wrote (`startup` does so when it is missing or a
//! crash left a session open). Writers (recorder workers, the retention thread) hold `key_lock` for the
//! stream; readers (the API) take no lock. Nothing here decides what to delete (`retention` does).

use super::paths::{self, is_session_name, MERGE_DIR, META_NAME, SEPARATE_DIR};
use crate::media::key::valid_name;
use crate::media::StreamKey;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The folder under the data dir that holds the index files.
pub const INDEX_DIR: &str = "index";
const EXT: &str = "jsonl";
/// An index file larger than this is not ours (10,000 sessions take about 3 MB).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// A rebuild looks at this many entries per folder at most.
const MAX_SCAN_ENTRIES: usize = 100_000;

/// One recorded session of a stream. Paths are relative to the data dir, with `/` separators.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's start as the recorders name it (`YYYYMMDD_HHMMSS`, local time, `_N` on a clash).
    pub id: String,
    /// Wall clock, Unix milliseconds.
    pub start_ms: i64,
    /// `None` while the session is live (or after a crash, until `startup` mends it).
    #[serde(default)]
    pub end_ms: Option<i64>,
    #[serde(default)]
    pub duration_ms: u64,
    /// Bytes of all its files.
    #[serde(default)]
    pub size: u64,
    /// RFC 6381 codec strings (from the fMP4 recorder's `meta.json`; empty without it).
    #[serde(default)]
    pub codecs: Vec<String>,
    /// `flv/{app}/{stream}/{id}.flv`.
    #[serde(default)]
    pub flv: Option<String>,
    /// The folder with its `index.m3u8`: `hls/{app}/{stream}/{id}` once archived, `hls/{app}/{stream}`
    /// while it is the newest session (its files then lie loose there, beside older sessions' folders).
    #[serde(default)]
    pub hls: Option<String>,
    /// The folder with its `output_merge/` and `output_separate/`, the same way.
    #[serde(default)]
    pub mp4: Option<String>,
    /// `s3://bucket/prefix` once every file of it is stored in the bucket (`upload`): each file's object
    /// is its data-dir path in the archived layout under it, e.g. `hls/{app}/{stream}/{id}/index.m3u8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Bytes still on the local disk once `--upload-delete-local` deleted stored files (`size` stays the
    /// recording's); what retention's `--record-max-size` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_size: Option<u64>,
}

impl Session {
    /// Its bytes on the local disk.
    pub fn disk_size(&self) -> u64 {
        self.local_size.unwrap_or(self.size)
    }
}

impl Session {
    pub fn live(&self) -> bool {
        self.end_ms.is_none()
    }

    /// Where the session's media ends on the wall clock: its start plus its media duration, or its
    /// wall-clock end when later (a publisher faster than real time packs more media than wall time).
    /// `None` while live.
    pub fn media_end_ms(&self) -> Option<i64> {
        let end = self.end_ms?;
        Some(end.max(self.start_ms.saturating_add(self.duration_ms as i64)))
    }

    /// True when its paths are the ones the recorders of `key` give a session (`locate`'s): an index line
    /// naming anything else (`../`, another stream) is not trusted, never read, served or deleted.
    pub fn is_sane(&self, key: &StreamKey) -> bool {
        let own =
            |kind: &str, p: &str| p == rel(kind, key, None) || p == rel(kind, key, Some(&self.id));
        is_session_name(&self.id)
            && self
                .flv
                .as_deref()
                .is_none_or(|f| f == rel("flv", key, Some(&format!("{}.flv", self.id))))
            && self.hls.as_deref().is_none_or(|h| own("hls", h))
            && self.mp4.as_deref().is_none_or(|m| own("mp4", m))
    }

    /// True when some of its files still lie at the stream's own folders (not yet archived).
    fn at_current_paths(&self) -> bool {
        [&self.hls, &self.mp4]
            .into_iter()
            .flatten()
            .any(|p| !last_is_session(p))
    }
}

/// One line of the index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Entry {
    #[serde(rename = "put")]
    Put(Session),
    #[serde(rename = "del")]
    Del { id: String },
}

fn last_is_session(rel: &str) -> bool {
    rel.rsplit('/').next().is_some_and(is_session_name)
}

/// `{data_dir}/index/{app}/{stream}.jsonl`.
pub fn index_path(data_dir: &Path, key: &StreamKey) -> PathBuf {
    data_dir
        .join(INDEX_DIR)
        .join(&key.app)
        .join(format!("{}.{EXT}", key.stream))
}

/// Writers of one stream's index and files take this (striped by key): a recorder worker archiving a
/// session never races the retention thread deleting it.
pub fn key_lock(key: &StreamKey) -> MutexGuard<'static, ()> {
    static LOCKS: [Mutex<()>; 16] = [const { Mutex::new(()) }; 16];
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let m = &LOCKS[(h.finish() % LOCKS.len() as u64) as usize];
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an index file holds: its sessions (oldest first) and how many lines it took.
#[derive(Debug, Default)]
pub struct Loaded {
    pub sessions: Vec<Session>,
    pub lines: usize,
    /// Lines that were not valid entries (a torn tail, or damage): ignored.
    pub bad_lines: usize,
}

/// Applies the whole lines of `text` in order; a line without its `\n` is a torn write and ignored.
pub fn parse(text: &[u8]) -> Loaded {
    let mut out = Loaded::default();
    let mut by_id: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut slots: Vec<Option<Session>> = Vec::new();
    let mut rest = text;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.lines += 1;
        match serde_json::from_slice::<Entry>(line) {
            Ok(Entry::Put(s)) if is_session_name(&s.id) => match by_id.get(&s.id) {
                Some(&i) => slots[i] = Some(s),
                None => {
                    by_id.insert(s.id.clone(), slots.len());
                    slots.push(Some(s));
                }
            },
            Ok(Entry::Del { id }) => {
                if let Some(i) = by_id.remove(&id) {
                    slots[i] = None;
                }
            }
            _ => out.bad_lines += 1,
        }
    }
    if !rest.is_empty() {
        out.bad_lines += 1;
    }
    out.sessions = slots.into_iter().flatten().collect();
    sort(&mut out.sessions);
    out
}

fn sort(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
}

/// Reads an index file; `Ok(None)` when there is none.
pub fn load(path: &Path) -> io::Result<Option<Loaded>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(paths::with_path(e, path)),
    };
    let mut buf = Vec::new();
    f.take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| paths::with_path(e, path))?;
    if buf.len() as u64 > MAX_INDEX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: over {MAX_INDEX_BYTES} bytes", path.display()),
        ));
    }
    Ok(Some(parse(&buf)))
}

fn line(entry: &Entry) -> Vec<u8> {
    // Serialising our own plain structs cannot fail.
    let mut v = serde_json::to_vec(entry).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The index of `key` (`Ok(None)` when it has none), sessions with paths not its own left out (counted as
/// bad lines).
pub fn load_stream(data_dir: &Path, key: &StreamKey) -> io::Result<Option<Loaded>> {
    let Some(mut l) = load(&index_path(data_dir, key))? else {
        return Ok(None);
    };
    let before = l.sessions.len();
    l.sessions.retain(|s| s.is_sane(key));
    l.bad_lines += before - l.sessions.len();
    Ok(Some(l))
}

/// Appends `entry` to the index of `key` (creating it), after cutting off a torn last line, and
/// compacts the file when it has more than twice as many lines as sessions. Caller holds `key_lock`.
pub fn append(data_dir: &Path, key: &StreamKey, entry: &Entry) -> io::Result<()> {
    let path = index_path(data_dir, key);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| paths::with_path(e, dir))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| paths::with_path(e, &path))?;
    let len = f.metadata()?.len();
    if len > 0 {
        // A crash mid-append leaves a line without its newline: cut it off so the new one stands alone.
        let tail = len.min(64 * 1024);
        let mut buf = vec![0u8; tail as usize];
        f.seek(SeekFrom::Start(len - tail))?;
        f.read_exact(&mut buf)?;
        if buf.last() != Some(&b'\n') {
            let keep = match buf.iter().rposition(|&b| b == b'\n') {
                Some(i) => len - tail + i as u64 + 1,
                None if len <= tail => 0,
                None => len, // one line longer than 64 KiB: not ours, leave it to the parser
            };
            f.set_len(keep)?;
        }
    }
    f.seek(SeekFrom::End(0))?;
    f.write_all(&line(entry))
        .map_err(|e| paths::with_path(e, &path))?;
    f.sync_data().map_err(|e| paths::with_path(e, &path))?;
    drop(f);
    let loaded = load(&path)?.unwrap_or_default();
    if loaded.lines > 2 * loaded.sessions.len() + 64 {
        rewrite(data_dir, key, &loaded.sessions)?;
    }
    Ok(())
}

/// Replaces the index of `key` with exactly `sessions` (temp file + rename). Caller holds `key_lock`.
pub fn rewrite(data_dir: &Path, key: &StreamKey, sessions: &[Session]) -> io::Result<()> {
    let path = index_path(data_dir, key);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| paths::with_path(e, dir))?;
    }
    let mut text = Vec::with_capacity(sessions.len() * 320);
    for s in sessions {
        text.extend_from_slice(&line(&Entry::Put(s.clone())));
    }
    paths::replace_file(&path, &text)
}

/// The streams that have an index, sorted.
pub fn indexed_streams(data_dir: &Path) -> Vec<StreamKey> {
    let mut out = Vec::new();
    for app in names(&data_dir.join(INDEX_DIR), 10_000) {
        if !valid_name(&app) {
            continue;
        }
        for f in names(&data_dir.join(INDEX_DIR).join(&app), MAX_SCAN_ENTRIES) {
            if let Some(stream) = f.strip_suffix(&format!(".{EXT}")) {
                if let Ok(key) = StreamKey::new(&app, stream) {
                    out.push(key);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.app, &a.stream).cmp(&(&b.app, &b.stream)));
    out
}

/// The streams that have any recording folder (`flv`, `hls`, `mp4`) or an index, sorted.
pub fn all_streams(data_dir: &Path) -> Vec<StreamKey> {
    let mut out = indexed_streams(data_dir);
    for kind in ["flv", "hls", "mp4"] {
        for app in names(&data_dir.join(kind), 10_000) {
            for stream in names(&data_dir.join(kind).join(&app), MAX_SCAN_ENTRIES) {
                if valid_name(&app) && valid_name(&stream) {
                    if let Ok(key) = StreamKey::new(&app, &stream) {
                        out.push(key);
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.app, &a.stream).cmp(&(&b.app, &b.stream)));
    out.dedup();
    out
}

fn names(dir: &Path, cap: usize) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .take(cap)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn rel(kind: &str, key: &StreamKey, tail: Option<&str>) -> String {
    match tail {
        Some(t) => format!("{kind}/{}/{}/{t}", key.app, key.stream),
        None => format!("{kind}/{}/{}", key.app, key.stream),
    }
}

/// The session id of the HLS files lying loose in `dir` (from the playlist's session start tag).
fn loose_hls_id(dir: &Path) -> Option<(String, i64)> {
    let text = fs::read_to_string(dir.join("index.m3u8")).ok()?;
    let ms = crate::mux::hls::playlist_start_ms(&text)?;
    Some((paths::local_stamp(paths::from_unix_ms(ms)), ms))
}

/// What the index takes from an fMP4 recorder's `meta.json` (`record::fmp4` writes it; its other keys
/// are not read here).
#[derive(Debug, Default, Deserialize)]
struct Mp4Meta {
    /// The session id (`YYYYMMDD_HHMMSS`).
    #[serde(default)]
    started: Option<String>,
    /// RFC 6381 strings joined by commas.
    #[serde(default)]
    codecs: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
}

/// `meta.json` of an fMP4 session folder (`output_merge/`, else `output_separate/`); a file that is not
/// one (unreadable, not JSON, a key of the wrong type) is passed over.
fn mp4_meta(dir: &Path) -> Option<Mp4Meta> {
    [MERGE_DIR, SEPARATE_DIR].iter().find_map(|d| {
        let text = fs::read(dir.join(d).join(META_NAME)).ok()?;
        serde_json::from_slice(&text).ok()
    })
}

fn loose_mp4_id(dir: &Path) -> Option<String> {
    mp4_meta(dir)?.started
}

/// Where the files of session `id` of `key` are now (archived folder first, then the stream's own).
pub fn locate(data_dir: &Path, key: &StreamKey, id: &str) -> Session {
    let mut s = Session {
        id: id.to_string(),
        ..Session::default()
    };
    let flv = rel("flv", key, Some(&format!("{id}.flv")));
    if data_dir.join(&flv).is_file() {
        s.flv = Some(flv);
    }
    let hls_dir = paths::stream_dir(data_dir, "hls", key);
    if hls_dir.join(id).join("index.m3u8").is_file() {
        s.hls = Some(rel("hls", key, Some(id)));
    } else if loose_hls_id(&hls_dir).is_some_and(|(l, _)| l == id) {
        s.hls = Some(rel("hls", key, None));
    }
    let mp4_dir = paths::stream_dir(data_dir, "mp4", key);
    if mp4_dir.join(id).is_dir() {
        s.mp4 = Some(rel("mp4", key, Some(id)));
    } else if loose_mp4_id(&mp4_dir).as_deref() == Some(id) {
        s.mp4 = Some(rel("mp4", key, None));
    }
    s
}

/// Bytes and newest modification time of the session's files.
fn measure(data_dir: &Path, s: &Session) -> (u64, i64) {
    let mut acc = (0u64, i64::MIN);
    let mut add = |m: &fs::Metadata| {
        acc.0 += m.len();
        if let Ok(t) = m.modified() {
            acc.1 = acc.1.max(paths::unix_ms(t));
        }
    };
    if let Some(f) = &s.flv {
        if let Ok(m) = fs::metadata(data_dir.join(f)) {
            add(&m);
        }
    }
    if let Some(h) = &s.hls {
        for_files(&data_dir.join(h), &mut add);
    }
    if let Some(m) = &s.mp4 {
        let dir = data_dir.join(m);
        for d in [MERGE_DIR, SEPARATE_DIR] {
            for_files(&dir.join(d), &mut add);
        }
    }
    acc
}

/// Calls `f` for each regular file directly in `dir`.
fn for_files(dir: &Path, f: &mut impl FnMut(&fs::Metadata)) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten().take(MAX_SCAN_ENTRIES) {
        if let Ok(m) = e.metadata() {
            if m.is_file() {
                f(&m);
            }
        }
    }
}

/// Fills in the facts of a located session from its files: size, codecs, end (`end_ms` given, or the
/// newest file's time), duration (the fMP4 `meta.json`'s, else end - start).
pub fn describe(data_dir: &Path, s: Session, end_ms: Option<i64>) -> Session {
    describe_with(data_dir, s, end_ms, true)
}

/// `describe`, without looking at every file when `measure` is false (size 0; without `end_ms` the end
/// is the start plus the fMP4 duration).
fn describe_with(
    data_dir: &Path,
    mut s: Session,
    end_ms: Option<i64>,
    measure_files: bool,
) -> Session {
    let (size, newest) = if measure_files {
        measure(data_dir, &s)
    } else {
        (0, i64::MIN)
    };
    s.size = size;
    if let Some(meta) = s.mp4.as_ref().and_then(|m| mp4_meta(&data_dir.join(m))) {
        if let Some(c) = meta.codecs {
            s.codecs = c
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(d) = meta.duration_ms {
            s.duration_ms = d;
        }
    }
    let end = end_ms.unwrap_or(if newest == i64::MIN {
        s.start_ms
    } else {
        newest
    });
    s.end_ms = Some(end.max(s.start_ms));
    if s.duration_ms == 0 {
        s.duration_ms = (end - s.start_ms).max(0) as u64;
    }
    s
}

/// Unix ms of a session id read as local time (the recorders' naming), `None` when not one.
pub fn id_start_ms(id: &str) -> Option<i64> {
    if !is_session_name(id) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| id.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(9..11)?, n(11..13)?, n(13..15)?);
    local_to_unix(y, mo, d, h, mi, s).map(|t| t * 1000)
}

#[cfg(unix)]
fn local_to_unix(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    // SAFETY: `tm` is plain data; mktime reads and normalises it and returns -1 on failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(y - 1900).ok()?;
    tm.tm_mon = (mo - 1) as i32;
    tm.tm_mday = d as i32;
    tm.tm_hour = h as i32;
    tm.tm_min = mi as i32;
    tm.tm_sec = s as i32;
    tm.tm_isdst = -1;
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t as i64)
}

/// Without a local zone (`record::paths::local_stamp` names sessions in UTC there): UTC.
#[cfg(not(unix))]
fn local_to_unix(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    use time::{Date, Month, PrimitiveDateTime, Time};
    let field = |v: i64| u8::try_from(v).ok();
    let date = Date::from_calendar_date(
        i32::try_from(y).ok()?,
        Month::try_from(field(mo)?).ok()?,
        field(d)?,
    )
    .ok()?;
    let time = Time::from_hms(field(h)?, field(mi)?, field(s)?).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Every session the folders of `key` hold, described from its files (the index rebuilt). Sessions in
/// `live` keep `end_ms: None`.
pub fn scan(data_dir: &Path, key: &StreamKey, live: Option<&str>) -> Vec<Session> {
    scan_with(data_dir, key, live, None)
}

/// A quick look for a listing when a stream has no index (on the event loop): the newest `newest`
/// sessions only, their files not measured (size 0).
pub fn scan_light(data_dir: &Path, key: &StreamKey, newest: usize) -> Vec<Session> {
    scan_with(data_dir, key, None, Some(newest))
}

fn scan_with(
    data_dir: &Path,
    key: &StreamKey,
    live: Option<&str>,
    newest: Option<usize>,
) -> Vec<Session> {
    let mut ids: Vec<(String, Option<i64>)> = Vec::new();
    let flv_dir = paths::stream_dir(data_dir, "flv", key);
    for n in names(&flv_dir, MAX_SCAN_ENTRIES) {
        if let Some(stem) = n.strip_suffix(".flv").filter(|s| is_session_name(s)) {
            ids.push((stem.to_string(), None));
        }
    }
    for kind in ["hls", "mp4"] {
        let dir = paths::stream_dir(data_dir, kind, key);
        for n in names(&dir, MAX_SCAN_ENTRIES) {
            if is_session_name(&n) && dir.join(&n).is_dir() {
                ids.push((n, None));
            }
        }
    }
    let hls_dir = paths::stream_dir(data_dir, "hls", key);
    if let Some((id, ms)) = loose_hls_id(&hls_dir) {
        ids.push((id, Some(ms)));
    }
    if let Some(id) = loose_mp4_id(&paths::stream_dir(data_dir, "mp4", key)) {
        ids.push((id, None));
    }
    // The HLS playlist knows the start to the millisecond: it wins over the name.
    ids.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.is_some().cmp(&a.1.is_some())));
    ids.dedup_by(|a, b| a.0 == b.0);
    if let Some(n) = newest {
        ids.drain(..ids.len().saturating_sub(n));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (id, exact) in ids {
        let mut s = locate(data_dir, key, &id);
        let hls_start = s.hls.as_ref().and_then(|h| {
            let text = fs::read_to_string(data_dir.join(h).join("index.m3u8")).ok()?;
            crate::mux::hls::playlist_start_ms(&text)
        });
        s.start_ms = exact
            .or(hls_start)
            .or_else(|| id_start_ms(&id))
            .unwrap_or(0);
        if s.flv.is_none() && s.hls.is_none() && s.mp4.is_none() {
            continue;
        }
        let mut s = describe_with(data_dir, s, None, newest.is_none());
        if live == Some(id.as_str()) {
            s.end_ms = None;
        }
        out.push(s);
    }
    sort(&mut out);
    out
}

/// Rebuilds the index of `key` from its folders. Caller holds `key_lock`.
pub fn rebuild(data_dir: &Path, key: &StreamKey) -> io::Result<Vec<Session>> {
    let sessions = scan(data_dir, key, None);
    rewrite(data_dir, key, &sessions)?;
    Ok(sessions)
}

/// At start, before any recording: every stream whose index is missing, unreadable, damaged, or left a
/// session open (a crash) gets it rebuilt from its folders. Returns one log line per rebuilt index.
pub fn startup(data_dir: &Path) -> Vec<String> {
    startup_with_open(data_dir).0
}

/// `startup`, also returning the sessions a crash left open (now ended): the uploader sends their files.
pub fn startup_with_open(data_dir: &Path) -> (Vec<String>, Vec<(StreamKey, String)>) {
    let mut lines = Vec::new();
    let mut open = Vec::new();
    for key in all_streams(data_dir) {
        let _g = key_lock(&key);
        let why = match load_stream(data_dir, &key) {
            Ok(None) => "missing",
            Ok(Some(l)) if l.sessions.iter().any(Session::live) => {
                open.extend(
                    l.sessions
                        .iter()
                        .filter(|s| s.live())
                        .map(|s| (key.clone(), s.id.clone())),
                );
                "a session left open"
            }
            Ok(Some(l)) if l.bad_lines > 0 => "damaged lines",
            Ok(Some(_)) => continue,
            Err(_) => "unreadable",
        };
        match rebuild(data_dir, &key) {
            Ok(s) => lines.push(format!(
                "index of {key}: rebuilt from its folders ({why}): {} sessions",
                s.len()
            )),
            Err(e) => lines.push(format!("index of {key}: cannot rebuild ({why}): {e}")),
        }
    }
    (lines, open)
}

/// Deletes every file of `s` (and its archived folders). Returns the bytes freed (as measured first).
pub fn delete_files(data_dir: &Path, s: &Session) -> io::Result<u64> {
    let (bytes, _) = measure(data_dir, s);
    if let Some(f) = &s.flv {
        remove(fs::remove_file(data_dir.join(f)), &data_dir.join(f))?;
    }
    if let Some(h) = &s.hls {
        let dir = data_dir.join(h);
        if last_is_session(h) {
            remove(fs::remove_dir_all(&dir), &dir)?;
        } else {
            // The newest session's files lie beside the older sessions' folders: files only.
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_file()) {
                        remove(fs::remove_file(e.path()), &e.path())?;
                    }
                }
            }
        }
    }
    if let Some(m) = &s.mp4 {
        let dir = data_dir.join(m);
        if last_is_session(m) {
            remove(fs::remove_dir_all(&dir), &dir)?;
        } else {
            for d in [MERGE_DIR, SEPARATE_DIR] {
                remove(fs::remove_dir_all(dir.join(d)), &dir.join(d))?;
            }
        }
    }
    Ok(bytes)
}

fn remove(r: io::Result<()>, path: &Path) -> io::Result<()> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(paths::with_path(e, path)),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// The recorder worker's side: a session opens, ends, and the previous one moves into its folder.

/// A new session of `key` started (its sinks created, so the previous session's files were
/// archived): the sessions that still pointed at the stream's own folders are located again, and the
/// new one is put as live. Logs and goes on when the index cannot be written. Caller holds `key_lock`.
pub fn session_opened(data_dir: &Path, key: &StreamKey, id: &str, start_ms: i64) {
    let loaded = match load_stream(data_dir, key) {
        Ok(Some(l)) => l,
        Ok(None) => Loaded::default(),
        Err(e) => {
            log::error!("index of {key}: {e}");
            return;
        }
    };
    let mut entries = Vec::new();
    for s in loaded.sessions.iter().filter(|s| s.id != id) {
        if s.at_current_paths() || s.live() {
            let mut moved = locate(data_dir, key, &s.id);
            moved.start_ms = s.start_ms;
            // A session still open here was cut off by a crash or a lost close: it ends now.
            let end = s.end_ms;
            let mut moved = Session {
                codecs: s.codecs.clone(),
                remote: s.remote.clone(),
                local_size: s.local_size,
                ..describe(data_dir, moved, end)
            };
            if s.remote.is_some() {
                // Stored in the bucket (`upload`), its media maybe deleted here: the recording's size
                // and its FLV file stay as they were; what the disk still holds is `local_size`.
                moved.local_size = Some(moved.size);
                moved.size = s.size;
                moved.flv = moved.flv.or_else(|| s.flv.clone());
            }
            entries.push(Entry::Put(moved));
        }
    }
    let mut new = locate(data_dir, key, id);
    new.start_ms = start_ms;
    // The HLS recorder writes its playlist with the first segment: the folder is its until then.
    if new.hls.is_none() && paths::stream_dir(data_dir, "hls", key).is_dir() {
        new.hls = Some(rel("hls", key, None));
    }
    entries.push(Entry::Put(new));
    for e in &entries {
        if let Err(e) = append(data_dir, key, e) {
            log::error!("index of {key}: {e}");
            return;
        }
    }
}

/// Session `id` of `key` is about to start (before its sinks make any file): it is put as live, so
/// that no reader sees its first files as a finished session. Caller holds `key_lock`.
pub fn session_opening(data_dir: &Path, key: &StreamKey, id: &str, start_ms: i64) {
    let s = Session {
        id: id.to_string(),
        start_ms,
        ..Session::default()
    };
    if let Err(e) = append(data_dir, key, &Entry::Put(s)) {
        log::error!("index of {key}: {e}");
    }
}

/// Session `id` of `key` ended (its sinks finished): its facts are put. Caller holds `key_lock`.
pub fn session_ended(data_dir: &Path, key: &StreamKey, id: &str, start_ms: i64, end_ms: i64) {
    let mut s = locate(data_dir, key, id);
    s.start_ms = start_ms;
    let s = describe(data_dir, s, Some(end_ms));
    if let Err(e) = append(data_dir, key, &Entry::Put(s)) {
        log::error!("index of {key}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;

    fn key() -> StreamKey {
        StreamKey::new("live", "cam").unwrap()
    }

    fn session(id: &str, start: i64) -> Session {
        Session {
            id: id.into(),
            start_ms: start,
            end_ms: Some(start + 1000),
            duration_ms: 1000,
            size: 10,
            ..Session::default()
        }
    }

    #[test]
    fn put_replaces_del_removes_torn_tail_ignored() {
        let mut text = Vec::new();
        text.extend(line(&Entry::Put(session("20260101_000000", 5))));
        text.extend(line(&Entry::Put(session("20260101_000001", 6))));
        let mut again = session("20260101_000000", 5);
        again.size = 99;
        text.extend(line(&Entry::Put(again)));
        text.extend(line(&Entry::Del {
            id: "20260101_000001".into(),
        }));
        text.extend(b"{\"op\":\"put\",\"id\":\"2026");
        let l = parse(&text);
        assert_eq!(l.sessions.len(), 1);
        assert_eq!(l.sessions[0].size, 99);
        assert_eq!(l.lines, 4);
        assert_eq!(l.bad_lines, 1);
        // Garbage and ids that are not session names are refused, not trusted.
        let l = parse(b"\xff\xfe\n{\"op\":\"put\",\"id\":\"../x\",\"start_ms\":0}\n");
        assert!(l.sessions.is_empty());
        assert_eq!(l.bad_lines, 2);
    }

    #[test]
    fn paths_not_the_streams_own_are_not_trusted() {
        let d = temp_dir("index-sane");
        let k = key();
        let mut good = session("20260101_000000", 1);
        good.flv = Some("flv/live/cam/20260101_000000.flv".into());
        good.hls = Some("hls/live/cam".into());
        good.mp4 = Some("mp4/live/cam/20260101_000000".into());
        assert!(good.is_sane(&k));
        append(&d, &k, &Entry::Put(good)).unwrap();
        for (flv, hls) in [
            (Some("flv/live/cam/../../../etc/passwd"), None),
            (None, Some("hls/live/other")),
            (None, Some("hls/live/cam/20250101_000000")),
        ] {
            let mut bad = session("20260101_000001", 2);
            bad.flv = flv.map(str::to_string);
            bad.hls = hls.map(str::to_string);
            assert!(!bad.is_sane(&k), "{bad:?}");
            append(&d, &k, &Entry::Put(bad)).unwrap();
        }
        let l = load_stream(&d, &k).unwrap().unwrap();
        assert_eq!(l.sessions.len(), 1);
        assert_eq!(l.bad_lines, 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn append_after_a_torn_line_and_compaction() {
        let d = temp_dir("index-append");
        let k = key();
        append(&d, &k, &Entry::Put(session("20260101_000000", 1))).unwrap();
        let path = index_path(&d, &k);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"put\",\"id\":\"2026010").unwrap();
        drop(f);
        append(&d, &k, &Entry::Put(session("20260101_000002", 3))).unwrap();
        let l = load(&path).unwrap().unwrap();
        assert_eq!(l.bad_lines, 0);
        assert_eq!(l.sessions.len(), 2);
        for i in 0..200 {
            let mut s = session("20260101_000000", 1);
            s.size = i;
            append(&d, &k, &Entry::Put(s)).unwrap();
        }
        let l = load(&path).unwrap().unwrap();
        assert!(l.lines <= 2 * 2 + 65, "{}", l.lines);
        assert_eq!(l.sessions[0].size, 199);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn scan_finds_current_and_archived_sessions_and_deletes_them() {
        let d = temp_dir("index-scan");
        let k = key();
        let flv = d.join("flv/live/cam");
        fs::create_dir_all(&flv).unwrap();
        fs::write(flv.join("20260101_100000.flv"), vec![0u8; 100]).unwrap();
        fs::write(flv.join("20260101_110000.flv"), vec![0u8; 50]).unwrap();
        let hls = d.join("hls/live/cam");
        fs::create_dir_all(hls.join("20260101_100000")).unwrap();
        fs::write(hls.join("20260101_100000/index.m3u8"), "#EXTM3U\n").unwrap();
        fs::write(hls.join("20260101_100000/segment_1.ts"), vec![0u8; 7]).unwrap();
        let start = id_start_ms("20260101_110000").unwrap();
        fs::write(
            hls.join("index.m3u8"),
            format!("#EXTM3U\n#RTMPD-SESSION-START:{start}\n"),
        )
        .unwrap();
        fs::write(hls.join("segment_1.ts"), vec![0u8; 3]).unwrap();
        let mp4 = d.join("mp4/live/cam/output_merge");
        fs::create_dir_all(&mp4).unwrap();
        fs::write(
            mp4.join("meta.json"),
            "{\"started\":\"20260101_110000\",\"codecs\":\"avc1.64001f,mp4a.40.2\",\"duration_ms\":4000}",
        )
        .unwrap();
        let s = scan(&d, &k, None);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].id, "20260101_100000");
        assert_eq!(s[0].hls.as_deref(), Some("hls/live/cam/20260101_100000"));
        assert_eq!(s[0].mp4, None);
        assert_eq!(s[0].size, 115);
        assert_eq!(s[1].hls.as_deref(), Some("hls/live/cam"));
        assert_eq!(s[1].mp4.as_deref(), Some("mp4/live/cam"));
        assert_eq!(s[1].codecs, ["avc1.64001f", "mp4a.40.2"]);
        assert_eq!(s[1].duration_ms, 4000);
        assert_eq!(s[1].start_ms, start);
        // Rebuilt by `startup` (no index yet), then the newest deleted: the older folder stays.
        let lines = startup(&d);
        assert!(lines[0].contains("rebuilt") && lines[0].contains("2 sessions"));
        assert!(startup(&d).is_empty());
        delete_files(&d, &s[1]).unwrap();
        assert!(hls.join("20260101_100000/segment_1.ts").is_file());
        assert!(!hls.join("segment_1.ts").exists());
        assert!(!mp4.exists());
        assert!(!flv.join("20260101_110000.flv").exists());
        let s2 = scan(&d, &k, None);
        assert_eq!(s2.len(), 1);
        delete_files(&d, &s2[0]).unwrap();
        assert!(scan(&d, &k, None).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_mp4_meta_of_another_shape_is_passed_over() {
        let d = temp_dir("index-meta");
        for sub in [MERGE_DIR, SEPARATE_DIR] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let (merge, separate) = (
            d.join(MERGE_DIR).join(META_NAME),
            d.join(SEPARATE_DIR).join(META_NAME),
        );
        fs::write(&merge, r#"{"started":5,"codecs":"avc1.64001f"}"#).unwrap();
        fs::write(
            &separate,
            r#"{"started":"20260101_000000","duration_ms":7,"tracks":["video"]}"#,
        )
        .unwrap();
        let m = mp4_meta(&d).unwrap();
        assert_eq!(m.started.as_deref(), Some("20260101_000000"));
        assert_eq!((m.duration_ms, m.codecs), (Some(7), None));
        fs::write(&separate, "[1,2]").unwrap();
        assert!(mp4_meta(&d).is_none());
        assert_eq!(loose_mp4_id(&d), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ten_thousand_sessions_load_fast() {
        let d = temp_dir("index-10k");
        let k = key();
        let sessions: Vec<Session> = (0..10_000)
            .map(|i| {
                let mut s = session(&format!("2026{:04}_{:06}", 101 + i / 100, i % 100), i);
                s.flv = Some(format!("flv/live/cam/{}.flv", s.id));
                s.codecs = vec!["avc1.64001f".into(), "mp4a.40.2".into()];
                s
            })
            .collect();
        rewrite(&d, &k, &sessions).unwrap();
        let t = std::time::Instant::now();
        let l = load(&index_path(&d, &k)).unwrap().unwrap();
        let took = t.elapsed();
        assert_eq!(l.sessions.len(), 10_000);
        println!(
            "index: 10,000 sessions ({} bytes) loaded in {took:?}",
            fs::metadata(index_path(&d, &k)).unwrap().len()
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
