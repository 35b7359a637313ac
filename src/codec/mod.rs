//! Leaf encodings that any layer may import: byte formats with no protocol state and no
//! knowledge of the crate's other modules (this module imports nothing from them).

pub mod chunk;
pub mod flv;
