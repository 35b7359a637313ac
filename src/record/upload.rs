//! Object storage (`--upload s3://bucket/prefix`): every recording file is copied to an S3-compatible
//! bucket once it is final (an HLS or fMP4 segment as it closes, the rest of a session when it ends),
//! by worker threads of their own (`uploader-N`), never the event loop or a recorder.
//!
//! - Requests are signed with `rusty-s3` (sans-IO: presigned URLs and XML bodies) and sent with `ureq`
//!   (blocking, rustls on ring like the rest of rtmpd). Files over `part_size` go up as multipart
//!   uploads, one part in memory per worker at a time.
//! - The queue is a journal in the data dir, `upload/queue.jsonl` (`add` when a file is final, `done`
//!   when it is stored): after a restart, `kill -9` included, every `add` without its `done` is sent
//!   again. A failure (connection refused, 5xx, a 4xx that may pass) is retried with back-off (1 s
//!   doubling to 30 s), forever: nothing is dropped but a file that is gone from the disk.
//! - Object keys are the data-dir paths of the archived layout (`hls/{app}/{stream}/{id}/segment_3.ts`,
//!   `flv/{app}/{stream}/{id}.flv`), under the prefix, whether the file was still at the stream's own
//!   folder (the newest session) or already archived when it was sent.
//! - `--upload-delete-local AGE`: once stored, the media files (`.ts`, `.m4s`, `.flv`, the merged
//!   `stream_full.mp4`) of finished sessions are deleted from the disk when AGE old; playlists, init
//!   segments and `meta.json` stay (small, and the index, the playlists and the cutter read them).
//!   Playback then fetches from the bucket (`Remote::presigned_get`, `Remote::fetch`).
//! - When every file of a finished session is stored, its index entry gets `remote` (the bucket URL of
//!   its folder): the index knows where each session is.

use super::index::{self, Session};
use super::paths;
use crate::media::StreamKey;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The folder under the data dir with the queue journal.
pub const UPLOAD_DIR: &str = "upload";
const QUEUE_NAME: &str = "queue.jsonl";
/// The smallest part S3 takes (but the last).
pub const MIN_PART: u64 = 5 << 20;
/// Presigned URLs handed to players and used by the workers are valid this long.
const URL_LIFE: Duration = Duration::from_secs(3600);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// One request (a part, a file up to `part_size`) gets this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A bucket's answer body we read (errors, multipart XML) is cut at this.
const MAX_ANSWER: u64 = 1 << 20;
/// How often finished sessions' stored files are looked at for `--upload-delete-local`.
const DELETE_EVERY: Duration = Duration::from_secs(2);

/// `--upload` and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadConfig {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `https://s3.{region}.amazonaws.com` unless `--upload-endpoint`.
    pub endpoint: String,
    /// Path-style URLs (`endpoint/bucket/key`): any endpoint given; AWS itself gets virtual hosts.
    pub path_style: bool,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub workers: usize,
    /// Files larger than this go up in parts of this size.
    pub part_size: u64,
    /// `--upload-delete-local AGE`.
    pub delete_local_after: Option<Duration>,
}

impl UploadConfig {
    /// `s3://bucket/prefix` for logs.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// `s3://bucket[/prefix]` -> (bucket, prefix).
pub fn parse_s3_url(s: &str) -> Option<(String, String)> {
    let rest = s.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let prefix = prefix.trim_matches('/');
    let ok_prefix = prefix.len() <= 512
        && prefix.split('/').all(|p| {
            prefix.is_empty()
                || (!p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'))
        });
    (ok_bucket && ok_prefix).then(|| (bucket.to_string(), prefix.to_string()))
}

/// The `[profile]` section's keys of an AWS credentials file (`aws_access_key_id`,
/// `aws_secret_access_key`, `aws_session_token`).
pub fn parse_credentials_file(
    text: &str,
    profile: &str,
) -> Option<(String, String, Option<String>)> {
    let mut section = String::new();
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some((key?, secret?, token))
}

/// The bucket as playback and the workers reach it: signing only (no I/O) except `fetch`.
#[derive(Clone)]
pub struct Remote {
    bucket: Arc<Bucket>,
    creds: Arc<Credentials>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Remote {
    pub fn new(c: &UploadConfig) -> Result<Remote, String> {
        let endpoint = c
            .endpoint
            .parse()
            .map_err(|e| format!("--upload-endpoint '{}': {e}", c.endpoint))?;
        let style = if c.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, c.bucket.clone(), c.region.clone())
            .map_err(|e| format!("--upload '{}': {e:?}", c.url()))?;
        let creds = match &c.session_token {
            Some(t) => Credentials::new_with_token(&c.access_key, &c.secret_key, t),
            None => Credentials::new(&c.access_key, &c.secret_key),
        };
        Ok(Remote {
            bucket: Arc::new(bucket),
            creds: Arc::new(creds),
            prefix: c.prefix.clone(),
            url: c.url(),
        })
    }

    /// The object key of data-dir path `rel` (archived layout).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// `s3://bucket/prefix/rel`.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    /// A GET URL of `rel` valid for an hour (players are redirected to it).
    pub fn presigned_get(&self, rel: &str) -> String {
        let key = self.key(rel);
        self.bucket
            .get_object(Some(&self.creds), &key)
            .sign(URL_LIFE)
            .to_string()
    }

    /// The object `rel` into `out`, at most `max` bytes (a blocking GET: worker threads only).
    pub fn fetch(
        &self,
        agent: &ureq::Agent,
        rel: &str,
        max: u64,
        out: &mut impl Write,
    ) -> io::Result<u64> {
        let url = self.presigned_get(rel);
        let mut resp = agent.get(url.as_str()).call().map_err(other)?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: not in the bucket", self.display(rel)),
            ));
        }
        if status != 200 {
            return Err(io::Error::other(format!(
                "{}: the bucket answered {status}",
                self.display(rel)
            )));
        }
        let mut reader = resp.body_mut().with_config().limit(max).reader();
        io::copy(&mut reader, out)
    }

    /// Sends `path` (`size` bytes) as `rel`: one PUT, or a multipart upload over `part_size`.
    fn put_file(
        &self,
        agent: &ureq::Agent,
        file: &mut File,
        rel: &str,
        size: u64,
        part_size: u64,
    ) -> Result<u32, String> {
        let key = self.key(rel);
        if size <= part_size {
            let mut body = Vec::with_capacity(size as usize);
            file.take(size)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
            if body.len() as u64 != size {
                return Err("the file shrank".into());
            }
            let url = self
                .bucket
                .put_object(Some(&self.creds), &key)
                .sign(URL_LIFE);
            let (status, _, text) = send(agent.put(url.as_str()).send(&body[..]))?;
            return if status == 200 {
                Ok(1)
            } else {
                Err(format!("PUT answered {status}: {}", short(&text)))
            };
        }
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.creds), &key)
            .sign(URL_LIFE);
        let (status, _, text) = send(agent.post(url.as_str()).send_empty())?;
        if status != 200 {
            return Err(format!(
                "multipart create answered {status}: {}",
                short(&text)
            ));
        }
        let created = rusty_s3::actions::CreateMultipartUpload::parse_response(&text)
            .map_err(|e| format!("multipart create: {e}"))?;
        let upload_id = created.upload_id().to_string();
        let result = self.put_parts(agent, file, &key, &upload_id, size, part_size);
        if result.is_err() {
            // Leave no parts behind (best effort: the bucket may be the one failing).
            let url = self
                .bucket
                .abort_multipart_upload(Some(&self.creds), &key, &upload_id)
                .sign(URL_LIFE);
            let _ = send(agent.delete(url.as_str()).call());
        }
        result
    }

    fn put_parts(
        &self,
        agent: &ureq::Agent,
        file: &mut File,
        key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
    ) -> Result<u32, String> {
        let mut etags = Vec::new();
        let mut sent = 0u64;
        let mut buf = Vec::with_capacity(part_size as usize);
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        while sent < size {
            let n = part_size.min(size - sent);
            buf.clear();
            Read::by_ref(file)
                .take(n)
                .read_to_end(&mut buf)
                .map_err(|e| e.to_string())?;
            if buf.len() as u64 != n {
                return Err("the file shrank".into());
            }
            let number =
                u16::try_from(etags.len() + 1).map_err(|_| "over 65535 parts".to_string())?;
            let url = self
                .bucket
                .upload_part(Some(&self.creds), key, number, upload_id)
                .sign(URL_LIFE);
            let (status, etag, text) = send(agent.put(url.as_str()).send(&buf[..]))?;
            if status != 200 {
                return Err(format!("part {number} answered {status}: {}", short(&text)));
            }
            etags.push(etag.ok_or_else(|| format!("part {number}: no ETag"))?);
            sent += n;
        }
        let action = self.bucket.complete_multipart_upload(
            Some(&self.creds),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(URL_LIFE);
        let body = action.body();
        let (status, _, text) = send(agent.post(url.as_str()).send(body.as_bytes()))?;
        // S3 may answer 200 with an <Error> body when completing fails late.
        if status != 200 || text.contains("<Error>") {
            return Err(format!(
                "multipart complete answered {status}: {}",
                short(&text)
            ));
        }
        Ok(etags.len() as u32)
    }
}

fn other(e: ureq::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Status, ETag and (capped) body text of an answer; a transport error as text.
fn send(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Option<String>, String), String> {
    let mut resp = r.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    Ok((status, etag, text))
}

fn short(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.replace(['\n', '\r'], " ")
}

/// The blocking client of the workers and the cutter.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .user_agent(format!("rtmpd/{}", crate::VERSION))
        .build()
        .into()
}

/// `kind/app/stream/rest` of the newest session (files at the stream's own folder) -> the archived
/// layout `kind/app/stream/{id}/rest`; FLV files and archived paths are already that.
pub fn archived_rel(rel: &str, id: &str) -> String {
    let parts: Vec<&str> = rel.splitn(4, '/').collect();
    match parts.as_slice() {
        [kind, app, stream, rest] if *kind != "flv" => {
            let first = rest.split('/').next().unwrap_or("");
            if paths::is_session_name(first) {
                rel.to_string()
            } else {
                format!("{kind}/{app}/{stream}/{id}/{rest}")
            }
        }
        _ => rel.to_string(),
    }
}

/// (stream, session id) of an archived-layout path.
fn session_of(rel: &str) -> Option<(StreamKey, String)> {
    let parts: Vec<&str> = rel.splitn(4, '/').collect();
    let [kind, app, stream, rest] = parts.as_slice() else {
        return None;
    };
    let key = StreamKey::new(app, stream).ok()?;
    let id = if *kind == "flv" {
        rest.strip_suffix(".flv")?
    } else {
        rest.split('/').next()?
    };
    paths::is_session_name(id).then(|| (key, id.to_string()))
}

/// Media files deleted locally under `--upload-delete-local` (the rest is small and read by the index,
/// the playlists and the cutter).
pub fn is_media(rel: &str) -> bool {
    rel.ends_with(".ts")
        || rel.ends_with(".m4s")
        || rel.ends_with(".flv")
        || rel.ends_with(&format!("/{}", paths::FULL_NAME))
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
enum Line {
    /// `rel`: where the file was when it was final; `key`: archived layout (object key, and where the
    /// file is once archived); `size` when final.
    #[serde(rename = "add")]
    Add { rel: String, key: String, size: u64 },
    #[serde(rename = "done")]
    Done { key: String, rel: String, size: u64 },
}

#[derive(Clone, Debug)]
struct Item {
    rel: String,
    key: String,
    size: u64,
    /// Failures in a row, for the back-off.
    tries: u32,
    not_before: Instant,
}

struct State {
    queue: VecDeque<Item>,
    /// Keys queued or being sent.
    pending: HashSet<String>,
    /// Files queued or being sent per session (so that "all stored" is one look, however long the queue).
    per_session: HashMap<(StreamKey, String), usize>,
    /// Stored, waiting to be deleted locally (`--upload-delete-local`): (rel, key, size).
    stored: Vec<(String, String, u64)>,
    journal: Option<File>,
    journal_lines: usize,
    stop: bool,
    /// Sessions whose end was swept but that still have files on the way.
    ended: HashSet<(StreamKey, String)>,
    /// Failing in a row (for one log line per outage, not one per try).
    failing: bool,
}

struct Inner {
    data_dir: PathBuf,
    config: UploadConfig,
    remote: Remote,
    state: Mutex<State>,
    wake: Condvar,
    uploaded_files: std::sync::atomic::AtomicU64,
    uploaded_bytes: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
}

/// The uploader: a handle the recorders hold (cheap to clone).
#[derive(Clone)]
pub struct Uploader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Uploader({})", self.inner.config.url())
    }
}

/// Counters for `/metrics`: (files stored, bytes stored, failed tries, queued now).
pub fn stats() -> Option<(u64, u64, u64, usize)> {
    let g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    let u = g.as_ref()?;
    use std::sync::atomic::Ordering::Relaxed;
    let queued = lock(&u.inner.state).pending.len();
    Some((
        u.inner.uploaded_files.load(Relaxed),
        u.inner.uploaded_bytes.load(Relaxed),
        u.inner.failures.load(Relaxed),
        queued,
    ))
}

static GLOBAL: Mutex<Option<Uploader>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join(UPLOAD_DIR).join(QUEUE_NAME)
}

impl Uploader {
    /// Reads the journal (what a previous run left queued goes first) and starts the workers.
    pub fn start(data_dir: &Path, config: UploadConfig) -> io::Result<Uploader> {
        let remote = Remote::new(&config).map_err(io::Error::other)?;
        let dir = data_dir.join(UPLOAD_DIR);
        fs::create_dir_all(&dir).map_err(|e| paths::with_path(e, &dir))?;
        let (queue, stored) = load_journal(&journal_path(data_dir));
        let now = Instant::now();
        let mut state = State {
            queue: VecDeque::new(),
            pending: HashSet::new(),
            per_session: HashMap::new(),
            stored: if config.delete_local_after.is_some() {
                stored
            } else {
                Vec::new()
            },
            journal: None,
            journal_lines: 0,
            stop: false,
            ended: HashSet::new(),
            failing: false,
        };
        for (rel, key, size) in queue {
            if state.pending.insert(key.clone()) {
                count_in(&mut state.per_session, &key, true);
                state.queue.push_back(Item {
                    rel,
                    key,
                    size,
                    tries: 0,
                    not_before: now,
                });
            }
        }
        if !state.queue.is_empty() {
            log::info!(
                "upload to {}: {} files left queued by the previous run resume",
                config.url(),
                state.queue.len()
            );
        }
        let inner = Arc::new(Inner {
            data_dir: data_dir.to_path_buf(),
            remote,
            state: Mutex::new(state),
            wake: Condvar::new(),
            uploaded_files: Default::default(),
            uploaded_bytes: Default::default(),
            failures: Default::default(),
            config,
        });
        {
            let mut st = lock(&inner.state);
            rewrite_journal(&inner.data_dir, &mut st)?;
        }
        for n in 0..inner.config.workers.max(1) {
            let inner = inner.clone();
            thread::Builder::new()
                .name(format!("uploader-{n}"))
                .spawn(move || worker(&inner, n == 0))?;
        }
        let u = Uploader { inner };
        *lock(&GLOBAL) = Some(u.clone());
        Ok(u)
    }

    pub fn remote(&self) -> &Remote {
        &self.inner.remote
    }

    /// Stops the workers after their current request (they are not joined: a request may take long).
    pub fn stop(&self) {
        lock(&self.inner.state).stop = true;
        self.inner.wake.notify_all();
    }

    /// The file at `path` (under the data dir) of session `id` is final: it is queued.
    pub fn file_final(&self, path: &Path, id: &str) {
        let Ok(rel) = path.strip_prefix(&self.inner.data_dir) else {
            return;
        };
        let Some(rel) = rel_string(rel) else { return };
        let size = fs::metadata(path).map_or(0, |m| m.len());
        let key = archived_rel(&rel, id);
        let mut st = lock(&self.inner.state);
        self.enqueue(&mut st, rel, key, size);
    }

    fn enqueue(&self, st: &mut State, rel: String, key: String, size: u64) {
        if !st.pending.insert(key.clone()) {
            return;
        }
        count_in(&mut st.per_session, &key, true);
        append_line(
            &self.inner.data_dir,
            st,
            &Line::Add {
                rel: rel.clone(),
                key: key.clone(),
                size,
            },
        );
        st.queue.push_back(Item {
            rel,
            key,
            size,
            tries: 0,
            not_before: Instant::now(),
        });
        self.inner.wake.notify_one();
    }

    /// Session `id` of `key` ended (its sinks finished, the index updated): every file of it that is
    /// not on its way yet is queued (the FLV, playlists, init segments, the merged MP4, ...). Segments
    /// already stored are sent again only after a restart (an idempotent PUT).
    pub fn session_ended(&self, key: &StreamKey, id: &str) {
        let data = &self.inner.data_dir;
        let s = index::locate(data, key, id);
        let files = session_files(data, &s);
        let mut st = lock(&self.inner.state);
        for (rel, size) in files {
            let k = archived_rel(&rel, id);
            self.enqueue(&mut st, rel, k, size);
        }
        st.ended.insert((key.clone(), id.to_string()));
        drop(st);
        self.mark_if_stored(key, id);
    }

    /// When nothing of session `id` is on its way any more (and it has ended), its index entry gets
    /// `remote`.
    fn mark_if_stored(&self, key: &StreamKey, id: &str) {
        {
            let mut st = lock(&self.inner.state);
            let pair = (key.clone(), id.to_string());
            if !st.ended.contains(&pair) {
                return;
            }
            let busy = st.per_session.contains_key(&pair);
            if busy {
                return;
            }
            st.ended.remove(&pair);
        }
        let _g = index::key_lock(key);
        let data = &self.inner.data_dir;
        let Ok(Some(loaded)) = index::load_stream(data, key) else {
            return;
        };
        let Some(mut s) = loaded.sessions.into_iter().find(|s| s.id == id) else {
            return;
        };
        if s.live() {
            return;
        }
        let remote = self.inner.config.url();
        if s.remote.as_deref() == Some(remote.as_str()) {
            return;
        }
        s.remote = Some(remote.clone());
        if let Err(e) = index::append(data, key, &index::Entry::Put(s)) {
            log::error!("index of {key}: {e}");
        }
        log::info!("upload: session {id} of {key} is stored in {remote}");
    }
}

/// One more (`up`) or one fewer file of `key`'s session on its way.
fn count_in(counts: &mut HashMap<(StreamKey, String), usize>, key: &str, up: bool) {
    let Some(session) = session_of(key) else {
        return;
    };
    if up {
        *counts.entry(session).or_default() += 1;
    } else if let Some(n) = counts.get_mut(&session) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&session);
        }
    }
}

fn rel_string(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Every regular file of a session with its size, as data-dir paths.
fn session_files(data: &Path, s: &Session) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut add_dir = |rel: &str| {
        let Ok(rd) = fs::read_dir(data.join(rel)) else {
            return;
        };
        for e in rd.flatten().take(1_000_000) {
            let Ok(m) = e.metadata() else { continue };
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if m.is_file() && !name.ends_with(".tmp") {
                out.push((format!("{rel}/{name}"), m.len()));
            }
        }
    };
    if let Some(h) = &s.hls {
        add_dir(h);
    }
    if let Some(m) = &s.mp4 {
        add_dir(&format!("{m}/{}", paths::MERGE_DIR));
        add_dir(&format!("{m}/{}", paths::SEPARATE_DIR));
    }
    if let Some(f) = &s.flv {
        if let Ok(m) = fs::metadata(data.join(f)) {
            out.push((f.clone(), m.len()));
        }
    }
    // The big files last: segments and playlists are what players need first.
    out.sort_by_key(|(rel, size)| (rel.ends_with(".flv") || rel.ends_with(".mp4"), *size));
    out
}

/// (queued, stored-but-still-local) from the journal.
#[allow(clippy::type_complexity)]
fn load_journal(path: &Path) -> (Vec<(String, String, u64)>, Vec<(String, String, u64)>) {
    let mut text = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(256 << 20).read_to_end(&mut text);
    }
    let mut order: Vec<String> = Vec::new();
    let mut adds: HashMap<String, (String, u64)> = HashMap::new();
    let mut done: Vec<(String, String, u64)> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Add { rel, key, size }) => {
                if !adds.contains_key(&key) {
                    order.push(key.clone());
                }
                adds.insert(key, (rel, size));
            }
            Ok(Line::Done { key, rel, size }) => {
                adds.remove(&key);
                done.retain(|(_, k, _)| *k != key);
                done.push((rel, key, size));
            }
            // A torn last line (killed mid-append) or damage: skipped.
            Err(_) => {}
        }
    }
    let queued = order
        .into_iter()
        .filter_map(|k| adds.remove(&k).map(|(rel, size)| (rel, k, size)))
        .collect();
    (queued, done)
}

/// Writes the journal anew with what is still queued or waiting for deletion, then appends to it.
fn rewrite_journal(data: &Path, st: &mut State) -> io::Result<()> {
    let path = journal_path(data);
    let mut text = Vec::new();
    for (rel, key, size) in &st.stored {
        text.extend(line_bytes(&Line::Done {
            key: key.clone(),
            rel: rel.clone(),
            size: *size,
        }));
    }
    for it in &st.queue {
        text.extend(line_bytes(&Line::Add {
            rel: it.rel.clone(),
            key: it.key.clone(),
            size: it.size,
        }));
    }
    st.journal = None;
    paths::replace_file(&path, &text)?;
    st.journal_lines = st.stored.len() + st.queue.len();
    st.journal = Some(
        OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| paths::with_path(e, &path))?,
    );
    Ok(())
}

fn line_bytes(l: &Line) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v
}

fn append_line(data: &Path, st: &mut State, l: &Line) {
    // Compacted when dead lines outnumber the live ones (and there are enough to matter).
    if st.journal_lines > 1000 && st.journal_lines > 4 * (st.pending.len() + st.stored.len()) {
        if let Err(e) = rewrite_journal(data, st) {
            log::error!("upload queue: {e}");
        }
    }
    let Some(f) = st.journal.as_mut() else { return };
    // One write per line: a kill tears at most the last one, which the reader skips.
    if let Err(e) = f.write_all(&line_bytes(l)) {
        log::error!("upload queue {}: {e}", journal_path(data).display());
    }
    st.journal_lines += 1;
}

/// Where a queued file is now: archived first (its key), else where it was when final, if it is still
/// that file (the same size: a newer session's file of the same name is not it).
fn resolve(data: &Path, rel: &str, key: &str, size: u64) -> Option<(PathBuf, File)> {
    for r in [key, rel] {
        let p = data.join(r);
        if let Ok(f) = File::open(&p) {
            if f.metadata().is_ok_and(|m| m.is_file() && m.len() == size) {
                return Some((p, f));
            }
        }
    }
    None
}

fn worker(inner: &Arc<Inner>, deleter: bool) {
    let agent = agent();
    let up = Uploader {
        inner: inner.clone(),
    };
    let mut last_delete = Instant::now();
    loop {
        let item = {
            let mut st = lock(&inner.state);
            loop {
                if st.stop {
                    return;
                }
                let now = Instant::now();
                if deleter && now.duration_since(last_delete) >= DELETE_EVERY {
                    break None;
                }
                if let Some(pos) = st.queue.iter().position(|i| i.not_before <= now) {
                    break st.queue.remove(pos);
                }
                let next = st
                    .queue
                    .iter()
                    .map(|i| i.not_before)
                    .min()
                    .map_or(DELETE_EVERY, |t| t.saturating_duration_since(now))
                    .clamp(Duration::from_millis(10), DELETE_EVERY);
                st = inner
                    .wake
                    .wait_timeout(st, next)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        let Some(mut item) = item else {
            last_delete = Instant::now();
            delete_stored(inner);
            continue;
        };
        let key = session_of(&item.key);
        // Resolved under the stream's lock, so that the newest session's files are not archived (moved)
        // between the two looks; an open file survives the move.
        let found = {
            let _g = key.as_ref().map(|(k, _)| index::key_lock(k));
            resolve(&inner.data_dir, &item.rel, &item.key, item.size)
        };
        let Some((path, mut file)) = found else {
            log::warn!(
                "upload: {} is gone from the disk before it was stored: not uploaded",
                item.key
            );
            finish(&up, &item, false);
            continue;
        };
        let t0 = Instant::now();
        match inner.remote.put_file(
            &agent,
            &mut file,
            &item.key,
            item.size,
            inner.config.part_size,
        ) {
            Ok(parts) => {
                use std::sync::atomic::Ordering::Relaxed;
                inner.uploaded_files.fetch_add(1, Relaxed);
                inner.uploaded_bytes.fetch_add(item.size, Relaxed);
                let mut st = lock(&inner.state);
                if st.failing {
                    st.failing = false;
                    log::info!("upload to {}: the bucket answers again", inner.config.url());
                }
                drop(st);
                if parts > 1 {
                    log::info!(
                        "upload: {} stored as {} ({} bytes, multipart: {parts} parts, {} ms)",
                        path.display(),
                        inner.remote.display(&item.key),
                        item.size,
                        t0.elapsed().as_millis()
                    );
                } else {
                    log::debug!("upload: {} stored ({} bytes)", item.key, item.size);
                }
                finish(&up, &item, true);
            }
            Err(why) => {
                inner
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                item.tries += 1;
                let wait = BACKOFF_FIRST
                    .saturating_mul(1 << item.tries.min(6).saturating_sub(1))
                    .min(BACKOFF_MAX);
                item.not_before = Instant::now() + wait;
                let mut st = lock(&inner.state);
                if !st.failing {
                    st.failing = true;
                    log::warn!(
                        "upload of {} to {} failed ({why}): retrying with back-off (up to {} s), nothing is dropped",
                        item.key,
                        inner.config.url(),
                        BACKOFF_MAX.as_secs()
                    );
                }
                st.queue.push_back(item);
            }
        }
    }
}

/// The item left the queue: stored (`true`) or gone from the disk.
fn finish(up: &Uploader, item: &Item, stored: bool) {
    let inner = &up.inner;
    {
        let mut st = lock(&inner.state);
        if st.pending.remove(&item.key) {
            count_in(&mut st.per_session, &item.key, false);
        }
        append_line(
            &inner.data_dir,
            &mut st,
            &Line::Done {
                key: item.key.clone(),
                rel: item.rel.clone(),
                size: item.size,
            },
        );
        if stored && inner.config.delete_local_after.is_some() && is_media(&item.key) {
            st.stored
                .push((item.rel.clone(), item.key.clone(), item.size));
        }
    }
    if let Some((key, id)) = session_of(&item.key) {
        up.mark_if_stored(&key, &id);
    }
}

/// `--upload-delete-local`: stored media files of finished sessions, AGE after they were written.
fn delete_stored(inner: &Arc<Inner>) {
    let Some(age) = inner.config.delete_local_after else {
        return;
    };
    let stored = std::mem::take(&mut lock(&inner.state).stored);
    if stored.is_empty() {
        return;
    }
    let mut keep = Vec::new();
    let mut live: HashMap<(StreamKey, String), bool> = HashMap::new();
    let mut touched: HashSet<(StreamKey, String)> = HashSet::new();
    let now = SystemTime::now();
    let mut freed = 0u64;
    let mut count = 0u64;
    for (rel, key, size) in stored {
        let Some((stream, id)) = session_of(&key) else {
            continue;
        };
        let is_live = *live.entry((stream.clone(), id.clone())).or_insert_with(|| {
            index::load_stream(&inner.data_dir, &stream)
                .ok()
                .flatten()
                .and_then(|l| l.sessions.into_iter().find(|s| s.id == id))
                .is_none_or(|s| s.live())
        });
        if is_live {
            keep.push((rel, key, size));
            continue;
        }
        let _g = index::key_lock(&stream);
        let Some((path, f)) = resolve(&inner.data_dir, &rel, &key, size) else {
            // Deleted already (retention, an operator): nothing to do.
            continue;
        };
        let old = f
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|a| a >= age);
        drop(f);
        if !old {
            keep.push((rel, key, size));
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                freed += size;
                count += 1;
                touched.insert((stream.clone(), id.clone()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                log::error!(
                    "upload: cannot delete the local copy {}: {e}",
                    path.display()
                );
                keep.push((rel, key, size));
            }
        }
    }
    // The index learns what is left on the disk (retention's --record-max-size counts that).
    for (stream, id) in touched {
        let _g = index::key_lock(&stream);
        let data = &inner.data_dir;
        let Ok(Some(l)) = index::load_stream(data, &stream) else {
            continue;
        };
        let Some(mut s) = l.sessions.into_iter().find(|s| s.id == id) else {
            continue;
        };
        let mut located = index::locate(data, &stream, &id);
        located.start_ms = s.start_ms;
        s.local_size = Some(index::describe(data, located, s.end_ms).size);
        if let Err(e) = index::append(data, &stream, &index::Entry::Put(s)) {
            log::error!("index of {stream}: {e}");
        }
    }
    if count > 0 {
        log::info!(
            "upload: deleted {count} local files stored in {} ({freed} bytes freed, --upload-delete-local)",
            inner.config.url()
        );
    }
    let mut st = lock(&inner.state);
    keep.append(&mut st.stored);
    st.stored = keep;
}

/// Where `rel` (a request's data-dir path) is in the bucket: the newest session's files at the stream's
/// own folders are stored under its id (from the index).
pub fn object_rel(data: &Path, rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.splitn(4, '/').collect();
    let [kind, app, stream, rest] = parts.as_slice() else {
        return None;
    };
    if !matches!(*kind, "flv" | "hls" | "mp4") || rest.is_empty() {
        return None;
    }
    let key = StreamKey::new(app, stream).ok()?;
    if *kind == "flv" || rest.split('/').next().is_some_and(paths::is_session_name) {
        return Some(rel.to_string());
    }
    let own = format!("{kind}/{app}/{stream}");
    let loaded = index::load_stream(data, &key).ok()??;
    let s = loaded.sessions.iter().rev().find(|s| {
        let p = if *kind == "hls" { &s.hls } else { &s.mp4 };
        p.as_deref() == Some(own.as_str())
    })?;
    Some(archived_rel(rel, &s.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://rec-bucket/a/b/"),
            Some(("rec-bucket".into(), "a/b".into()))
        );
        assert_eq!(parse_s3_url("s3://rec"), Some(("rec".into(), "".into())));
        assert_eq!(parse_s3_url("s3://Bad_Bucket/x"), None);
        assert_eq!(parse_s3_url("s3://rec/../x"), None);
        assert_eq!(parse_s3_url("http://rec/x"), None);
        assert_eq!(parse_s3_url("s3://ab"), None);
    }

    #[test]
    fn credentials_file_profiles() {
        let text = "[other]\naws_access_key_id = X\n[default]\n# c\naws_access_key_id = AK\naws_secret_access_key= SK \n";
        assert_eq!(
            parse_credentials_file(text, "default"),
            Some(("AK".into(), "SK".into(), None))
        );
        assert_eq!(parse_credentials_file(text, "other"), None);
    }

    #[test]
    fn keys_use_the_archived_layout() {
        let id = "20261207_110012";
        assert_eq!(
            archived_rel("hls/live/cam/segment_3.ts", id),
            "hls/live/cam/20261207_110012/segment_3.ts"
        );
        assert_eq!(
            archived_rel("mp4/live/cam/output_merge/segment_1.m4s", id),
            "mp4/live/cam/20261207_110012/output_merge/segment_1.m4s"
        );
        assert_eq!(
            archived_rel("hls/live/cam/20261201_000000/segment_3.ts", id),
            "hls/live/cam/20261201_000000/segment_3.ts"
        );
        assert_eq!(
            archived_rel("flv/live/cam/20261207_110012.flv", id),
            "flv/live/cam/20261207_110012.flv"
        );
        let (k, s) =
            session_of("mp4/live/cam/20261207_110012/output_merge/stream_full.mp4").unwrap();
        assert_eq!((k.to_string(), s.as_str()), ("live/cam".into(), id));
        let (_, s) = session_of("flv/live/cam/20261207_110012_1.flv").unwrap();
        assert_eq!(s, "20261207_110012_1");
        assert!(session_of("hls/live/cam/index.m3u8").is_none());
        assert!(is_media("hls/a/b/20261207_110012/segment_3.ts"));
        assert!(is_media(
            "mp4/a/b/20261207_110012/output_merge/stream_full.mp4"
        ));
        assert!(!is_media("mp4/a/b/20261207_110012/output_merge/init.mp4"));
        assert!(!is_media("hls/a/b/20261207_110012/index.m3u8"));
    }

    #[test]
    fn journal_keeps_what_is_not_done_and_skips_a_torn_line() {
        let d = crate::testutil::temp_dir("upload-journal");
        let p = d.join("q.jsonl");
        let mut text = Vec::new();
        for (rel, key) in [("a/1", "k/1"), ("a/2", "k/2"), ("a/3", "k/3")] {
            text.extend(line_bytes(&Line::Add {
                rel: rel.into(),
                key: key.into(),
                size: 5,
            }));
        }
        text.extend(line_bytes(&Line::Done {
            key: "k/2".into(),
            rel: "a/2".into(),
            size: 5,
        }));
        text.extend(b"{\"op\":\"done\",\"key\":\"k/");
        fs::write(&p, &text).unwrap();
        let (queued, done) = load_journal(&p);
        let keys: Vec<&str> = queued.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, ["k/1", "k/3"]);
        assert_eq!(done, vec![("a/2".to_string(), "k/2".to_string(), 5)]);
        fs::remove_dir_all(&d).unwrap();
    }
}
