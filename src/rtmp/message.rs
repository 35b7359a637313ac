//! One whole RTMP message as the chunk layer assembles it (decoder) or takes it (encoder), and
//! the message type ids of the RTMP specification.

use bytes::Bytes;

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACKNOWLEDGEMENT: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF3: u8 = 15;
pub const SHARED_OBJECT_AMF3: u8 = 16;
pub const COMMAND_AMF3: u8 = 17;
pub const DATA_AMF0: u8 = 18;
pub const SHARED_OBJECT_AMF0: u8 = 19;
pub const COMMAND_AMF0: u8 = 20;
pub const AGGREGATE: u8 = 22;

/// User control event types.
pub const UC_STREAM_BEGIN: u16 = 0;
pub const UC_STREAM_EOF: u16 = 1;
pub const UC_STREAM_DRY: u16 = 2;
pub const UC_SET_BUFFER_LENGTH: u16 = 3;
pub const UC_STREAM_IS_RECORDED: u16 = 4;
pub const UC_PING_REQUEST: u16 = 6;
pub const UC_PING_RESPONSE: u16 = 7;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream id the message travelled (or will travel) on.
    pub csid: u32,
    /// Absolute timestamp in milliseconds (32-bit, wrapping), deltas already resolved.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}
