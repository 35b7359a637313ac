//! `Session`: one TLS connection (the server side of an accepted one, or the client side of an
//! upstream pull) as a sans-IO machine. Ciphertext from the socket goes
//! in with `handle_input`, which appends the plaintext it decrypted to the caller's buffer;
//! plaintext to send goes in with `encrypt`, and the ciphertext waits until `write_to` has
//! written it to the socket. What waits is bounded: `encrypt` takes nothing while `OUT_BATCH`
//! bytes wait, so a peer that stops reading makes us hold at most that much.
//!
//! Media records stay in rustls's own queue (each record in the buffer it was just encrypted
//! into, still in cache) until the socket takes them: copying them into a per-connection buffer
//! first cost about as much CPU as the AES-GCM itself with 1,000 viewers (perf, 2026-12-04).
//! Records made while reading (handshake flights, alerts, session tickets) go through `out`.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use super::TlsError;

/// Plaintext encrypted ahead of the socket: the transmit buffer never holds much more
/// ciphertext than this (one record's overhead per 16 KiB record beyond it). Two full records.
pub const OUT_BATCH: usize = 32 * 1024;

/// A TLS record's plaintext at most, and what a record adds to it at most (header 5, content
/// type 1, tag 16; TLS 1.2's explicit nonce 8 fits in the same bound).
const RECORD: usize = 16 * 1024;
const RECORD_OVERHEAD: usize = 5 + 1 + 16 + 8;

pub struct Session {
    conn: rustls::Connection,
    /// Ciphertext taken out of rustls (see `take_records`); its first `sent` bytes are written.
    out: Vec<u8>,
    sent: usize,
    /// Ciphertext of `encrypt`ed data still in rustls's queue (an estimate from above: plaintext
    /// plus each record's overhead, less what `write_to` wrote; 0 once the queue is empty).
    queued: usize,
    /// The peer sent close_notify: what follows it is ignored.
    peer_closed: bool,
}

impl Session {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Session, TlsError> {
        let conn = rustls::ServerConnection::new(config).map_err(TlsError::Config)?;
        Ok(Session::wrap(conn.into()))
    }

    /// The client side, for a pull from `name` (the ClientHello is ready in `transmit`).
    pub fn client(
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Session, TlsError> {
        let conn = rustls::ClientConnection::new(config, name).map_err(TlsError::Config)?;
        let mut s = Session::wrap(conn.into());
        s.take_records();
        Ok(s)
    }

    fn wrap(mut conn: rustls::Connection) -> Session {
        // rustls's own buffers (plaintext queued before the handshake ends, records not yet
        // taken by `take_records`) get the same bound as ours.
        conn.set_buffer_limit(Some(OUT_BATCH));
        Session {
            conn,
            out: Vec::new(),
            sent: 0,
            queued: 0,
            peer_closed: false,
        }
    }

    /// Takes ciphertext from the peer, all of it, and appends what it decrypts to `plain`
    /// (at most about `cipher.len()` bytes). A partial record is kept for the next call; an
    /// error means the peer broke TLS: the connection must close, after an attempt to write
    /// the alert now in `transmit`.
    pub fn handle_input(&mut self, mut cipher: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        while !cipher.is_empty() && !self.peer_closed {
            match self.conn.read_tls(&mut cipher) {
                // Only after close_notify (or a record rustls will refuse below).
                Ok(0) => self.peer_closed = true,
                Ok(_) => {}
                Err(e) => return Err(TlsError::Input(e)),
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    self.take_records();
                    return Err(TlsError::Protocol(e));
                }
            };
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                // rustls said how many bytes are there; reading them cannot come up short.
                if let Err(e) = self.conn.reader().read_exact(&mut plain[start..]) {
                    plain.truncate(start);
                    return Err(TlsError::Input(e));
                }
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
        }
        self.take_records();
        Ok(())
    }

    /// Encrypts as much of `bufs` as the transmit bound allows; returns the plaintext bytes
    /// taken (0 when `OUT_BATCH` bytes already wait for the socket).
    pub fn encrypt(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        let room = OUT_BATCH.saturating_sub(self.pending_len());
        if room == 0 {
            return 0;
        }
        let mut taken = 0;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(bufs.len());
        for b in bufs {
            if taken >= room {
                break;
            }
            let n = b.len().min(room - taken);
            slices.push(IoSlice::new(&b[..n]));
            taken += n;
        }
        // Within the bound rustls takes everything; an error is a connection rustls already
        // failed, which `handle_input` has reported.
        let n = self.conn.writer().write_vectored(&slices).unwrap_or(0);
        if n > 0 {
            self.queued += n + (n / RECORD + 1) * RECORD_OVERHEAD;
        }
        n
    }

    /// Writes what waits (records taken while reading first, then rustls's queue, in the order
    /// they were made) until all is written, Ok(true), or `w` would block, Ok(false).
    pub fn write_to(&mut self, w: &mut dyn Write) -> io::Result<bool> {
        while self.sent < self.out.len() {
            match w.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(w) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.queued = self.queued.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.queued = 0;
        Ok(true)
    }

    /// Ciphertext taken out of rustls and not yet written (handshake flights, alerts): what a
    /// connection about to close may still try to send.
    pub fn transmit(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// The socket took `n` bytes of `transmit`.
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }

    /// Bytes held for this peer: ciphertext waiting, and plaintext rustls queued before the
    /// handshake ended (none once it has).
    pub fn pending_len(&self) -> usize {
        self.transmit().len() + self.queued
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer ended TLS with close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues close_notify (sent by the next write of `transmit`).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        self.take_records();
    }

    /// The negotiated version and cipher suite, for a debug line.
    pub fn describe(&self) -> String {
        match (
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite(),
        ) {
            (Some(v), Some(s)) => format!("{v:?} {:?}", s.suite()),
            _ => "handshaking".into(),
        }
    }

    /// Moves the records rustls made into `out`, so their bytes are counted and bounded here
    /// (after reading; media records wait in rustls, see the module doc).
    fn take_records(&mut self) {
        if self.sent > 0 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        while self.conn.wants_write() {
            // Writing to a Vec cannot fail.
            if self.conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
        self.queued = 0;
    }
}
