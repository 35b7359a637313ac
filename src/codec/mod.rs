//! Leaf encodings that any layer may import: byte and text formats with no protocol state and no
//! knowledge of the crate's other modules (nothing here imports another rtmpd module, so no
//! layer above can make a cycle through it).

pub mod bytes;
pub mod chunk;
pub mod chunked;
pub mod flv;
pub mod http_head;
pub mod json;
pub mod query;
pub mod ws;
