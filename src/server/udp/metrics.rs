//! The UDP endpoints' counters (`UdpCounters`, kept by each endpoint's `UdpPeers`) and their
//! `/metrics` lines, with each protocol's own lines after them. It counts nothing itself.

use super::UdpPort;

/// An endpoint's counters since start (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// Datagrams out dropped because their peer's queue (or the reply queue) was full.
    pub dropped_out: u64,
    /// Datagrams in that no peer claimed (answered or not).
    pub unknown: u64,
    /// Datagrams in larger than `SLOT`, dropped.
    pub truncated: u64,
    /// Receive or send errors (a datagram each).
    pub errors: u64,
    /// System calls that read or sent a batch.
    pub recv_calls: u64,
    pub send_calls: u64,
}

/// The endpoints' counters in the Prometheus text format (nothing without endpoints).
pub fn metrics(ports: &[UdpPort]) -> String {
    use std::fmt::Write;
    let mut m = String::new();
    if ports.is_empty() {
        return m;
    }
    let mut metric = |name: &str, kind: &str, help: &str, value: &dyn Fn(&UdpPort) -> String| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in ports {
            let _ = writeln!(m, "{name}{{endpoint=\"{}\"}} {}", p.label, value(p));
        }
    };
    let c = |p: &UdpPort| p.endpoint.peers.counters;
    metric(
        "rtmpd_udp_peers",
        "gauge",
        "Peers of a UDP endpoint.",
        &|p| p.endpoint.peers.len().to_string(),
    );
    metric(
        "rtmpd_udp_datagrams_in_total",
        "counter",
        "Datagrams received.",
        &|p| c(p).datagrams_in.to_string(),
    );
    metric(
        "rtmpd_udp_datagrams_out_total",
        "counter",
        "Datagrams sent.",
        &|p| c(p).datagrams_out.to_string(),
    );
    metric(
        "rtmpd_udp_bytes_in_total",
        "counter",
        "Bytes received (UDP payloads).",
        &|p| c(p).bytes_in.to_string(),
    );
    metric(
        "rtmpd_udp_bytes_out_total",
        "counter",
        "Bytes sent (UDP payloads).",
        &|p| c(p).bytes_out.to_string(),
    );
    metric(
        "rtmpd_udp_dropped_out_total",
        "counter",
        "Datagrams out dropped: their peer's queue was full.",
        &|p| c(p).dropped_out.to_string(),
    );
    metric(
        "rtmpd_udp_unknown_total",
        "counter",
        "Datagrams in that no peer claimed (answered statelessly or dropped).",
        &|p| c(p).unknown.to_string(),
    );
    metric(
        "rtmpd_udp_truncated_total",
        "counter",
        "Datagrams in too large for a read slot, dropped.",
        &|p| c(p).truncated.to_string(),
    );
    metric(
        "rtmpd_udp_recv_calls_total",
        "counter",
        "Receive calls that returned datagrams (recvmmsg takes several a call on Linux).",
        &|p| c(p).recv_calls.to_string(),
    );
    metric(
        "rtmpd_udp_errors_total",
        "counter",
        "Datagrams lost to a receive or send error.",
        &|p| c(p).errors.to_string(),
    );
    for p in ports {
        p.protocol.metrics(&mut m);
    }
    m
}
