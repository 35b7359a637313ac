//! WebSocket for WS-FLV: the upgrade answer, and the client-to-server direction driven through
//! tungstenite's `WebSocketContext` over in-memory buffers (pings answered, close honoured), so the
//! event loop never blocks. Media frames to the client are pre-built by the hub (unmasked binary
//! frames shared by every viewer) and never pass through tungstenite.

use std::io::{self, Read, Write};

use tungstenite::protocol::{Message, Role, WebSocketConfig, WebSocketContext};

use super::request::Request;

/// Largest message we accept from a viewer (they send only control frames).
const MAX_INPUT_MESSAGE: usize = 64 * 1024;

/// True when the request asks for a WebSocket upgrade.
pub fn is_upgrade(req: &Request) -> bool {
    req.header_has_token("upgrade", "websocket") && req.header_has_token("connection", "upgrade")
}

/// The `101 Switching Protocols` answer, or why the upgrade request is unacceptable.
pub fn accept_response(req: &Request) -> Result<Vec<u8>, &'static str> {
    if req.method != "GET" {
        return Err("WebSocket upgrade must be a GET");
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err("WebSocket version must be 13");
    }
    let key = req
        .header("sec-websocket-key")
        .ok_or("missing Sec-WebSocket-Key")?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: rtmpd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nAccess-Control-Allow-Origin: *\r\n\r\n"
    )
    .into_bytes())
}

/// In-memory duplex: tungstenite reads what the socket gave us and writes into `output`.
#[derive(Default)]
struct Duplex {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the client's frames asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum WsInputEvent {
    /// Nothing that changes the connection (data messages from a viewer are ignored).
    Nothing,
    /// The client sent a close frame (our reply is in the output) or the close handshake is done.
    Closed,
}

/// The server side of one WebSocket, for the client-to-server direction and control replies.
pub struct WsSession {
    ctx: WebSocketContext,
    io: Duplex,
}

impl Default for WsSession {
    fn default() -> Self {
        Self::new()
    }
}

impl WsSession {
    pub fn new() -> WsSession {
        // Small buffers: a viewer sends only control frames, and tungstenite's 128 KiB defaults
        // would cost every WS-FLV viewer that much memory.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_INPUT_MESSAGE))
            .max_frame_size(Some(MAX_INPUT_MESSAGE));
        WsSession {
            ctx: WebSocketContext::new(Role::Server, Some(config)),
            io: Duplex::default(),
        }
    }

    /// Feeds bytes from the socket. Pongs and close replies are queued for `take_output`.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<WsInputEvent, tungstenite::Error> {
        if self.io.input.len() - self.io.pos + data.len() > 2 * MAX_INPUT_MESSAGE {
            return Err(tungstenite::Error::Capacity(
                tungstenite::error::CapacityError::MessageTooLong {
                    size: data.len(),
                    max_size: MAX_INPUT_MESSAGE,
                },
            ));
        }
        self.io.input.extend_from_slice(data);
        loop {
            match self.ctx.read(&mut self.io) {
                Ok(Message::Close(_)) => {
                    let _ = self.ctx.flush(&mut self.io);
                    return Ok(WsInputEvent::Closed);
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Pongs are queued by read(); flush writes them into our output.
                    let _ = self.ctx.flush(&mut self.io);
                    return Ok(WsInputEvent::Nothing);
                }
                Err(tungstenite::Error::ConnectionClosed) => return Ok(WsInputEvent::Closed),
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the close handshake from our side (the stream ended).
    pub fn close(&mut self) {
        let _ = self.ctx.close(&mut self.io, None);
        let _ = self.ctx.flush(&mut self.io);
    }

    /// Control frames to send (pong, close), already framed.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.io.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn accept_key_from_rfc6455() {
        let raw = b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (req, _) = crate::http::request::parse(raw).unwrap().unwrap();
        assert!(is_upgrade(&req));
        let resp = String::from_utf8(accept_response(&req).unwrap()).unwrap();
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn ping_gets_pong_split_anywhere() {
        let ping = masked(0x9, b"hi");
        for cut in 0..ping.len() {
            let mut ws = WsSession::new();
            assert_eq!(
                ws.handle_input(&ping[..cut]).unwrap(),
                WsInputEvent::Nothing
            );
            assert_eq!(
                ws.handle_input(&ping[cut..]).unwrap(),
                WsInputEvent::Nothing
            );
            assert_eq!(ws.take_output(), vec![0x8a, 2, b'h', b'i'], "cut {cut}");
        }
    }

    #[test]
    fn close_is_honoured() {
        let mut ws = WsSession::new();
        assert_eq!(
            ws.handle_input(&masked(0x8, &[0x03, 0xe8])).unwrap(),
            WsInputEvent::Closed
        );
        assert_eq!(ws.take_output()[0], 0x88);
    }

    #[test]
    fn unmasked_client_frame_is_an_error() {
        let mut ws = WsSession::new();
        assert!(ws.handle_input(&[0x89, 0]).is_err());
    }
}
