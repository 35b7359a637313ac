//! TLS between the socket and the protocols, for the RTMPS and HTTPS listeners: ciphertext read
//! from the socket goes through `tls::Session` and its plaintext to `rtmp_input`/`http_input`;
//! everything `write_conn` sends goes through `Sink`, which encrypts into the session's bounded
//! transmit buffer and writes that. The certificate store is re-read on the sweep (files
//! changed) and on SIGHUP. No protocol knowledge here, and no policy beyond closing on TLS errors.

use std::io::{self, IoSlice, Write};
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, error, info};
use mio::net::{TcpListener, TcpStream};

use super::conn::Listener;
use super::outq::SocketWriter;
use super::{Server, ServerError};
use crate::tls::{CertStore, Session};

/// A listening socket, what it serves and whether TLS is in front of it.
pub(super) struct Listening {
    pub socket: TcpListener,
    pub kind: Listener,
    pub tls: bool,
}

impl Listening {
    pub fn plain(socket: TcpListener, kind: Listener) -> Listening {
        Listening {
            socket,
            kind,
            tls: false,
        }
    }

    pub fn tls(socket: TcpListener, kind: Listener) -> Listening {
        Listening {
            socket,
            kind,
            tls: true,
        }
    }

    /// The name in the startup line (`RTMPS listening on ...`).
    pub fn label(&self) -> &'static str {
        match (self.kind, self.tls) {
            (Listener::Rtmp, false) => "RTMP",
            (Listener::Rtmp, true) => "RTMPS",
            (Listener::Http, false) => "HTTP",
            (Listener::Web, false) => "Web",
            (Listener::Http | Listener::Web, true) => "HTTPS",
        }
    }

    /// The name in `/api/server`'s `ports`.
    pub fn port_name(&self) -> &'static str {
        match (self.kind, self.tls) {
            (Listener::Rtmp, false) => "rtmp",
            (Listener::Rtmp, true) => "rtmps",
            (Listener::Http, false) => "http",
            (Listener::Web, false) => "web",
            (Listener::Http | Listener::Web, true) => "https",
        }
    }
}

/// `--tls-self-signed`: finds or makes the certificate in the data dir and points `cfg` at it,
/// with the lines a user needs: where it is, what it covers, its fingerprint.
pub(super) fn self_signed(
    cfg: &mut crate::tls::TlsConfig,
    data_dir: &std::path::Path,
) -> Result<(), ServerError> {
    use crate::tls::selfsigned;
    let names = selfsigned::machine_names(
        selfsigned::hostname().as_deref(),
        &selfsigned::interface_addrs(),
    );
    let s = selfsigned::ensure(data_dir, &names, std::time::SystemTime::now())
        .map_err(|e| ServerError(format!("--tls-self-signed: {e}")))?;
    if let Some(why) = &s.replaced {
        log::warn!(
            "--tls-self-signed: replacing the certificate in {}: {why}",
            s.cert.display()
        );
    }
    info!(
        "TLS self-signed certificate {} ({}) for {}",
        s.cert.display(),
        if s.made { "made now" } else { "reused" },
        s.names.join(", ")
    );
    info!("TLS certificate SHA-256 fingerprint {}", s.fingerprint);
    if !s.missing.is_empty() {
        log::warn!(
            "--tls-self-signed: the certificate does not name {} (made before this address appeared): browsers warn there; delete {} to make a new one",
            s.missing.join(", "),
            data_dir.join(selfsigned::DIR).display()
        );
    }
    cfg.cert = Some(s.cert);
    cfg.key = Some(s.key);
    Ok(())
}

/// Loads `--tls-cert`/`--tls-key` when given; a bad pair at start is fatal.
pub(super) fn open_certs(cfg: &crate::tls::TlsConfig) -> Result<Option<CertStore>, ServerError> {
    let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
        return Ok(None);
    };
    let store = CertStore::open(cert, key)
        .map_err(|e| ServerError(format!("--tls-cert/--tls-key: {e}")))?;
    info!(
        "TLS certificate {} and key {} loaded",
        cert.display(),
        key.display()
    );
    Ok(Some(store))
}

/// Where `write_conn` puts a connection's bytes: the socket itself, or TLS in front of it.
pub(super) enum Sink<'a> {
    Plain(&'a mut TcpStream),
    Tls(&'a mut TcpStream, &'a mut Session),
}

impl<'a> Sink<'a> {
    pub fn new(socket: &'a mut TcpStream, tls: Option<&'a mut Session>) -> Sink<'a> {
        match tls {
            Some(t) => Sink::Tls(socket, t),
            None => Sink::Plain(socket),
        }
    }

    /// The socket, when bytes may go to it directly (splice, sendfile): never under TLS.
    #[cfg(target_os = "linux")]
    pub fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            Sink::Plain(s) => Some(s),
            Sink::Tls(..) => None,
        }
    }

    /// Writes what TLS still holds: Ok(true) when nothing is left (always, for plain sockets).
    pub fn finish(&mut self) -> io::Result<bool> {
        match self {
            Sink::Plain(_) => Ok(true),
            Sink::Tls(s, t) => flush_transmit(s, t),
        }
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Plain: one `sendmsg`. TLS: the ciphertext already made goes first, and nothing more is
    /// encrypted while some of it waits, so at most `tls::OUT_BATCH` is held beyond the queues.
    /// Returns the plaintext bytes taken.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Plain(s) => SocketWriter(s).write_vectored(bufs),
            Sink::Tls(s, t) => {
                if !flush_transmit(s, t)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = t.encrypt(bufs);
                if n == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                flush_transmit(s, t)?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the session's ciphertext: Ok(true) when all of it went, Ok(false) when the socket is full.
pub(super) fn flush_transmit(socket: &mut TcpStream, tls: &mut Session) -> io::Result<bool> {
    tls.write_to(&mut SocketWriter(socket))
}

/// Set by SIGHUP (when TLS is on): the next sweep re-reads the certificate.
#[cfg(unix)]
static SIGHUP: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sighup(_: libc::c_int) {
    SIGHUP.store(true, Ordering::Relaxed);
}

/// SIGHUP re-reads the certificate instead of stopping the server (as it does without TLS),
/// so `systemctl reload` or a certbot deploy hook can send it.
#[cfg(unix)]
fn catch_sighup() {
    // SAFETY: a handler that only stores to an atomic (async-signal-safe), installed with a
    // zeroed, then filled, sigaction; it replaces ctrlc's SIGHUP handler only.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sighup as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGHUP, &sa, std::ptr::null_mut()) != 0 {
            error!(
                "cannot catch SIGHUP: {}; the certificate is still re-read when its files change",
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(unix)]
fn take_sighup() -> bool {
    SIGHUP.swap(false, Ordering::Relaxed)
}

#[cfg(not(unix))]
fn catch_sighup() {}

#[cfg(not(unix))]
fn take_sighup() -> bool {
    false
}

impl Server {
    /// Puts the certificate store in force for the TLS listeners.
    pub(super) fn set_certs(&mut self, certs: Option<CertStore>) {
        if certs.is_some() {
            catch_sighup();
        }
        self.certs = certs;
    }

    /// A new session for a connection accepted on a TLS listener.
    pub(super) fn new_tls_session(&self) -> Option<Box<Session>> {
        let store = self.certs.as_ref()?;
        match Session::new(store.config()) {
            Ok(s) => Some(Box::new(s)),
            Err(e) => {
                error!("cannot start a TLS session: {e}");
                None
            }
        }
    }

    /// On the sweep: re-reads the certificate if its files changed (or SIGHUP came). Live
    /// connections keep the config they started with.
    pub(super) fn reload_certs(&mut self) {
        let force = take_sighup();
        let Some(store) = self.certs.as_mut() else {
            return;
        };
        match store.reload(force) {
            Some(Ok(line)) => info!("{line}"),
            Some(Err(e)) => error!("TLS certificate not reloaded, the previous one stays: {e}"),
            None => {}
        }
    }

    /// Ciphertext read from a TLS connection: decrypt, hand the plaintext to the protocol, send
    /// what the handshake answers. A TLS error (plain RTMP, garbage, a bad handshake) closes
    /// the connection with one line.
    pub(super) fn tls_input(&mut self, token: usize, cipher: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Some(tls) = conn.tls.as_mut() else {
            return;
        };
        let mut plain = std::mem::take(&mut self.tls_plain);
        plain.clear();
        let was_handshaking = tls.is_handshaking();
        match tls.handle_input(cipher, &mut plain) {
            Err(e) => {
                // The alert, if the socket takes it now; the peer is told why.
                let _ = flush_transmit(&mut conn.socket, tls);
                info!("{} {}: {e}; closed", conn.kind(), conn.peer);
                self.close(token, "TLS error");
            }
            Ok(()) => {
                let secured = (was_handshaking && !tls.is_handshaking()).then(|| tls.describe());
                let peer_closed = tls.peer_closed();
                if let Some(how) = secured {
                    debug!("{} {}: {how}", conn.kind(), conn.peer);
                }
                let listener = conn.listener;
                if !plain.is_empty() {
                    match listener {
                        Listener::Rtmp => self.rtmp_input(token, &plain),
                        Listener::Http | Listener::Web => self.http_input(token, &plain),
                    }
                }
                let Some(conn) = self.conns.get_mut(token) else {
                    self.tls_plain = plain;
                    return;
                };
                if conn.closed {
                } else if peer_closed {
                    self.close(token, "closed by peer (close_notify)");
                } else if conn.tls.as_ref().is_some_and(|t| t.pending_len() > 0) {
                    // Handshake records (or an answer the protocol queued without writing).
                    self.write_conn(token);
                }
            }
        }
        self.tls_plain = plain;
    }
}
