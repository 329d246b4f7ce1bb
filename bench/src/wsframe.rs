//! The client side of RFC 6455, just what a load generator needs.
//!
//! * [`handshake_request`] / [`check_handshake`]: the HTTP/1.1 upgrade, with a
//!   fixed key whose `Sec-WebSocket-Accept` is known, so the check is one
//!   substring search and no hashing.
//! * [`encode_masked`]: client frames must be masked (RFC 6455 §5.3).
//! * [`parse_frame`]: server frames are never masked; a partial frame is the
//!   normal case at the end of a read and is reported as `None`, not an error.

/// Fixed handshake key (the RFC's own example); its accept value is below.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Frame opcodes the generator acts on.
pub mod op {
    /// Continuation of a fragmented message.
    pub const CONT: u8 = 0x0;
    /// UTF-8 text.
    pub const TEXT: u8 = 0x1;
    /// Binary data.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping: must be answered with a pong carrying the same payload.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Appends an HTTP/1.1 upgrade request for `path` on `host` to `out`.
pub fn handshake_request(out: &mut Vec<u8>, host: &str, path: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(KEY.as_bytes());
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
}

/// Outcome of looking at the first bytes a server sent back.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The response head is not complete yet.
    Partial,
    /// `101 Switching Protocols` with the right accept value; frames start at this offset.
    Done(usize),
    /// Anything else: the server refused or is not speaking WebSocket.
    Refused,
}

/// Checks the server's upgrade response in `buf`.
pub fn check_handshake(buf: &[u8]) -> Handshake {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > 8192 {
            Handshake::Refused
        } else {
            Handshake::Partial
        };
    };
    let head = &buf[..end];
    let ok = head.starts_with(b"HTTP/1.1 101") && memchr::memmem::find(head, ACCEPT).is_some();
    if ok {
        Handshake::Done(end + 4)
    } else {
        Handshake::Refused
    }
}

/// Appends a masked client frame (FIN set) with `opcode` and `payload` to `out`.
pub fn encode_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `buf` with the 4-byte `mask`, eight bytes at a time where it can.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask) as u64;
    let wide = m | (m << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// One parsed server frame: where its payload lies in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (see [`op`]).
    pub opcode: u8,
    /// Payload start offset in the buffer given to [`parse_frame`].
    pub start: usize,
    /// Payload end offset (exclusive); the next frame starts here.
    pub end: usize,
}

/// Why a server frame cannot be accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Servers must not mask (RFC 6455 §5.1).
    Masked,
    /// Larger than the generator accepts.
    TooLarge,
}

/// Largest frame payload the generator accepts (bounded by default).
pub const MAX_FRAME: usize = 16 << 20;

/// Parses one frame at the start of `buf`; `Ok(None)` means "need more bytes".
#[inline]
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, hdr) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let l = u64::from_be_bytes(b);
            if l > MAX_FRAME as u64 {
                return Err(FrameError::TooLarge);
            }
            (l as usize, 10)
        }
        n => (n as usize, 2),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    if buf.len() < hdr + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        start: hdr,
        end: hdr + len,
    }))
}

/// Appends an unmasked server frame header for a payload of `len` bytes.
pub fn server_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_reference(buf: &mut [u8], mask: [u8; 4]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }

    #[test]
    fn fast_mask_matches_reference_at_every_alignment_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..64u8).collect();
        for off in 0..8 {
            for len in 0..40 {
                let mut a = data[off..off + len].to_vec();
                let mut b = a.clone();
                apply_mask(&mut a, mask);
                mask_reference(&mut b, mask);
                assert_eq!(a, b, "off {off} len {len}");
            }
        }
    }

    #[test]
    fn masked_frame_round_trips_through_unmasking() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_masked(&mut out, op::TEXT, &payload, [1, 2, 3, 4]);
            assert_eq!(out[0], 0x81);
            assert!(out[1] & 0x80 != 0);
            let hdr = out.len() - len - 4;
            let mask = [out[hdr], out[hdr + 1], out[hdr + 2], out[hdr + 3]];
            let mut body = out[hdr + 4..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn server_frames_parse_whole_and_report_partial() {
        for len in [0usize, 10, 125, 126, 1000, 70_000] {
            let mut buf = Vec::new();
            server_header(&mut buf, op::TEXT, len);
            let hdr = buf.len();
            buf.extend(std::iter::repeat_n(b'a', len));
            buf.extend_from_slice(&[0x81, 0x01, b'z']);
            let f = parse_frame(&buf).unwrap().unwrap();
            assert_eq!(
                (f.fin, f.opcode, f.start, f.end),
                (true, op::TEXT, hdr, hdr + len)
            );
            let g = parse_frame(&buf[f.end..]).unwrap().unwrap();
            assert_eq!(&buf[f.end + g.start..f.end + g.end], b"z");
            for cut in 0..hdr + len {
                assert_eq!(parse_frame(&buf[..cut]), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn masked_server_frames_are_refused() {
        assert_eq!(
            parse_frame(&[0x81, 0x81, 0, 0, 0, 0, b'a']),
            Err(FrameError::Masked)
        );
    }

    #[test]
    fn handshake_checks_status_and_accept() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let n = ok.len() - 2;
        assert_eq!(check_handshake(ok), Handshake::Done(n));
        assert_eq!(check_handshake(&ok[..40]), Handshake::Partial);
        let bad = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(check_handshake(bad), Handshake::Refused);
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: xxx\r\n\r\n";
        assert_eq!(check_handshake(wrong), Handshake::Refused);
        let mut req = Vec::new();
        handshake_request(&mut req, "127.0.0.1:9", "/ws?user=u1");
        assert!(req.starts_with(b"GET /ws?user=u1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(req.ends_with(b"\r\n\r\n"));
    }
}
