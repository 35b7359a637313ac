//! Containers: frames in, bytes out. No files, no sockets, no clock.

pub mod bmff;
pub mod flv;
pub mod flv_demux;
pub mod fmp4;
pub mod hls;
pub mod m3u8;
pub mod mp4;
pub mod sample_entry;
pub mod ts;
pub mod ts_demux;
