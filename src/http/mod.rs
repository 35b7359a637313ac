//! HTTP/1.x for the live ports and the static service: request parsing (httparse, with limits),
//! responses, routing, WebSocket framing, static files and the pages built into the binary.

pub mod embedded;
pub mod files;
pub mod request;
pub mod response;
pub mod route;
pub mod ws;
