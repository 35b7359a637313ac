//! SRT (Secure Reliable Transport) in listener mode for caller clients, sans-IO like every other
//! protocol here: `Listener` takes every datagram of the UDP port and `now`, and gives datagrams
//! to send, events (publish/play requests with their stream id, payload in order, closes) and the
//! next deadline. Owns: the HSv4 induction and HSv5 conclusion with SYN cookies, stream ids,
//! latency negotiation and TSBPD, ACK/ACKACK/NAK and retransmission, keep-alive and timeouts,
//! AES-CTR encryption with a passphrase. Does not own: sockets and clocks (`server/`), the access
//! policy (answered through `Listener::accept`/`reject`), MPEG-TS (`mux/`).
//!
//! - `packet`: headers, ACK and loss-list bodies, sequence arithmetic.
//! - `handshake`: the handshake body, its extensions, the reject reasons.
//! - `streamid`: `#!::r=app/stream,m=publish` and the short forms.
//! - `crypto`: keying material, PBKDF2, AES key wrap, AES-CTR.
//! - `conn`: one established connection (receive and send buffers, timers, stats).
//! - `listener`: routing, cookies, the handshake decisions, `accept`/`reject`.

pub mod conn;
pub mod crypto;
pub mod handshake;
pub mod listener;
pub mod packet;
pub mod streamid;
#[cfg(test)]
mod tests;

pub use conn::{CloseReason, SendFull, Stats};
pub use handshake::RejectReason;
pub use listener::{ConnId, Event, Listener, ListenerConfig, ListenerStats, Transmit};
pub use streamid::{Mode, StreamId};
