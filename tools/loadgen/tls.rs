//! TLS for https:// and wss:// viewers: one rustls client configuration shared by all of them,
//! and the sans-IO steps a viewer takes with its `rustls::ClientConnection` (ciphertext in,
//! plaintext out in fixed-size pieces; plaintext in, ciphertext out). No sockets here.
//!
//! The load generator only measures: it accepts any certificate the server shows (self-signed
//! test certificates are the rule) but checks the handshake signatures for real, so the server
//! does the full work of a handshake.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate; verifies handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The configuration every TLS viewer of a run shares: ring, TLS 1.2 and 1.3 (rustls's safe
/// defaults, so a rustls server negotiates what a browser would get), no client certificate.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The host of `host:port` (an IPv6 literal without its brackets) as a TLS server name: SNI for
/// a DNS name, none for an address.
pub(crate) fn server_name(authority: &str) -> Result<ServerName<'static>, String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => authority,
        }
    };
    ServerName::try_from(host.to_string()).map_err(|e| format!("bad TLS server name {host:?}: {e}"))
}

/// Plaintext queued in rustls before the handshake ends, and records it holds for the socket:
/// the request of a viewer is small, so this only bounds a server that stops reading.
pub(crate) const BUFFER_LIMIT: usize = 64 * 1024;

pub(crate) fn connection(
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
) -> Result<Box<ClientConnection>, String> {
    let mut conn =
        ClientConnection::new(config.clone(), name.clone()).map_err(|e| format!("tls: {e}"))?;
    conn.set_buffer_limit(Some(BUFFER_LIMIT));
    Ok(Box::new(conn))
}

/// Ciphertext from the socket, all of it: decrypts, and hands the plaintext to `on_plain` in
/// pieces of at most `plain.len()` bytes (so nothing is buffered beyond rustls's own bounded
/// buffers: at most one record's worth of plaintext waits between two pieces). `on_plain`
/// returning `Ok(false)` stops early (the viewer is done). The server's close_notify is an
/// error, as a TCP close is for http://.
pub(crate) fn feed(
    conn: &mut ClientConnection,
    mut cipher: &[u8],
    plain: &mut [u8],
    mut on_plain: impl FnMut(&[u8]) -> Result<bool, String>,
) -> Result<(), String> {
    while !cipher.is_empty() {
        match conn.read_tls(&mut cipher) {
            // Only after close_notify; what follows it is ignored.
            Ok(0) => return Err("TLS close_notify from the server".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("tls: {e}")),
        }
        let state = conn
            .process_new_packets()
            .map_err(|e| format!("tls: {e}"))?;
        let mut left = state.plaintext_bytes_to_read();
        while left > 0 {
            let n = match conn.reader().read(plain) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("tls read: {e}")),
            };
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
            if !on_plain(&plain[..n])? {
                return Ok(());
            }
        }
        if state.peer_has_closed() {
            return Err("TLS close_notify from the server".into());
        }
    }
    Ok(())
}

/// Plaintext to send: as much of `out` as rustls takes (all of it unless `BUFFER_LIMIT` bytes
/// already wait); returns how many bytes it took.
pub(crate) fn encrypt(conn: &mut ClientConnection, out: &[u8]) -> Result<usize, String> {
    conn.writer()
        .write(out)
        .map_err(|e| format!("tls write: {e}"))
}

/// Ciphertext to the socket until it would block or nothing is left; `Ok(true)` when
/// everything was written.
pub(crate) fn transmit(conn: &mut ClientConnection, sock: &mut impl Write) -> Result<bool, String> {
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(0) => return Err("write: connection closed".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(true)
}

/// "TLSv1_3 TLS13_AES_256_GCM_SHA384", once the handshake has ended.
pub(crate) fn describe(conn: &ClientConnection) -> Option<String> {
    let version = conn.protocol_version()?;
    let suite = conn.negotiated_cipher_suite()?;
    Some(format!("{version:?} {:?}", suite.suite()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_url;
    use crate::viewer::{Phase, Viewer};
    use bytes::Bytes;
    use mio::Token;
    use rtmpd::codec::ws::server_frame;
    use rtmpd::media::Frame;
    use rtmpd::mux::flv;
    use rustls::ServerConnection;
    use std::path::Path;
    use std::time::Instant;

    const CERT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tls/cert.pem"
    ));
    const KEY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tls/key.pem"
    ));

    /// The fixture pair, as rtmpd's --tls-cert / --tls-key would load it.
    fn server() -> ServerConnection {
        let config =
            rtmpd::tls::certs::config_from_pem(CERT, KEY, Path::new("cert"), Path::new("key"))
                .unwrap();
        ServerConnection::new(config).unwrap()
    }

    /// Everything the server has for the client.
    fn server_output(server: &mut ServerConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Gives the server `cipher` and returns the plaintext it decrypted.
    fn server_input(server: &mut ServerConnection, mut cipher: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        while !cipher.is_empty() {
            server.read_tls(&mut cipher).unwrap();
            let state = server.process_new_packets().unwrap();
            let mut p = vec![0; state.plaintext_bytes_to_read()];
            server.reader().read_exact(&mut p).unwrap();
            plain.extend_from_slice(&p);
        }
        plain
    }

    /// A viewer of `url` driven in memory against a rustls server until the server has the
    /// whole request head: (viewer, server, request).
    fn handshake(url: &str, plain: &mut [u8]) -> (Viewer, ServerConnection, String) {
        let target = parse_url(url).unwrap();
        let mut v = Viewer::new(&target, Token(0), 7, None).unwrap();
        v.on_connected(&target);
        let mut server = server();
        let mut req = Vec::new();
        for _ in 0..10 {
            let mut c2s = Vec::new();
            v.write_out(&mut c2s).unwrap();
            req.extend(server_input(&mut server, &c2s));
            if req.ends_with(b"\r\n\r\n") {
                break;
            }
            let s2c = server_output(&mut server);
            v.ingest(&s2c, plain, Instant::now(), &target).unwrap();
        }
        assert!(!server.is_handshaking() && !v.tls.as_ref().unwrap().is_handshaking());
        assert_eq!(v.stats.bytes, 0, "no plaintext from the server yet");
        assert!(v.stats.wire_bytes > 0);
        (v, server, String::from_utf8(req).unwrap())
    }

    /// An FLV header and `n` video + audio tags (keyframes every 25; 3,000-byte video tags so
    /// that the stream spans many TLS records).
    fn flv_stream(n: u32) -> Vec<u8> {
        let mut data = flv::file_header(true, true).to_vec();
        for i in 0..n {
            let mut video = if i % 25 == 0 {
                vec![0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]
            } else {
                vec![0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]
            };
            video.resize(3000, 0x55);
            for (t, body) in [(9u8, &video[..]), (8, &[0xaf, 1, 0x21][..])] {
                let f = Frame::parse(t, i * 20, Bytes::copy_from_slice(body)).unwrap();
                flv::write_tag(&mut data, &f);
            }
        }
        data
    }

    #[test]
    fn https_viewer_plays_through_rustls_in_memory() {
        let url = "https://localhost:8443/live/s.flv?token=x";
        let target = parse_url(url).unwrap();
        // A small plaintext buffer: every record comes out in several pieces.
        let mut plain = vec![0u8; 1000];
        let (mut v, mut server, req) = handshake(url, &mut plain);
        assert!(
            req.starts_with("GET /live/s.flv?token=x HTTP/1.1\r\nHost: localhost:8443\r\n"),
            "{req}"
        );
        let session = v.tls_session().unwrap();
        assert!(session.starts_with("TLSv1_3 TLS13_"), "{session}");

        let flv = flv_stream(100);
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\
                             Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for part in flv.chunks(7000) {
            response.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            response.extend_from_slice(part);
            response.extend_from_slice(b"\r\n");
        }
        // The server writes in pieces (under rustls's buffer limit) and the viewer reads the
        // ciphertext in odd-sized pieces, records split anywhere.
        let wire_before = v.stats.wire_bytes;
        let mut wire = 0;
        for piece in response.chunks(20_000) {
            server.writer().write_all(piece).unwrap();
            let s2c = server_output(&mut server);
            wire += s2c.len() as u64;
            for c in s2c.chunks(4093) {
                v.ingest(c, &mut plain, Instant::now(), &target).unwrap();
            }
        }
        assert!(v.stats.error.is_none());
        assert!(v.stats.ready.is_some() && v.stats.first_video_key.is_some());
        assert_eq!(v.stats.frames, 200);
        // Bytes are the plaintext (what http:// would count); the wire carried more.
        assert_eq!(v.stats.bytes, response.len() as u64);
        assert_eq!(v.stats.wire_bytes - wire_before, wire);
        assert!(wire > response.len() as u64);

        // close_notify ends the stream like a TCP close does for http://.
        server.send_close_notify();
        let s2c = server_output(&mut server);
        let e = v.ingest(&s2c, &mut plain, Instant::now(), &target);
        assert_eq!(e, Err("TLS close_notify from the server".into()));
    }

    #[test]
    fn wss_viewer_upgrades_through_rustls_in_memory() {
        let url = "wss://127.0.0.1:8443/live/s.flv";
        let target = parse_url(url).unwrap();
        let mut plain = vec![0u8; 4096];
        let (mut v, mut server, req) = handshake(url, &mut plain);
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            tungstenite::handshake::derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        for part in flv_stream(50).chunks(5000) {
            response.extend_from_slice(&server_frame(2, part));
        }
        response.extend_from_slice(&server_frame(9, b"hi"));
        for piece in response.chunks(20_000) {
            server.writer().write_all(piece).unwrap();
            let s2c = server_output(&mut server);
            v.ingest(&s2c, &mut plain, Instant::now(), &target).unwrap();
        }
        assert_eq!(
            (v.stats.frames, v.stats.bytes),
            (100, response.len() as u64)
        );
        assert_eq!(v.phase, Phase::Active);
        // The pong goes back encrypted.
        let mut c2s = Vec::new();
        v.write_out(&mut c2s).unwrap();
        let pong = server_input(&mut server, &c2s);
        assert_eq!((pong[0], pong[1] & 0x7f), (0x8a, 2));
        assert!(v.out.is_empty());
    }

    #[test]
    fn a_broken_record_is_an_error() {
        let url = "https://127.0.0.1:8443/live/s.flv";
        let target = parse_url(url).unwrap();
        let mut plain = vec![0u8; 4096];
        let (mut v, mut server, _) = handshake(url, &mut plain);
        server.writer().write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        let mut s2c = server_output(&mut server);
        let last = s2c.len() - 1;
        s2c[last] ^= 1;
        let e = v
            .ingest(&s2c, &mut plain, Instant::now(), &target)
            .unwrap_err();
        assert!(e.starts_with("tls: "), "{e}");
    }

    #[test]
    fn server_names() {
        assert_eq!(server_name("localhost:443").unwrap().to_str(), "localhost");
        assert!(matches!(
            server_name("127.0.0.1:8443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:8443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert_eq!(server_name("example.com").unwrap().to_str(), "example.com");
        assert!(server_name("bad name:1").is_err());
    }
}
