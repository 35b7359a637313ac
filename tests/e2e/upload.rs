//! Object storage (`--upload`, issue 29 item 5) against a real S3 server started by each test: s3s-fs
//! (crates.io's `s3s-fs`, an S3 implementation over a folder; `tools/test-setup.sh` installs it into
//! `tools/s3s/`). Files land whole (SHA-256 of each local file against the bucket's copy), a large MP4
//! goes up as a multipart upload, uploads resume after `kill -9` of rtmpd, a bucket that refuses for
//! 30 s delays but loses nothing, and `--upload-delete-local` frees the disk while playback (302 to the
//! bucket, and `/playback` cuts) still works from the bucket.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::*;

const TOOL: Duration = Duration::from_secs(120);
const BUCKET: &str = "recs";
const PREFIX: &str = "pre";

/// The s3s-fs binary: $RTMPD_S3S_FS, tools/s3s/bin/s3s-fs (tools/test-setup.sh), or on PATH.
fn s3s_fs() -> Option<PathBuf> {
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("RTMPD_S3S_FS") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/s3s/bin/s3s-fs"));
    candidates.push(PathBuf::from("s3s-fs"));
    if let Some(p) = candidates.into_iter().find(|p| runs(p)) {
        return Some(p);
    }
    let msg = format!(
        "skipped: s3s-fs not found (test {}; bash tools/test-setup.sh installs it)",
        test_name()
    );
    if std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{msg}, and RTMPD_REQUIRE_TOOLS=1 forbids skipping");
    }
    eprintln!("{msg}");
    None
}

/// A real S3 server on a fixed loopback port, which the test can stop (connections refused) and
/// start again on the same port and folder.
struct S3 {
    bin: PathBuf,
    port: u16,
    root: TempDir,
    /// The credentials file rtmpd reads (not in its data dir, which it serves).
    creds: TempDir,
    proc: Option<Proc>,
}

impl S3 {
    fn new(bin: PathBuf) -> S3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = TempDir::new("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let creds = TempDir::new("s3-creds");
        creds.write(
            "credentials",
            b"[default]\naws_access_key_id = rtmpdtest\naws_secret_access_key = rtmpdtestsecret\n",
        );
        S3 {
            bin,
            port,
            root,
            creds,
            proc: None,
        }
    }

    fn up(&mut self) {
        let mut c = Command::new(&self.bin);
        c.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                "rtmpdtest",
                "--secret-key",
                "rtmpdtestsecret",
            ])
            .arg(self.root.path());
        let mut p = Proc::spawn(c);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(p.is_running(), "s3s-fs exited: {}", p.stderr());
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(p);
    }

    fn down(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where s3s-fs keeps the object of data-dir path `rel`.
    fn object(&self, rel: &str) -> PathBuf {
        self.root.join(&format!("{BUCKET}/{PREFIX}/{rel}"))
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.down();
    }
}

/// The origin's upload options (credentials from a file, as `--upload-credentials` reads it).
fn upload_args(s3: &S3, data: &Path, extra: &[&str]) -> Vec<String> {
    let creds = s3.creds.join("credentials");
    let mut a: Vec<String> = [
        "--data-dir",
        &data.display().to_string(),
        "--upload",
        &format!("s3://{BUCKET}/{PREFIX}"),
        "--upload-endpoint",
        &s3.endpoint(),
        "--upload-credentials",
        &creds.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn start(s3: &S3, data: &Path, extra: &[&str]) -> Server {
    Server::builder().args(upload_args(s3, data, extra)).start()
}

/// Publishes the 10 s fixture (`loops` extra times over), in real time when `re`.
fn publish(server: &Server, key: &str, loops: u32, re: bool) -> Proc {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"]);
    if re {
        c.arg("-re");
    }
    c.args(["-stream_loop", &loops.to_string()])
        .arg("-i")
        .arg(fixture_path("fixture.flv"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(key));
    Proc::spawn(c)
}

fn sessions(server: &Server, key: &str) -> Vec<Value> {
    let r = http_get(
        server.http,
        &format!("/api/recordings/{key}"),
        Duration::from_secs(10),
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["sessions"].as_array().cloned().unwrap_or_default()
}

/// The one session of `key`, once it has ended (and, with `stored`, once the index says all its files
/// are in the bucket).
fn ended_session(server: &Server, key: &str, stored: bool, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let s = sessions(server, key);
        if let Some(x) = s.first() {
            if x["live"] == false && (!stored || x["remote"].is_string()) {
                return x.clone();
            }
        }
        assert!(Instant::now() < deadline, "{key}: sessions {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every recording file of `key` in `data` (session `id`), by its object path (the archived layout),
/// with its SHA-256.
fn local_files(data: &Path, key: &str, id: &str) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !p.to_string_lossy().ends_with(".tmp") {
                out.push(p);
            }
        }
    }
    let mut out = BTreeMap::new();
    for kind in ["flv", "hls", "mp4"] {
        let base = data.join(kind).join(key);
        let mut files = Vec::new();
        walk(&base, &mut files);
        for f in files {
            let rel = f.strip_prefix(&base).unwrap().to_string_lossy().to_string();
            let in_session = kind == "flv" || rel.starts_with(&format!("{id}/"));
            let object = if in_session {
                format!("{kind}/{key}/{rel}")
            } else {
                format!("{kind}/{key}/{id}/{rel}")
            };
            out.insert(object, sha(&std::fs::read(&f).unwrap()));
        }
    }
    out
}

/// Waits until every file in `want` is in the bucket with the same SHA-256; panics with the ones that
/// are not after `wait`.
fn assert_bucket_has(s3: &S3, want: &BTreeMap<String, String>, wait: Duration) {
    assert!(!want.is_empty());
    let deadline = Instant::now() + wait;
    loop {
        let missing: Vec<&String> = want
            .iter()
            .filter(|(rel, h)| {
                std::fs::read(s3.object(rel))
                    .map(|b| sha(&b) != **h)
                    .unwrap_or(true)
            })
            .map(|(rel, _)| rel)
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} files not (or not whole) in the bucket: {missing:?}",
            missing.len(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// GET `url` (`http://127.0.0.1:PORT/path?query`, a presigned URL) with the Host it was signed for.
fn get_url(url: &str) -> HttpResponse {
    let rest = url.strip_prefix("http://").expect(url);
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let addr: SocketAddr = host.parse().unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    http_exchange(addr, req.as_bytes(), Duration::from_secs(30), false).unwrap()
}

/// A recording's URL on the origin, answered from the bucket: 302 to a presigned URL, and its bytes.
fn get_via_bucket(server: &Server, path: &str) -> Vec<u8> {
    let r = http_get(server.http, path, Duration::from_secs(10));
    assert_eq!(r.status, 302, "{path}: {}", r.body_text());
    let loc = r.header("location").expect("Location").to_string();
    let got = get_url(&loc);
    assert_eq!(got.status, 200, "{loc}: {}", got.body_text());
    got.body
}

fn data_bytes(data: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    }
    ["flv", "hls", "mp4"]
        .iter()
        .map(|k| walk(&data.join(k)))
        .sum()
}

#[test]
fn files_land_whole_and_a_large_mp4_goes_up_in_parts() {
    if !require_tool("ffmpeg") {
        return;
    }
    let Some(bin) = s3s_fs() else { return };
    let mut s3 = S3::new(bin);
    s3.up();
    let data = TempDir::new("up-whole");
    let server = start(&s3, data.path(), &["--upload-part-size", "5M"]);
    let key = "live/big";
    // 12 s at a constant 6 Mbit/s: a merged MP4 of about 9 MB, over two 5 MiB parts.
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine", "-t", "12"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        .args([
            "-b:v", "6M", "-minrate", "6M", "-maxrate", "6M", "-bufsize", "2M",
        ])
        .args(["-x264-params", "nal-hrd=cbr", "-c:a", "aac", "-f", "flv"])
        .arg(server.rtmp_url(key));
    let mut p = Proc::spawn(c);
    assert!(p.wait_or_panic(TOOL).success(), "{}", p.stderr());
    let s = ended_session(&server, key, true, Duration::from_secs(90));
    let id = s["id"].as_str().unwrap();
    assert_eq!(s["remote"], format!("s3://{BUCKET}/{PREFIX}"));
    let files = local_files(data.path(), key, id);
    assert_bucket_has(&s3, &files, Duration::from_secs(10));
    let full = format!("mp4/{key}/{id}/output_merge/stream_full.mp4");
    let size = std::fs::metadata(s3.object(&full)).unwrap().len();
    assert!(size > 5 << 20, "the merged MP4 is only {size} bytes");
    let line = server
        .wait_for_log("stream_full.mp4 (", Duration::from_secs(5))
        .expect("a multipart log line");
    assert!(line.contains("multipart: 2 parts"), "{line}");
    println!("upload: {} files whole in the bucket; {line}", files.len());
}

/// SIGKILL: Unix only (the test binary builds for Windows too).
#[cfg(unix)]
#[test]
fn uploads_resume_after_kill_9() {
    if !require_tool("ffmpeg") {
        return;
    }
    let Some(bin) = s3s_fs() else { return };
    let mut s3 = S3::new(bin);
    s3.up();
    let data = TempDir::new("up-kill");
    let key = "live/killed";
    {
        let mut server = start(&s3, data.path(), &[]);
        let mut ff = publish(&server, key, 1, true);
        // Some segments go up, then the bucket goes away: the rest queue up.
        assert!(server
            .wait_for_log(
                &format!("HLS recording of {key} -> "),
                Duration::from_secs(30)
            )
            .is_some());
        std::thread::sleep(Duration::from_secs(5));
        s3.down();
        std::thread::sleep(Duration::from_secs(5));
        send_signal(server.pid(), 9);
        let _ = server.terminate(Duration::from_secs(2));
        ff.kill();
    }
    let journal = std::fs::read_to_string(data.join("upload/queue.jsonl")).unwrap();
    let adds = journal.matches("\"op\":\"add\"").count();
    let dones = journal.matches("\"op\":\"done\"").count();
    // Files were waiting when rtmpd died (some went up before the bucket stopped, unless the machine
    // was too slow to close a segment in 5 s: not asserted).
    assert!(
        adds > dones,
        "before the restart: {adds} queued, {dones} stored"
    );
    s3.up();
    let server = start(&s3, data.path(), &[]);
    assert!(server
        .wait_for_log(
            "left queued by the previous run resume",
            Duration::from_secs(20)
        )
        .is_some());
    let s = ended_session(&server, key, false, Duration::from_secs(30));
    let id = s["id"].as_str().unwrap();
    let files = local_files(data.path(), key, id);
    assert_bucket_has(&s3, &files, Duration::from_secs(90));
    println!(
        "upload: after kill -9, {} queued ({dones} stored before), all {} files now whole in the bucket",
        adds - dones,
        files.len()
    );
}

#[test]
fn a_bucket_that_refuses_for_30_s_delays_but_loses_nothing() {
    if !require_tool("ffmpeg") {
        return;
    }
    let Some(bin) = s3s_fs() else { return };
    // Nothing listens on the port for the first 30 s: every connection is refused.
    let mut s3 = S3::new(bin);
    let data = TempDir::new("up-refused");
    let server = start(&s3, data.path(), &[]);
    let t0 = Instant::now();
    let key = "live/refused";
    let mut ff = publish(&server, key, 0, true);
    assert!(ff.wait_or_panic(TOOL).success(), "{}", ff.stderr());
    let s = ended_session(&server, key, false, Duration::from_secs(30));
    let id = s["id"].as_str().unwrap().to_string();
    assert!(server
        .wait_for_log("retrying with back-off", Duration::from_secs(10))
        .is_some());
    std::thread::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed()));
    assert!(
        std::fs::read_dir(s3.root.join(BUCKET))
            .unwrap()
            .next()
            .is_none(),
        "nothing can be stored while the bucket is down"
    );
    s3.up();
    let back = Instant::now();
    let files = local_files(data.path(), key, &id);
    assert_bucket_has(&s3, &files, Duration::from_secs(90));
    assert!(server.log_contains("the bucket answers again"));
    // Stored in the end, and the index knows; the failed tries are counted, nothing is left queued.
    ended_session(&server, key, true, Duration::from_secs(20));
    let m = http_get(server.http, "/metrics", Duration::from_secs(10)).body_text();
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    };
    assert!(value("rtmpd_upload_failures_total") > 0);
    assert!(value("rtmpd_upload_files_total") >= files.len() as u64);
    assert_eq!(value("rtmpd_upload_queued"), 0);
    println!(
        "upload: bucket down {:?}; all {} files whole {:?} after it came back",
        back - t0,
        files.len(),
        back.elapsed()
    );
}

#[test]
fn delete_local_frees_the_disk_and_playback_plays_from_the_bucket() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let Some(bin) = s3s_fs() else { return };
    let mut s3 = S3::new(bin);
    s3.up();
    let data = TempDir::new("up-delete");
    let server = start(&s3, data.path(), &["--upload-delete-local", "0"]);
    let key = "live/freed";
    let mut ff = publish(&server, key, 2, false);
    assert!(ff.wait_or_panic(TOOL).success(), "{}", ff.stderr());
    let s = ended_session(&server, key, true, Duration::from_secs(90));
    let id = s["id"].as_str().unwrap();
    // The bucket's copies are whole (the local media may already be going).
    let deadline = Instant::now() + Duration::from_secs(30);
    let media = |rel: &str| {
        rel.ends_with(".ts")
            || rel.ends_with(".m4s")
            || rel.ends_with(".flv")
            || rel.ends_with("stream_full.mp4")
    };
    loop {
        let left: Vec<String> = local_files(data.path(), key, id)
            .into_keys()
            .filter(|r| media(r))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still on the disk: {left:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let after = data_bytes(data.path());
    let stored = s["size"].as_u64().unwrap();
    assert!(
        after * 10 < stored,
        "{after} bytes left on the disk of {stored} recorded"
    );
    assert!(server
        .wait_for_log("--upload-delete-local)", Duration::from_secs(5))
        .is_some());

    // The session's merged MP4, FLV file and an HLS segment come from the bucket, byte for byte.
    for path in [
        s["mp4"].as_str().unwrap().to_string(),
        s["flv"].as_str().unwrap().to_string(),
        format!("/hls/{key}/segment_2.ts"),
    ] {
        let body = get_via_bucket(&server, &path);
        let object = if path.starts_with("/flv/") {
            path.trim_start_matches('/').to_string()
        } else {
            let rel = path.trim_start_matches('/');
            let (kind, rest) = rel.split_at(4);
            let rest = rest.strip_prefix(&format!("{key}/")).unwrap();
            format!("{kind}{key}/{id}/{rest}")
        };
        assert_eq!(
            sha(&body),
            sha(&std::fs::read(s3.object(&object)).unwrap()),
            "{path}"
        );
    }
    // A cut from segments that are only in the bucket.
    let start_ms = s["start_ms"].as_i64().unwrap() + 12_000;
    let start = format_rfc3339(start_ms);
    let r = http_get(
        server.http,
        &format!("/playback/{key}.mp4?start={start}&duration=8"),
        Duration::from_secs(60),
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let dir = TempDir::new("cut-remote");
    let cut = dir.write("cut.mp4", &r.body);
    let dur = probe_duration(&cut);
    // The asked 8 s from the keyframe at or before the start (GOP 2 s), plus a frame.
    assert!((8.0..=10.1).contains(&dur), "the cut lasts {dur} s");
    let full = s3.object(&format!("mp4/{key}/{id}/output_merge/stream_full.mp4"));
    let (all, part) = (frame_hashes(&full), frame_hashes(&cut));
    assert!(
        part.len() >= 200 && all.windows(part.len()).any(|w| w == part.as_slice()),
        "the cut's {} frames are not a run of the session's",
        part.len()
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&cut)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Published again: the freed session's folders are archived; it keeps its size and files in the
    // listing, and its FLV still comes from the bucket.
    let mut ff = publish(&server, key, 0, false);
    assert!(ff.wait_or_panic(TOOL).success(), "{}", ff.stderr());
    let deadline = Instant::now() + Duration::from_secs(60);
    let old = loop {
        let all = sessions(&server, key);
        if all.len() == 2 && all.iter().all(|x| x["live"] == false) {
            break all[1].clone();
        }
        assert!(Instant::now() < deadline, "{all:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(old["id"], s["id"]);
    assert_eq!(old["size"], s["size"], "{old}");
    assert_eq!(old["remote"], s["remote"]);
    assert_eq!(old["flv"], s["flv"]);
    let mp4 = old["mp4"].as_str().unwrap();
    assert!(mp4.contains(&format!("/{id}/")), "{mp4}");
    let body = get_via_bucket(&server, mp4);
    assert_eq!(
        sha(&body),
        sha(
            &std::fs::read(s3.object(&format!("mp4/{key}/{id}/output_merge/stream_full.mp4")))
                .unwrap()
        )
    );
    println!(
        "upload: --upload-delete-local 0 left {after} of {stored} bytes on the disk; MP4, FLV, HLS and an 8 s cut ({} bytes, {dur:.2} s) from the bucket",
        r.body.len()
    );
}

/// RFC 3339 UTC with milliseconds, as `/playback` takes it.
fn format_rfc3339(ms: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}.{:03}", ms / 1000, ms % 1000),
            "+%Y-%m-%dT%H:%M:%S.%3NZ",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
