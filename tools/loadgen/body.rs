//! What carries the FLV bytes to a viewer: an HTTP response body (chunked, Content-Length or
//! close-delimited) or WebSocket messages. The framing itself is `rtmpd::codec` (tested there at
//! every split); this module only hands the payload to a sink and says when the server ended it.
//! No sockets.

use rtmpd::codec::chunked::ChunkedDecoder;
use rtmpd::codec::http_head::Framing;
use rtmpd::codec::ws::{self, WsEvent};

/// Largest WebSocket frame accepted: four FLV tags of the largest size `FlvReader` takes.
const MAX_WS_FRAME: u64 = crate::TAG_CAP as u64 * 4;

pub(crate) enum Body {
    Chunked(ChunkedDecoder),
    Length(u64),
    Close,
}

impl Body {
    pub(crate) fn new(framing: Framing) -> Body {
        match framing {
            Framing::Chunked => Body::Chunked(ChunkedDecoder::new()),
            Framing::Length(n) => Body::Length(n),
            // A 200 always has a body; Empty cannot come here, and would be no body at all.
            Framing::Empty => Body::Length(0),
            Framing::Close => Body::Close,
        }
    }

    /// Hands the body bytes of `data` to `sink`; true once the body ended by its own framing.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<bool, String> {
        match self {
            Body::Chunked(d) => {
                while let Some(part) = d.next(&mut data).map_err(|e| e.to_string())? {
                    sink(part)?;
                }
                Ok(d.is_done())
            }
            Body::Length(left) => {
                let n = (*left).min(data.len() as u64) as usize;
                sink(&data[..n])?;
                *left -= n as u64;
                Ok(*left == 0)
            }
            Body::Close => {
                sink(data)?;
                Ok(false)
            }
        }
    }
}

/// What a fed slice of WebSocket bytes asks for.
#[derive(Default)]
pub(crate) struct WsOutcome {
    pub(crate) pongs: Vec<Vec<u8>>,
    pub(crate) closed: bool,
}

/// The server's WebSocket frames: binary payloads to the sink, pings to answer, the close.
pub(crate) struct WsFrames(ws::WsReader);

impl Default for WsFrames {
    fn default() -> Self {
        WsFrames(ws::WsReader::new(MAX_WS_FRAME))
    }
}

impl WsFrames {
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<WsOutcome, String> {
        let mut out = WsOutcome::default();
        while !out.closed {
            let Some(ev) = self.0.next(&mut data).map_err(|e| e.to_string())? else {
                break;
            };
            match ev {
                // The server sends FLV as binary messages only; text is not FLV.
                WsEvent::Data {
                    text: false,
                    payload,
                } => sink(payload)?,
                WsEvent::Data { text: true, .. } | WsEvent::Pong(_) => {}
                WsEvent::Ping(p) => out.pongs.push(p),
                WsEvent::Close(_) => out.closed = true,
            }
        }
        Ok(out)
    }
}

/// A masked client frame (FIN set).
pub(crate) fn ws_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    ws::client_frame(opcode, payload, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::every_split;
    use rtmpd::codec::ws::server_frame;

    #[test]
    fn dechunk_any_split() {
        let input = b"5\r\nhello\r\n3;name=v\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        let (data, ended) = every_split(input, |parts| {
            let mut d = Body::new(Framing::Chunked);
            let mut got = Vec::new();
            let mut ended = false;
            for p in parts {
                ended = d
                    .feed(p, |x| {
                        got.extend_from_slice(x);
                        Ok(())
                    })
                    .unwrap();
            }
            (got, ended)
        });
        assert_eq!(data, b"helloabc0123456789");
        assert!(ended);
    }

    #[test]
    fn dechunk_rejects_garbage() {
        let chunked = || Body::new(Framing::Chunked);
        assert!(chunked().feed(b"zz\r\n", |_| Ok(())).is_err());
        assert!(chunked().feed(b"3\r\nabcXY", |_| Ok(())).is_err());
        assert!(chunked()
            .feed(b"ffffffffffffffffff\r\n", |_| Ok(()))
            .is_err());
    }

    #[test]
    fn websocket_frames_any_split() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut input = server_frame(2, b"FLV");
        input.extend(server_frame(9, b"hi"));
        input.extend(server_frame(2, &big[..300]));
        input.extend(server_frame(2, &[]));
        input.extend(server_frame(2, &big));
        input.extend(server_frame(8, &1000u16.to_be_bytes()));
        let (data, pongs, closed) = every_split(&input, |parts| {
            let mut r = WsFrames::default();
            let mut got = Vec::new();
            let mut pongs = Vec::new();
            let mut closed = false;
            for p in parts {
                let o = r
                    .feed(p, |x| {
                        got.extend_from_slice(x);
                        Ok(())
                    })
                    .unwrap();
                pongs.extend(o.pongs);
                closed |= o.closed;
            }
            (got, pongs, closed)
        });
        let mut want = b"FLV".to_vec();
        want.extend_from_slice(&big[..300]);
        want.extend_from_slice(&big);
        assert_eq!(data, want);
        assert_eq!(pongs, vec![b"hi".to_vec()]);
        assert!(closed);
    }

    #[test]
    fn websocket_refuses_masked_and_oversized_control() {
        let mut r = WsFrames::default();
        assert!(r.feed(&[0x82, 0x81, 1, 2, 3, 4, 5], |_| Ok(())).is_err());
        let mut r = WsFrames::default();
        assert!(r.feed(&[0x89, 126, 0, 200], |_| Ok(())).is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mask = [1, 2, 3, 4];
        let f = ws_frame(2, &payload, mask);
        assert_eq!(f[0], 0x82);
        assert_eq!(f[1], 0x80 | 126);
        assert_eq!(&f[4..8], &mask);
        let unmasked: Vec<u8> = f[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, payload);
    }
}
