//! Frame-level vocabulary: opcodes and the server→client encoder.
//!
//! Server frames are never masked (RFC 6455 §5.1) and this server never
//! fragments what it sends, so every encoded header has FIN set and is
//! 2, 4 or 10 bytes long. The header is produced into a caller-provided
//! array so a writer can place it in front of a shared payload (for example
//! one broadcast `Bytes` sent to many connections) without copying the
//! payload; [`encode_frame`] is the convenience form that builds one buffer.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest header [`encode_header`] writes: 2 bytes + 64-bit extended length.
pub const MAX_HEADER: usize = 10;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A WebSocket frame opcode (RFC 6455 §5.2). Reserved opcodes have no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// `0x0`: continues a fragmented text or binary message.
    Continuation,
    /// `0x1`: first (or only) frame of a UTF-8 text message.
    Text,
    /// `0x2`: first (or only) frame of a binary message.
    Binary,
    /// `0x8`: connection close.
    Close,
    /// `0x9`: ping.
    Ping,
    /// `0xA`: pong.
    Pong,
}

impl OpCode {
    /// Parses the low nibble of the first header byte; `None` for reserved
    /// opcodes (0x3–0x7, 0xB–0xF).
    pub fn from_u8(nibble: u8) -> Option<Self> {
        match nibble {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (Close, Ping, Pong).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Writes a server→client frame header (FIN set, unmasked) for a payload of
/// `len` bytes into `out` and returns how many bytes of `out` were used
/// (2, 4 or 10). The payload follows the header on the wire unchanged.
pub fn encode_header(opcode: OpCode, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode.as_u8();
    if len < 126 {
        // `len < 126` so the cast is lossless.
        out[1] = len as u8;
        2
    } else if let Ok(len16) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len16.to_be_bytes());
        4
    } else {
        out[1] = 127;
        // usize is at most 64 bits on every supported target.
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Encodes a complete server→client frame (header + payload) into one
/// allocation.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut header = [0u8; MAX_HEADER];
    let n = encode_header(opcode, payload.len(), &mut header);
    let mut out = BytesMut::with_capacity(n + payload.len());
    out.put_slice(&header[..n]);
    out.put_slice(payload);
    out.freeze()
}

/// A text frame carrying `payload` (e.g. one JSON message).
pub fn text_frame(payload: &[u8]) -> Bytes {
    encode_frame(OpCode::Text, payload)
}

/// Encodes a Close frame carrying `code` and `reason`. The reason is cut at
/// a character boundary so the payload stays within the 125-byte control
/// frame limit.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = truncate_on_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    let end = 2 + reason.len();
    payload[2..end].copy_from_slice(reason.as_bytes());
    encode_frame(OpCode::Close, &payload[..end])
}

/// Whether a peer may send `code` in a Close frame (RFC 6455 §7.4): the
/// defined codes not reserved for local use (1000–1003, 1007–1011) and the
/// registered and private ranges (3000–4999).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Longest prefix of `s` that is at most `max` bytes and ends on a char
/// boundary.
fn truncate_on_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_roundtrip_and_reserved() {
        for v in 0u8..16 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op.as_u8(), v),
                None => assert!(matches!(v, 0x3..=0x7 | 0xB..=0xF)),
            }
        }
        assert!(OpCode::Ping.is_control());
        assert!(OpCode::Close.is_control());
        assert!(OpCode::Pong.is_control());
        assert!(!OpCode::Text.is_control());
        assert!(!OpCode::Continuation.is_control());
    }

    #[test]
    fn header_lengths() {
        let mut h = [0u8; MAX_HEADER];
        assert_eq!(encode_header(OpCode::Text, 0, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 0]);
        assert_eq!(encode_header(OpCode::Binary, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x82, 125]);
        assert_eq!(encode_header(OpCode::Binary, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(encode_header(OpCode::Text, 65535, &mut h), 4);
        assert_eq!(&h[..4], &[0x81, 126, 0xFF, 0xFF]);
        assert_eq!(encode_header(OpCode::Text, 65536, &mut h), 10);
        assert_eq!(&h[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(encode_header(OpCode::Ping, 3, &mut h), 2);
        assert_eq!(&h[..2], &[0x89, 3]);
    }

    #[test]
    fn frame_is_header_plus_payload() {
        let f = encode_frame(OpCode::Text, b"Hello");
        assert_eq!(&f[..], b"\x81\x05Hello");
        let big = vec![7u8; 70_000];
        let f = encode_frame(OpCode::Binary, &big);
        assert_eq!(f.len(), 10 + big.len());
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(&f[10..], &big[..]);
    }

    #[test]
    fn close_code_validity() {
        let valid = (0..=u16::MAX).filter(|&c| is_valid_close_code(c)).count();
        assert_eq!(valid, 4 + 5 + 2000);
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn close_frame_layout_and_truncation() {
        assert_eq!(&close_frame(1000, "")[..], &[0x88, 2, 0x03, 0xE8]);
        assert_eq!(&close_frame(1001, "bye")[..], b"\x88\x05\x03\xE9bye");
        // 'é' is 2 bytes: 70 of them = 140 bytes, cut to 122 (61 chars).
        let long = "é".repeat(70);
        let f = close_frame(1009, &long);
        assert_eq!(f[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        let ascii = "x".repeat(500);
        let f = close_frame(1000, &ascii);
        assert_eq!(f.len(), 2 + 125);
        assert_eq!(f[1], 125);
    }
}
