//! TLS for the tests: a self-signed certificate made by `openssl req -x509` in a temp dir, the
//! check that FFmpeg was built with TLS, and a rustls client (with real handshake signatures;
//! it trusts whatever certificate the server shows and records it) for HTTPS requests.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use super::{read_response, request_bytes, require_tool, test_name, HttpResponse};

/// Prints a "skipped:" line (or panics when RTMPD_REQUIRE_TOOLS=1 forbids skipping).
fn skip(why: &str) -> bool {
    let msg = format!("skipped: {why} (test {})", test_name());
    if std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{msg}, and RTMPD_REQUIRE_TOOLS=1 forbids skipping");
    }
    eprintln!("{msg}");
    false
}

/// A self-signed RSA certificate for localhost and 127.0.0.1 at `dir/NAME.crt` and
/// `dir/NAME.key`; None (after a skipped line) without openssl.
pub fn make_cert(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    if !require_tool("openssl") {
        return None;
    }
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((cert, key))
}

/// FFmpeg is installed and speaks rtmps:// and https:// (Debian's is built with GnuTLS).
pub fn ffmpeg_with_tls() -> bool {
    if !require_tool("ffmpeg") {
        return false;
    }
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-protocols"])
        .output()
        .expect("running ffmpeg -protocols");
    let text = String::from_utf8_lossy(&out.stdout);
    let has = |p: &str| text.lines().any(|l| l.trim() == p);
    if has("tls") && has("rtmps") && has("https") {
        return true;
    }
    skip("ffmpeg is built without TLS (no tls/rtmps/https in ffmpeg -protocols)")
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(pem: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(pem)
        .unwrap_or_else(|e| panic!("{}: {e}", pem.display()))
        .to_vec()
}

/// Trusts the certificate shown (the test checks which one it was), checks signatures for real.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

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

/// A client connection, not started (for tests that send only part of a handshake).
pub fn tls_client() -> ClientConnection {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap()
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl super::http::TimedRead for TlsStream {
    fn read_timeout_set(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(t)
    }
}

/// Connects and completes the handshake.
pub fn tls_connect(addr: SocketAddr) -> io::Result<TlsStream> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut s = StreamOwned::new(tls_client(), sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The leaf certificate the server showed.
pub fn peer_cert(s: &TlsStream) -> Vec<u8> {
    s.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// `GET path` over HTTPS (HTTP/1.1), read until the response ends or `max_duration` passes.
pub fn https_get(addr: SocketAddr, path: &str, max_duration: Duration) -> io::Result<HttpResponse> {
    let start = Instant::now();
    let mut s = tls_connect(addr)?;
    s.write_all(&request_bytes("GET", path, 1, &[]))?;
    s.flush()?;
    read_response(&mut s, start, start + max_duration, false)
}

/// `https_get`, retried while the answer is 404 (the stream is not live yet) for up to `wait`.
pub fn https_get_when_live(
    addr: SocketAddr,
    path: &str,
    wait: Duration,
    max_duration: Duration,
) -> HttpResponse {
    let until = Instant::now() + wait;
    loop {
        let r = https_get(addr, path, max_duration)
            .unwrap_or_else(|e| panic!("https GET {path} from {addr}: {e}"));
        if r.status != 404 || Instant::now() >= until {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// WS-FLV over TLS (`wss://addr/path`): the binary messages read for `max_duration`.
pub fn wss_get_flv(
    addr: SocketAddr,
    path: &str,
    max_duration: Duration,
) -> Result<super::WsFlv, String> {
    use tungstenite::Message;
    let deadline = Instant::now() + max_duration;
    let s = tls_connect(addr).map_err(|e| e.to_string())?;
    // The scheme only names the URL: the stream is already TLS.
    let url = format!("ws://{addr}/{}", path.trim_start_matches('/'));
    let (mut ws, _) = tungstenite::client(url.as_str(), s).map_err(|e| e.to_string())?;
    let mut out = super::WsFlv {
        data: Vec::new(),
        binary_messages: 0,
        text_messages: 0,
        end: super::WsEnd::TimeLimit,
        error: None,
    };
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = ws.get_mut().sock.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_millis(200)),
        ));
        match ws.read() {
            Ok(Message::Binary(b)) => {
                out.binary_messages += 1;
                out.data.extend_from_slice(&b);
            }
            Ok(Message::Text(_)) => out.text_messages += 1,
            Ok(Message::Close(_)) => {
                out.end = super::WsEnd::CloseFrame;
                return Ok(out);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                out.end = super::WsEnd::Dropped;
                out.error = Some(e.to_string());
                return Ok(out);
            }
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok(out)
}
