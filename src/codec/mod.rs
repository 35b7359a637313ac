//! Leaf encodings that any layer may import: byte formats with no sockets, no clock and no
//! knowledge of streams, sessions or the server.

pub mod chunked;
pub mod http_head;
pub mod ws;
