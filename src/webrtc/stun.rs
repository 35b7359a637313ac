//! Reading the USERNAME of a STUN binding request without state, so the UDP endpoint (and the
//! ICE-TCP listener) can hand a viewer's first packet to the session whose ICE username
//! fragment it names. Integrity is not checked here: the session's str0m agent checks it.

/// STUN's magic cookie (RFC 8489 5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Binding request (method 0x001, class request).
const BINDING_REQUEST: u16 = 0x0001;
/// The USERNAME attribute.
const ATTR_USERNAME: u16 = 0x0006;
/// RFC 8489 caps USERNAME at 513 bytes.
const MAX_USERNAME: usize = 513;

/// The local (receiver's) username fragment of a STUN binding request: USERNAME is
/// "RECEIVER:SENDER" (RFC 8445 7.2.2), so for a request to us this is the part before the
/// colon, the ufrag our answer gave. `None` for anything else (not STUN, not a binding
/// request, no or malformed USERNAME).
pub fn stun_username_fragment(datagram: &[u8]) -> Option<&str> {
    let header = datagram.get(..20)?;
    let msg_type = u16::from_be_bytes([header[0], header[1]]);
    if msg_type != BINDING_REQUEST || header[4..8] != MAGIC_COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    if !len.is_multiple_of(4) {
        return None;
    }
    let mut attrs = datagram.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = u16::from_be_bytes([attrs[2], attrs[3]]) as usize;
        let value = attrs.get(4..4 + alen)?;
        if kind == ATTR_USERNAME {
            if alen > MAX_USERNAME {
                return None;
            }
            let user = std::str::from_utf8(value).ok()?;
            let (local, _remote) = user.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        let padded = (4 + alen + 3) & !3;
        attrs = attrs.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = vec![0, 1];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn local_fragment_is_before_the_colon() {
        let m = request(&[(0x0024, &[0, 0, 0, 1]), (ATTR_USERNAME, b"srv1:brw")]);
        assert_eq!(stun_username_fragment(&m), Some("srv1"));
    }

    #[test]
    fn anything_else_is_none() {
        let good = request(&[(ATTR_USERNAME, b"abcd:efgh")]);
        // Every truncation of a good request, and every single-byte change of its header.
        for n in 0..good.len() {
            assert_eq!(stun_username_fragment(&good[..n]), None, "cut at {n}");
        }
        let mut response = good.clone();
        response[0] = 0x01; // binding success response
        assert_eq!(stun_username_fragment(&response), None);
        let mut cookie = good.clone();
        cookie[5] ^= 1;
        assert_eq!(stun_username_fragment(&cookie), None);
        assert_eq!(
            stun_username_fragment(&request(&[(ATTR_USERNAME, b"nocolon")])),
            None
        );
        assert_eq!(
            stun_username_fragment(&request(&[(ATTR_USERNAME, b":x")])),
            None
        );
        assert_eq!(
            stun_username_fragment(&request(&[(ATTR_USERNAME, &[0xff, b':', 1])])),
            None
        );
        assert_eq!(stun_username_fragment(&request(&[])), None);
        // An attribute whose length runs past the message.
        let mut long = good.clone();
        long[23] = 200;
        assert_eq!(stun_username_fragment(&long), None);
        // RTP, DTLS, garbage.
        assert_eq!(stun_username_fragment(&[0x80; 40]), None);
        assert_eq!(stun_username_fragment(&[22; 40]), None);
    }
}
