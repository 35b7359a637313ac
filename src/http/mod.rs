//! HTTP/1.x for the live ports and the static service: request parsing (httparse, with limits),
//! responses, routing, WebSocket framing, and the static file server's pure parts (path cleaning,
//! conditional requests, MIME and cache policy, listings, the access-log line, the responder) and
//! the pages built into the binary. No file system and no sockets: `server::fs` opens the files.

pub mod access_log;
pub mod conditional;
pub mod date;
pub mod embedded;
pub mod files;
pub mod listing;
pub mod mime;
pub mod path;
pub mod request;
pub mod response;
pub mod route;
pub mod ws;
