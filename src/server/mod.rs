//! The mio event loop. (being written)
pub fn run_origin(_c: crate::config::OriginConfig) -> std::io::Result<()> { Ok(()) }
