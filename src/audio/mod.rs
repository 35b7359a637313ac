//! The audio bridge: AAC or MP3 to Opus for the WebRTC viewers of an AAC or MP3 stream (WebRTC
//! carries Opus, not AAC or MP3). `aac_opus` is the transcoder (decode, resample to 48 kHz,
//! encode, timestamps),
//! `resample` its resampler, `worker` the thread that runs one per stream off the event loop,
//! with bounded queues both ways. No sockets, no clock, no hub: `server::webrtc` feeds it.
//! The other direction, Opus to AAC for the RTMP and FLV players and the HLS recorder of an
//! Opus stream: `opus_aac` (the transcoder) on `aac_worker` (its thread), driven by the hub
//! through `hub::bridge::AudioBridge`.
//! The codecs are pure Rust (rusty_aac, nanomp3, opus-rs; docs/codecs.md says why).

pub mod aac_opus;
pub mod aac_worker;
pub mod opus_aac;
pub mod resample;
#[cfg(test)]
pub(crate) mod testing;
pub mod worker;

pub use aac_opus::{AacToOpus, BridgeCounters, BridgeError, OpusPacket};
pub use worker::{Bridge, BridgeOutput};
