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
use crate::access::trusted::canonical;

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
                    // nginx on a dual-stack socket names IPv4 clients as ::ffff:a.b.c.d.
                    let client = SocketAddr::new(canonical(client.ip()), client.port());
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
                    let _ = conn.socket.write(&crate::server::reply::http_limit(&r.hit));
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
                let reply = crate::server::reply::http_limit(&r.hit);
                self.http_reply(token, reply, false);
                false
            }
        }
    }
}

/// A note for the protocol-error line of a connection whose bytes begin with a PROXY header
/// while `--proxy-protocol` is off (a proxy set up to send one, rtmpd not told): what to do.
pub(super) fn hint(first: &[u8]) -> &'static str {
    match pp::sniff(first) {
        Sniffed::Proxy => {
            " (it began with a PROXY protocol header: for a proxy that sends one, start rtmpd with \
             --trusted-proxy ADDRESS --proxy-protocol)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(expect: bool) -> Pre {
        Pre {
            buf: Vec::new(),
            expect,
        }
    }

    /// Feeds `bytes` one at a time; the first settled step and how many bytes it took to get there.
    fn feed(p: &mut Pre, bytes: &[u8]) -> (Step, usize) {
        for (i, b) in bytes.iter().enumerate() {
            match p.step(std::slice::from_ref(b)) {
                Step::Wait => {}
                s => return (s, i + 1),
            }
        }
        (Step::Wait, bytes.len())
    }

    #[test]
    fn a_trusted_header_is_taken_and_what_follows_handed_on_byte_by_byte() {
        let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let dest: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        for header in [
            pp::v1_header(client, dest),
            pp::v2_header(client, dest, &[1, 0, 0]),
        ] {
            let mut input = header.clone();
            input.extend_from_slice(&[3; 10]);
            let (step, used) = feed(&mut pre(true), &input);
            let Step::Pass(Some(addr), rest, _) = step else {
                panic!("not settled")
            };
            assert_eq!((addr, used, rest.len()), (client, header.len(), 0));
            // Bytes that came in the same read as the header are handed on, none dropped.
            let Step::Pass(_, rest, _) = pre(true).step(&input) else {
                panic!()
            };
            assert_eq!(rest, [3; 10]);
        }
    }

    #[test]
    fn untrusted_bytes_pass_untouched_and_headers_are_refused() {
        for first in [
            &b"\x03\x00\x00\x00"[..],
            b"\x16\x03\x01",
            b"GET / HTTP/1.1\r\n",
            b"POST /",
        ] {
            let Step::Pass(None, rest, _) = pre(false).step(first) else {
                panic!("{first:?}")
            };
            assert_eq!(rest, first);
        }
        // "P" alone waits; "PO" (POST) is not a header: both bytes go on.
        let mut p = pre(false);
        assert!(matches!(p.step(b"P"), Step::Wait));
        assert!(matches!(p.step(b"O"), Step::Pass(None, ref r, _) if r == b"PO"));
        let (step, used) = feed(&mut pre(false), b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
        assert!(matches!(step, Step::Refuse(ref w) if w.contains("not a --trusted-proxy")));
        assert_eq!(used, 6, "refused at the signature, before the address");
        let (step, used) = feed(&mut pre(false), &pp::V2_SIGNATURE);
        assert!(matches!(step, Step::Refuse(_)));
        assert_eq!(used, 12);
    }

    #[test]
    fn a_trusted_connection_without_a_header_or_with_a_long_one_is_refused() {
        let (step, _) = feed(&mut pre(true), b"GET / HTTP/1.1\r\n");
        assert!(matches!(step, Step::Refuse(ref w) if w.contains("without a PROXY header")));
        let (step, used) = feed(&mut pre(true), &[b'P'; 10]);
        assert!(matches!(step, Step::Refuse(_)), "PPP...");
        assert_eq!(used, 2);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(500, b'x');
        let (step, used) = feed(&mut pre(true), &long);
        assert!(matches!(step, Step::Refuse(ref w) if w.contains("107")));
        assert_eq!(used, pp::V1_MAX);
        // v2 over the bound: refused from its length field, nothing more buffered.
        let mut big = pp::V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (step, used) = feed(&mut pre(true), &big);
        assert!(matches!(step, Step::Refuse(ref w) if w.contains("4 KiB")));
        assert_eq!(used, 16);
    }
}
