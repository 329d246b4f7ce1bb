//! Fuzzes the WebSocket frame decoder and the handshake parser.
//!
//! Input layout: the first byte seeds how the rest is split into chunks;
//! the rest is a client→server byte stream. The stream is decoded twice,
//! once as a single buffer and once fed chunk by chunk, and both runs must
//! produce the same messages and the same final error: chunking must never
//! change the result. Nothing may panic, every `Text` must be valid UTF-8
//! and every `Close` must carry a valid code and UTF-8 reason. The same
//! bytes also go through the HTTP handshake parser.
//!
//! The check itself is `ringcast::proto::fuzz::ws_decoder::check`, which
//! `tests/fuzz_regressions.rs` also runs on the committed seeds and on
//! every input that ever failed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringcast::proto::fuzz::ws_decoder::check(data));
