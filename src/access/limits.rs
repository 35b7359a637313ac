//! Limits that stop one client crowding out the rest: counts of connections (in all and per IP)
//! and publishers per IP against their caps, checks of stream and player counts the hub passes in,
//! a refusal counter per limit for `/metrics`, and a rate-limited log line per episode. The
//! per-address cap never applies to loopback or `--trusted-proxy` addresses (`trusted`); a
//! connection whose client turns out to be another address (a PROXY header, a forwarded-for
//! header) is moved to it with `readdress_connection`, which checks the cap again. Sans-IO:
//! `now_ms` (any monotonic milliseconds) is passed in; closing the newcomer's socket is the server's job.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use super::trusted::Trusted;
use super::LimitsConfig;

/// At most one log line per limit this often; the next line counts what was refused between.
pub const LOG_EVERY_MS: u64 = 10_000;

/// Without a known open-file limit, `--max-connections` defaults to this.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The `--max-connections` in force: the option, or three quarters of the open-file limit, so
/// recorders, logs and upstream connections always have descriptors left.
pub fn max_connections(cfg: &LimitsConfig, nofile: Option<u64>) -> usize {
    cfg.max_connections.unwrap_or(match nofile {
        Some(n) => usize::try_from(n / 4 * 3).unwrap_or(usize::MAX).max(16),
        None => DEFAULT_MAX_CONNECTIONS,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    Connections,
    PerIp,
    Streams,
    PlayersPerStream,
    PublishersPerIp,
    WaitingPerStream,
}

pub const ALL: [Limit; 6] = [
    Limit::Connections,
    Limit::PerIp,
    Limit::Streams,
    Limit::PlayersPerStream,
    Limit::PublishersPerIp,
    Limit::WaitingPerStream,
];

impl Limit {
    /// The option that sets it, also the `/metrics` label.
    pub fn option(self) -> &'static str {
        match self {
            Limit::Connections => "max-connections",
            Limit::PerIp => "max-per-ip",
            Limit::Streams => "max-streams",
            Limit::PlayersPerStream => "max-players-per-stream",
            Limit::PublishersPerIp => "max-publishers-per-ip",
            Limit::WaitingPerStream => "max-waiting-per-stream",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A newcomer over `limit` (whose cap is `max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitHit {
    pub limit: Limit,
    pub max: usize,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit {
            Limit::Connections => "too many connections",
            Limit::PerIp => "too many connections from this address",
            Limit::Streams => "too many streams",
            Limit::PlayersPerStream => "too many players of this stream",
            Limit::PublishersPerIp => "too many publishers from this address",
            Limit::WaitingPerStream => "too many players waiting for this stream",
        };
        write!(f, "{what} ({})", self.max)
    }
}

/// A refused newcomer, and the log line to write if this refusal opens a log period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub hit: LimitHit,
    pub log: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Episode {
    last_log: Option<u64>,
    /// Refusals since the last line.
    since: u64,
}

/// Caps (0 = none, except connections) and what is in use.
#[derive(Debug)]
pub struct Limits {
    caps: [usize; 6],
    connections: usize,
    per_ip: HashMap<IpAddr, usize>,
    publishers: HashMap<IpAddr, usize>,
    refused: [u64; 6],
    episodes: [Episode; 6],
    trusted: Trusted,
    proxy_protocol: bool,
}

impl Limits {
    pub fn new(cfg: &LimitsConfig, nofile: Option<u64>) -> Limits {
        Limits {
            caps: [
                max_connections(cfg, nofile),
                cfg.max_per_ip,
                cfg.max_streams,
                cfg.max_players_per_stream,
                cfg.max_publishers_per_ip,
                cfg.max_waiting_per_stream,
            ],
            connections: 0,
            per_ip: HashMap::new(),
            publishers: HashMap::new(),
            refused: [0; 6],
            episodes: [Episode::default(); 6],
            trusted: cfg.trusted_proxies.clone(),
            proxy_protocol: cfg.proxy_protocol,
        }
    }

    /// The `--trusted-proxy` blocks.
    pub fn trusted(&self) -> &Trusted {
        &self.trusted
    }

    /// `--proxy-protocol`: connections from trusted proxies start with a PROXY header.
    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    /// The cap of `limit` (0 = none).
    pub fn cap(&self, limit: Limit) -> usize {
        self.caps[limit.index()]
    }

    fn over(&self, limit: Limit, in_use: usize) -> bool {
        let cap = self.cap(limit);
        // The connection cap always applies; the others are off at 0.
        (cap > 0 || limit == Limit::Connections) && in_use >= cap
    }

    /// `from`: the address over its cap (per-address limits), named in the log line.
    fn refuse(&mut self, limit: Limit, from: Option<IpAddr>, now_ms: u64) -> Refused {
        let hit = LimitHit {
            limit,
            max: self.cap(limit),
        };
        self.refused[limit.index()] += 1;
        let ep = &mut self.episodes[limit.index()];
        ep.since += 1;
        let due = ep
            .last_log
            .is_none_or(|t| now_ms.saturating_sub(t) >= LOG_EVERY_MS);
        let log = due.then(|| {
            let mut line = format!("limit --{} {}: refusing newcomers", limit.option(), hit.max);
            if let Some(ip) = from {
                line.push_str(&format!(" from {ip}"));
            }
            if ep.since > 1 {
                line.push_str(&format!(" ({} refused since the last line)", ep.since));
            }
            if limit == Limit::PerIp {
                // A NAT or a proxy shows many people as one address: say how to serve them.
                line.push_str(
                    "; to lift it: --max-per-ip N (0 = no cap), or --trusted-proxy CIDR for a \
                     proxy in front of rtmpd (never capped; its PROXY or X-Forwarded-For header \
                     names each client)",
                );
            }
            ep.last_log = Some(now_ms);
            ep.since = 0;
            line
        });
        Refused { hit, log }
    }

    /// A new TCP connection from `ip`; on Ok it counts until `release_connection`.
    pub fn admit_connection(&mut self, ip: IpAddr, now_ms: u64) -> Result<(), Refused> {
        if self.over(Limit::Connections, self.connections) {
            return Err(self.refuse(Limit::Connections, None, now_ms));
        }
        self.check_per_ip(ip, now_ms)?;
        self.connections += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    fn check_per_ip(&mut self, ip: IpAddr, now_ms: u64) -> Result<(), Refused> {
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if !self.trusted.exempt(ip) && self.over(Limit::PerIp, from_ip) {
            return Err(self.refuse(Limit::PerIp, Some(ip), now_ms));
        }
        Ok(())
    }

    /// A connection counted for `from` turned out to be `to`'s (a trusted proxy named its
    /// client): counted for `to` from now on, if `to` is under its cap. On Err it stays `from`'s.
    pub fn readdress_connection(
        &mut self,
        from: IpAddr,
        to: IpAddr,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if from == to {
            return Ok(());
        }
        self.check_per_ip(to, now_ms)?;
        release(&mut self.per_ip, from);
        *self.per_ip.entry(to).or_insert(0) += 1;
        Ok(())
    }

    pub fn release_connection(&mut self, ip: IpAddr) {
        self.connections = self.connections.saturating_sub(1);
        release(&mut self.per_ip, ip);
    }

    /// A publisher from `ip` of a new stream, with `streams` streams live now; on Ok it counts
    /// until `release_publisher`.
    pub fn admit_publisher(
        &mut self,
        ip: IpAddr,
        streams: usize,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if self.over(Limit::Streams, streams) {
            return Err(self.refuse(Limit::Streams, None, now_ms));
        }
        let from_ip = self.publishers.get(&ip).copied().unwrap_or(0);
        if self.over(Limit::PublishersPerIp, from_ip) {
            return Err(self.refuse(Limit::PublishersPerIp, Some(ip), now_ms));
        }
        *self.publishers.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    pub fn release_publisher(&mut self, ip: IpAddr) {
        release(&mut self.publishers, ip);
    }

    /// A player of a stream that has `players` now (the hub counts them).
    pub fn admit_player(&mut self, players: usize, now_ms: u64) -> Result<(), Refused> {
        if self.over(Limit::PlayersPerStream, players) {
            return Err(self.refuse(Limit::PlayersPerStream, None, now_ms));
        }
        Ok(())
    }

    /// A player of a stream that has no publisher yet, with `waiting` such players already
    /// (each holds a connection and a hub entry until the publisher comes or it leaves).
    pub fn admit_waiting(&mut self, waiting: usize, now_ms: u64) -> Result<(), Refused> {
        if self.over(Limit::WaitingPerStream, waiting) {
            return Err(self.refuse(Limit::WaitingPerStream, None, now_ms));
        }
        Ok(())
    }

    /// Connections counted now.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Newcomers refused by `limit` since start (the `/metrics` counter).
    pub fn refused(&self, limit: Limit) -> u64 {
        self.refused[limit.index()]
    }

    /// `/metrics` lines: one counter per limit, labelled by its option.
    pub fn metrics(&self) -> String {
        let mut out = String::from(
            "# HELP rtmpd_limit_refused_total Newcomers refused by a limit.\n\
             # TYPE rtmpd_limit_refused_total counter\n",
        );
        for l in ALL {
            out.push_str(&format!(
                "rtmpd_limit_refused_total{{limit=\"{}\"}} {}\n",
                l.option(),
                self.refused(l)
            ));
        }
        out
    }
}

fn release(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        // Removed at zero, so the map never holds more entries than live connections.
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            max_connections: Some(3),
            max_per_ip: 2,
            max_streams: 2,
            max_players_per_stream: 1,
            max_publishers_per_ip: 1,
            max_waiting_per_stream: 2,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn connection_caps_refuse_the_newcomer() {
        let now = 1_000;
        let mut l = Limits::new(&cfg(), None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        l.admit_connection(a, now).unwrap();
        l.admit_connection(a, now).unwrap();
        let r = l.admit_connection(a, now).unwrap_err();
        assert_eq!(r.hit.limit, Limit::PerIp);
        let line = r.log.unwrap();
        assert!(
            line.starts_with("limit --max-per-ip 2: refusing newcomers from 192.0.2.1; to lift it: --max-per-ip N (0 = no cap), or --trusted-proxy CIDR"),
            "{line}"
        );
        l.admit_connection(b, now).unwrap();
        let r = l.admit_connection(b, now).unwrap_err();
        assert_eq!((r.hit.limit, r.hit.max), (Limit::Connections, 3));
        assert_eq!(l.connections(), 3);
        l.release_connection(a);
        l.admit_connection(b, now).unwrap();
        assert_eq!(
            (l.refused(Limit::PerIp), l.refused(Limit::Connections)),
            (1, 1)
        );
        for ip in [a, b, b] {
            l.release_connection(ip);
        }
        assert_eq!(l.connections(), 0);
        assert!(l.per_ip.is_empty(), "no entry outlives its connections");
        l.release_connection(a); // an extra release does not underflow
        assert_eq!(l.connections(), 0);
    }

    #[test]
    fn one_log_line_per_period() {
        let t0 = 1_000;
        let mut l = Limits::new(&cfg(), None);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        l.admit_connection(a, t0).unwrap();
        l.admit_connection(a, t0).unwrap();
        assert!(l.admit_connection(a, t0).unwrap_err().log.is_some());
        for s in 1..10 {
            let r = l.admit_connection(a, t0 + s * 1000).unwrap_err();
            assert_eq!(r.log, None, "at {s} s");
        }
        let r = l.admit_connection(a, t0 + LOG_EVERY_MS).unwrap_err();
        let line = r.log.unwrap();
        assert!(
            line.starts_with("limit --max-per-ip 2: refusing newcomers from 2001:db8::1 (10 refused since the last line); to lift it: "),
            "{line}"
        );
        assert_eq!(l.refused(Limit::PerIp), 11);
        assert!(l
            .metrics()
            .contains("rtmpd_limit_refused_total{limit=\"max-per-ip\"} 11\n"));
        assert!(l
            .metrics()
            .contains("rtmpd_limit_refused_total{limit=\"max-streams\"} 0\n"));
    }

    /// Issue 24 item 1: the per-address cap refused everyone behind one NAT or proxy address.
    #[test]
    fn issue_24_1_loopback_and_trusted_proxies_are_never_capped() {
        let now = 1_000;
        let mut c = cfg();
        c.max_connections = Some(10_000);
        c.trusted_proxies = Trusted(vec!["10.0.0.0/8".parse().unwrap()]);
        let mut l = Limits::new(&c, None);
        for ip in ["127.0.0.1", "::1", "10.1.2.3"] {
            let ip: IpAddr = ip.parse().unwrap();
            for _ in 0..1000 {
                l.admit_connection(ip, now).unwrap();
            }
        }
        assert_eq!(l.connections(), 3000);
        assert_eq!(l.refused(Limit::PerIp), 0);
        // The total still applies to them.
        let mut c = cfg();
        c.max_connections = Some(2);
        let mut l = Limits::new(&c, None);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        l.admit_connection(lo, now).unwrap();
        l.admit_connection(lo, now).unwrap();
        assert_eq!(
            l.admit_connection(lo, now).unwrap_err().hit.limit,
            Limit::Connections
        );
    }

    #[test]
    fn issue_24_1_a_readdressed_connection_counts_for_its_client() {
        let now = 1_000;
        let mut c = cfg();
        c.max_connections = Some(100);
        c.trusted_proxies = Trusted(vec!["10.0.0.1".parse().unwrap()]);
        let mut l = Limits::new(&c, None);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            l.admit_connection(proxy, now).unwrap();
        }
        l.readdress_connection(proxy, client, now).unwrap();
        l.readdress_connection(proxy, client, now).unwrap();
        let r = l.readdress_connection(proxy, client, now).unwrap_err();
        assert_eq!(r.hit.limit, Limit::PerIp);
        assert!(r.log.unwrap().contains("from 203.0.113.7"));
        // The refused one is still the proxy's; the others are the client's.
        assert_eq!(l.per_ip.get(&proxy), Some(&1));
        assert_eq!(l.per_ip.get(&client), Some(&2));
        assert_eq!(l.connections(), 3, "readdressing never changes the total");
        l.release_connection(client);
        l.readdress_connection(proxy, client, now).unwrap();
        l.readdress_connection(client, client, now).unwrap();
        l.release_connection(client);
        l.release_connection(client);
        assert!(l.per_ip.is_empty());
        assert_eq!(l.connections(), 0);
    }

    #[test]
    fn streams_players_and_publishers() {
        let now = 1_000;
        let mut l = Limits::new(&cfg(), None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        l.admit_publisher(a, 0, now).unwrap();
        assert_eq!(
            l.admit_publisher(a, 1, now).unwrap_err().hit.limit,
            Limit::PublishersPerIp
        );
        assert_eq!(
            l.admit_publisher(b, 2, now).unwrap_err().hit.limit,
            Limit::Streams
        );
        l.admit_publisher(b, 1, now).unwrap();
        l.release_publisher(a);
        l.admit_publisher(a, 1, now).unwrap();
        l.admit_player(0, now).unwrap();
        assert_eq!(
            l.admit_player(1, now).unwrap_err().hit.limit,
            Limit::PlayersPerStream
        );
    }

    #[test]
    fn zero_is_no_cap_and_the_default_follows_the_file_limit() {
        let now = 1_000;
        let open = LimitsConfig {
            max_connections: None,
            max_per_ip: 0,
            max_streams: 0,
            max_players_per_stream: 0,
            max_publishers_per_ip: 0,
            max_waiting_per_stream: 0,
            ..LimitsConfig::default()
        };
        let mut l = Limits::new(&open, Some(1024));
        assert_eq!(l.cap(Limit::Connections), 768);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..500 {
            l.admit_connection(a, now).unwrap();
            l.admit_publisher(a, 10_000, now).unwrap();
        }
        l.admit_player(1_000_000, now).unwrap();
        assert_eq!(max_connections(&open, None), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(max_connections(&open, Some(8)), 16);
        assert_eq!(max_connections(&cfg(), Some(1 << 20)), 3, "the option wins");
        let defaults = LimitsConfig::default();
        assert_eq!(defaults.max_per_ip, 200);
    }
}
