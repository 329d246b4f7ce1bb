//! Chat requests: any bytes must parse to a request or a typed error, never
//! panic; ids echoed back must be valid JSON; every reply built from a
//! parsed request must be valid JSON.
//!
//! The check itself is `ringcast::proto::fuzz::json_request::check`, which
//! `tests/fuzz_regressions.rs` also runs on the committed seeds and on
//! every input that ever failed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringcast::proto::fuzz::json_request::check(data));
