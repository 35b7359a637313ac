//! The SRT handshake body (HSv4 induction and HSv5 conclusion) and its extensions: HSREQ/HSRSP,
//! KMREQ/KMRSP, stream id, congestion control. Parse and encode only; the listener decides.

use super::packet::{ctrl, ControlHeader, HEADER_LEN};

/// The fixed part of a handshake: 12 words.
pub const HS_LEN: usize = 48;
pub const VERSION_4: u32 = 4;
pub const VERSION_5: u32 = 5;
/// `URQ_INDUCTION`, `URQ_CONCLUSION`; a rejection is `REJECT_BASE + reason`.
pub const TYPE_INDUCTION: u32 = 1;
pub const TYPE_CONCLUSION: u32 = 0xFFFF_FFFF;
pub const TYPE_WAVEAHAND: u32 = 0;
pub const TYPE_AGREEMENT: u32 = 0xFFFF_FFFE;
pub const REJECT_BASE: u32 = 1000;
/// What the listener puts in the extension field of its induction answer.
pub const SRT_MAGIC: u16 = 0x4A17;
/// `UDT_DGRAM`, the socket type of the caller's HSv4 induction.
pub const UDT_DGRAM: u16 = 2;

/// Extension flags of a conclusion's extension field.
pub const EXT_HSREQ: u16 = 1;
pub const EXT_KMREQ: u16 = 2;
pub const EXT_CONFIG: u16 = 4;

/// Extension block types.
pub const CMD_HSREQ: u16 = 1;
pub const CMD_HSRSP: u16 = 2;
pub const CMD_KMREQ: u16 = 3;
pub const CMD_KMRSP: u16 = 4;
pub const CMD_SID: u16 = 5;
pub const CMD_CONGESTION: u16 = 6;
pub const CMD_FILTER: u16 = 7;
pub const CMD_GROUP: u16 = 8;

/// SRT option flags of HSREQ/HSRSP.
pub const OPT_TSBPDSND: u32 = 0x01;
pub const OPT_TSBPDRCV: u32 = 0x02;
pub const OPT_HAICRYPT: u32 = 0x04;
pub const OPT_TLPKTDROP: u32 = 0x08;
pub const OPT_NAKREPORT: u32 = 0x10;
pub const OPT_REXMITFLG: u32 = 0x20;
pub const OPT_STREAM: u32 = 0x40;

/// The SRT version we announce (1.5.0: the version whose handshake we follow).
pub const SRT_VERSION: u32 = 0x0001_0500;
/// libsrt's cap on a stream id.
pub const MAX_STREAM_ID: usize = 512;

/// The HSREQ/HSRSP block: version, option flags and the two TSBPD delays in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtHs {
    pub version: u32,
    pub flags: u32,
    /// Latency the sender of this block wants for what it receives.
    pub recv_delay_ms: u16,
    /// Latency the sender of this block proposes for what it sends.
    pub send_delay_ms: u16,
}

/// A handshake and the extensions we understand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handshake {
    pub version: u32,
    pub encryption: u16,
    pub extension: u16,
    pub isn: u32,
    pub mtu: u32,
    pub flow_window: u32,
    pub hs_type: u32,
    pub socket_id: u32,
    pub cookie: u32,
    pub peer_ip: [u8; 16],
    pub srt: Option<SrtHs>,
    /// The KMREQ/KMRSP block, in network order as on the wire.
    pub km: Option<Vec<u8>>,
    /// The stream id, bytes in string order (the wire swaps each 4-byte word).
    pub stream_id: Option<Vec<u8>>,
    pub congestion: Option<Vec<u8>>,
    /// A packet filter or a group was asked for: neither is supported.
    pub unsupported: bool,
    /// The blocks are requests (HSREQ/KMREQ, from a caller) rather than responses (ours).
    pub request: bool,
    /// A stream id over 512 bytes was sent (and not kept): refused as a malformed id.
    pub stream_id_too_long: bool,
}

/// Why a handshake body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HsError {
    /// Shorter than the 48-byte fixed part.
    Short,
    /// An extension block runs past the datagram, or its body is the wrong size.
    BadExtension,
}

impl std::fmt::Display for HsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HsError::Short => "SRT handshake shorter than 48 bytes",
            HsError::BadExtension => "SRT handshake extension malformed",
        })
    }
}

impl std::error::Error for HsError {}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// libsrt writes strings as host-order 32-bit words that go out byte-swapped: each group of four
/// bytes on the wire is reversed. The same function undoes and does it.
fn swap_words(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len().next_multiple_of(4));
    for chunk in b.chunks(4) {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        w.reverse();
        out.extend_from_slice(&w);
    }
    out
}

/// A string extension decoded: word-swapped back and the zero padding cut.
fn string_ext(body: &[u8]) -> Vec<u8> {
    let mut s = swap_words(body);
    while s.last() == Some(&0) {
        s.pop();
    }
    s
}

impl Handshake {
    pub fn parse(body: &[u8]) -> Result<Handshake, HsError> {
        if body.len() < HS_LEN {
            return Err(HsError::Short);
        }
        let w1 = word(body, 4);
        let mut peer_ip = [0u8; 16];
        peer_ip.copy_from_slice(&body[32..48]);
        let mut hs = Handshake {
            version: word(body, 0),
            encryption: (w1 >> 16) as u16,
            extension: w1 as u16,
            isn: word(body, 8) & super::packet::SEQ_MASK,
            mtu: word(body, 12),
            flow_window: word(body, 16),
            hs_type: word(body, 20),
            socket_id: word(body, 24),
            cookie: word(body, 28),
            peer_ip,
            ..Handshake::default()
        };
        // Extensions only count in an HSv5 conclusion; an induction's trailing bytes are ignored.
        if hs.version < VERSION_5 || hs.hs_type != TYPE_CONCLUSION {
            return Ok(hs);
        }
        let mut rest = &body[HS_LEN..];
        while rest.len() >= 4 {
            let kind = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])) * 4;
            let ext = rest.get(4..4 + len).ok_or(HsError::BadExtension)?;
            match kind {
                CMD_HSREQ | CMD_HSRSP => {
                    hs.request = kind == CMD_HSREQ;
                    if ext.len() < 12 {
                        return Err(HsError::BadExtension);
                    }
                    let delays = word(ext, 8);
                    hs.srt = Some(SrtHs {
                        version: word(ext, 0),
                        flags: word(ext, 4),
                        recv_delay_ms: (delays >> 16) as u16,
                        send_delay_ms: delays as u16,
                    });
                }
                CMD_KMREQ | CMD_KMRSP => hs.km = Some(ext.to_vec()),
                CMD_SID => {
                    if ext.len() > MAX_STREAM_ID {
                        hs.stream_id_too_long = true;
                    } else {
                        hs.stream_id = Some(string_ext(ext));
                    }
                }
                CMD_CONGESTION => hs.congestion = Some(string_ext(ext)),
                CMD_FILTER | CMD_GROUP => hs.unsupported = true,
                _ => {}
            }
            rest = &rest[4 + len..];
        }
        Ok(hs)
    }

    /// The whole control packet: header (type handshake) and body with extensions.
    pub fn to_packet(&self, timestamp: u32, dest: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + HS_LEN + 64);
        ControlHeader::new(ctrl::HANDSHAKE, 0, timestamp, dest).write(&mut out);
        for w in [
            self.version,
            (u32::from(self.encryption) << 16) | u32::from(self.extension),
            self.isn,
            self.mtu,
            self.flow_window,
            self.hs_type,
            self.socket_id,
            self.cookie,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.peer_ip);
        if let Some(s) = &self.srt {
            // A request block when we are the one asking (tests act as the caller).
            let kind = if self.request { CMD_HSREQ } else { CMD_HSRSP };
            push_ext(&mut out, kind, 3);
            out.extend_from_slice(&s.version.to_be_bytes());
            out.extend_from_slice(&s.flags.to_be_bytes());
            let delays = (u32::from(s.recv_delay_ms) << 16) | u32::from(s.send_delay_ms);
            out.extend_from_slice(&delays.to_be_bytes());
        }
        if let Some(km) = &self.km {
            let kind = if self.request { CMD_KMREQ } else { CMD_KMRSP };
            let padded = km.len().next_multiple_of(4);
            push_ext(&mut out, kind, padded / 4);
            out.extend_from_slice(km);
            out.resize(out.len() + padded - km.len(), 0);
        }
        if let Some(sid) = &self.stream_id {
            let swapped = swap_words(sid);
            push_ext(&mut out, CMD_SID, swapped.len() / 4);
            out.extend_from_slice(&swapped);
        }
        if let Some(cc) = &self.congestion {
            let swapped = swap_words(cc);
            push_ext(&mut out, CMD_CONGESTION, swapped.len() / 4);
            out.extend_from_slice(&swapped);
        }
        out
    }
}

fn push_ext(out: &mut Vec<u8>, kind: u16, words: usize) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(words as u16).to_be_bytes());
}

/// SRT rejection reasons (libsrt `SRT_REJECT_REASON`) and the access-control codes (1000 + HTTP-like)
/// we answer with. On the wire the handshake type is `1000 + code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// SRT_REJ_RESOURCE: out of connections.
    Resource,
    /// SRT_REJ_ROGUE: a broken handshake.
    Rogue,
    /// SRT_REJ_VERSION: not HSv5.
    Version,
    /// SRT_REJ_BADSECRET: the passphrase does not unwrap the key.
    BadSecret,
    /// SRT_REJ_UNSECURE: one side encrypts and the other does not.
    Unsecure,
    /// SRT_REJ_MESSAGEAPI: stream (file) mode, we speak live mode only.
    MessageApi,
    /// SRT_REJ_CONGESTION: a congestion controller other than `live`.
    Congestion,
    /// SRT_REJ_FILTER: a packet filter (FEC) was asked for.
    Filter,
    /// SRT_REJ_GROUP: bonding groups.
    Group,
    /// SRT_REJ_TIMEOUT: the server did not decide in time.
    Timeout,
    /// 1400: the stream id is malformed.
    BadRequest,
    /// 1401: credentials are needed.
    Unauthorized,
    /// 1403: the access policy said no.
    Forbidden,
    /// 1404: no such stream to play.
    NotFound,
    /// 1405: the mode is neither publish nor request.
    BadMode,
    /// 1409: the stream already has a publisher.
    Conflict,
}

impl RejectReason {
    /// The number libsrt reports (`srt_getrejectreason`).
    pub fn code(self) -> u32 {
        match self {
            RejectReason::Resource => 3,
            RejectReason::Rogue => 4,
            RejectReason::Version => 8,
            RejectReason::BadSecret => 10,
            RejectReason::Unsecure => 11,
            RejectReason::MessageApi => 12,
            RejectReason::Congestion => 13,
            RejectReason::Filter => 14,
            RejectReason::Group => 15,
            RejectReason::Timeout => 16,
            RejectReason::BadRequest => 1400,
            RejectReason::Unauthorized => 1401,
            RejectReason::Forbidden => 1403,
            RejectReason::NotFound => 1404,
            RejectReason::BadMode => 1405,
            RejectReason::Conflict => 1409,
        }
    }

    /// The reason a rejection handshake type carries, if it is one.
    pub fn code_of_type(hs_type: u32) -> Option<u32> {
        (REJECT_BASE..TYPE_AGREEMENT)
            .contains(&hs_type)
            .then(|| hs_type - REJECT_BASE)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::Resource => "too many connections",
            RejectReason::Rogue => "malformed handshake",
            RejectReason::Version => "not an HSv5 caller",
            RejectReason::BadSecret => "wrong passphrase",
            RejectReason::Unsecure => "encryption mismatch (one side has no passphrase)",
            RejectReason::MessageApi => "stream (file) mode is not supported",
            RejectReason::Congestion => "only live congestion control is supported",
            RejectReason::Filter => "packet filters are not supported",
            RejectReason::Group => "bonding groups are not supported",
            RejectReason::Timeout => "no decision in time",
            RejectReason::BadRequest => "malformed stream id",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::Forbidden => "forbidden",
            RejectReason::NotFound => "no such stream",
            RejectReason::BadMode => "mode must be publish or request",
            RejectReason::Conflict => "stream already published",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srt::packet::Packet;

    fn conclusion() -> Handshake {
        Handshake {
            version: VERSION_5,
            encryption: 2,
            extension: EXT_HSREQ | EXT_KMREQ | EXT_CONFIG,
            isn: 12345,
            mtu: 1500,
            flow_window: 8192,
            hs_type: TYPE_CONCLUSION,
            socket_id: 777,
            cookie: 0xDEAD_BEEF,
            peer_ip: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            srt: Some(SrtHs {
                version: SRT_VERSION,
                flags: OPT_TSBPDSND | OPT_TSBPDRCV,
                recv_delay_ms: 120,
                send_delay_ms: 200,
            }),
            km: Some(vec![0x12, 0x20, 0x29, 0x01, 9, 9, 9, 9]),
            stream_id: Some(b"#!::r=live/s,m=publish".to_vec()),
            congestion: Some(b"live".to_vec()),
            unsupported: false,
            stream_id_too_long: false,
            request: true,
        }
    }

    #[test]
    fn conclusion_round_trips_with_extensions() {
        let hs = conclusion();
        let pkt = hs.to_packet(5, 0);
        let Packet::Control(h, body) = Packet::parse(&pkt).unwrap() else {
            panic!("not control")
        };
        assert_eq!(h.kind, ctrl::HANDSHAKE);
        assert_eq!(Handshake::parse(body).unwrap(), hs);
    }

    /// libsrt sends "abcdefg" as the words "dcba" "\0gfe" (each word byte-swapped).
    #[test]
    fn stream_id_words_are_byte_swapped_on_the_wire() {
        let mut hs = conclusion();
        hs.stream_id = Some(b"abcdefg".to_vec());
        hs.km = None;
        hs.srt = None;
        hs.congestion = None;
        let pkt = hs.to_packet(0, 0);
        let ext = &pkt[HEADER_LEN + HS_LEN..];
        assert_eq!(ext, b"\x00\x05\x00\x02dcba\x00gfe");
        let back = Handshake::parse(&pkt[HEADER_LEN..]).unwrap();
        assert_eq!(back.stream_id.as_deref(), Some(&b"abcdefg"[..]));
    }

    #[test]
    fn hostile_extensions_are_errors_not_panics() {
        let pkt = conclusion().to_packet(0, 0);
        let body = &pkt[HEADER_LEN..];
        assert_eq!(Handshake::parse(&body[..47]), Err(HsError::Short));
        // Every truncation either parses or fails cleanly.
        for cut in HS_LEN..body.len() {
            let _ = Handshake::parse(&body[..cut]);
        }
        let mut long = body[..HS_LEN].to_vec();
        long.extend_from_slice(&[0, 5, 0, 129]);
        long.extend_from_slice(&[b'a'; 516]);
        let hs = Handshake::parse(&long).unwrap();
        assert!(hs.stream_id_too_long && hs.stream_id.is_none());
        let mut past = body[..HS_LEN].to_vec();
        past.extend_from_slice(&[0, 5, 0xFF, 0xFF, b'a']);
        assert_eq!(Handshake::parse(&past), Err(HsError::BadExtension));
    }

    #[test]
    fn reject_codes_map_to_handshake_types() {
        assert_eq!(RejectReason::BadSecret.code(), 10);
        assert_eq!(RejectReason::code_of_type(1010), Some(10));
        assert_eq!(RejectReason::code_of_type(2403), Some(1403));
        assert_eq!(RejectReason::code_of_type(TYPE_CONCLUSION), None);
        assert_eq!(RejectReason::code_of_type(TYPE_INDUCTION), None);
    }
}
