//! Regression tests of issue 24, one per item, each named after it: the anonymous stream list
//! (item 2), the merged MP4's edit list with B-frames (item 3), the merge naming its damaged
//! segments (item 4) and `make test` doing its own set-up (item 8).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const WAIT_LIVE: Duration = Duration::from_secs(10);
const TOOL: Duration = Duration::from_secs(60);
const FINALISE: Duration = Duration::from_secs(30);

#[cfg(unix)]
fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs `c` to the end; panics with its stderr when it fails. Returns (stdout, stderr).
fn run_ok(c: Command, what: &str) -> (String, String) {
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(TOOL);
    assert!(status.success(), "{what}: {}", p.stderr());
    (p.stdout(), p.stderr())
}

/// Video frames FFmpeg decodes and keeps (`ffprobe -count_frames`): frames an edit list leaves
/// out are discarded, so they are not counted.
fn count_frames(input: &Path) -> u64 {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-v", "error", "-count_frames"])
        .args(["-select_streams", "v"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(input);
    let (out, _) = run_ok(c, &format!("ffprobe {}", input.display()));
    out.lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or(0)
}

fn looping() -> PublishOpts {
    PublishOpts {
        loops: 20,
        ..PublishOpts::default()
    }
}

fn streams_json(server: &Server, query: &str) -> String {
    let r = http_get(
        server.http,
        &format!("/api/streams{query}"),
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200, "/api/streams{query}");
    r.body_text()
}

/// Item 2: with `--api-token` and `--play-token`, `/api/streams` without the API token named
/// every live stream. It now names only the streams an anonymous viewer may play (none when
/// play needs a token, an auth-file play token, a signature or a hook), and `--no-public-list`
/// names none; the API token still sees everything.
#[test]
fn issue24_item2_the_anonymous_stream_list_names_only_what_anyone_may_play() {
    let (api, play) = ("apiTok24x", "playTok24x");
    // --play-token: no stream is anonymous.
    let server = Server::start_args(&["--api-token", api, "--play-token", play]);
    let _p = RustPublisher::start(server.rtmp, "live", "s2", "fixture.flv", looping()).unwrap();
    assert!(wait_until_live(
        server.http,
        &format!("/live/s2.flv?token={play}"),
        WAIT_LIVE
    ));
    let public = streams_json(&server, "");
    assert!(public.contains("\"restricted\":true"), "{public}");
    assert!(!public.contains("s2"), "a private stream named: {public}");
    assert!(public.contains("\"streams\":[]"), "{public}");
    assert!(
        public.contains("\"ports\":{"),
        "the pages still learn the ports: {public}"
    );
    let full = streams_json(&server, &format!("?token={api}"));
    assert!(full.contains("\"stream\":\"s2\""), "{full}");
    drop(_p);
    drop(server);

    // An auth file: the stream with a play token is private, the one without is public.
    let dir = TempDir::new("issue24-list");
    let auth = dir.join("auth.txt");
    std::fs::write(&auth, "live/open pk1\nlive/priv pk2 watch2\n").unwrap();
    let auth = auth.display().to_string();
    let server = Server::start_args(&["--api-token", api, "--auth-file", &auth]);
    let _a = RustPublisher::start(
        server.rtmp,
        "live",
        "open?token=pk1",
        "fixture.flv",
        looping(),
    )
    .unwrap();
    let _b = RustPublisher::start(
        server.rtmp,
        "live",
        "priv?token=pk2",
        "fixture.flv",
        looping(),
    )
    .unwrap();
    assert!(wait_until_live(server.http, "/live/open.flv", WAIT_LIVE));
    assert!(wait_until_live(
        server.http,
        "/live/priv.flv?token=watch2",
        WAIT_LIVE
    ));
    let public = streams_json(&server, "");
    assert!(public.contains("\"stream\":\"open\""), "{public}");
    assert!(!public.contains("priv"), "{public}");
    assert!(public.contains("\"public_list\":true"), "{public}");
    let full = streams_json(&server, &format!("?token={api}"));
    assert!(full.contains("\"stream\":\"priv\"") && full.contains("\"stream\":\"open\""));
    drop((_a, _b));
    drop(server);

    // --no-public-list: 200 (the pages need the ports), no stream, and a flag saying why.
    let server = Server::start_args(&["--api-token", api, "--no-public-list"]);
    let _p = RustPublisher::start(server.rtmp, "live", "s3", "fixture.flv", looping()).unwrap();
    assert!(wait_until_live(server.http, "/live/s3.flv", WAIT_LIVE));
    let public = streams_json(&server, "");
    assert!(
        public.contains("\"public_list\":false") && public.contains("\"streams\":[]"),
        "{public}"
    );
    assert!(!public.contains("s3"), "{public}");
    assert!(streams_json(&server, &format!("?token={api}")).contains("\"stream\":\"s3\""));
    // The name typed in still plays: the list is what is private, not the stream.
    assert!(wait_until_live(server.http, "/live/s3.flv", WAIT_LIVE));
}

/// Item 3: the merged MP4's edit list lasted the sum of the decode durations from the first
/// presentation time, so with B-frames the frame presented last could start at or after its end,
/// and FFmpeg discarded it (`ffprobe -count_frames` read one frame fewer than the source). The
/// source here is 30 fps H.264 with B-frames whose last B-frame (a non-reference one) was
/// dropped, as an encoder or relay under load does: the P-frame decoded before it is presented
/// last, one frame time past the decode durations. Every frame of the source must be counted in
/// the server's `stream_full.mp4` and in what `rtmpd merge` rebuilds.
#[test]
fn issue24_item3_merged_mp4_shows_every_frame_of_a_b_frame_source() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dir = TempDir::new("issue24-bframes");
    let src = dir.join("bframes.flv");
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-frames:v", "303", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-bf", "2", "-x264-params", "b-pyramid=none", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-bsf:v", "noise=drop=eq(n\\,302)"])
        .args(["-c:a", "aac", "-shortest", "-f", "flv"])
        .arg(&src);
    run_ok(c, "ffmpeg (the B-frame source)");
    let want = count_frames(&src);
    assert!(want > 250, "the source has {want} frames");
    let data = TempDir::new("issue24-bframes-data");
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), data.path().display().to_string()])
        .no_web()
        .start();
    let name = unique_stream("bf");
    let key = format!("live/{name}");
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&src)
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    run_ok(c, "ffmpeg (publish)");
    let done = server.wait_for_log_where(
        |l| l.contains(&format!("/mp4/{key} (")) && l.contains("finished"),
        FINALISE,
    );
    assert!(done.is_some(), "the fMP4 recording of {key} did not finish");
    let merged = data.join("mp4/live").join(&name).join("output_merge");
    let full = merged.join("stream_full.mp4");
    let got = count_frames(&full);
    eprintln!("video frames: source {want}, stream_full.mp4 {got}");
    assert_eq!(got, want, "stream_full.mp4 hides frames of the source");
    // `rtmpd merge` of the same segments: the same edit list, the same count.
    let copy = dir.join("merge-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&merged).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n == "init.mp4" || n.ends_with(".m4s") {
            std::fs::copy(e.path(), copy.join(&n)).unwrap();
        }
    }
    let mut c = Command::new(binary());
    c.arg("merge").arg(&copy);
    run_ok(c, "rtmpd merge");
    assert_eq!(
        count_frames(&copy.join("stream_full.mp4")),
        want,
        "rtmpd merge"
    );
    server.assert_running();
}

/// Copies `init.mp4` and the `segment_N.m4s` files of `from` into `to` (created).
fn copy_segments(from: &Path, to: &Path) -> usize {
    std::fs::create_dir_all(to).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "init.mp4" || (name.starts_with("segment_") && name.ends_with(".m4s")) {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
            n += 1;
        }
    }
    n
}

/// Item 4: `rtmpd merge` said "1 damaged segments" without naming it. Each damaged segment is
/// now named with what was wrong: on stderr by `rtmpd merge`, and in the server's log when the
/// crash repair merges a folder at start.
#[test]
fn issue24_item4_the_merge_names_each_damaged_segment_and_what_was_wrong() {
    let data = TempDir::new("issue24-damaged");
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), data.path().display().to_string()])
        .args(["--mp4-fragment", "1", "--no-hls", "--no-flv-record"])
        .no_web()
        .start();
    let fast = PublishOpts {
        speed: 0.0,
        ..PublishOpts::default()
    };
    RustPublisher::start(server.rtmp, "live", "whole", "fixture.flv", fast)
        .unwrap()
        .join()
        .unwrap();
    let done = server.wait_for_log_where(
        |l| l.contains("/mp4/live/whole (") && l.contains("finished"),
        FINALISE,
    );
    assert!(done.is_some(), "the fMP4 recording did not finish");
    server.assert_running();
    drop(server);
    let merged = data.join("mp4/live/whole/output_merge");

    // A crash's leftovers: segment_2 cut short, segment_3 a bare moof header, segment_9 junk
    // with a box of 2^64 - 1 bytes; no stream_full.mp4 yet.
    let crashed = data.join("mp4/live/crashed/output_merge");
    assert!(
        copy_segments(&merged, &crashed) > 4,
        "too few segments to damage"
    );
    let seg = |n: u32| crashed.join(format!("segment_{n}.m4s"));
    let len = std::fs::metadata(seg(2)).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(seg(2))
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    std::fs::write(seg(3), b"\0\0\0\x03moof").unwrap();
    let mut junk = 1u32.to_be_bytes().to_vec();
    junk.extend_from_slice(b"mdat");
    junk.extend_from_slice(&u64::MAX.to_be_bytes());
    std::fs::write(seg(9), junk).unwrap();
    let wants = [
        (2, "damaged segment (cut short: the 'mdat' box at byte "),
        (3, "damaged segment (no valid box header at byte 0)"),
        (9, "damaged segment (cut short: the 'mdat' box at byte 0 announces 18446744073709551615 bytes"),
    ];

    // `rtmpd merge` on a copy: one warning per damaged segment on stderr, the summary names them.
    let copy = data.join("merge-copy");
    copy_segments(&crashed, &copy);
    let mut c = Command::new(binary());
    c.arg("merge").arg(&copy);
    let (out, err) = run_ok(c, "rtmpd merge");
    eprintln!("rtmpd merge stderr:\n{err}stdout: {out}");
    for (n, want) in wants {
        let name = copy.join(format!("segment_{n}.m4s")).display().to_string();
        assert!(
            err.lines().any(|l| l.starts_with("rtmpd merge: warning: ")
                && l.contains(&name)
                && l.contains(want)),
            "stderr does not name segment_{n} with '{want}':\n{err}"
        );
    }
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("damaged segment"))
            .count(),
        3,
        "{err}"
    );
    assert!(
        out.contains("3 damaged segments (segment_2.m4s, segment_3.m4s, segment_9.m4s)"),
        "{out}"
    );

    // The crash repair at start merges `crashed` and says the same in the server's log.
    let server = Server::builder()
        .args(["--data-dir".to_string(), data.path().display().to_string()])
        .no_web()
        .start();
    let rebuilt = server.wait_for_log_where(
        |l| l.contains("mp4: rebuilt") && l.contains("crashed"),
        FINALISE,
    );
    let rebuilt = rebuilt.expect("the crash repair did not rebuild the crashed session");
    assert!(
        rebuilt.contains("segment_2.m4s, segment_3.m4s, segment_9.m4s"),
        "{rebuilt}"
    );
    for (n, want) in wants {
        let name = seg(n).display().to_string();
        let line = server
            .logs()
            .into_iter()
            .find(|l| l.contains(&name) && l.contains(want));
        let line = line.unwrap_or_else(|| panic!("no log line names segment_{n} with '{want}'"));
        assert!(line.contains("WARN"), "{line}");
    }
    assert!(crashed.join("stream_full.mp4").is_file());
}

/// A folder of stand-ins for `tools/test-setup.sh`: every tool it checks answers (exit 0), `id -u`
/// prints `uid`, and `apt-get` appends its arguments to `apt.log` in the folder. The real
/// `bash`, `sh`, `dirname`, `head` and `tail` are linked in. `missing` tools are left out.
#[cfg(unix)]
fn setup_stubs(dir: &Path, uid: u32, missing: &[&str]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for real in ["bash", "sh", "dirname", "head", "tail"] {
        let found = std::env::split_paths(&path)
            .map(|d| d.join(real))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{real} not on PATH"));
        std::os::unix::fs::symlink(found, bin.join(real)).unwrap();
    }
    let log = dir.join("apt.log");
    let mut stubs: Vec<(String, String)> = [
        "ffmpeg",
        "ffprobe",
        "node",
        "npm",
        "openssl",
        "python3",
        "prlimit",
        "chromium",
        "ffmpeg9",
        "srt-live-transmit",
        "ip",
    ]
    .iter()
    .filter(|t| !missing.contains(t))
    .map(|t| (t.to_string(), "exit 0".to_string()))
    .collect();
    stubs.push(("id".into(), format!("echo {uid}")));
    stubs.push((
        "apt-get".into(),
        format!("echo \"$*\" >> '{}'", log.display()),
    ));
    for (name, body) in stubs {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Runs `tools/test-setup.sh` of this checkout with only `bin` on PATH: (exit code, stdout,
/// stderr, what apt-get was asked).
#[cfg(unix)]
fn run_setup(dir: &Path, bin: &Path) -> (Option<i32>, String, String, String) {
    let mut c = Command::new(bin.join("bash"));
    c.arg(root().join("tools/test-setup.sh"))
        .env_clear()
        .env("PATH", bin)
        .env("CHROMIUM", bin.join("chromium"))
        .env("RTMPD_FFMPEG9", bin.join("ffmpeg9"));
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(TOOL);
    let apt = std::fs::read_to_string(dir.join("apt.log")).unwrap_or_default();
    (status.code(), p.stdout(), p.stderr(), apt)
}

/// Item 8: `make test` on a fresh machine skipped what it could have fetched (FFmpeg 9, so the
/// HEVC browser check and the codec table) and, without FFmpeg or Chromium, most end-to-end
/// tests. `make test` now runs `tools/test-setup.sh` first, which `.ci/run` reuses: on Debian as
/// root it installs what is missing (and runs no apt-get when nothing is), elsewhere it stops
/// with the one command that does; FFmpeg 9's path is exported to the run, and the FFmpeg 9
/// codec checks are part of `make test`. The script is run here against stand-in tools.
#[cfg(unix)]
#[test]
fn issue24_item8_make_test_does_its_own_set_up() {
    let debian = Path::new("/etc/debian_version").is_file();
    // Everything there: no apt-get at all, FFmpeg 9's path on stdout, quickly.
    let dir = TempDir::new("issue24-setup-all");
    let bin = setup_stubs(dir.path(), 0, &[]);
    let t0 = std::time::Instant::now();
    let (code, out, err, apt) = run_setup(dir.path(), &bin);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(apt, "", "apt-get was run with everything there");
    assert_eq!(out.trim(), bin.join("ffmpeg9").display().to_string());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // FFmpeg and Chromium missing, as root on Debian: one update, one install of both packages.
    let dir = TempDir::new("issue24-setup-root");
    let bin = setup_stubs(dir.path(), 0, &["ffmpeg", "ffprobe", "chromium"]);
    let (code, _, err, apt) = run_setup(dir.path(), &bin);
    if debian {
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(apt, "update -qq\ninstall -y -qq ffmpeg chromium\n", "{err}");
    } else {
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("missing: ffmpeg chromium"), "{err}");
    }

    // Not root: nothing installed, and the one command that does it.
    let dir = TempDir::new("issue24-setup-user");
    let bin = setup_stubs(dir.path(), 1000, &["ffmpeg", "ffprobe", "node"]);
    let (code, out, err, apt) = run_setup(dir.path(), &bin);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!((out.as_str(), apt.as_str()), ("", ""), "{err}");
    assert!(
        err.contains("sudo apt-get install -y ffmpeg nodejs"),
        "{err}"
    );

    // make test runs the set-up first, hands FFmpeg 9 to the run and runs its checks; .ci/run
    // reuses the set-up and no longer runs those checks a second time.
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let recipe: Vec<&str> = makefile
        .split("\ntest:\n")
        .nth(1)
        .expect("a test: target")
        .lines()
        .take_while(|l| l.starts_with('\t'))
        .collect();
    let recipe = recipe.join("\n");
    let order = [
        "bash tools/test-setup.sh",
        "export RTMPD_FFMPEG9=",
        "test --all-targets",
        "test --lib -- --ignored ffmpeg9",
        "test --test tests -- --ignored ffmpeg9",
        "bash tools/browser-test.sh",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|s| {
            recipe
                .find(s)
                .unwrap_or_else(|| panic!("make test lacks {s}:\n{recipe}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{recipe}"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("bash tools/test-setup.sh --ci"), "{ci}");
    assert!(
        !ci.contains("--ignored ffmpeg9"),
        ".ci/run runs the FFmpeg 9 checks twice"
    );
    assert!(
        !ci.contains("apt-get"),
        ".ci/run keeps a package list of its own"
    );
}
