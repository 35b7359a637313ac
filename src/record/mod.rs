//! Recorder worker pool and sinks. (to be written)
