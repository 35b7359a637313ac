//! End-to-end tests against the binary, grouped by what they cover.

mod behaviour;
mod cli;
mod http;
mod live;
mod record;
mod robustness;
