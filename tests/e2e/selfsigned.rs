//! `--tls-self-signed` (issue 26 point 6): the origin makes a certificate for this machine's names
//! and addresses in its data dir, prints its SHA-256 fingerprint, serves HTTPS with it (a rustls
//! client that trusts only that file connects by name and by address, verified), never serves its
//! key as a static file, and reuses the same certificate on the next start.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::util::*;

/// `GET path` over HTTPS to `addr`, verifying the server against `cert_pem` only, for `name`.
fn verified_get(
    addr: SocketAddr,
    cert_pem: &[u8],
    name: &str,
    path: &str,
) -> std::io::Result<HttpResponse> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem) {
        roots
            .add(c.map_err(|e| std::io::Error::other(e.to_string()))?)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let sni = ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), sni).unwrap();
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    let start = Instant::now();
    s.write_all(&request_bytes("GET", path, 1, &[]))?;
    s.flush()?;
    read_response(&mut s, start, start + Duration::from_secs(10), false)
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn start(data: &TempDir) -> (Server, SocketAddr, String) {
    let server = Server::builder()
        .no_web()
        .args(["--tls-self-signed", "--https-port", "0", "--data-dir"])
        .arg(data.path().display().to_string())
        .start();
    let https = server.listener("HTTPS");
    let line = server
        .wait_for_log("SHA-256 fingerprint ", Duration::from_secs(5))
        .expect("the fingerprint line");
    let fp = line.rsplit(' ').next().unwrap().to_string();
    (server, https, fp)
}

#[test]
fn self_signed_certificate_is_made_served_verified_and_reused() {
    let data = TempDir::new("selfsigned");
    let (server, https, fp) = start(&data);
    assert!(
        server.log_contains("(made now) for "),
        "{:?}",
        server.logs()
    );
    let cert_pem = std::fs::read(data.join(".tls/self-signed-cert.pem")).unwrap();
    let der = CertificateDer::pem_slice_iter(&cert_pem)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        sha256_hex(&der),
        fp,
        "the printed fingerprint is the file's"
    );

    // Verified against that file alone, by name and by address.
    for name in ["localhost", "127.0.0.1"] {
        let r = verified_get(https, &cert_pem, name, "/api/server").unwrap();
        assert_eq!(r.status, 200, "{name}: {}", r.body_text());
    }
    // A name the certificate does not hold fails verification.
    assert!(verified_get(https, &cert_pem, "not-this-host.example", "/").is_err());
    // The key lives in the served data dir but is never a static file, however it is spelled.
    for path in [
        "/.tls/self-signed-key.pem",
        "/%2etls/self-signed-key.pem",
        "/.TLS/",
    ] {
        let r = verified_get(https, &cert_pem, "localhost", path).unwrap();
        assert_eq!(r.status, 404, "{path}");
        let r = http_get(server.http, path, Duration::from_secs(5));
        assert_eq!(r.status, 404, "{path} over HTTP");
    }
    drop(server); // killed and waited for; the data dir given is ours and stays

    // The next start reuses it: same fingerprint, and clients that trusted it still connect.
    let (again, https, fp2) = start(&data);
    assert!(again.log_contains("(reused) for "), "{:?}", again.logs());
    assert_eq!(fp2, fp);
    let r = verified_get(https, &cert_pem, "localhost", "/").unwrap();
    assert_eq!(r.status, 200);
    drop(again);
}

#[test]
fn self_signed_with_cert_files_is_refused() {
    let out = std::process::Command::new(binary())
        .args([
            "--tls-self-signed",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-self-signed"), "{err}");
}
