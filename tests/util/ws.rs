//! A blocking WS-FLV reader: tungstenite's client over a std `TcpStream`, collecting the binary
//! frames (the FLV bytes) and recording how the connection ended.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::{Error as WsError, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsEnd {
    TimeLimit,
    /// The server sent a close frame.
    CloseFrame,
    /// The TCP connection ended without a close frame.
    Dropped,
}

#[derive(Debug)]
pub struct WsFlv {
    /// The binary messages' payloads, concatenated.
    pub data: Vec<u8>,
    pub binary_messages: usize,
    /// Text messages (the server should send none).
    pub text_messages: usize,
    pub end: WsEnd,
    /// A protocol error while reading, if any.
    pub error: Option<String>,
}

/// Why a WS-FLV connection was not established.
#[derive(Debug)]
pub enum WsConnectError {
    /// The server answered the upgrade with this HTTP status (and body).
    Status(u16, String),
    Other(String),
}

/// Opens `ws://addr/path` and reads for at most `max_duration` (or until the server ends it).
pub fn ws_get_flv(
    addr: SocketAddr,
    path: &str,
    max_duration: Duration,
) -> Result<WsFlv, WsConnectError> {
    let deadline = Instant::now() + max_duration;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| WsConnectError::Other(e.to_string()))?;
    sock.set_nodelay(true).ok();
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let url = format!("ws://{addr}/{}", path.trim_start_matches('/'));
    let (mut ws, _resp) = match tungstenite::client(url.as_str(), sock) {
        Ok(x) => x,
        Err(tungstenite::HandshakeError::Failure(WsError::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(WsConnectError::Status(resp.status().as_u16(), body));
        }
        Err(e) => return Err(WsConnectError::Other(e.to_string())),
    };
    let mut out = WsFlv {
        data: Vec::new(),
        binary_messages: 0,
        text_messages: 0,
        end: WsEnd::TimeLimit,
        error: None,
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            // Leave politely; the result does not depend on it.
            let _ = ws.close(None);
            let _ = ws.flush();
            return Ok(out);
        }
        let _ = ws
            .get_mut()
            .set_read_timeout(Some((deadline - now).min(Duration::from_millis(200))));
        match ws.read() {
            Ok(Message::Binary(b)) => {
                out.binary_messages += 1;
                out.data.extend_from_slice(&b);
            }
            Ok(Message::Text(_)) => out.text_messages += 1,
            Ok(Message::Close(_)) => {
                out.end = WsEnd::CloseFrame;
                // tungstenite queued the close reply; one more read sends it and ends.
                let _ = ws
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_millis(500)));
                let _ = ws.read();
                return Ok(out);
            }
            Ok(_) => {}
            Err(WsError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                if out.end == WsEnd::TimeLimit {
                    out.end = WsEnd::Dropped;
                }
                return Ok(out);
            }
            Err(e) => {
                out.end = WsEnd::Dropped;
                out.error = Some(e.to_string());
                return Ok(out);
            }
        }
    }
}

/// `ws_get_flv` as soon as the stream is live: retries while the upgrade is answered 404.
pub fn ws_get_flv_when_live(
    addr: SocketAddr,
    path: &str,
    wait: Duration,
    max_duration: Duration,
) -> WsFlv {
    let give_up = Instant::now() + wait;
    loop {
        match ws_get_flv(addr, path, max_duration) {
            Ok(r) => return r,
            Err(WsConnectError::Status(404, _)) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(30));
            }
            Err(e) => panic!("WS-FLV {path}: {e:?}"),
        }
    }
}

/// A raw WebSocket connection to `path` for tests that drive the protocol themselves.
pub fn ws_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<tungstenite::WebSocket<TcpStream>, WsConnectError> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| WsConnectError::Other(e.to_string()))?;
    sock.set_nodelay(true).ok();
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let url = format!("ws://{addr}/{}", path.trim_start_matches('/'));
    match tungstenite::client(url.as_str(), sock) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(WsError::Http(resp))) => Err(
            WsConnectError::Status(resp.status().as_u16(), String::new()),
        ),
        Err(e) => Err(WsConnectError::Other(e.to_string())),
    }
}
