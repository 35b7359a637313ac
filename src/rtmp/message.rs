//! The message vocabulary of RTMP: the type ids of the specification, `Message` (defined with
//! the encoder in `codec::chunk`, so the hub can use it without importing `rtmp`), and
//! `decode_message`, which reads a command or data message body by its type id. No chunking.

use crate::amf::{amf0, AmfError, Value};
pub use crate::codec::chunk::Message;

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

/// Command/data message payload -> values. Types 17 (AMF3 command) and 15 (AMF3 data) start
/// with a format byte that is skipped; their values are AMF0 in which any value may be the
/// AMF3 switch marker. Every other type id is read as plain AMF0 (20, 18 and the shared
/// object types are AMF0 bodies; anything else is the caller's mistake and decodes as such).
pub fn decode_message(type_id: u8, payload: &[u8]) -> Result<Vec<Value>, AmfError> {
    match type_id {
        COMMAND_AMF3 | DATA_AMF3 => amf0::decode_all(payload.get(1..).unwrap_or(&[])),
        _ => amf0::decode_all(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0::encode_all;

    #[test]
    fn amf3_messages_skip_their_format_byte() {
        // Type 17: format byte, then AMF0 values, one of them behind the AMF3 switch (0x11).
        let mut p = vec![0x00];
        p.extend(encode_all(&[Value::string("play"), Value::Number(0.0)]));
        p.extend_from_slice(&[0x11, 0x01]);
        assert_eq!(
            decode_message(COMMAND_AMF3, &p).unwrap(),
            vec![Value::string("play"), Value::Number(0.0), Value::Null]
        );
        assert_eq!(decode_message(DATA_AMF3, &[]).unwrap(), vec![]);
        assert_eq!(
            decode_message(COMMAND_AMF0, &encode_all(&[Value::Null])).unwrap(),
            vec![Value::Null]
        );
    }
}
