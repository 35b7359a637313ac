//! Command line -> validated configuration. (to be written)
