//! A sans-IO RFC 6455 (WebSocket) server implementation.
//!
//! Nothing here performs IO or owns a socket: the connection task reads
//! into its own `BytesMut`, hands the bytes to these functions and writes
//! what they return. That keeps the protocol logic testable byte by byte,
//! fuzzable, and independent of the io_uring runtime.
//!
//! Layout, one job per file:
//! - [`handshake`]: parse the HTTP upgrade request ([`parse_request`]),
//!   compute `Sec-WebSocket-Accept`, build the 101 and error responses.
//! - [`decoder`]: client→server frames → [`Message`]s, enforcing every
//!   framing rule; `header` parses and checks a frame header on its own,
//!   and [`close`] maps each violation to a [`CloseError`] (the close code
//!   to send). Unfragmented payloads are unmasked in place and split
//!   off the read buffer without copying; an idle [`Decoder`] is four words
//!   with no heap allocation, because a server keeps one per connection.
//! - [`frame`]: opcodes and the server→client encoder ([`encode_header`]
//!   lets a writer put a header in front of a shared broadcast payload).
//! - `mask`: the word-at-a-time XOR unmasking.
//! - `utf8`: incremental UTF-8 validation carried across fragments, so an
//!   invalid text message fails as soon as the bad byte arrives.
//!
//! No extensions or subprotocols are negotiated (no permessage-deflate), so
//! RSV bits are always a protocol error.
//!
//! Typical connection flow:
//! 1. Feed the read buffer to [`parse_request`] until it returns a request;
//!    route on `path`; on `upgrade: Ok(accept)` write [`response_101`],
//!    otherwise write an [`http_response`] (or
//!    [`HandshakeError::to_response`]) and close. Bytes after the consumed
//!    head already belong to the WebSocket stream.
//! 2. After every read, call [`Decoder::decode`] until it returns
//!    `Ok(None)` ([`Decoder::frame_len_hint`] tells how big the pending
//!    frame is). Answer `Ping(p)` with `encode_frame(OpCode::Pong, &p)`;
//!    answer `Close(code, _)` with `close_frame(code.unwrap_or(1000), "")`
//!    and close; on `Err(e)` write `e.to_frame()` and close.
//!
//! Fragmented messages are the one place payload bytes are copied (into a
//! per-message buffer that is freed when the message completes).

pub mod close;
pub mod decoder;
pub mod frame;
pub mod handshake;
mod header;
mod mask;
mod utf8;

pub use close::CloseError;
pub use decoder::{Decoder, Message};
pub use frame::{close_frame, encode_frame, encode_header, text_frame, OpCode, MAX_HEADER};
pub use handshake::{
    http_response, parse_request, query_param, response_101, HandshakeError, Request,
};

#[cfg(test)]
mod tests {
    use super::decoder::tests::{close_with, decode_all, frame, text};
    use super::*;
    use bytes::{Bytes, BytesMut};

    /// xorshift64: deterministic pseudo-random chunk sizes.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Decodes `bytes` fed in pseudo-random chunks.
    fn decode_chunked(max: usize, bytes: &[u8], seed: u64) -> (Vec<Message>, Option<CloseError>) {
        let mut state = seed | 1;
        let mut d = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = (next(&mut state) % 40 + 1).min(rest.len() as u64) as usize;
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn stream() -> Vec<u8> {
        [
            frame(true, OpCode::Text, "ascii then ünïcödé 😀".as_bytes()),
            frame(false, OpCode::Binary, &[0xff; 200]),
            frame(true, OpCode::Ping, b""),
            frame(false, OpCode::Continuation, &[0x00; 3]),
            frame(true, OpCode::Continuation, &[0x01; 1000]),
            frame(false, OpCode::Text, &"😀".as_bytes()[..3]),
            frame(true, OpCode::Pong, b"pong"),
            frame(true, OpCode::Continuation, &"😀".as_bytes()[3..]),
            frame(true, OpCode::Close, b"\x03\xe8done"),
        ]
        .concat()
    }

    #[test]
    fn random_chunking_never_changes_the_result() {
        let good = stream();
        let mut bad_utf8 = good.clone();
        bad_utf8.extend(frame(false, OpCode::Text, b"abc"));
        bad_utf8.extend(frame(true, OpCode::Continuation, b"\xed\xa0\x80xyz"));
        let mut too_big = good.clone();
        too_big.extend(frame(true, OpCode::Binary, &[0; 5000]));
        for bytes in [&good, &bad_utf8, &too_big] {
            let whole = decode_all(4096, bytes);
            for seed in 0..200 {
                assert_eq!(decode_chunked(4096, bytes, seed), whole, "seed {seed}");
            }
        }
        assert_eq!(decode_all(4096, &good).0.len(), 6);
        assert_eq!(decode_all(4096, &bad_utf8).1.map(|e| e.code), Some(1007));
        assert_eq!(decode_all(4096, &too_big).1.map(|e| e.code), Some(1009));
    }

    #[test]
    fn close_error_frame() {
        let e = CloseError {
            code: 1002,
            reason: "unmasked frame",
        };
        assert_eq!(&e.to_frame()[..], b"\x88\x10\x03\xeaunmasked frame");
        assert_eq!(e.to_string(), "unmasked frame (close code 1002)");
    }

    #[test]
    fn encoded_frames_decode_after_masking() {
        // The server encoder's output, masked like a client would, decodes
        // to the same message.
        for len in [0, 1, 125, 126, 65535, 65536] {
            let payload = vec![b'q'; len];
            let enc = encode_frame(OpCode::Binary, &payload);
            let hlen = enc.len() - len;
            let mut client = enc[..hlen].to_vec();
            client[1] |= 0x80;
            client.extend_from_slice(&[0, 0, 0, 0]);
            client.extend_from_slice(&enc[hlen..]);
            let (msgs, err) = decode_all(1 << 20, &client);
            assert_eq!(err, None);
            assert_eq!(msgs, vec![Message::Binary(payload.into())]);
        }
    }
    #[test]
    fn every_opcode_and_leftover_stays_in_buffer() {
        let mut bytes = frame(true, OpCode::Binary, &[0, 159, 255]);
        bytes.extend(frame(true, OpCode::Ping, b"p"));
        bytes.extend(frame(true, OpCode::Pong, b""));
        bytes.extend(close_with(b"\x03\xe8bye"));
        bytes.extend(close_with(b""));
        bytes.extend(&frame(true, OpCode::Text, b"partial")[..5]);
        let mut d = Decoder::new(1000);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut got = Vec::new();
        while let Some(m) = d.decode(&mut buf).unwrap() {
            got.push(m);
        }
        assert_eq!(
            got,
            vec![
                Message::Binary(Bytes::from_static(&[0, 159, 255])),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong(Bytes::new()),
                Message::Close(Some(1000), Bytes::from_static(b"bye")),
                Message::Close(None, Bytes::new()),
            ]
        );
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn code_point_split_across_fragments() {
        let euro = "€".as_bytes();
        let bytes = [
            frame(false, OpCode::Text, &euro[..1]),
            frame(false, OpCode::Continuation, &euro[1..2]),
            frame(false, OpCode::Continuation, b""),
            frame(true, OpCode::Continuation, &euro[2..]),
        ];
        assert_eq!(decode_all(100, &bytes.concat()), (vec![text("€")], None));
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let bytes = [
            frame(false, OpCode::Text, b"Hel"),
            frame(true, OpCode::Ping, b"1"),
            frame(false, OpCode::Continuation, b"lo, "),
            frame(true, OpCode::Pong, b"2"),
            frame(true, OpCode::Continuation, b"world"),
            frame(false, OpCode::Binary, &[1]),
            frame(true, OpCode::Continuation, &[2]),
        ];
        let (msgs, err) = decode_all(100, &bytes.concat());
        assert_eq!(err, None);
        assert_eq!(
            msgs,
            vec![
                Message::Ping(Bytes::from_static(b"1")),
                Message::Pong(Bytes::from_static(b"2")),
                text("Hello, world"),
                Message::Binary(Bytes::from_static(&[1, 2])),
            ]
        );
    }

    #[test]
    fn empty_fragmented_message() {
        let bytes = [
            frame(false, OpCode::Text, b""),
            frame(true, OpCode::Continuation, b""),
        ];
        assert_eq!(decode_all(100, &bytes.concat()), (vec![text("")], None));
    }

    #[test]
    fn extended_lengths() {
        let p16: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let p64 = vec![b'z'; 70_000];
        let bytes = [
            frame(true, OpCode::Binary, &p16),
            frame(true, OpCode::Text, &p64),
        ];
        let (msgs, err) = decode_all(100_000, &bytes.concat());
        assert_eq!(err, None);
        assert_eq!(msgs[0], Message::Binary(Bytes::from(p16)));
        assert_eq!(msgs[1], Message::Text(Bytes::from(p64)));
    }

    #[test]
    fn byte_at_a_time_matches_whole_buffer() {
        let bytes = [
            frame(true, OpCode::Text, "héllo €𝄞".as_bytes()),
            frame(false, OpCode::Text, "𝄞".as_bytes()),
            frame(true, OpCode::Ping, b"ping"),
            frame(true, OpCode::Continuation, &[b'x'; 300]),
            frame(true, OpCode::Binary, &[7; 70_000]),
            close_with(b"\x03\xe9going away"),
        ]
        .concat();
        let whole = decode_all(1 << 20, &bytes);
        assert_eq!(whole.0.len(), 5);
        let mut d = Decoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in &bytes {
            buf.extend_from_slice(&[b]);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, whole.0);
        assert!(buf.is_empty());
    }
}
