//! The FLV gateway's side of an `https://` upstream: which servers it trusts. Without
//! `--upstream-ca` that is the system's roots (Linux's CA bundle, the Windows or macOS store);
//! with it, only the certificates in that PEM file: a private CA that signed the origin's
//! certificate, or the origin's own self-signed certificate, which is then accepted when the
//! origin shows exactly it (the usual way to trust one self-signed server; its handshake
//! signature is still checked). Either way the name in the URL must match the certificate,
//! except for a pinned self-signed one. The session itself is `Session::client`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::TlsError;

/// Where the trusted certificates came from, for the startup line.
enum Roots<'a> {
    System,
    File(&'a Path),
}

/// The client config for upstream pulls; errors name the file or say the system has no roots.
pub fn upstream_config(ca: Option<&Path>) -> Result<(Arc<rustls::ClientConfig>, String), TlsError> {
    let (certs, from) = match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| TlsError::Read(path.into(), e))?;
            (ca_from_pem(&pem, path)?, Roots::File(path))
        }
        None => (system_roots()?, Roots::System),
    };
    let config = config_for(&certs, matches!(from, Roots::File(_)))?;
    let line = match from {
        Roots::System => format!("{} system root certificates", certs.len()),
        Roots::File(p) => format!("{} certificate(s) from {}", certs.len(), p.display()),
    };
    Ok((config, line))
}

/// The certificates of an `--upstream-ca` file (at least one).
pub fn ca_from_pem(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(path.into(), format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(
            path.into(),
            "no CERTIFICATE in the file".into(),
        ));
    }
    Ok(certs)
}

fn system_roots() -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::debug!("system root certificates: {e}");
    }
    if found.certs.is_empty() {
        return Err(TlsError::NoRoots(
            found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none found".into()),
        ));
    }
    Ok(found.certs)
}

/// A client config trusting `certs` as roots, and also (when `pin`) as exact server certificates.
pub fn config_for(
    certs: &[CertificateDer<'static>],
    pin: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    // A system store may hold a few certificates webpki cannot use; the rest still count.
    let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(TlsError::NoRoots("no usable certificate among them".into()));
    }
    let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::NoRoots(e.to_string()))?;
    let verifier = Arc::new(PinOrChain {
        pinned: if pin { certs.to_vec() } else { Vec::new() },
        chain,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to verify the upstream's certificate against (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::NoRoots(format!("'{host}' is not a name a certificate can carry")))
}

/// Accepts a server certificate that is byte for byte one of `pinned`, else asks webpki (chain to
/// a root, validity, the server's name). Handshake signatures are always webpki's check.
#[derive(Debug)]
struct PinOrChain {
    pinned: Vec<CertificateDer<'static>>,
    chain: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.chain
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
