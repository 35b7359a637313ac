//! Client addresses behind proxies: the `--trusted-proxy CIDR` set, the addresses never capped
//! per address (loopback and that set), and the client a trusted HTTP proxy names in
//! `X-Forwarded-For` or `Forwarded` (RFC 7239). Pure functions over addresses and header values;
//! whether a connection's sender is trusted, and what changes when it is, is the server's call.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Forwarded-for entries looked at, from the right: more hops than this is not a real chain.
pub const MAX_HOPS: usize = 32;

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask(u32::from(a).into(), 32, self.bits) == u128::from(u32::from(n))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => mask(a.into(), 128, self.bits) == u128::from(n),
            _ => false,
        }
    }
}

/// `v` (a `width`-bit number) with the bits past the first `bits` cleared.
fn mask(v: u128, width: u8, bits: u8) -> u128 {
    if bits == 0 {
        return 0;
    }
    let keep = u32::from(width - bits);
    v >> keep << keep
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// The block's low bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let ip = canonical(addr.parse::<IpAddr>().map_err(|_| {
            format!("'{s}' is not an address or CIDR block (10.0.0.0/8, 2001:db8::/32)")
        })?);
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => width,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= width && b.bytes().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("'{s}': the prefix length must be 0-{width}"))?,
        };
        let net = match ip {
            IpAddr::V4(a) => {
                IpAddr::from((mask(u32::from(a).into(), 32, bits) as u32).to_be_bytes())
            }
            IpAddr::V6(a) => IpAddr::from(mask(a.into(), 128, bits).to_be_bytes()),
        };
        Ok(Cidr { net, bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// The `--trusted-proxy` blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trusted(pub Vec<Cidr>);

impl Trusted {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// Never capped per address: loopback (everything on this host, the README's reverse
    /// proxies included) and the trusted proxies.
    pub fn exempt(&self, ip: IpAddr) -> bool {
        canonical(ip).is_loopback() || self.contains(ip)
    }

    /// The client that a request from a trusted proxy comes from: the right-most address of
    /// `X-Forwarded-For` (or, without one, of `Forwarded: for=`) that is not itself a trusted
    /// proxy, as each proxy appends what it saw. An entry that is not an address (`unknown`, an
    /// obfuscated name, garbage) ends the walk: the last address before it is taken. `None`
    /// when the headers name no usable address. The caller checks that the sender is trusted.
    /// X-Forwarded-For carries no port: such an address has port 0.
    pub fn forwarded_client<'a>(
        &self,
        headers: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Option<SocketAddr> {
        let values = |name: &'static str| {
            headers
                .clone()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
        };
        let xff: Vec<&str> = values("x-forwarded-for").collect();
        let entries: Vec<Option<SocketAddr>> = if !xff.is_empty() {
            xff.iter().map(|e| node(e)).collect()
        } else {
            values("forwarded").map(forwarded_for).collect()
        };
        let mut last = None;
        for e in entries.iter().rev().take(MAX_HOPS) {
            let Some(addr) = *e else {
                break;
            };
            last = Some(addr);
            if !self.contains(addr.ip()) {
                break;
            }
        }
        last
    }
}

/// One node: `203.0.113.7`, `2001:db8::1`, `203.0.113.7:5000`, `[2001:db8::1]:5000` or
/// `[2001:db8::1]`.
fn node(s: &str) -> Option<SocketAddr> {
    let with_port = |a: SocketAddr| SocketAddr::new(canonical(a.ip()), a.port());
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(with_port(a));
    }
    let ip = s
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<IpAddr>()
        .ok()?;
    Some(SocketAddr::new(canonical(ip), 0))
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`,
/// `for="[2001:db8:cafe::17]:4711"`).
fn forwarded_for(element: &str) -> Option<SocketAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    node(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.9")), "v4 through a v6 socket");
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("2001:db8::1")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
        assert_eq!(
            "::ffff:10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_and_trusted_are_exempt() {
        let t = Trusted(vec!["10.0.0.0/8".parse().unwrap()]);
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "10.3.3.3",
        ] {
            assert!(t.exempt(ip(a)), "{a}");
        }
        assert!(!t.exempt(ip("192.0.2.1")));
        assert!(!Trusted::default().exempt(ip("10.3.3.3")));
        assert!(
            !t.contains(ip("127.0.0.1")),
            "loopback is exempt, not trusted"
        );
    }

    fn client(t: &Trusted, headers: &[(&str, &str)]) -> Option<String> {
        t.forwarded_client(headers.iter().map(|(n, v)| (*n, *v)))
            .map(|a| a.to_string())
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let t = Trusted(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        let one = |h: &str, v: &str| client(&t, &[(h, v)]);
        assert_eq!(
            one("X-Forwarded-For", "203.0.113.7").as_deref(),
            Some("203.0.113.7:0")
        );
        // A client that wrote its own header gets it kept on the left; the proxy's entry wins.
        assert_eq!(
            one("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.2").as_deref(),
            Some("203.0.113.7:0")
        );
        assert_eq!(
            client(
                &t,
                &[
                    ("X-Forwarded-For", "1.2.3.4"),
                    ("X-Forwarded-For", "198.51.100.9,10.1.1.1")
                ]
            )
            .as_deref(),
            Some("198.51.100.9:0"),
            "two headers are one list"
        );
        assert_eq!(
            one("X-Forwarded-For", "10.0.0.3, 10.0.0.2").as_deref(),
            Some("10.0.0.3:0")
        );
        assert_eq!(
            one("X-Forwarded-For", "[2001:db9::5]:4711").as_deref(),
            Some("[2001:db9::5]:4711")
        );
        assert_eq!(
            one("X-Forwarded-For", "203.0.113.7:5000").as_deref(),
            Some("203.0.113.7:5000")
        );
        assert_eq!(one("X-Forwarded-For", "unknown"), None);
        assert_eq!(
            one("X-Forwarded-For", "unknown, 10.0.0.2").as_deref(),
            Some("10.0.0.2:0")
        );
        assert_eq!(one("X-Forwarded-For", ""), None);
        assert_eq!(
            one("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43").as_deref(),
            Some("192.0.2.60:0")
        );
        assert_eq!(
            one(
                "Forwarded",
                "for=198.51.100.1, For=\"[2001:db9:cafe::17]:4711\", for=\"[2001:db8::2]\""
            )
            .as_deref(),
            Some("[2001:db9:cafe::17]:4711")
        );
        assert_eq!(
            one("Forwarded", "for=_hidden, for=10.0.0.1").as_deref(),
            Some("10.0.0.1:0")
        );
        assert_eq!(one("Forwarded", "proto=https"), None);
        assert_eq!(
            one("Forwarded", "for=\"[2001:db9::1]:80"),
            None,
            "unclosed quote"
        );
        // X-Forwarded-For first: a Forwarded header a client made up does not count then.
        assert_eq!(
            client(
                &t,
                &[
                    ("Forwarded", "for=6.6.6.6"),
                    ("X-Forwarded-For", "203.0.113.7")
                ]
            )
            .as_deref(),
            Some("203.0.113.7:0")
        );
        assert_eq!(client(&t, &[("Host", "x")]), None);
        let long = vec!["10.0.0.1"; 100].join(",");
        assert_eq!(one("X-Forwarded-For", &long).as_deref(), Some("10.0.0.1:0"));
    }
}
