//! The server certificate: `--tls-cert` (PEM, the chain allowed: leaf first, as Let's Encrypt's
//! `fullchain.pem`) and `--tls-key` (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC), loaded into a rustls
//! `ServerConfig`. `CertStore::reload` re-reads them when either file changed; a bad new pair keeps
//! the old config. Connections hold the `Arc` they started with, so a reload never touches them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// What `reload` compares to see a changed file: its modification time, length and (on Unix)
/// inode, read through symlinks (certbot's `live/` names are symlinks into `archive/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    stamps: (Option<Stamp>, Option<Stamp>),
    config: Arc<rustls::ServerConfig>,
    /// The stamps of a pair that failed to load, so one bad pair is reported once.
    failed: Option<(Option<Stamp>, Option<Stamp>)>,
}

impl CertStore {
    /// Loads the pair; at start a bad pair is fatal (the caller exits with the reason).
    pub fn open(cert: &Path, key: &Path) -> Result<CertStore, TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let config = load(cert, key)?;
        Ok(CertStore {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            stamps,
            config,
            failed: None,
        })
    }

    /// The config new connections use.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Re-reads the pair if a file changed since the last look (or always, with `force`: SIGHUP).
    /// `None` when nothing changed; `Some(Ok(line))` after a reload; `Some(Err)` when the new
    /// pair is bad and the old one stays in force (reported once per bad pair).
    pub fn reload(&mut self, force: bool) -> Option<Result<String, TlsError>> {
        let now = (stamp(&self.cert), stamp(&self.key));
        if !force && (now == self.stamps || self.failed == Some(now)) {
            return None;
        }
        match load(&self.cert, &self.key) {
            Ok(config) => {
                self.config = config;
                self.stamps = now;
                self.failed = None;
                Some(Ok(format!(
                    "TLS certificate reloaded from {} and {}",
                    self.cert.display(),
                    self.key.display()
                )))
            }
            Err(e) => {
                self.failed = Some(now);
                Some(Err(e))
            }
        }
    }
}

/// Reads and checks a certificate chain and its key (the key must match the first certificate).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(cert.into(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key.into(), e))?;
    config_from_pem(&cert_pem, &key_pem, cert, key)
}

/// `load` on bytes already read (the paths name the files in errors).
pub fn config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(cert.into(), format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Pem(
            cert.into(),
            "no CERTIFICATE in the file".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Pem(key.into(), format!("no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}
