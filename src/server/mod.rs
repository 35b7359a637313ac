//! The mio event loop. (to be written)
