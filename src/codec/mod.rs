//! Leaf encodings that any layer may import: calendar, chunk framing, ... Nothing here imports
//! another rtmpd module, so no layer above can make a cycle through it.

pub mod calendar;
