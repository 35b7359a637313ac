//! SRT packet headers and control bodies (draft-sharabayko-srt section 3): parse and encode, no
//! state. The handshake body lives in `handshake.rs`.

use std::fmt;

/// Every SRT packet starts with a 16-byte header.
pub const HEADER_LEN: usize = 16;
/// Sequence numbers are 31 bits.
pub const SEQ_MASK: u32 = 0x7FFF_FFFF;
/// Message numbers are 26 bits.
pub const MSGNO_MASK: u32 = 0x03FF_FFFF;

/// `a + n` in the 31-bit sequence space.
pub fn seq_add(a: u32, n: u32) -> u32 {
    a.wrapping_add(n) & SEQ_MASK
}

/// `a - b` in the 31-bit sequence space, as a signed distance (valid within 2^30).
pub fn seq_diff(a: u32, b: u32) -> i32 {
    ((a.wrapping_sub(b) << 1) as i32) >> 1
}

/// Control packet types (draft section 3.2).
pub mod ctrl {
    pub const HANDSHAKE: u16 = 0;
    pub const KEEPALIVE: u16 = 1;
    pub const ACK: u16 = 2;
    pub const NAK: u16 = 3;
    pub const SHUTDOWN: u16 = 5;
    pub const ACKACK: u16 = 6;
    pub const DROPREQ: u16 = 7;
    /// User-defined type; libsrt carries in-stream key refresh (KMREQ/KMRSP) under it.
    pub const EXT: u16 = 0x7FFF;
}

/// Where a data packet sits in its message (the PP bits).
pub const PP_SOLO: u8 = 0b11;

/// A malformed packet: the datagram is dropped (and counted), never answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the 16-byte header.
    Short,
    /// A control body shorter than its type requires.
    BadBody,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketError::Short => "SRT datagram shorter than its 16-byte header",
            PacketError::BadBody => "SRT control body too short for its type",
        })
    }
}

impl std::error::Error for PacketError {}

/// The header of a data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub seq: u32,
    /// PP: 0b10 first, 0b00 middle, 0b01 last, 0b11 solo.
    pub position: u8,
    pub in_order: bool,
    /// KK: 0 clear, 1 even key, 2 odd key.
    pub key: u8,
    pub rexmit: bool,
    pub msgno: u32,
    pub timestamp: u32,
    pub dest: u32,
}

/// The header of a control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlHeader {
    pub kind: u16,
    pub subtype: u16,
    pub info: u32,
    pub timestamp: u32,
    pub dest: u32,
}

/// One parsed datagram; bodies borrow from it.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Data(DataHeader, &'a [u8]),
    Control(ControlHeader, &'a [u8]),
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Packet<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if b.len() < HEADER_LEN {
            return Err(PacketError::Short);
        }
        let (w0, w1, timestamp, dest) = (word(b, 0), word(b, 4), word(b, 8), word(b, 12));
        let body = &b[HEADER_LEN..];
        if w0 & 0x8000_0000 == 0 {
            let h = DataHeader {
                seq: w0,
                position: (w1 >> 30) as u8,
                in_order: w1 & (1 << 29) != 0,
                key: ((w1 >> 27) & 0b11) as u8,
                rexmit: w1 & (1 << 26) != 0,
                msgno: w1 & MSGNO_MASK,
                timestamp,
                dest,
            };
            Ok(Packet::Data(h, body))
        } else {
            let h = ControlHeader {
                kind: ((w0 >> 16) & 0x7FFF) as u16,
                subtype: w0 as u16,
                info: w1,
                timestamp,
                dest,
            };
            Ok(Packet::Control(h, body))
        }
    }

    /// The destination socket id (0 for a connection request).
    pub fn dest(&self) -> u32 {
        match self {
            Packet::Data(h, _) => h.dest,
            Packet::Control(h, _) => h.dest,
        }
    }
}

impl DataHeader {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.seq & SEQ_MASK).to_be_bytes());
        let w1 = (u32::from(self.position & 0b11) << 30)
            | (u32::from(self.in_order) << 29)
            | (u32::from(self.key & 0b11) << 27)
            | (u32::from(self.rexmit) << 26)
            | (self.msgno & MSGNO_MASK);
        out.extend_from_slice(&w1.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.dest.to_be_bytes());
    }
}

impl ControlHeader {
    pub fn new(kind: u16, info: u32, timestamp: u32, dest: u32) -> ControlHeader {
        ControlHeader {
            kind,
            subtype: 0,
            info,
            timestamp,
            dest,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let w0 = 0x8000_0000 | (u32::from(self.kind & 0x7FFF) << 16) | u32::from(self.subtype);
        out.extend_from_slice(&w0.to_be_bytes());
        out.extend_from_slice(&self.info.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.dest.to_be_bytes());
    }
}

/// The body of a full ACK (draft section 3.2.4); a light ACK carries only `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// The first sequence number not yet received in order.
    pub next: u32,
    pub rtt_us: u32,
    pub rtt_var_us: u32,
    /// Free space in the receive buffer, in packets.
    pub avail: u32,
    pub pkt_rate: u32,
    pub capacity: u32,
    pub byte_rate: u32,
}

impl Ack {
    /// A light ACK (4 bytes) fills only `next`; anything shorter is malformed.
    pub fn parse(body: &[u8]) -> Result<(Ack, bool), PacketError> {
        if body.len() < 4 {
            return Err(PacketError::BadBody);
        }
        let mut a = Ack {
            next: word(body, 0) & SEQ_MASK,
            ..Ack::default()
        };
        let full = body.len() >= 16;
        if full {
            a.rtt_us = word(body, 4);
            a.rtt_var_us = word(body, 8);
            a.avail = word(body, 12);
        }
        if body.len() >= 28 {
            a.pkt_rate = word(body, 16);
            a.capacity = word(body, 20);
            a.byte_rate = word(body, 24);
        }
        Ok((a, full))
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        for w in [
            self.next,
            self.rtt_us,
            self.rtt_var_us,
            self.avail,
            self.pkt_rate,
            self.capacity,
            self.byte_rate,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }
}

/// Encodes a loss list: a single number as itself, a range as `first | 1<<31, last`.
pub fn write_loss_list(ranges: &[(u32, u32)], out: &mut Vec<u8>) {
    for &(first, last) in ranges {
        if first == last {
            out.extend_from_slice(&(first & SEQ_MASK).to_be_bytes());
        } else {
            out.extend_from_slice(&((first & SEQ_MASK) | 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&(last & SEQ_MASK).to_be_bytes());
        }
    }
}

/// Decodes a loss list into inclusive ranges; a dangling range start is malformed. At most
/// `max` ranges are returned (a NAK cannot make us walk more than that).
pub fn parse_loss_list(body: &[u8], max: usize) -> Result<Vec<(u32, u32)>, PacketError> {
    let mut out = Vec::new();
    let mut words = body.chunks_exact(4).map(|c| word(c, 0));
    while let Some(w) = words.next() {
        if out.len() >= max {
            break;
        }
        if w & 0x8000_0000 != 0 {
            let last = words.next().ok_or(PacketError::BadBody)? & SEQ_MASK;
            let first = w & SEQ_MASK;
            if seq_diff(last, first) < 0 {
                return Err(PacketError::BadBody);
            }
            out.push((first, last));
        } else {
            out.push((w, w));
        }
    }
    Ok(out)
}

/// A control packet with a 4-byte zero body, as libsrt sends keep-alive, shutdown and ACKACK.
pub fn simple_control(kind: u16, info: u32, timestamp: u32, dest: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 4);
    ControlHeader::new(kind, info, timestamp, dest).write(&mut out);
    out.extend_from_slice(&[0; 4]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_arithmetic_wraps_at_31_bits() {
        assert_eq!(seq_add(SEQ_MASK, 1), 0);
        assert_eq!(seq_add(SEQ_MASK - 1, 3), 1);
        assert_eq!(seq_diff(1, SEQ_MASK), 2);
        assert_eq!(seq_diff(SEQ_MASK, 1), -2);
        assert_eq!(seq_diff(100, 40), 60);
    }

    #[test]
    fn data_header_round_trips() {
        let h = DataHeader {
            seq: 0x1234_5678,
            position: PP_SOLO,
            in_order: false,
            key: 2,
            rexmit: true,
            msgno: 77,
            timestamp: 123_456,
            dest: 0xABCD,
        };
        let mut b = Vec::new();
        h.write(&mut b);
        b.extend_from_slice(b"payload");
        assert_eq!(Packet::parse(&b), Ok(Packet::Data(h, &b"payload"[..])));
    }

    #[test]
    fn control_header_round_trips() {
        let mut h = ControlHeader::new(ctrl::EXT, 9, 10, 11);
        h.subtype = 3;
        let mut b = Vec::new();
        h.write(&mut b);
        assert_eq!(Packet::parse(&b), Ok(Packet::Control(h, &[][..])));
        assert_eq!(Packet::parse(&b[..15]), Err(PacketError::Short));
    }

    #[test]
    fn loss_lists_round_trip_and_reject_dangling_ranges() {
        let ranges = [(5, 5), (7, 9), (SEQ_MASK, 1)];
        let mut b = Vec::new();
        write_loss_list(&ranges, &mut b);
        assert_eq!(parse_loss_list(&b, 10).unwrap(), ranges);
        assert_eq!(parse_loss_list(&b, 2).unwrap(), ranges[..2]);
        assert_eq!(
            parse_loss_list(&b[..8], 10),
            Err(PacketError::BadBody),
            "range start without its end"
        );
        let mut backwards = Vec::new();
        write_loss_list(&[(9, 7)], &mut backwards);
        assert_eq!(parse_loss_list(&backwards, 10), Err(PacketError::BadBody));
    }

    #[test]
    fn light_and_full_acks_parse() {
        let a = Ack {
            next: 42,
            rtt_us: 1000,
            rtt_var_us: 500,
            avail: 8000,
            pkt_rate: 1,
            capacity: 2,
            byte_rate: 3,
        };
        let mut b = Vec::new();
        a.write(&mut b);
        assert_eq!(Ack::parse(&b), Ok((a, true)));
        assert_eq!(Ack::parse(&b[..4]).unwrap().0.next, 42);
        assert!(!Ack::parse(&b[..4]).unwrap().1);
        assert_eq!(Ack::parse(&b[..3]), Err(PacketError::BadBody));
    }
}
