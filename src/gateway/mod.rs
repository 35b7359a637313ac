//! The gateway modes' protocol parts: `flv`, the FLV relay's sans-IO upstream client (request,
//! response framing, demux, timestamp rebasing). The sockets and timers live in `server::upstream`.

pub mod flv;
