//! `Session` driven in memory by a real rustls client: every split point of every handshake
//! flight, TLS 1.3 and 1.2, the transmit bound, hostile input; `CertStore` reloads.
//! The fixture pair in tests/data/tls was made once with
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
//!  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1`
//! (an EC key: many handshakes per test stay fast in debug builds).

use std::io::{IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::certs::{config_from_pem, CertStore};
use super::{Session, TlsError, OUT_BATCH};
use crate::testutil::TempDir;

const CERT: &[u8] = include_bytes!("../../tests/data/tls/cert.pem");
const KEY: &[u8] = include_bytes!("../../tests/data/tls/key.pem");
const OTHER_KEY: &[u8] = include_bytes!("../../tests/data/tls/other-key.pem");

fn server_config() -> Arc<rustls::ServerConfig> {
    config_from_pem(CERT, KEY, Path::new("cert.pem"), Path::new("key.pem")).unwrap()
}

/// Accepts the fixture's certificate (checking it is the one we serve) and checks signatures
/// for real: the handshake is the genuine article, only the trust decision is the test's.
#[derive(Debug)]
struct TrustFixture(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustFixture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls_pki_types::pem::PemObject;
        let ours = CertificateDer::from_pem_slice(CERT).unwrap();
        assert_eq!(end_entity.as_ref(), ours.as_ref(), "the served certificate");
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client(version: &'static rustls::SupportedProtocolVersion) -> ClientConnection {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustFixture(provider)))
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap()
}

fn client_output(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// What `write_to` writes to a socket that takes everything.
fn written(s: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(s.write_to(&mut out).unwrap(), "a Vec takes everything");
    assert_eq!(s.pending_len(), 0);
    out
}

/// A socket that takes `budget` bytes, then would block.
struct Trickle {
    got: Vec<u8>,
    budget: usize,
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.budget == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands the server's waiting ciphertext to the client, as a socket that takes everything would.
fn to_client(s: &mut Session, c: &mut ClientConnection) {
    let bytes = written(s);
    let mut rd = &bytes[..];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
    }
}

/// Runs a handshake; the client's flight number `flight` reaches the server cut in two at
/// `at` (`usize::MAX`: fed one byte per call). Returns the number of client flights.
fn handshake(
    c: &mut ClientConnection,
    s: &mut Session,
    flight: usize,
    at: usize,
    plain: &mut Vec<u8>,
) -> usize {
    let mut flights = 0;
    for _ in 0..16 {
        let bytes = client_output(c);
        if !bytes.is_empty() {
            if flights == flight && at == usize::MAX {
                for b in bytes.chunks(1) {
                    s.handle_input(b, plain).unwrap();
                }
            } else if flights == flight {
                let at = at.min(bytes.len());
                s.handle_input(&bytes[..at], plain).unwrap();
                s.handle_input(&bytes[at..], plain).unwrap();
            } else {
                s.handle_input(&bytes, plain).unwrap();
            }
            flights += 1;
        }
        to_client(s, c);
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
            return flights;
        }
    }
    panic!("the handshake did not finish (flight {flight}, split at {at})");
}

/// After a handshake: bytes both ways arrive whole and in order.
fn exchange(c: &mut ClientConnection, s: &mut Session, plain: &mut Vec<u8>) {
    c.writer().write_all(b"\x03rtmp-c0c1 and more").unwrap();
    let bytes = client_output(c);
    s.handle_input(&bytes, plain).unwrap();
    assert_eq!(&plain[..], b"\x03rtmp-c0c1 and more");
    assert_eq!(s.encrypt(&[IoSlice::new(b"s0s1"), IoSlice::new(b"s2")]), 6);
    to_client(s, c);
    let mut got = [0u8; 6];
    c.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"s0s1s2");
}

fn flight_lengths(version: &'static rustls::SupportedProtocolVersion) -> Vec<usize> {
    // A reference run records how long each client flight is.
    let mut c = client(version);
    let mut s = Session::new(server_config()).unwrap();
    let mut lens = Vec::new();
    for _ in 0..16 {
        let bytes = client_output(&mut c);
        if !bytes.is_empty() {
            lens.push(bytes.len());
            s.handle_input(&bytes, &mut Vec::new()).unwrap();
        }
        to_client(&mut s, &mut c);
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
            return lens;
        }
    }
    panic!("reference handshake did not finish");
}

fn every_split(version: &'static rustls::SupportedProtocolVersion) {
    let lens = flight_lengths(version);
    assert!(lens.len() >= 2, "client flights: {lens:?}");
    for (flight, &len) in lens.iter().enumerate() {
        // Lengths vary by a few bytes between runs (key shares, padding): go one past the end.
        for at in (0..=len + 1).chain([usize::MAX]) {
            let mut c = client(version);
            let mut s = Session::new(server_config()).unwrap();
            let mut plain = Vec::new();
            handshake(&mut c, &mut s, flight, at, &mut plain);
            assert!(plain.is_empty(), "no plaintext during the handshake");
            exchange(&mut c, &mut s, &mut plain);
        }
    }
}

#[test]
fn tls13_handshake_split_at_every_byte() {
    every_split(&rustls::version::TLS13);
}

#[test]
fn tls12_handshake_split_at_every_byte() {
    every_split(&rustls::version::TLS12);
}

#[test]
fn records_split_at_every_byte_reassemble() {
    let mut c = client(&rustls::version::TLS13);
    let mut s = Session::new(server_config()).unwrap();
    let mut plain = Vec::new();
    handshake(&mut c, &mut s, usize::MAX - 1, 0, &mut plain);
    let msg: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    c.writer().write_all(&msg).unwrap();
    let bytes = client_output(&mut c);
    for at in 0..=bytes.len() {
        let mut c2 = client(&rustls::version::TLS13);
        let mut s2 = Session::new(server_config()).unwrap();
        let mut p2 = Vec::new();
        handshake(&mut c2, &mut s2, usize::MAX - 1, 0, &mut p2);
        c2.writer().write_all(&msg).unwrap();
        let b2 = client_output(&mut c2);
        let at = at.min(b2.len());
        s2.handle_input(&b2[..at], &mut p2).unwrap();
        s2.handle_input(&b2[at..], &mut p2).unwrap();
        assert_eq!(p2, msg, "split at {at}");
    }
}

#[test]
fn transmit_is_bounded_and_the_stream_stays_whole() {
    let mut c = client(&rustls::version::TLS13);
    let mut s = Session::new(server_config()).unwrap();
    let mut plain = Vec::new();
    handshake(&mut c, &mut s, usize::MAX - 1, 0, &mut plain);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    // A socket that takes nothing: the first call fills the batch, the next takes nothing.
    let first = s.encrypt(&[IoSlice::new(&big)]);
    assert_eq!(first, OUT_BATCH);
    assert_eq!(s.encrypt(&[IoSlice::new(&big[first..])]), 0);
    assert!(s.pending_len() <= OUT_BATCH + 256, "{}", s.pending_len());
    // A socket that takes 1000 bytes per write: everything arrives in order.
    let mut sent = first;
    let mut got = Vec::new();
    while got.len() < big.len() {
        let mut sock = Trickle {
            got: Vec::new(),
            budget: 1000,
        };
        let all = s.write_to(&mut sock).unwrap();
        assert_eq!(all, s.pending_len() == 0);
        let chunk = sock.got;
        assert!(!chunk.is_empty() && chunk.len() <= 1000);
        let mut rd = &chunk[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
        let mut buf = [0u8; 65536];
        while let Ok(k) = c.reader().read(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        if sent < big.len() {
            sent += s.encrypt(&[IoSlice::new(&big[sent..])]);
        }
        assert!(s.pending_len() <= OUT_BATCH + 256);
    }
    assert_eq!(got, big);
}

#[test]
fn plain_rtmp_and_garbage_are_errors_with_an_alert() {
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    let mut rng = crate::testutil::Rng::new(16);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    for input in [
        &c0c1[..],
        b"GET /live/stream.flv HTTP/1.1\r\nHost: x\r\n\r\n",
        &garbage[..],
    ] {
        let mut s = Session::new(server_config()).unwrap();
        let mut plain = Vec::new();
        let e = s.handle_input(input, &mut plain).unwrap_err();
        assert!(
            matches!(e, TlsError::Protocol(_) | TlsError::Input(_)),
            "{e}"
        );
        assert!(plain.is_empty());
        if matches!(e, TlsError::Protocol(_)) {
            assert!(!s.transmit().is_empty(), "an alert tells the peer why");
        }
    }
}

#[test]
fn close_notify_is_seen_and_sent() {
    let mut c = client(&rustls::version::TLS13);
    let mut s = Session::new(server_config()).unwrap();
    let mut plain = Vec::new();
    handshake(&mut c, &mut s, usize::MAX - 1, 0, &mut plain);
    s.close();
    assert!(!s.transmit().is_empty());
    to_client(&mut s, &mut c);
    c.send_close_notify();
    let bytes = client_output(&mut c);
    s.handle_input(&bytes, &mut plain).unwrap();
    assert!(s.peer_closed());
}

#[test]
fn bad_pairs_are_refused() {
    let (c, k) = (Path::new("c.pem"), Path::new("k.pem"));
    let e = config_from_pem(CERT, OTHER_KEY, c, k).unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e}");
    let e = config_from_pem(b"", KEY, c, k).unwrap_err();
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    let e = config_from_pem(CERT, CERT, c, k).unwrap_err();
    assert!(e.to_string().contains("private key"), "{e}");
    // A chain: the leaf first, more certificates after it.
    let chain = [CERT, CERT].concat();
    assert!(config_from_pem(&chain, KEY, c, k).is_ok());
}

#[test]
fn reload_follows_the_files_and_keeps_the_old_pair_when_the_new_one_is_bad() {
    let dir = TempDir::new("tls-reload");
    let cert = dir.write("cert.pem", CERT);
    let key = dir.write("key.pem", KEY);
    let mut store = CertStore::open(&cert, &key).unwrap();
    let first = store.config();
    assert!(store.reload(false).is_none(), "nothing changed");
    // A key that does not match: refused once, the old config stays.
    std::fs::write(&key, [OTHER_KEY, b"\n"].concat()).unwrap();
    assert!(matches!(store.reload(false), Some(Err(_))));
    assert!(
        store.reload(false).is_none(),
        "one bad pair is reported once"
    );
    assert!(Arc::ptr_eq(&first, &store.config()));
    // The good pair back (a different length, so the change shows whatever the clock says).
    std::fs::write(&key, [KEY, b"\n\n"].concat()).unwrap();
    assert!(matches!(store.reload(false), Some(Ok(_))));
    assert!(!Arc::ptr_eq(&first, &store.config()));
    assert!(store.reload(false).is_none());
    assert!(matches!(store.reload(true), Some(Ok(_))), "forced (SIGHUP)");
    // A connection made with the old config still works after the reload.
    let mut c = client(&rustls::version::TLS13);
    let mut s = Session::new(first).unwrap();
    let mut plain = Vec::new();
    handshake(&mut c, &mut s, usize::MAX - 1, 0, &mut plain);
    exchange(&mut c, &mut s, &mut plain);
}

// --- the client side: `Session::client` with `client::config_for` (the FLV gateway's upstream) ---
// Fixtures besides the pair above: other-cert.pem (self-signed on other-key.pem, same names);
// ca.pem, a test CA, and leaf-cert.pem/leaf-key.pem, a CA:FALSE server certificate it signed for
// localhost and 127.0.0.1 (`openssl x509 -req -CA ca.pem ...`, 36500 days).

const OTHER_CERT: &[u8] = include_bytes!("../../tests/data/tls/other-cert.pem");
const CA: &[u8] = include_bytes!("../../tests/data/tls/ca.pem");
const LEAF_CERT: &[u8] = include_bytes!("../../tests/data/tls/leaf-cert.pem");
const LEAF_KEY: &[u8] = include_bytes!("../../tests/data/tls/leaf-key.pem");

/// Moves bytes both ways between two sessions until neither has any; the first error wins.
fn pump(c: &mut Session, s: &mut Session) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
    for _ in 0..32 {
        let to_s = written(c);
        s.handle_input(&to_s, &mut at_server)?;
        let to_c = written(s);
        c.handle_input(&to_c, &mut at_client)?;
        if to_s.is_empty() && to_c.is_empty() {
            break;
        }
    }
    Ok((at_client, at_server))
}

fn upstream(
    trusted: &[u8],
    pin: bool,
    served: (&[u8], &[u8]),
    name: &str,
) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let ca = super::client::ca_from_pem(trusted, Path::new("ca.pem")).unwrap();
    let config = super::client::config_for(&ca, pin).unwrap();
    let mut c = Session::client(config, super::client::server_name(name).unwrap()).unwrap();
    let server = config_from_pem(served.0, served.1, Path::new("c"), Path::new("k")).unwrap();
    let mut s = Session::new(server).unwrap();
    // The request is written before the handshake ends, as the gateway does.
    let req = b"GET /live/a.flv HTTP/1.1\r\n\r\n";
    assert_eq!(c.encrypt(&[IoSlice::new(req)]), req.len());
    let (_, at_server) = pump(&mut c, &mut s)?;
    assert_eq!(at_server, req, "the request arrives after the handshake");
    assert!(!c.is_handshaking());
    assert_eq!(s.encrypt(&[IoSlice::new(b"HTTP/1.1 200 OK\r\n\r\n")]), 19);
    pump(&mut c, &mut s)
}

#[test]
fn upstream_client_trusts_a_ca_for_the_right_name_only() {
    let (at_client, _) = upstream(CA, true, (LEAF_CERT, LEAF_KEY), "localhost").unwrap();
    assert_eq!(at_client, b"HTTP/1.1 200 OK\r\n\r\n");
    upstream(CA, false, (LEAF_CERT, LEAF_KEY), "127.0.0.1").expect("the IP in the SAN");
    for name in ["other.example", "127.0.0.2"] {
        let e = upstream(CA, true, (LEAF_CERT, LEAF_KEY), name).unwrap_err();
        assert!(e.to_string().contains("certificate"), "{name}: {e}");
    }
    // A server certificate from somewhere else, and a pinned one that is not the served one.
    let e = upstream(CA, true, (CERT, KEY), "localhost").unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    let e = upstream(OTHER_CERT, true, (CERT, KEY), "localhost").unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[test]
fn upstream_client_accepts_a_pinned_self_signed_certificate() {
    // cert.pem is self-signed with CA:TRUE (openssl's default): no chain can end in it, but
    // --upstream-ca cert.pem pins it, and its handshake signature is still checked.
    let (at_client, _) = upstream(CERT, true, (CERT, KEY), "localhost").unwrap();
    assert_eq!(at_client, b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(
        upstream(CERT, false, (CERT, KEY), "localhost").is_err(),
        "not as a root"
    );
    // Pinning skips the name check only: any name, the same certificate.
    upstream(CERT, true, (CERT, KEY), "origin.example").unwrap();
}

#[test]
fn upstream_roots_need_a_certificate() {
    assert!(super::client::ca_from_pem(b"", Path::new("x")).is_err());
    assert!(super::client::ca_from_pem(KEY, Path::new("x")).is_err());
    assert!(super::client::server_name("not a name").is_err());
}
