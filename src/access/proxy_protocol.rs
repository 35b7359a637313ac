//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a TCP proxy or load balancer
//! (nginx `proxy_protocol on`, HAProxy `send-proxy[-v2]`, cloud load balancers) sends before the
//! client's bytes, naming the client's address. Push parsing over bytes the caller buffers:
//! `parse` answers `Partial` until a header is complete, then the header and how many bytes it
//! took; `sniff` tells whether bytes could be the start of one. No sockets, no policy: whether a
//! header is expected, and from whom, is `server::proxied`'s business.
//!
//! Bounds: a v1 line is at most 107 bytes (the spec's limit); a v2 header's address block is
//! taken up to `V2_MAX_BLOCK` bytes (the spec allows 65,535; TLVs beyond the addresses are
//! skipped, never read), so a connection makes the server hold at most `MAX_HEADER` bytes here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the spec's worst case: TCP6 with two full addresses).
pub const V1_MAX: usize = 107;
/// The longest v2 address block (addresses + TLVs) accepted. The spec allows 65,535; what
/// proxies send is far less (AWS adds a VPC endpoint id, HAProxy a few TLS facts): 4 KiB leaves
/// room for those and bounds what one connection makes us hold before it is known.
pub const V2_MAX_BLOCK: usize = 4096;
/// The most bytes a header can take here.
pub const MAX_HEADER: usize = 16 + V2_MAX_BLOCK;

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    /// The client's address, when the header names one: `None` for v1 `UNKNOWN`, v2 `LOCAL`
    /// (the proxy's own health checks), and v2 families that carry no IP address (UNIX
    /// sockets, unspecified); the connection keeps the proxy's address then.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (on the proxy), when named.
    pub dest: Option<SocketAddr>,
}

/// `parse`'s answer when the bytes are not broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    /// A header, and the bytes it took; what follows is the client's.
    Done(Header, usize),
}

/// How the first bytes of a connection look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// Too few bytes to tell.
    Maybe,
    /// The start of a PROXY header (a v1 "PROXY " or the v2 signature).
    Proxy,
    /// Not a PROXY header: hand the bytes on as they are.
    Other,
}

/// A broken header: the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes are neither a v1 nor a v2 header.
    NotProxy,
    /// A v1 line longer than 107 bytes without its CRLF.
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    V1Syntax,
    /// A v2 header whose version nibble is not 2.
    V2Version,
    /// A v2 command other than LOCAL and PROXY.
    V2Command,
    /// A v2 address family or transport that is not defined.
    V2Family,
    /// A v2 address block shorter than its family's addresses.
    V2Short,
    /// A v2 address block over `V2_MAX_BLOCK`.
    V2TooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NotProxy => "not a PROXY protocol header",
            Error::V1TooLong => "PROXY v1 line longer than 107 bytes",
            Error::V1Syntax => "malformed PROXY v1 line",
            Error::V2Version => "PROXY v2 header with an unknown version",
            Error::V2Command => "PROXY v2 header with an unknown command",
            Error::V2Family => "PROXY v2 header with an unknown address family",
            Error::V2Short => "PROXY v2 address block shorter than its addresses",
            Error::V2TooLong => "PROXY v2 header longer than 4 KiB",
        })
    }
}

impl std::error::Error for Error {}

/// Whether `buf` (the first bytes of a connection) starts a PROXY header. RTMP (0x03), TLS
/// (0x16) and HTTP methods differ from both signatures at their first or second byte.
pub fn sniff(buf: &[u8]) -> Sniffed {
    let prefix_of = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        if buf[..n] != sig[..n] {
            None
        } else if n == sig.len() {
            Some(Sniffed::Proxy)
        } else {
            Some(Sniffed::Maybe)
        }
    };
    match (prefix_of(V1_PREFIX), prefix_of(&V2_SIGNATURE)) {
        (Some(Sniffed::Proxy), _) | (_, Some(Sniffed::Proxy)) => Sniffed::Proxy,
        (None, None) => Sniffed::Other,
        _ => Sniffed::Maybe,
    }
}

/// Parses the header at the start of `buf` (everything received so far). `Ok(Partial)` asks for
/// more; the caller bounds what it buffers by `MAX_HEADER` (this never asks for more than that).
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    match sniff(buf) {
        Sniffed::Maybe => Ok(Parsed::Partial),
        Sniffed::Other => Err(Error::NotProxy),
        Sniffed::Proxy if buf.starts_with(V1_PREFIX) => parse_v1(buf),
        Sniffed::Proxy => parse_v2(buf),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(Error::V1Syntax);
        }
        return if buf.len() >= V1_MAX {
            Err(Error::V1TooLong)
        } else {
            Ok(Parsed::Partial)
        };
    };
    match window.get(cr + 1) {
        None if cr + 1 >= V1_MAX => return Err(Error::V1TooLong),
        None => return Ok(Parsed::Partial),
        Some(b'\n') if !window[..cr].contains(&b'\n') => {}
        Some(_) => return Err(Error::V1Syntax),
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]).map_err(|_| Error::V1Syntax)?;
    let header = v1_fields(line)?;
    Ok(Parsed::Done(header, cr + 2))
}

/// The fields after "PROXY ": `TCP4|TCP6 src dst sport dport`, or `UNKNOWN` and anything.
fn v1_fields(line: &str) -> Result<Header, Error> {
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(Header {
            version: 1,
            source: None,
            dest: None,
        });
    }
    let mut f = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(Error::V1Syntax);
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>().map_err(|_| Error::V1Syntax)?.into(),
            dst.parse::<Ipv4Addr>().map_err(|_| Error::V1Syntax)?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().map_err(|_| Error::V1Syntax)?.into(),
            dst.parse::<Ipv6Addr>().map_err(|_| Error::V1Syntax)?.into(),
        ),
        _ => return Err(Error::V1Syntax),
    };
    Ok(Header {
        version: 1,
        source: Some(SocketAddr::new(src, v1_port(sport)?)),
        dest: Some(SocketAddr::new(dst, v1_port(dport)?)),
    })
}

/// A port in decimal, 0-65535, no sign and no leading zero (the spec's form).
fn v1_port(s: &str) -> Result<u16, Error> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(Error::V1Syntax);
    }
    s.parse().map_err(|_| Error::V1Syntax)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(Parsed::Partial);
    };
    let (ver_cmd, family) = (fixed[12], fixed[13]);
    let block = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2Version);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::V2Command),
    };
    if block > V2_MAX_BLOCK {
        return Err(Error::V2TooLong);
    }
    let Some(body) = buf.get(16..16 + block) else {
        return Ok(Parsed::Partial);
    };
    let took = 16 + block;
    let mut header = Header {
        version: 2,
        source: None,
        dest: None,
    };
    // LOCAL: the proxy speaks for itself; the family and addresses are ignored (spec 2.2).
    if local {
        return Ok(Parsed::Done(header, took));
    }
    let (af, transport) = (family >> 4, family & 0x0f);
    if af > 3 || transport > 2 {
        return Err(Error::V2Family);
    }
    // Only TCP over IPv4/IPv6 names a client address; UNSPEC, UNIX and datagram families keep
    // the proxy's address (the spec lets a receiver ignore what it does not use).
    let need = match af {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if body.len() < need {
        return Err(Error::V2Short);
    }
    if transport != 1 {
        return Ok(Parsed::Done(header, took));
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match af {
        1 => {
            let ip = |at: usize| IpAddr::from([body[at], body[at + 1], body[at + 2], body[at + 3]]);
            header.source = Some(SocketAddr::new(ip(0), port(8)));
            header.dest = Some(SocketAddr::new(ip(4), port(10)));
        }
        2 => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&body[at..at + 16]);
                IpAddr::from(o)
            };
            header.source = Some(SocketAddr::new(ip(0), port(32)));
            header.dest = Some(SocketAddr::new(ip(16), port(34)));
        }
        _ => {}
    }
    Ok(Parsed::Done(header, took))
}

/// A v2 PROXY header (command PROXY, TCP) from `source` to `dest`, with `tlv` bytes appended
/// to the address block: for tests and the test tools.
pub fn v2_header(source: SocketAddr, dest: SocketAddr, tlv: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    let mut block = Vec::new();
    match (source, dest) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            block.extend_from_slice(&s.port().to_be_bytes());
            block.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            block.extend_from_slice(&v6(s).octets());
            block.extend_from_slice(&v6(d).octets());
            block.extend_from_slice(&s.port().to_be_bytes());
            block.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    block.extend_from_slice(tlv);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A v1 PROXY line from `source` to `dest` (both of the same family).
pub fn v1_header(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        dest.ip(),
        source.port(),
        dest.port()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Feeds `bytes` with every split point the way a socket could deliver them: every prefix
    /// short of the header is Partial, the whole gives the same answer.
    fn parse_split(bytes: &[u8]) -> Result<Parsed, Error> {
        let whole = parse(bytes);
        if let Ok(Parsed::Done(_, n)) = whole {
            for cut in 0..n {
                assert_eq!(parse(&bytes[..cut]), Ok(Parsed::Partial), "cut at {cut}");
            }
        }
        whole
    }

    macro_rules! v1_table {
        ($($line:expr => $want:expr),* $(,)?) => {$(
            let mut input = $line.as_bytes().to_vec();
            input.extend_from_slice(b"\x03rest");
            let got = parse_split(&input).map(|p| match p {
                Parsed::Done(h, n) => {
                    assert_eq!(&input[n..], b"\x03rest", "{}", $line);
                    Some((h.source, h.dest))
                }
                Parsed::Partial => None,
            });
            assert_eq!(got, $want, "{:?}", $line);
        )*};
    }

    #[test]
    fn v1_lines() {
        let both = |s: &str, d: &str| Ok(Some((Some(sa(s)), Some(sa(d)))));
        v1_table! {
            "PROXY TCP4 192.0.2.1 198.51.100.2 56324 1935\r\n" => both("192.0.2.1:56324", "198.51.100.2:1935"),
            "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n" => both("[2001:db8::1]:65535", "[::1]:0"),
            "PROXY UNKNOWN\r\n" => Ok(Some((None, None))),
            "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n" => Ok(Some((None, None))),
            "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.1 198.51.100.2 56324 1935 x\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4  192.0.2.1 198.51.100.2 56324 1935\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 2001:db8::1 ::1 1 2\r\n" => Err(Error::V1Syntax),
            "PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.1 198.51.100.2 65536 1\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.1 198.51.100.2 +80 1\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.1 198.51.100.2 080 1\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.01 198.51.100.2 80 1\r\n" => Err(Error::V1Syntax),
            "PROXY UDP4 192.0.2.1 198.51.100.2 80 1\r\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.1 198.51.100.2 80 1\n" => Err(Error::V1Syntax),
            "PROXY TCP4 192.0.2.1 198.51.100.2 80 1\rX" => Err(Error::V1Syntax),
            "PROXY UNKNOWN x\ny\r\n" => Err(Error::V1Syntax),
        }
    }

    #[test]
    fn v1_is_bounded_at_107_bytes() {
        // The spec's longest line (UNKNOWN with two full IPv6 addresses) is exactly 107 bytes.
        let max = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(max.len(), V1_MAX);
        assert!(matches!(
            parse_split(max.as_bytes()),
            Ok(Parsed::Done(_, 107))
        ));
        let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
        assert_eq!(parse(long.as_bytes()), Err(Error::V1TooLong));
        assert_eq!(parse(&long.as_bytes()[..106]), Ok(Parsed::Partial));
        assert_eq!(
            parse(b"PROXY TCP4 192.0.2.1\xff 198.51.100.2 80 1\r\n"),
            Err(Error::V1Syntax)
        );
        // The CR as the 107th byte with the LF beyond the limit is too long too.
        let cr_last = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_MAX - 15));
        assert_eq!(parse(cr_last.as_bytes()), Err(Error::V1TooLong));
    }

    #[test]
    fn v2_headers() {
        let (s4, d4) = (sa("203.0.113.7:40000"), sa("198.51.100.1:1935"));
        let h = v2_header(s4, d4, &[]);
        assert_eq!(h.len(), 28);
        let mut input = h.clone();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse_split(&input),
            Ok(Parsed::Done(
                Header {
                    version: 2,
                    source: Some(s4),
                    dest: Some(d4)
                },
                28
            ))
        );
        let (s6, d6) = (sa("[2001:db8::7]:1"), sa("[2001:db8::1]:443"));
        // TLVs (AWS's VPC endpoint id, say) are skipped whole.
        let tlv = [&[0xea, 0x00, 0x05][..], b"vpce1"].concat();
        let h = v2_header(s6, d6, &tlv);
        assert_eq!(
            parse_split(&h),
            Ok(Parsed::Done(
                Header {
                    version: 2,
                    source: Some(s6),
                    dest: Some(d6)
                },
                16 + 36 + 8
            ))
        );
    }

    fn v2_raw(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, family]);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    #[test]
    fn v2_local_unspec_unix_and_udp_keep_the_proxy_address() {
        let none = |n| {
            Ok(Parsed::Done(
                Header {
                    version: 2,
                    source: None,
                    dest: None,
                },
                n,
            ))
        };
        // LOCAL (a health check), with or without an address block.
        assert_eq!(parse_split(&v2_raw(0x20, 0x00, &[])), none(16));
        assert_eq!(parse_split(&v2_raw(0x20, 0x11, &[9; 12])), none(28));
        assert_eq!(parse_split(&v2_raw(0x21, 0x00, &[])), none(16));
        assert_eq!(parse_split(&v2_raw(0x21, 0x31, &[0; 216])), none(232));
        assert_eq!(parse_split(&v2_raw(0x21, 0x12, &[1; 12])), none(28));
    }

    #[test]
    fn broken_v2_headers_are_refused() {
        assert_eq!(parse(&v2_raw(0x11, 0x11, &[0; 12])), Err(Error::V2Version));
        assert_eq!(parse(&v2_raw(0x22, 0x11, &[0; 12])), Err(Error::V2Command));
        assert_eq!(parse(&v2_raw(0x21, 0x41, &[0; 12])), Err(Error::V2Family));
        assert_eq!(parse(&v2_raw(0x21, 0x13, &[0; 12])), Err(Error::V2Family));
        assert_eq!(parse(&v2_raw(0x21, 0x11, &[0; 11])), Err(Error::V2Short));
        assert_eq!(parse(&v2_raw(0x21, 0x21, &[0; 12])), Err(Error::V2Short));
        // Over the bound: refused from the fixed part, before the block arrives.
        let big = v2_raw(0x21, 0x11, &vec![0; V2_MAX_BLOCK + 1]);
        assert_eq!(parse(&big[..16]), Err(Error::V2TooLong));
        let most = v2_raw(0x21, 0x11, &vec![0; V2_MAX_BLOCK]);
        assert!(matches!(parse(&most), Ok(Parsed::Done(_, MAX_HEADER))));
        assert_eq!(parse(&most[..MAX_HEADER - 1]), Ok(Parsed::Partial));
    }

    #[test]
    fn sniff_tells_protocols_apart_early() {
        assert_eq!(sniff(b""), Sniffed::Maybe);
        assert_eq!(sniff(b"\x03\x00\x00"), Sniffed::Other, "RTMP C0");
        assert_eq!(sniff(b"\x16\x03\x01"), Sniffed::Other, "TLS ClientHello");
        assert_eq!(sniff(b"G"), Sniffed::Other);
        assert_eq!(sniff(b"P"), Sniffed::Maybe);
        assert_eq!(sniff(b"PO"), Sniffed::Other, "POST");
        assert_eq!(sniff(b"PROXY"), Sniffed::Maybe);
        assert_eq!(sniff(b"PROXY "), Sniffed::Proxy);
        assert_eq!(sniff(b"\r\n\r\n\0"), Sniffed::Maybe);
        assert_eq!(sniff(b"\r\n\r\nGET"), Sniffed::Other);
        assert_eq!(sniff(&V2_SIGNATURE), Sniffed::Proxy);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NotProxy));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Every short prefix of every header kind, then pseudo-random junk after a signature.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 80) as usize;
            let mut b = if seed & 1 == 0 {
                V2_SIGNATURE.to_vec()
            } else {
                V1_PREFIX.to_vec()
            };
            let mut x = seed;
            for _ in 0..len {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                b.push((x >> 56) as u8);
            }
            if let Ok(Parsed::Done(_, n)) = parse(&b) {
                assert!(n <= b.len());
            }
        }
    }
}
