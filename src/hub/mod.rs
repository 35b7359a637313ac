//! Streams, publishers, players: the GOP cache and the per-viewer bounded queues. (to be written)
