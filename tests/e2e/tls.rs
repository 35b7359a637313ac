//! RTMPS and HTTPS (issue 16 point 1), with a self-signed certificate made by openssl for each
//! test: FFmpeg publishes over rtmps:// and plays rtmps:// and https://.../stream.flv (verifying
//! the certificate against its file); a rustls client reads HTTPS-FLV and WSS-FLV, and so does
//! Python's ssl (`tools/wsflv.py --cafile`: OpenSSL, verified) for WSS-FLV; plain RTMP,
//! plain HTTP, garbage, a half-finished handshake and idle TLS connections on the TLS ports leave
//! a live HTTPS viewer untouched; the certificate is re-read when its files change (a bad new
//! pair keeps the old one) while a connected viewer goes on.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::*;

struct TlsServer {
    server: Server,
    rtmps: SocketAddr,
    https: SocketAddr,
    cert: PathBuf,
    dir: TempDir,
}

/// An origin with both TLS listeners on port 0; None (skipped) without openssl.
fn start(extra: &[&str]) -> Option<TlsServer> {
    let dir = TempDir::new("tls");
    let (cert, key) = make_cert(dir.path(), "live")?;
    let server = Server::builder()
        .no_web()
        .args(["--rtmps-port", "0", "--https-port", "0"])
        .arg("--tls-cert")
        .arg(cert.display().to_string())
        .arg("--tls-key")
        .arg(key.display().to_string())
        .args(extra.iter().copied())
        .start();
    let (rtmps, https) = (server.listener("RTMPS"), server.listener("HTTPS"));
    Some(TlsServer {
        server,
        rtmps,
        https,
        cert,
        dir,
    })
}

/// FFmpeg reading `url` for `secs` with the certificate verified against our file.
fn ffmpeg_pull_verified(url: &str, ca: &std::path::Path, secs: u32) -> Proc {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-tls_verify", "1", "-ca_file"])
        .arg(ca)
        .args(["-i", url, "-t", &secs.to_string(), "-f", "null", "-"]);
    Proc::spawn(cmd)
}

fn assert_live_flv(body: &[u8], what: &str) -> (u32, u32) {
    let flv = parse_flv(body);
    flv.assert_valid(what, false);
    assert!(flv.has_video && flv.has_audio, "{what}: FLV header flags");
    assert_clean_start(&flv.frames, what);
    assert_monotonic(&flv.frames, what);
    let first = flv.frames.first().map_or(0, |f| f.dts);
    let last = flv.frames.last().map_or(0, |f| f.dts);
    (first, last)
}

#[test]
fn ffmpeg_publishes_over_rtmps_and_plays_rtmps_and_https() {
    if !ffmpeg_with_tls() {
        return;
    }
    let Some(t) = start(&[]) else { return };
    let name = unique_stream("tls");
    let mut publisher = ffmpeg_publish(
        "fixture.flv",
        &format!("rtmps://{}/live/{name}", t.rtmps),
        &[],
    );
    assert!(
        t.server
            .wait_for_log(
                &format!("live/{name}: publish from"),
                Duration::from_secs(15)
            )
            .is_some(),
        "the RTMPS publish never started; ffmpeg: {}",
        publisher.stderr()
    );
    let mut players = [
        ffmpeg_pull_verified(&format!("rtmps://{}/live/{name}", t.rtmps), &t.cert, 3),
        ffmpeg_pull_verified(&format!("https://{}/live/{name}.flv", t.https), &t.cert, 3),
    ];
    let https = t.https;
    let path = format!("/live/{name}.flv");
    // Python's ssl (OpenSSL) as a second WSS client, verifying the certificate and the address.
    let py_out = t.dir.path().join("python-wss.flv");
    let python = require_tool("python3").then(|| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/wsflv.py"))
            .arg("--cafile")
            .arg(&t.cert)
            .args(["127.0.0.1", &https.port().to_string(), &path, "3"])
            .arg(&py_out);
        Proc::spawn(cmd)
    });
    let p = path.clone();
    let ours = std::thread::spawn(move || {
        https_get_when_live(https, &p, Duration::from_secs(5), Duration::from_secs(3))
    });
    let wss = std::thread::spawn(move || wss_get_flv(https, &path, Duration::from_secs(3)));
    for p in &mut players {
        let status = p.wait_or_panic(Duration::from_secs(20));
        assert!(
            status.success() && p.stderr().trim().is_empty(),
            "{}: {status}, stderr: {}",
            p.name(),
            p.stderr()
        );
    }
    let r = ours.join().expect("HTTPS-FLV viewer");
    assert_eq!(r.status, 200, "HTTPS-FLV status; {:?}", r.body_text());
    assert_eq!(r.header("content-type"), Some("video/x-flv"));
    assert!(r.chunked, "HTTPS-FLV: chunked");
    assert_live_flv(&r.body, "HTTPS-FLV");
    let w = wss.join().expect("WSS-FLV viewer").expect("WSS upgrade");
    assert_eq!(w.text_messages, 0);
    assert_live_flv(&w.data, "WSS-FLV");
    if let Some(mut py) = python {
        let status = py.wait_or_panic(Duration::from_secs(20));
        assert!(
            status.success() && py.stdout().contains("certificate verified"),
            "python WSS client: {status}, stdout: {}, stderr: {}",
            py.stdout(),
            py.stderr()
        );
        assert_live_flv(&std::fs::read(&py_out).unwrap(), "WSS-FLV (Python's ssl)");
    }
    // Our own client saw the certificate from the file.
    let s = tls_connect(t.https).expect("TLS connect");
    assert_eq!(peer_cert(&s), cert_der(&t.cert), "the served certificate");
    publisher.kill();
}

#[test]
fn bad_input_on_the_tls_ports_leaves_a_live_stream_unaffected() {
    const IDLE: usize = 1000;
    let Some(t) = start(&["--max-per-ip", "2000"]) else {
        return;
    };
    let name = unique_stream("tlsbad");
    let opts = PublishOpts {
        loops: 3,
        ..PublishOpts::default()
    };
    let _publisher =
        RustPublisher::start(t.server.rtmp, "live", &name, "fixture.flv", opts).expect("publish");
    let https = t.https;
    let path = format!("/live/{name}.flv");
    let viewer = std::thread::spawn(move || {
        https_get_when_live(
            https,
            &path,
            Duration::from_secs(5),
            Duration::from_secs(20),
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();

    // A half-finished handshake: the first bytes of a real ClientHello, then silence.
    let mut half = raw_connect(t.rtmps);
    let mut client = tls_client();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    half.write_all(&hello[..hello.len() / 2]).unwrap();

    // Plain RTMP (C0+C1) on the RTMPS port, plain HTTP and garbage on the HTTPS port.
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let http = request_bytes("GET", "/api/server", 1, &[]);
    for (addr, bytes) in [
        (t.rtmps, &c0c1[..]),
        (t.https, &http[..]),
        (t.https, &garbage[..]),
        (t.rtmps, &garbage[..]),
    ] {
        let mut s = raw_connect(addr);
        s.write_all(bytes).unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "{addr}: not closed after plain bytes"
        );
    }
    // Idle TLS connections that finished the handshake and say nothing.
    let idle: Vec<TlsStream> = (0..IDLE)
        .map(|_| tls_connect(t.https).expect("idle TLS connection"))
        .collect();
    // All of them held open by the server at once (plus the viewer and the publisher).
    let metrics = http_get(t.server.http, "/metrics", Duration::from_secs(5)).body_text();
    let open = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtmpd_connections "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        open >= IDLE,
        "{open} connections open with {IDLE} idle TLS ones"
    );
    // The half handshake is closed at the header timeout (10 s), not before the others.
    assert!(
        closed_within(&mut half, Duration::from_secs(15)),
        "a half-finished handshake was never closed"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "closed before the header timeout"
    );
    assert!(t
        .server
        .wait_for_log("TLS handshake timeout", Duration::from_secs(1))
        .is_some());
    let tls_errors = t
        .server
        .logs()
        .iter()
        .filter(|l| l.contains(": TLS error: ") && l.contains("closed"))
        .count();
    assert_eq!(tls_errors, 4, "one line per bad connection");
    drop(idle);

    let r = viewer.join().expect("HTTPS viewer");
    assert_eq!(r.status, 200, "{:?}", r.body_text());
    assert_eq!(r.end, BodyEnd::TimeLimit, "the viewer was cut off");
    let (first, last) = assert_live_flv(&r.body, "HTTPS-FLV under bad input");
    // Real-time media the whole while (20 s of reading, the GOP cache gives a head start).
    assert!(
        last - first >= 15_000,
        "the viewer got {} ms of media in 20 s",
        last - first
    );
    let mut server = t.server;
    server.assert_running();
}

#[test]
fn certificate_reload_on_file_change_keeps_a_connected_viewer() {
    let dir = TempDir::new("tls-reload");
    let Some((cert_b, key_b)) = make_cert(dir.path(), "next") else {
        return;
    };
    let Some(t) = start(&[]) else { return };
    let key = t.cert.with_extension("key");
    let cert_a = cert_der(&t.cert);
    let name = unique_stream("tlsre");
    let opts = PublishOpts {
        loops: 2,
        ..PublishOpts::default()
    };
    let _publisher =
        RustPublisher::start(t.server.rtmp, "live", &name, "fixture.flv", opts).expect("publish");
    let https = t.https;
    let path = format!("/live/{name}.flv");
    let viewer = std::thread::spawn(move || {
        https_get_when_live(
            https,
            &path,
            Duration::from_secs(5),
            Duration::from_secs(16),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let s = tls_connect(t.https).expect("TLS connect");
    assert_eq!(peer_cert(&s), cert_a, "the first certificate");

    // A renewal: the new pair replaces the files (as certbot's live/ links move).
    std::fs::copy(&key_b, &key).unwrap();
    std::fs::copy(&cert_b, &t.cert).unwrap();
    assert!(
        t.server
            .wait_for_log("TLS certificate reloaded", Duration::from_secs(5))
            .is_some(),
        "no reload line"
    );
    let s = tls_connect(t.https).expect("TLS connect after the reload");
    assert_eq!(peer_cert(&s), cert_der(&cert_b), "the new certificate");

    // A broken key: one error line, the new pair stays in force.
    std::fs::write(&key, b"-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    assert!(
        t.server
            .wait_for_log("TLS certificate not reloaded", Duration::from_secs(5))
            .is_some(),
        "no error line for a bad key"
    );
    let s = tls_connect(t.https).expect("TLS connect after a bad reload");
    assert_eq!(
        peer_cert(&s),
        cert_der(&cert_b),
        "still the new certificate"
    );

    // The good key back, then SIGHUP with nothing changed: a forced re-read, no shutdown.
    let reloads = || {
        t.server
            .logs()
            .iter()
            .filter(|l| l.contains("TLS certificate reloaded"))
            .count()
    };
    let before = reloads();
    std::fs::copy(&key_b, &key).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || reloads() == before + 1),
        "the good key back was not reloaded"
    );
    #[cfg(unix)]
    {
        let before = reloads();
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(reloads(), before, "nothing changed, nothing reloaded");
        // SAFETY: kill(2) on the server we spawned.
        unsafe {
            libc::kill(t.server.pid() as libc::pid_t, libc::SIGHUP);
        }
        assert!(
            wait_until(Duration::from_secs(3), || reloads() == before + 1),
            "SIGHUP did not re-read the certificate"
        );
    }

    let r = viewer.join().expect("HTTPS viewer");
    assert_eq!(r.status, 200);
    assert_eq!(r.end, BodyEnd::TimeLimit, "the viewer was dropped");
    let (first, last) = assert_live_flv(&r.body, "HTTPS-FLV across reloads");
    assert!(
        last - first >= 12_000,
        "{} ms of media in 16 s",
        last - first
    );
    let mut server = t.server;
    server.assert_running();
}
