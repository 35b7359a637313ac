//! The client's address behind a trusted proxy (issue 24 item 1). With `--proxy-protocol`,
//! every accepted connection passes a pre-stage before TLS and its protocol (`Pre`): from a
//! `--trusted-proxy` address it must start with a PROXY header, whose client address becomes the
//! connection's `peer` (the per-address cap checked again for it); from anywhere else a PROXY
//! header is refused and other bytes go on untouched. HTTP requests from a trusted sender take
//! their client from `X-Forwarded-For`/`Forwarded` (`http_forwarded`). The parsing is
//! `access::proxy_protocol` and `access::trusted`; this file moves bytes and addresses.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use log::{debug, info, warn};

use super::conn::Listener;
use super::Server;
use crate::access::limits::Limits;
use crate::access::proxy_protocol::{self as pp, Parsed, Sniffed};

/// The bytes of a connection read before its PROXY header is settled.
pub(super) struct Pre {
    buf: Vec<u8>,
    /// From a trusted proxy: a header must come. Otherwise one must not.
    expect: bool,
}

/// The pre-stage for a connection from `ip`, when `--proxy-protocol` is on.
pub(super) fn pre_stage(limits: &Limits, ip: IpAddr) -> Option<Box<Pre>> {
    limits.proxy_protocol().then(|| {
        Box::new(Pre {
            buf: Vec::new(),
            expect: limits.trusted().contains(ip),
        })
    })
}

/// What the pre-stage made of the bytes so far.
enum Step {
    Wait,
    /// Settled: the client's address, if a header named one, and the bytes after the header.
    Pass(Option<SocketAddr>, Vec<u8>, u8),
    Refuse(String),
}

impl Pre {
    fn step(&mut self, data: &[u8]) -> Step {
        if self.buf.len() >= pp::MAX_HEADER {
            // parse() refuses before this; kept so the buffer is bounded whatever it answers.
            return Step::Refuse("PROXY header too long".into());
        }
        self.buf.extend_from_slice(data);
        if !self.expect {
            return match pp::sniff(&self.buf) {
                Sniffed::Maybe => Step::Wait,
                Sniffed::Other => Step::Pass(None, std::mem::take(&mut self.buf), 0),
                Sniffed::Proxy => {
                    Step::Refuse("sent a PROXY header but is not a --trusted-proxy; refused".into())
                }
            };
        }
        match pp::parse(&self.buf) {
            Ok(Parsed::Partial) => Step::Wait,
            Ok(Parsed::Done(h, n)) => Step::Pass(h.source, self.buf.split_off(n), h.version),
            Err(pp::Error::NotProxy) => Step::Refuse(
                "a --trusted-proxy connection without a PROXY header (--proxy-protocol is on); refused"
                    .into(),
            ),
            Err(e) => Step::Refuse(format!("{e}; refused")),
        }
    }
}

impl Server {
    /// Bytes read from a connection still in its pre-stage.
    pub(super) fn proxy_input(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Some(pre) = conn.pre.as_mut() else {
            return;
        };
        match pre.step(data) {
            Step::Wait => {}
            Step::Refuse(why) => {
                info!("{} {}: {why}", conn.kind(), conn.peer);
                self.close(token, "PROXY header refused");
            }
            Step::Pass(client, rest, version) => {
                conn.pre = None;
                if let Some(client) = client {
                    let proxy = conn.peer;
                    if !self.readdress(token, client) {
                        return;
                    }
                    debug!("{client} via proxy {proxy} (PROXY v{version})");
                }
                if !rest.is_empty() {
                    self.deliver(token, &rest);
                }
            }
        }
    }

    /// Hands a connection's plaintext-or-ciphertext bytes on, as `on_readable` does.
    fn deliver(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if conn.tls.is_some() {
            return self.tls_input(token, data);
        }
        match conn.listener {
            Listener::Rtmp => self.rtmp_input(token, data),
            Listener::Http | Listener::Web => self.http_input(token, data),
        }
    }

    /// The connection's client is `client` from now on (a PROXY header named it): counted for
    /// it if it is under the per-address cap, else refused (503 for plain HTTP) and closed.
    fn readdress(&mut self, token: usize, client: SocketAddr) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        match self
            .core
            .limits
            .readdress_connection(conn.peer.ip(), client.ip(), self.now_ms)
        {
            Ok(()) => {
                conn.peer = client;
                conn.hop = client;
                true
            }
            Err(r) => {
                if let Some(line) = r.log {
                    warn!("{line}");
                }
                if conn.listener != Listener::Rtmp && conn.tls.is_none() {
                    let _ = conn.socket.write(&crate::access::reply::http_limit(&r.hit));
                }
                self.totals.refused += 1;
                self.close(token, "over the per-address cap");
                false
            }
        }
    }

    /// An HTTP request: from a trusted sender, its client is the one `X-Forwarded-For` or
    /// `Forwarded` names (or the sender itself when they name none), counted against the
    /// per-address cap from this request on. False when that refused the request (answered
    /// 503 and closing after it).
    pub(super) fn http_forwarded(
        &mut self,
        token: usize,
        req: &crate::http::request::Request,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        let trusted = self.core.limits.trusted();
        if !trusted.contains(conn.hop.ip()) {
            return true;
        }
        let headers = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let client = trusted.forwarded_client(headers).unwrap_or(conn.hop);
        if client == conn.peer {
            return true;
        }
        match self
            .core
            .limits
            .readdress_connection(conn.peer.ip(), client.ip(), self.now_ms)
        {
            Ok(()) => {
                conn.peer = client;
                true
            }
            Err(r) => {
                if let Some(line) = r.log {
                    warn!("{line}");
                }
                self.totals.refused += 1;
                let reply = crate::access::reply::http_limit(&r.hit);
                self.http_reply(token, reply, false);
                false
            }
        }
    }
}
