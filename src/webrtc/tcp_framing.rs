//! RFC 4571 framing for ICE-TCP (RFC 6544): every STUN, DTLS, RTP or RTCP packet on a TCP
//! connection has a 2-byte big-endian length in front. Push parsing: bytes in as they arrive,
//! whole packets out; an incomplete frame waits for more bytes, never an error. Memory is
//! bounded by one frame (64 KiB). An empty frame is a protocol error (no packet is empty),
//! which also stops a peer that would make us spin on zero-length frames.

use std::fmt;

/// The largest frame RFC 4571 can carry.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// The peer broke the framing: close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// A frame of length 0.
    EmptyFrame,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::EmptyFrame => write!(f, "ICE-TCP: an empty RFC 4571 frame"),
        }
    }
}

impl std::error::Error for FramingError {}

/// One TCP connection's reassembly state.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Appends `bytes` received on the connection. Call `next_packet` until `Ok(None)` after
    /// each push; held bytes stay below one frame plus what one push brought.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let Some(head) = self.buf.get(..2) else {
            return Ok(None);
        };
        let len = u16::from_be_bytes([head[0], head[1]]) as usize;
        if len == 0 {
            return Err(FramingError::EmptyFrame);
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        let packet = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Ok(Some(packet))
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Frames one packet for sending: `None` when it is too long for a 2-byte length (str0m's
/// datagrams are MTU-sized, so this does not happen in practice) or empty.
pub fn frame(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.is_empty() || packet.len() > MAX_FRAME {
        return None;
    }
    let mut out = Vec::with_capacity(2 + packet.len());
    out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    out.extend_from_slice(packet);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_out_whole_at_every_split() {
        let packets: Vec<Vec<u8>> = vec![vec![1], (0..=255).collect(), vec![7; 1500]];
        let stream: Vec<u8> = packets.iter().flat_map(|p| frame(p).unwrap()).collect();
        for split in 0..=stream.len() {
            let mut d = Deframer::new();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.push(part);
                while let Some(p) = d.next_packet().unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got, packets, "split at {split}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_and_limits() {
        let big = vec![9u8; MAX_FRAME];
        let mut d = Deframer::new();
        let framed = frame(&big).unwrap();
        for b in &framed[..framed.len() - 1] {
            d.push(std::slice::from_ref(b));
            assert_eq!(d.next_packet(), Ok(None));
        }
        d.push(&framed[framed.len() - 1..]);
        assert_eq!(d.next_packet(), Ok(Some(big)));
        assert_eq!(frame(&vec![0; MAX_FRAME + 1]), None);
        assert_eq!(frame(&[]), None);
        d.push(&[0, 0, 1]);
        assert_eq!(d.next_packet(), Err(FramingError::EmptyFrame));
    }
}
