//! The UDP endpoint's tests that need no peer internals: a loopback endpoint end to end
//! (batches in and out, oversized datagrams, both address families, the metrics), and the test
//! protocol (`Echo`) and helpers the peers' in-memory tests (`peers.rs`) share.

use bytes::Bytes;

use super::*;
use crate::hub::HubConfig;

/// A protocol for the tests: a datagram "K<n>..." names peer n; every datagram a peer gets is
/// recorded and echoed; an unknown "PING" is answered "PONG" statelessly, the rest dropped.
#[derive(Default)]
pub(super) struct Echo {
    pub(super) got: Vec<(PeerId, SocketAddr, Vec<u8>)>,
    pub(super) unknown: usize,
    pub(super) timeouts: Vec<(PeerId, u64)>,
    pub(super) learn: bool,
}

impl UdpProtocol for Echo {
    fn route(&mut self, d: &Datagram) -> Option<PeerId> {
        let rest = d.data.strip_prefix(b"K")?;
        let digits: Vec<u8> = rest
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        std::str::from_utf8(&digits).ok()?.parse().ok()
    }
    fn receive(&mut self, peer: PeerId, d: &Datagram, cx: &mut UdpCx) {
        self.got.push((peer, d.from, d.data.to_vec()));
        if self.learn {
            cx.peers.bind(peer, d.socket, d.from);
        }
        let data = Bytes::copy_from_slice(d.data);
        cx.peers.send(peer, d.socket, d.from, data);
    }
    fn unknown(&mut self, d: &Datagram, cx: &mut UdpCx) {
        self.unknown += 1;
        if d.data == b"PING" {
            cx.peers
                .reply(d.socket, d.from, Bytes::from_static(b"PONG"));
        }
    }
    fn timeout(&mut self, peer: PeerId, cx: &mut UdpCx) {
        self.timeouts.push((peer, cx.now_ms));
    }
}

pub(super) fn core() -> Origin {
    Origin::new(HubConfig::default(), None)
}

pub(super) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

pub(super) fn dgram(from: SocketAddr, data: &[u8]) -> Datagram<'_> {
    Datagram {
        socket: 0,
        from,
        data,
    }
}

/// Receives on `client` until `want` datagrams came or 5 s passed.
fn recv_all(client: &std::net::UdpSocket, want: usize) -> Vec<Vec<u8>> {
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want && std::time::Instant::now() < deadline {
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

#[test]
fn loopback_datagrams_in_batches_out_in_batches_oversized_dropped() {
    let mut ep = UdpEndpoint::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let server = ep.local_addrs()[0];
    let poll = mio::Poll::new().unwrap();
    ep.register(poll.registry(), 0).unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = ep.peers.add_peer();
    ep.peers.bind(a, 0, client.local_addr().unwrap());
    const N: usize = 100;
    for i in 0..N {
        client
            .send_to(format!("datagram {i}").as_bytes(), server)
            .unwrap();
    }
    // One too large for a slot: dropped whole, counted.
    client.send_to(&vec![7u8; SLOT + 100], server).unwrap();
    let (mut proto, mut core) = (Echo::default(), core());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proto.got.len() < N && std::time::Instant::now() < deadline {
        ep.read(0, &mut proto, &mut core, 0).unwrap();
        ep.flush(poll.registry(), 0);
    }
    assert_eq!(proto.got.len(), N);
    for (i, g) in proto.got.iter().enumerate() {
        assert_eq!(g.2, format!("datagram {i}").as_bytes(), "in order, whole");
    }
    // The oversized one may come after the last read above.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ep.peers.counters.truncated == 0 && std::time::Instant::now() < deadline {
        ep.read(0, &mut proto, &mut core, 0).unwrap();
    }
    assert_eq!(ep.peers.counters.truncated, 1);
    assert_eq!(proto.got.len(), N, "never delivered in part");
    ep.flush(poll.registry(), 0);
    let echoes = recv_all(&client, N);
    assert_eq!(echoes.len(), N);
    assert_eq!(echoes[N - 1], format!("datagram {}", N - 1).as_bytes());
    let c = ep.peers.counters;
    assert_eq!((c.datagrams_in, c.datagrams_out), (N as u64, N as u64));
    if cfg!(target_os = "linux") {
        // recvmmsg and sendmmsg: many datagrams per system call.
        assert!(c.send_calls <= (N / BATCH + 2) as u64, "{c:?}");
        assert!(c.recv_calls < N as u64 / 2, "{c:?}");
    }
}

#[test]
fn loopback_ipv4_and_ipv6_sockets_answer_on_their_own_family() {
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::UdpSocket::bind(v6).is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let mut ep = UdpEndpoint::bind(&["127.0.0.1:0".parse().unwrap(), v6]).unwrap();
    let poll = mio::Poll::new().unwrap();
    ep.register(poll.registry(), 1).unwrap();
    let (s4, s6) = (ep.local_addrs()[0], ep.local_addrs()[1]);
    let c4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c6 = std::net::UdpSocket::bind(v6).unwrap();
    c4.send_to(b"PING", s4).unwrap();
    c6.send_to(b"PING", s6).unwrap();
    let (mut proto, mut core) = (Echo::default(), core());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proto.unknown < 2 && std::time::Instant::now() < deadline {
        ep.read(0, &mut proto, &mut core, 0).unwrap();
        ep.read(1, &mut proto, &mut core, 0).unwrap();
    }
    ep.flush(poll.registry(), 1);
    assert_eq!(recv_all(&c4, 1), vec![b"PONG".to_vec()]);
    assert_eq!(recv_all(&c6, 1), vec![b"PONG".to_vec()]);
    assert_eq!(ep.peers.counters.unknown, 2);
    let port = UdpPort {
        label: "test".into(),
        endpoint: ep,
        protocol: Box::new(proto),
    };
    let text = metrics(std::slice::from_ref(&port));
    assert!(
        text.contains("rtmpd_udp_unknown_total{endpoint=\"test\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("rtmpd_udp_datagrams_out_total{endpoint=\"test\"} 2\n"),
        "{text}"
    );
    assert!(metrics(&[]).is_empty());
}
