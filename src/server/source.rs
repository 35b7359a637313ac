//! What a mio token (and a timer's token) stands for. The kind is in the token's top four bits
//! and the index in the rest, so one decode, with no table to keep in step, tells the loop which
//! driver an event or a timer goes to (`Server::ready`, `Server::timeout`). A connection's token
//! is its slab key (kind 0), so a connection's token, its id in the origin core and its index
//! are the same number, as before. Kinds that never get readiness (UDP peers, the loop's own
//! timers) have tokens too, for the timer heap.

use mio::Token;

const SHIFT: u32 = usize::BITS - 4;
const INDEX: usize = (1 << SHIFT) - 1;

const CONN: usize = 0;
const UPSTREAM: usize = 1;
const LISTENER: usize = 2;
const UDP: usize = 3;
const PEER: usize = 4;
const LOOP: usize = 5;
const ICE_TCP: usize = 6;
const WAKER: usize = 0xF;

/// An event source or timer owner, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An accepted TCP connection: its slab key in `Server::conns`.
    Conn(usize),
    /// The FLV gateway's pull: its index in `Gateway::pulls` (also the stream's publisher id).
    Upstream(usize),
    /// A TCP listener: its index in `Server::listeners`.
    Listener(usize),
    /// A UDP socket: `udp_index(endpoint, socket)`.
    Udp(usize),
    /// A peer of a UDP protocol (timers only: its datagrams come through its endpoint).
    Peer(usize),
    /// The loop's own timers (flush, sweep, stats, ...).
    Loop,
    /// WHEP's ICE-TCP: 0 the listener, else a connection's slab key + 1 (`ice_tcp`).
    IceTcp(usize),
    /// The cross-thread waker (Ctrl-C, a hook or recorder worker).
    Waker,
}

/// The sockets one UDP endpoint may have (one per address family, with room to spare).
pub const UDP_SOCKETS: usize = 4;

/// The `Source::Udp` index of socket `socket` of endpoint `endpoint`.
pub fn udp_index(endpoint: usize, socket: usize) -> usize {
    endpoint * UDP_SOCKETS + socket
}

impl Source {
    pub const fn token(self) -> Token {
        let (kind, index) = match self {
            Source::Conn(i) => (CONN, i),
            Source::Upstream(i) => (UPSTREAM, i),
            Source::Listener(i) => (LISTENER, i),
            Source::Udp(i) => (UDP, i),
            Source::Peer(i) => (PEER, i),
            Source::Loop => (LOOP, 0),
            Source::IceTcp(i) => (ICE_TCP, i),
            Source::Waker => return Token(usize::MAX),
        };
        debug_assert!(index <= INDEX);
        Token(kind << SHIFT | (index & INDEX))
    }

    /// The source of a token; `None` for a token no source makes (never registered by us).
    pub fn of(token: Token) -> Option<Source> {
        let Token(t) = token;
        let index = t & INDEX;
        Some(match t >> SHIFT {
            CONN => Source::Conn(index),
            UPSTREAM => Source::Upstream(index),
            LISTENER => Source::Listener(index),
            UDP => Source::Udp(index),
            PEER => Source::Peer(index),
            LOOP if index == 0 => Source::Loop,
            ICE_TCP => Source::IceTcp(index),
            WAKER if t == usize::MAX => Source::Waker,
            _ => return None,
        })
    }
}

/// What mio said about a source in one event (spurious events are possible: every driver reads
/// and writes until WouldBlock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Readable, or the peer closed, or an error is pending (a read reports it).
    pub readable: bool,
    pub writable: bool,
}

impl Ready {
    pub fn of(event: &mio::event::Event) -> Ready {
        Ready {
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_kinds_never_collide() {
        let all = [
            Source::Conn(0),
            Source::Conn(123_456),
            Source::Upstream(0),
            Source::Upstream(7),
            Source::Listener(3),
            Source::Udp(udp_index(1, 1)),
            Source::Peer(99),
            Source::Loop,
            Source::Waker,
        ];
        let mut tokens = Vec::new();
        for s in all {
            assert_eq!(Source::of(s.token()), Some(s), "{s:?}");
            tokens.push(s.token());
        }
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), all.len());
    }

    #[test]
    fn a_connection_token_is_its_slab_key() {
        assert_eq!(Source::Conn(42).token(), Token(42));
        assert_eq!(Source::of(Token(42)), Some(Source::Conn(42)));
    }

    #[test]
    fn unknown_tokens_are_none() {
        assert_eq!(Source::of(Token(0xE << SHIFT)), None);
        assert_eq!(Source::of(Token(LOOP << SHIFT | 1)), None);
        assert_eq!(Source::of(Token(usize::MAX - 1)), None);
    }
}
