//! RTMP, sans-IO: the handshake, the chunk stream, commands, and the server and client sessions.
//! Bytes in, events and bytes out; no sockets and no clock anywhere in this module.

pub mod chunk;
pub mod client;
pub mod command;
pub mod control;
pub mod handshake;
pub mod media_message;
pub mod message;
pub mod session;
