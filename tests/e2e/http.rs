//! The HTTP port without a stream and around one (SPEC section 4, issue 2 item 7): CORS
//! preflight, 404 for unknown streams before any upgrade, 400/431/405, HEAD, and the HTTP-FLV
//! response headers for HTTP/1.1 (chunked) and HTTP/1.0 (close-delimited).

use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(5);

fn assert_cors(r: &HttpResponse, what: &str) {
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "{what}: no CORS header; headers {:?}",
        r.headers
    );
}

#[test]
fn options_preflight_is_204_with_cors() {
    let server = Server::start();
    let r = http_request(
        server.http,
        "OPTIONS",
        "/live/any.flv",
        1,
        &[
            "Origin: http://example.com",
            "Access-Control-Request-Method: GET",
        ],
        T,
    );
    assert_eq!(r.status, 204);
    assert_cors(&r, "OPTIONS");
    let methods = r
        .header("access-control-allow-methods")
        .unwrap_or_else(|| panic!("no Allow-Methods: {:?}", r.headers));
    assert!(methods.contains("GET"), "Allow-Methods {methods}");
    assert!(r.body.is_empty());
}

#[test]
fn unknown_stream_is_404_stream_not_found_with_cors() {
    let server = Server::start();
    for minor in [1, 0] {
        let r = http_request(server.http, "GET", "/live/nobody.flv", minor, &[], T);
        assert_eq!(r.status, 404, "HTTP/1.{minor}");
        assert_eq!(r.body_text(), "Stream not found.", "HTTP/1.{minor}");
        assert_cors(&r, "404");
    }
}

#[test]
fn websocket_to_unknown_stream_is_404_before_the_upgrade() {
    let server = Server::start();
    match ws_get_flv(server.http, "/live/nobody.flv", T) {
        Err(WsConnectError::Status(404, body)) => assert_eq!(body, "Stream not found."),
        other => panic!("WS-FLV to an unknown stream: {other:?}"),
    }
}

#[test]
fn malformed_oversized_and_wrong_method_requests() {
    let server = Server::start();
    let r = http_exchange(server.http, b"THIS IS NOT HTTP\r\n\r\n", T, false).expect("answer");
    assert_eq!(r.status, 400, "malformed request");
    let mut big = b"GET /live/x.flv HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    // The server may answer and close before reading it all; only the status matters.
    let r = http_exchange(server.http, &big, T, false).expect("answer");
    assert_eq!(r.status, 431, "oversized head");
    for method in ["DELETE", "PUT", "POST"] {
        let r = http_request(
            server.http,
            method,
            "/live/x.flv",
            1,
            &["Content-Length: 0"],
            T,
        );
        assert_eq!(r.status, 405, "{method}");
    }
}

#[test]
fn http_flv_headers_for_1_1_and_1_0_and_head() {
    let server = Server::start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "hdr",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(3000),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(server.http, "/live/hdr.flv", T));
    let head = http_request(server.http, "HEAD", "/live/hdr.flv", 1, &[], T);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("video/x-flv"));
    assert_cors(&head, "HEAD");
    assert!(head.body.is_empty());

    let addr = server.http;
    let v11 = std::thread::spawn(move || {
        http_request(
            addr,
            "GET",
            "/live/hdr.flv",
            1,
            &[],
            Duration::from_secs(15),
        )
    });
    let v10 = std::thread::spawn(move || {
        http_request(
            addr,
            "GET",
            "/live/hdr.flv",
            0,
            &[],
            Duration::from_secs(15),
        )
    });
    publisher.join().expect("publishing");
    for (r, minor) in [(v11.join().unwrap(), 1), (v10.join().unwrap(), 0)] {
        let what = format!("HTTP/1.{minor}");
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(r.header("content-type"), Some("video/x-flv"), "{what}");
        assert!(
            r.header("cache-control")
                .is_some_and(|v| v.contains("no-cache")),
            "{what}: Cache-Control {:?}",
            r.header("cache-control")
        );
        assert_cors(&r, &what);
        assert!(
            r.header("content-length").is_none(),
            "{what}: Content-Length on a live stream"
        );
        if minor == 1 {
            assert!(r.chunked, "{what}: not chunked");
            assert_eq!(r.end, BodyEnd::LastChunk, "{what}");
        } else {
            assert!(!r.chunked, "{what}: chunked");
            assert_eq!(r.end, BodyEnd::Eof, "{what}");
        }
        let flv = parse_flv(&r.body);
        flv.assert_valid(&what, true);
        assert!(flv.has_audio && flv.has_video, "{what}: header flags");
        assert_clean_start(&flv.frames, &what);
        assert_monotonic(&flv.frames, &what);
    }
}

/// WS-FLV: the server answers a ping with a pong carrying the same payload, and answers our
/// close frame with its own and closes, while the stream goes on for others.
#[test]
fn websocket_ping_is_answered_and_close_is_honoured() {
    use tungstenite::Message;
    let server = Server::start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "wsping",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(4000),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(server.http, "/live/wsping.flv", T));
    let mut ws = ws_connect(server.http, "/live/wsping.flv").expect("upgrade");
    ws.send(Message::Ping(b"are you there"[..].into()))
        .expect("ping");
    let deadline = std::time::Instant::now() + T;
    let pong = loop {
        assert!(std::time::Instant::now() < deadline, "no pong in {T:?}");
        if let Message::Pong(p) = ws.read().expect("read") {
            break p;
        }
    };
    assert_eq!(&pong[..], b"are you there");
    ws.close(None).expect("close");
    // Our close is answered with the server's, then the connection ends.
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no close reply in {T:?}"
        );
        match ws.read() {
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("after our close: {e}"),
        }
    }
    // Another viewer is unaffected.
    let r = http_get(server.http, "/live/wsping.flv", Duration::from_secs(10));
    assert_eq!(r.end, BodyEnd::LastChunk);
    publisher.join().expect("publishing");
}

/// Regression: a POST carrying a body was answered 400 (malformed) instead of 405.
#[test]
fn post_with_a_body_is_405_then_closed() {
    let server = Server::start();
    let mut raw = request_bytes("POST", "/api/streams", 1, &["Content-Length: 5"]);
    raw.extend_from_slice(b"hello");
    let r = http_exchange(server.http, &raw, T, false).expect("answer");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(r.header("connection"), Some("close"));
}

/// Everything the server sends on `sock` until it closes the connection (or `T` passes).
fn read_until_closed(sock: &mut std::net::TcpStream) -> (Vec<u8>, bool) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + T;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match sock.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// Issue 13 hole 2: `Content-Length: 0` then `Content-Length: 46` was accepted, and the 46 body
/// bytes (a second request) were then answered too. Every repeated or conflicting length, and a
/// length beside Transfer-Encoding, is now one 400 and a closed connection.
#[test]
fn duplicate_content_length_is_400_and_close_and_the_body_is_not_served() {
    use std::io::Write;
    let server = Server::start();
    let smuggled = b"GET /api/server HTTP/1.1\r\nHost: 127.0.0.1\r\nX: y\r\n\r\n";
    let n = smuggled.len();
    assert_eq!(n, 51);
    let framings = [
        format!("Content-Length: 0\r\nContent-Length: {n}"),
        format!("Content-Length: {n}\r\nContent-Length: 0"),
        format!("Content-Length: {n}\r\nContent-Length: {n}"),
        format!("Content-Length: 0, {n}"),
        format!("Content-Length: {n}\r\nTransfer-Encoding: chunked"),
    ];
    for framing in &framings {
        for path in ["/api/streams", "/live/x.flv"] {
            let what = format!("GET {path} with {framing:?}");
            let mut raw = request_bytes("GET", path, 1, &[framing.as_str()]);
            raw.extend_from_slice(smuggled);
            let mut sock = raw_connect(server.http);
            sock.write_all(&raw).unwrap();
            let (got, closed) = read_until_closed(&mut sock);
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 400 "), "{what}: {text}");
            assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
            assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: {text}");
            assert!(
                !text.contains("\"version\""),
                "{what}: smuggled request answered"
            );
            assert!(closed, "{what}: connection left open");
        }
    }
    // One honest length of 0 is still an ordinary request on a kept-alive connection.
    let r = http_request(
        server.http,
        "GET",
        "/api/streams",
        1,
        &["Content-Length: 0"],
        T,
    );
    assert_eq!(r.status, 200);
}
