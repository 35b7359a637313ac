//! The static file service against the real binary (issue 5): `rtmpd file-gateway` on port 0 and
//! the origin's web and HTTP ports. Keep-alive and pipelining byte for byte, HEAD, Range, 304,
//! a 1 GB sparse download with bounded RSS, a stalled reader beside quick requests, traversal
//! spellings, 400/405/431, the header timeout, FFmpeg playing MP4 and HLS through the gateway,
//! gateways side by side, the embedded home page and the data dir on both origin ports, the access
//! log, a pipelined flood that must not pile answers up in memory, and a download slower than the
//! 30 s keep-alive timeout that must still complete.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

const T: Duration = Duration::from_secs(10);

fn get_req(path: &str, extra: &[&str]) -> Vec<u8> {
    request_bytes("GET", path, 1, extra)
}

fn connect(addr: SocketAddr) -> PipeReader {
    PipeReader::new(raw_connect(addr))
}

/// One request on its own connection, read with the pipelining reader (Content-Length framing).
fn fetch(addr: SocketAddr, method: &str, path: &str, extra: &[&str]) -> Reply {
    let mut c = connect(addr);
    c.send(&request_bytes(method, path, 1, extra));
    c.next(method == "HEAD", T)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

#[test]
fn pipelined_requests_on_one_keep_alive_connection_are_answered_in_order() {
    let root = TempRoot::new("pipe");
    let page = b"<!DOCTYPE html><title>a</title>hello".to_vec();
    let big = pattern_bytes(200_000);
    root.write("a.html", &page);
    root.write("dir/b.bin", &big);
    root.write("c.txt", b"see");
    let gw = Gateway::start(&root.path, &[]);

    let mut c = connect(gw.addr);
    // Everything in one write: the server must answer each in turn, bodies exactly as long as said.
    let mut batch = Vec::new();
    batch.extend(get_req("/a.html", &[]));
    batch.extend(request_bytes("HEAD", "/dir/b.bin", 1, &[]));
    batch.extend(get_req("/dir/b.bin", &["Range: bytes=1000-1999"]));
    batch.extend(get_req("/missing.txt", &[]));
    batch.extend(get_req("/dir/b.bin", &[]));
    batch.extend(get_req("/c.txt", &[]));
    c.send(&batch);

    let r = c.next(false, T).expect("1: GET /a.html");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, page);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let r = c.next(true, T).expect("2: HEAD /dir/b.bin");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some("200000"));
    // A HEAD answer with a body would show up here as garbage in front of the next head.
    let r = c.next(false, T).expect("3: ranged GET");
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(r.body, &big[1000..2000]);
    let r = c.next(false, T).expect("4: GET /missing.txt");
    assert_eq!(r.status, 404, "{}", r.head);
    let r = c.next(false, T).expect("5: GET /dir/b.bin");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body == big, "5: body differs from the file");
    let r = c.next(false, T).expect("6: GET /c.txt");
    assert_eq!(r.body, b"see");
    assert!(c.pending().is_empty(), "bytes after the last answer");

    // Fifty small ones in one write, then Connection: close ends the conversation.
    let mut batch = Vec::new();
    for i in 0..50 {
        let path = if i % 2 == 0 { "/c.txt" } else { "/a.html" };
        batch.extend(get_req(path, &[]));
    }
    batch.extend(get_req("/c.txt", &["Connection: close"]));
    c.send(&batch);
    for i in 0..50 {
        let r = c
            .next(false, T)
            .unwrap_or_else(|e| panic!("pipelined #{i}: {e}"));
        let want: &[u8] = if i % 2 == 0 { b"see" } else { &page };
        assert_eq!(r.body, want, "pipelined #{i}");
    }
    let r = c.next(false, T).expect("the last one");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, b"see");
    assert!(
        c.closed_within(T),
        "the server kept the connection after Connection: close"
    );

    // HTTP/1.0 without keep-alive closes too.
    let mut c = connect(gw.addr);
    c.send(&request_bytes("GET", "/c.txt", 0, &[]));
    let r = c.next(false, T).expect("HTTP/1.0");
    assert_eq!(r.body, b"see");
    assert!(c.closed_within(T), "HTTP/1.0 connection left open");
}

#[test]
fn head_has_no_body_but_the_get_content_length() {
    let root = TempRoot::new("head");
    let data = pattern_bytes(12_345);
    root.write("x.mp4", &data);
    let gw = Gateway::start(&root.path, &[]);
    let mut c = connect(gw.addr);
    c.send(&request_bytes("HEAD", "/x.mp4", 1, &[]));
    let head = c.next(true, T).expect("HEAD");
    // Nothing may follow the head: wait a moment and look.
    std::thread::sleep(Duration::from_millis(300));
    c.sock.set_nonblocking(true).unwrap();
    let mut extra = [0u8; 16];
    let stray = c.sock.read(&mut extra).unwrap_or(0);
    c.sock.set_nonblocking(false).unwrap();
    assert_eq!(stray, 0, "HEAD answer carried body bytes");
    c.send(&get_req("/x.mp4", &[]));
    let get = c.next(false, T).expect("GET");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("12345"));
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(head.header("etag"), get.header("etag"));
    assert_eq!(head.header("content-type"), Some("video/mp4"));
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(get.body, data);
}

#[test]
fn range_requests_answer_byte_exact_slices() {
    let root = TempRoot::new("range");
    let data = pattern_bytes(10_000);
    root.write("seg.ts", &data);
    let gw = Gateway::start(&root.path, &[]);
    let mut c = connect(gw.addr);
    let mut ask = |range: &str| -> Reply {
        c.send(&get_req("/seg.ts", &[&format!("Range: {range}")]));
        c.next(false, T).unwrap_or_else(|e| panic!("{range}: {e}"))
    };
    for (range, start, end) in [
        ("bytes=0-", 0, 9999),
        ("bytes=-500", 9500, 9999),
        ("bytes=100-199", 100, 199),
        ("bytes=9990-20000", 9990, 9999),
        ("bytes=0-0", 0, 0),
        ("bytes=-20000", 0, 9999),
    ] {
        let r = ask(range);
        assert_eq!(r.status, 206, "{range}: {}", r.head);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/10000").as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start + 1).to_string().as_str()),
            "{range}"
        );
        assert!(r.body == data[start..=end], "{range}: wrong bytes");
    }
    for range in ["bytes=10000-", "bytes=20000-20010"] {
        let r = ask(range);
        assert_eq!(r.status, 416, "{range}: {}", r.head);
        assert_eq!(r.header("content-range"), Some("bytes */10000"), "{range}");
    }
    // Multi-range and inverted ranges fall back to the whole file.
    for range in ["bytes=0-1,5-6", "bytes=100-50", "items=0-5"] {
        let r = ask(range);
        assert_eq!(r.status, 200, "{range}: {}", r.head);
        assert!(r.body == data, "{range}: not the whole file");
    }
    // HEAD with a Range: the 206 head, no body.
    c.send(&request_bytes(
        "HEAD",
        "/seg.ts",
        1,
        &["Range: bytes=100-199"],
    ));
    let r = c.next(true, T).expect("HEAD + Range");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length"), Some("100"));
    c.send(&get_req("/seg.ts", &["Range: bytes=0-9"]));
    let r = c.next(false, T).expect("after HEAD + Range");
    assert_eq!(r.body, &data[..10], "the HEAD answer left bytes behind");
}

#[test]
fn repeated_etag_and_if_modified_since_get_304() {
    let root = TempRoot::new("cond");
    root.write("index.m3u8", b"#EXTM3U\n#EXT-X-VERSION:3\n");
    let gw = Gateway::start(&root.path, &[]);
    let first = fetch(gw.addr, "GET", "/index.m3u8", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let etag = first.header("etag").expect("ETag").to_string();
    let lm = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();

    let inm = format!("If-None-Match: {etag}");
    let ims = format!("If-Modified-Since: {lm}");
    let r = fetch(gw.addr, "GET", "/index.m3u8", &[&inm]);
    assert_eq!(r.status, 304, "{}", r.head);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.header("content-length").is_none() || r.header("content-length") == Some("0"));
    let r = fetch(gw.addr, "GET", "/index.m3u8", &[&ims]);
    assert_eq!(r.status, 304, "If-Modified-Since: {}", r.head);
    let r = fetch(
        gw.addr,
        "GET",
        "/index.m3u8",
        &["If-None-Match: W/\"nope\", \"other\""],
    );
    assert_eq!(r.status, 200, "a different ETag");
    let r = fetch(
        gw.addr,
        "GET",
        "/index.m3u8",
        &["If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT"],
    );
    assert_eq!(r.status, 200, "an older date");
    // If-None-Match decides alone when both are present.
    let r = fetch(
        gw.addr,
        "GET",
        "/index.m3u8",
        &["If-None-Match: \"x\"", &ims],
    );
    assert_eq!(r.status, 200, "If-None-Match mismatch with a matching date");

    // The playlist grows: the old ETag no longer matches.
    std::thread::sleep(Duration::from_millis(20));
    root.write(
        "index.m3u8",
        b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:1.0,\nsegment_1.ts\n",
    );
    let r = fetch(gw.addr, "GET", "/index.m3u8", &[&inm]);
    assert_eq!(r.status, 200, "stale ETag after a change: {}", r.head);
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.ends_with(b"segment_1.ts\n"));
}

/// Sends GET `path` and counts the body without keeping it; returns (status, body bytes).
fn download_count(addr: SocketAddr, path: &str, timeout: Duration) -> (u16, u64, u64) {
    let mut s = raw_connect(addr);
    s.write_all(&get_req(path, &[])).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let (status, len, mut got) = loop {
        let n = s.read(&mut buf).expect("reading the head");
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..i]).to_string();
            let status: u16 = text[9..12].parse().unwrap();
            let len: u64 = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("Content-Length");
            break (status, len, (head.len() - i - 4) as u64);
        }
    };
    let mut nonzero = 0u64;
    while got < len {
        assert!(
            Instant::now() < deadline,
            "download too slow: {got} of {len}"
        );
        let n = s.read(&mut buf).expect("reading the body");
        if n == 0 {
            break;
        }
        // A sparse file reads as zeros; check a few bytes per read, not all (debug build).
        nonzero += buf[..n].iter().step_by(4096).filter(|&&b| b != 0).count() as u64;
        got += n as u64;
    }
    assert_eq!(nonzero, 0, "non-zero bytes in a sparse file");
    (status, len, got)
}

#[test]
fn one_gigabyte_sparse_file_downloads_with_bounded_rss_and_others_stay_quick() {
    let root = TempRoot::new("sparse");
    const SIZE: u64 = 1 << 30;
    let f = std::fs::File::create(root.join("big.mp4")).unwrap();
    f.set_len(SIZE).unwrap();
    drop(f);
    root.write("small.txt", b"small");
    let gw = Gateway::start(&root.path, &[]);
    // Warm up (first request, log setup) before taking the baseline.
    assert_eq!(fetch(gw.addr, "GET", "/small.txt", &[]).body, b"small");
    let before = proc_status_kb(gw.pid(), "VmHWM");

    let addr = gw.addr;
    let dl = std::thread::spawn(move || download_count(addr, "/big.mp4", Duration::from_secs(180)));
    // While the gigabyte streams, small requests keep being answered promptly: one big download
    // must not hold the loop.
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while !dl.is_finished() && probes < 200 {
        let t = Instant::now();
        let r = fetch(gw.addr, "GET", "/small.txt", &[]);
        assert_eq!(r.body, b"small");
        worst = worst.max(t.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, len, got) = dl.join().expect("download thread");
    let after = proc_status_kb(gw.pid(), "VmHWM");
    assert_eq!(status, 200);
    assert_eq!(len, SIZE);
    assert_eq!(got, SIZE, "incomplete download");
    let growth_kb = after.saturating_sub(before);
    eprintln!("1 GB download: VmHWM {before} kB -> {after} kB; {probes} probes, worst {worst:?}");
    assert!(
        growth_kb < 32 * 1024,
        "server peak RSS grew by {growth_kb} kB serving 1 GB ({before} -> {after} kB)"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a small request took {worst:?} during the big download"
    );
}

#[test]
#[cfg(unix)] // SO_RCVBUF is set through libc on unix only
fn a_stalled_reader_does_not_slow_other_clients() {
    let root = TempRoot::new("stall");
    let f = std::fs::File::create(root.join("movie.mp4")).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    root.write("index.html", b"<p>hi</p>");
    let gw = Gateway::start(&root.path, &[]);
    // The stalled client: a tiny receive buffer and almost no reading.
    let mut slow = raw_connect_small_rcvbuf(gw.addr, 4096);
    slow.write_all(&get_req("/movie.mp4", &[])).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut slow_got = 0usize;
    let mut tiny = [0u8; 1024];
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    let mut next_read = start;
    while start.elapsed() < Duration::from_secs(3) {
        // One KiB every 100 ms: the server's socket stays full, the download stuck.
        if Instant::now() >= next_read {
            if let Ok(k) = slow.read(&mut tiny) {
                slow_got += k;
            }
            next_read += Duration::from_millis(100);
        }
        let t = Instant::now();
        let r = fetch(gw.addr, "GET", "/", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"<p>hi</p>");
        worst = worst.max(t.elapsed());
        n += 1;
    }
    eprintln!(
        "stalled reader: {n} small requests, worst {worst:?}, slow client got {slow_got} bytes"
    );
    assert!(n >= 10, "only {n} small requests in 3 s");
    assert!(
        worst < Duration::from_secs(1),
        "a small request took {worst:?} beside a stalled reader"
    );
    assert!(slow_got < 1 << 20, "the stalled reader was not stalled");
}

#[test]
fn traversal_spellings_are_403_end_to_end() {
    let outer = TempRoot::new("trav");
    std::fs::create_dir_all(outer.join("root/sub")).unwrap();
    outer.write("secret.txt", b"TOP SECRET");
    outer.write("root/a.txt", b"inside");
    outer.write("root/sub/b.txt", b"deeper");
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(outer.join("secret.txt"), outer.join("root/lfile")).unwrap();
        symlink(&outer.path, outer.join("root/ldir")).unwrap();
        symlink("../secret.txt", outer.join("root/lrel")).unwrap();
        symlink("sub/b.txt", outer.join("root/lin")).unwrap();
    }
    let gw = Gateway::start(&outer.join("root"), &[]);
    for ok in [
        "/a.txt",
        "/sub/b.txt",
        "/./sub/./b.txt",
        "/lin",
        "/a.txt?x=../../secret.txt",
    ] {
        let r = fetch(gw.addr, "GET", ok, &[]);
        assert_eq!(r.status, 200, "{ok}: {}", r.head);
    }
    let mut bad = vec![
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/%2F..%2Fsecret.txt",
        "/..%5csecret.txt",
        "/sub%5C..%5C..%5Csecret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/sub/%252E%252E%255C%252E%252E%255Csecret.txt",
        "/a.txt%00",
        "/a.txt%00.html",
        "/%00/../secret.txt",
        "//etc/passwd",
        "/C:/Windows/win.ini",
        "/c:%5cwindows%5cwin.ini",
    ];
    if cfg!(unix) {
        bad.extend(["/lfile", "/ldir/secret.txt", "/lrel"]);
    }
    let mut wrong = Vec::new();
    for path in &bad {
        let r = fetch(gw.addr, "GET", path, &[]);
        if r.status != 403 || r.body.windows(6).any(|w| w == b"SECRET") {
            wrong.push(format!("{path} -> {}", r.head.lines().next().unwrap_or("")));
        }
    }
    // Raw backslashes: a request target the parser may refuse (400) or the path check (403).
    for path in ["/..\\secret.txt", "/sub\\..\\..\\secret.txt"] {
        let r = fetch(gw.addr, "GET", path, &[]);
        if !matches!(r.status, 400 | 403) {
            wrong.push(format!("{path} -> {}", r.head.lines().next().unwrap_or("")));
        }
    }
    // A raw NUL in the request line is malformed HTTP; either way nothing is served.
    let r = http_exchange(
        gw.addr,
        b"GET /a.txt\0 HTTP/1.1\r\nHost: x\r\n\r\n",
        T,
        false,
    )
    .expect("raw NUL");
    if !matches!(r.status, 400 | 403) {
        wrong.push(format!("raw NUL -> {}", r.status));
    }
    assert!(
        wrong.is_empty(),
        "not refused with 403:\n{}",
        wrong.join("\n")
    );
    // Each refusal is logged on one line.
    assert!(
        gw.wait_for_stderr("403 /%2e%2e/secret.txt", T).is_some(),
        "no refusal line; stderr:\n{}",
        gw.stderr()
    );
}

#[test]
fn post_is_405_huge_head_431_garbage_400() {
    let root = TempRoot::new("bad");
    root.write("a.txt", b"a");
    let gw = Gateway::start(&root.path, &[]);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = fetch(gw.addr, method, "/a.txt", &["Content-Length: 0"]);
        assert_eq!(r.status, 405, "{method}: {}", r.head);
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{method}");
    }
    let r = fetch(gw.addr, "OPTIONS", "/a.txt", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    let mut big = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let r = http_exchange(gw.addr, &big, T, false).expect("huge head");
    assert_eq!(r.status, 431);
    let mut one_long = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    one_long.extend(std::iter::repeat_n(b'z', 20_000));
    one_long.extend_from_slice(b"\r\n\r\n");
    let r = http_exchange(gw.addr, &one_long, T, false).expect("one long header");
    assert_eq!(r.status, 431);
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /a.txt HTTP/9.9\r\n\r\n",
    ] {
        let r = http_exchange(gw.addr, garbage, T, false).expect("garbage");
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(garbage));
    }
    // Still serving.
    assert_eq!(fetch(gw.addr, "GET", "/a.txt", &[]).body, b"a");
}

#[test]
fn an_unfinished_request_head_times_out() {
    let root = TempRoot::new("slowloris");
    let gw = Gateway::start(&root.path, &[]);
    let mut s = raw_connect(gw.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The header timeout is 10 s (swept once a second).
    assert!(
        closed_within(&mut s, Duration::from_secs(20)),
        "a half-sent head kept its connection"
    );
}

/// Makes `hls/index.m3u8` + segments and `mp4/movie.mp4` (moov at the end, so playing it needs a
/// Range request) with FFmpeg in `dir`.
fn make_media(dir: &TempRoot) {
    std::fs::create_dir_all(dir.join("hls")).unwrap();
    std::fs::create_dir_all(dir.join("mp4")).unwrap();
    let src = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
    ];
    let hls = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(src)
        .args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "0"])
        .arg("-hls_segment_filename")
        .arg(dir.join("hls/segment_%d.ts"))
        .arg(dir.join("hls/index.m3u8"))
        .output()
        .expect("ffmpeg (hls)");
    assert!(
        hls.status.success(),
        "{}",
        String::from_utf8_lossy(&hls.stderr)
    );
    let mp4 = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(src)
        .arg(dir.join("mp4/movie.mp4"))
        .output()
        .expect("ffmpeg (mp4)");
    assert!(
        mp4.status.success(),
        "{}",
        String::from_utf8_lossy(&mp4.stderr)
    );
}

fn ffmpeg_plays(url: &str) {
    let mut p = Proc::spawn({
        let mut c = Command::new("ffmpeg");
        c.args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            url,
            "-f",
            "null",
            "-",
        ]);
        c
    });
    let status = p.wait_or_panic(Duration::from_secs(60));
    assert!(
        status.success(),
        "ffmpeg on {url}: {status}; {}",
        p.stderr()
    );
    assert_eq!(p.stderr().trim(), "", "ffmpeg complained on {url}");
}

#[test]
fn ffmpeg_plays_an_mp4_and_an_hls_playlist_through_the_gateway() {
    if !require_tool("ffmpeg") {
        return;
    }
    let root = TempRoot::new("media");
    make_media(&root);
    let gw = Gateway::start(&root.path, &[]);
    ffmpeg_plays(&format!("http://{}/hls/index.m3u8", gw.addr));
    ffmpeg_plays(&format!("http://{}/mp4/movie.mp4", gw.addr));
    // The moov atom is at the end: FFmpeg had to seek with Range, and got 206s.
    assert!(
        gw.wait_for_stderr("\"GET /mp4/movie.mp4 HTTP/1.1\" 206", T)
            .is_some(),
        "no 206 for the MP4; stderr:\n{}",
        gw.stderr()
    );
    let seg = fetch(gw.addr, "HEAD", "/hls/segment_1.ts", &[]);
    assert_eq!(seg.header("content-type"), Some("video/mp2t"));
    assert_eq!(seg.header("cache-control"), Some("public, max-age=60"));
}

#[test]
fn several_gateways_run_side_by_side() {
    let roots: Vec<TempRoot> = (0..3).map(|_| TempRoot::new("side")).collect();
    for (i, r) in roots.iter().enumerate() {
        r.write("who.txt", format!("gateway {i}").as_bytes());
    }
    let gws: Vec<Gateway> = roots.iter().map(|r| Gateway::start(&r.path, &[])).collect();
    let mut ports: Vec<u16> = gws.iter().map(|g| g.addr.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "ports {ports:?}");
    for (i, (g, r)) in gws.iter().zip(&roots).enumerate() {
        // A gateway is files only: no API.
        assert_eq!(fetch(g.addr, "GET", "/api/streams", &[]).status, 404);
        let resp = fetch(g.addr, "GET", "/who.txt", &[]);
        assert_eq!(resp.body_text(), format!("gateway {i}"));
        let canon = std::fs::canonicalize(&r.path).unwrap();
        assert!(
            g.wait_for_stderr(&format!("file gateway root {}", canon.display()), T)
                .is_some(),
            "gateway {i} did not print its root; stderr:\n{}",
            g.stderr()
        );
    }
}

#[test]
fn origin_serves_the_home_page_and_the_data_dir_on_both_ports() {
    let mut server = Server::start();
    let web = server.web.expect("the origin has a web port");
    let home = fetch(web, "GET", "/", &[]);
    assert_eq!(home.status, 200, "{}", home.head);
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8_lossy(&home.body).to_string();
    assert!(
        page.contains("/api/streams"),
        "the home page does not list streams"
    );
    let on_http = fetch(server.http, "GET", "/", &[]);
    assert_eq!(on_http.status, 200);
    assert_eq!(on_http.body, home.body);

    let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n".to_vec();
    let seg = pattern_bytes(50_000);
    let dir = server.data_dir.join("hls/live/s");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.m3u8"), &playlist).unwrap();
    std::fs::write(dir.join("segment_1.ts"), &seg).unwrap();
    let mp4 = server.data_dir.join("mp4/live/s/20260101_000000");
    std::fs::create_dir_all(&mp4).unwrap();
    std::fs::write(mp4.join("stream_full.mp4"), &seg[..1000]).unwrap();
    for addr in [web, server.http] {
        let r = fetch(addr, "GET", "/hls/live/s/index.m3u8", &[]);
        assert_eq!(r.status, 200, "{addr}: {}", r.head);
        assert_eq!(r.body, playlist);
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        let r = fetch(
            addr,
            "GET",
            "/hls/live/s/segment_1.ts",
            &["Range: bytes=-100"],
        );
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &seg[seg.len() - 100..]);
        let r = fetch(
            addr,
            "GET",
            "/mp4/live/s/20260101_000000/stream_full.mp4",
            &[],
        );
        assert_eq!(r.body, &seg[..1000]);
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(
            fetch(addr, "GET", "/hls/%2e%2e/%2e%2e/etc/passwd", &[]).status,
            403
        );
        assert_eq!(fetch(addr, "GET", "/etc/passwd", &[]).status, 404);
        assert_eq!(fetch(addr, "POST", "/", &["Content-Length: 0"]).status, 405);
    }
    // The home page reads /api/streams from wherever it was loaded: both ports answer it.
    for addr in [web, server.http] {
        let r = fetch(addr, "GET", "/api/streams", &[]);
        assert_eq!(r.status, 200, "{addr}: {}", r.head);
    }
    server.assert_running();
}

#[test]
fn origin_web_dir_and_no_web() {
    let pages = TempRoot::new("webdir");
    pages.write("index.html", b"<h1>custom</h1>");
    let server = Server::start_args(&["--web-dir", pages.path.to_str().unwrap()]);
    let web = server.web.expect("web port");
    assert_eq!(fetch(web, "GET", "/", &[]).body, b"<h1>custom</h1>");
    drop(server);
    let server = Server::builder().no_web().start();
    assert!(server.web.is_none());
    assert!(!server.log_contains("Web listening on"));
}

fn assert_clf(line: &str, request: &str, status: u16, bytes: u64) {
    // 127.0.0.1 - - [24/Nov/2026:01:02:03 +0000] "GET /x HTTP/1.1" 200 1234 0.8ms
    let at = line
        .find("127.0.0.1 - - [")
        .unwrap_or_else(|| panic!("not CLF: {line}"));
    let rest = &line[at + "127.0.0.1 - - [".len()..];
    let (date, rest) = rest
        .split_once("] ")
        .unwrap_or_else(|| panic!("no date: {line}"));
    let b = date.as_bytes();
    assert!(
        date.len() == 26
            && b[2] == b'/'
            && b[6] == b'/'
            && b[11] == b':'
            && date.ends_with(" +0000"),
        "date {date:?} in {line}"
    );
    let want = format!("\"{request}\" {status} {bytes} ");
    assert!(rest.starts_with(&want), "{line}: expected {want}");
    let ms = rest[want.len()..]
        .strip_suffix("ms")
        .unwrap_or_else(|| panic!("no ms: {line}"));
    assert!(ms.parse::<f64>().is_ok(), "duration {ms:?} in {line}");
}

#[test]
fn access_log_lines_go_to_stderr_or_the_access_log_file() {
    let root = TempRoot::new("alog");
    root.write("a.txt", b"abcdef");
    let gw = Gateway::start(&root.path, &[]);
    fetch(gw.addr, "GET", "/a.txt?token=s3cret&x=1", &[]);
    fetch(gw.addr, "GET", "/nope", &[]);
    fetch(gw.addr, "HEAD", "/a.txt", &[]);
    let line = gw
        .wait_for_stderr("\"GET /a.txt?", T)
        .unwrap_or_else(|| panic!("no access line; stderr:\n{}", gw.stderr()));
    assert_clf(&line, "GET /a.txt?token=***&x=1 HTTP/1.1", 200, 6);
    assert!(!gw.stderr().contains("s3cret"), "a token reached the log");
    let line = gw.wait_for_stderr("\"GET /nope", T).expect("404 line");
    assert_clf(&line, "GET /nope HTTP/1.1", 404, 14);
    // Issue 15 point 6: a 404 is logged once (its access line), at the default log level.
    let nope = gw.stderr().lines().filter(|l| l.contains("/nope")).count();
    assert_eq!(nope, 1, "{}", gw.stderr());
    let line = gw.wait_for_stderr("\"HEAD /a.txt", T).expect("HEAD line");
    assert_clf(&line, "HEAD /a.txt HTTP/1.1", 200, 0);

    let logdir = TempRoot::new("alogfile");
    let file = logdir.join("access.log");
    let gw = Gateway::start(&root.path, &["--access-log", file.to_str().unwrap()]);
    fetch(gw.addr, "GET", "/a.txt", &[]);
    let r = fetch(gw.addr, "GET", "/a.txt", &["Range: bytes=1-2"]);
    assert_eq!(r.body, b"bc");
    // The file is flushed at least once a second.
    let deadline = Instant::now() + T;
    let text = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "access log file:\n{text}");
    assert_clf(lines[0], "GET /a.txt HTTP/1.1", 200, 6);
    assert_clf(lines[1], "GET /a.txt HTTP/1.1", 206, 2);
    assert!(
        !gw.stderr().contains("\"GET /a.txt"),
        "access lines on stderr despite --access-log"
    );
}

#[test]
#[cfg(unix)] // SO_RCVBUF is set through libc on unix only
fn a_pipelined_flood_is_answered_in_full_without_piling_up_answers_in_memory() {
    let root = TempRoot::new("flood");
    let data = pattern_bytes(60_000);
    root.write("a", &data);
    let gw = Gateway::start(&root.path, &[]);
    assert_eq!(fetch(gw.addr, "GET", "/a", &[]).body, data);
    let before = proc_status_kb(gw.pid(), "VmHWM");
    // About 1,500 requests in 30 KB (under the pending-head limit), each answered with 60 KB: 90 MB
    // of answers if the server queued them all while the client is not reading.
    let one = b"GET /a HTTP/1.1\r\n\r\n";
    let n = 30_000 / one.len();
    let mut sock = raw_connect_small_rcvbuf(gw.addr, 4096);
    sock.write_all(&one.repeat(n)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let stalled = proc_status_kb(gw.pid(), "VmHWM");
    let mut c = PipeReader::new(sock);
    for i in 0..n {
        let r = c
            .next(false, T)
            .unwrap_or_else(|e| panic!("answer #{i} of {n}: {e}"));
        assert!(r.status == 200 && r.body == data, "answer #{i}: {}", r.head);
    }
    let after = proc_status_kb(gw.pid(), "VmHWM");
    eprintln!("pipelined flood of {n}: VmHWM {before} -> {stalled} (client stalled) -> {after} kB");
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "answers piled up: VmHWM {before} -> {stalled} -> {after} kB"
    );
}

#[test]
#[cfg(unix)] // SO_RCVBUF is set through libc on unix only
fn a_slow_download_outlives_the_keep_alive_timeout() {
    let root = TempRoot::new("longdl");
    // 32 MiB read at most 96 KiB per 100 ms (under 1 MB/s, so at least 34 s): past the 30 s idle
    // keep-alive timeout, which must not apply while an answer is still going out.
    const SIZE: u64 = 32 << 20;
    let f = std::fs::File::create(root.join("long.flv")).unwrap();
    f.set_len(SIZE).unwrap();
    drop(f);
    let gw = Gateway::start(&root.path, &[]);
    let mut s = raw_connect_small_rcvbuf(gw.addr, 64 * 1024);
    s.write_all(&get_req("/long.flv", &[])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 96 * 1024];
    let mut total = 0u64;
    let mut head_len = None;
    let mut raw_head = Vec::new();
    let mut next = Instant::now();
    while Instant::now() - start < Duration::from_secs(90) {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!("after {total} bytes and {:?}: {e}", start.elapsed()),
        };
        if head_len.is_none() {
            raw_head.extend_from_slice(&buf[..n]);
            if let Some(i) = raw_head.windows(4).position(|w| w == b"\r\n\r\n") {
                head_len = Some(i + 4);
                total = (raw_head.len() - i - 4) as u64;
            }
        } else {
            total += n as u64;
        }
        if total >= SIZE {
            break;
        }
        next += Duration::from_millis(100);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let took = start.elapsed();
    eprintln!("slow download: {total} bytes in {took:?}");
    assert_eq!(
        total,
        SIZE,
        "cut short after {took:?}; stderr:\n{}",
        gw.stderr()
    );
    assert!(
        took > Duration::from_secs(30),
        "not slow enough to test anything: {took:?}"
    );
}

/// Issue 13 hole 3: three requests pipelined on one connection produced one access-log line (the
/// last). One line per request, in order, on stderr and in the `--access-log` file; the middle one
/// is a streamed (not inlined) file body, the last one a 404.
#[test]
fn pipelined_requests_get_one_access_line_each() {
    let root = TempRoot::new("alogpipe");
    root.write("a.txt", b"abcdef");
    let big = pattern_bytes(200_000);
    root.write("big.bin", &big);
    let mut batch = get_req("/a.txt?token=s3cret", &[]);
    batch.extend(get_req("/big.bin", &[]));
    batch.extend(get_req("/nope", &[]));
    let expect = |lines: &[&str], what: &str| {
        assert_eq!(lines.len(), 3, "{what}: access lines {lines:#?}");
        assert_clf(lines[0], "GET /a.txt?token=*** HTTP/1.1", 200, 6);
        assert_clf(lines[1], "GET /big.bin HTTP/1.1", 200, big.len() as u64);
        assert_clf(lines[2], "GET /nope HTTP/1.1", 404, 14);
    };
    let send_batch = |addr: SocketAddr| {
        let mut c = connect(addr);
        c.send(&batch);
        assert_eq!(c.next(false, T).expect("1: /a.txt").body, b"abcdef");
        assert!(c.next(false, T).expect("2: /big.bin").body == big);
        assert_eq!(c.next(false, T).expect("3: /nope").status, 404);
    };

    let gw = Gateway::start(&root.path, &[]);
    send_batch(gw.addr);
    gw.wait_for_stderr("\"GET /nope", T)
        .unwrap_or_else(|| panic!("no line for the third request; stderr:\n{}", gw.stderr()));
    let stderr = gw.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("127.0.0.1 - - ["))
        .collect();
    expect(&lines, "stderr");

    let logdir = TempRoot::new("alogpipefile");
    let file = logdir.join("access.log");
    let gw = Gateway::start(&root.path, &["--access-log", file.to_str().unwrap()]);
    send_batch(gw.addr);
    // The file is flushed at least once a second.
    let deadline = Instant::now() + T;
    let text = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().count() >= 3 || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Give a wrong extra line the time to show up too.
    std::thread::sleep(Duration::from_millis(1100));
    let text = std::fs::read_to_string(&file).unwrap_or(text);
    expect(&text.lines().collect::<Vec<_>>(), "--access-log file");
}
