//! Protocol control and user control messages, shared by the server and client sessions:
//! builders for what we send (Set Chunk Size, Window Acknowledgement Size, Set Peer Bandwidth,
//! Acknowledgement, User Control, Abort), the acknowledgement window counter, and the Ping
//! Response. The chunk decoder applies Set Chunk Size and Abort itself; commands are not here.

use bytes::Bytes;

use super::message::{
    Message, ABORT, ACKNOWLEDGEMENT, SET_CHUNK_SIZE, SET_PEER_BANDWIDTH, UC_PING_REQUEST,
    UC_PING_RESPONSE, USER_CONTROL, WINDOW_ACK_SIZE,
};
use crate::codec::chunk::{CSID_CONTROL, MAX_CHUNK_SIZE};

fn control(type_id: u8, payload: Vec<u8>) -> Message {
    Message {
        csid: CSID_CONTROL,
        timestamp: 0,
        type_id,
        stream_id: 0,
        payload: Bytes::from(payload),
    }
}

/// Set Chunk Size (type 1). Send it with the old size, then switch the encoder.
pub fn set_chunk_size_msg(size: u32) -> Message {
    control(
        SET_CHUNK_SIZE,
        (size & MAX_CHUNK_SIZE).to_be_bytes().to_vec(),
    )
}

/// Window Acknowledgement Size (type 5).
pub fn window_ack_size_msg(n: u32) -> Message {
    control(WINDOW_ACK_SIZE, n.to_be_bytes().to_vec())
}

/// Set Peer Bandwidth (type 6); `limit_type` 0 hard, 1 soft, 2 dynamic.
pub fn set_peer_bandwidth_msg(n: u32, limit_type: u8) -> Message {
    let mut p = n.to_be_bytes().to_vec();
    p.push(limit_type);
    control(SET_PEER_BANDWIDTH, p)
}

/// Acknowledgement (type 3) with the number of bytes received so far.
pub fn ack_msg(seq: u32) -> Message {
    control(ACKNOWLEDGEMENT, seq.to_be_bytes().to_vec())
}

/// User Control (type 4): event type (see `message::UC_*`) then its data.
pub fn user_control_msg(event: u16, data: &[u8]) -> Message {
    let mut p = event.to_be_bytes().to_vec();
    p.extend_from_slice(data);
    control(USER_CONTROL, p)
}

/// Abort (type 2) for the partial message on `csid`.
pub fn abort_msg(csid: u32) -> Message {
    control(ABORT, csid.to_be_bytes().to_vec())
}

/// Counts received bytes and says when an Acknowledgement is due: every `window` bytes, with the
/// real total (wrapping at 32 bits on the wire).
#[derive(Debug, Clone)]
pub struct AckCounter {
    /// Every byte counted so far.
    pub received: u64,
    /// The window the peer set (Window Acknowledgement Size); 0 disables acknowledgements.
    pub window: u32,
    last_ack: u64,
}

impl AckCounter {
    pub fn new(window: u32) -> AckCounter {
        AckCounter {
            received: 0,
            window,
            last_ack: 0,
        }
    }

    pub fn add(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// The sequence number to acknowledge, once per passed window.
    pub fn due(&mut self) -> Option<u32> {
        if self.window > 0 && self.received - self.last_ack >= self.window as u64 {
            self.last_ack = self.received;
            Some(self.received as u32)
        } else {
            None
        }
    }
}

pub(crate) fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// The Ping Response to a User Control Ping Request (same 4-byte timestamp), if it is one.
pub fn ping_reply(payload: &[u8]) -> Option<Message> {
    let event = u16::from_be_bytes(payload.get(..2)?.try_into().ok()?);
    if event != UC_PING_REQUEST {
        return None;
    }
    let stamp = payload.get(2..6)?;
    Some(user_control_msg(UC_PING_RESPONSE, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_message_builders() {
        assert_eq!(&set_chunk_size_msg(4096).payload[..], &[0, 0, 0x10, 0]);
        assert_eq!(
            &window_ack_size_msg(2_500_000).payload[..],
            &2_500_000u32.to_be_bytes()
        );
        let bw = set_peer_bandwidth_msg(2_500_000, 2);
        assert_eq!((bw.type_id, bw.payload.len(), bw.payload[4]), (6, 5, 2));
        assert_eq!(ack_msg(7).type_id, 3);
        let uc = user_control_msg(0, &[0, 0, 0, 1]);
        assert_eq!(&uc.payload[..], &[0, 0, 0, 0, 0, 1]);
        assert_eq!((uc.csid, uc.stream_id, uc.type_id), (2, 0, 4));
    }

    #[test]
    fn ping_request_gets_its_stamp_back() {
        let reply = ping_reply(&[0, 6, 1, 2, 3, 4]).unwrap();
        assert_eq!(&reply.payload[..], &[0, 7, 1, 2, 3, 4]);
        assert!(
            ping_reply(&[0, 7, 1, 2, 3, 4]).is_none(),
            "a response is not answered"
        );
        assert!(ping_reply(&[0, 6, 1, 2, 3]).is_none(), "short");
    }

    #[test]
    fn acknowledgement_once_per_window() {
        let mut a = AckCounter::new(100);
        a.add(99);
        assert_eq!(a.due(), None);
        a.add(1);
        assert_eq!(a.due(), Some(100));
        assert_eq!(a.due(), None);
        a.add(250);
        assert_eq!(a.due(), Some(350));
        a.window = 0;
        a.add(1000);
        assert_eq!(a.due(), None, "window 0: no acknowledgements");
    }
}
