//! Fuzzes the RESP request parser.
//!
//! Input: the first byte picks a chunk size (1..=32), the rest is a client
//! byte stream fed that many bytes at a time, parsing all complete commands
//! after each chunk, as the connection loop does; once with the resuming
//! `Parser`, once with the stateless `parse_command`. Asserts: no panic;
//! every command consumes input, `Ok(None)` and `Err` consume nothing; every
//! error reply is one Redis protocol error line; and the commands (and final
//! error) are the same whether the stream came whole or in chunks, resumed
//! or re-scanned.
//!
//! The check itself is `ringcast::proto::fuzz::resp_parse::check`, which
//! `tests/fuzz_regressions.rs` also runs on the committed seeds and on
//! every input that ever failed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringcast::proto::fuzz::resp_parse::check(data));
