//! End-to-end tests against the binary, grouped by what they cover.

mod access;
mod audio_bridge;
mod behaviour;
mod bridge;
mod cli;
mod codecs;
mod dashboard;
mod faults;
mod files;
mod http;
mod issue24;
mod live;
mod llhls;
mod platform;
// Trusted proxies at 127.0.0.2 and 127.0.0.3 need a socket bound to them (libc) and Linux's
// 127.0.0.0/8 loopback.
#[cfg(unix)]
mod proxy;
mod record;
mod recordings;
mod robustness;
mod selfsigned;
mod srt;
// RSS from /proc and raw loopback floods: Linux.
#[cfg(target_os = "linux")]
mod srt_abuse;
mod srt_hooks;
// Network namespaces, veth pairs and netem: Linux.
#[cfg(target_os = "linux")]
mod srt_loss;
mod srt_server;
mod timeouts;
mod timestamps;
mod tls;
mod upload;
mod webrtc;
mod webrtc_attacks;
mod whip;
mod whip_tcp;
