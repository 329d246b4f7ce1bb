//! Sans-IO decoder for client→server frames (RFC 6455 §5).
//!
//! The caller owns the read buffer; [`Decoder::decode`] looks at its front,
//! validates and unmasks frames in place and splits complete messages off
//! with `BytesMut::split_to(..).freeze()`, so an unfragmented message is
//! handed out without copying. Only fragmented messages are copied into an
//! accumulation buffer, which is boxed so that an idle decoder is a few
//! words with no heap allocation (servers keep one per connection).
//!
//! Validation happens as early as the bytes allow: header rules (RSV bits,
//! opcodes, masking, control frame limits, declared length against the
//! message limit) are checked as soon as the header bytes are present,
//! before any payload is buffered, and text payloads are unmasked and
//! UTF-8-checked as they arrive, so a bad message fails before it is
//! complete. Every violation maps to the close code the server must send.

use bytes::{Buf, Bytes, BytesMut};

use super::close::{
    CloseError, BAD_CLOSE_CODE, CLOSE_LEN_ONE, EXPECTED_CONTINUATION, INVALID_UTF8,
    INVALID_UTF8_REASON, NOTHING_TO_CONTINUE, TOO_BIG,
};
use super::frame::{is_valid_close_code, OpCode};
use super::header::{lengths, parse_header, Header};
use super::mask::{apply_mask, key_at};
use super::utf8::Utf8Validator;

/// One complete message received from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are guaranteed to be valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the server should answer with a pong carrying the same bytes.
    Ping(Bytes),
    /// A pong (unsolicited or answering a server ping).
    Pong(Bytes),
    /// A close frame. `None` with an empty reason when the frame had no
    /// payload; otherwise a valid close code and a UTF-8 reason (possibly
    /// empty). The server should echo a close and then close the connection.
    Close(Option<u16>, Bytes),
}

/// A fragmented message being assembled.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    data: BytesMut,
}

/// Per-connection frame decoder. Idle size is four words and it owns no
/// heap memory unless a fragmented message is being assembled.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Payload bytes of the (incomplete, text) frame at the front of the
    /// buffer that were already unmasked in place and UTF-8 validated.
    progress: usize,
    fragmented: Option<Box<Fragmented>>,
    utf8: Utf8Validator,
}

impl Decoder {
    /// A decoder that rejects (close code 1009) messages larger than
    /// `max_message` payload bytes, whether in one frame or fragmented.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            progress: 0,
            fragmented: None,
            utf8: Utf8Validator::new(),
        }
    }

    /// True when no frame is half read and no fragmented message is held:
    /// with an empty buffer, a new decoder would do the same.
    pub fn is_idle(&self) -> bool {
        self.progress == 0 && self.fragmented.is_none()
    }

    /// Decodes the next message from the front of `buf`.
    ///
    /// Consumes complete frames from the front of `buf` until one message
    /// is available (fragments of a message are absorbed and the loop goes
    /// on, so one call may eat several frames) and returns it, or returns
    /// `Ok(None)` once `buf` holds no further complete frame; the caller then
    /// appends more bytes and calls again, and should call in a loop until
    /// `Ok(None)` after every read. Control frames arriving between the
    /// fragments of a message are returned immediately.
    ///
    /// An incomplete frame is left in `buf`, but its header has already been
    /// validated and, for text, the payload bytes present are unmasked in
    /// place and validated; so between calls the caller may only append to
    /// `buf`, never change bytes already in it.
    ///
    /// # Errors
    ///
    /// A [`CloseError`] for the first protocol violation (code 1002), invalid
    /// UTF-8 (1007) or oversized message (1009). The caller must then send
    /// [`CloseError::to_frame`] and close the connection; the decoder's
    /// state is unspecified afterwards.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CloseError> {
        loop {
            let Some(h) = parse_header(buf)? else {
                return Ok(None);
            };
            let text = self.is_text(h.opcode)?;
            let (payload_len, frame_len) = self.check_size(&h)?;
            if h.opcode == OpCode::Text && self.progress == 0 {
                self.utf8 = Utf8Validator::new();
            }
            self.unmask_fresh(buf, &h, text, frame_len)?;
            if buf.len() < frame_len {
                return Ok(None);
            }
            self.progress = 0;
            buf.advance(h.len);
            if let Some(msg) = self.complete(buf, &h, text, payload_len)? {
                return Ok(Some(msg));
            }
        }
    }

    /// Whether the frame carries text: its own opcode, or for a
    /// continuation the message's; checks that fragments follow the rules.
    fn is_text(&self, opcode: OpCode) -> Result<bool, CloseError> {
        match opcode {
            OpCode::Continuation => match &self.fragmented {
                Some(f) => Ok(f.text),
                None => Err(NOTHING_TO_CONTINUE),
            },
            OpCode::Text | OpCode::Binary if self.fragmented.is_some() => {
                Err(EXPECTED_CONTINUATION)
            }
            op => Ok(op == OpCode::Text),
        }
    }

    /// The payload and whole-frame lengths, refusing a data frame that
    /// would take the message past `max_message`.
    fn check_size(&self, h: &Header) -> Result<(usize, usize), CloseError> {
        if !h.opcode.is_control() {
            let already = self.fragmented.as_ref().map_or(0, |f| f.data.len());
            let total = u64::try_from(already)
                .ok()
                .and_then(|a| a.checked_add(h.payload_len));
            let max = u64::try_from(self.max_message).unwrap_or(u64::MAX);
            if total.is_none_or(|t| t > max) {
                return Err(TOO_BIG);
            }
        }
        let payload_len = usize::try_from(h.payload_len).map_err(|_| TOO_BIG)?;
        let frame_len = h.len.checked_add(payload_len).ok_or(TOO_BIG)?;
        Ok((payload_len, frame_len))
    }

    /// Unmasks (and for text, validates) whatever payload of the frame is
    /// present and not yet processed, so bad text fails as it arrives.
    fn unmask_fresh(
        &mut self,
        buf: &mut BytesMut,
        h: &Header,
        text: bool,
        frame_len: usize,
    ) -> Result<(), CloseError> {
        let end = buf.len().min(frame_len);
        let start = h.len.saturating_add(self.progress);
        if let Some(fresh) = buf.get_mut(start..end) {
            if !fresh.is_empty() && (text || end == frame_len) {
                apply_mask(fresh, key_at(h.mask, self.progress));
                if text {
                    self.utf8.feed(fresh).map_err(|_| INVALID_UTF8)?;
                }
                self.progress = end - h.len;
            }
        }
        Ok(())
    }

    /// Takes a complete frame's payload off the front of `buf`: a message
    /// when it ends one, `None` when it was a fragment absorbed.
    fn complete(
        &mut self,
        buf: &mut BytesMut,
        h: &Header,
        text: bool,
        payload_len: usize,
    ) -> Result<Option<Message>, CloseError> {
        let message = |this: &mut Self, data: Bytes, text: bool| {
            if text {
                this.utf8.finish().map_err(|_| INVALID_UTF8)?;
                Ok(Some(Message::Text(data)))
            } else {
                Ok(Some(Message::Binary(data)))
            }
        };
        match h.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(split(buf, payload_len)))),
            OpCode::Pong => Ok(Some(Message::Pong(split(buf, payload_len)))),
            OpCode::Close => parse_close(split(buf, payload_len)).map(Some),
            OpCode::Text | OpCode::Binary if h.fin => {
                let payload = split(buf, payload_len);
                message(self, payload, text)
            }
            OpCode::Text | OpCode::Binary => {
                let mut data = BytesMut::with_capacity(payload_len);
                data.extend_from_slice(buf.get(..payload_len).unwrap_or_default());
                buf.advance(payload_len);
                self.fragmented = Some(Box::new(Fragmented { text, data }));
                Ok(None)
            }
            OpCode::Continuation => {
                let frag = self.fragmented.as_mut().ok_or(NOTHING_TO_CONTINUE)?;
                frag.data
                    .extend_from_slice(buf.get(..payload_len).unwrap_or_default());
                buf.advance(payload_len);
                if !h.fin {
                    return Ok(None);
                }
                let frag = self.fragmented.take().ok_or(NOTHING_TO_CONTINUE)?;
                message(self, frag.data.freeze(), frag.text)
            }
        }
    }

    /// Total bytes (header + payload) of the frame at the front of `buf`,
    /// or `None` if its header is not complete yet. Use it to size the next
    /// read. The value is not validated: call [`decode`](Self::decode)
    /// first (it rejects oversized frames as soon as their header is
    /// present), after which the hint is bounded by `max_message + 14`.
    pub fn frame_len_hint(&self, buf: &[u8]) -> Option<usize> {
        let (header_len, payload_len) = lengths(buf)?;
        let payload_len = usize::try_from(payload_len).unwrap_or(usize::MAX);
        Some(header_len.saturating_add(payload_len))
    }

    /// Whether a fragmented message is being assembled (the only time the
    /// decoder holds heap memory).
    pub fn is_assembling(&self) -> bool {
        self.fragmented.is_some()
    }
}

/// Splits `len` bytes off the front of `buf` without copying.
fn split(buf: &mut BytesMut, len: usize) -> Bytes {
    buf.split_to(len.min(buf.len())).freeze()
}

/// Validates a complete Close payload.
fn parse_close(payload: Bytes) -> Result<Message, CloseError> {
    match payload.len() {
        0 => Ok(Message::Close(None, payload)),
        1 => Err(CLOSE_LEN_ONE),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(BAD_CLOSE_CODE);
            }
            let reason = payload.slice(2..);
            if simdutf8::basic::from_utf8(&reason).is_err() {
                return Err(INVALID_UTF8_REASON);
            }
            Ok(Message::Close(Some(code), reason))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::close::*;
    use super::*;

    /// Builds a masked client frame; `b0` is the whole first header byte so
    /// tests can set RSV bits and reserved opcodes.
    pub(crate) fn raw(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0xA1, 0x5C, 0x07, 0xE3];
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key);
        out
    }

    /// A masked client frame with the given FIN bit and opcode.
    pub(crate) fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        raw(u8::from(fin) << 7 | op.as_u8(), payload)
    }

    /// Decodes everything in `bytes` (one buffer), stopping at the first
    /// error.
    pub(crate) fn decode_all(max: usize, bytes: &[u8]) -> (Vec<Message>, Option<CloseError>) {
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn err_of(bytes: &[u8]) -> CloseError {
        decode_all(1 << 20, bytes).1.expect("expected an error")
    }

    pub(crate) fn text(s: &str) -> Message {
        Message::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub(crate) fn close_with(payload: &[u8]) -> Vec<u8> {
        frame(true, OpCode::Close, payload)
    }

    #[test]
    fn rfc_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode_all(100, &bytes), (vec![text("Hello")], None));
    }

    #[test]
    fn protocol_errors_are_1002() {
        use OpCode::{Binary as B, Close as C, Continuation as Co, Ping as P, Text as T};
        let two = |a: Vec<u8>, b: Vec<u8>| [a, b].concat();
        let cases = [
            (vec![0x81, 0x02, b'H', b'i'], UNMASKED),
            (raw(0xC1, b"x"), RSV_SET),
            (raw(0xA1, b"x"), RSV_SET),
            (raw(0x92, b"x"), RSV_SET),
            (frame(true, P, &[0; 126]), CONTROL_TOO_LONG),
            (frame(false, P, b"x"), FRAGMENTED_CONTROL),
            (frame(false, C, b""), FRAGMENTED_CONTROL),
            (frame(true, Co, b"x"), NOTHING_TO_CONTINUE),
            (frame(false, Co, b"x"), NOTHING_TO_CONTINUE),
            (close_with(b"\x03"), CLOSE_LEN_ONE),
            (
                two(frame(false, T, b"a"), frame(true, T, b"b")),
                EXPECTED_CONTINUATION,
            ),
            (
                two(frame(false, B, b"a"), frame(true, B, b"b")),
                EXPECTED_CONTINUATION,
            ),
            (
                two(frame(false, T, b"a"), frame(false, B, b"b")),
                EXPECTED_CONTINUATION,
            ),
            (vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], BAD_LENGTH),
        ];
        for (bytes, expected) in cases {
            assert_eq!(expected.code, 1002);
            assert_eq!(err_of(&bytes), expected, "{bytes:02x?}");
        }
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(err_of(&raw(0x80 | op, b"")), RESERVED_OPCODE, "opcode {op}");
        }
    }

    #[test]
    fn header_errors_need_no_payload() {
        // One or two bytes are enough to reject these.
        assert_eq!(err_of(&[0xC1]), RSV_SET);
        assert_eq!(err_of(&[0x83]), RESERVED_OPCODE);
        assert_eq!(err_of(&[0x09]), FRAGMENTED_CONTROL);
        assert_eq!(err_of(&[0x81, 0x05]), UNMASKED);
        assert_eq!(err_of(&[0x89, 0xFE]), CONTROL_TOO_LONG);
    }

    #[test]
    fn close_codes() {
        for code in [1000, 1003, 1007, 1011, 3000, 4999] {
            let (msgs, err) = decode_all(100, &close_with(&u16::to_be_bytes(code)));
            assert_eq!(err, None, "{code}");
            assert_eq!(msgs, vec![Message::Close(Some(code), Bytes::new())]);
        }
        for code in [0, 999, 1004, 1005, 1006, 1012, 1016, 2999, 5000, 65535] {
            let bytes = close_with(&u16::to_be_bytes(code));
            assert_eq!(err_of(&bytes), BAD_CLOSE_CODE, "{code}");
        }
    }

    #[test]
    fn invalid_utf8_is_1007() {
        assert_eq!(
            err_of(&frame(true, OpCode::Text, b"\xce\xba\xff")),
            INVALID_UTF8
        );
        assert_eq!(err_of(&close_with(b"\x03\xe8\xff")), INVALID_UTF8_REASON);
        // Ends in the middle of a code point.
        assert_eq!(
            err_of(&frame(true, OpCode::Text, b"ok\xe2\x82")),
            INVALID_UTF8
        );
        let split = [
            frame(false, OpCode::Text, b"\xe2"),
            frame(true, OpCode::Continuation, b"\x82"),
        ];
        assert_eq!(err_of(&split.concat()), INVALID_UTF8);
        // Binary payloads are not checked.
        let (msgs, err) = decode_all(100, &frame(true, OpCode::Binary, b"\xff"));
        assert_eq!((msgs.len(), err), (1, None));
    }

    #[test]
    fn invalid_fragment_fails_before_the_message_ends() {
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&frame(false, OpCode::Text, "κόσμε".as_bytes())[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&frame(false, OpCode::Continuation, b"\xf4\x90\x80\x80"));
        assert_eq!(d.decode(&mut buf), Err(INVALID_UTF8));
    }

    #[test]
    fn invalid_bytes_fail_before_the_frame_is_complete() {
        let f = frame(
            true,
            OpCode::Text,
            b"valid\xf4\x90\x80\x80more-bytes-to-come",
        );
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&f[..6 + 5]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&f[11..13]);
        assert_eq!(d.decode(&mut buf), Err(INVALID_UTF8));
    }

    #[test]
    fn oversize_is_rejected_from_the_header_alone() {
        // 64-bit length 2^63 - 1 with only the header present.
        let mut hdr = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        hdr.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(err_of(&hdr), TOO_BIG);
        let f = frame(true, OpCode::Text, &[b'a'; 101]);
        assert_eq!(decode_all(100, &f[..8]).1, Some(TOO_BIG));
        assert_eq!(decode_all(101, &f).0.len(), 1);
    }

    #[test]
    fn accumulated_fragments_are_bounded() {
        let bytes = [
            frame(false, OpCode::Binary, &[0; 60]),
            frame(false, OpCode::Continuation, &[0; 40]),
            frame(true, OpCode::Continuation, &[0; 1]),
        ];
        assert_eq!(decode_all(100, &bytes.concat()).1, Some(TOO_BIG));
        assert_eq!(decode_all(101, &bytes.concat()).0.len(), 1);
    }

    #[test]
    fn unfragmented_payload_is_not_copied() {
        let mut buf = BytesMut::from(&frame(true, OpCode::Binary, &[9; 64])[..]);
        let base = buf.as_ptr() as usize;
        let Ok(Some(Message::Binary(b))) = Decoder::new(100).decode(&mut buf) else {
            panic!("expected binary");
        };
        assert_eq!(b.as_ptr() as usize, base + 6);
    }

    #[test]
    fn idle_decoder_is_small_and_frees_fragment_state() {
        assert!(std::mem::size_of::<Decoder>() <= 32);
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&frame(false, OpCode::Text, b"a")[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(d.is_assembling());
        buf.extend_from_slice(&frame(true, OpCode::Continuation, b"b"));
        assert_eq!(d.decode(&mut buf), Ok(Some(text("ab"))));
        assert!(!d.is_assembling());
    }

    #[test]
    fn frame_len_hint() {
        let d = Decoder::new(100);
        assert_eq!(d.frame_len_hint(&[]), None);
        assert_eq!(d.frame_len_hint(&[0x81]), None);
        assert_eq!(d.frame_len_hint(&[0x81, 0x85, 0, 0, 0]), None);
        assert_eq!(
            d.frame_len_hint(&frame(true, OpCode::Text, b"Hello")[..6]),
            Some(11)
        );
        assert_eq!(
            d.frame_len_hint(&frame(true, OpCode::Text, &[b'a'; 300])[..8]),
            Some(308)
        );
        let f = frame(true, OpCode::Binary, &[0; 70_000]);
        assert_eq!(d.frame_len_hint(&f[..13]), None);
        assert_eq!(d.frame_len_hint(&f[..14]), Some(70_014));
    }
}
