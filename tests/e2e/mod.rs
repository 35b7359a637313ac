//! End-to-end tests against the binary, grouped by what they cover.

mod access;
mod behaviour;
mod cli;
mod codecs;
mod dashboard;
mod faults;
mod files;
mod http;
mod live;
mod llhls;
mod platform;
mod record;
mod robustness;
mod srt;
mod timestamps;
mod tls;
