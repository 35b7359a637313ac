//! TLS for the RTMPS and HTTPS listeners and the FLV gateway's https:// upstream, sans-IO:
//! `Session` wraps a `rustls::Connection` (a server one per accepted connection, a client one
//! per upstream pull)
//! (ciphertext in, plaintext out; plaintext in, ciphertext out, with a bounded transmit buffer),
//! and `certs` loads the PEM certificate and key and re-reads them when the files change. No
//! sockets and no clock here: the loop in `server` moves the bytes and decides about timeouts.
//! The cryptography is rustls's; this module only frames it for our loop.

pub mod certs;
pub mod client;
pub mod selfsigned;
mod session;
#[cfg(test)]
mod tests;

pub use certs::CertStore;
pub use session::{Session, OUT_BATCH};

/// Validated TLS settings (`crate::config` fills them from `--rtmps-port`, `--https-port`,
/// `--tls-cert`, `--tls-key`); `None` ports mean that listener is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    pub rtmps_port: Option<u16>,
    pub https_port: Option<u16>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// `--tls-self-signed`: `cert` and `key` are made (or found) in the data dir at start.
    pub self_signed: bool,
}

/// What went wrong on one TLS connection or with the certificate files.
#[derive(Debug)]
pub enum TlsError {
    /// The peer broke TLS (plain bytes, garbage, a bad handshake): the connection closes.
    Protocol(rustls::Error),
    /// rustls refused the bytes before parsing them (a buffer over its bound).
    Input(std::io::Error),
    /// A certificate or key file could not be read.
    Read(std::path::PathBuf, std::io::Error),
    /// A certificate or key file holds no usable PEM item.
    Pem(std::path::PathBuf, String),
    /// rustls refused the certificate chain and key (e.g. the key does not match the certificate).
    Config(rustls::Error),
    /// No certificate to verify an upstream against (`--upstream-ca` or the system's roots).
    NoRoots(String),
    /// `--tls-self-signed` could not make or write its certificate.
    Make(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "TLS error: {e}"),
            TlsError::Input(e) => write!(f, "TLS input refused: {e}"),
            TlsError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            TlsError::Pem(p, e) => write!(f, "{}: {e}", p.display()),
            TlsError::Config(e) => write!(f, "certificate and key refused: {e}"),
            TlsError::NoRoots(e) => write!(f, "no trusted certificates for the upstream: {e}"),
            TlsError::Make(e) => write!(f, "cannot make the self-signed certificate: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}
