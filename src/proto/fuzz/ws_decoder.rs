//! Fuzzes the WebSocket frame decoder and the handshake parser.
//!
//! Input layout: the first byte seeds how the rest is split into chunks;
//! the rest is a client→server byte stream. The stream is decoded twice,
//! once as a single buffer and once fed chunk by chunk, and both runs must
//! produce the same messages and the same final error: chunking must never
//! change the result. Nothing may panic, every `Text` must be valid UTF-8
//! and every `Close` must carry a valid code and UTF-8 reason. The same
//! bytes also go through the HTTP handshake parser.

use crate::proto::ws::{parse_request, CloseError, Decoder, Message};
use bytes::BytesMut;

/// Small enough that the fuzzer reaches the 1009 "too big" paths.
const MAX_MESSAGE: usize = 64 * 1024;

/// Decodes `stream` fed in chunks whose sizes come from `next_len`.
fn run(stream: &[u8], mut next_len: impl FnMut() -> usize) -> (Vec<Message>, Option<CloseError>) {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = next_len().clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            // Must never panic, whatever the header says.
            let _ = decoder.frame_len_hint(&buf);
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    check_message(&msg);
                    out.push(msg);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.code, 1002 | 1007 | 1009), "{e:?}");
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fn check_message(msg: &Message) {
    match msg {
        Message::Text(t) => assert!(std::str::from_utf8(t).is_ok(), "Text not UTF-8"),
        Message::Close(code, reason) => {
            assert!(
                std::str::from_utf8(reason).is_ok(),
                "close reason not UTF-8"
            );
            match code {
                Some(c) => assert!(matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999)),
                None => assert!(reason.is_empty()),
            }
        }
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
        Message::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
    }
}

/// Checks one input; panics when a property is broken.
pub fn check(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };

    let whole = run(stream, || usize::MAX);
    // xorshift32 seeded from the first byte: chunks of 1..=64 bytes.
    let mut state = u32::from(seed) | 0x9E37_7900;
    let chunked = run(stream, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 64) as usize + 1
    });
    assert_eq!(whole, chunked, "chunking changed the decoder result");

    if let Ok(Some((_, consumed))) = parse_request(stream) {
        assert!(consumed <= stream.len() && consumed <= 8192);
    }
}
